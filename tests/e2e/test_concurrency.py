"""1,000 concurrent client connections, all open at once, all answered."""

import json
import time
import unittest

from harness import (ConnectionClosed, E2ETestCase, RawConn, build_request, parse_response,
                     wait_for)


class Concurrency(E2ETestCase):
    N = 1000

    def test_1000_concurrent_connections_all_answered(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up, keepalive=64)
        req = b"GET /echo?c=1 HTTP/1.1\r\nHost: sluice.test\r\nConnection: close\r\n\r\n"
        t0 = time.monotonic()
        connected, results = self._run(gw.port, req)
        self.assertEqual(connected, self.N, "only %d of %d connections were established"
                         % (connected, self.N))
        bad = {}
        for r in results:
            if isinstance(r, bytes):
                try:
                    resp = parse_response(r)
                    if resp.status == 200 and json.loads(resp.body)["query"] == "c=1":
                        continue
                    key = "status %d" % resp.status
                except Exception as e:  # noqa: BLE001 - tallied below
                    key = "unparsable (%s): %r" % (e, r[:80])
            else:
                key = repr(r)
            bad[key] = bad.get(key, 0) + 1
        self.assertEqual(bad, {}, "%d of %d connections not answered 200 (%.1fs)"
                         % (sum(bad.values()), self.N, time.monotonic() - t0))
        self.assertEqual(up.stats()["requests"], self.N)
        # the gateway is still healthy afterwards
        self.assertEqual(gw.request("GET", "/_sluice/health").status, 200)

    def test_max_connections_is_enforced(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up, workers=1, server={"max_connections": 10})
        conns = []
        for i in range(10):
            c = self.raw(gw)
            self.assertEqual(c.request(build_request("GET", "/echo?i=%d" % i)).status, 200)
            conns.append(c)
        # the 11th is not served while 10 are open (refused, closed, 503 or left waiting)
        served = False
        extra = None
        try:
            extra = RawConn(gw.port, timeout=1)
            extra.send(build_request("GET", "/echo?i=11"))
            r = extra.read_response(timeout=1)
            served = r.status == 200
        except (OSError, ConnectionClosed, ValueError):
            pass
        finally:
            if extra is not None:
                extra.close()
        self.assertFalse(served, "an 11th connection was served with max_connections: 10")
        # once one closes, a new connection is served again
        conns[0].close()
        def ok():
            try:
                with RawConn(gw.port, timeout=2) as c:
                    return c.request(build_request("GET", "/echo?i=12")).status == 200
            except (OSError, ConnectionClosed, ValueError):
                return False
        self.assertTrue(wait_for(ok, timeout=5, interval=0.2),
                        "no connection served after dropping below max_connections")

    def test_200_concurrent_slow_requests_overlap(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up, keepalive=16)
        req = b"GET /slow?ms=500 HTTP/1.1\r\nHost: sluice.test\r\nConnection: close\r\n\r\n"
        t0 = time.monotonic()
        from harness import concurrent_requests
        connected, results = concurrent_requests(gw.port, 200, req, timeout=30)
        elapsed = time.monotonic() - t0
        statuses = [parse_response(r).status if isinstance(r, bytes) else repr(r)
                    for r in results]
        self.assertEqual(statuses, [200] * 200)
        self.assertGreaterEqual(up.stats()["max_in_flight"], 100,
                                "upstream requests did not overlap: %r" % up.stats())
        self.assertLess(elapsed, 8, "200 x 500 ms took %.1fs" % elapsed)

    def _run(self, port, req):
        from harness import concurrent_requests
        return concurrent_requests(port, self.N, req, timeout=60)


if __name__ == "__main__":
    unittest.main()
