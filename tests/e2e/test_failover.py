"""Upstream groups: round-robin over servers, and failover to the next server
when one refuses connections (nothing was sent, so any method may move)."""

import unittest

from harness import E2ETestCase, build_request, free_port, make_config


class Failover(E2ETestCase):
    def test_round_robin_spreads_over_servers(self):
        a, b = self.start_upstream("A"), self.start_upstream("B")
        gw = self.start_gateway(make_config({"app": [a, b]}, workers=1))
        seen = [gw.request("GET", "/echo?i=%d" % i).header("X-Upstream") for i in range(10)]
        self.assertEqual(seen.count("A"), 5, seen)
        self.assertEqual(seen.count("B"), 5, seen)

    def test_refused_server_is_skipped(self):
        up = self.start_upstream("A")
        dead = free_port()  # nothing listens there
        gw = self.start_gateway(make_config({"app": ["127.0.0.1:%d" % dead, up]}, workers=1))
        for i in range(6):
            c = self.raw(gw)
            resp = c.request(build_request("POST", "/echo?i=%d" % i, body=b"payload"))
            self.assertEcho(resp, "POST", b"payload")
            self.assertEqual(resp.header("X-Upstream"), "A")
        metrics = gw.admin_request("GET", "/metrics").body.decode()
        self.assertIn('sluice_upstream_errors_total{upstream="app",kind="connect"}', metrics)

    def test_all_servers_refusing_is_502(self):
        gw = self.start_gateway(make_config(
            {"app": ["127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()]}))
        resp = gw.request("GET", "/x")
        self.assertJsonError(resp, 502)


if __name__ == "__main__":
    unittest.main()
