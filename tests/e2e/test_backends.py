"""Real backends (issue 17): path rewriting, header control, the Host sent
upstream, identity headers a client cannot forge, X-Forwarded-*."""

import os
import time
import unittest

from harness import ADMIN_TOKEN, E2ETestCase, Gateway, make_config, wait_for


class Rewrite(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def gateway(self, routes, upstream_extra=None):
        cfg = make_config({"app": self.up}, routes=routes, workers=1)
        cfg["upstreams"]["app"].update(upstream_extra or {})
        return self.start_gateway(cfg)

    def test_strip_prefix_keeps_the_query_and_limits_see_the_client_path(self):
        gw = self.gateway([{"prefix": "/v1/", "strip_prefix": True,
                            "limits": {"anonymous": ["2/min"]}},
                           {"prefix": "/"}])
        e = gw.request("GET", "/v1/echo/users?x=1&y=2").json()
        self.assertEqual(e["target"], "/echo/users?x=1&y=2")
        e = gw.request("GET", "/v1/echo?x=1").json()
        self.assertEqual(e["target"], "/echo?x=1")
        # the route's limit counted both: the client's path chose the route
        self.assertEqual(gw.request("GET", "/v1/echo").status, 429)
        self.assertEqual(gw.request("GET", "/echo").status, 200)

    def test_strip_prefix_cache_key_is_the_client_path(self):
        """The cache keys an entry by the path the client sent, so a stripped
        route and the route the upstream path belongs to never share one, and
        a purge names the client's path."""
        from test_cache import origin_count, purge
        ttl = {"ttl": "300s"}
        gw = self.gateway([{"prefix": "/v1/", "strip_prefix": True, "cache": ttl},
                           {"prefix": "/", "cache": ttl}])
        self.assertEqual(gw.request("GET", "/v1/origin/k").header("X-Cache"), "MISS")
        self.assertEqual(gw.request("GET", "/v1/origin/k").header("X-Cache"), "HIT")
        self.assertEqual(origin_count(self.up, "/origin/k"), 1)  # the upstream's path
        self.assertEqual(gw.request("GET", "/origin/k").header("X-Cache"), "MISS")
        self.assertEqual(origin_count(self.up, "/origin/k"), 2)
        r = purge(gw, {"key": "/v1/origin/k"})
        self.assertEqual(r.json(), {"purged": 1})
        self.assertEqual(gw.request("GET", "/v1/origin/k").header("X-Cache"), "MISS")
        self.assertEqual(gw.request("GET", "/origin/k").header("X-Cache"), "HIT")
        self.assertEqual(origin_count(self.up, "/origin/k"), 3)

    def test_strip_prefix_of_the_whole_path_is_slash(self):
        gw = self.gateway([{"prefix": "/echo", "strip_prefix": True, "upstream": "app"}])
        r = gw.request("GET", "/echo")
        self.assertEqual(r.status, 404)  # the upstream was asked for "/"
        self.assertEqual(r.json()["message"], "no test endpoint /")

    def test_rewrite_prefix(self):
        gw = self.gateway([{"prefix": "/api/", "rewrite": {"prefix": "/echo/v2/"}}])
        e = gw.request("GET", "/api/users/7?full=1").json()
        self.assertEqual(e["target"], "/echo/v2/users/7?full=1")

    def test_rewrite_and_strip_need_a_prefix_route(self):
        from harness import Gateway
        cfg = make_config({"app": self.up}, routes=[{"path": "/x", "strip_prefix": True}])
        gw = Gateway(cfg)
        self.addCleanup(gw.cleanup)
        rc, out = gw.check()
        self.assertEqual(rc, 2)
        self.assertIn("strip_prefix and rewrite need a 'prefix' route", out)


class Headers(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def gateway(self, route_extra=None, upstream_extra=None, keys=False):
        route = {"prefix": "/"}
        route.update(route_extra or {})
        cfg = make_config({"app": self.up}, routes=[route], workers=1)
        cfg["upstreams"]["app"].update(upstream_extra or {})
        return self.start_gateway(cfg)

    def test_set_and_remove_request_headers_with_variables(self):
        gw = self.gateway(
            {"request_headers": {"set": {"X-Client-IP": "$client_ip",
                                         "X-Trace": "rid=$request_id tier=$tier"},
                                 "remove": ["X-Debug"]}},
            {"request_headers": {"set": {"X-From-Upstream-Rule": "u", "X-Trace": "lost"},
                                 "remove": ["X-Internal"]}})
        r = gw.request("GET", "/echo", headers={"X-Debug": "1", "X-Internal": "2",
                                                 "X-Client-IP": "6.6.6.6", "X-Request-Id": "abc"})
        h = r.json()["headers"]
        self.assertNotIn("x-debug", h)
        self.assertNotIn("x-internal", h)
        self.assertEqual(h["x-client-ip"], ["127.0.0.1"])  # set replaces the client's
        self.assertEqual(h["x-trace"], ["rid=abc tier=anonymous"])  # the route's wins
        self.assertEqual(h["x-from-upstream-rule"], ["u"])

    def test_identity_and_key_id_variables_with_a_real_api_key(self):
        import json
        import subprocess
        from harness import sluice_bin
        cfg = make_config({"app": self.up}, workers=1, routes=[
            {"prefix": "/", "request_headers": {"set": {"X-Who": "$identity",
                                                        "X-Key": "key=$key_id; tier=$tier"}}}])
        cfg["tiers"] = {"anonymous": {"limits": ["100/h"]}, "pro": {"limits": ["1000/h"]}}
        gw = self.start_gateway(cfg)
        p = subprocess.run([sluice_bin(), "keys", "create", "--json", "--tier", "pro",
                            "--name", "ci", "-c", gw.config_path], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)
        kid, secret = out["key"]["id"], out["secret"]
        h = gw.request("GET", "/echo", headers={"X-API-Key": secret,
                                                 "X-Who": "key:forged"}).json()["headers"]
        self.assertEqual(h["x-who"], ["key:" + kid])
        self.assertEqual(h["x-key"], ["key=%s; tier=pro" % kid])
        # anonymous: the client's address, and no key
        h = gw.request("GET", "/echo").json()["headers"]
        self.assertEqual(h["x-who"], ["ip:127.0.0.1"])
        self.assertEqual(h["x-key"], ["key=; tier=anonymous"])

    def test_response_headers(self):
        gw = self.gateway({"response_headers": {"set": {"X-Frame-Options": "DENY"},
                                                "remove": ["X-Upstream"]}},
                          {"response_headers": {"set": {"Server": "app"}}})
        r = gw.request("GET", "/echo")
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("X-Upstream"))
        self.assertEqual(r.header("X-Frame-Options"), "DENY")
        self.assertEqual(r.header("Server"), "app")

    def test_identity_headers_cannot_be_forged(self):
        forged = {"X-Sluice-Identity": "key:admin", "X-Sluice-Tier": "staff",
                  "X-Sluice-Key-Id": "key_0", "X-Sluice-Scopes": "admin"}
        # off: the client's are dropped all the same
        gw = self.gateway()
        h = gw.request("GET", "/echo", headers=forged).json()["headers"]
        for name in forged:
            self.assertNotIn(name.lower(), h)
        # on: the gateway's own
        gw2 = self.gateway({"identity_headers": True})
        h = gw2.request("GET", "/echo", headers=forged).json()["headers"]
        self.assertEqual(h["x-sluice-identity"], ["ip:127.0.0.1"])
        self.assertEqual(h["x-sluice-tier"], ["anonymous"])
        self.assertNotIn("x-sluice-key-id", h)
        self.assertNotIn("x-sluice-scopes", h)

    def test_underscore_spellings_of_gateway_headers_are_dropped(self):
        # A WSGI server reads "X-Sluice_Identity" as HTTP_X_SLUICE_IDENTITY, the
        # gateway's own header (gunicorn joins both values): such spellings of a
        # header the gateway writes never pass; other underscore names do.
        gw = self.gateway({"identity_headers": True,
                           "request_headers": {"set": {"X-Client-IP": "$client_ip"},
                                               "remove": ["X-Debug"]}})
        forged = [("X-Sluice_Identity", "key:admin"), ("X_SLUICE_TIER", "staff"),
                  ("x_sluice_key_id", "key_0"), ("X-Forwarded_Proto", "https"),
                  ("X_Forwarded_Host", "evil.test"), ("X_Forwarded_For", "6.6.6.6"),
                  ("X-Forwarded-Port", "443"), ("X_Forwarded_Port", "443"),
                  ("X_Request_Id", "forged"), ("X_Client_IP", "6.6.6.6"), ("X_Debug", "1"),
                  ("X_App_Token", "kept")]
        h = gw.request("GET", "/echo", headers=forged).json()["headers"]
        self.assertEqual(h["x-sluice-identity"], ["ip:127.0.0.1"])
        self.assertEqual(h["x-sluice-tier"], ["anonymous"])
        self.assertEqual(h["x-forwarded-proto"], ["http"])
        self.assertEqual(h["x-forwarded-for"], ["127.0.0.1"])
        self.assertEqual(h["x-forwarded-port"], [str(gw.port)])
        self.assertEqual(h["x-client-ip"], ["127.0.0.1"])
        self.assertEqual(h["x_app_token"], ["kept"])
        self.assertEqual([k for k in h if "_" in k], ["x_app_token"])

    def test_rules_replace_the_headers_the_gateway_writes(self):
        # behind a TLS terminator: the app must hear https, once
        gw = self.gateway({"request_headers": {"remove": ["X-Forwarded-Port"]}},
                          {"request_headers": {"set": {"X-Forwarded-Proto": "https"}}})
        h = gw.request("GET", "/echo", headers={"X-Forwarded-Proto": "http"}).json()["headers"]
        self.assertEqual(h["x-forwarded-proto"], ["https"])
        self.assertNotIn("x-forwarded-port", h)
        self.assertEqual(h["x-forwarded-for"], ["127.0.0.1"])

    def test_host_modes_and_forwarded_headers(self):
        gw = self.gateway()
        h = gw.request("GET", "/echo", headers={"Host": "api.example.com"}).json()["headers"]
        self.assertEqual(h["host"], ["api.example.com"])
        self.assertEqual(h["x-forwarded-host"], ["api.example.com"])
        self.assertEqual(h["x-forwarded-proto"], ["http"])
        self.assertEqual(h["x-forwarded-port"], [str(gw.port)])
        self.assertEqual(h["x-forwarded-for"], ["127.0.0.1"])
        gw2 = self.gateway(upstream_extra={"host": "upstream"})
        h = gw2.request("GET", "/echo", headers={"Host": "api.example.com"}).json()["headers"]
        self.assertEqual(h["host"], ["127.0.0.1:%d" % self.up.port])
        self.assertEqual(h["x-forwarded-host"], ["api.example.com"])
        gw3 = self.gateway(upstream_extra={"host": "internal.app"})
        h = gw3.request("GET", "/echo", headers={"Host": "api.example.com"}).json()["headers"]
        self.assertEqual(h["host"], ["internal.app"])

    def test_config_errors(self):
        from harness import Gateway
        bad = [({"request_headers": {"set": {"X-A": "$nope"}}}, "unknown variable '$nope'"),
               ({"request_headers": {"set": {"Content-Length": "1"}}}, "cannot be set"),
               ({"request_headers": {"remove": ["Transfer-Encoding"]}}, "cannot be removed"),
               ({"request_headers": {"set": {"X-A": "a\nb"}}}, "line break")]
        for extra, want in bad:
            route = {"prefix": "/"}
            route.update(extra)
            gw = Gateway(make_config({"app": self.up}, routes=[route]))
            self.addCleanup(gw.cleanup)
            rc, out = gw.check()
            self.assertEqual(rc, 2, out)
            self.assertIn(want, out)


def chunked(body, size=8192):
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def body_temp_files(gw):
    """The gateway's open request-buffering temp files: unlinked right after
    mkstemp, so /proc/<pid>/fd shows them as '<data_dir>/... (deleted)'."""
    data_dir = os.path.realpath(os.path.join(gw.dir, "var")) + "/"
    fd_dir = "/proc/%d/fd" % gw.proc.pid
    out = []
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue  # closed as we looked
        if link.startswith(data_dir) and link.endswith(" (deleted)"):
            out.append(link)
    return out


class Buffering(E2ETestCase):
    """WSGI servers read only Content-Length bodies: a chunked body is read
    whole (auto) and sent with Content-Length."""

    def setUp(self):
        self.up = self.start_upstream("A")

    def gateway(self, mode=None, server=None):
        route = {"prefix": "/"}
        if mode:
            route["request_buffering"] = mode
        return self.start_gateway(make_config({"app": self.up}, routes=[route], workers=1,
                                              server=server))

    def upload(self, gw, body, extra=b"", path=b"/echo"):
        c = self.raw(gw)
        c.send(b"POST " + path + b" HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n" +
               extra + b"\r\n" + chunked(body))
        return c.read_response(timeout=30)

    def assertNoTempFiles(self, gw):
        self.assertTrue(wait_for(lambda: body_temp_files(gw) == [], timeout=3),
                        "temp files still open: %r" % body_temp_files(gw))

    def test_small_chunked_body_arrives_with_content_length(self):
        gw = self.gateway()
        r = self.upload(gw, b"0123456789")
        e = self.assertEcho(r, "POST", b"0123456789")
        self.assertEqual(e["body_framing"], "content-length")
        self.assertEqual(e["headers"]["content-length"], ["10"])
        self.assertNotIn("transfer-encoding", e["headers"])

    def test_5mb_chunked_body_through_a_temp_file(self):
        gw = self.gateway()
        self.assertEqual(body_temp_files(gw), [])
        body = os.urandom(5 << 20)
        e = self.assertEcho(self.upload(gw, body), "POST", body)
        self.assertEqual(e["body_framing"], "content-length")
        self.assertNoTempFiles(gw)
        # the temp file was unlinked at once: nothing left in data_dir
        left = [f for f in os.listdir(os.path.join(gw.dir, "var")) if "body" in f] \
            if os.path.isdir(os.path.join(gw.dir, "var")) else []
        self.assertEqual(left, [])

    def test_off_streams_chunked(self):
        gw = self.gateway("off")
        e = self.assertEcho(self.upload(gw, b"abc"), "POST", b"abc")
        self.assertEqual(e["body_framing"], "chunked")

    def test_chunked_body_over_max_body_bytes_is_413_and_never_forwarded(self):
        gw = self.gateway(server={"max_body_bytes": "100k"})
        self.assertEqual(body_temp_files(gw), [])
        c = self.raw(gw)
        body = chunked(b"x" * (200 << 10))
        c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
               body[:90 << 10])
        # past request_buffer_memory (64k): the rest went to a temp file
        self.assertTrue(wait_for(lambda: len(body_temp_files(gw)) == 1, timeout=3))
        c.send(body[90 << 10:])
        self.assertJsonError(c.read_response(timeout=30), 413)
        self.assertNoTempFiles(gw)
        self.assertEqual(self.up.stats()["requests"], 0)

    def test_on_a_client_that_stops_mid_upload_never_reaches_the_upstream(self):
        gw = self.gateway("on")
        c = self.raw(gw)
        c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" +
               b"x" * 80000)
        self.assertTrue(wait_for(lambda: len(body_temp_files(gw)) == 1, timeout=3))
        c.close()
        self.assertNoTempFiles(gw)
        time.sleep(0.3)
        self.assertEqual(self.up.stats()["requests"], 0)
        # and a whole one goes through with its length
        e = self.assertEcho(gw.request("POST", "/echo", body=b"y" * 100000), "POST",
                            b"y" * 100000)
        self.assertEqual(e["headers"]["content-length"], ["100000"])

    def test_client_timeout_applies_while_a_chunked_body_is_buffered(self):
        # a client that sends part of a chunked body and stalls is closed after
        # the idle timeout, sent nothing; the upstream never hears of it
        for mode in (None, "on"):
            gw = self.gateway(mode, server={"timeouts": {"idle": "600ms"}})
            c = self.raw(gw)
            c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
                   chunked(b"x" * 20000)[:10000])
            t0 = time.monotonic()
            self.assertEqual(self.assertClosed(c, timeout=5, msg="a stalled chunked upload"), b"",
                             mode)
            waited = time.monotonic() - t0
            self.assertGreater(waited, 0.4, mode)
            self.assertLess(waited, 3, mode)
            self.assertEqual(self.up.stats()["requests"], 0, mode)
            # the gateway serves on
            self.assertEcho(self.upload(gw, b"ok"), "POST", b"ok")
            self.up.reset()

    def test_server_request_buffering_is_the_routes_default(self):
        gw = self.start_gateway(make_config(
            {"app": self.up}, workers=1, server={"request_buffering": "off"},
            routes=[{"prefix": "/echo/own", "request_buffering": "auto"}, {"prefix": "/"}]))
        e = self.assertEcho(self.upload(gw, b"abc", path=b"/echo/x"), "POST", b"abc")
        self.assertEqual(e["body_framing"], "chunked")  # the server's off
        e = self.assertEcho(self.upload(gw, b"abc", path=b"/echo/own"), "POST", b"abc")
        self.assertEqual(e["body_framing"], "content-length")  # the route's own auto
        # on, with no routes: the implicit route buffers a Content-Length body too,
        # so a client that stops mid-upload never reaches the app
        self.up.reset()
        gw = self.start_gateway(make_config({"app": self.up}, workers=1,
                                            server={"request_buffering": "on"}))
        c = self.raw(gw)
        c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        time.sleep(0.3)
        self.assertEqual(self.up.stats()["in_flight"], 0)
        c.close()
        time.sleep(0.2)
        self.assertEqual(self.up.stats()["requests"], 0)

    def test_retried_buffered_body_is_sent_whole_again(self):
        cfg = make_config({"app": self.up}, routes=[{"prefix": "/"}], workers=1)
        cfg["upstreams"]["app"]["retries"] = 1
        gw = self.start_gateway(cfg)
        c = self.raw(gw)
        c.send(b"PUT /hangup HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
               chunked(b"z" * 1000))
        self.assertJsonError(c.read_response(), 502)
        self.assertEqual(self.up.stats()["requests"], 2)


