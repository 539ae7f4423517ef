"""The bundled demo: examples/demo_api.py behind examples/quickstart.yaml."""

import json
import os
import socket
import subprocess
import sys
import time
import unittest

from harness import REPO_ROOT, E2ETestCase, free_port, wait_for

EXAMPLES = REPO_ROOT / "examples"


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Demo(E2ETestCase):
    def setUp(self):
        self.api_port = free_port()
        self.api = subprocess.Popen([sys.executable, str(EXAMPLES / "demo_api.py"),
                                     "--port", str(self.api_port), "--quiet"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(self._stop_api)
        self.assertTrue(wait_for(lambda: listening(self.api_port), timeout=10),
                        "demo_api.py did not start")
        text = (EXAMPLES / "quickstart.yaml").read_text()
        for addr, sub in (("127.0.0.1:8080", "{{LISTEN}}"), ("127.0.0.1:9090", "{{ADMIN}}"),
                          ("127.0.0.1:8000", "127.0.0.1:%d" % self.api_port)):
            self.assertIn(addr, text)
            text = text.replace(addr, sub)
        env = {k: v for k, v in os.environ.items() if k != "SLUICE_ADMIN_TOKEN"}
        self.gw = self.start_gateway(text, env=env)

    def _stop_api(self):
        self.api.terminate()
        try:
            self.api.wait(5)
        except subprocess.TimeoutExpired:
            self.api.kill()
            self.api.wait()
        self.api.stderr.close()

    def test_account_needs_a_key_made_by_the_cli(self):
        from harness import sluice_bin
        self.assertEqual(self.gw.request("GET", "/api/account/").status, 401)
        p = subprocess.run([sluice_bin(), "keys", "create", "-c", self.gw.config_path, "--tier",
                            "pro", "--name", "demo", "--json"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        secret = json.loads(p.stdout)["secret"]
        r = self.gw.request("GET", "/api/account/", headers={"X-API-Key": secret})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["authenticated_by"], "sluice")
        self.assertEqual(r.header("X-RateLimit-Limit"), "10000")
        tok = self.gw.request("POST", "/auth/token", headers={"X-API-Key": secret}).json()
        r = self.gw.request("GET", "/api/account/",
                            headers={"Authorization": "Bearer " + tok["access_token"]})
        self.assertEqual(r.status, 200)

    def test_market_overview_is_slow_json(self):
        t0 = time.monotonic()
        r = self.gw.request("GET", "/api/market/overview")
        self.assertEqual(r.status, 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.18)
        self.assertIn("sentiment", r.json())

    def test_market_overview_is_cached(self):
        first = self.gw.request("GET", "/api/market/overview")
        self.assertEqual(first.header("X-Cache"), "MISS")
        t0 = time.monotonic()
        again = self.gw.request("GET", "/api/market/overview")
        self.assertLess(time.monotonic() - t0, 0.15, "a cache hit waited for the demo API")
        self.assertEqual(again.header("X-Cache"), "HIT")
        self.assertEqual(again.body, first.body)

    def test_market_indices(self):
        r = self.gw.request("GET", "/api/market/indices")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.json()["indices"])

    def test_create_lead(self):
        r = self.gw.request("POST", "/public/leads/",
                            body=json.dumps({"name": "Ada", "email": "ada@example.com"}).encode(),
                            headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 201)
        self.assertIsInstance(r.json()["id"], int)
        self.assertEqual(r.json()["email"], "ada@example.com")

    def test_leads_are_throttled_drf_style(self):
        codes = []
        for _ in range(3):
            r = self.gw.request("POST", "/public/leads/", body=b'{"email": "a@b.c"}',
                                headers={"Content-Type": "application/json"})
            codes.append(r.status)
        self.assertEqual(codes, [201, 201, 429])
        self.assertIn("Request was throttled", r.json()["detail"])
        self.assertEqual(r.header("X-RateLimit-Limit"), "2")
        self.assertIn('"per-minute";q=2;w=60', r.header("RateLimit-Policy"))

    def test_content_pages(self):
        r = self.gw.request("GET", "/public/content/pages")
        self.assertEqual(r.status, 200)
        self.assertIsInstance(r.json(), list)

    def test_graphql(self):
        r = self.gw.request("POST", "/graphql/",
                            body=json.dumps({"query": "{ indices { symbol } }"}).encode(),
                            headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 200)
        self.assertIn("data", r.json())

    def test_admin_default_token(self):
        self.assertEqual(self.gw.admin_request("GET", "/health", token="demo-admin-token").status,
                         200)


if __name__ == "__main__":
    unittest.main()
