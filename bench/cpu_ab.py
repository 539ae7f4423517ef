#!/usr/bin/env python3
"""bench/cpu_ab.py -- gateway CPU per request, two sluice binaries paired.

    python3 bench/cpu_ab.py SCENARIO BIN_A BIN_B [--scenario-b S] [--pairs 8] [--seconds 3]

SCENARIO is proxy, limit, cache or redis (the routes of bench/run.sh's
scenarios of those names), bare (limit with usage metering off) or quota
(limit with a quota wrk never exhausts, and usage metering on), or proxy_acl
(proxy with a 10,000-network deny list that does not hold the client: the
cost of the access-list lookup, SPEC 7.1), graphql_flat (a route with a
flat limit, every request a POST of a ~2 KB GraphQL query: bench/graphql.lua)
graphql_route (the same with `rejection: graphql`: the body is read to name
the operation in a 429, as before SPEC 7.4), or graphql_ops (the same route
and requests, with `graphql:` per-type and per-operation limits that count
the query and a cost cap it stays under, SPEC 7.4), or limit_1m (limit,
every request from one of 1,048,576 addresses through a trusted proxy, the
store filled with them first: bench/identities.lua; usage metering off).
--scenario-b gives B another scenario than A: with the same binary twice,
the CPU a feature costs (bare vs quota). Starts an nginx upstream, one gateway per binary
(workers: 1, pinned to core 0; with redis, one redis-server per gateway),
then runs wrk (core 1, 64 connections) against A and B in turn, --pairs
times, alternating which goes first. For each run it divides the CPU time
the gateway process used (utime + stime, all threads, from /proc/<pid>/stat)
by the requests wrk completed. Prints the microseconds per request of each
run, the medians, and the median of the paired ratios B/A: pairs taken
seconds apart see the same machine, so drifts of a noisy VM (±20 % from one
minute to the next here) cancel out in the ratio.

--mallocs counts the gateway's calls to libc's malloc, calloc and realloc
per request instead (perf uprobes, added if missing; needs root).

--callgrind runs each gateway under valgrind's callgrind instead and counts
the instructions it executes per request (user space only: the kernel's
work for its system calls is not in it). Slow, but the count does not move
with what else the machine is doing, so it can compare two binaries on a
busy machine where CPU time cannot.

Python standard library, wrk, taskset, nginx, redis-server (valgrind for
--callgrind)."""

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from harness import NginxServer, RedisServer, free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def callgrind_instructions(pid, tmp):
    """Dump <pid>'s counts since the last zeroing, and return its total Ir."""
    for f in Path(tmp).glob("callgrind.out*"):
        f.unlink()
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    total = 0
    for f in Path(tmp).glob("callgrind.out*"):
        m = re.search(r"^summary:\s*(\d+)", f.read_text(errors="replace"), re.M)
        if m:
            total += int(m.group(1))
    return total


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def acl_deny_list(n):
    """<n> networks, seeded: /32s and /24s of IPv4 outside 127/8, /64s and /128s of
    IPv6, as a real deny list of scrapers is."""
    rnd = random.Random(7)
    out = []
    for i in range(n):
        if i % 4 == 3:
            words = [0x2001, 0xdb8] + [rnd.randrange(65536) for _ in range(6)]
            bits = rnd.choice((64, 128))
            out.append("%s/%d" % (":".join("%x" % w for w in words), bits))
        else:
            a = rnd.choice([x for x in range(1, 224) if x != 127])
            bits = rnd.choice((24, 32))
            out.append("%d.%d.%d.%d/%d" % (a, rnd.randrange(256), rnd.randrange(256),
                                           0 if bits == 24 else rnd.randrange(256), bits))
    return out


def config(scenario, port, upstream_port, tmp, redis_port=None):
    y = ("server:\n  listen: [\"127.0.0.1:%d\"]\n  workers: 1\n  access_log: false\n"
         "upstreams:\n  app:\n    servers: [\"127.0.0.1:%d\"]\n    keepalive: 64\n"
         "routes:\n  - prefix: /\n    upstream: app\n" % (port, upstream_port))
    if scenario in ("limit", "redis", "bare", "quota", "graphql_flat", "graphql_route",
                    "graphql_ops", "limit_1m"):
        y += "    limits: {anonymous: [\"4000000000/h\"]}\n"
    if scenario in ("graphql_route", "graphql_ops"):
        y += "    rejection: graphql\n"
    if scenario == "graphql_ops":
        y += ("    graphql: {query: \"4000000000/h\", mutation: \"1000/h\", operations: "
              "{Dashboard: \"4000000000/h\", tokenAuth: \"20/m\"}, max_depth: 10, "
              "max_aliases: 30, max_root_fields: 20, max_cost: 1000}\n")
    if scenario == "limit_1m":
        y = y.replace("  access_log: false\n",
                      "  access_log: false\n  trusted_proxies: [\"127.0.0.1/32\"]\n")
    if scenario in ("bare", "limit_1m"):
        # limit_1m: usage metering keeps a row per address, written to
        # SQLite, which would measure that rather than the limit store.
        y += "usage: {enabled: false}\n"
    if scenario == "quota":
        y += ("tiers:\n  anonymous: {quota: {daily: 1000000000000, monthly: 1000000000000}, "
              "price_per_1k: 0.5}\n")
    if scenario == "cache":
        y += "    cache: {ttl: 600s}\ncache:\n  max_memory: 256m\n"
    if scenario == "proxy_acl":
        y += "access:\n  deny: [%s]\n" % ", ".join(acl_deny_list(10000))
    if scenario == "redis":
        y += ("store:\n  backend: redis\n  redis: {url: \"redis://127.0.0.1:%d/0\", "
              "timeout: 50ms}\n" % redis_port)
    else:
        y += "store: {data_dir: \"%s/var\"}\n" % tmp
    return y


