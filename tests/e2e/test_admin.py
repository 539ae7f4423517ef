"""The admin listener: bearer token on /health and /metrics; Prometheus metrics."""

import re
import threading
import unittest

from harness import ADMIN_TOKEN, E2ETestCase, build_request, wait_for

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, float)] for every sample line; TYPE lines as a dict."""
    samples, types = [], {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3]
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError("not a Prometheus sample line: %r" % line)
        labels = dict(LABEL.findall(m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples, types


class AdminAuth(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.gateway_for(self.up)

    def check_protected(self, path):
        for token, headers in ((None, None), ("wrong-token", None),
                               (ADMIN_TOKEN + "x", None), (ADMIN_TOKEN[:-1], None),
                               (None, {"Authorization": "Basic " + ADMIN_TOKEN}),
                               (None, {"Authorization": ADMIN_TOKEN})):
            r = self.gw.admin_request("GET", path, token=token, headers=headers)
            self.assertJsonError(r, 401)
        r = self.gw.admin_request("GET", path)
        self.assertEqual(r.status, 200, "with the right token: %r" % r)
        return r

    def test_health_requires_bearer_token(self):
        self.check_protected("/health")

    def test_metrics_requires_bearer_token(self):
        r = self.check_protected("/metrics")
        self.assertTrue(r.header("Content-Type", "").startswith("text/plain"),
                        r.header("Content-Type"))

    def test_admin_not_served_on_main_listener(self):
        r = self.gw.request("GET", "/metrics", headers={"Authorization": "Bearer " + ADMIN_TOKEN})
        self.assertNotIn(b"sluice_requests_total", r.body)


class AdminRouting(E2ETestCase):
    """One route table for every module's admin endpoints: 404, 405 with
    Allow, 413 and JSON errors handled once."""

    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.gateway_for(self.up)

    def test_unknown_path_is_404(self):
        obj = self.assertJsonError(self.gw.admin_request("GET", "/nope"), 404)
        self.assertEqual(obj["message"], "no such admin endpoint")

    def test_wrong_method_is_405_with_allow(self):
        r = self.gw.admin_request("PUT", "/keys")
        self.assertJsonError(r, 405)
        self.assertEqual(r.header("Allow"), "GET, POST")
        r = self.gw.admin_request("GET", "/keys/key_0123456789abcdef/rotate")
        self.assertJsonError(r, 405)
        self.assertEqual(r.header("Allow"), "POST")
        r = self.gw.admin_request("POST", "/metrics")
        self.assertJsonError(r, 405)
        self.assertEqual(r.header("Allow"), "GET")

    def test_body_over_the_route_bound_is_413(self):
        r = self.gw.admin_request("POST", "/cache/purge", body=b"{" + b" " * (70 << 10) + b"}")
        self.assertJsonError(r, 413)

    def test_body_on_a_route_without_one_is_413(self):
        r = self.gw.admin_request("GET", "/health", body=b"{}")
        self.assertJsonError(r, 413)
        r = self.gw.admin_request("DELETE", "/keys/nope", body=b"x")
        self.assertJsonError(r, 413)
        # without a body both answer as usual
        self.assertEqual(self.gw.admin_request("GET", "/health").status, 200)
        self.assertEqual(self.gw.admin_request("DELETE", "/keys/nope").status, 404)

    def test_cache_control_once(self):
        r = self.gw.admin_request("GET", "/keys")
        self.assertEqual(r.status, 200)
        self.assertEqual([v for k, v in r.headers if k.lower() == "cache-control"],
                         ["no-store"])


class AdminTokenFromEnv(E2ETestCase):
    def test_token_from_environment(self):
        up = self.start_upstream("A")
        cfg = ("server:\n  listen: [\"{{LISTEN}}\"]\n  workers: 1\n"
               "admin:\n  listen: \"{{ADMIN}}\"\n  token: \"${SLUICE_E2E_ADMIN_TOKEN}\"\n"
               "upstreams:\n  app:\n    servers: [\"127.0.0.1:%d\"]\n"
               "    keepalive: ${SLUICE_E2E_UNSET_KEEPALIVE:-4}\n" % up.port)
        gw = self.start_gateway(cfg, env={"SLUICE_E2E_ADMIN_TOKEN": "tok-from-env-91"})
        self.assertEqual(gw.admin_request("GET", "/health", token="tok-from-env-91").status, 200)
        self.assertJsonError(gw.admin_request("GET", "/health", token="${SLUICE_E2E_ADMIN_TOKEN}"),
                             401)
        self.assertEqual(gw.request("GET", "/echo").status, 200)


class Metrics(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.gateway_for(self.up, routes=[{"prefix": "/echo", "upstream": "app"},
                                                    {"prefix": "/slow", "upstream": "app"}])

    def scrape(self):
        r = self.gw.admin_request("GET", "/metrics")
        self.assertEqual(r.status, 200)
        return parse_metrics(r.body.decode())

    def test_requests_total_by_route_and_status(self):
        for _ in range(3):
            self.assertEqual(self.gw.request("GET", "/echo").status, 200)
        self.assertEqual(self.gw.request("GET", "/nowhere").status, 404)

        def counted():
            samples, _ = self.scrape()
            ok = [s for s in samples if s[0] == "sluice_requests_total"
                  and s[1].get("status") == "200" and s[2] >= 3]
            nf = [s for s in samples if s[0] == "sluice_requests_total"
                  and s[1].get("status") == "404" and s[2] >= 1]
            return (ok, nf) if ok and nf else None
        got = wait_for(counted, timeout=3, interval=0.1)
        samples, types = self.scrape()
        self.assertTrue(got, "no sluice_requests_total series for status 200 (>=3) and 404: %r"
                        % [s for s in samples if s[0] == "sluice_requests_total"])
        ok, _ = got
        self.assertIn("route", ok[0][1], "sluice_requests_total has no route label: %r" % (ok,))
        self.assertEqual(types.get("sluice_requests_total"), "counter")

    def test_in_flight_gauge(self):
        slow = self.raw(self.gw)
        slow.send(build_request("GET", "/slow?ms=1500"))
        self.assertTrue(self.up.wait_in_flight(1, match="/slow"))
        samples, types = self.scrape()
        inflight = [s for s in samples if s[0] == "sluice_requests_in_flight"]
        self.assertTrue(inflight, "no sluice_requests_in_flight")
        self.assertGreaterEqual(sum(s[2] for s in inflight), 1,
                                "in-flight gauge %r during a slow request" % inflight)
        self.assertEqual(types.get("sluice_requests_in_flight"), "gauge")
        self.assertEqual(slow.read_response().status, 200)
        done = wait_for(lambda: sum(s[2] for s in self.scrape()[0]
                                    if s[0] == "sluice_requests_in_flight") == 0,
                        timeout=3, interval=0.1)
        self.assertTrue(done, "in-flight gauge did not return to 0")

    def test_latency_histogram(self):
        for _ in range(4):
            self.assertEqual(self.gw.request("GET", "/echo").status, 200)
        self.assertEqual(self.gw.request("GET", "/slow?ms=300").status, 200)
        samples, types = self.scrape()
        buckets = [s for s in samples if s[0] == "sluice_request_duration_seconds_bucket"]
        self.assertTrue(buckets, "no sluice_request_duration_seconds_bucket samples")
        self.assertTrue(all("le" in s[1] for s in buckets), "bucket without an le label")
        inf = sum(s[2] for s in buckets if s[1]["le"] == "+Inf")
        self.assertGreaterEqual(inf, 5)
        count = sum(s[2] for s in samples if s[0] == "sluice_request_duration_seconds_count")
        self.assertEqual(count, inf, "_count differs from the +Inf bucket")
        total = sum(s[2] for s in samples if s[0] == "sluice_request_duration_seconds_sum")
        self.assertGreaterEqual(total, 0.29, "_sum too small after a 300 ms request")
        self.assertEqual(types.get("sluice_request_duration_seconds"), "histogram")
        # the slow request is not in the fast buckets, every series is cumulative
        series = {}
        for name, labels, v in buckets:
            key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
            series.setdefault(key, []).append((float(labels["le"]), v))
        for key, pts in series.items():
            pts.sort()
            vals = [v for _, v in pts]
            self.assertEqual(vals, sorted(vals), "buckets not cumulative for %r" % (key,))
        # the 300 ms request must not sit in a bucket of 250 ms or less
        under = 0.0
        for pts in series.values():
            small = [v for le, v in pts if le <= 0.25]
            under += small[-1] if small else 0.0
        self.assertLessEqual(under, inf - 1, "the 300 ms request was counted <= 250 ms")


if __name__ == "__main__":
    unittest.main()
