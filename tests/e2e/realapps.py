"""Real frameworks behind sluice (issue 17): the app servers the tests start,
and the scenarios both suites run (test_drf.py: Django REST framework under
Debian's gunicorn; test_express.py: Express under Node.js).

Both apps (tests/e2e/apps/) have the same endpoints:
  POST /api/leads/            201, what arrived: {received, sha256, content_length,
                              transfer_encoding, lead (a counter)}
  GET  /api/market/overview   JSON with a counter "served" (cache hits don't count)
  GET  /api/big?mb=N          N MiB, byte i = i % 251 (gunicorn: chunked; Express: length)
  GET  /api/empty             204
  GET  /api/etag              ETag, 304 on If-None-Match
  GET  /api/redirect          302 to ?to= (default /api/headers); ?absolute=1: an
                              absolute URL the framework builds from the forwarded headers
  *    /api/headers           the request as the app saw it (headers, host, scheme,
                              path, query), with a response header X-App-Internal
  GET  /api/stats             the counters: leads, market, big (Express: and
                              connections accepted)
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from harness import (REPO_ROOT, RawConn, _die_with_parent, build_request, concurrent_requests,
                     free_port, http_request, make_config, sluice_bin, wait_for)

APPS = REPO_ROOT / "tests" / "e2e" / "apps"
# Debian's Python: the one python3-django, -djangorestframework and gunicorn
# install into (python3 on PATH may be another one, without Django).
DEBIAN_PYTHON = "/usr/bin/python3"
MB = 1 << 20
# The Host clients send: one of the DRF app's ALLOWED_HOSTS.
HOST = "api.example.test"


def pattern(n):
    """The first <n> bytes of /api/big: byte i is i % 251."""
    period = bytes(range(251))
    return (period * (n // 251 + 1))[:n]


class AppServer:
    """A framework's app server in a subprocess on a free loopback port, its
    output in a temp dir (shown when a test fails), killed with the test runner."""

    name = "app"
    idle_close_s = 0.0  # how long the app keeps an idle keep-alive connection

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sluice-%s-" % self.name)
        self.log_path = os.path.join(self.dir, "app.log")
        self.proc = None
        self.port = None

    def command(self):
        raise NotImplementedError

    def start(self):
        cmd, env, cwd = self.command()
        full_env = dict(os.environ)
        full_env.update(env)
        full_env["APP_STATE_DIR"] = self.dir
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._log,
                                     preexec_fn=_die_with_parent)
        self.port = self.wait_port()
        if not wait_for(self._answers, timeout=20):
            self.stop()
            raise RuntimeError("%s did not answer GET /api/stats on port %s:\n%s"
                               % (self.name, self.port, self.log()))
        return self

    def wait_port(self):
        return self.port

    def _answers(self):
        if self.proc.poll() is not None:
            raise RuntimeError("%s exited with %s:\n%s" % (self.name, self.proc.returncode,
                                                          self.log()))
        try:
            return http_request(self.port, "GET", "/api/stats", timeout=2).status == 200
        except OSError:
            return False

    def stats(self):
        """The app's counters, asked directly (not through the gateway)."""
        return http_request(self.port, "GET", "/api/stats").json()

    def log(self, tail=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-tail:]
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.proc.stdout.close()
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Gunicorn(AppServer):
    """tests/e2e/apps/drf under Debian's gunicorn: 2 sync workers, which close
    the connection after every response and read only Content-Length bodies."""

    name = "gunicorn"
    workers = 2

    def command(self):
        if not os.path.exists(DEBIAN_PYTHON):
            raise RuntimeError("%s is missing: run scripts/deps" % DEBIAN_PYTHON)
        probe = subprocess.run([DEBIAN_PYTHON, "-c", "import django, rest_framework, gunicorn"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            raise RuntimeError("Django REST framework or gunicorn is not installed for %s "
                               "(python3-django, python3-djangorestframework, gunicorn): run "
                               "scripts/deps\n%s" % (DEBIAN_PYTHON, probe.stderr))
        self.port = free_port()
        return ([DEBIAN_PYTHON, "-m", "gunicorn", "--worker-class", "sync",
                 "--workers", str(self.workers), "--bind", "127.0.0.1:%d" % self.port,
                 "--forwarded-allow-ips", "127.0.0.1", "--timeout", "60", "wsgi:application"],
                {"DJANGO_SETTINGS_MODULE": "settings", "PYTHONDONTWRITEBYTECODE": "1"},
                str(APPS / "drf"))


EXPRESS_DIR = APPS / "express"


def ensure_express():
    """npm install express into tests/e2e/apps/express/node_modules (git-ignored)
    once; a missing node or npm is an error, not a skip."""
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            raise RuntimeError("%s is not on PATH: run scripts/deps (Debian's nodejs and npm)"
                               % tool)
    if (EXPRESS_DIR / "node_modules" / "express" / "package.json").exists():
        return
    p = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=str(EXPRESS_DIR), capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("npm install in %s failed (%d):\n%s%s"
                           % (EXPRESS_DIR, p.returncode, p.stdout[-2000:], p.stderr[-2000:]))


class Express(AppServer):
    """tests/e2e/apps/express/server.js under node. Node keeps connections
    alive but closes idle ones after keepAliveTimeout, shortened here to
    KEEPALIVE_MS so that the gateway's pool meets closed connections."""

    name = "express"
    keepalive_ms = 300
    idle_close_s = keepalive_ms / 1000 + 1.0  # Node 20 closes about 1 s after the timeout

    def command(self):
        ensure_express()
        return (["node", "server.js"],
                {"PORT": "0", "KEEPALIVE_MS": str(self.keepalive_ms)}, str(EXPRESS_DIR))

    def wait_port(self):
        line = self.proc.stdout.readline().decode("utf-8", "replace")
        if not line.startswith("READY "):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("express did not start: %r\n%s" % (line, self.log()))
        return int(line.split()[1])


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


class RealAppCases:
    """The scenarios, mixed into an E2ETestCase whose class sets APP (an
    AppServer class) and what differs between the frameworks."""

    APP = None
    # What the app receives of a chunked body the gateway does not de-chunk
    # (request_buffering: off): a WSGI server passes no length, so Django sees
    # an empty body; Node reads chunked bodies.
    CHUNKED_BODY_ARRIVES = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.app = cls.APP().start()

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()
        super().tearDownClass()

    def run(self, result=None):
        # the app server's log goes with a failure
        r = super().run(result)
        if result is not None and (result.failures or result.errors) and \
                any(t is self for t, _ in result.failures + result.errors):
            sys.stderr.write("\n--- %s: %s log:\n%s\n" % (self.id(), self.app.name,
                                                          self.app.log()))
        return r

    # -- gateway ---------------------------------------------------------------

    def gateway(self, routes, upstream=None, env=None):
        cfg = make_config({"app": self.app.port}, routes=routes, workers=2)
        cfg["upstreams"]["app"]["max_connections"] = 8
        cfg["upstreams"]["app"].update(upstream or {})
        cfg["tiers"] = {"pro": {"limits": ["1000/h"]}}
        cfg["limits"] = {"headers": ["x-ratelimit", "ietf"]}
        return self.start_gateway(cfg, env=env)

    def create_key(self, gw, tier):
        p = subprocess.run([sluice_bin(), "keys", "create", "-c", gw.config_path, "--tier", tier,
                            "--name", "e2e", "--json"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        k = json.loads(p.stdout)
        return k["key"]["id"], k["secret"]

    def post_json(self, gw, path, obj, headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return gw.request("POST", path, body=json.dumps(obj).encode(), headers=h)

    # -- the seed's scenarios --------------------------------------------------

    def test_leads_burst_2_per_min_and_10_per_hour_with_drf_body(self):
        gw = self.gateway([{"path": "/api/leads/", "methods": ["POST"],
                            "limits": {"anonymous": ["2/min", "10/hour"]}, "rejection": "drf"},
                           {"prefix": "/"}])
        before = self.app.stats()["leads"]
        ok = [self.post_json(gw, "/api/leads/", {"name": "Ada", "email": "ada@example.test"})
              for _ in range(2)]
        for r in ok:
            self.assertEqual(r.status, 201, r)
            self.assertEqual(r.json()["received"], len(json.dumps(
                {"name": "Ada", "email": "ada@example.test"})))
        # both limits apply and both were consumed by the admitted requests
        self.assertEqual(ok[1].header("RateLimit-Policy"),
                         '"per-minute";q=2;w=60, "hourly";q=10;w=3600')
        self.assertRegex(ok[1].header("RateLimit"), r'^"per-minute";r=0;t=\d+, "hourly";r=8;t=\d+$')
        r = self.post_json(gw, "/api/leads/", {"name": "Ada"})
        self.assertEqual(r.status, 429, r)
        m = re.fullmatch(r"Request was throttled\. Expected available in (\d+) seconds?\.",
                         r.json()["detail"])
        self.assertIsNotNone(m, r.body)
        self.assertEqual(list(r.json()), ["detail"])
        wait = int(m.group(1))
        # up to 90 s: the sliding window (the default algorithm) admits again
        # once the weighted count of the last two windows falls below 2
        self.assertTrue(1 <= wait <= 90, wait)
        self.assertEqual(r.header("Retry-After"), str(wait))
        # the refused request consumed nothing and never reached the app
        self.assertRegex(r.header("RateLimit"), r'"hourly";r=8;')
        self.assertEqual(self.app.stats()["leads"], before + 2)

    def test_market_overview_cached_and_limited_per_tier(self):
        gw = self.gateway([{"path": "/api/market/overview", "methods": ["GET", "HEAD"],
                            "limits": {"anonymous": ["3/min"], "pro": ["5/min"]},
                            "cache": {"ttl": "300s", "tags": ["market"]}},
                           {"prefix": "/"}])
        before = self.app.stats()["market"]
        anon = [gw.request("GET", "/api/market/overview") for _ in range(3)]
        self.assertEqual([r.status for r in anon], [200, 200, 200])
        self.assertEqual([r.header("X-Cache") for r in anon], ["MISS", "HIT", "HIT"])
        self.assertEqual({r.json()["served"] for r in anon}, {before + 1})
        self.assertEqual(anon[0].header("X-RateLimit-Limit"), "3")
        self.assertEqual(anon[2].header("X-RateLimit-Remaining"), "0")
        # a cache hit still counts against the limit: the 4th is refused
        r = gw.request("GET", "/api/market/overview")
        self.assertEqual(r.status, 429)
        self.assertEqual(r.json()["error"], "Rate limit exceeded")
        # a key of tier pro: its own limit (5/min), its own cache entry
        _, secret = self.create_key(gw, "pro")
        pro = [gw.request("GET", "/api/market/overview", headers={"X-API-Key": secret})
               for _ in range(5)]
        self.assertEqual([r.status for r in pro], [200] * 5, pro)
        self.assertEqual(pro[0].header("X-RateLimit-Limit"), "5")
        self.assertEqual([r.header("X-Cache") for r in pro], ["MISS"] + ["HIT"] * 4)
        self.assertEqual(gw.request("GET", "/api/market/overview",
                                    headers={"X-API-Key": secret}).status, 429)
        # the app computed the overview twice in all (once per identity)
        self.assertEqual(self.app.stats()["market"], before + 2)

    # -- request bodies ----------------------------------------------------------

    def upload_chunked(self, gw, body, piece=64 * 1024, path="/api/leads/"):
        c = self.raw(gw, timeout=30)
        chunks = [body[i:i + piece] for i in range(0, len(body), piece)]
        c.send(build_request("POST", path, headers={"Content-Type": "application/octet-stream"},
                             body=chunks, chunked=True, host=HOST))
        r = c.read_response()
        self.assertEqual(r.status, 201, r)
        return r.json()

    def test_chunked_uploads_of_10_bytes_and_5_mb_arrive_whole(self):
        gw = self.gateway([{"prefix": "/"}])  # request_buffering: auto
        for body in (b"0123456789", os.urandom(5 * MB)):
            got = self.upload_chunked(gw, body)
            self.assertEqual(got["received"], len(body))
            self.assertEqual(got["sha256"], hashlib.sha256(body).hexdigest())
            self.assertEqual(got["content_length"], str(len(body)))
            self.assertIsNone(got["transfer_encoding"])

    def test_chunked_upload_without_buffering(self):
        gw = self.gateway([{"prefix": "/", "request_buffering": "off"}])
        got = self.upload_chunked(gw, b"0123456789")
        self.assertEqual(got["transfer_encoding"], "chunked")
        self.assertIsNone(got["content_length"])
        self.assertEqual(got["received"], 10 if self.CHUNKED_BODY_ARRIVES else 0)

    # -- responses ---------------------------------------------------------------

    def test_100_mb_download_streams_with_bounded_gateway_memory(self):
        env = None
        if os.environ.get("SLUICE_SANITIZED"):
            # ASan keeps freed memory in a quarantine (256 MiB by default), which
            # 100 MiB of buffers passing through would fill: keep it small so
            # that RSS still tells whether the gateway holds the body.
            env = {"ASAN_OPTIONS": ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                          "quarantine_size_mb=4"]))}
        gw = self.gateway([{"prefix": "/"}], env=env)
        # warm-up: pools, buffers and both workers' first use
        for _ in range(2):
            self.assertEqual(len(gw.request("GET", "/api/big?mb=2").body), 2 * MB)
        base = rss(gw.proc.pid)
        size = 100 * MB
        expect = hashlib.sha256()
        block = pattern(251 * 4096)
        for off in range(0, size, len(block)):
            expect.update(block[:min(len(block), size - off)])
        got = hashlib.sha256()
        n = 0
        peak = base
        with RawConn(gw.port, timeout=30) as c:
            c.send(build_request("GET", "/api/big?mb=100", host=HOST))
            head = c.reader.read_until(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
            chunked = b"transfer-encoding: chunked" in head.lower()
            t0 = time.monotonic()
            paused = False
            body = _body_reader(c, chunked, head)
            for piece in body:
                got.update(piece)
                n += len(piece)
                if not paused and n >= 8 * MB:
                    # a slow client: the app writes on, the gateway must stop reading it
                    time.sleep(1.0)
                    paused = True
                    peak = max(peak, rss(gw.proc.pid))
                if n % (8 * MB) < len(piece):
                    peak = max(peak, rss(gw.proc.pid))
            elapsed = time.monotonic() - t0
        self.assertEqual(n, size)
        self.assertEqual(got.hexdigest(), expect.hexdigest(), "the body was altered")
        peak = max(peak, rss(gw.proc.pid))
        grew = (peak - base) / MB
        sys.stderr.write("[100 MiB through the gateway in %.2fs, RSS %.1f -> %.1f MiB] "
                         % (elapsed, base / MB, peak / MB))
        self.assertLess(grew, 32, "gateway RSS grew by %.1f MiB during a 100 MiB download"
                        % grew)

    def test_head_204_304_and_redirects_on_one_connection(self):
        gw = self.gateway([{"prefix": "/"}])
        c = self.raw(gw)

        def req(method, path, headers=None, host=HOST):
            r = c.request(build_request(method, path, headers=headers, host=host),
                          head_request=(method == "HEAD"))
            return r

        r = req("HEAD", "/api/market/overview")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("application/json"))
        self.assertEqual(r.body, b"")
        r = req("HEAD", "/api/big?mb=1")
        self.assertEqual(r.status, 200, r)
        r = req("GET", "/api/empty")
        self.assertEqual(r.status, 204, r)
        self.assertIsNone(r.header("Content-Length"))
        self.assertIsNone(r.header("Transfer-Encoding"))
        r = req("GET", "/api/etag")
        self.assertEqual((r.status, r.body), (200, b"versioned body\n"), r)
        etag = r.header("ETag")
        self.assertTrue(etag, r)
        r = req("GET", "/api/etag", headers={"If-None-Match": etag})
        self.assertEqual(r.status, 304, r)
        self.assertEqual(r.header("ETag"), etag)
        self.assertIsNone(r.header("Transfer-Encoding"))
        r = req("GET", "/api/redirect")
        self.assertEqual(r.status, 302, r)
        self.assertEqual(r.header("Location"), "/api/headers")
        # the framework builds absolute URLs from the Host and X-Forwarded-*
        # the gateway sends: the client's host, the scheme the client used
        r = req("GET", "/api/redirect?absolute=1&to=/api/empty",
                headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.test"})
        self.assertEqual(r.status, 302, r)
        self.assertEqual(r.header("Location"), "http://api.example.test/api/empty")
        # and the connection still carries requests after all of those
        r = req("GET", "/api/headers?after=1")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["query"], "after=1")

    def test_pool_survives_connections_the_app_closes(self):
        gw = self.gateway([{"prefix": "/"}], upstream={"keepalive": 16})
        stats = self.app.stats()
        before = stats["leads"]
        n = 0
        with RawConn(gw.port) as c:
            for i in range(24):
                if i in (8, 16):
                    # long enough for the app to close idle pooled connections
                    time.sleep(self.app.idle_close_s + 0.15)
                r = c.request(build_request("POST", "/api/leads/", body=b"lead %d" % i,
                                            headers={"Content-Type": "text/plain"}, host=HOST))
                self.assertEqual(r.status, 201, "request %d: %r" % (i, r))
                self.assertEqual(r.json()["received"], len(b"lead %d" % i))
                n += 1
        # each POST reached the app exactly once: none lost, none replayed
        after = self.app.stats()
        self.assertEqual(after["leads"], before + n)
        if "connections" in after:
            # an app that keeps connections alive (Node): the pool reused them,
            # and opened a new one after each of the 2 pauses (the last
            # connection counted is the one that asked for the stats)
            opened = after["connections"] - stats["connections"] - 1
            self.assertTrue(3 <= opened <= 5, "%d connections for %d requests" % (opened, n))
        # a burst, more connections than the app has workers
        _, res = concurrent_requests(gw.port, 24, build_request("GET", "/api/headers",
                                                                 close=True, host=HOST))
        statuses = [r.split(b" ", 2)[1] if isinstance(r, bytes) and r else r for r in res]
        self.assertEqual(statuses, [b"200"] * 24)

    # -- proxying ----------------------------------------------------------------

    def test_strip_prefix_and_header_rules(self):
        gw = self.gateway([{"prefix": "/v1/", "strip_prefix": True,
                            "request_headers": {"set": {"X-Client-IP": "$client_ip",
                                                        "X-Gateway": "sluice"},
                                                "remove": ["X-Debug"]},
                            "response_headers": {"set": {"X-Frame-Options": "DENY"},
                                                 "remove": ["X-App-Internal", "Server",
                                                            "X-Powered-By"]}},
                           {"prefix": "/"}])
        r = gw.request("GET", "/v1/api/headers?page=2&q=a%20b",
                       headers={"X-Debug": "1", "X-Client-IP": "6.6.6.6"})
        self.assertEqual(r.status, 200, r)
        seen = r.json()
        self.assertEqual(seen["path"], "/api/headers")
        self.assertEqual(seen["query"], "page=2&q=a%20b")
        h = seen["headers"]
        self.assertNotIn("x-debug", h)
        self.assertEqual(h["x-client-ip"], "127.0.0.1")
        self.assertEqual(h["x-gateway"], "sluice")
        self.assertIsNone(r.header("X-App-Internal"))
        self.assertIsNone(r.header("Server"))
        self.assertIsNone(r.header("X-Powered-By"))
        self.assertEqual(r.header("X-Frame-Options"), "DENY")
        # outside the route the app's headers pass
        r = gw.request("GET", "/api/headers")
        self.assertEqual(r.header("X-App-Internal"), "secret")
        # a body through the stripped route
        r = self.post_json(gw, "/v1/api/leads/", {"x": 1})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["received"], len(json.dumps({"x": 1})))

    def test_forged_identity_and_forwarded_headers_are_overwritten(self):
        gw = self.gateway([{"prefix": "/", "identity_headers": True}])
        forged = [("X-Sluice-Identity", "key:admin"), ("X-Sluice-Tier", "staff"),
                  ("X-Sluice-Key-Id", "key_0"), ("X-Sluice-Scopes", "admin"),
                  # spellings a WSGI server folds into the same HTTP_X_SLUICE_* name
                  ("X-Sluice_Identity", "key:admin"), ("X_Sluice_Tier", "staff"),
                  ("X-Forwarded-Host", "evil.test"), ("X-Forwarded-Proto", "https")]
        r = gw.request("GET", "/api/headers", headers=dict(forged, Host="api.example.test"))
        self.assertEqual(r.status, 200, r)
        seen = r.json()
        h = seen["headers"]
        self.assertEqual(h.get("x-sluice-identity"), "ip:127.0.0.1", h)
        self.assertEqual(h.get("x-sluice-tier"), "anonymous", h)
        for name in ("x-sluice-key-id", "x-sluice-scopes", "x-sluice_identity", "x_sluice_tier"):
            self.assertNotIn(name, h)
        self.assertEqual(h["x-forwarded-host"], "api.example.test")
        self.assertEqual(h["x-forwarded-proto"], "http")
        self.assertEqual(seen["host"], "api.example.test")
        self.assertEqual(seen["scheme"], "http")
        # with a key: the identity the gateway established
        key_id, secret = self.create_key(gw, "pro")
        h = gw.request("GET", "/api/headers",
                       headers=dict(forged, **{"X-API-Key": secret})).json()["headers"]
        self.assertEqual(h.get("x-sluice-identity"), "key:" + key_id, h)
        self.assertEqual(h.get("x-sluice-key-id"), key_id)
        self.assertEqual(h.get("x-sluice-tier"), "pro")
        self.assertNotIn("key:admin", json.dumps(h))


def _body_reader(conn, chunked, head):
    """Yield the body of the response whose <head> was read from <conn>, piece
    by piece (Content-Length or chunked), without holding it whole."""
    r = conn.reader
    if chunked:
        while True:
            size = int(r.read_until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                r.read_until(b"\r\n")
                return
            left = size
            while left:
                if not r.buf:
                    r.fill()
                take = min(left, len(r.buf))
                yield bytes(r.buf[:take])
                del r.buf[:take]
                left -= take
            r.read_exact(2)
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    left = int(m.group(1))
    while left:
        if not r.buf:
            r.fill()
        take = min(left, len(r.buf))
        yield bytes(r.buf[:take])
        del r.buf[:take]
        left -= take
