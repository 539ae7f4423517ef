"""Access lists (SPEC 7.1): config lists, per route, at run time through
/access, persisted (SQLite, Redis), fleet-wide within a second."""
import json
import re
import subprocess
import time

from harness import (E2ETestCase, Gateway, RawConn, build_request, free_port, make_config,
                     sluice_bin, wait_for)

FORBIDDEN = {"error": "Forbidden", "message": "address not allowed"}


def acl_config(up, access=None, routes=None, trusted=True, store=None):
    server = {"trusted_proxies": ["127.0.0.1/32"]} if trusted else {}
    cfg = make_config({"app": up}, routes=routes or [{"prefix": "/", "upstream": "app"}],
                      server=server)
    if access is not None:
        cfg["access"] = access
    if store is not None:
        cfg["store"] = store
    return cfg


def fetch(gw, path="/echo", ip=None):
    headers = {"X-Forwarded-For": ip} if ip else None
    return gw.request("GET", path, headers=headers)


def denied_metric(gw, source):
    text = gw.admin_request("GET", "/metrics").body.decode()
    m = re.search(r'^sluice_access_denied_total\{source="%s"\} (\d+)$' % source, text, re.M)
    return int(m.group(1)) if m else None


class AccessCase(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream()

    def assertForbidden(self, resp):
        self.assertJsonError(resp, 403)
        self.assertEqual(resp.json(), FORBIDDEN)

    def post(self, gw, entry):
        return gw.admin_request("POST", "/access", body=json.dumps(entry).encode(),
                                headers={"Content-Type": "application/json"})

    def entries(self, gw):
        r = gw.admin_request("GET", "/access")
        self.assertStatus(r, 200)
        return r.json()["entries"]


class ConfigLists(AccessCase):
    def test_deny_v4_and_v6(self):
        gw = self.start_gateway(acl_config(self.up, {"deny": ["203.0.113.0/24", "2001:db8::/32"]}))
        self.assertForbidden(fetch(gw, ip="203.0.113.9"))
        self.assertForbidden(fetch(gw, ip="2001:db8::1"))
        self.assertForbidden(fetch(gw, ip="::ffff:203.0.113.10"))  # v4-mapped counts as v4
        self.assertStatus(fetch(gw, ip="203.0.114.1"), 200)
        self.assertStatus(fetch(gw, ip="2001:db9::1"), 200)
        self.assertStatus(fetch(gw), 200)  # 127.0.0.1 itself
        self.assertEqual(denied_metric(gw, "config"), 3)

    def test_deny_direct_peer(self):
        gw = self.start_gateway(acl_config(self.up, {"deny": ["127.0.0.0/8"]}, trusted=False))
        self.assertForbidden(fetch(gw))
        # Without trusted proxies, X-Forwarded-For is not believed.
        self.assertForbidden(fetch(gw, ip="198.51.100.1"))
        # The health check and the admin listener are outside the lists.
        self.assertStatus(gw.request("GET", "/_sluice/health"), 200)
        self.assertStatus(gw.admin_request("GET", "/health"), 200)

    def test_deny_v6_peer_on_a_v6_listener(self):
        v6port = free_port()
        cfg = acl_config(self.up, {"deny": ["::1/128"]}, trusted=False)
        gw = Gateway(cfg)
        cfg["server"]["listen"] = ["127.0.0.1:%d" % gw.port, "[::1]:%d" % v6port]
        gw.write_config(cfg)
        self.addCleanup(self._finish_gateway, gw)
        gw.start()
        with RawConn(v6port, host="::1") as c:
            self.assertForbidden(c.request(build_request("GET", "/echo")))
        self.assertStatus(fetch(gw), 200)  # the same gateway over IPv4

    def test_allow_admits_only_members_and_deny_wins(self):
        gw = self.start_gateway(acl_config(self.up, {"allow": ["10.0.0.0/8", "2001:db8::/32"],
                                                     "deny": ["10.9.0.0/16"]}))
        self.assertStatus(fetch(gw, ip="10.1.2.3"), 200)
        self.assertStatus(fetch(gw, ip="2001:db8::5"), 200)
        self.assertForbidden(fetch(gw, ip="11.1.2.3"))
        self.assertForbidden(fetch(gw, ip="10.9.1.1"))  # deny wins over allow
        self.assertForbidden(fetch(gw))  # 127.0.0.1 is not in the allow list

    def test_per_route_lists(self):
        routes = [
            {"prefix": "/echo/private", "upstream": "app", "access": {"allow": ["10.0.0.0/8"]}},
            {"prefix": "/echo/blocked", "upstream": "app", "access": {"deny": ["192.0.2.0/24"]}},
            {"prefix": "/", "upstream": "app"},
        ]
        gw = self.start_gateway(acl_config(self.up, {"deny": ["198.51.100.0/24"],
                                                     "allow": ["192.0.2.0/24", "10.0.0.0/8"]},
                                           routes=routes))
        self.assertStatus(fetch(gw, "/echo/private/a", ip="10.1.1.1"), 200)
        # The route's allow list replaces the global one.
        self.assertForbidden(fetch(gw, "/echo/private/a", ip="192.0.2.1"))
        self.assertStatus(fetch(gw, "/echo/public", ip="192.0.2.1"), 200)
        self.assertForbidden(fetch(gw, "/echo/blocked", ip="192.0.2.1"))
        self.assertStatus(fetch(gw, "/echo/blocked", ip="10.0.0.1"), 200)
        # A global deny applies on every route.
        self.assertForbidden(fetch(gw, "/echo/private/a", ip="198.51.100.1"))

    def test_reload_applies_a_new_list(self):
        gw = self.start_gateway(acl_config(self.up))
        self.assertStatus(fetch(gw, ip="192.0.2.1"), 200)
        gw.reload(acl_config(self.up, {"deny": ["192.0.2.0/24"]}))
        self.assertTrue(wait_for(lambda: fetch(gw, ip="192.0.2.1").status == 403, timeout=5))
        self.assertForbidden(fetch(gw, ip="192.0.2.1"))

    def test_bad_cidr_is_a_config_error(self):
        gw = Gateway(acl_config(self.up))
        self.addCleanup(gw.cleanup)
        gw.write_config("server:\n  listen: 127.0.0.1:1\naccess:\n  deny:\n    - 10.0.0.0/8\n"
                        "    - 10.0.0.0/33\n")
        code, out = gw.check()
        self.assertEqual(code, 2, out)
        self.assertRegex(out, r"\.yaml:6: access\.deny\[1\]: bad CIDR '10\.0\.0\.0/33'")


class RuntimeLists(AccessCase):
    def test_post_get_delete(self):
        gw = self.start_gateway(acl_config(self.up))
        self.assertStatus(fetch(gw, ip="203.0.113.7"), 200)
        r = self.post(gw, {"list": "deny", "cidr": "203.0.113.0/24", "note": "scraper"})
        self.assertStatus(r, 201)
        e = r.json()
        self.assertEqual((e["list"], e["cidr"], e["note"], e["expires"]),
                         ("deny", "203.0.113.0/24", "scraper", None))
        self.assertTrue(wait_for(lambda: fetch(gw, ip="203.0.113.7").status == 403, timeout=1))
        self.assertForbidden(fetch(gw, ip="203.0.113.7"))
        self.assertEqual(denied_metric(gw, "runtime"), 2)
        self.assertEqual([x["id"] for x in self.entries(gw)], [e["id"]])
        self.assertStatus(gw.admin_request("DELETE", "/access/%d" % e["id"]), 204)
        self.assertStatus(fetch(gw, ip="203.0.113.7"), 200)
        self.assertJsonError(gw.admin_request("DELETE", "/access/%d" % e["id"]), 404)
        self.assertJsonError(gw.admin_request("DELETE", "/access/abc"), 404)
        self.assertEqual(self.entries(gw), [])

    def test_runtime_allow_list(self):
        gw = self.start_gateway(acl_config(self.up))
        self.assertStatus(self.post(gw, {"list": "allow", "cidr": "10.0.0.0/8"}), 201)
        self.assertStatus(fetch(gw, ip="10.2.3.4"), 200)
        self.assertForbidden(fetch(gw, ip="11.2.3.4"))

    def test_ttl_expiry(self):
        gw = self.start_gateway(acl_config(self.up))
        r = self.post(gw, {"list": "deny", "cidr": "2001:db8::/48", "ttl": "1s"})
        self.assertStatus(r, 201)
        self.assertIsNotNone(r.json()["expires"])
        self.assertForbidden(fetch(gw, ip="2001:db8::9"))
        self.assertTrue(wait_for(lambda: fetch(gw, ip="2001:db8::9").status == 200, timeout=3))
        self.assertTrue(wait_for(lambda: self.entries(gw) == [], timeout=3))

    def test_bad_requests(self):
        gw = self.start_gateway(acl_config(self.up))
        for body, word in [({"list": "deny", "cidr": "10.0.0.0/40"}, "cidr"),
                           ({"list": "deny", "cidr": "banana"}, "cidr"),
                           ({"list": "block", "cidr": "10.0.0.0/8"}, "list"),
                           ({"cidr": "10.0.0.0/8"}, "list"),
                           ({"list": "deny", "cidr": "10.0.0.0/8", "ttl": "soon"}, "ttl"),
                           ({"list": "deny", "cidr": "10.0.0.0/8", "ttl": "0s"}, "ttl"),
                           ({"list": "deny", "cidr": "10.0.0.0/8", "note": "x" * 300}, "note"),
                           ({"list": "deny", "cidr": "10.0.0.0/8", "tll": "1h"}, "unknown field"),
                           ([1, 2], "object")]:
            r = self.post(gw, body)
            obj = self.assertJsonError(r, 400)
            self.assertIn(word, obj["message"], body)
        r = gw.admin_request("POST", "/access", body=b"{not json")
        self.assertJsonError(r, 400)
        big = json.dumps({"list": "deny", "cidr": "10.0.0.0/8", "note": "x" * 5000}).encode()
        self.assertJsonError(gw.admin_request("POST", "/access", body=big), 413)
        self.assertEqual(self.entries(gw), [])

    def test_survives_restart_memory_backend(self):
        gw = self.start_gateway(acl_config(self.up))
        self.assertStatus(self.post(gw, {"list": "deny", "cidr": "198.51.100.0/24"}), 201)
        gw.stop()
        gw.start()
        self.assertEqual([e["cidr"] for e in self.entries(gw)], ["198.51.100.0/24"])
        self.assertForbidden(fetch(gw, ip="198.51.100.20"))


class FleetLists(AccessCase):
    def setUp(self):
        super().setUp()
        self.redis = self.start_redis()

    def fleet_gateway(self):
        store = {"backend": "redis", "redis": {"url": self.redis.url}}
        return self.start_gateway(acl_config(self.up, store=store))

    def test_change_on_a_reaches_b_within_a_second(self):
        a, b = self.fleet_gateway(), self.fleet_gateway()
        self.assertStatus(fetch(b, ip="203.0.113.50"), 200)
        t0 = time.monotonic()
        r = self.post(a, {"list": "deny", "cidr": "203.0.113.0/24"})
        self.assertStatus(r, 201)
        self.assertTrue(wait_for(lambda: fetch(b, ip="203.0.113.50").status == 403, timeout=2,
                                 interval=0.01))
        took = time.monotonic() - t0
        self.assertLess(took, 1.0, "B applied the entry after %.3f s" % took)
        # And the removal, from B, reaches A.
        t0 = time.monotonic()
        self.assertStatus(b.admin_request("DELETE", "/access/%d" % r.json()["id"]), 204)
        self.assertTrue(wait_for(lambda: fetch(a, ip="203.0.113.50").status == 200, timeout=2,
                                 interval=0.01))
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_survives_restart_redis_backend(self):
        a = self.fleet_gateway()
        self.assertStatus(self.post(a, {"list": "deny", "cidr": "2001:db8:1::/48"}), 201)
        a.stop()
        a.start()
        self.assertEqual([e["cidr"] for e in self.entries(a)], ["2001:db8:1::/48"])
        self.assertForbidden(fetch(a, ip="2001:db8:1::1"))


class KeyLists(AccessCase):
    """Per key allow_ips (SPEC 7.1: keys create --allow-ips CIDR,...)."""

    def key_config(self, store=None):
        cfg = acl_config(self.up, store=store)
        cfg["tiers"] = {"anonymous": {"limits": ["1000/h"]}, "pro": {"limits": ["1000/h"]}}
        return cfg

    def cli(self, gw, *args, code=0):
        p = subprocess.run([sluice_bin(), "keys"] + list(args) + ["-c", gw.config_path],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, code, "keys %s: %s" % (" ".join(args), p.stderr))
        return p

    def with_key(self, gw, secret, ip=None):
        headers = {"X-API-Key": secret}
        if ip:
            headers["X-Forwarded-For"] = ip
        return gw.request("GET", "/echo", headers=headers)

    def test_cli_create_and_update(self):
        gw = self.start_gateway(self.key_config())
        out = json.loads(self.cli(gw, "create", "--tier", "pro", "--json", "--allow-ips",
                                  "10.0.0.0/8, 2001:db8::/32").stdout)
        kid, secret = out["key"]["id"], out["secret"]
        self.assertEqual(out["key"]["allow_ips"], ["10.0.0.0/8", "2001:db8::/32"])
        self.assertStatus(self.with_key(gw, secret, "10.1.2.3"), 200)
        self.assertStatus(self.with_key(gw, secret, "2001:db8::7"), 200)
        self.assertForbidden(self.with_key(gw, secret, "192.0.2.1"))
        self.assertForbidden(self.with_key(gw, secret))  # 127.0.0.1, the direct peer
        self.assertEqual(denied_metric(gw, "key"), 2)
        # The same address without the key: no list applies to it.
        self.assertStatus(fetch(gw, ip="192.0.2.1"), 200)

        self.cli(gw, "update", kid, "--allow-ips", "192.0.2.0/24")
        self.assertTrue(wait_for(lambda: self.with_key(gw, secret, "192.0.2.1").status == 200,
                                 timeout=2))
        self.assertForbidden(self.with_key(gw, secret, "10.1.2.3"))
        shown = json.loads(self.cli(gw, "show", kid, "--json").stdout)
        self.assertEqual(shown["allow_ips"], ["192.0.2.0/24"])
        self.cli(gw, "update", kid, "--allow-ips", "none")
        self.assertTrue(wait_for(lambda: self.with_key(gw, secret, "10.1.2.3").status == 200,
                                 timeout=2))

        p = self.cli(gw, "create", "--tier", "pro", "--allow-ips", "10.0.0.0/33", code=2)
        self.assertIn("10.0.0.0/33", p.stderr)
        p = self.cli(gw, "update", kid, "--allow-ips", "banana", code=2)
        self.assertIn("banana", p.stderr)

    def admin_json(self, gw, method, path, body):
        return gw.admin_request(method, path, body=json.dumps(body).encode(),
                                headers={"Content-Type": "application/json"})

    def check_admin_api(self, gw):
        r = self.admin_json(gw, "POST", "/keys", {"tier": "pro", "allow_ips": ["203.0.113.0/24"]})
        self.assertStatus(r, 201)
        kid, secret = r.json()["key"]["id"], r.json()["secret"]
        self.assertEqual(r.json()["key"]["allow_ips"], ["203.0.113.0/24"])
        self.assertTrue(wait_for(lambda: self.with_key(gw, secret, "203.0.113.5").status == 200,
                                 timeout=2))
        self.assertForbidden(self.with_key(gw, secret, "203.0.114.5"))
        r = self.admin_json(gw, "PATCH", "/keys/" + kid, {"allow_ips": ["::ffff:203.0.114.0/120"]})
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["allow_ips"], ["::ffff:203.0.114.0/120"])
        self.assertTrue(wait_for(lambda: self.with_key(gw, secret, "203.0.114.5").status == 200,
                                 timeout=2))
        listed = gw.admin_request("GET", "/keys").json()["keys"]
        self.assertEqual([k["allow_ips"] for k in listed], [["::ffff:203.0.114.0/120"]])
        self.assertStatus(self.admin_json(gw, "PATCH", "/keys/" + kid, {"allow_ips": None}), 200)
        self.assertTrue(wait_for(lambda: self.with_key(gw, secret, "198.51.100.1").status == 200,
                                 timeout=2))
        for body in ({"tier": "pro", "allow_ips": ["10.0.0.0/40"]},
                     {"tier": "pro", "allow_ips": "nope"},
                     {"tier": "pro", "allow_ips": [7]},
                     {"tier": "pro", "allow_ips": ["10.%d.0.0/16" % i for i in range(17)]}):
            obj = self.assertJsonError(self.admin_json(gw, "POST", "/keys", body), 400)
            self.assertIn("allow_ips", obj["message"])
        obj = self.assertJsonError(
            self.admin_json(gw, "PATCH", "/keys/" + kid, {"allow_ips": ["10.0.0.0/40"]}), 400)
        self.assertIn("10.0.0.0/40", obj["message"])
        return kid, secret

    def test_admin_api_sqlite(self):
        gw = self.start_gateway(self.key_config())
        self.check_admin_api(gw)

    def test_admin_api_redis_and_restart(self):
        redis = self.start_redis()
        gw = self.start_gateway(self.key_config({"backend": "redis",
                                                 "redis": {"url": redis.url}}))
        kid, secret = self.check_admin_api(gw)
        self.admin_json(gw, "PATCH", "/keys/" + kid, {"allow_ips": ["2001:db8::/32"]})
        gw.stop()
        gw.start()
        self.assertForbidden(self.with_key(gw, secret, "198.51.100.1"))
        self.assertStatus(self.with_key(gw, secret, "2001:db8::1"), 200)

    def test_access_tokens_of_a_key_keep_its_networks(self):
        cfg = self.key_config()
        cfg["identity"] = {"jwt": {"algorithms": ["HS256"],
                                   "secret": "e2e-secret-0123456789-abcdefghijklmnop",
                                   "access_ttl": "5m"}}
        gw = self.start_gateway(cfg)
        out = json.loads(self.cli(gw, "create", "--tier", "pro", "--json", "--allow-ips",
                                  "10.0.0.0/8").stdout)
        h = {"X-API-Key": out["secret"], "X-Forwarded-For": "10.0.0.1",
             "Content-Type": "application/json"}
        # The exchange itself is refused from outside the key's networks...
        self.assertForbidden(gw.request("POST", "/auth/token", body=b"",
                                        headers=dict(h, **{"X-Forwarded-For": "192.0.2.1"})))
        r = gw.request("POST", "/auth/token", body=b"", headers=h)
        self.assertStatus(r, 200)
        bearer = {"Authorization": "Bearer " + r.json()["access_token"]}
        # ...and so is the token it gave, used from elsewhere.
        self.assertStatus(gw.request("GET", "/echo", headers=dict(bearer, **{
            "X-Forwarded-For": "10.9.9.9"})), 200)
        self.assertForbidden(gw.request("GET", "/echo", headers=dict(bearer, **{
            "X-Forwarded-For": "192.0.2.1"})))
