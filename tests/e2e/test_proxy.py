"""Proxying: methods and bodies, keep-alive, pipelining, response framings, HEAD,
Expect: 100-continue, headers (hop-by-hop, X-Forwarded-*, X-Request-Id), errors
from the upstream side (502, 504), routes, the upstream keep-alive pool."""

import hashlib
import os
import threading
import time
import unittest

from harness import (E2ETestCase, RawConn, build_request, free_port, http_request,
                     pattern_bytes)

MIB = 1 << 20


class MethodsAndBodies(E2ETestCase):
    """GET/POST/PUT/DELETE with bodies of 0 B, 1 B, 1 MiB and chunked; the upstream's
    /echo confirms length and SHA-256, and the client connection stays usable."""

    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.gateway_for(self.up)

    def roundtrip(self, method, kind):
        c = self.raw(self.gw)
        if kind == "empty":
            body = b""
            if method in ("POST", "PUT"):
                req = build_request(method, "/echo?kind=empty", body=b"")
            else:
                req = build_request(method, "/echo?kind=empty")
        elif kind == "chunked":
            chunks = [b"a", os.urandom(1000), os.urandom(70000), b"z" * 5]
            body = b"".join(chunks)
            req = build_request(method, "/echo?kind=chunked", body=chunks, chunked=True)
        else:
            body = b"x" if kind == "one" else os.urandom(MIB)
            req = build_request(method, "/echo?kind=" + kind, body=body)
        resp = c.request(req)
        e = self.assertEcho(resp, method, body)
        self.assertEqual(e["query"], "kind=" + kind)
        self.assertEqual(resp.header("X-Upstream"), "A")
        # the response was framed right: the same connection carries another request
        again = c.request(build_request("GET", "/echo?after=1"))
        self.assertEcho(again, "GET")
        self.assertEqual(again.json()["query"], "after=1")

    for _m in ("GET", "POST", "PUT", "DELETE"):
        for _k in ("empty", "one", "mib", "chunked"):
            def _t(self, m=_m, k=_k):
                self.roundtrip(m, k)
            _t.__name__ = "test_%s_body_%s" % (_m.lower(), _k)
            _t.__doc__ = "%s with a %s request body" % (
                _m, {"empty": "0 B", "one": "1 B", "mib": "1 MiB", "chunked": "chunked"}[_k])
            locals()[_t.__name__] = _t
    del _m, _k, _t


class Connections(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.gateway_for(self.up)

    def test_100_requests_on_one_keepalive_connection(self):
        c = self.raw(self.gw)
        for i in range(100):
            if i % 2:
                body = b"body-%d" % i
                resp = c.request(build_request("POST", "/echo?i=%d" % i, body=body))
                e = self.assertEcho(resp, "POST", body)
            else:
                resp = c.request(build_request("GET", "/echo?i=%d" % i))
                e = self.assertEcho(resp, "GET")
            self.assertEqual(e["query"], "i=%d" % i)
            self.assertNotIn("close", (resp.header("Connection") or "").lower(),
                             "gateway closed the keep-alive connection at request %d" % i)
        self.assertEqual(self.up.stats()["requests"], 100)

    def test_three_pipelined_requests_in_one_write(self):
        c = self.raw(self.gw)
        data = (build_request("GET", "/slow?ms=300&i=1")
                + build_request("POST", "/echo?i=2", body=b"hello")
                + build_request("GET", "/echo?i=3"))
        c.send(data)
        r1, r2, r3 = c.read_response(), c.read_response(), c.read_response()
        self.assertEqual([r.status for r in (r1, r2, r3)], [200, 200, 200])
        self.assertEqual(r1.json()["query"], "ms=300&i=1")
        self.assertEqual(r2.json()["query"], "i=2")
        self.assertEqual(r2.json()["body_len"], 5)
        self.assertEqual(r2.json()["method"], "POST")
        self.assertEqual(r3.json()["query"], "i=3")
        self.assertEqual(c.buffered(), b"", "bytes after the third response")

    def test_client_connection_close_is_honoured(self):
        c = self.raw(self.gw)
        resp = c.request(build_request("GET", "/echo", close=True))
        self.assertEcho(resp, "GET")
        extra = self.assertClosed(c, msg="a response to Connection: close")
        self.assertEqual(extra, b"")

    def test_http10_request_is_answered_then_closed(self):
        c = self.raw(self.gw)
        c.send(b"GET /echo?v=10 HTTP/1.0\r\nHost: x\r\n\r\n")
        resp = c.read_response()
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.json()["query"], "v=10")
        self.assertClosed(c, msg="an HTTP/1.0 response without keep-alive")

    def test_head_has_no_body(self):
        c = self.raw(self.gw)
        resp = c.request(build_request("HEAD", "/big?bytes=1000"), head_request=True)
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.body, b"")
        cl = resp.header("Content-Length")
        if cl is not None:
            self.assertEqual(cl, "1000")
        # no body bytes were sent after the head: the next answer parses on the same socket
        self.assertEqual(c.buffered(), b"", "bytes after the HEAD response head")
        nxt = c.request(build_request("GET", "/echo?after=head"))
        self.assertEcho(nxt, "GET")
        self.assertEqual(nxt.json()["query"], "after=head")

    def test_expect_100_continue(self):
        c = self.raw(self.gw)
        body = b"hello world"
        head = build_request("POST", "/echo?expect=1",
                             headers=[("Expect", "100-continue"),
                                      ("Content-Length", str(len(body)))])
        c.send(head)
        interim = c.read_response(skip_interim=False, timeout=5)
        self.assertEqual(interim.status, 100, "want 100 Continue before the body, got %r" % interim)
        self.assertTrue(interim.raw_head.startswith(b"HTTP/1.1 100 Continue\r\n"),
                        interim.raw_head)
        c.send(body)
        final = c.read_response()
        e = self.assertEcho(final, "POST", body)
        self.assertEqual(e["query"], "expect=1")

    def test_gateway_health_endpoint(self):
        resp = self.gw.request("GET", "/_sluice/health")
        self.assertEqual(resp.status, 200)
        self.assertEqual(self.up.stats()["requests"], 0, "health check reached the upstream")

    def test_upstream_speaks_http11_with_keepalive(self):
        resp = self.gw.request("GET", "/echo")
        e = self.assertEcho(resp, "GET")
        self.assertEqual(e["version"], "HTTP/1.1")
        self.assertNotIn("close", ",".join(e["headers"].get("connection", [])).lower())


