#!/usr/bin/env python3
"""Memory of idle keep-alive connections: sluice's RSS per connection.

    python3 bench/idle_conns.py [-n 10000] [--bin build/sluice]

Starts the gateway ($SLUICE_BIN or build/sluice; --bin overrides both) with one
worker in front of the e2e test upstream, each on a free loopback port, in a
temporary directory. Opens N keep-alive connections, sends one small request on
each and reads its answer, so that every connection has been used and now idles
between requests, as a browser's or an SDK's does. Reads the gateway's VmRSS
(/proc/<pid>/status) before the connections are opened and after, and prints
the difference per connection. Python 3 standard library only.

Both this process and the gateway need N file descriptors and some: the script
raises RLIMIT_NOFILE's soft limit up to the hard one and fails early when that
is too low.
"""

import argparse
import errno
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPSTREAM_PY = os.path.join(REPO, "tests", "e2e", "upstream.py")
REQUEST = b"GET /echo HTTP/1.1\r\nHost: bench.test\r\n\r\n"
WAVE = 500  # connections opened and used at a time: the listen backlog is never the limit


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def config(port, upstream_port):
    return """server:
  listen: ["127.0.0.1:%d"]
  workers: 1
  max_connections: 20000
  access_log: false
  timeouts: {idle: 600s}
upstreams:
  app:
    servers: ["127.0.0.1:%d"]
    keepalive: 64
routes:
  - prefix: /
    upstream: app
""" % (port, upstream_port)


def wait_health(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the gateway exited with %s" % proc.returncode)
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/_sluice/health" % port,
                                        timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the gateway did not become healthy")


def response_complete(data):
    """True when <data> holds one whole response with a Content-Length body."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    length = 0
    for line in data[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return len(data) >= end + 4 + length


def open_wave(port, n, timeout=30.0):
    """<n> connections, each with one request answered; returns the open sockets."""
    sel = selectors.DefaultSelector()
    socks, todo, got = [], {}, {}
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, os.strerror(err))
        socks.append(s)
        todo[s] = REQUEST
        got[s] = b""
        sel.register(s, selectors.EVENT_WRITE)
    left = n
    deadline = time.monotonic() + timeout
    while left:
        if time.monotonic() > deadline:
            raise RuntimeError("%d of %d connections not answered in %.0fs" % (left, n, timeout))
        for key, ev in sel.select(1.0):
            s = key.fileobj
            if ev & selectors.EVENT_WRITE:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, "connect: " + os.strerror(err))
                k = s.send(todo[s])
                todo[s] = todo[s][k:]
                if not todo[s]:
                    sel.modify(s, selectors.EVENT_READ)
                continue
            data = s.recv(65536)
            if not data:
                raise RuntimeError("the gateway closed a connection before answering")
            got[s] += data
            if response_complete(got[s]):
                if not got[s].startswith(b"HTTP/1.1 200"):
                    raise RuntimeError("unexpected answer %r" % got[s][:80])
                sel.unregister(s)
                left -= 1
    sel.close()
    return socks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10000, help="idle connections (default 10000)")
    ap.add_argument("--bin", help="the sluice binary (default $SLUICE_BIN or build/sluice)")
    args = ap.parse_args()
    binary = args.bin or os.environ.get("SLUICE_BIN") or os.path.join(REPO, "build", "sluice")
    need = args.n + 256
    if raise_nofile(need) < need:
        sys.exit("RLIMIT_NOFILE is too low for %d connections (hard limit %d)"
                 % (args.n, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    tmp = tempfile.mkdtemp(prefix="sluice-idle-")
    up = gw = None
    socks = []
    try:
        up = subprocess.Popen([sys.executable, UPSTREAM_PY, "--port", "0", "--name", "bench"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = up.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError("the upstream did not start: %r" % line)
        port = free_port()
        path = os.path.join(tmp, "sluice.yaml")
        with open(path, "w") as f:
            f.write(config(port, int(line.split()[1])))
        err = open(os.path.join(tmp, "stderr.log"), "wb")
        gw = subprocess.Popen([binary, "serve", "-c", path], cwd=tmp, stdout=err, stderr=err,
                              stdin=subprocess.DEVNULL, preexec_fn=lambda: raise_nofile(need))
        wait_health(port, gw)
        socks += open_wave(port, 10)  # first-use allocations (pools, metrics) out of the way
        for s in socks:
            s.close()
        socks = []
        time.sleep(0.5)
        before = rss_kib(gw.pid)
        t0 = time.monotonic()
        while len(socks) < args.n:
            socks += open_wave(port, min(WAVE, args.n - len(socks)))
        time.sleep(1.0)
        after = rss_kib(gw.pid)
        per = (after - before) / args.n
        print("binary:       %s" % binary)
        print("connections:  %d idle keep-alive, each used once (%.1fs to open)"
              % (args.n, time.monotonic() - t0))
        print("gateway RSS:  %d KiB before, %d KiB after" % (before, after))
        print("per idle connection: %.2f KiB" % per)
    finally:
        for s in socks:
            s.close()
        for p in (gw, up):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if up is not None:
            up.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
