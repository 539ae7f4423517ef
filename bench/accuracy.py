#!/usr/bin/env python3
"""bench/accuracy.py -- are exactly N requests per window admitted under load?

    python3 bench/accuracy.py [--limit 500] [--window 2] [--windows 5] [--rate 2.0]
                              [--bin build/sluice]

Drives one identity at about --rate times a limit of --limit requests per
--window seconds (fixed_window, whose windows start on multiples of the
window: the run starts on a boundary and lasts exactly --windows windows), and
counts the 200s against what the limit allows (limit x windows):

  memory   one gateway, the embedded store
  redis    two gateways sharing one Redis; requests alternate between them

Prints admitted / allowed for each and exits 1 when one is off by more than
0.5 %. Starts its own upstream, Redis and gateways on loopback.
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from harness import NginxServer, RedisServer, free_port, wait_for  # noqa: E402


def gateway(binary, upstream, limit, window, tmp, name, redis=None):
    port = free_port()
    cfg = {"server": {"listen": ["127.0.0.1:%d" % port], "workers": 2, "access_log": False},
           "store": {"data_dir": str(tmp / name)},
           "upstreams": {"app": {"servers": ["127.0.0.1:%d" % upstream], "keepalive": 64}},
           "limits": {"algorithm": "fixed_window"},
           "routes": [{"prefix": "/", "limits": {"anonymous": ["%d/%ds" % (limit, window)]}}]}
    if redis:
        cfg["store"]["backend"] = "redis"
        cfg["store"]["redis"] = {"url": "redis://127.0.0.1:%d/0" % redis, "timeout": "500ms"}
    path = tmp / (name + ".yaml")
    path.write_text(json.dumps(cfg))
    proc = subprocess.Popen([binary, "serve", "-c", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def healthy():
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/_sluice/health")
            return c.getresponse().status == 200
        except OSError:
            return False
    if not wait_for(healthy, timeout=10):
        proc.kill()
        raise SystemExit("gateway %s did not start" % name)
    return proc, port


def run(ports, limit, window, windows, rate, threads=8):
    """Send at <rate> x limit/window over <windows> windows that start on a
    boundary; returns (admitted, sent, other statuses)."""
    total_rps = rate * limit / window
    per_thread = total_rps / threads
    now = time.time()
    start = (int(now / window) + 1) * window + 0.05  # just past a boundary
    end = start + windows * window - 0.1            # just before the last one ends
    counts = {"ok": 0, "sent": 0, "other": {}}
    lock = threading.Lock()

    def worker(i):
        conn = http.client.HTTPConnection("127.0.0.1", ports[i % len(ports)], timeout=10)
        time.sleep(max(0, start - time.time()))
        n = 0
        while True:
            t = start + n / per_thread
            if t >= end:
                break
            time.sleep(max(0, t - time.time()))
            conn.request("GET", "/acc")
            r = conn.getresponse()
            r.read()
            with lock:
                counts["sent"] += 1
                if r.status == 200:
                    counts["ok"] += 1
                elif r.status != 429:
                    counts["other"][r.status] = counts["other"].get(r.status, 0) + 1
            n += 1
        conn.close()

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return counts["ok"], counts["sent"], counts["other"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--window", type=int, default=2)
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--rate", type=float, default=2.0)
    ap.add_argument("--bin", default=os.environ.get("SLUICE_BIN", str(ROOT / "build/sluice")))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sluice-accuracy-"))
    ngx = NginxServer(4096).start()
    redis = RedisServer().start()
    procs = []
    bad = False
    try:
        allowed = a.limit * a.windows
        p, port = gateway(a.bin, ngx.port, a.limit, a.window, tmp, "memory")
        procs.append(p)
        ok, sent, other = run([port], a.limit, a.window, a.windows, a.rate)
        ratio = ok / allowed
        print("memory: sent %d, admitted %d / allowed %d = %.4f %s" %
              (sent, ok, allowed, ratio, other or ""))
        bad |= abs(ratio - 1) > 0.005 or bool(other)
        p1, port1 = gateway(a.bin, ngx.port, a.limit, a.window, tmp, "redis-a", redis.port)
        p2, port2 = gateway(a.bin, ngx.port, a.limit, a.window, tmp, "redis-b", redis.port)
        procs += [p1, p2]
        ok, sent, other = run([port1, port2], a.limit, a.window, a.windows, a.rate)
        ratio = ok / allowed
        print("redis, 2 gateways: sent %d, admitted %d / allowed %d = %.4f %s" %
              (sent, ok, allowed, ratio, other or ""))
        bad |= abs(ratio - 1) > 0.005 or bool(other)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        redis.stop()
        ngx.stop()
    print("verdict: %s" % ("ok (within 0.5 %)" if not bad else "off by more than 0.5 %"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
