"""The response cache (SPEC 4, issue 4), tried as a user would: real clients, a real
gateway, an upstream that counts the requests for each /origin path (upstream.py),
the admin purge API and the `sluice purge` CLI.

Timing: TTLs of 1 s and upstream delays of 0.5-0.8 s keep the file well under 40 s;
every wait is bounded (wait_for, fixed loop counts)."""

import json
import os
import subprocess
import time
import unittest
from email.utils import formatdate
from urllib.parse import quote, urlencode

from harness import (ADMIN_TOKEN, E2ETestCase, RawConn, build_request, concurrent_requests,
                     free_port, http_request, make_config, parse_response, pattern_bytes,
                     sluice_bin, wait_for)
from test_admin import parse_metrics

LM = 1700000000  # a fixed Last-Modified (Unix seconds) for the conditional tests


def url(path, **params):
    """<path> with <params> as its query (percent-encoded; order as given)."""
    if not params:
        return path
    return path + "?" + urlencode(params, quote_via=quote, safe="")


def cache_config(up, cache=None, routes=None, store=None, server=None, admin=True, workers=2):
    """One cached route "/" (route cache <cache>, default ttl 300s) unless <routes>;
    top-level cache section <store> when given."""
    if routes is None:
        routes = [{"prefix": "/", "cache": cache or {"ttl": "300s"}}]
    cfg = make_config({"app": up}, routes=routes, server=server, admin=admin, workers=workers)
    if store is not None:
        cfg["cache"] = store
    return cfg


def xcache(r):
    return r.header("X-Cache")


def origin_n(r):
    """Which upstream answer this is: the upstream numbers its answers per path."""
    v = r.header("X-Origin-N")
    return int(v) if v is not None else None


def origin_count(up, path):
    """Requests the upstream received for /origin <path>, in-process or subprocess."""
    if hasattr(up, "origin_count"):
        return up.origin_count(path)
    return http_request(up.port, "GET", "/count/origin").json().get(path, 0)


def purge(gw, body, token=ADMIN_TOKEN):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    return http_request(gw.admin_port, "POST", "/cache/purge", body=data, headers=headers)


