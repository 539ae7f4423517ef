"""Edge cases beyond the checklist: streaming in both directions, deep pipelining,
pool correctness after aborted exchanges and upstream-side closes, misbehaving
upstreams, request-target forms, header multiplicity, request-id bounds."""

import hashlib
import os
import time
import unittest

from harness import (make_config, ConnectionClosed, E2ETestCase, RawConn, build_request, pattern_bytes,
                     wait_for)

MIB = 1 << 20


class Streaming(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.gateway_for(self.up)

    def test_request_body_is_streamed_not_buffered(self):
        c = self.raw(self.gw)
        first = os.urandom(64 * 1024)
        rest = os.urandom(4 * MIB)
        body = first + rest
        c.send(build_request("PUT", "/echo?stream=1",
                             headers=[("Content-Length", str(len(body)))]) + first)
        # the upstream gets the request while most of the body is still with the client
        self.assertTrue(self.up.wait_in_flight(1, timeout=5, match="stream=1"),
                        "upstream saw nothing before the whole body was sent (buffered?)")
        c.send(rest)
        self.assertEcho(c.read_response(), "PUT", body)

    def test_chunked_request_body_is_streamed(self):
        """With request_buffering: off (auto, the default, reads a chunked body
        whole for WSGI apps: test_backends.Buffering)."""
        gw = self.start_gateway(make_config({"app": self.up}, routes=[
            {"prefix": "/", "request_buffering": "off"}]))
        c = self.raw(gw)
        c.send(build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")])
               + b"5\r\nhello\r\n")
        self.assertTrue(self.up.wait_in_flight(1, timeout=5, match="/echo"),
                        "upstream saw nothing before the chunked body ended (buffered?)")
        c.send(b"6\r\n world\r\n0\r\n\r\n")
        self.assertEcho(c.read_response(), "POST", b"hello world")

    def test_response_is_streamed_not_buffered(self):
        c = self.raw(self.gw)
        t0 = time.monotonic()
        c.send(build_request("GET", "/chunked?n=3&size=10&delay_ms=1000"))
        c.settimeout(5)
        first = c.sock.recv(65536)
        elapsed = time.monotonic() - t0
        self.assertTrue(first.startswith(b"HTTP/1.1 200"), first[:100])
        self.assertLess(elapsed, 0.9, "first response bytes only after %.2fs: the gateway "
                        "waited for the whole upstream response" % elapsed)
        rest = c.read_response  # the remaining body still parses
        c.reader.buf += first
        resp = rest()
        self.assertEqual(resp.body, pattern_bytes(30))

    def test_chunked_request_with_extensions_and_trailers(self):
        c = self.raw(self.gw)
        c.send(build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")])
               + b"5;name=value\r\nhello\r\n1\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n")
        self.assertEcho(c.read_response(), "POST", b"hello!")
        self.assertEqual(c.request(build_request("GET", "/echo?after=1")).status, 200)

    def test_expect_100_with_body_sent_at_once(self):
        c = self.raw(self.gw)
        c.send(build_request("POST", "/echo", body=b"eager",
                             headers=[("Expect", "100-continue")]))
        self.assertEcho(c.read_response(), "POST", b"eager")
        self.assertEqual(c.request(build_request("GET", "/echo?after=1")).status, 200)


class Pipelining(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.gateway_for(self.up)

    def test_50_pipelined_requests(self):
        c = self.raw(self.gw)
        c.send(b"".join(build_request("GET", "/echo?i=%d" % i) for i in range(50)))
        got = [c.read_response().json()["query"] for _ in range(50)]
        self.assertEqual(got, ["i=%d" % i for i in range(50)])

    def test_pipelined_big_responses_read_slowly(self):
        c = self.raw(self.gw)
        sizes = [2 * MIB, 10, 3 * MIB]
        c.send(b"".join(build_request("GET", "/big?bytes=%d" % n) for n in sizes))
        time.sleep(0.5)  # let buffers fill: the gateway must apply backpressure, not drop
        for n in sizes:
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(len(r.body), n)
            self.assertTrue(r.body == pattern_bytes(n))

    def test_pipelined_head_between_gets(self):
        c = self.raw(self.gw)
        c.send(build_request("GET", "/echo?i=1") + build_request("HEAD", "/big?bytes=5000")
               + build_request("GET", "/echo?i=3"))
        self.assertEqual(c.read_response().json()["query"], "i=1")
        h = c.read_response(head_request=True)
        self.assertEqual((h.status, h.body), (200, b""))
        self.assertEqual(c.read_response().json()["query"], "i=3")


class PoolCorrectness(E2ETestCase):
    def test_client_abort_does_not_leak_a_response_to_the_next_request(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up, workers=1)
        self.assertEqual(gw.request("GET", "/echo?warm=1").status, 200)
        c = RawConn(gw.port)
        c.send(build_request("GET", "/slow?ms=400&who=aborted"))
        self.assertTrue(up.wait_in_flight(1, match="who=aborted"))
        c.close()  # the client goes away while the upstream is still working
        for i in range(5):
            r = gw.request("GET", "/echo?who=next%d" % i)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json()["query"], "who=next%d" % i,
                             "got another exchange's response")
        time.sleep(0.5)
        for i in range(3):
            r = gw.request("POST", "/echo?who=later%d" % i, body=b"x")
            self.assertEqual(r.json()["query"], "who=later%d" % i)
        self.assertTrue(gw.running())

    def test_upstream_connection_close_is_not_pooled(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up, workers=1)
        for path in ("/echo?close=1", "/close-delimited?bytes=100",
                     "/close-delimited?bytes=100&version=1.0"):
            self.assertEqual(gw.request("GET", path).status, 200, path)
            time.sleep(0.05)
            # a POST is not retried: it fails if the gateway pooled the closed connection
            r = gw.request("POST", "/echo?after=" + path, body=b"abc")
            self.assertEqual(r.status, 200, "POST after %s: %r" % (path, r))
        self.assertEqual(up.stats()["dropped"], 0)

    def test_client_abort_during_big_response(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up, workers=1)
        for _ in range(3):
            c = RawConn(gw.port)
            c.send(build_request("GET", "/big?bytes=%d" % (20 * MIB)))
            c.sock.recv(1000)
            c.close()
        r = gw.request("GET", "/echo?after=abort")
        self.assertEqual(r.json()["query"], "after=abort")
        self.assertTrue(gw.running())


class BadUpstreams(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.gateway_for(self.up)

    def test_garbage_from_upstream_is_502(self):
        self.assertJsonError(self.gw.request("GET", "/garbage"), 502)
        self.assertEqual(self.gw.request("GET", "/echo").status, 200)

    def test_upstream_hangup_is_502(self):
        self.assertJsonError(self.gw.request("GET", "/hangup"), 502)
        self.assertLessEqual(self.up.stats()["requests"], 2, "retried more than once")
        self.assertEqual(self.gw.request("GET", "/echo").status, 200)

    def test_truncated_upstream_body_closes_the_client_connection(self):
        c = self.raw(self.gw)
        c.send(build_request("GET", "/truncated?bytes=100000&send=1000"))
        try:
            r = c.read_response(timeout=5)
            self.fail("a truncated upstream body was delivered as a whole response: %r" % r)
        except ConnectionClosed:
            pass
        self.assertEqual(self.gw.request("GET", "/echo").status, 200)


class RequestTargets(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.gateway_for(self.up)

    def test_encoded_path_and_query_pass_unchanged(self):
        target = "/echo/a%2Fb/%7Euser/x;p=1?q=%20a+b&q=2&empty=&u=%E2%82%AC"
        r = self.raw(self.gw).request(build_request("GET", target))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["target"], target)

    def test_absolute_form_request_target(self):
        r = self.raw(self.gw).request(build_request("GET", "http://sluice.test/echo?x=1"))
        self.assertEqual(r.status, 200, r)
        e = r.json()
        self.assertEqual((e["path"], e["query"]), ("/echo", "x=1"))

    def dot_segment_case(self, target):
        """Routes: /echo/public/ -> A, /echo/ -> B. <target> climbs out of /echo/public/
        with dot-segments; it must not be matched by the /echo/public/ rule as is (the
        upstream would resolve it to /echo/private): 400, or routing on the normalized
        path, are both fine."""
        b = self.start_upstream("B")
        gw = self.gateway_for(self.up, upstreams={"b": b}, routes=[
            {"prefix": "/echo/public/", "upstream": "app"},
            {"prefix": "/echo/", "upstream": "b"}])
        r = self.raw(gw).request(build_request("GET", target))
        self.assertFalse(r.status == 200 and r.header("X-Upstream") == "A",
                         "%s was routed by the /echo/public/ rule and reached the upstream as "
                         "%r" % (target, r.json().get("target") if r.status == 200 else None))
        if r.status == 200:
            self.assertEqual(r.header("X-Upstream"), "B")
        else:
            self.assertJsonError(r, 400)

    def test_dot_segments_do_not_escape_a_prefix_route(self):
        self.dot_segment_case("/echo/public/../private")

    def test_encoded_dot_segments_do_not_escape_a_prefix_route(self):
        self.dot_segment_case("/echo/public/%2e%2e/private")

    def test_long_query_under_limit(self):
        target = "/echo?q=" + "a" * 10000
        r = self.raw(self.gw).request(build_request("GET", target))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["target"], target)

    def test_request_line_over_header_limit(self):
        c = self.raw(self.gw)
        c.send(build_request("GET", "/echo?q=" + "a" * 20000))
        r = c.read_response()
        self.assertIn(r.status, (414, 431), r)
        self.assertJsonError(r, r.status)


class HeaderMultiplicity(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.gateway_for(self.up)

    def test_repeated_request_headers_all_forwarded(self):
        r = self.raw(self.gw).request(build_request("GET", "/echo", headers=[
            ("X-Multi", "one"), ("X-Multi", "two"), ("Cookie", "a=1"), ("Accept", "*/*")]))
        h = r.json()["headers"]
        self.assertEqual(",".join(h.get("x-multi", [])).replace(" ", ""), "one,two")
        self.assertEqual(h.get("cookie"), ["a=1"])

    def test_repeated_set_cookie_kept_separate(self):
        r = self.gw.request("GET", "/headers")
        self.assertEqual(r.header_all("Set-Cookie"), ["a=1; Path=/", "b=2; Path=/"])

    def test_overlong_request_id_is_replaced(self):
        rid = "r" * 300
        r = self.gw.request("GET", "/echo", headers={"X-Request-Id": rid})
        got = r.json()["headers"].get("x-request-id")
        self.assertTrue(r.header("X-Request-Id"))
        self.assertNotEqual(r.header("X-Request-Id"), rid, "a 300-byte request id was kept")
        self.assertEqual(got, [r.header("X-Request-Id")])


class Stalls(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def test_client_body_stall_is_timed_out(self):
        gw = self.gateway_for(self.up, server={"timeouts": {"idle": "500ms", "header": "10s"}})
        c = self.raw(gw)
        c.send(build_request("POST", "/echo", headers=[("Content-Length", "10")]) + b"12345")
        t0 = time.monotonic()
        self.assertTrue(c.wait_closed(5), "a stalled request body kept the connection 5 s "
                        "(idle: 500ms)")
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)
        if c.extra:
            self.assertIn(b" 408 ", c.extra.split(b"\r\n", 1)[0], c.extra[:200])
        self.assertEqual(gw.request("GET", "/echo").status, 200)

    def test_upstream_stall_mid_body_closes_the_client(self):
        gw = self.gateway_for(self.up, server={"timeouts": {"upstream_read": "500ms"}})
        c = self.raw(gw)
        c.send(build_request("GET", "/chunked?n=3&size=10&delay_ms=3000"))
        t0 = time.monotonic()
        with self.assertRaises(ConnectionClosed, msg="a stalled upstream body was delivered"):
            c.read_response(timeout=5)
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertEqual(gw.request("GET", "/echo").status, 200)


class MetricsErrors(E2ETestCase):
    def test_upstream_errors_are_counted(self):
        from harness import free_port
        gw = self.gateway_for(free_port())
        self.assertEqual(gw.request("GET", "/echo").status, 502)
        text = gw.admin_request("GET", "/metrics").body.decode()
        vals = [float(l.rsplit(None, 1)[1]) for l in text.splitlines()
                if l.startswith("sluice_upstream_errors_total")]
        self.assertTrue(vals and sum(vals) >= 1, "no upstream error counted: %s"
                        % [l for l in text.splitlines() if "upstream" in l])
        self.assertIn('status="502"', text)

    def test_counts_summed_over_workers(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up, workers=2, routes=[{"prefix": "/echo", "upstream": "app"}])
        for i in range(40):  # new connections: they spread over both workers
            self.assertEqual(gw.request("GET", "/echo?i=%d" % i).status, 200)
        text = gw.admin_request("GET", "/metrics").body.decode()
        n = sum(float(l.rsplit(None, 1)[1]) for l in text.splitlines()
                if l.startswith("sluice_requests_total{") and 'route="/echo"' in l
                and 'status="200"' in l)
        self.assertEqual(n, 40, [l for l in text.splitlines() if "requests_total" in l])


if __name__ == "__main__":
    unittest.main()