class ResponseFramings(E2ETestCase):
    """Length-delimited, chunked and close-delimited upstream responses reach the client
    whole; upstream statuses pass through."""

    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.gateway_for(self.up)

    def test_big_length_delimited_response(self):
        n = 5 * MIB
        c = self.raw(self.gw)
        resp = c.request(build_request("GET", "/big?bytes=%d" % n))
        self.assertEqual(resp.status, 200)
        self.assertEqual(len(resp.body), n)
        self.assertTrue(resp.body == pattern_bytes(n), "body bytes differ")

    def test_chunked_response(self):
        c = self.raw(self.gw)
        resp = c.request(build_request("GET", "/chunked?n=50&size=1000&delay_ms=2"))
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.body, pattern_bytes(50000))
        again = c.request(build_request("GET", "/echo"))
        self.assertEqual(again.status, 200)

    def test_close_delimited_response(self):
        n = 300000
        c = self.raw(self.gw)
        resp = c.request(build_request("GET", "/close-delimited?bytes=%d" % n))
        self.assertEqual(resp.status, 200)
        self.assertEqual(len(resp.body), n)
        self.assertTrue(resp.body == pattern_bytes(n), "body bytes differ")

    def test_close_delimited_http10_response(self):
        c = self.raw(self.gw)
        resp = c.request(build_request("GET", "/close-delimited?bytes=1234&version=1.0"))
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.body, pattern_bytes(1234))

    def test_upstream_statuses_pass_through(self):
        c = self.raw(self.gw)
        r = c.request(build_request("GET", "/status/503"))
        self.assertEqual(r.status, 503)
        self.assertEqual(r.header("X-Upstream"), "A")
        self.assertEqual(r.json(), {"status": 503})
        r = c.request(build_request("GET", "/status/404"))
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json(), {"status": 404})
        r = c.request(build_request("DELETE", "/status/204"))
        self.assertEqual(r.status, 204)
        self.assertEqual(r.body, b"")
        r = c.request(build_request("GET", "/status/304"))
        self.assertEqual((r.status, r.body), (304, b""))
        r = c.request(build_request("GET", "/echo?after=204"))
        self.assertEqual(r.json()["query"], "after=204")


class UpstreamErrors(E2ETestCase):
    def test_upstream_down_is_502_json(self):
        dead = free_port()  # nothing listens there
        gw = self.gateway_for(dead)
        t0 = time.monotonic()
        resp = gw.request("GET", "/echo")
        self.assertJsonError(resp, 502)
        self.assertLess(time.monotonic() - t0, 5.0)
        # the gateway is still fine afterwards
        self.assertEqual(gw.request("GET", "/_sluice/health").status, 200)

    def test_upstream_slower_than_upstream_read_is_504_json(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up, server={"timeouts": {"upstream_read": "500ms"}})
        t0 = time.monotonic()
        resp = gw.request("GET", "/slow?ms=2000")
        elapsed = time.monotonic() - t0
        self.assertJsonError(resp, 504)
        self.assertGreaterEqual(elapsed, 0.45, "504 before upstream_read elapsed")
        self.assertLess(elapsed, 1.9, "504 came only after the upstream answered")
        # a fast request still works
        self.assertEcho(gw.request("GET", "/echo"), "GET")


