"""Hardening of the response cache (issue 11): every header that can carry a
credential separates entries, cache keys cannot be spelled by two requests, Host
is validated, and purge patterns are bounded.

Each test failed against the gateway before the fix (see the commit messages)."""

import json
import subprocess
import time

from harness import RawConn, build_request, sluice_bin
from test_cache import CacheTestCase, cache_config, origin_count, origin_n, purge, xcache

TIERS = {"anonymous": {"limits": ["1000/h"]}, "free": {"limits": ["1000/h"]}}


class Credentials(CacheTestCase):
    def create_key(self, gw, name):
        p = subprocess.run([sluice_bin(), "keys", "create", "--json", "--tier", "free",
                            "--name", name, "-c", gw.config_path],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)["secret"]

    def test_every_configured_key_header_separates_entries(self):
        cfg = cache_config(self.up)
        cfg["tiers"] = TIERS
        cfg["identity"] = {"api_key_headers": ["X-API-Key", "X-Token"]}
        gw = self.start_gateway(cfg)
        ka, kb = self.create_key(gw, "a"), self.create_key(gw, "b")
        p = "/origin/mine"
        callers = (("key a", {"X-Token": ka}), ("key b", {"X-Token": kb}), ("anonymous", {}))
        first = {}
        for n, (who, headers) in enumerate(callers, 1):
            r = self.get(gw, p, headers)
            self.assertEqual(r.status, 200, "%s: %r" % (who, r))
            self.assertCache(r, "MISS", n, "for %s: another caller's answer was served" % who)
            first[who] = r.body
        # what the upstream saw for each of the three answers
        seen = {who: json.loads(body)["headers"].get("x-token") for who, body in first.items()}
        self.assertEqual(seen, {"key a": [ka], "key b": [kb], "anonymous": None})
        # each caller now gets its own stored answer, and only its own
        for n, (who, headers) in enumerate(callers, 1):
            r = self.get(gw, p, headers)
            self.assertCache(r, "HIT", n, "for %s" % who)
            self.assertEqual(r.body, first[who], who)
        self.assertEqual(origin_count(self.up, p), 3)
        # the default key header and the standard credentials still separate entries
        for n, headers in enumerate(({"X-API-Key": ka}, {"Authorization": "Bearer " + kb},
                                     {"Cookie": "sid=1"}), 4):
            self.assertCache(self.get(gw, p, headers), "MISS", n, repr(list(headers)))

    def test_shared_route_still_shares(self):
        cfg = cache_config(self.up, {"ttl": "300s", "shared": True})
        cfg["tiers"] = TIERS
        cfg["identity"] = {"api_key_headers": ["X-Token"]}
        gw = self.start_gateway(cfg)
        ka = self.create_key(gw, "a")
        self.assertCache(self.get(gw, "/origin/pub", {"X-Token": ka}), "MISS", 1)
        self.assertCache(self.get(gw, "/origin/pub"), "HIT", 1)


class Keys(CacheTestCase):
    def raw_get(self, gw, path, host):
        with RawConn(gw.port) as c:
            return c.request(build_request("GET", path, host=host, close=True))

    def test_host_and_path_cannot_share_an_entry(self):
        # With fields joined by '|', these two spelled one key, "G|a|/origin/p1|/origin/y".
        gw = self.start_gateway(cache_config(self.up))
        a = self.raw_get(gw, "/origin/y", "a|/origin/p1")
        b = self.raw_get(gw, "/origin/p1|/origin/y", "a")
        self.assertEqual(b.status, 200)
        self.assertCache(b, "MISS", 1, "the request with Host: a|/origin/p1 filled its entry")
        self.assertJsonError(a, 400)
        self.assertIsNone(xcache(a))
        self.assertEqual(json.loads(b.body)["path"], "/origin/p1|/origin/y")
        self.assertEqual(origin_count(self.up, "/origin/y"), 0)
        self.assertEqual(origin_count(self.up, "/origin/p1|/origin/y"), 1)

    def test_host_validation(self):
        gw = self.start_gateway(cache_config(self.up))
        for host in ("a|b", "a/b", "user@example.com", "example.com:8x", "[::1", "a%zz",
                     "example.com:80:80"):
            r = self.raw_get(gw, "/origin/h", host)
            self.assertJsonError(r, 400)
            self.assertIn("Host", r.json().get("message", ""), host)
        for host in ("example.com", "EXAMPLE.com:8080", "127.0.0.1:1", "[::1]:8443",
                     "[2001:db8::1]", "a-b_c~d.example", "%41.example"):
            r = self.raw_get(gw, "/origin/h", host)
            self.assertEqual(r.status, 200, "%s: %r" % (host, r))
        # absolute-form: the authority is the host, and is validated too
        r = self.raw_get(gw, "http://a|b/origin/h", "example.com")
        self.assertJsonError(r, 400)
        # host names are case-insensitive: one entry
        self.assertCache(self.raw_get(gw, "/origin/hc", "Example.COM"), "MISS", 1)
        self.assertCache(self.raw_get(gw, "/origin/hc", "example.com"), "HIT", 1)


class PurgeBounds(CacheTestCase):
    def test_pattern_longer_than_1024_bytes_is_refused(self):
        gw = self.start_gateway(cache_config(self.up))
        self.assertEqual(xcache(self.get(gw, "/origin/a")), "MISS")
        long_pattern = "*a" * 2500  # the 5,000 bytes of the report
        r = purge(gw, {"pattern": long_pattern})
        err = self.assertJsonError(r, 400)
        self.assertIn("1024", err.get("message", ""))
        self.assertEqual(xcache(self.get(gw, "/origin/a")), "HIT")
        # the CLI reports the gateway's refusal
        p = subprocess.run([sluice_bin(), "purge", "-c", gw.config_path, "--pattern",
                            long_pattern], capture_output=True, text=True, timeout=20,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("1024", p.stderr)
        # at the bound, a pattern is accepted and works
        r = purge(gw, {"pattern": "/origin/" + "*" * (1024 - len("/origin/"))})
        self.assertPurged(r, 1)
        self.assertEqual(origin_n(self.get(gw, "/origin/a")), 2)

    def test_pathological_pattern_against_long_urls_is_fast(self):
        gw = self.start_gateway(cache_config(self.up))
        long_path = "/origin/" + "a" * 8000
        for i in range(8):
            self.assertEqual(xcache(self.get(gw, "%s?i=%d" % (long_path, i))), "MISS")
        pattern = "*" + "a" * 1022 + "b"  # a backtracking matcher retries at every byte
        t0 = time.monotonic()
        self.assertPurged(purge(gw, {"pattern": pattern}), 0)
        self.assertPurged(purge(gw, {"pattern": "*" + "a" * 1023}), 0)  # the query follows
        self.assertPurged(purge(gw, {"pattern": "*" + "a" * 1019 + "?i=?"}), 8)
        self.assertLess(time.monotonic() - t0, 2.0)
