"""The admin dashboard (SPEC 8): its files on the admin listener without the
token (CSP, types, ETag), and the page itself in a real browser: Debian's
chromium driven by playwright-core (tests/browser/dashboard.mjs, npm into a
git-ignored tests/browser/node_modules by scripts/deps). One gateway and one
upstream serve every scenario; the browser script runs once and each
scenario's verdict is one test here.

bans_ban_and_unban and overview_live_stats use the real endpoints; two more
scenarios run the overview's charts and the bans page against the documented
shapes of those endpoints answered by the browser itself (Playwright's
page.route), including states the gateway does not produce on demand:
overview_charts_simulated_ticks and bans_page_simulated_api. Screenshots of each page go to build/screenshots/."""

import json
import os
import shutil
import subprocess
import unittest

from harness import (ADMIN_TOKEN, REPO_ROOT, Gateway, http_request, make_config,
                     start_upstream)

BROWSER_DIR = REPO_ROOT / "tests" / "browser"
SCRIPT = BROWSER_DIR / "dashboard.mjs"
SHOTS = REPO_ROOT / "build" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

TIERS = {
    "anonymous": {"limits": ["1000/min"]},
    "free": {"limits": ["1000/min"]},
    "pro": {"limits": ["10000/min"]},
}
ROUTES = [
    {"prefix": "/origin/", "cache": {"ttl": "300s"}},
    {"prefix": "/echo", "auth": "required"},
    {"prefix": "/"},
]


def ensure_playwright():
    """tests/browser/node_modules/playwright-core (scripts/deps installs it; this
    is the same step for a run without make). A missing node, npm or chromium
    is an error, not a skip."""
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            raise RuntimeError("%s is not on PATH: run scripts/deps" % tool)
    if not os.path.exists(CHROMIUM):
        raise RuntimeError("%s is missing: run scripts/deps (Debian's chromium)" % CHROMIUM)
    if (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").exists():
        return
    env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
    p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=str(BROWSER_DIR), capture_output=True, text=True, timeout=300,
                       env=env)
    if p.returncode != 0:
        raise RuntimeError("npm ci in %s failed (%d):\n%s%s"
                           % (BROWSER_DIR, p.returncode, p.stdout[-2000:], p.stderr[-2000:]))


def admin_get(gw, path, headers=None):
    return http_request(gw.admin_port, "GET", path, headers=headers)


class DashboardFiles(unittest.TestCase):
    """The embedded files, over plain HTTP."""

    @classmethod
    def setUpClass(cls):
        cls.up = start_upstream("A")
        cfg = make_config({"app": cls.up}, routes=[{"prefix": "/"}])
        cls.gw = Gateway(cfg)
        cls.gw.start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.gw.stop(check=True)
        finally:
            cls.gw.cleanup()
            cls.up.stop()

    def test_page_and_assets_without_token(self):
        for path, ctype in (("/", "text/html"), ("/index.html", "text/html"),
                            ("/assets/js/app.js", "text/javascript"),
                            ("/assets/js/pages/keys.js", "text/javascript"),
                            ("/assets/css/app.css", "text/css"),
                            ("/assets/vendor/chart.min.js", "text/javascript")):
            r = admin_get(self.gw, path)
            self.assertEqual(r.status, 200, path)
            self.assertTrue(r.header("Content-Type").startswith(ctype), (path, r.headers))
            self.assertEqual(r.header("Content-Security-Policy"), "default-src 'self'", path)
            self.assertEqual(r.header("X-Content-Type-Options"), "nosniff", path)
            self.assertEqual(r.header("Cache-Control"), "no-cache", path)
            self.assertTrue(r.header("ETag"), path)
            self.assertGreater(len(r.body), 0, path)
        page = admin_get(self.gw, "/").body.decode()
        self.assertIn('<script type="module" src="/assets/js/app.js">', page)
        # no inline script or style for CSP to block
        self.assertNotIn("<style", page)
        self.assertNotIn(" style=", page)
        self.assertNotRegex(page, r"<script(?![^>]*\bsrc=)[^>]*>")

    def test_etag_revalidation(self):
        r = admin_get(self.gw, "/assets/css/app.css")
        again = admin_get(self.gw, "/assets/css/app.css", {"If-None-Match": r.header("ETag")})
        self.assertEqual(again.status, 304)
        self.assertEqual(again.body, b"")
        other = admin_get(self.gw, "/assets/css/app.css", {"If-None-Match": '"0000"'})
        self.assertEqual(other.status, 200)

    def test_head(self):
        r = http_request(self.gw.admin_port, "HEAD", "/index.html")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")
        self.assertGreater(int(r.header("Content-Length")), 0)

    def test_everything_else_still_needs_the_token(self):
        self.assertEqual(admin_get(self.gw, "/assets/nope.js").status, 404)
        for path in ("/keys", "/health", "/events", "/usage", "/access", "/index.htm"):
            r = admin_get(self.gw, path)
            self.assertEqual(r.status, 401, path)
        # a write to a dashboard path is not let through either
        r = http_request(self.gw.admin_port, "POST", "/index.html", body=b"{}")
        self.assertEqual(r.status, 401)
        r = admin_get(self.gw, "/health", {"Authorization": "Bearer " + ADMIN_TOKEN})
        self.assertEqual(r.status, 200)