class Headers(E2ETestCase):
    REQUEST_HOP_BY_HOP = ["x-foo", "keep-alive", "te", "trailer", "upgrade",
                          "proxy-authorization", "proxy-connection", "proxy-foo"]

    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.gateway_for(self.up)

    def test_hop_by_hop_request_headers_are_stripped(self):
        c = self.raw(self.gw)
        resp = c.request(build_request("GET", "/echo", headers=[
            ("Connection", "keep-alive, X-Foo"), ("X-Foo", "1"),
            ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Trailer", "X-Trail"),
            ("Upgrade", "foo/1"), ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Proxy-Connection", "keep-alive"), ("Proxy-Foo", "bar"), ("X-Normal", "yes")]))
        e = self.assertEcho(resp, "GET")
        got = e["headers"]
        leaked = [h for h in self.REQUEST_HOP_BY_HOP if h in got]
        self.assertEqual(leaked, [], "hop-by-hop headers reached the upstream: %r" % got)
        self.assertEqual(got.get("x-normal"), ["yes"])
        self.assertNotIn("x-foo", ",".join(got.get("connection", [])).lower())

    def test_hop_by_hop_response_headers_are_stripped(self):
        resp = self.gw.request("GET", "/headers")
        self.assertEqual(resp.status, 200)
        names = resp.header_names()
        leaked = [h for h in ("x-foo", "proxy-authenticate", "proxy-connection", "trailer",
                              "upgrade") if h in names]
        self.assertEqual(leaked, [], "hop-by-hop headers reached the client: %r" % resp.headers)
        self.assertNotEqual(resp.header("Keep-Alive"), "timeout=5, max=100",
                            "the upstream's Keep-Alive reached the client")
        self.assertNotIn("x-foo", (resp.header("Connection") or "").lower())
        self.assertEqual(resp.header("X-Normal"), "yes")

    def test_x_forwarded_headers_are_set(self):
        c = self.raw(self.gw)
        resp = c.request(build_request("GET", "/echo", host="api.example.test"))
        got = self.assertEcho(resp, "GET")["headers"]
        self.assertEqual(got.get("x-forwarded-for"), ["127.0.0.1"])
        self.assertEqual(got.get("x-forwarded-proto"), ["http"])
        self.assertEqual(got.get("x-forwarded-host"), ["api.example.test"])

    def test_x_forwarded_for_ends_with_the_peer(self):
        c = self.raw(self.gw)
        resp = c.request(build_request("GET", "/echo",
                                       headers=[("X-Forwarded-For", "203.0.113.7")]))
        got = self.assertEcho(resp, "GET")["headers"]
        xff = ",".join(got.get("x-forwarded-for", []))
        self.assertEqual(xff.split(",")[-1].strip(), "127.0.0.1", "X-Forwarded-For: %r" % xff)

    def test_request_id_kept_when_sent(self):
        rid = "e2e-req-4f1c2a"
        resp = self.gw.request("GET", "/echo", headers={"X-Request-Id": rid})
        got = self.assertEcho(resp, "GET")["headers"]
        self.assertEqual(got.get("x-request-id"), [rid])
        self.assertEqual(resp.header("X-Request-Id"), rid)

    def test_request_id_generated_when_missing(self):
        r1 = self.gw.request("GET", "/echo")
        r2 = self.gw.request("GET", "/echo")
        ids = []
        for r in (r1, r2):
            got = self.assertEcho(r, "GET")["headers"]
            rid = r.header("X-Request-Id")
            self.assertTrue(rid, "no X-Request-Id on the response: %r" % r.headers)
            self.assertEqual(got.get("x-request-id"), [rid],
                             "upstream saw a different X-Request-Id than the client got")
            ids.append(rid)
        self.assertNotEqual(ids[0], ids[1], "two requests got the same generated id")


class Routes(E2ETestCase):
    def setUp(self):
        self.a = self.start_upstream("A")
        self.b = self.start_upstream("B")

    def who(self, gw, method, path, body=None):
        r = gw.request(method, path, body=body)
        return r.header("X-Upstream") if r.status == 200 else r.status

    def test_exact_prefix_methods_first_match_wins(self):
        gw = self.gateway_for(self.a, upstreams={"b": self.b}, routes=[
            {"path": "/echo/exact", "upstream": "b"},
            {"path": "/echo/m", "methods": ["POST"], "upstream": "b"},
            {"prefix": "/echo/p/", "upstream": "b"},
            {"prefix": "/echo/", "upstream": "app"},
        ])
        cases = [("GET", "/echo/exact", "B"), ("GET", "/echo/exact?x=1", "B"),
                 ("GET", "/echo/exact/more", "A"), ("GET", "/echo/exactly", "A"),
                 ("POST", "/echo/m", "B"), ("GET", "/echo/m", "A"),
                 ("GET", "/echo/p/x", "B"), ("GET", "/echo/p/", "B"), ("GET", "/echo/p", "A")]
        got = [(m, p, self.who(gw, m, p, body=b"" if m == "POST" else None))
               for m, p, _ in cases]
        self.assertEqual(got, cases)

    def test_no_route_is_404_json(self):
        gw = self.gateway_for(self.a, routes=[{"prefix": "/echo/", "upstream": "app"}])
        resp = gw.request("GET", "/status/200")
        self.assertJsonError(resp, 404)
        self.assertIsNone(resp.header("X-Upstream"))
        self.assertEqual(self.a.stats()["requests"], 0)
        self.assertEqual(gw.request("GET", "/echo/x").status, 200)

    def test_no_routes_at_all_go_to_the_first_upstream(self):
        gw = self.gateway_for(self.a, upstreams={"b": self.b}, routes=None)
        for p in ("/echo", "/echo/deep/path?q=1"):
            self.assertEqual(self.who(gw, "GET", p), "A")
        self.assertEqual(self.b.stats()["requests"], 0)

    def test_round_robin_over_servers(self):
        gw = self.gateway_for([self.a, self.b], workers=1)
        seen = [self.who(gw, "GET", "/echo") for _ in range(6)]
        self.assertEqual(sorted(seen), ["A"] * 3 + ["B"] * 3, seen)


class UpstreamPool(E2ETestCase):
    def test_keepalive_pool_reuses_connections(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up, workers=1)
        for i in range(50):  # a new client connection each time
            self.assertEqual(gw.request("GET", "/echo?i=%d" % i).status, 200)
        st = up.stats()
        self.assertEqual(st["requests"], 50)
        self.assertLessEqual(st["connections"], 3,
                             "upstream saw %d TCP connections for 50 requests" % st["connections"])

    def test_pool_with_two_workers_and_concurrency(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up, workers=2, keepalive=8)
        errors = []

        def client(k):
            try:
                with RawConn(gw.port) as c:
                    for i in range(25):
                        r = c.request(build_request("GET", "/echo?c=%d&i=%d" % (k, i)))
                        if r.status != 200:
                            errors.append(r.status)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        st = up.stats()
        self.assertEqual(st["requests"], 200)
        self.assertLessEqual(st["connections"], 40,
                             "upstream saw %d connections for 200 requests" % st["connections"])

    def test_stale_pooled_connection_idle_closed_by_upstream(self):
        up = self.start_upstream("A", idle_timeout=0.2)
        gw = self.gateway_for(up, workers=1)
        self.assertEcho(gw.request("GET", "/echo?n=1"), "GET")
        time.sleep(0.5)  # the upstream closes the pooled connection meanwhile
        self.assertEcho(gw.request("GET", "/echo?n=2"), "GET")
        self.assertEcho(gw.request("GET", "/echo?n=3"), "GET")
        self.assertEqual(up.stats()["requests"], 3)

    def test_pooled_connection_closed_on_reuse_is_retried_for_get(self):
        # the upstream reads the second request on a connection, then closes it unanswered:
        # the close "crossed" the request; an idempotent request is retried once, fresh
        up = self.start_upstream("A", drop_after=1)
        gw = self.gateway_for(up, workers=1)
        self.assertEcho(gw.request("GET", "/echo?n=1"), "GET")
        resp = gw.request("GET", "/echo?n=2")
        self.assertEcho(resp, "GET")
        self.assertEqual(resp.json()["query"], "n=2")
        st = up.stats()
        self.assertEqual(st["dropped"], 1, "the pooled connection was not reused: %r" % st)
        self.assertEqual(st["requests"], 2)

    def test_pooled_connection_closed_on_reuse_not_retried_for_post(self):
        up = self.start_upstream("A", drop_after=1)
        gw = self.gateway_for(up, workers=1)
        self.assertEcho(gw.request("GET", "/echo?n=1"), "GET")
        resp = gw.request("POST", "/echo?n=2", body=b"payment")
        st = up.stats()
        self.assertEqual(st["dropped"], 1, "the pooled connection was not reused: %r" % st)
        self.assertEqual(st["requests"], 1, "a POST was retried after the upstream dropped it")
        self.assertJsonError(resp, 502)


if __name__ == "__main__":
    unittest.main()