class CacheTestCase(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def get(self, gw, path, headers=None, method="GET"):
        return gw.request(method, path, headers=headers)

    def assertCache(self, r, want, n=None, msg=""):
        """X-Cache is <want>; with <n>, the body is the upstream's n-th answer."""
        self.assertEqual(xcache(r), want, "X-Cache of %r %s" % (r, msg))
        if n is not None:
            self.assertEqual(origin_n(r), n, "served the upstream's answer #%s, want #%d %s"
                             % (origin_n(r), n, msg))

    def assertAge(self, r, lo=0, hi=None):
        age = r.header("Age")
        self.assertIsNotNone(age, "no Age on a %s: %r" % (xcache(r), r))
        self.assertRegex(age, r"^\d+$")
        self.assertGreaterEqual(int(age), lo)
        if hi is not None:
            self.assertLessEqual(int(age), hi)

    def assertPurged(self, r, n):
        self.assertEqual(r.status, 200, "purge answered %r" % r)
        self.assertEqual(r.json(), {"purged": n})

    def metric(self, gw, name, **labels):
        """The value of sample <name>{labels} on /metrics (None when absent)."""
        samples, _ = parse_metrics(gw.admin_request("GET", "/metrics").body.decode())
        for n, ls, v in samples:
            if n == name and all(ls.get(k) == v2 for k, v2 in labels.items()):
                return v
        return None


class Basics(CacheTestCase):
    def test_miss_then_hit_with_one_upstream_request(self):
        gw = self.start_gateway(cache_config(self.up))
        r1 = self.get(gw, "/origin/a")
        self.assertEqual(r1.status, 200)
        self.assertCache(r1, "MISS", 1)
        for i in range(3):
            r = self.get(gw, "/origin/a")
            self.assertEqual(r.status, 200)
            self.assertCache(r, "HIT", 1, "request %d" % (i + 2))
            self.assertEqual(r.body, r1.body)
            self.assertEqual(r.header("Content-Type"), "application/json")
            self.assertAge(r, 0, 2)
        self.assertEqual(origin_count(self.up, "/origin/a"), 1)
        # another path is another entry
        self.assertCache(self.get(gw, "/origin/b"), "MISS", 1)

    def test_head_is_answered_from_a_cached_get(self):
        gw = self.start_gateway(cache_config(self.up))
        body = pattern_bytes(1000, 1)
        r = self.get(gw, "/origin/h?bytes=1000")
        self.assertCache(r, "MISS", 1)
        self.assertEqual(r.body, body)
        c = RawConn(gw.port)
        self.addCleanup(c.close)
        h = c.request(build_request("HEAD", "/origin/h?bytes=1000", host="127.0.0.1:%d" % gw.port),
                      head_request=True)
        self.assertEqual(h.status, 200)
        self.assertCache(h, "HIT", 1)
        self.assertEqual(h.header("Content-Length"), "1000")
        # no body bytes after the HEAD answer: the next answer on the connection parses
        g = c.request(build_request("GET", "/origin/h?bytes=1000", host="127.0.0.1:%d" % gw.port))
        self.assertCache(g, "HIT", 1)
        self.assertEqual(g.body, body)
        self.assertEqual(origin_count(self.up, "/origin/h"), 1)

    def test_query_parameter_order_does_not_matter(self):
        gw = self.start_gateway(cache_config(self.up))
        self.assertCache(self.get(gw, "/origin/q?b=2&a=1"), "MISS", 1)
        self.assertCache(self.get(gw, "/origin/q?a=1&b=2"), "HIT", 1)
        self.assertCache(self.get(gw, "/origin/q?b=2&a=1"), "HIT", 1)
        # other values, or no query, are other entries
        self.assertCache(self.get(gw, "/origin/q?a=1&b=3"), "MISS", 2)
        self.assertCache(self.get(gw, "/origin/q"), "MISS", 3)
        self.assertEqual(origin_count(self.up, "/origin/q"), 3)

    def test_repeated_query_parameters_keep_their_order(self):
        # Sorting must be stable for a repeated name: with "last value wins" (Django's
        # request.GET["a"], PHP, Rails) ?a=1&a=2 and ?a=2&a=1 ask for different things.
        gw = self.start_gateway(cache_config(self.up))
        self.assertCache(self.get(gw, "/origin/dup?a=1&a=2"), "MISS", 1)
        r = self.get(gw, "/origin/dup?a=2&a=1")
        self.assertCache(r, "MISS", 2, "(the answer for ?a=1&a=2 was served for ?a=2&a=1)")
        self.assertEqual(r.json()["query"], "a=2&a=1")
        self.assertCache(self.get(gw, "/origin/dup?a=2&a=1"), "HIT", 2)
        # other parameters still move freely around them
        self.assertCache(self.get(gw, "/origin/dup?b=0&a=1&a=2"), "MISS", 3)
        self.assertCache(self.get(gw, "/origin/dup?a=1&b=0&a=2"), "HIT", 3)

    def test_ttl_expiry(self):
        gw = self.start_gateway(cache_config(self.up, {"ttl": "1s"}))
        self.assertCache(self.get(gw, "/origin/t"), "MISS", 1)
        self.assertCache(self.get(gw, "/origin/t"), "HIT", 1)
        time.sleep(1.5)
        self.assertCache(self.get(gw, "/origin/t"), "MISS", 2)
        self.assertCache(self.get(gw, "/origin/t"), "HIT", 2)
        self.assertEqual(origin_count(self.up, "/origin/t"), 2)

    def test_uncacheable_responses_are_not_stored(self):
        gw = self.start_gateway(cache_config(self.up))
        cases = {"/origin/nostore": {"cc": "no-store"},
                 "/origin/private": {"cc": "private"},          # anonymous: no identity in key
                 "/origin/private2": {"cc": "private, max-age=60"},
                 "/origin/cookie": {"cookie": "sid=1; Path=/"},
                 "/origin/varystar": {"vary": "*"},
                 "/origin/s500": {"status": "500"},
                 "/origin/s302": {"status": "302"}}
        for path, params in cases.items():
            for i in (1, 2):
                r = self.get(gw, url(path, **params))
                self.assertCache(r, "MISS", i, "%s, request %d" % (path, i))
            self.assertEqual(origin_count(self.up, path), 2, path)
        # Set-Cookie still reaches the client
        r = self.get(gw, url("/origin/cookie", cookie="sid=1; Path=/"))
        self.assertEqual(r.header("Set-Cookie"), "sid=1; Path=/")
        # and these are stored: public, and every cacheable status
        for path, params in {"/origin/public": {"cc": "public, max-age=60"},
                             "/origin/s203": {"status": "203"},
                             "/origin/s204": {"status": "204"},
                             "/origin/s300": {"status": "300"},
                             "/origin/s301": {"status": "301"},
                             "/origin/s404": {"status": "404"},
                             "/origin/s410": {"status": "410"}}.items():
            r1 = self.get(gw, url(path, **params))
            r2 = self.get(gw, url(path, **params))
            self.assertCache(r1, "MISS", 1, path)
            self.assertCache(r2, "HIT", 1, path)
            self.assertEqual(r2.status, r1.status)
            self.assertEqual(r2.body, r1.body)

    def test_response_no_cache_is_not_reused(self):
        # RFC 9111 5.2.2.4: a response with no-cache must not be reused without
        # revalidating it with the origin; nginx's proxy_cache does not store it either.
        gw = self.start_gateway(cache_config(self.up))
        for cc in ("no-cache", "public, no-cache, max-age=60"):
            p = url("/origin/rnc%d" % len(cc), cc=cc)
            for i in (1, 2):
                self.assertCache(self.get(gw, p), "MISS", i, "Cache-Control: %s, request %d"
                                 % (cc, i))

    def test_credentials_isolate_entries(self):
        # The application's own X-API-Key (not sluice keys): api_key_headers: []
        cfg = cache_config(self.up)
        cfg["identity"] = {"api_key_headers": []}
        gw = self.start_gateway(cfg)
        alice = {"Authorization": "Bearer alice"}
        bob = {"Authorization": "Bearer bob"}
        p = "/origin/me"
        self.assertCache(self.get(gw, p, alice), "MISS", 1)
        # alice's answer is never served to an anonymous client, nor to bob
        anon = self.get(gw, p)
        self.assertCache(anon, "MISS", 2)
        self.assertNotIn("authorization", anon.json()["headers"])
        self.assertCache(self.get(gw, p, bob), "MISS", 3)
        self.assertCache(self.get(gw, p, alice), "HIT", 1)
        self.assertCache(self.get(gw, p), "HIT", 2)
        self.assertCache(self.get(gw, p, bob), "HIT", 3)
        # X-API-Key and Cookie are credentials too
        self.assertCache(self.get(gw, p, {"X-API-Key": "k1"}), "MISS", 4)
        self.assertCache(self.get(gw, p, {"X-API-Key": "k2"}), "MISS", 5)
        self.assertCache(self.get(gw, p, {"Cookie": "session=1"}), "MISS", 6)
        self.assertCache(self.get(gw, p, {"X-API-Key": "k1"}), "HIT", 4)
        self.assertCache(self.get(gw, p, {"Cookie": "session=1"}), "HIT", 6)
        self.assertEqual(origin_count(self.up, p), 6)
        # private: stored per identity when the request carried credentials, never for anyone
        pp = url("/origin/priv", cc="private")
        self.assertCache(self.get(gw, pp, alice), "MISS", 1)
        self.assertCache(self.get(gw, pp, alice), "HIT", 1)
        self.assertCache(self.get(gw, pp), "MISS", 2)
        self.assertCache(self.get(gw, pp), "MISS", 3)
        self.assertCache(self.get(gw, pp, bob), "MISS", 4)

    def test_shared_route_serves_one_entry_to_every_caller(self):
        cfg = cache_config(self.up, {"ttl": "300s", "shared": True})
        cfg["identity"] = {"api_key_headers": []}
        gw = self.start_gateway(cfg)
        self.assertCache(self.get(gw, "/origin/s", {"Authorization": "Bearer alice"}), "MISS", 1)
        self.assertCache(self.get(gw, "/origin/s"), "HIT", 1)
        self.assertCache(self.get(gw, "/origin/s", {"X-API-Key": "k"}), "HIT", 1)
        self.assertEqual(origin_count(self.up, "/origin/s"), 1)

    def test_vary_keys_on_the_named_request_headers(self):
        gw = self.start_gateway(cache_config(self.up))
        p = url("/origin/v", vary="Accept-Language")
        en, fr = {"Accept-Language": "en"}, {"Accept-Language": "fr"}
        self.assertCache(self.get(gw, p, en), "MISS", 1)
        self.assertCache(self.get(gw, p, fr), "MISS", 2)
        r = self.get(gw, p, en)
        self.assertCache(r, "HIT", 1)
        self.assertEqual(r.json()["headers"]["accept-language"], ["en"])
        r = self.get(gw, p, fr)
        self.assertCache(r, "HIT", 2)
        self.assertEqual(r.json()["headers"]["accept-language"], ["fr"])
        self.assertCache(self.get(gw, p), "MISS", 3)
        self.assertCache(self.get(gw, p), "HIT", 3)
        # headers the upstream does not vary on do not split entries
        self.assertCache(self.get(gw, p, {"Accept-Language": "en", "X-Other": "1"}), "HIT", 1)
        self.assertEqual(origin_count(self.up, "/origin/v"), 3)

    def test_origin_max_age_and_s_maxage_override_the_route_ttl(self):
        gw = self.start_gateway(cache_config(self.up, routes=[
            {"prefix": "/origin/ro/", "cache": {"ttl": "300s", "respect_origin": False}},
            {"prefix": "/origin/short/", "cache": {"ttl": "1s"}},
            {"prefix": "/", "cache": {"ttl": "300s"}}]))
        paths = {
            "maxage": (url("/origin/maxage", cc="max-age=1"), True),          # 300s -> 1s
            "smaxage": (url("/origin/smaxage", cc="s-maxage=1, max-age=300"), True),
            "longer": (url("/origin/short/longer", cc="max-age=300"), False),  # 1s -> 300s
            "ignored": (url("/origin/ro/ignored", cc="max-age=1"), False),     # respect_origin off
        }
        for name, (p, _) in paths.items():
            self.assertCache(self.get(gw, p), "MISS", 1, name)
            self.assertCache(self.get(gw, p), "HIT", 1, name)
        time.sleep(1.5)
        for name, (p, expires) in paths.items():
            if expires:
                self.assertCache(self.get(gw, p), "MISS", 2, name + " should have expired")
            else:
                self.assertCache(self.get(gw, p), "HIT", 1, name + " should still be fresh")

    def test_upstream_age_counts_against_its_max_age(self):
        """A response already 299 s old with max-age=300 (it came through
        another cache) has 1 s of freshness left, and our Age includes it."""
        gw = self.start_gateway(cache_config(self.up))
        p = url("/origin/aged", cc="max-age=300", age="299")
        self.assertCache(self.get(gw, p), "MISS", 1)
        r = self.get(gw, p)
        self.assertCache(r, "HIT", 1)
        self.assertGreaterEqual(int(r.header("Age")), 299)
        time.sleep(1.5)
        self.assertCache(self.get(gw, p), "MISS", 2, "an aged response stayed fresh too long")

    def test_request_no_cache_goes_upstream_and_refreshes(self):
        gw = self.start_gateway(cache_config(self.up))
        self.assertCache(self.get(gw, "/origin/nc"), "MISS", 1)
        self.assertCache(self.get(gw, "/origin/nc"), "HIT", 1)
        self.assertCache(self.get(gw, "/origin/nc", {"Cache-Control": "no-cache"}), "MISS", 2)
        self.assertCache(self.get(gw, "/origin/nc"), "HIT", 2)

    def test_other_methods_bypass_the_cache(self):
        gw = self.start_gateway(cache_config(self.up))
        self.assertCache(self.get(gw, "/origin/m"), "MISS", 1)
        for i in range(2):
            r = gw.request("POST", "/origin/m", body=b"{}")
            self.assertEqual(r.status, 200)
            self.assertCache(r, "BYPASS", 2 + i)
            self.assertEqual(r.json()["method"], "POST")
        r = gw.request("DELETE", "/origin/m")
        self.assertCache(r, "BYPASS", 4)
        self.assertEqual(origin_count(self.up, "/origin/m"), 4)

    def test_route_without_cache_is_not_cached(self):
        gw = self.start_gateway(cache_config(self.up, routes=[
            {"prefix": "/origin/c/", "cache": {"ttl": "300s"}}, {"prefix": "/"}]))
        for i in (1, 2):
            self.assertEqual(origin_n(self.get(gw, "/origin/plain")), i)
        self.assertCache(self.get(gw, "/origin/c/x"), "MISS", 1)
        self.assertCache(self.get(gw, "/origin/c/x"), "HIT", 1)

    def test_conditional_requests_answer_304_from_the_cache(self):
        gw = self.start_gateway(cache_config(self.up))
        p = url("/origin/cond", etag='"v1"', lm=str(LM))
        r = self.get(gw, p)
        self.assertCache(r, "MISS", 1)
        self.assertEqual(r.header("ETag"), '"v1"')
        for inm in ('"v1"', 'W/"v1"', '"v0", "v1"', "*"):
            r = self.get(gw, p, {"If-None-Match": inm})
            self.assertEqual(r.status, 304, "If-None-Match: %s: %r" % (inm, r))
            self.assertEqual(r.body, b"")
            self.assertEqual(r.header("ETag"), '"v1"')
            self.assertCache(r, "HIT")
        r = self.get(gw, p, {"If-None-Match": '"v2"'})
        self.assertEqual(r.status, 200)
        self.assertCache(r, "HIT", 1)
        self.assertTrue(r.body)
        for ims, want in ((LM, 304), (LM + 3600, 304), (LM - 3600, 200)):
            r = self.get(gw, p, {"If-Modified-Since": formatdate(ims, usegmt=True)})
            self.assertEqual(r.status, want, "If-Modified-Since %d vs %d: %r" % (ims, LM, r))
            self.assertCache(r, "HIT")
        self.assertEqual(origin_count(self.up, "/origin/cond"), 1)

    def test_metrics(self):
        gw = self.start_gateway(cache_config(self.up))
        self.get(gw, "/origin/x?bytes=5000")
        self.get(gw, "/origin/x?bytes=5000")
        self.get(gw, "/origin/x?bytes=5000")
        gw.request("POST", "/origin/x", body=b"")

        def sample(result):
            return self.metric(gw, "sluice_cache_requests_total", result=result)
        self.assertTrue(wait_for(lambda: sample("bypass") == 1, timeout=3, interval=0.1),
                        "bypass counter %r" % sample("bypass"))
        self.assertEqual(sample("miss"), 1)
        self.assertEqual(sample("hit"), 2)
        self.assertIn(sample("stale"), (0, None))
        self.assertEqual(self.metric(gw, "sluice_cache_entries"), 1)
        used = self.metric(gw, "sluice_cache_bytes")
        self.assertGreaterEqual(used, 5000)
        self.assertLess(used, 64 * 1024)
        self.assertEqual(self.metric(gw, "sluice_cache_evictions_total"), 0)
        self.assertPurged(purge(gw, {"all": True}), 1)
        self.assertEqual(self.metric(gw, "sluice_cache_entries"), 0)
        self.assertLess(self.metric(gw, "sluice_cache_bytes"), 5000)


class Coalescing(CacheTestCase):
    def test_50_concurrent_misses_make_one_upstream_request(self):
        gw = self.start_gateway(cache_config(self.up))
        req = build_request("GET", "/origin/co?ms=500", host="127.0.0.1", close=True)
        t0 = time.monotonic()
        connected, results = concurrent_requests(gw.port, 50, req, timeout=20)
        elapsed = time.monotonic() - t0
        self.assertEqual(connected, 50)
        bodies = set()
        for i, res in enumerate(results):
            self.assertIsInstance(res, bytes, "client %d: %r" % (i, res))
            r = parse_response(res)
            self.assertEqual(r.status, 200, "client %d: %r" % (i, r))
            self.assertEqual(origin_n(r), 1, "client %d: %r" % (i, r))
            bodies.add(r.body)
        self.assertEqual(len(bodies), 1, "different bodies: %r" % [b[:80] for b in bodies])
        self.assertEqual(origin_count(self.up, "/origin/co"), 1)
        self.assertEqual(self.up.stats()["max_in_flight"], 1)
        # the waiters were answered with the one response, not one after another
        self.assertLess(elapsed, 5.0)


class Stale(CacheTestCase):
    def test_stale_while_revalidate_answers_at_once_and_refreshes_once(self):
        gw = self.start_gateway(cache_config(
            self.up, {"ttl": "1s", "stale_while_revalidate": "30s"}))
        p = "/origin/swr?ms=800"
        t0 = time.monotonic()
        self.assertCache(self.get(gw, p), "MISS", 1)
        self.assertGreaterEqual(time.monotonic() - t0, 0.75)
        time.sleep(1.5)
        for i in range(4):  # all while the one refresh (800 ms) is under way
            t0 = time.monotonic()
            r = self.get(gw, p)
            took = time.monotonic() - t0
            self.assertEqual(r.status, 200)
            self.assertCache(r, "STALE", 1, "request %d" % (i + 1))
            self.assertAge(r, 1)
            self.assertLess(took, 0.3, "a stale answer took %.3fs (upstream takes 0.8s)" % took)
        refreshed = wait_for(lambda: origin_count(self.up, "/origin/swr") >= 2
                             and self.up.stats()["in_flight"] == 0, timeout=3)
        self.assertTrue(refreshed, "no background refresh reached the upstream")
        time.sleep(0.2)  # the gateway stores what the upstream has just answered
        r = self.get(gw, p)
        self.assertCache(r, "HIT", 2)
        self.assertAge(r, 0, 1)
        # the refresh asked for the same resource: query and client headers included
        self.assertEqual(r.json()["query"], "ms=800")
        self.assertEqual(r.json()["headers"]["host"], ["127.0.0.1:%d" % gw.port])
        time.sleep(0.3)
        self.assertEqual(origin_count(self.up, "/origin/swr"), 2, "more than one refresh")
        self.assertEqual(self.metric(gw, "sluice_cache_requests_total", result="stale"), 4)

    def test_stale_if_error_on_5xx_and_timeout(self):
        gw = self.start_gateway(cache_config(self.up, routes=[
            {"prefix": "/origin/nosie/", "cache": {"ttl": "1s"}},
            {"prefix": "/", "cache": {"ttl": "1s", "stale_if_error": "10m"}}],
            server={"timeouts": {"upstream_read": "500ms"}}))
        for p in ("/origin/e5xx", "/origin/etimeout", "/origin/nosie/x"):
            self.assertCache(self.get(gw, p), "MISS", 1, p)
        time.sleep(1.5)
        self.up.origin_status = 503
        r = self.get(gw, "/origin/e5xx")
        self.assertEqual(r.status, 200)
        self.assertCache(r, "STALE", 1)
        self.assertAge(r, 1)
        # without stale_if_error the error goes to the client
        self.assertEqual(self.get(gw, "/origin/nosie/x").status, 503)
        self.up.origin_status = None
        self.up.origin_delay_ms = 3000
        t0 = time.monotonic()
        r = self.get(gw, "/origin/etimeout")
        self.assertEqual(r.status, 200)
        self.assertCache(r, "STALE", 1)
        self.assertLess(time.monotonic() - t0, 2.5)
        self.up.origin_delay_ms = None

    def test_stale_if_error_when_the_upstream_is_down(self):
        up = self.start_upstream("B", subprocess_mode=True)
        gw = self.start_gateway(cache_config(up, {"ttl": "1s", "stale_if_error": "10m"}))
        self.assertCache(self.get(gw, "/origin/down"), "MISS", 1)
        up.stop()  # a process: its keep-alive connections go with it
        time.sleep(1.5)
        for _ in range(2):
            r = self.get(gw, "/origin/down")
            self.assertEqual(r.status, 200)
            self.assertCache(r, "STALE", 1)
        # nothing to fall back on: the gateway's own error
        self.assertIn(self.get(gw, "/origin/never").status, (502, 503, 504))


class Purge(CacheTestCase):
    def setUp(self):
        super().setUp()
        self.gw = self.start_gateway(cache_config(self.up, routes=[
            {"prefix": "/origin/m/", "cache": {"ttl": "300s", "tags": ["market"]}},
            {"prefix": "/", "cache": {"ttl": "300s"}}]))

    def fill(self, *paths, headers=None):
        for p in paths:
            r = self.get(self.gw, p, headers)
            self.assertIn(xcache(r), ("MISS", "HIT"), p)
            self.assertCache(self.get(self.gw, p, headers), "HIT", None, p)

    def cached(self, p, headers=None):
        """Is <p> cached? (asks twice: a MISS refills the entry, so ask once per check)"""
        return xcache(self.get(self.gw, p, headers)) == "HIT"

    def test_purge_by_key(self):
        alice = {"Authorization": "Bearer alice"}
        self.fill("/origin/p/a?x=1&y=2", "/origin/p/a", "/origin/p/b")
        self.fill("/origin/p/a?x=1&y=2", headers=alice)
        # query compared after sorting; every identity's entry for the URL goes
        self.assertPurged(purge(self.gw, {"key": "/origin/p/a?y=2&x=1"}), 2)
        self.assertPurged(purge(self.gw, {"key": "/origin/p/a?y=2&x=1"}), 0)
        self.assertFalse(self.cached("/origin/p/a?x=1&y=2"))
        self.assertFalse(self.cached("/origin/p/a?x=1&y=2", alice))
        self.assertTrue(self.cached("/origin/p/a"))
        self.assertTrue(self.cached("/origin/p/b"))

    def test_purge_by_prefix(self):
        self.fill("/origin/api/1", "/origin/api/2?q=1", "/origin/apx/3", "/origin/other")
        self.assertPurged(purge(self.gw, {"prefix": "/origin/api/"}), 2)
        self.assertFalse(self.cached("/origin/api/1"))
        self.assertFalse(self.cached("/origin/api/2?q=1"))
        self.assertTrue(self.cached("/origin/apx/3"))
        self.assertTrue(self.cached("/origin/other"))

    def test_purge_by_pattern(self):
        self.fill("/origin/api/x/v1?a=1", "/origin/api/y/v1", "/origin/api/y/v2", "/origin/v1")
        self.assertPurged(purge(self.gw, {"pattern": "/origin/api/*/v1*"}), 2)
        self.assertFalse(self.cached("/origin/api/x/v1?a=1"))
        self.assertFalse(self.cached("/origin/api/y/v1"))
        self.assertTrue(self.cached("/origin/api/y/v2"))
        self.assertTrue(self.cached("/origin/v1"))

    def test_purge_by_tag(self):
        a = url("/origin/m/a", tag="t1, t2")     # route tag market + t1, t2
        b = url("/origin/m/b", skey="s1 s2")     # route tag market + s1, s2
        c = "/origin/m/c"                        # route tag market only
        d = url("/origin/n/d", tag="t2")         # t2 only
        e = "/origin/n/e"                        # no tag
        self.fill(a, b, c, d, e)
        self.assertPurged(purge(self.gw, {"tag": "t2"}), 2)
        self.assertFalse(self.cached(a))
        self.assertFalse(self.cached(d))
        self.assertPurged(purge(self.gw, {"tag": "s2"}), 1)
        self.assertFalse(self.cached(b))
        self.assertPurged(purge(self.gw, {"tag": "nosuchtag"}), 0)
        # a and b were refilled by the checks above: market has a, b, c
        self.assertPurged(purge(self.gw, {"tag": "market"}), 3)
        self.assertFalse(self.cached(c))
        self.assertTrue(self.cached(e))

    def test_purge_all(self):
        self.fill("/origin/1", "/origin/2", "/origin/m/3")
        self.assertPurged(purge(self.gw, {"all": True}), 3)
        self.assertPurged(purge(self.gw, {"all": True}), 0)
        self.assertFalse(self.cached("/origin/1"))

    def test_purge_needs_the_admin_token_and_valid_json(self):
        self.fill("/origin/keep")
        for token in (None, "wrong-token"):
            r = purge(self.gw, {"all": True}, token=token)
            self.assertJsonError(r, 401)
        for body in (b"not json", b'{"all": true', b'{"nope": "x"}', b'{"key": "/a", "zzz": 1}'):
            self.assertJsonError(purge(self.gw, body), 400)
        r = http_request(self.gw.port, "POST", "/cache/purge", body=b'{"all": true}',
                         headers={"Authorization": "Bearer " + ADMIN_TOKEN})
        self.assertNotEqual(r.status, 200, "purge answered on the main listener")
        self.assertTrue(self.cached("/origin/keep"), "an entry was purged by a refused call")


class Memory(CacheTestCase):
    OBJ = 100 * 1024
    BUDGET = 4 * 1024 * 1024
    # Beyond budget + 20 %: per worker (2), the response being collected for
    # storing and its copy into an entry (<= max_object_size 256k each) -> 1 MiB;
    # plus 1 MiB of malloc slack (per-thread arenas keep freed chunks, entries
    # are freed by whichever thread evicts them). Without a bound the gateway
    # grows by ~40 MiB here, so the test still tells.
    ALLOWANCE = 2 * 1024 * 1024

    def rss(self, gw):
        with open("/proc/%d/status" % gw.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        self.fail("no VmRSS")

    def test_resident_memory_stays_within_budget(self):
        # Under sanitizers (make test's second pass) the allocator is ASan's, which
        # keeps freed memory in quarantine: only the cache's own accounting is checked.
        # (Not skipTest: run.py counts a skipped test as not passed.)
        check_rss = not os.environ.get("SLUICE_SANITIZED")
        gw = self.start_gateway(cache_config(self.up, store={"max_memory": "4m",
                                                             "max_object_size": "256k"}))
        conns = [RawConn(gw.port) for _ in range(4)]  # both workers get connections
        for c in conns:
            self.addCleanup(c.close)

        def fetch(i, k):
            c = conns[k % len(conns)]
            r = c.request(build_request("GET", "/origin/obj%d?bytes=%d" % (i, self.OBJ)))
            self.assertEqual(r.status, 200)
            self.assertEqual(len(r.body), self.OBJ)
            return r
        # warm-up: buffers and pools of every connection and worker, then empty cache
        for k in range(8):
            fetch(100000 + k, k)
        self.assertEqual(purge(gw, {"all": True}).status, 200)
        before = self.rss(gw)
        n = 10 * self.BUDGET // self.OBJ + 1
        for i in range(n):
            r = fetch(i, i)
            self.assertEqual(xcache(r), "MISS", "object %d" % i)
        # the newest object are stored (the test is not vacuous) and hit
        r = fetch(n - 1, 0)
        self.assertCache(r, "HIT", 1)
        self.assertEqual(r.body, pattern_bytes(self.OBJ, 1))
        after = self.rss(gw)
        used = self.metric(gw, "sluice_cache_bytes")
        entries = self.metric(gw, "sluice_cache_entries")
        evictions = self.metric(gw, "sluice_cache_evictions_total")
        self.assertLessEqual(used, self.BUDGET)
        self.assertGreaterEqual(entries, 10, "only %r entries kept of a 4m budget" % entries)
        self.assertLessEqual(entries, self.BUDGET // self.OBJ)
        self.assertGreaterEqual(evictions, n - self.BUDGET // self.OBJ)
        if not check_rss:
            return
        growth = after - before
        if os.environ.get("SLUICE_E2E_VERBOSE"):
            print("\nRSS %d -> %d KiB (+%.2f MiB); cache %d bytes, %d entries, %d evictions"
                  % (before // 1024, after // 1024, growth / 2**20, used, entries, evictions))
        limit = self.BUDGET * 12 // 10 + self.ALLOWANCE
        self.assertLessEqual(growth, limit, "RSS grew by %.1f MiB (%d -> %d KiB), limit %.1f MiB"
                             % (growth / 2**20, before // 1024, after // 1024, limit / 2**20))


class PurgeCli(CacheTestCase):
    def run_cli(self, *args, timeout=20):
        p = subprocess.run([sluice_bin(), "purge"] + list(args), capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr

    def test_cli_purges_through_the_admin_api(self):
        gw = self.start_gateway(cache_config(self.up, routes=[
            {"prefix": "/origin/m/", "cache": {"ttl": "300s", "tags": ["market"]}},
            {"prefix": "/", "cache": {"ttl": "300s"}}]))
        for p in ("/origin/a?y=2&x=1", "/origin/pre/1", "/origin/pre/2", "/origin/pat/v1",
                  "/origin/m/t", "/origin/rest"):
            self.assertEqual(xcache(self.get(gw, p)), "MISS")
        cfg = gw.config_path
        for args, n, gone in ((["--key", "/origin/a?x=1&y=2"], 1, "/origin/a?y=2&x=1"),
                              (["--prefix", "/origin/pre/"], 2, "/origin/pre/1"),
                              (["--pattern", "/origin/*/v?"], 1, "/origin/pat/v1"),
                              (["--tag", "market"], 1, "/origin/m/t"),
                              (["--key", '/origin/"odd\\key\t'], 0, None),  # JSON-escaped
                              # left: the 4 refilled by the checks above, and /origin/rest
                              (["--all"], 5, "/origin/rest")):
            rc, out, err = self.run_cli("-c", cfg, *args)
            self.assertEqual((rc, out.strip()), (0, "purged %d" % n), "%s: stderr %r"
                             % (args, err))
            if gone:
                self.assertEqual(xcache(self.get(gw, gone)), "MISS", gone)

    def test_cli_errors(self):
        up = self.up
        # no admin section: nothing to call -> 2
        gw = self.start_gateway(cache_config(up, admin=False))
        rc, _, err = self.run_cli("-c", gw.config_path, "--all")
        self.assertEqual(rc, 2, err)
        self.assertIn("admin", err)
        # usage errors -> 2
        gw2 = self.start_gateway(cache_config(up))
        for args in ([], ["--all"], ["-c", gw2.config_path],
                     ["-c", gw2.config_path, "--key"],
                     ["-c", gw2.config_path, "--key", "/a", "--tag", "t"],
                     ["-c", gw2.config_path, "--bogus", "x"],
                     ["-c", os.path.join(gw2.dir, "missing.yaml"), "--all"]):
            rc, out, err = self.run_cli(*args)
            self.assertEqual(rc, 2, "%s: %r %r" % (args, out, err))
        # the token the gateway does not know: its 401 body is printed, exit 1
        wrong = gw2.config_text.replace(ADMIN_TOKEN, "not-the-token")
        self.assertNotEqual(wrong, gw2.config_text)
        path = os.path.join(gw2.dir, "wrong.yaml")
        with open(path, "w") as f:
            f.write(wrong)
        rc, out, err = self.run_cli("-c", path, "--all")
        self.assertEqual(rc, 1, "%r %r" % (out, err))
        self.assertIn("401", out + err)
        # nobody listening on admin.listen -> 1, within the connect timeout
        dead = gw2.config_text.replace("127.0.0.1:%d" % gw2.admin_port,
                                       "127.0.0.1:%d" % free_port())
        path = os.path.join(gw2.dir, "dead.yaml")
        with open(path, "w") as f:
            f.write(dead)
        t0 = time.monotonic()
        rc, out, err = self.run_cli("-c", path, "--all")
        self.assertEqual(rc, 1, "%r %r" % (out, err))
        self.assertLess(time.monotonic() - t0, 6)


if __name__ == "__main__":
    unittest.main()
