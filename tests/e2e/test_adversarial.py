"""Adversarial suites as data tables (issue 11): more request smuggling vectors
(RFC 9112 and the HAProxy/PortSwigger families), framing that is accepted and
exactly what the upstream then sees, a response-smuggling upstream, and
identity spoofing through forwarding headers. Every case asserts what the
upstream saw, not only the status."""

import json
import socket
import threading
import time
import unittest

from harness import E2ETestCase, make_config

B = b"POST /echo HTTP/1.1\r\nHost: sluice.test\r\n"

# name -> (request bytes, what it is): 400, the connection closed, nothing forwarded.
REFUSED = {
    "bare_lf_everywhere": (b"POST /echo HTTP/1.1\nHost: a\nContent-Length: 5\n\nhello",
                           "bare LF line endings"),
    "bare_lf_one_header": (B + b"Content-Length: 5\nX: y\r\n\r\nhello",
                           "one header line ended by a bare LF"),
    "chunk_size_overflow": (B + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\n"
                            b"hello\r\n0\r\n\r\n", "a chunk size past 64 bits"),
    "cl_plus_sign": (B + b"Content-Length: +5\r\n\r\nhello", "Content-Length: +5"),
    "cl_negative": (B + b"Content-Length: -5\r\n\r\nhello", "Content-Length: -5"),
    "cl_twice_same_value": (B + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
                            "two Content-Length headers, even equal"),
    "cl_list_same_value": (B + b"Content-Length: 5, 5\r\n\r\nhello",
                           "Content-Length: 5, 5"),
    "cl_huge": (B + b"Content-Length: 99999999999999999999999\r\n\r\nhello",
                "a Content-Length past 64 bits"),
    "te_xchunked": (B + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
                    "Transfer-Encoding: xchunked"),
    "te_trailing_space": (B + b"Transfer-Encoding: chunked \r\n\r\n0\r\n\r\n",
                          "Transfer-Encoding: 'chunked ' (trailing space)"),
    "te_vertical_tab": (B + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
                        "a vertical tab before the Transfer-Encoding value"),
    "te_in_http10": (b"POST /echo HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"0\r\n\r\n", "Transfer-Encoding in HTTP/1.0"),
    "space_in_header_name": (B + b"Content Length: 5\r\n\r\nhello", "a space in a header name"),
    "chunk_ext_bare_lf": (B + b"Transfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
                          "a bare LF inside a chunk extension"),
    "chunk_size_trailing_space": (B + b"Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n"
                                  b"\r\n", "a space after the chunk size"),
    "chunk_data_too_long": (B + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
                            "chunk data longer than its size"),
}

# name -> (request bytes, [(method, target, body) the upstream must see, in order]):
# accepted, and re-framed so the upstream cannot read it any other way.
ACCEPTED = {
    "te_upper_case": (B + b"Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                      [("POST", "/echo", b"hello")]),
    "get_with_a_body": (b"GET /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
                        [("GET", "/echo", b"hello")]),
    # A second request after a body is a second request, never part of the first.
    "pipelined_after_body": (B + b"Content-Length: 5\r\n\r\nhelloGET /echo?second=1 HTTP/1.1\r\n"
                             b"Host: a\r\n\r\n",
                             [("POST", "/echo", b"hello"), ("GET", "/echo?second=1", b"")]),
    "chunked_with_trailers": (B + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
                              b"X-Trailer: evil\r\n\r\n", [("POST", "/echo", b"hello")]),
}


def read_all(sock, want_responses, timeout=3.0):
    sock.settimeout(timeout)
    data = b""
    try:
        while data.count(b"HTTP/1.1 ") < want_responses or not data.endswith(b"}\n"):
            d = sock.recv(65536)
            if not d:
                break
            data += d
    except socket.timeout:
        pass
    return data


class Refused(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.gateway_for(self.up)

    def check(self, data, what):
        c = self.raw(self.gw)
        c.send(data)
        resp = c.read_response()
        self.assertEqual(resp.status, 400, "%s: want 400, got %r" % (what, resp))
        self.assertJsonError(resp, 400)
        self.assertClosed(c, msg="400 for %s" % what)
        time.sleep(0.05)
        self.assertEqual(self.up.stats()["requests"], 0, "%s was forwarded upstream" % what)

    for _name, (_data, _what) in REFUSED.items():
        def _t(self, data=_data, what=_what):
            self.check(data, what)
        _t.__name__ = "test_" + _name
        _t.__doc__ = _what + " -> 400, close, nothing forwarded"
        locals()[_t.__name__] = _t
    del _name, _data, _what, _t


class Accepted(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.gateway_for(self.up, workers=1)

    def check(self, data, want):
        s = socket.create_connection(("127.0.0.1", self.gw.port))
        self.addCleanup(s.close)
        s.sendall(data)
        raw = read_all(s, len(want))
        bodies = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"\n")[0])
                  for part in raw.split(b"HTTP/1.1 ")[1:]]
        self.assertEqual(len(bodies), len(want), raw[:400])
        for seen, (method, target, body) in zip(bodies, want):
            self.assertEqual(seen["method"], method)
            self.assertEqual(seen["target"], target)
            self.assertEqual(seen["body_len"], len(body))
            # framing chosen by the gateway, one of them only
            te = seen["headers"].get("transfer-encoding", [])
            cl = seen["headers"].get("content-length", [])
            self.assertLessEqual(len(te) + len(cl), 1, seen["headers"])
            self.assertNotIn("x-trailer", seen["headers"])
        self.assertEqual(self.up.stats()["requests"], len(want))

    for _name, (_data, _want) in ACCEPTED.items():
        def _t(self, data=_data, want=_want):
            self.check(data, want)
        _t.__name__ = "test_" + _name
        locals()[_t.__name__] = _t
    del _name, _data, _want, _t


class ResponseSmuggling(E2ETestCase):
    """An upstream whose response is ambiguous (both Content-Length and
    Transfer-Encoding) or carries a second response: the client gets a 502
    or exactly one response, never the upstream's extra bytes as a response
    to its next request."""

    RESPONSES = {
        "te_and_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"0\r\n\r\n",
        "two_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 30\r\n\r\nok",
        "extra_response": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                          b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nEVIL!!",
    }

    def raw_upstream(self, response):
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        stop = threading.Event()

        def serve():
            srv.settimeout(0.2)
            while not stop.is_set():
                try:
                    c, _ = srv.accept()
                except socket.timeout:
                    continue
                c.settimeout(2)
                try:
                    c.recv(65536)
                    c.sendall(response)
                    time.sleep(0.2)
                except OSError:
                    pass
                c.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        self.addCleanup(lambda: (stop.set(), t.join(2), srv.close()))
        return srv.getsockname()[1]

    def check(self, response):
        port = self.raw_upstream(response)
        gw = self.start_gateway(make_config({"app": port}, workers=1))
        c = self.raw(gw)
        c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        r1 = c.read_response()
        self.assertIn(r1.status, (200, 502))
        if r1.status == 200:
            self.assertEqual(r1.body, b"ok")
        # the next request on the connection is answered by the upstream
        # afresh (or the connection is closed), never with "EVIL!!"
        try:
            c.send(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            r2 = c.read_response(timeout=3)
            self.assertNotEqual(r2.body, b"EVIL!!")
        except Exception:  # noqa: BLE001 - a closed connection is a fine answer
            pass

    def test_te_and_cl(self):
        self.check(self.RESPONSES["te_and_cl"])

    def test_two_content_lengths(self):
        self.check(self.RESPONSES["two_cl"])

    def test_extra_response_is_not_served_to_the_next_request(self):
        self.check(self.RESPONSES["extra_response"])


# name -> (headers, {"trusted": bool}): the client is 127.0.0.1 either way when the
# peer is not trusted; with a trusted peer, the rightmost untrusted XFF address.
SPOOF_UNTRUSTED = {
    "xff": [("X-Forwarded-For", "198.51.100.%d")],
    "xff_two_headers": [("X-Forwarded-For", "203.0.113.1"), ("X-Forwarded-For", "198.51.100.%d")],
    "x_real_ip": [("X-Real-IP", "198.51.100.%d")],
    "forwarded": [("Forwarded", "for=198.51.100.%d")],
    "true_client_ip": [("True-Client-IP", "198.51.100.%d")],
    "x_client_ip": [("X-Client-IP", "198.51.100.%d")],
}


class Spoofing(E2ETestCase):
    """A limit of 1/min per client: a spoofed address must not buy a fresh
    counter; the upstream sees the real peer appended to X-Forwarded-For."""

    def setUp(self):
        self.up = self.start_upstream("A")

    def gateway(self, trusted):
        cfg = make_config({"app": self.up}, routes=[
            {"prefix": "/", "limits": {"anonymous": ["1/min"]}}], workers=1,
            server={"trusted_proxies": ["127.0.0.1/32"] if trusted else []})
        return self.start_gateway(cfg)

    def check_untrusted(self, headers):
        gw = self.gateway(False)
        h1 = [(k, v % 1 if "%d" in v else v) for k, v in headers]
        h2 = [(k, v % 2 if "%d" in v else v) for k, v in headers]
        r = gw.request("GET", "/echo", headers=h1)
        self.assertEqual(r.status, 200)
        seen = r.json()["headers"]["x-forwarded-for"]
        self.assertEqual(seen[-1].split(",")[-1].strip(), "127.0.0.1", seen)
        self.assertEqual(gw.request("GET", "/echo", headers=h2).status, 429,
                         "a spoofed %s bought a fresh counter" % headers[-1][0])
        self.assertEqual(self.up.stats()["requests"], 1)

    for _name, _headers in SPOOF_UNTRUSTED.items():
        def _t(self, headers=_headers):
            self.check_untrusted(headers)
        _t.__name__ = "test_untrusted_peer_" + _name
        locals()[_t.__name__] = _t
    del _name, _headers, _t

    def test_trusted_peer_rightmost_untrusted_address(self):
        gw = self.gateway(True)
        # a client behind our trusted proxy prepends a lie: the rightmost
        # untrusted address is the one the proxy saw
        r = gw.request("GET", "/echo", headers=[("X-Forwarded-For", "1.1.1.1, 198.51.100.7")])
        self.assertEqual(r.status, 200)
        self.assertEqual(gw.request("GET", "/echo", headers=[
            ("X-Forwarded-For", "2.2.2.2, 198.51.100.7")]).status, 429)
        # trusted hops are skipped: 198.51.100.8 is the client
        self.assertEqual(gw.request("GET", "/echo", headers=[
            ("X-Forwarded-For", "198.51.100.8, 127.0.0.1")]).status, 200)
        self.assertEqual(gw.request("GET", "/echo", headers=[
            ("X-Forwarded-For", "198.51.100.8")]).status, 429)
        # X-Real-IP is not a source of identity even from a trusted peer
        self.assertEqual(gw.request("GET", "/echo", headers=[
            ("X-Forwarded-For", "198.51.100.8"), ("X-Real-IP", "198.51.100.9")]).status, 429)
        self.assertEqual(self.up.stats()["requests"], 2)

    def test_trusted_peer_garbage_xff_falls_back(self):
        gw = self.gateway(True)
        # unparsable: the identity is the last good hop (here: the peer)
        self.assertEqual(gw.request("GET", "/echo", headers=[
            ("X-Forwarded-For", "not-an-ip")]).status, 200)
        self.assertEqual(gw.request("GET", "/echo", headers=[
            ("X-Forwarded-For", "still not an ip")]).status, 429)


if __name__ == "__main__":
    unittest.main()