class DashboardInBrowser(unittest.TestCase):
    """tests/browser/dashboard.mjs against a real gateway and upstream."""

    results = {}

    @classmethod
    def setUpClass(cls):
        ensure_playwright()
        cls.up = start_upstream("A")
        cfg = make_config({"app": cls.up}, routes=ROUTES)
        cfg["tiers"] = TIERS
        cls.gw = Gateway(cfg)
        cls.gw.start()
        SHOTS.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, SLUICE_ADMIN_URL="http://127.0.0.1:%d" % cls.gw.admin_port,
                   SLUICE_GATEWAY_URL="http://127.0.0.1:%d" % cls.gw.port,
                   SLUICE_ADMIN_TOKEN=ADMIN_TOKEN, SCREENSHOT_DIR=str(SHOTS),
                   CHROMIUM=CHROMIUM)
        try:
            p = subprocess.run(["node", str(SCRIPT)], cwd=str(BROWSER_DIR), env=env,
                               capture_output=True, text=True, timeout=300,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            cls.output = "browser tests timed out after 300 s\n%s" % (e.stdout or "")
            p = None
        cls.results = {}
        if p is not None:
            cls.output = p.stdout + p.stderr
            for line in p.stdout.splitlines():
                if line.startswith("RESULT "):
                    r = json.loads(line[7:])
                    cls.results[r["name"]] = r

    @classmethod
    def tearDownClass(cls):
        try:
            cls.gw.stop(check=True)
        finally:
            cls.gw.cleanup()
            cls.up.stop()

    def verdict(self, name):
        r = self.results.get(name)
        if r is None:
            self.fail("scenario %s did not run; browser output:\n%s"
                      % (name, self.output[-4000:]))
        if r["status"] != "pass":
            self.fail("%s\n%s" % (r["detail"], self.gw.describe(20)))

    def test_harness(self):
        self.assertNotIn("harness", self.results, self.output[-4000:])

    def test_sign_in(self):
        self.verdict("sign_in")

    def test_overview(self):
        self.verdict("overview")


    def test_overview_live_stats(self):
        """The live charts from the real stats tick of GET /events."""
        self.verdict("overview_live_stats")

    def test_overview_charts_simulated_ticks(self):
        """The charts against the documented stats shape, /events answered in the browser."""
        self.verdict("overview_charts_simulated_ticks")

    def test_bans_page_simulated_api(self):
        """Ban and unban against the documented /bans shapes, answered in the browser."""
        self.verdict("bans_page_simulated_api")

    def test_create_key_secret_once(self):
        self.verdict("create_key_secret_once")

    def test_use_key_from_client(self):
        self.verdict("use_key_from_client")

    def test_usage_shows_requests(self):
        self.verdict("usage_shows_requests")

    def test_update_key_tier_and_quota(self):
        self.verdict("update_key_tier_and_quota")

    def test_rotate_key_with_grace(self):
        self.verdict("rotate_key_with_grace")

    def test_revoke_key(self):
        self.verdict("revoke_key")

    def test_key_name_is_text_not_html(self):
        self.verdict("key_name_is_text_not_html")

    def test_access_list_add_delete(self):
        self.verdict("access_list_add_delete")

    def test_cache_purge(self):
        self.verdict("cache_purge")

    def test_bans_ban_and_unban(self):
        """Ban and unban in the UI; the client gets 403, then gets in again."""
        self.verdict("bans_ban_and_unban")

    def test_error_state_and_retry(self):
        self.verdict("error_state_and_retry")

    def test_phone_width(self):
        self.verdict("phone_width")

    def test_screenshots_of_every_page(self):
        self.verdict("screenshots_of_every_page")

    def test_sign_out(self):
        self.verdict("sign_out")

    def test_no_console_errors(self):
        self.verdict("no_console_errors")


if __name__ == "__main__":
    unittest.main()
