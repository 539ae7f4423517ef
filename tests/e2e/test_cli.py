"""The command line: `sluice check` (FILE:LINE: messages, exit 2 / 0), `version`,
`--help`, usage errors, serve as the default verb."""

import os
import re
import subprocess
import tempfile
import unittest

from harness import REPO_ROOT, E2ETestCase, Gateway, _die_with_parent, free_port, sluice_bin

GOOD = """\
# a good config
server:
  listen: ["127.0.0.1:18080"]
  workers: 2
  max_connections: 1000
  timeouts:
    header: 10s
    idle: 60s
    upstream_connect: 2s
    upstream_read: 30s
    drain: 5s
  max_header_bytes: 16k
  max_body_bytes: 10m
  access_log: true
  trusted_proxies: ["127.0.0.1/32", "10.0.0.0/8"]
  ipv6_prefix: 64
admin:
  listen: "127.0.0.1:19090"
  token: "${SLUICE_E2E_CHECK_TOKEN:-secret}"
upstreams:
  app:
    servers: ["127.0.0.1:18000", "127.0.0.1:18001"]
    keepalive: 8
routes:
  - path: /api/market/overview
    methods: [GET]
    upstream: app
  - prefix: /
    upstream: app
"""

# Each broken config marks its bad line with "# <-"; the marker comment is stripped.
UNKNOWN_KEY = """\
server:
  listen: ["127.0.0.1:18080"]
  workers: 1
  max_connectionz: 100   # <-
upstreams:
  app:
    servers: ["127.0.0.1:18000"]
routes:
  - prefix: /
    upstream: app
"""

BAD_DURATION = """\
server:
  listen: ["127.0.0.1:18080"]
  timeouts:
    header: 10s
    idle: 60s
    upstream_read: 10parsecs   # <-
upstreams:
  app:
    servers: ["127.0.0.1:18000"]
"""

UNKNOWN_UPSTREAM = """\
server:
  listen: ["127.0.0.1:18080"]
upstreams:
  app:
    servers: ["127.0.0.1:18000"]
    keepalive: 8
routes:
  - prefix: /api/
    upstream: app
  - upstream: nowhere   # <-
    prefix: /
"""

BAD_SIZE = """\
server:
  listen: ["127.0.0.1:18080"]
  max_body_bytes: 10 megs   # <-
upstreams:
  app:
    servers: ["127.0.0.1:18000"]
"""

UNSET_ENV = """\
server:
  listen: ["127.0.0.1:18080"]
admin:
  listen: "127.0.0.1:19090"
  token: "${SLUICE_E2E_SURELY_UNSET_VAR}"   # <-
upstreams:
  app:
    servers: ["127.0.0.1:18000"]
"""


def marked(text):
    """(text without markers, [1-based lines that carried a marker])."""
    lines, marks = [], []
    for i, line in enumerate(text.split("\n"), 1):
        if "# <-" in line:
            marks.append(i)
            line = line[:line.index("# <-")].rstrip()
        lines.append(line)
    return "\n".join(lines), marks


