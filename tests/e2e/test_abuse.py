"""Abuse bans (SPEC 7.3, SPEC 8): each 429 is a violation of its identity; more than
`abuse.violations` within `abuse.window` bans it (403 "temporarily banned" with
Retry-After, before the limits, the cache and the upstream), longer for each
repeat up to `max_ban`; bans made and ended through /bans; /violations lists the
top violators; bans reach every gateway sharing Redis within a second and
survive restarts (SQLite and Redis)."""
import base64
import hashlib
import hmac
import json
import re
import time
import urllib.parse

from harness import E2ETestCase, Gateway, make_config, wait_for
from test_alerts import EventStream
from test_audit import read_lines

JWT_SECRET = "e2e-secret-0123456789-abcdefghijklmnop"


def abuse_config(up, abuse=None, limit="1/min", store=None, audit=False, jwt=False):
    cfg = make_config({"app": up}, routes=[{"prefix": "/", "upstream": "app"}],
                      server={"trusted_proxies": ["127.0.0.1/32"]})
    cfg["tiers"] = {"anonymous": {"limits": [limit]}, "pro": {"limits": [limit]}}
    if abuse is not None:
        cfg["abuse"] = abuse
    if store is not None:
        cfg["store"] = store
    if audit:
        cfg["audit"] = {"path": "audit.log", "key": "6a" * 32}
    if jwt:
        cfg["identity"] = {"jwt": {"algorithms": ["HS256"], "secret": JWT_SECRET}}
    return cfg


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(sub):
    now = int(time.time())
    head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64u(json.dumps({"sub": sub, "tier": "pro", "iat": now, "exp": now + 300}).encode())
    sig = hmac.new(JWT_SECRET.encode(), (head + "." + body).encode(), hashlib.sha256).digest()
    return head + "." + body + "." + b64u(sig)


def fetch(gw, ip=None, path="/echo", headers=None):
    h = dict(headers or {})
    if ip:
        h["X-Forwarded-For"] = ip
    return gw.request("GET", path, headers=h)


def metric(gw, name):
    text = gw.admin_request("GET", "/metrics").body.decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def quoted(identity):
    return urllib.parse.quote(identity, safe="")


