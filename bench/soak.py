#!/usr/bin/env python3
"""bench/soak.py -- many keep-alive connections and many API keys for a while.

    python3 bench/soak.py [--connections 10000] [--keys 1000] [--seconds 60]
                          [--workers 2] [--bin build/sluice] [--trace]

Starts an nginx upstream (`return 200`), a sluice gateway in front of it with a
limited route (per tier and per route, high enough not to refuse), creates
--keys API keys with the CLI, opens --connections keep-alive connections at
once and keeps every one of them busy (request, response, next request, each
with one of the keys in X-API-Key) for --seconds. Prints requests/s, p50/p99
latency, statuses, and the gateway's RSS and open file descriptors sampled
every second: RSS must be flat after the warm-up (the median of the last
quarter of the run within 10 % of the second quarter's), no 5xx, and no descriptor
left behind once the clients close. Exit status 1 when one of those fails.

Python standard library only (asyncio). Everything runs on loopback."""

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from harness import NginxServer, free_port, raise_nofile, wait_for  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def median_rss(samples):
    values = sorted(s[2] for s in samples)
    return values[len(values) // 2]


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def upstream_connections(admin):
    """Connections the gateway keeps open to the upstream (its keep-alive pools)."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
    c.request("GET", "/metrics", headers={"Authorization": "Bearer soak"})
    text = c.getresponse().read().decode()
    c.close()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("sluice_upstream_connections{"))


def start_gateway(binary, upstream_port, workers, tmp):
    port, admin = free_port(), free_port()
    cfg = {
        "server": {"listen": ["127.0.0.1:%d" % port], "workers": workers,
                   "max_connections": 100000, "access_log": False,
                   "timeouts": {"idle": "300s"}},
        "admin": {"listen": "127.0.0.1:%d" % admin, "token": "soak"},
        "store": {"data_dir": str(tmp / "var")},
        "upstreams": {"app": {"servers": ["127.0.0.1:%d" % upstream_port], "keepalive": 256,
                              "max_connections": 1024}},
        "tiers": {"anonymous": {"limits": ["1000000/h"]}, "pro": {"limits": ["1000000/h"]}},
        "routes": [{"prefix": "/", "limits": {"*": ["10000000/h"]}}],
    }
    path = tmp / "sluice.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return port, admin, path


async def client(port, keys, i, deadline, stats):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        stats["connect_errors"] += 1
        stats["last_error"] = repr(e)
        return
    stats["connected"] += 1
    await stats["all_connected"].wait()
    key = keys[i % len(keys)]
    req = ("GET /soak/%d HTTP/1.1\r\nHost: soak\r\nX-API-Key: %s\r\n\r\n" % (i, key)).encode()
    loop = asyncio.get_running_loop()
    try:
        while loop.time() < deadline:
            t0 = loop.time()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            stats["status"][status] = stats["status"].get(status, 0) + 1
            if len(stats["lat"]) < 2_000_000:
                stats["lat"].append(loop.time() - t0)
    except (OSError, asyncio.IncompleteReadError) as e:
        stats["errors"] += 1
        stats["last_error"] = repr(e)
    writer.close()


async def drive(port, keys, n, seconds, stats, samples, pid):
    stats["all_connected"] = asyncio.Event()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3600
    tasks = [asyncio.create_task(client(port, keys, i, deadline, stats)) for i in range(n)]
    while stats["connected"] + stats["connect_errors"] < n:
        await asyncio.sleep(0.05)
    samples.append(("connected", time.monotonic(), rss_kib(pid), fds(pid)))
    end = loop.time() + seconds
    stats["t0"] = time.monotonic()
    stats["all_connected"].set()
    for t in tasks:  # every client stops at the deadline
        pass
    while loop.time() < end:
        await asyncio.sleep(1)
        samples.append(("run", time.monotonic(), rss_kib(pid), fds(pid)))
    stats["t1"] = time.monotonic()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bin", default=os.environ.get("SLUICE_BIN", str(ROOT / "build/sluice")))
    ap.add_argument("--trace", action="store_true", help="print RSS and fds every second")
    a = ap.parse_args()
    raise_nofile(a.connections * 2 + 1024)
    tmp = Path(tempfile.mkdtemp(prefix="sluice-soak-"))
    ngx = NginxServer(worker_connections=4096).start()
    gw = None
    try:
        port, admin, cfg = start_gateway(a.bin, ngx.port, a.workers, tmp)
        keys = []
        for i in range(a.keys):
            out = subprocess.run([a.bin, "keys", "create", "-c", str(cfg), "--tier", "pro",
                                  "--name", "soak-%d" % i, "--json"], check=True,
                                 capture_output=True, text=True).stdout
            keys.append(json.loads(out)["secret"])
        gw = subprocess.Popen([a.bin, "serve", "-c", str(cfg)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        import socket
        def up():
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return True
            except OSError:
                return False
        if not wait_for(up, timeout=10):
            raise SystemExit("the gateway did not start")
        before = (rss_kib(gw.pid), fds(gw.pid))
        stats = {"connected": 0, "connect_errors": 0, "errors": 0, "status": {}, "lat": [],
                 "last_error": None}
        samples = []
        asyncio.run(drive(port, keys, a.connections, a.seconds, stats, samples, gw.pid))
        time.sleep(2)  # the gateway notices the closes
        after = (rss_kib(gw.pid), fds(gw.pid))
        pooled = upstream_connections(admin)
    finally:
        if gw:
            gw.terminate()
            gw.wait(10)
        ngx.stop()

    lat = sorted(stats["lat"])
    total = sum(stats["status"].values())
    secs = stats["t1"] - stats["t0"]
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000) if lat else (lambda q: 0)
    run = [s for s in samples if s[0] == "run"]
    # Medians, not single samples: RSS moves by ~10 % second to second with
    # the requests in flight; a leak shows as the last quarter sitting higher.
    quarter = max(1, len(run) // 4)
    warm = median_rss(run[quarter:2 * quarter]) if run else samples[-1][2]
    late = median_rss(run[-quarter:]) if run else samples[-1][2]
    peak = max(s[2] for s in run) if run else 0
    print("connections %d (failed %d), keys %d, %d s, workers %d" %
          (stats["connected"], stats["connect_errors"], a.keys, a.seconds, a.workers))
    print("requests %d, %.0f req/s, p50 %.1f ms, p99 %.1f ms, errors %d %s" %
          (total, total / secs if secs else 0, pct(0.50), pct(0.99), stats["errors"],
           stats["last_error"] or ""))
    print("statuses %s" % json.dumps(stats["status"], sort_keys=True))
    print("gateway RSS: start %d KiB, all connected %d KiB, after warm-up %d KiB (median of "
          "the 2nd quarter), last quarter %d KiB (median), peak %d KiB" %
          (before[0], samples[0][2], warm, late, peak))
    print("gateway fds: start %d, during %d, after the clients closed %d (%d of them pooled "
          "upstream connections)" % (before[1], samples[0][3], after[1], pooled))
    bad = []
    if any(s >= 500 for s in stats["status"]):
        bad.append("5xx answers")
    if after[1] - pooled > before[1] + 16:
        bad.append("descriptors left behind")
    if late > warm * 1.10 + 8192:
        bad.append("RSS grew more than 10 %% after the warm-up (%d -> %d KiB)" % (warm, late))
    if stats["connect_errors"] or stats["errors"]:
        bad.append("client errors")
    if a.trace:
        t0 = samples[0][1]
        for kind, t, rss, nfd in samples:
            print("  %-9s %6.1f s  RSS %7d KiB  fds %d" % (kind, t - t0, rss, nfd))
    print("verdict: %s" % ("ok" if not bad else "; ".join(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