class TempDir(E2ETestCase):
    """A data_dir the gateway cannot make temp files in is an error at start,
    not at the first chunked upload. The tests may run as root, who ignores
    directory permissions: the path is a regular file, or under one."""

    def start_refused(self, cfg, data_dir):
        gw = Gateway(cfg)
        self.addCleanup(gw.cleanup)
        with open(os.path.join(gw.dir, "file"), "w") as f:
            f.write("not a directory\n")
        cfg["store"] = dict(cfg.get("store", {}), data_dir=data_dir)
        gw.write_config(cfg)
        gw.start(wait=False)
        rc = gw.wait_exit(timeout=10)
        if rc is None:
            gw.stop(check=False)
        gw.stop(check=True)  # closes its logs; a sanitizer report fails the test
        self.assertEqual(rc, 1, gw.describe())  # on its own, before any SIGTERM of ours
        return gw, gw.stderr_text()

    def test_data_dir_that_is_a_file(self):
        # the SQLite key store opens data_dir first and says so
        up = self.start_upstream("A")
        gw, err = self.start_refused(make_config({"app": up}), "file")
        self.assertIn("sluice: %s/file: cannot create the data directory: Not a directory"
                      % gw.dir, err)

    def test_temp_dir_under_a_file_with_a_remote_key_store(self):
        # with Redis keeping the keys, the proxy's own check at start is the one
        # that finds data_dir unusable
        up = self.start_upstream("A")
        redis = self.start_redis()
        cfg = make_config({"app": up})
        cfg["store"] = {"backend": "redis", "redis": {"url": redis.url}}
        gw, err = self.start_refused(cfg, "file/tmp")
        self.assertIn("sluice: cannot make temp files for request buffering in %s/file/tmp: "
                      "Not a directory (store.data_dir must be writable)" % gw.dir, err)