class AbuseCase(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream()

    def post_ban(self, gw, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return gw.admin_request("POST", "/bans", body=data,
                                headers={"Content-Type": "application/json"})

    def bans(self, gw):
        r = gw.admin_request("GET", "/bans")
        self.assertStatus(r, 200)
        self.assertEqual(list(r.json()), ["bans"])
        return r.json()["bans"]

    def violators(self, gw, query=""):
        r = gw.admin_request("GET", "/violations" + query)
        self.assertStatus(r, 200)
        return r.json()

    def assertBanned(self, resp, most):
        """<resp> is the 403 of SPEC 7.3, its Retry-After N in [most - 5, most]."""
        self.assertJsonError(resp, 403)
        body = resp.json()
        self.assertEqual(list(body), ["error", "message", "retry_after"])
        self.assertEqual((body["error"], body["message"]), ("Forbidden", "temporarily banned"))
        n = body["retry_after"]
        self.assertIsInstance(n, int)
        self.assertEqual(resp.header("Retry-After"), str(n))
        self.assertTrue(most - 5 <= n <= most, "retry_after %d, want about %d" % (n, most))
        return n

    def violate(self, gw, ip, n, headers=None):
        """<n> requests refused with 429 (the limit is 1/min: the first of an identity passes)."""
        for i in range(n):
            r = fetch(gw, ip, headers=headers)
            self.assertStatus(r, 429, "violation %d of %s" % (i + 1, ip))

    def wait_violations(self, gw, identity, n):
        """The finish hook counts a 429 just after the response: wait until it has."""
        def counted():
            for v in self.violators(gw, "?top=1000")["violators"]:
                if v["identity"] == identity:
                    return v["violations"] >= n
            return n == 0
        self.assertTrue(wait_for(counted, timeout=3), "%s: %d violations" % (identity, n))


class SeedBan(AbuseCase):
    """The seed's rule, abuse: {violations: 10, window: 24h, ban: 2h}, on one gateway."""

    def test_more_than_ten_violations_ban_for_two_hours(self):
        gw = self.start_gateway(abuse_config(self.up, {"violations": 10, "window": "24h",
                                                       "ban": "2h"}))
        events = EventStream(gw.admin_port)
        self.addCleanup(events.sock.close)
        ip = "198.51.100.7"
        self.assertStatus(fetch(gw, ip), 200)
        self.violate(gw, ip, 10)
        self.wait_violations(gw, "ip:" + ip, 10)
        # Exactly ten: not more than ten, no ban.
        time.sleep(0.4)
        self.assertStatus(fetch(gw, ip), 429)  # the eleventh violation
        self.assertTrue(wait_for(lambda: fetch(gw, ip).status == 403, timeout=1, interval=0.01))
        self.assertBanned(fetch(gw, ip), 7200)
        calls = self.up.stats()["requests"]
        bans = self.bans(gw)
        self.assertEqual(len(bans), 1)
        b = bans[0]
        self.assertEqual(list(sorted(b)), ["count", "created", "identity", "reason",
                                           "retry_after", "source", "until"])
        self.assertEqual((b["identity"], b["source"], b["count"]), ("ip:" + ip, "auto", 1))
        self.assertIn(b["until"] - b["created"], (7200, 7201))
        self.assertTrue(7195 <= b["retry_after"] <= 7200)
        self.assertEqual(b["reason"], "11 violations within 24h")
        # Another address is not banned; the banned one never reaches the upstream.
        self.assertStatus(fetch(gw, "198.51.100.8"), 200)
        self.assertBanned(fetch(gw, ip), 7200)
        self.assertEqual(self.up.stats()["requests"], calls + 1)  # the other address only
        # The event, the log line, the metrics.
        while True:
            kind, data = events.next_event(timeout=3)
            if kind == "ban.added":
                break
        ev = json.loads(data)
        self.assertEqual(ev["type"], "ban.added")
        self.assertEqual(ev["ban"]["identity"], "ip:" + ip)
        self.assertEqual(ev["ban"]["source"], "auto")
        self.assertRegex(gw.stderr_text(), r"sluice: ban: ip:198\.51\.100\.7 banned for 2h \(auto")
        self.assertTrue(wait_for(lambda: re.search(r'^198\.51\.100\.7 .*" 403 .* refused=ban$',
                                                   gw.stdout_text(), re.M), timeout=3))
        self.assertRegex(gw.stdout_text(), r'(?m)^198\.51\.100\.7 .*" 429 .* refused=limit$')
        self.assertEqual(metric(gw, 'sluice_bans_total{source="auto"}'), 1)
        self.assertEqual(metric(gw, 'sluice_bans_total{source="manual"}'), 0)
        self.assertEqual(metric(gw, "sluice_bans_active"), 1)
        self.assertGreaterEqual(metric(gw, "sluice_banned_requests_total"), 2)
        # /violations shows it banned; its count started again with the ban (a 429
        # may have come between the eleventh and the ban taking effect).
        top = self.violators(gw)
        self.assertEqual(top["window"], "24h")
        self.assertEqual([(v["identity"], v["banned"]) for v in top["violators"]],
                         [("ip:" + ip, True)] * len(top["violators"]))
        self.assertLessEqual(len(top["violators"]), 1)

    def test_quota_429s_are_violations_too(self):
        cfg = abuse_config(self.up, {"violations": 2}, limit="1000/min")
        cfg["tiers"]["anonymous"]["quota"] = {"daily": 1}
        gw = self.start_gateway(cfg)
        ip = "192.0.2.44"
        self.assertStatus(fetch(gw, ip), 200)
        for _ in range(3):
            r = fetch(gw, ip)
            self.assertStatus(r, 429)
            self.assertEqual(r.json()["error"], "Quota exceeded")
        self.assertTrue(wait_for(lambda: fetch(gw, ip).status == 403, timeout=1, interval=0.01))

    def test_a_jwt_subject_ban_comes_before_the_limits(self):
        gw = self.start_gateway(abuse_config(self.up, {"violations": 2}, jwt=True))
        bearer = {"Authorization": "Bearer " + make_jwt("user-9")}
        self.assertStatus(fetch(gw, "192.0.2.10", headers=bearer), 200)
        self.violate(gw, "192.0.2.11", 3, headers=bearer)  # the subject, from any address
        self.assertTrue(wait_for(lambda: fetch(gw, "192.0.2.12", headers=bearer).status == 403,
                                 timeout=1, interval=0.01))
        b = self.bans(gw)
        self.assertEqual([x["identity"] for x in b], ["sub:user-9"])
        # The addresses it came from are not banned, nor is another subject.
        self.assertStatus(fetch(gw, "192.0.2.12"), 200)
        other = {"Authorization": "Bearer " + make_jwt("user-10")}
        self.assertStatus(fetch(gw, "192.0.2.12", headers=other), 200)
        # Before the limits: no rate-limit headers on the refusal.
        r = fetch(gw, "192.0.2.12", headers=bearer)
        self.assertBanned(r, 7200)
        self.assertIsNone(r.header("X-RateLimit-Limit"))

    def test_reload_turns_automatic_bans_on(self):
        gw = self.start_gateway(abuse_config(self.up))
        ip = "192.0.2.88"
        self.assertStatus(fetch(gw, ip), 200)
        self.violate(gw, ip, 3)
        gw.reload(abuse_config(self.up, {"violations": 4, "ban": "1h"}))
        self.assertTrue(wait_for(lambda: "reloaded" in gw.stderr_text(), timeout=5))
        # The counts so far are kept: the fifth 429 bans (a worker takes the new
        # config with its next request, so allow one or two more).
        seen = []
        for _ in range(4):
            seen.append(fetch(gw, ip).status)
            if seen[-1] == 403:
                break
        self.assertTrue(wait_for(lambda: fetch(gw, ip).status == 403, timeout=1, interval=0.01),
                        seen)
        self.assertEqual(seen[:2], [429, 429])
        self.assertBanned(fetch(gw, ip), 3600)

    def test_no_abuse_section_no_automatic_ban(self):
        gw = self.start_gateway(abuse_config(self.up))
        ip = "192.0.2.77"
        self.assertStatus(fetch(gw, ip), 200)
        self.violate(gw, ip, 15)
        self.wait_violations(gw, "ip:" + ip, 15)
        time.sleep(0.3)
        self.assertStatus(fetch(gw, ip), 429)
        self.assertEqual(self.bans(gw), [])
        # Counted all the same, over the default window.
        self.assertEqual(self.violators(gw)["window"], "24h")


class Escalation(AbuseCase):
    def test_second_ban_is_longer_up_to_max_ban(self):
        gw = self.start_gateway(abuse_config(self.up, {"violations": 2, "window": "1m",
                                                       "ban": "2s", "escalate": 3,
                                                       "max_ban": "5s"}))
        ip = "203.0.113.99"
        self.assertStatus(fetch(gw, ip), 200)
        self.violate(gw, ip, 3)
        self.assertTrue(wait_for(lambda: fetch(gw, ip).status == 403, timeout=1, interval=0.01))
        first = self.bans(gw)[0]
        self.assertEqual((first["count"], first["until"] - first["created"] <= 3), (1, True))
        self.assertBanned(fetch(gw, ip), 2)
        # It ends by itself; the limit still refuses, so three more violations (429s
        # that raced the first ban into force count towards them)...
        self.assertTrue(wait_for(lambda: fetch(gw, ip).status == 429, timeout=4, interval=0.05))
        for _ in range(2):
            r = fetch(gw, ip)
            if r.status == 403:
                break
            self.assertStatus(r, 429)
        # ...make the second ban: 2s x 3 = 6s, capped at max_ban 5s.
        self.assertTrue(wait_for(lambda: fetch(gw, ip).status == 403, timeout=1, interval=0.01))
        second = self.bans(gw)[0]
        self.assertEqual(second["count"], 2)
        self.assertIn(second["until"] - second["created"], (5, 6))
        self.assertGreater(self.assertBanned(fetch(gw, ip), 5), 2)


class ManualBans(AbuseCase):
    def test_ban_and_unban_through_the_api(self):
        gw = self.start_gateway(abuse_config(self.up, audit=True, limit="1000/min"))
        events = EventStream(gw.admin_port)
        self.addCleanup(events.sock.close)
        ip = "198.51.100.7"
        self.assertStatus(fetch(gw, ip), 200)
        t0 = int(time.time())
        r = self.post_ban(gw, {"identity": "ip:" + ip, "duration": "1h", "reason": "scraper"})
        self.assertStatus(r, 201)
        b = r.json()
        self.assertEqual({k: b[k] for k in ("identity", "reason", "source", "count")},
                         {"identity": "ip:" + ip, "reason": "scraper", "source": "manual",
                          "count": 1})
        self.assertTrue(t0 <= b["created"] <= t0 + 2)
        self.assertIn(b["until"] - b["created"], (3600, 3601))
        self.assertTrue(3595 <= b["retry_after"] <= 3600)
        listed = self.bans(gw)
        self.assertEqual(len(listed), 1)
        self.assertEqual({k: v for k, v in listed[0].items() if k != "retry_after"},
                         {k: v for k, v in b.items() if k != "retry_after"})
        self.assertBanned(fetch(gw, ip), 3600)
        self.assertStatus(fetch(gw, "198.51.100.8"), 200)
        # IPv6: one address bans its /64, the identity the gateway counts under.
        r = self.post_ban(gw, {"identity": "ip:2001:db8:1:2::5", "duration": "10m"})
        self.assertStatus(r, 201)
        self.assertEqual(r.json()["identity"], "ip:2001:db8:1:2::/64")
        self.assertEqual(r.json()["reason"], "")
        self.assertBanned(fetch(gw, "2001:db8:1:2::99"), 600)
        self.assertStatus(fetch(gw, "2001:db8:1:3::99"), 200)
        self.assertEqual([x["identity"] for x in self.bans(gw)],
                         ["ip:2001:db8:1:2::/64", "ip:" + ip])
        # Unban, URL-encoded.
        self.assertStatus(gw.admin_request("DELETE", "/bans/" + quoted("ip:" + ip)), 204)
        self.assertStatus(fetch(gw, ip), 200)
        self.assertJsonError(gw.admin_request("DELETE", "/bans/" + quoted("ip:" + ip)), 404)
        self.assertStatus(gw.admin_request("DELETE", "/bans/" +
                                           quoted("ip:2001:db8:1:2::/64")), 204)
        self.assertEqual(self.bans(gw), [])
        self.assertEqual(metric(gw, 'sluice_bans_total{source="manual"}'), 2)
        self.assertEqual(metric(gw, "sluice_bans_active"), 0)
        # A second ban of the same identity is its second.
        r = self.post_ban(gw, {"identity": "ip:" + ip, "duration": "1m"})
        self.assertEqual(r.json()["count"], 2)
        # Events and audit lines.
        seen = []
        while len(seen) < 5:
            kind, data = events.next_event(timeout=3)
            if kind.startswith("ban."):
                ev = json.loads(data)
                self.assertEqual(ev["type"], kind)
                seen.append((kind, ev["ban"]["identity"]))
        self.assertEqual(seen, [("ban.added", "ip:" + ip),
                                ("ban.added", "ip:2001:db8:1:2::/64"),
                                ("ban.removed", "ip:" + ip),
                                ("ban.removed", "ip:2001:db8:1:2::/64"),
                                ("ban.added", "ip:" + ip)])
        log = gw.dir + "/audit.log"
        # The writer thread appends them in order: wait for the last one.
        self.assertTrue(wait_for(lambda: sum(l["action"].startswith("ban.")
                                             for l in read_lines(log)) >= 6, timeout=3))
        lines = [l for l in read_lines(log) if l["action"].startswith("ban.")]
        self.assertEqual([(l["action"], l["target"], l["result"], l["actor"]) for l in lines],
                         [("ban.add", "ip:" + ip, "ok", "admin-api"),
                          ("ban.add", "ip:2001:db8:1:2::/64", "ok", "admin-api"),
                          ("ban.remove", "ip:" + ip, "ok", "admin-api"),
                          ("ban.remove", "ip:" + ip, "404 Not Found", "admin-api"),
                          ("ban.remove", "ip:2001:db8:1:2::/64", "ok", "admin-api"),
                          ("ban.add", "ip:" + ip, "ok", "admin-api")])
        self.assertEqual(lines[0]["reason"], "scraper")
        self.assertEqual(lines[0]["source"], "manual")
        self.assertRegex(gw.stderr_text(), r"sluice: ban: ip:198\.51\.100\.7 unbanned")

    def test_bad_input(self):
        gw = self.start_gateway(abuse_config(self.up))
        for body, word in [({"identity": "ip:198.51.100.7", "duration": "1h", "for": "x"},
                            "unknown field"),
                           ({"identity": "ip:banana", "duration": "1h"}, "ip:"),
                           ({"identity": "198.51.100.7", "duration": "1h"}, "identity"),
                           ({"identity": "user:bob", "duration": "1h"}, "identity"),
                           ({"identity": "ip:2001:db8::/48", "duration": "1h"}, "ipv6_prefix"),
                           ({"identity": "ip:198.51.100.7"}, "duration"),
                           ({"identity": "ip:198.51.100.7", "duration": "soon"}, "duration"),
                           ({"identity": "ip:198.51.100.7", "duration": "0s"}, "duration"),
                           ({"identity": "ip:198.51.100.7", "duration": "1h", "reason": 7},
                            "reason"),
                           ({"identity": "ip:198.51.100.7", "duration": "1h",
                             "reason": "x" * 300}, "reason"),
                           ([1, 2], "object")]:
            obj = self.assertJsonError(self.post_ban(gw, body), 400)
            self.assertIn(word, obj["message"], body)
        self.assertJsonError(self.post_ban(gw, b"{not json"), 400)
        big = json.dumps({"identity": "ip:198.51.100.7", "duration": "1h",
                          "reason": "x" * 5000}).encode()
        self.assertJsonError(self.post_ban(gw, big), 413)
        self.assertEqual(self.bans(gw), [])
        self.assertJsonError(gw.admin_request("DELETE", "/bans/" + quoted("nobody")), 400)
        self.assertJsonError(gw.admin_request("DELETE", "/bans/ip%3A1.2.3.4%"), 400)
        self.assertJsonError(gw.admin_request("DELETE", "/bans/" + quoted("ip:192.0.2.1")), 404)
        for q in ("?top=0", "?top=1001", "?top=x", "?window=soon", "?window=48h", "?n=3"):
            self.assertJsonError(gw.admin_request("GET", "/violations" + q), 400)
        self.assertJsonError(gw.admin_request("GET", "/bans", token="wrong"), 401)
        self.assertJsonError(gw.admin_request("PUT", "/bans"), 405)

    def test_config_errors(self):
        gw = Gateway(abuse_config(self.up))
        self.addCleanup(gw.cleanup)
        gw.write_config("server:\n  listen: 127.0.0.1:1\nabuse:\n  violations: 10\n"
                        "  window: 2h\n  ban: 3d\n  max_ban: 1d\n")
        code, out = gw.check()
        self.assertEqual(code, 2, out)
        self.assertRegex(out, r"\.yaml:3: abuse: max_ban \(1d\) is shorter than ban \(3d\)")
        gw.write_config("server:\n  listen: 127.0.0.1:1\nabuse: {violations: -1}\n")
        code, out = gw.check()
        self.assertEqual(code, 2, out)
        self.assertRegex(out, r"\.yaml:3: abuse\.violations: -1 is out of range")


class TopViolators(AbuseCase):
    def test_counts_after_a_mixed_run(self):
        gw = self.start_gateway(abuse_config(self.up, {"violations": 100}, jwt=True))
        bearer = {"Authorization": "Bearer " + make_jwt("carol")}
        plan = [("192.0.2.1", None, 6), ("192.0.2.2", None, 3), ("192.0.2.3", None, 1),
                ("192.0.2.4", bearer, 4)]
        self.assertStatus(fetch(gw, "192.0.2.9"), 200)  # no violation at all
        for ip, h, n in plan:
            self.assertStatus(fetch(gw, ip, headers=h), 200)
        # Interleaved, as a real run would be.
        left = {ip: n for ip, _, n in plan}
        while any(left.values()):
            for ip, h, _ in plan:
                if left[ip]:
                    self.assertStatus(fetch(gw, ip, headers=h), 429)
                    left[ip] -= 1
        want = [("ip:192.0.2.1", 6), ("sub:carol", 4), ("ip:192.0.2.2", 3), ("ip:192.0.2.3", 1)]
        self.wait_violations(gw, "ip:192.0.2.3", 1)
        self.assertTrue(wait_for(lambda: [(v["identity"], v["violations"]) for v in
                                          self.violators(gw)["violators"]] == want, timeout=3),
                        self.violators(gw))
        now = int(time.time())
        top = self.violators(gw, "?top=10&window=1h")
        self.assertEqual(top["window"], "1h")
        for v in top["violators"]:
            self.assertEqual(list(v), ["identity", "violations", "last", "banned"])
            self.assertTrue(now - 30 <= v["last"] <= now, v)
            self.assertFalse(v["banned"])
        self.assertEqual([v["identity"] for v in self.violators(gw, "?top=2")["violators"]],
                         ["ip:192.0.2.1", "sub:carol"])
        self.assertStatus(self.post_ban(gw, {"identity": "sub:carol", "duration": "1h"}), 201)
        self.assertEqual([(v["identity"], v["banned"]) for v in
                          self.violators(gw, "?top=2")["violators"]],
                         [("ip:192.0.2.1", False), ("sub:carol", True)])


class Persistence(AbuseCase):
    def check_restart(self, gw):
        self.assertStatus(self.post_ban(gw, {"identity": "ip:203.0.113.5", "duration": "1h",
                                             "reason": "kept"}), 201)
        self.assertBanned(fetch(gw, "203.0.113.5"), 3600)
        gw.stop()
        gw.start()
        bans = self.bans(gw)
        self.assertEqual([(b["identity"], b["reason"], b["count"]) for b in bans],
                         [("ip:203.0.113.5", "kept", 1)])
        self.assertBanned(fetch(gw, "203.0.113.5"), 3600)
        self.assertStatus(fetch(gw, "203.0.113.6"), 200)

    def test_survives_restart_sqlite(self):
        self.check_restart(self.start_gateway(abuse_config(self.up, {"violations": 10})))

    def test_survives_restart_redis(self):
        redis = self.start_redis()
        store = {"backend": "redis", "redis": {"url": redis.url}}
        self.check_restart(self.start_gateway(abuse_config(self.up, {"violations": 10},
                                                           store=store)))


class Fleet(AbuseCase):
    def setUp(self):
        super().setUp()
        self.redis = self.start_redis()

    def fleet_gateway(self, abuse):
        store = {"backend": "redis", "redis": {"url": self.redis.url}}
        gw = self.start_gateway(abuse_config(self.up, abuse, store=store))
        # Until its workers are connected, a gateway limits on its own (on_failure).
        self.assertTrue(wait_for(lambda: metric(gw, "sluice_redis_up") == 1, timeout=5))
        return gw

    def test_a_ban_made_on_a_refuses_on_b_within_a_second(self):
        abuse = {"violations": 10, "window": "24h", "ban": "2h"}
        a, b = self.fleet_gateway(abuse), self.fleet_gateway(abuse)
        ip = "198.51.100.77"
        self.assertStatus(fetch(a, ip), 200)
        self.assertStatus(fetch(b, ip), 429)  # the limit is fleet-wide: B saw A's request
        self.violate(a, ip, 10)
        self.assertTrue(wait_for(lambda: fetch(a, ip).status == 403, timeout=2, interval=0.005))
        t0 = time.monotonic()
        self.assertTrue(wait_for(lambda: fetch(b, ip).status == 403, timeout=2, interval=0.01))
        took = time.monotonic() - t0
        self.assertLess(took, 1.0, "B applied the ban after %.3f s" % took)
        self.assertBanned(fetch(b, ip), 7200)
        self.assertEqual([x["identity"] for x in self.bans(b)], ["ip:" + ip])
        self.assertEqual(metric(a, 'sluice_bans_total{source="auto"}'), 1)
        self.assertEqual(metric(b, 'sluice_bans_total{source="auto"}'), 0)
        self.assertEqual(metric(b, "sluice_bans_active"), 1)
        # Unbanned on B: A lets it through again within a second.
        t0 = time.monotonic()
        self.assertStatus(b.admin_request("DELETE", "/bans/" + quoted("ip:" + ip)), 204)
        self.assertTrue(wait_for(lambda: fetch(a, ip).status != 403, timeout=2, interval=0.01))
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_manual_ban_on_b_reaches_a(self):
        a, b = self.fleet_gateway(None), self.fleet_gateway(None)
        self.assertStatus(self.post_ban(b, {"identity": "ip:192.0.2.200", "duration": "5m"}),
                          201)
        t0 = time.monotonic()
        self.assertTrue(wait_for(lambda: fetch(a, "192.0.2.200").status == 403, timeout=2,
                                 interval=0.01))
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertBanned(fetch(a, "192.0.2.200"), 300)

    def test_violations_are_counted_fleet_wide(self):
        abuse = {"violations": 4, "window": "1h", "ban": "10m"}
        a, b = self.fleet_gateway(abuse), self.fleet_gateway(abuse)
        ip = "198.51.100.88"
        self.assertStatus(fetch(a, ip), 200)
        # Two violations on each gateway: four in the fleet, not more than four.
        for gw in (a, b, a, b):
            self.assertStatus(fetch(gw, ip), 429)
        for gw in (a, b):
            self.assertTrue(wait_for(lambda: [(v["identity"], v["violations"]) for v in
                                              self.violators(gw)["violators"]] ==
                                     [("ip:" + ip, 4)], timeout=3), self.violators(gw))
        time.sleep(0.3)
        self.assertStatus(fetch(b, ip), 429)  # the fifth, on B: the fleet's threshold
        self.assertTrue(wait_for(lambda: fetch(a, ip).status == 403, timeout=1, interval=0.01))
        self.assertBanned(fetch(b, ip), 600)
        bans = self.bans(a)
        self.assertEqual([(x["identity"], x["count"], x["reason"]) for x in bans],
                         [("ip:" + ip, 1, "5 violations within 1h")])
        # One ban for the fleet, made by the gateway that saw the crossing.
        self.assertEqual(metric(a, 'sluice_bans_total{source="auto"}') +
                         metric(b, 'sluice_bans_total{source="auto"}'), 1)

    def test_top_violators_fleet_wide(self):
        a, b = self.fleet_gateway({"violations": 100}), self.fleet_gateway({"violations": 100})
        plan = [("192.0.2.31", 5), ("192.0.2.32", 2), ("192.0.2.33", 3)]
        for ip, n in plan:
            self.assertStatus(fetch(a, ip), 200)
            for i in range(n):
                self.assertStatus(fetch(a if i % 2 else b, ip), 429)
        want = [("ip:192.0.2.31", 5), ("ip:192.0.2.33", 3), ("ip:192.0.2.32", 2)]
        for gw in (a, b):
            self.assertTrue(wait_for(lambda: [(v["identity"], v["violations"]) for v in
                                              self.violators(gw)["violators"]] == want,
                                     timeout=3), self.violators(gw))
        self.assertEqual([v["identity"] for v in self.violators(b, "?top=1")["violators"]],
                         ["ip:192.0.2.31"])
        self.assertEqual(self.violators(b, "?window=1m")["window"], "1m")