class Cli(E2ETestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sluice-e2e-cli-")

    def tearDown(self):
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)

    def run_sluice(self, *args, env=None):
        e = dict(os.environ)
        e.pop("SLUICE_E2E_SURELY_UNSET_VAR", None)
        e.update(env or {})
        p = subprocess.run([sluice_bin()] + list(args), capture_output=True, text=True,
                           timeout=30, env=e, stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout + p.stderr

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def check_broken(self, name, text, key):
        text, lines = marked(text)
        path = self.write(name + ".yaml", text)
        code, out = self.run_sluice("check", "-c", path)
        self.assertEqual(code, 2, "sluice check exit code for %s; output:\n%s" % (name, out))
        for line in lines:
            want = re.compile(r"(^|\s)%s:%d: " % (re.escape(path), line), re.M)
            self.assertRegex(out, want, "want '%s:%d: ...' for %s" % (path, line, name))
            msg = [l for l in out.splitlines() if ("%s:%d:" % (path, line)) in l]
            self.assertTrue(any(key in l for l in msg),
                            "the message for line %d does not name %r: %r" % (line, key, msg))
        return out

    def test_check_unknown_key(self):
        self.check_broken("unknown_key", UNKNOWN_KEY, "max_connectionz")

    def test_check_bad_duration(self):
        self.check_broken("bad_duration", BAD_DURATION, "upstream_read")

    def test_check_unknown_upstream(self):
        self.check_broken("unknown_upstream", UNKNOWN_UPSTREAM, "nowhere")

    def test_check_bad_size(self):
        self.check_broken("bad_size", BAD_SIZE, "max_body_bytes")

    def test_check_unset_env_var(self):
        self.check_broken("unset_env", UNSET_ENV, "SLUICE_E2E_SURELY_UNSET_VAR")

    def test_check_reports_several_errors(self):
        text = UNKNOWN_KEY.replace("  workers: 1\n", "  workers: 1\n  idle_thing: 5s   # <-\n")
        self.check_broken("several", text, "")

    def test_check_good_config_exits_0(self):
        path = self.write("good.yaml", GOOD)
        code, out = self.run_sluice("check", "-c", path)
        self.assertEqual(code, 0, out)
        self.assertNotRegex(out, re.escape(path) + r":\d+:")

    def test_check_quickstart_exits_0(self):
        code, out = self.run_sluice("check", "-c", str(REPO_ROOT / "examples" / "quickstart.yaml"))
        self.assertEqual(code, 0, out)

    def test_check_missing_file_exits_2(self):
        code, out = self.run_sluice("check", "-c", os.path.join(self.dir, "absent.yaml"))
        self.assertEqual(code, 2, out)
        self.assertIn("absent.yaml", out)

    def test_version(self):
        code, out = self.run_sluice("version")
        self.assertEqual(code, 0, out)
        self.assertRegex(out, r"\d+\.\d+\.\d+")

    def test_help(self):
        code, out = self.run_sluice("--help")
        self.assertEqual(code, 0, out)
        for verb in ("serve", "check", "version"):
            self.assertIn(verb, out)

    def test_unknown_verb_is_usage_error(self):
        code, out = self.run_sluice("frobnicate")
        self.assertEqual(code, 2, out)
        self.assertTrue(out.strip(), "no message for an unknown verb")

    def test_check_without_config_is_usage_error(self):
        code, out = self.run_sluice("check")
        self.assertEqual(code, 2, out)

    def test_serve_with_broken_config_exits_2(self):
        text, lines = marked(UNKNOWN_KEY)
        path = self.write("serve_broken.yaml", text)
        code, out = self.run_sluice("serve", "-c", path)
        self.assertEqual(code, 2, out)
        self.assertIn("%s:%d:" % (path, lines[0]), out)

    def test_serve_on_an_address_in_use_exits_1_cleanly(self):
        """Exit 1 with the address named, and (under ASan) nothing leaked:
        the early exit used to leave the workers' loops and modules behind."""
        import socket
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        for admin in (False, True):
            listen = "127.0.0.1:%d" % (free_port() if admin else port)
            text = ("server:\n  listen: [\"%s\"]\n  workers: 2\n"
                    "upstreams:\n  app:\n    servers: [\"127.0.0.1:9\"]\n"
                    "routes:\n  - prefix: /\n    upstream: app\n" % listen)
            if admin:
                text += "admin:\n  listen: \"127.0.0.1:%d\"\n  token: t\n" % port
            path = self.write("inuse%d.yaml" % admin, text)
            code, out = self.run_sluice("serve", "-c", path)
            self.assertEqual(code, 1, out)
            self.assertIn("cannot listen on 127.0.0.1:%d" % port, out)
            self.assertNotIn("LeakSanitizer", out)
            self.assertNotIn("ERROR: AddressSanitizer", out)

    def test_serve_is_the_default_verb(self):
        up = self.start_upstream("A")
        gw = Gateway("server:\n  listen: [\"{{LISTEN}}\"]\n  workers: 1\n"
                     "upstreams:\n  app:\n    servers: [\"127.0.0.1:%d\"]\n" % up.port)
        self.addCleanup(gw.cleanup)
        self.addCleanup(gw.stop)
        env = dict(os.environ)
        gw._out = open(gw.stdout_path, "wb")
        gw._err = open(gw.stderr_path, "wb")
        gw.proc = subprocess.Popen([sluice_bin(), "-c", gw.config_path], stdout=gw._out,
                                   stderr=gw._err, env=env, stdin=subprocess.DEVNULL,
                                   preexec_fn=_die_with_parent)
        gw.wait_ready()
        self.assertEqual(gw.request("GET", "/echo").status, 200)


if __name__ == "__main__":
    unittest.main()