def metric(text, name, labels):
    for line in text.splitlines():
        if line.startswith("%s{%s}" % (name, labels)):
            return float(line.rsplit(" ", 1)[1])
    return None


class Health(E2ETestCase):
    def gateway(self, servers, health):
        cfg = make_config({"app": servers}, workers=2)
        cfg["upstreams"]["app"]["health"] = health
        return self.start_gateway(cfg)

    def healthy(self, gw, port):
        m = gw.admin_request("GET", "/metrics").body.decode()
        return metric(m, "sluice_upstream_healthy",
                      'upstream="app",server="127.0.0.1:%d"' % port)

    def checks(self, gw, port, result):
        m = gw.admin_request("GET", "/metrics").body.decode()
        return metric(m, "sluice_upstream_health_checks_total",
                      'upstream="app",server="127.0.0.1:%d",result="%s"' % (port, result))

    def test_active_checks_take_a_dead_server_out_and_bring_it_back(self):
        from harness import free_port, wait_for
        a = self.start_upstream("A")
        dead = free_port()
        # The dead port refuses at once; the live server gets 450 ms, so a
        # loaded machine (ASan build, parallel jobs) does not fail its check.
        gw = self.gateway([a, dead], {"path": "/status/200", "interval": "500ms",
                                      "timeout": "450ms", "unhealthy": 2, "healthy": 2})
        self.assertTrue(wait_for(lambda: self.healthy(gw, dead) == 0, timeout=5))
        self.assertEqual(self.healthy(gw, a.port), 1)
        self.assertGreaterEqual(self.checks(gw, dead, "failed"), 2)  # unhealthy: 2
        self.assertEqual(self.checks(gw, dead, "ok"), 0)
        self.assertGreaterEqual(self.checks(gw, a.port, "ok"), 1)
        self.assertEqual(self.checks(gw, a.port, "failed"), 0)
        before = a.stats()["requests"]
        for _ in range(20):
            r = gw.request("GET", "/echo")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("X-Upstream"), "A")
        self.assertEqual(a.stats()["requests"], before + 20)
        # the server comes up: back after two good checks
        from upstream import UpstreamServer
        b = UpstreamServer(name="B", port=dead).start()
        self.addCleanup(b.stop)
        self.assertTrue(wait_for(lambda: self.healthy(gw, dead) == 1, timeout=5))
        self.assertGreaterEqual(self.checks(gw, dead, "ok"), 2)  # healthy: 2
        seen = {gw.request("GET", "/echo").header("X-Upstream") for _ in range(10)}
        self.assertEqual(seen, {"A", "B"})

    def test_no_healthy_server_is_502_at_once(self):
        from harness import free_port, wait_for
        dead = free_port()
        gw = self.gateway([dead], {"path": "/healthz", "interval": "200ms", "timeout": "100ms",
                                   "unhealthy": 1})
        self.assertTrue(wait_for(lambda: self.healthy(gw, dead) == 0, timeout=5))
        t0 = time.monotonic()
        r = gw.request("GET", "/echo")
        self.assertLess(time.monotonic() - t0, 0.5)
        obj = self.assertJsonError(r, 502)
        self.assertEqual(obj["message"], "no server of the upstream is healthy")

    def test_passive_ejection_after_failed_requests(self):
        from harness import free_port
        a = self.start_upstream("A")
        dead = free_port()
        gw = self.gateway([a, dead], {"interval": "30s", "unhealthy": 1})
        for _ in range(10):
            self.assertEqual(gw.request("GET", "/echo").status, 200)  # failed over to A
        m = gw.admin_request("GET", "/metrics").body.decode()
        # without health every other request would try the dead server first
        self.assertLessEqual(metric(m, "sluice_upstream_errors_total",
                                    'upstream="app",kind="connect"'), 2)
        self.assertEqual(self.healthy(gw, dead), 0)

    def test_passive_ejection_after_5xx_answers(self):
        # `unhealthy` answers >= 500 in a row take a server out for `interval`
        # (no path: no active checks); then one request may try it again, and
        # a good answer brings it back
        a = self.start_upstream("A")
        b = self.start_upstream("B")
        b.origin_status = 503
        gw = self.gateway([a, b], {"interval": "2s", "unhealthy": 2})
        t0 = time.monotonic()
        got = [gw.request("GET", "/origin/x") for _ in range(12)]
        self.assertLess(time.monotonic() - t0, 1.5)  # all within the interval
        self.assertEqual([r.header("X-Upstream") for r in got if r.status == 503], ["B", "B"])
        self.assertEqual(sum(r.status == 200 for r in got), 10)
        self.assertEqual(b.origin_count("/origin/x"), 2)
        self.assertEqual(self.healthy(gw, b.port), 0)
        self.assertEqual(self.healthy(gw, a.port), 1)
        # no active checks ran
        self.assertEqual(self.checks(gw, b.port, "failed"), 0)
        b.origin_status = None
        time.sleep(2.2)
        seen = {gw.request("GET", "/origin/x").header("X-Upstream") for _ in range(10)}
        self.assertEqual(seen, {"A", "B"})
        self.assertEqual(self.healthy(gw, b.port), 1)


if __name__ == "__main__":
    unittest.main()
