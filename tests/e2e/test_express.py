"""An Express app (tests/e2e/apps/express, express from npm into a
git-ignored node_modules) under Node.js behind sluice: the scenarios of
realapps.RealAppCases, and what is particular to Express."""

import unittest

from harness import E2ETestCase
from realapps import Express, RealAppCases


class ExpressBehindSluice(RealAppCases, E2ETestCase):
    APP = Express
    CHUNKED_BODY_ARRIVES = True  # Node reads chunked bodies

    def test_express_trust_proxy_sees_the_client(self):
        gw = self.gateway([{"prefix": "/"}])
        seen = gw.request("GET", "/api/headers", headers={"Host": "api.example.test"}).json()
        # trust proxy 'loopback': req.ip, req.hostname, req.protocol from X-Forwarded-*
        self.assertEqual(seen["ip"], "127.0.0.1")
        self.assertEqual(seen["host"], "api.example.test")
        self.assertEqual(seen["scheme"], "http")
        self.assertEqual(seen["headers"]["x-forwarded-for"], "127.0.0.1")


if __name__ == "__main__":
    unittest.main()