def start_gateways(a, ngx, reds, gws):
    """One gateway per binary (pinned to core 0), its redis-server if the
    scenario needs one, each warmed by one request; appended to <gws>."""
    for b, scen in ((a.bin_a, a.scenario), (a.bin_b, a.scenario_b or a.scenario)):
        tmp = tempfile.mkdtemp(prefix="sluice-cpu-ab-")
        port = free_port()
        rport = None
        if scen == "redis":
            reds.append(RedisServer().start())
            rport = reds[-1].port
        path = os.path.join(tmp, "sluice.yaml")
        with open(path, "w") as f:
            f.write(config(scen, port, ngx.port, tmp, rport))
        proc = subprocess.Popen(["taskset", "-c", "0", b, "serve", "-c", path],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        gws.append(("%s (%s)" % (b, scen), port, proc))
    time.sleep(1.5)
    for b, port, proc in gws:  # fills the cache; a gateway that did not start fails here
        subprocess.run(["curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:%d/" % port],
                       check=True)
    if a.scenario == "limit_1m":
        for b, port, proc in gws:  # a counter for each of the 1M addresses, in order
            subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c64", "-d%ds" % a.fill_seconds,
                            "-s", str(ROOT / "bench" / "identities.lua"),
                            "http://127.0.0.1:%d/" % port], capture_output=True, check=True,
                           env=dict(os.environ, IDENTITIES_FILL="1"))


def wrk_script(scenario):
    """wrk's -s option for <scenario>: its requests, if not a plain GET /."""
    if scenario.startswith("graphql"):
        return ["-s", str(ROOT / "bench" / "graphql.lua")]
    if scenario == "limit_1m":
        return ["-s", str(ROOT / "bench" / "identities.lua")]
    return []


ALLOC_PROBES = ("malloc", "calloc", "realloc")


