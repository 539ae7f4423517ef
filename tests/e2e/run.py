#!/usr/bin/env python3
"""Run sluice's end-to-end tests.

    python3 tests/e2e/run.py [--bin PATH] [-k PATTERN ...] [-v | -q]

Runs every tests/e2e/test_*.py with unittest (verbosity 2) and prints, as the very
last line, "N passed, N failed, N skipped" (test methods; errors, and tests that
could not run because their class or module failed to set up, count as failed;
a test that called skipTest is listed with its reason and counts as skipped).
Exit code 0 only when every test passed: a skipped test is not a passed one
(scripts/deps installs everything the suite needs). --bin sets SLUICE_BIN
(default: build/sluice).
"""

import argparse
import os
import sys
import time
import unittest

E2E_DIR = os.path.dirname(os.path.abspath(__file__))


class CountingResult(unittest.TextTestResult):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.passed = set()
        self.seconds = {}  # test class -> seconds in its tests (fixtures not counted)

    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        cls = test.id().rsplit(".", 1)[0]
        self.seconds[cls] = self.seconds.get(cls, 0.0) + time.monotonic() - self._t0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed.add(test.id())


def iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from iter_tests(t)
        else:
            yield t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", help="the sluice binary (sets SLUICE_BIN)")
    ap.add_argument("-k", action="append", dest="patterns", default=[],
                    help="only tests whose id contains PATTERN (unittest -k; repeatable)")
    ap.add_argument("-q", action="store_true", help="verbosity 1")
    ap.add_argument("-f", "--failfast", action="store_true")
    args = ap.parse_args()
    if args.bin:
        os.environ["SLUICE_BIN"] = os.path.abspath(args.bin)
    sys.path.insert(0, E2E_DIR)

    loader = unittest.TestLoader()
    if args.patterns:
        loader.testNamePatterns = [p if "*" in p else "*%s*" % p for p in args.patterns]
    suite = loader.discover(E2E_DIR, pattern="test_*.py", top_level_dir=E2E_DIR)
    tests = list(iter_tests(suite))
    # tests that failed to import show up as a single _FailedTest each
    total_ids = [t.id() for t in tests]

    import harness  # noqa: F401 - raises RLIMIT_NOFILE before anything starts
    print("sluice e2e: %d tests, binary %s" % (len(total_ids), harness.sluice_bin()),
          flush=True)
    t0 = time.monotonic()
    runner = unittest.TextTestRunner(verbosity=1 if args.q else 2, resultclass=CountingResult,
                                     failfast=args.failfast, stream=sys.stdout)
    result = runner.run(suite)
    passed = sum(1 for i in total_ids if i in result.passed)
    skipped = {t.id(): reason for t, reason in result.skipped}
    failed = len(total_ids) - passed - sum(1 for i in total_ids if i in skipped)
    # errors outside any test method (class/module fixtures) with every test passed
    if failed == 0 and (result.errors or result.failures or result.unexpectedSuccesses):
        failed = len(result.errors) + len(result.failures) + len(result.unexpectedSuccesses)
    sys.stdout.flush()
    print("e2e time: %.1fs" % (time.monotonic() - t0))
    slow = sorted(result.seconds.items(), key=lambda kv: -kv[1])[:8]
    print("slowest classes: " + ", ".join("%s %.1fs" % kv for kv in slow))
    for test_id, reason in sorted(skipped.items()):
        print("skipped: %s: %s" % (test_id, reason))
    print("%d passed, %d failed, %d skipped" % (passed, failed, len(skipped)), flush=True)
    return 1 if failed or skipped or not total_ids else 0


if __name__ == "__main__":
    sys.exit(main())
