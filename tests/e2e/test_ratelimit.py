"""Rate limiting on the memory store (SPEC 3.1-3.5), tried as a user would:
real clients, a real gateway, a counting upstream."""

import json
import threading
import time
import unittest

from harness import E2ETestCase, RawConn, build_request, make_config


def limited_config(up, routes, tiers=None, limits=None, server=None, workers=2):
    cfg = make_config({"app": up}, routes=routes, server=server, workers=workers)
    if tiers is not None:
        cfg["tiers"] = tiers
    if limits is not None:
        cfg["limits"] = limits
    return cfg


class Basics(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def test_100_per_hour_then_429_with_json_body_and_headers(self):
        gw = self.start_gateway(limited_config(self.up, [
            {"path": "/echo/market", "limits": {"anonymous": ["100/h"]}},
            {"prefix": "/"}]))
        c = RawConn(gw.port)
        for i in range(100):
            r = c.request(build_request("GET", "/echo/market"))
            self.assertEqual(r.status, 200, "request %d" % (i + 1))
            self.assertEqual(r.header("X-RateLimit-Limit"), "100")
            self.assertEqual(r.header("X-RateLimit-Remaining"), str(99 - i))
            reset = int(r.header("X-RateLimit-Reset"))
            self.assertGreater(reset, time.time() - 1)
            self.assertLessEqual(reset, time.time() + 7300)
        r = c.request(build_request("GET", "/echo/market"))
        self.assertEqual(r.status, 429)
        self.assertEqual(r.header("Content-Type"), "application/json")
        body = r.json()
        self.assertEqual(body["error"], "Rate limit exceeded")
        self.assertEqual(body["message"], "Maximum 100 requests per hour allowed")
        retry = int(r.header("Retry-After"))
        self.assertGreaterEqual(retry, 1)
        self.assertLessEqual(retry, 7200)
        self.assertEqual(body["retry_after"], retry)
        self.assertEqual(r.header("X-RateLimit-Remaining"), "0")
        self.assertEqual(self.up.stats()["requests"], 100, "the 101st reached the upstream")
        # another route is not limited by this route's counter
        self.assertEqual(c.request(build_request("GET", "/echo/other")).status, 200)

    def test_burst_and_sustained_with_drf_body(self):
        gw = self.start_gateway(limited_config(self.up, [
            {"path": "/echo/leads/", "methods": ["POST"],
             "limits": {"anonymous": ["2/min", "10/hour"]}, "rejection": "drf"},
            {"prefix": "/"}]))
        statuses = [gw.request("POST", "/echo/leads/", body=b"{}").status for _ in range(3)]
        self.assertEqual(statuses, [200, 200, 429])
        r = gw.request("POST", "/echo/leads/", body=b"{}")
        self.assertEqual(r.status, 429)
        detail = r.json()["detail"]
        self.assertRegex(detail, r"^Request was throttled\. Expected available in \d+ seconds?\.$")
        secs = int(detail.split(" in ")[1].split()[0])
        self.assertEqual(secs, int(r.header("Retry-After")))
        # sliding window: the previous minute still weighs on the next one
        self.assertLessEqual(secs, 120)
        # the most restrictive limit is the one shown: the per-minute one is exhausted
        self.assertEqual(r.header("X-RateLimit-Limit"), "2")

    def test_limits_off_route_is_never_limited(self):
        gw = self.start_gateway(limited_config(self.up, [
            {"prefix": "/echo/static/", "limits": "off"}, {"prefix": "/"}],
            tiers={"anonymous": {"limits": ["5/h"]}}))
        c = RawConn(gw.port)
        for i in range(500):
            r = c.request(build_request("GET", "/echo/static/x"))
            self.assertEqual(r.status, 200, "request %d" % (i + 1))
            self.assertIsNone(r.header("X-RateLimit-Limit"))
        # the tier limit still applies elsewhere
        codes = [c.request(build_request("GET", "/echo/api")).status for _ in range(6)]
        self.assertEqual(codes, [200] * 5 + [429])

    def test_tier_limit_is_shared_across_routes(self):
        gw = self.start_gateway(limited_config(self.up, [
            {"prefix": "/echo/a/"}, {"prefix": "/echo/b/"}],
            tiers={"anonymous": {"limits": ["4/min"]}}))
        codes = [gw.request("GET", "/echo/%s/x" % ("a" if i % 2 else "b")).status
                 for i in range(5)]
        self.assertEqual(codes, [200, 200, 200, 200, 429])

    def test_exempt_tier_and_global_switch(self):
        gw = self.start_gateway(limited_config(self.up, [
            {"prefix": "/", "limits": {"anonymous": ["1/h"]}}],
            tiers={"anonymous": {"exempt": True}}))
        self.assertEqual([gw.request("GET", "/echo").status for _ in range(3)], [200] * 3)

    def test_enabled_false_from_environment(self):
        cfg = limited_config(self.up, [{"prefix": "/", "limits": {"anonymous": ["1/h"]}}],
                             limits={"enabled": "${RATE_LIMIT_ENABLED:-true}"})
        gw = self.start_gateway(cfg, env={"RATE_LIMIT_ENABLED": "false"})
        self.assertEqual([gw.request("GET", "/echo").status for _ in range(3)], [200] * 3)
        gw2 = self.start_gateway(cfg)
        self.assertEqual([gw2.request("GET", "/echo").status for _ in range(2)], [200, 429])

    def test_cost_weights_requests(self):
        gw = self.start_gateway(limited_config(self.up, [
            {"prefix": "/", "limits": {"anonymous": ["10/min"]}, "cost": 4}]))
        r = gw.request("GET", "/echo")
        self.assertEqual(r.header("X-RateLimit-Remaining"), "6")
        self.assertEqual([gw.request("GET", "/echo").status for _ in range(2)], [200, 429])

    def test_ietf_headers_list_every_limit(self):
        gw = self.start_gateway(limited_config(self.up, [
            {"prefix": "/", "limits": {"anonymous": ["2/min", "10/hour"]}}],
            limits={"headers": ["x-ratelimit", "ietf"]}))
        r = gw.request("GET", "/echo")
        self.assertEqual(r.header("RateLimit-Policy"),
                         '"per-minute";q=2;w=60, "hourly";q=10;w=3600')
        state = r.header("RateLimit")
        self.assertRegex(state, r'^"per-minute";r=1;t=\d+, "hourly";r=9;t=\d+$')
        gw.request("GET", "/echo")
        r = gw.request("GET", "/echo")
        self.assertEqual(r.status, 429)
        self.assertRegex(r.header("RateLimit"), r'^"per-minute";r=0;t=\d+, "hourly";r=8;t=\d+$')
        t = int(r.header("RateLimit").split(";t=")[1].split(",")[0])
        self.assertEqual(t, int(r.header("Retry-After")))

    def test_graphql_rejection_body(self):
        gw = self.start_gateway(limited_config(self.up, [
            {"path": "/echo/graphql/", "limits": {"anonymous": ["1/h"]}, "rejection": "graphql"},
            {"prefix": "/"}]))
        self.assertEqual(gw.request("POST", "/echo/graphql/", body=b"{}").status, 200)
        r = gw.request("POST", "/echo/graphql/", body=b"{}")
        self.assertEqual(r.status, 429)
        err = r.json()["errors"][0]
        self.assertEqual(err["extensions"]["code"], "RATE_LIMIT_EXCEEDED")
        self.assertRegex(err["message"], r"^Rate limit exceeded\. Limit: 1 requests per 3600s\. "
                                         r"Try again after \d+ seconds\.$")
        self.assertGreater(err["extensions"]["resetAt"], time.time())

    def test_graphql_rejection_names_the_operation(self):
        """SPEC 3.5's body: the operation and its type, read from the request."""
        gw = self.start_gateway(limited_config(self.up, [
            {"path": "/echo/graphql/", "limits": {"anonymous": ["1/h"]}, "rejection": "graphql"},
            {"prefix": "/"}]))
        doc = {"query": "mutation CreateErrand($i: ErrandInput!) { createErrand(input: $i) "
                        "{ id } }", "variables": {"i": {"title": "x" * 100}}}
        body = json.dumps(doc).encode()
        first = gw.request("POST", "/echo/graphql/", body=body)
        self.assertEqual(first.status, 200)
        # the body the limit stage read still reached the upstream whole
        self.assertEqual(first.json()["body_len"], len(body))
        r = gw.request("POST", "/echo/graphql/", body=body)
        self.assertEqual(r.status, 429)
        err = r.json()["errors"][0]
        retry = int(r.header("Retry-After"))
        self.assertEqual(err["message"], "Rate limit exceeded for mutation 'createErrand'. "
                         "Limit: 1 requests per 3600s. Try again after %d seconds." % retry)
        ext = err["extensions"]
        self.assertEqual((ext["code"], ext["operation"], ext["type"]),
                         ("RATE_LIMIT_EXCEEDED", "createErrand", "mutation"))
        self.assertAlmostEqual(ext["resetAt"], time.time() + retry, delta=3)
        # a chunked GraphQL request works the same way
        c = RawConn(gw.port)
        r = c.request(build_request("POST", "/echo/graphql/", body=[body[:10], body[10:]],
                                    chunked=True))
        self.assertEqual(r.status, 429)
        self.assertEqual(r.json()["errors"][0]["extensions"]["operation"], "createErrand")

    def test_large_graphql_body_streams_through_whole(self):
        """Past the 64 KiB the limit stage reads, the rest still streams."""
        import hashlib
        gw = self.start_gateway(limited_config(self.up, [
            {"path": "/echo/graphql/", "limits": {"anonymous": ["5/h"]}, "rejection": "graphql"},
            {"prefix": "/"}]))
        body = json.dumps({"query": "query { big(x: 1) { id } }",
                           "variables": {"blob": "y" * (300 * 1024)}}).encode()
        for chunked in (False, True):
            c = RawConn(gw.port)
            payload = [body[:70000], body[70000:]] if chunked else body
            r = c.request(build_request("POST", "/echo/graphql/", body=payload, chunked=chunked))
            self.assertEqual(r.status, 200)
            e = r.json()
            self.assertEqual(e["body_len"], len(body))
            self.assertEqual(e["body_sha256"], hashlib.sha256(body).hexdigest())

    def test_decisions_in_metrics(self):
        gw = self.start_gateway(limited_config(self.up, [
            {"prefix": "/", "limits": {"anonymous": ["1/h"]}}]))
        gw.request("GET", "/echo")
        gw.request("GET", "/echo")
        m = gw.admin_request("GET", "/metrics").body.decode()
        self.assertIn('sluice_ratelimit_decisions_total{route="/",outcome="allowed"} 1', m)
        self.assertIn('sluice_ratelimit_decisions_total{route="/",outcome="rejected"} 1', m)
        self.assertIn("sluice_ratelimit_counters ", m)

    def test_counters_survive_reload(self):
        cfg = limited_config(self.up, [{"prefix": "/", "limits": {"anonymous": ["3/h"]}}])
        gw = self.start_gateway(cfg)
        self.assertEqual([gw.request("GET", "/echo").status for _ in range(3)], [200] * 3)
        gw.reload(cfg)
        time.sleep(0.3)
        self.assertEqual(gw.request("GET", "/echo").status, 429)


class Identity(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def spoofed(self, gw, n):
        return [gw.request("GET", "/echo", headers={"X-Forwarded-For": "198.51.100.%d" % i}).status
                for i in range(n)]

    def test_spoofed_xff_from_untrusted_peer_is_ignored(self):
        gw = self.start_gateway(limited_config(self.up, [
            {"prefix": "/", "limits": {"anonymous": ["3/min"]}}]))
        self.assertEqual(self.spoofed(gw, 4), [200, 200, 200, 429])

    def test_xff_from_trusted_proxy_sets_the_identity(self):
        gw = self.start_gateway(limited_config(self.up, [
            {"prefix": "/", "limits": {"anonymous": ["3/min"]}}],
            server={"trusted_proxies": ["127.0.0.1/32"]}))
        self.assertEqual(self.spoofed(gw, 6), [200] * 6)
        same = [gw.request("GET", "/echo", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9"})
                .status for _ in range(4)]
        self.assertEqual(same, [200, 200, 200, 429])

    def test_client_ip_logged_after_trusted_proxy(self):
        gw = self.start_gateway(limited_config(self.up, [{"prefix": "/"}],
                                server={"trusted_proxies": ["127.0.0.1/32"]}))
        gw.request("GET", "/echo", headers={"X-Forwarded-For": "203.0.113.9"})
        deadline = time.time() + 3
        while time.time() < deadline and "203.0.113.9 " not in gw.stdout_text():
            time.sleep(0.05)
        self.assertIn("203.0.113.9 - - [", gw.stdout_text())


class Concurrency(E2ETestCase):
    def test_concurrency_limit_bounds_in_flight_upstream(self):
        up = self.start_upstream("A")
        gw = self.start_gateway(limited_config(up, [
            {"prefix": "/", "limits": {"anonymous": ["concurrency 5"]}}]))
        results = []
        lock = threading.Lock()

        def one():
            r = gw.request("GET", "/slow?ms=400", timeout=20)
            with lock:
                results.append(r)

        threads = [threading.Thread(target=one) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        codes = [r.status for r in results]
        self.assertEqual(len(codes), 50)
        self.assertLessEqual(up.stats()["max_in_flight"], 5)
        self.assertGreaterEqual(codes.count(200), 5)
        self.assertEqual(codes.count(200) + codes.count(429), 50, codes)
        rejected = [r for r in results if r.status == 429]
        self.assertTrue(rejected)
        self.assertEqual(rejected[0].json()["message"], "Maximum 5 concurrent requests allowed")
        # slots come back: after the burst, requests pass again
        self.assertEqual(gw.request("GET", "/echo").status, 200)

    def test_slot_released_when_client_aborts(self):
        up = self.start_upstream("A")
        gw = self.start_gateway(limited_config(up, [
            {"prefix": "/", "limits": {"anonymous": ["concurrency 1"]}}]))
        c = RawConn(gw.port)
        c.send(build_request("GET", "/slow?ms=3000"))
        self.assertTrue(up.wait_in_flight(1))
        self.assertEqual(gw.request("GET", "/echo").status, 429)
        c.close()  # the client goes away mid-request
        deadline = time.time() + 3
        status = None
        while time.time() < deadline:
            status = gw.request("GET", "/echo").status
            if status == 200:
                break
            time.sleep(0.05)
        self.assertEqual(status, 200, "the aborted request's slot was not released")


if __name__ == "__main__":
    unittest.main()