def mallocs_ab(a, gws):
    """Calls to libc's malloc, calloc and realloc per request of each gateway
    (all threads), counted by perf uprobes while wrk runs: after a warm-up
    run, so pools and tables that fill once are not counted."""
    listed = subprocess.run(["perf", "list"], capture_output=True, text=True).stdout
    libc = next(p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6")
                if os.path.exists(p))
    for fn in ALLOC_PROBES:
        if "probe_libc:" + fn not in listed:
            subprocess.run(["perf", "probe", "-q", "-x", libc, "--add", fn], check=True)
    events = ",".join("probe_libc:" + fn for fn in ALLOC_PROBES)
    for b, port, proc in gws:
        url = "http://127.0.0.1:%d/" % port
        subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c64", "-d1s", url],
                       capture_output=True, check=True)
        r = subprocess.run(["perf", "stat", "-x,", "-e", events, "-p", str(proc.pid), "--",
                            "taskset", "-c", "1", "wrk", "-t1", "-c64", "-d%ds" % a.seconds] +
                           wrk_script(a.scenario) + [url],
                           capture_output=True, text=True, check=True)
        n = int(re.search(r"(\d+) requests in", r.stdout).group(1))
        calls = {fn: int(next(line for line in r.stderr.splitlines()
                              if "probe_libc:%s," % fn in line + ",").split(",")[0])
                 for fn in ALLOC_PROBES}
        print("%-48s %8d requests  allocations/request %5.2f  (%s)" % (
            b, n, sum(calls.values()) / n,
            " ".join("%s %.2f" % (fn, c / n) for fn, c in calls.items())))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    scenarios = ["proxy", "limit", "cache", "redis", "bare", "quota", "proxy_acl", "graphql_flat",
                 "graphql_route", "graphql_ops", "limit_1m"]
    ap.add_argument("scenario", choices=scenarios)
    ap.add_argument("bin_a")
    ap.add_argument("bin_b")
    ap.add_argument("--scenario-b", choices=scenarios)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--fill-seconds", type=int, default=40,
                    help="limit_1m: how long wrk fills the store with the 1M addresses first")
    ap.add_argument("--mallocs", action="store_true",
                    help="count libc malloc/calloc/realloc calls per request (perf uprobes) instead")
    ap.add_argument("--callgrind", action="store_true",
                    help="count instructions per request under callgrind instead of CPU time")
    a = ap.parse_args()
    if a.callgrind:
        return callgrind_ab(a)
    ngx = NginxServer(worker_connections=4096).start()
    reds, gws = [], []
    try:
        start_gateways(a, ngx, reds, gws)
        if a.mallocs:
            return mallocs_ab(a, gws)
        us = {b: [] for b, _, _ in gws}
        rps = {b: [] for b, _, _ in gws}
        scen = {gws[0][0]: a.scenario, gws[1][0]: a.scenario_b or a.scenario}
        for i in range(a.pairs):
            for b, port, proc in (gws if i % 2 == 0 else gws[::-1]):
                c0 = cpu_seconds(proc.pid)
                script = wrk_script(scen[b])
                out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c64",
                                      "-d%ds" % a.seconds] + script +
                                     ["http://127.0.0.1:%d/" % port],
                                     capture_output=True, text=True, check=True).stdout
                c1 = cpu_seconds(proc.pid)
                n = int(re.search(r"(\d+) requests in", out).group(1))
                if "Non-2xx" in out:
                    raise SystemExit("%s answered non-2xx: %s" % (b, out))
                us[b].append((c1 - c0) / n * 1e6)
                rps[b].append(float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1)))
    finally:
        for _, _, proc in gws:
            proc.terminate()
            proc.wait()
        ngx.stop()
        for r in reds:
            r.stop()
    for b, _, _ in gws:
        print("%-48s us/request: median %6.2f  (%s)" %
              (b, statistics.median(us[b]), " ".join("%.1f" % x for x in us[b])))
    for b, _, _ in gws:
        print("%-48s requests/s: median %8.0f" % (b, statistics.median(rps[b])))
    ratios = [y / x for x, y in zip(us[gws[0][0]], us[gws[1][0]])]
    print("%s: B/A paired median %.3f  (%s)" %
          (a.scenario, statistics.median(ratios), " ".join("%.2f" % r for r in ratios)))
    tput = [y / x for x, y in zip(rps[gws[0][0]], rps[gws[1][0]])]
    print("%s: throughput B/A paired median %.3f  (%s)" %
          (a.scenario, statistics.median(tput), " ".join("%.2f" % r for r in tput)))
    return 0


def callgrind_ab(a):
    """Each binary under callgrind in turn: warm up, zero the counts, run wrk
    (a few connections: valgrind serialises the gateway's threads), dump."""
    ngx = NginxServer(worker_connections=4096).start()
    per_req = {}
    try:
        for b, scen in ((a.bin_a, a.scenario), (a.bin_b, a.scenario_b or a.scenario)):
            if scen == "redis":
                raise SystemExit("--callgrind: the redis scenario is not supported")
            tmp = tempfile.mkdtemp(prefix="sluice-cg-ab-")
            port = free_port()
            path = os.path.join(tmp, "sluice.yaml")
            with open(path, "w") as f:
                f.write(config(scen, port, ngx.port, tmp))
            proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--collect-atstart=yes",
                                     "--callgrind-out-file=%s/callgrind.out.%%p" % tmp,
                                     b, "serve", "-c", path],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
            try:
                url = "http://127.0.0.1:%d/" % port
                for _ in range(300):
                    if subprocess.run(["curl", "-sf", "-o", "/dev/null", url]).returncode == 0:
                        break
                    time.sleep(0.1)
                subprocess.run(["wrk", "-t1", "-c4", "-d2s", url], capture_output=True, check=True)
                subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True,
                               capture_output=True)
                out = subprocess.run(["wrk", "-t1", "-c4", "-d%ds" % a.seconds, url],
                                     capture_output=True, text=True, check=True).stdout
                n = int(re.search(r"(\d+) requests in", out).group(1))
                ir = callgrind_instructions(proc.pid, tmp)
                per_req["%s (%s)" % (b, scen)] = ir / n
                print("%-48s %8d requests  %10.0f instructions/request" % (
                    "%s (%s)" % (b, scen), n, ir / n))
            finally:
                proc.terminate()
                proc.wait()
    finally:
        ngx.stop()
    (ka, va), (kb, vb) = per_req.items()
    print("%s: B/A instructions per request %.3f" % (a.scenario, vb / va))
    return 0


if __name__ == "__main__":
    sys.exit(main())
