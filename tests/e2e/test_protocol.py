"""The HTTP/1.1 server's defences and limits: request smuggling vectors (400 and
close, nothing forwarded), malformed requests, 431, 413, 408, idle close."""

import os
import select
import socket
import time
import unittest

from harness import E2ETestCase, build_request

B = b"POST /echo HTTP/1.1\r\nHost: sluice.test\r\n"

# name -> (request bytes, what it is); each must be answered 400 and the connection closed
SMUGGLING = {
    "cl_and_te": (B + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                  "both Content-Length and Transfer-Encoding"),
    "te_and_cl": (B + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
                  "both Transfer-Encoding and Content-Length (TE first)"),
    "two_differing_cl": (B + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                         "two Content-Length headers that differ"),
    "cl_list_differing": (B + b"Content-Length: 5, 6\r\n\r\nhello!",
                          "one Content-Length with a list of differing values"),
    "te_chunked_then_gzip": (B + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
                             "Transfer-Encoding whose final coding is not chunked"),
    "te_identity": (B + b"Transfer-Encoding: identity\r\n\r\nhello",
                    "Transfer-Encoding: identity"),
    "te_gzip": (B + b"Transfer-Encoding: gzip\r\n\r\nhello", "Transfer-Encoding: gzip"),
    "te_two_headers_last_identity": (
        B + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        "two Transfer-Encoding headers, the last not chunked"),
    "obs_fold_space": (B + b"Content-Length: 5\r\nX-Foo: a\r\n b\r\n\r\nhello",
                       "obs-fold: a header line starting with a space"),
    "obs_fold_tab": (B + b"Content-Length: 5\r\nX-Foo: a\r\n\tb\r\n\r\nhello",
                     "obs-fold: a header line starting with a tab"),
    "obs_fold_transfer_encoding": (B + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
                                   "Transfer-Encoding value on a folded line"),
    "nul_in_header_value": (B + b"Content-Length: 5\r\nX-Foo: a\x00b\r\n\r\nhello",
                            "NUL in a header value"),
    "bare_cr_in_header_value": (B + b"Content-Length: 5\r\nX-Foo: a\rb\r\n\r\nhello",
                                "bare CR in a header value"),
    "space_before_colon": (B + b"Content-Length : 5\r\n\r\nhello",
                           "whitespace between header name and colon"),
    "cl_not_a_number": (B + b"Content-Length: 5x\r\n\r\nhello", "Content-Length: 5x"),
}


class Smuggling(E2ETestCase):
    """Each vector: 400 with a JSON body, the connection closed, the upstream untouched."""

    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.gateway_for(self.up)

    def check_rejected(self, data, what):
        c = self.raw(self.gw)
        c.send(data)
        resp = c.read_response()
        self.assertEqual(resp.status, 400, "%s: want 400, got %r" % (what, resp))
        self.assertJsonError(resp, 400)
        self.assertClosed(c, msg="400 for %s" % what)
        time.sleep(0.05)
        self.assertEqual(self.up.stats()["requests"], 0, "%s was forwarded upstream" % what)

    for _name, (_data, _what) in SMUGGLING.items():
        def _t(self, data=_data, what=_what):
            self.check_rejected(data, what)
        _t.__name__ = "test_" + _name
        _t.__doc__ = _what + " -> 400 and close"
        locals()[_t.__name__] = _t
    del _name, _data, _what, _t


