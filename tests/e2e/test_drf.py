"""A Django REST framework app (tests/e2e/apps/drf) under Debian's gunicorn,
sync workers, behind sluice: the scenarios of realapps.RealAppCases, and what
is particular to DRF and WSGI."""

import re
import unittest

from harness import E2ETestCase
from realapps import Gunicorn, RealAppCases


class DRFBehindSluice(RealAppCases, E2ETestCase):
    APP = Gunicorn
    CHUNKED_BODY_ARRIVES = False  # WSGI: no CONTENT_LENGTH, so DRF reads nothing

    def test_drf_429_body_is_drfs_own(self):
        # DRF's own throttle (AnonRateThrottle, 1/min) on /api/drf-throttled/ ...
        gw = self.gateway([{"path": "/api/leads/", "methods": ["POST"],
                            "limits": {"anonymous": ["1/min"]}, "rejection": "drf"},
                           {"prefix": "/"}])
        self.assertEqual(gw.request("GET", "/api/drf-throttled/").status, 200)
        drf = gw.request("GET", "/api/drf-throttled/")
        self.assertEqual(drf.status, 429, drf)
        # ... and sluice's drf rejection replacing it
        self.assertEqual(self.post_json(gw, "/api/leads/", {}).status, 201)
        ours = self.post_json(gw, "/api/leads/", {})
        self.assertEqual(ours.status, 429, ours)

        def shape(r):
            body = r.json()
            return {k: re.sub(r"\d+", "N", v) for k, v in body.items()}, \
                int(re.search(r"\d+", body["detail"]).group())
        (drf_shape, drf_wait), (our_shape, our_wait) = shape(drf), shape(ours)
        self.assertEqual(our_shape, drf_shape)
        self.assertEqual(drf.header("Retry-After"), str(drf_wait))
        self.assertEqual(ours.header("Retry-After"), str(our_wait))
        self.assertTrue(ours.header("Content-Type").startswith("application/json"))

    def test_drf_allowed_hosts_sees_the_client_host(self):
        gw = self.gateway([{"prefix": "/"}])
        self.assertEqual(gw.request("GET", "/api/headers",
                                    headers={"Host": "api.example.test"}).status, 200)
        # not in ALLOWED_HOSTS: Django refuses it, as it would without the gateway
        self.assertEqual(gw.request("GET", "/api/headers",
                                    headers={"Host": "evil.test"}).status, 400)
        # upstreams.app.host pins the Host: then X-Forwarded-Host (USE_X_FORWARDED_HOST)
        # still carries the client's to Django
        gw2 = self.gateway([{"prefix": "/"}], upstream={"host": "localhost"})
        seen = gw2.request("GET", "/api/headers", headers={"Host": "api.example.test"}).json()
        self.assertEqual(seen["headers"]["host"], "localhost")
        self.assertEqual(seen["host"], "api.example.test")
        self.assertEqual(seen["absolute"], "http://api.example.test/x")


if __name__ == "__main__":
    unittest.main()
