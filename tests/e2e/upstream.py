#!/usr/bin/env python3
"""Test upstream for sluice's e2e suite (Python 3 standard library only).

Threaded HTTP/1.1 server with keep-alive and control endpoints:

  /echo, /graphql...    any method: JSON {method, path, query, target, version,
                        headers (lower-cased name -> list of values), body_len,
                        body_sha256, server}
  /slow?ms=N            reads the body, sleeps N ms, answers like /echo
  /count                GET: {"requests", "in_flight", "max_in_flight",
                        "connections", "open_connections",
                        "max_open_connections", "dropped",
                        "expect_100", "active" (targets in flight)}
  /count/reset          zero the counters (in-flight stays as it is)
  /chunked?n=K&size=S   K chunks of S bytes (Transfer-Encoding: chunked)
  /close-delimited?bytes=N[&version=1.0]
                        body without Content-Length, ended by closing
  /status/N             answers status N (JSON body unless N forbids a body)
  /big?bytes=N          N bytes of pattern_bytes() with Content-Length
  /headers              answers with hop-by-hop headers (Connection: X-Foo,
                        X-Foo, Keep-Alive, Proxy-Authenticate, Trailer,
                        Upgrade) plus a normal X-Normal: yes and two Set-Cookie
  /garbage              answers bytes that are not HTTP, then closes
  /hangup               closes the connection without answering
  /truncated?bytes=N&send=M
                        promises Content-Length N, sends M < N bytes, closes
  /origin/<anything>    a cacheable resource for the response-cache tests; the
                        query sets the response: cc= (Cache-Control), etag=,
                        lm=<unix seconds> (Last-Modified), vary=, tag= (Cache-Tag),
                        skey= (Surrogate-Key), cookie= (Set-Cookie), status=N,
                        ms=N (sleep first), bytes=N (N pattern bytes instead of
                        the JSON body). Answers "X-Origin-N: <n>", n counting the
                        requests for that path (query ignored) from 1, and a JSON
                        body {path, query, n, method, headers}. Server switches
                        origin_status / origin_delay_ms override status and delay
                        for every /origin request (set them on the object). In
                        process, origin_requests() lists what each /origin request
                        carried: {method, target, path, headers} in arrival order.
  /count/origin         GET: {path: requests} for /origin paths (not counted)
  any path, ?close=1    answer with "Connection: close" and close afterwards

Every response carries "X-Upstream: <name>" so tests can tell upstreams apart.
Requests to /count* are not counted. Requests are counted when their head has
been read, so overlapping requests are all counted.

Behaviour switches (constructor arguments, or command-line flags):
  idle_timeout  close a keep-alive connection idle longer than this (seconds)
  drop_after    on each connection, serve this many requests, then read the
                next request's head and close without answering (a pooled
                connection the server "had already closed")

In-process:   up = UpstreamServer(name="A").start(); up.port; up.stats(); up.stop()
Subprocess:   python3 upstream.py --port 0 --name A   (prints "READY <port>")
"""

import argparse
import hashlib
import json
import socket
import sys
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_PATTERN = bytes(range(33, 127)) * 64  # printable, period 94: misplaced bytes show


def pattern_bytes(n, offset=0):
    """Deterministic body of <n> bytes, as sent by /big, /chunked and /close-delimited."""
    out = bytearray()
    period = 94
    pos = offset % period
    while len(out) < n:
        take = min(n - len(out), len(_PATTERN) - pos)
        out += _PATTERN[pos:pos + take]
        pos = 0
    return bytes(out)


HOP_BY_HOP_RESPONSE_HEADERS = [
    ("Connection", "X-Foo"),
    ("X-Foo", "1"),
    ("Keep-Alive", "timeout=5, max=100"),
    ("Proxy-Authenticate", 'Basic realm="upstream"'),
    ("Proxy-Connection", "keep-alive"),
    ("Trailer", "X-Checksum"),
    ("Upgrade", "h2c"),
    ("X-Normal", "yes"),
    ("Set-Cookie", "a=1; Path=/"),
    ("Set-Cookie", "b=2; Path=/"),
]


def count_active(stats, match=None):
    """In-flight requests in <stats> (from stats() or /count), only those whose
    target contains <match> when given."""
    if match is None:
        return stats["in_flight"]
    return sum(1 for t in stats["active"] if match in t)


class UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sluice-test-upstream/1.0"
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        self.served = 0
        if self.server.idle_timeout is not None:
            self.connection.settimeout(self.server.idle_timeout)

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("upstream %s: %s\n" % (self.server.name, fmt % args))

    def handle_expect_100(self):
        self.server.note_expect()
        return super().handle_expect_100()

    # -- body and response helpers -------------------------------------------------

    def read_body(self):
        te = self.headers.get("Transfer-Encoding")
        if te is not None and te.lower().strip().endswith("chunked"):
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("EOF in chunked body")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                data = self.rfile.read(size)
                if len(data) != size:
                    raise ConnectionError("EOF in chunk")
                chunks.append(data)
                self.rfile.readline(3)
            self.body_framing = "chunked"
            return b"".join(chunks)
        cl = self.headers.get("Content-Length")
        if cl is not None:
            n = int(cl)
            data = self.rfile.read(n) if n else b""
            if len(data) != n:
                raise ConnectionError("EOF in body")
            self.body_framing = "content-length"
            return data
        self.body_framing = "none"
        return b""

    def send_raw(self, status, headers, body=b"", reason=None, version="HTTP/1.1"):
        """One write: status line, <headers> (list of pairs), body (dropped for HEAD)."""
        if reason is None:
            reason = self.responses.get(status, ("Unknown",))[0]
        lines = ["%s %d %s" % (version, status, reason),
                 "Date: " + self.date_time_string(),
                 "X-Upstream: " + self.server.name]
        lines.extend("%s: %s" % h for h in headers)
        if self.close_connection and not any(h[0].lower() == "connection" for h in headers):
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            data += body
        self.wfile.write(data)

    def send_json(self, status, obj, headers=()):
        body = json.dumps(obj).encode()
        hdrs = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        hdrs.extend(headers)
        self.send_raw(status, hdrs, body)

    # -- dispatch ------------------------------------------------------------------

    def dispatch(self):
        srv = self.server
        url = urlsplit(self.path)
        path = url.path
        self.query = parse_qs(url.query)
        if path.startswith("/count"):
            self.read_body()
            if path == "/count/origin":
                return self.send_json(200, srv.origin_counts())
            if path == "/count/reset":
                srv.reset()
            return self.send_json(200, srv.stats())
        if srv.drop_after is not None and self.served >= srv.drop_after:
            srv.note_dropped()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.served += 1
        if self.query.get("close", [""])[0] == "1":
            self.close_connection = True
        srv.enter(self.path)
        try:
            self.route(path, url)
        finally:
            srv.leave(self.path)

    def q_int(self, name, default):
        try:
            return int(self.query.get(name, [default])[0])
        except ValueError:
            return default

    def echo_obj(self, url, body):
        headers = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        return {
            "server": self.server.name,
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "target": self.path,
            "version": self.request_version,
            "headers": headers,
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_framing": self.body_framing,
        }

    def origin(self, url, body):
        """/origin/...: a response shaped by the query, for the cache tests."""
        srv = self.server
        n = srv.note_origin(url.path)
        seen = self.echo_obj(url, body)
        srv.note_origin_request({k: seen[k] for k in ("method", "target", "path", "headers")})
        delay = srv.origin_delay_ms if srv.origin_delay_ms is not None else self.q_int("ms", 0)
        if delay:
            time.sleep(delay / 1000.0)
        status = srv.origin_status if srv.origin_status is not None else self.q_int("status", 200)
        hdrs = [("X-Origin-N", str(n))]
        for param, name in (("cc", "Cache-Control"), ("etag", "ETag"), ("vary", "Vary"),
                            ("tag", "Cache-Tag"), ("skey", "Surrogate-Key"),
                            ("cookie", "Set-Cookie"), ("age", "Age")):
            for v in self.query.get(param, []):
                hdrs.append((name, v))
        if "lm" in self.query:
            hdrs.append(("Last-Modified", formatdate(self.q_int("lm", 0), usegmt=True)))
        if status in (204, 304):
            return self.send_raw(status, hdrs)
        if "bytes" in self.query:
            data = pattern_bytes(self.q_int("bytes", 0), n)
            hdrs += [("Content-Type", "application/octet-stream"),
                     ("Content-Length", str(len(data)))]
            return self.send_raw(status, hdrs, data)
        obj = self.echo_obj(url, body)
        obj["n"] = n
        return self.send_json(status, obj, hdrs)

    def route(self, path, url):
        body = self.read_body()
        if path.startswith("/origin/"):
            return self.origin(url, body)
        if path == "/echo" or path.startswith("/echo/") or path.startswith("/graphql"):
            return self.send_json(200, self.echo_obj(url, body))
        if path == "/slow":
            time.sleep(self.q_int("ms", 1000) / 1000.0)
            return self.send_json(200, self.echo_obj(url, body))
        if path == "/chunked":
            n, size = self.q_int("n", 3), self.q_int("size", 100)
            self.send_raw(200, [("Content-Type", "application/octet-stream"),
                                ("Transfer-Encoding", "chunked")])
            if self.command == "HEAD":
                return
            delay = self.q_int("delay_ms", 0) / 1000.0
            for i in range(n):
                data = pattern_bytes(size, i * size)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                if delay:
                    time.sleep(delay)
            self.wfile.write(b"0\r\n\r\n")
            return
        if path == "/close-delimited":
            n = self.q_int("bytes", 1000)
            version = "HTTP/1.0" if self.query.get("version", [""])[0] == "1.0" else "HTTP/1.1"
            self.close_connection = True
            self.send_raw(200, [("Content-Type", "application/octet-stream")], version=version)
            if self.command != "HEAD":
                for off in range(0, n, 65536):
                    self.wfile.write(pattern_bytes(min(65536, n - off), off))
            return
        if path == "/garbage":
            self.close_connection = True
            self.wfile.write(b"THIS IS NOT HTTP\r\n\r\n")
            return
        if path == "/hangup":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if path == "/truncated":
            n, m = self.q_int("bytes", 1000), self.q_int("send", 500)
            self.close_connection = True
            self.send_raw(200, [("Content-Type", "application/octet-stream"),
                                ("Content-Length", str(n))], pattern_bytes(m))
            return
        if path.startswith("/status/"):
            try:
                code = int(path[len("/status/"):])
            except ValueError:
                code = 400
            if code in (204, 304):
                return self.send_raw(code, [])
            return self.send_json(code, {"status": code})
        if path == "/big":
            n = self.q_int("bytes", 1 << 20)
            self.send_raw(200, [("Content-Type", "application/octet-stream"),
                                ("Content-Length", str(n))])
            if self.command != "HEAD":
                for off in range(0, n, 65536):
                    self.wfile.write(pattern_bytes(min(65536, n - off), off))
            return
        if path == "/headers":
            body = json.dumps(self.echo_obj(url, body)).encode()
            hdrs = list(HOP_BY_HOP_RESPONSE_HEADERS)
            hdrs += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            return self.send_raw(200, hdrs, body)
        return self.send_json(404, {"error": "Not Found", "message": "no test endpoint " + path})

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = dispatch


class UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, host="127.0.0.1", port=0, name="upstream", idle_timeout=None,
                 drop_after=None, verbose=False):
        self.name = name
        self.idle_timeout = idle_timeout
        self.drop_after = drop_after
        self.verbose = verbose
        self.lock = threading.Lock()
        self._thread = None
        self.active = []  # targets of the requests in flight
        self.origin_status = None  # overrides /origin statuses when set
        self.origin_delay_ms = None  # overrides /origin delays when set
        self._zero()
        super().__init__((host, port), UpstreamHandler)

    # -- counters ------------------------------------------------------------------

    def _zero(self):
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self.open_connections = getattr(self, "open_connections", 0)
        self.max_open_connections = self.open_connections
        self.dropped = 0
        self.expect_100 = 0
        self.origin = {}  # /origin path -> requests
        self.origin_log = []  # what each /origin request carried, in arrival order

    def reset(self):
        with self.lock:
            in_flight, open_conns = self.in_flight, self.open_connections
            self._zero()
            self.in_flight, self.max_in_flight = in_flight, in_flight
            self.open_connections = self.max_open_connections = open_conns

    def enter(self, target):
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.active.append(target)

    def leave(self, target):
        with self.lock:
            self.in_flight -= 1
            self.active.remove(target)

    def note_origin(self, path):
        """Count a request for /origin <path>; returns its number (1 for the first)."""
        with self.lock:
            self.origin[path] = self.origin.get(path, 0) + 1
            return self.origin[path]

    def note_origin_request(self, seen):
        with self.lock:
            self.origin_log.append(seen)

    def origin_requests(self):
        """{method, target, path, headers} of every /origin request, oldest first."""
        with self.lock:
            return list(self.origin_log)

    def origin_counts(self):
        with self.lock:
            return dict(self.origin)

    def origin_count(self, path):
        """Requests the /origin resource <path> (no query) has received."""
        with self.lock:
            return self.origin.get(path, 0)

    def note_dropped(self):
        with self.lock:
            self.dropped += 1

    def note_expect(self):
        with self.lock:
            self.expect_100 += 1

    def stats(self):
        with self.lock:
            return {"requests": self.requests, "in_flight": self.in_flight,
                    "max_in_flight": self.max_in_flight, "connections": self.connections,
                    "open_connections": self.open_connections,
                    "max_open_connections": self.max_open_connections, "dropped": self.dropped,
                    "expect_100": self.expect_100, "active": list(self.active)}

    def process_request(self, request, client_address):
        with self.lock:
            self.connections += 1
            self.open_connections += 1
            self.max_open_connections = max(self.max_open_connections, self.open_connections)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.lock:
            self.open_connections -= 1
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)

    # -- lifecycle -----------------------------------------------------------------

    @property
    def port(self):
        return self.server_address[1]

    def start(self):
        """Serve on a daemon thread; returns self."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="upstream-" + self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server_close()

    def wait_in_flight(self, n, timeout=10.0, match=None):
        """Wait until at least <n> requests are in flight (those whose target contains
        <match>, when given); True if they were. A request counts as in flight from
        its head being read until its answer is written, so without <match> one that
        was just answered may still count for a moment."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if count_active(self.stats(), match) >= n:
                return True
            time.sleep(0.01)
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(description="sluice e2e test upstream")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--name", default="upstream")
    ap.add_argument("--idle-timeout", type=float, default=None)
    ap.add_argument("--drop-after", type=int, default=None)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    srv = UpstreamServer(args.host, args.port, name=args.name, idle_timeout=args.idle_timeout,
                         drop_after=args.drop_after, verbose=args.verbose)
    print("READY %d" % srv.port, flush=True)
    try:
        srv.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