class Malformed(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def test_garbage_request_line_is_400_and_close(self):
        gw = self.gateway_for(self.up)
        c = self.raw(gw)
        c.send(b"GARBAGE\r\n\r\n")
        resp = c.read_response()
        self.assertJsonError(resp, 400)
        self.assertClosed(c, msg="400 for a garbage request line")

    def test_http11_without_host_is_400(self):
        gw = self.gateway_for(self.up)
        c = self.raw(gw)
        c.send(b"GET /echo HTTP/1.1\r\nX-A: 1\r\n\r\n")
        self.assertJsonError(c.read_response(), 400)
        self.assertEqual(self.up.stats()["requests"], 0)

    def test_two_host_headers_is_400(self):
        gw = self.gateway_for(self.up)
        c = self.raw(gw)
        c.send(b"GET /echo HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n")
        self.assertJsonError(c.read_response(), 400)
        self.assertEqual(self.up.stats()["requests"], 0)

    def test_malformed_chunk_size_is_400_and_close(self):
        gw = self.gateway_for(self.up)
        c = self.raw(gw)
        c.send(B + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
        resp = c.read_response()
        self.assertJsonError(resp, 400)
        self.assertClosed(c, msg="400 for a malformed chunk size")

    def test_chunk_extensions_are_bounded(self):
        """Extensions are dropped when the body is re-framed, but must not be
        read without end (a 20 MB one was accepted): 4 KiB, then 400."""
        gw = self.gateway_for(self.up)
        c = self.raw(gw)
        c.send(B + b"Transfer-Encoding: chunked\r\n\r\n5;a=" + b"x" * 4000 +
               b"\r\nhello\r\n0\r\n\r\n")
        self.assertEcho(c.read_response(), "POST", b"hello")
        c = self.raw(gw)
        c.send(B + b"Transfer-Encoding: chunked\r\n\r\n5;a=" + b"x" * 5000 +
               b"\r\nhello\r\n0\r\n\r\n")
        self.assertJsonError(c.read_response(), 400)
        self.assertClosed(c, msg="400 for a 5,000-byte chunk extension")
        c = self.raw(gw)
        c.send(B + b"Transfer-Encoding: chunked\r\n\r\n5" + b";n=v" * 2000 +
               b"\r\nhello\r\n0\r\n\r\n")
        self.assertJsonError(c.read_response(), 400)
        self.assertClosed(c, msg="400 for 2,000 chunk extensions")
        # (the head may have gone upstream already; the body never completes
        # there, since the upstream connection is dropped with the request)


class Limits(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def test_20k_header_is_431(self):
        gw = self.gateway_for(self.up)  # max_header_bytes defaults to 16k
        c = self.raw(gw)
        ok = c.request(build_request("GET", "/echo", headers=[("X-Big", "a" * 8192)]))
        self.assertEqual(ok.status, 200, "an 8 KiB header must pass")
        c = self.raw(gw)
        c.send(build_request("GET", "/echo", headers=[("X-Big", "a" * 20480)]))
        self.assertJsonError(c.read_response(), 431)
        self.assertEqual(self.up.stats()["requests"], 1)

    def test_many_headers_over_the_limit_is_431(self):
        gw = self.gateway_for(self.up, server={"max_header_bytes": "4k"})
        c = self.raw(gw)
        c.send(build_request("GET", "/echo",
                             headers=[("X-H%d" % i, "v" * 200) for i in range(30)]))
        self.assertJsonError(c.read_response(), 431)

    def test_body_over_max_body_bytes_content_length_is_413(self):
        gw = self.gateway_for(self.up, server={"max_body_bytes": "1k"})
        c = self.raw(gw)
        body = os.urandom(1024)
        self.assertEcho(c.request(build_request("POST", "/echo", body=body)), "POST", body)
        c = self.raw(gw)
        # the head alone: the gateway must answer from Content-Length without the body
        c.send(build_request("POST", "/echo", headers=[("Content-Length", "2048")]))
        self.assertJsonError(c.read_response(timeout=5), 413)
        self.assertEqual(self.up.stats()["requests"], 1, "the oversized request was forwarded")

    def test_body_over_max_body_bytes_chunked_is_413(self):
        gw = self.gateway_for(self.up, server={"max_body_bytes": "1k"})
        c = self.raw(gw)
        c.send(build_request("POST", "/echo", body=[b"a" * 1000, b"b" * 1000], chunked=True))
        self.assertJsonError(c.read_response(), 413)

    def test_expect_100_with_oversized_body_is_413_without_continue(self):
        gw = self.gateway_for(self.up, server={"max_body_bytes": "1k"})
        c = self.raw(gw)
        c.send(build_request("POST", "/echo", headers=[("Expect", "100-continue"),
                                                       ("Content-Length", "5000")]))
        resp = c.read_response(skip_interim=False, timeout=5)
        self.assertJsonError(resp, 413)


class Timeouts(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def test_header_timeout_is_408(self):
        gw = self.gateway_for(self.up, server={"timeouts": {"header": "500ms", "idle": "30s"}})
        c = self.raw(gw)
        c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        t0 = time.monotonic()
        resp = c.read_response(timeout=5)
        elapsed = time.monotonic() - t0
        self.assertJsonError(resp, 408)
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertLess(elapsed, 3.0)
        self.assertClosed(c, msg="408")

    def test_header_timeout_is_not_reset_by_trickling_bytes(self):
        gw = self.gateway_for(self.up, server={"timeouts": {"header": "500ms", "idle": "30s"}})
        c = self.raw(gw)
        head = b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
        t0 = time.monotonic()
        for i in range(len(head)):
            try:
                c.send(head[i:i + 1])
            except OSError:
                break
            r, _, _ = select.select([c.sock], [], [], 0.1)
            if r or time.monotonic() - t0 > 5:
                break
        resp = c.read_response(timeout=5)
        elapsed = time.monotonic() - t0
        self.assertJsonError(resp, 408)
        self.assertLess(elapsed, 3.0, "a slowloris head kept the connection for %.1fs" % elapsed)

    def test_idle_keepalive_connection_is_closed(self):
        gw = self.gateway_for(self.up, server={"timeouts": {"idle": "500ms", "header": "10s"}})
        c = self.raw(gw)
        self.assertEcho(c.request(build_request("GET", "/echo")), "GET")
        t0 = time.monotonic()
        closed = c.wait_closed(5)
        elapsed = time.monotonic() - t0
        self.assertTrue(closed, "idle connection still open after 5 s (idle: 500ms)")
        self.assertEqual(c.extra, b"", "bytes sent on an idle connection before closing")
        self.assertGreaterEqual(elapsed, 0.4, "closed after %.2fs, before idle elapsed" % elapsed)
        self.assertLess(elapsed, 3.0)

    def test_idle_timer_does_not_cut_a_slow_upstream(self):
        gw = self.gateway_for(self.up, server={"timeouts": {"idle": "500ms"}})
        c = self.raw(gw)
        resp = c.request(build_request("GET", "/slow?ms=1200"))
        self.assertEqual(resp.status, 200)

    def test_new_connection_without_bytes_is_closed(self):
        gw = self.gateway_for(self.up, server={"timeouts": {"header": "500ms", "idle": "500ms"}})
        c = self.raw(gw)
        t0 = time.monotonic()
        self.assertTrue(c.wait_closed(5), "a connection that never sent a byte is still open "
                        "after 5 s (header and idle timeouts: 500ms)")
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)
        if c.extra:  # a 408 is fine, anything else is not
            self.assertIn(b" 408 ", c.extra.split(b"\r\n", 1)[0])


if __name__ == "__main__":
    unittest.main()
