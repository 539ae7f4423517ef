"""Developer self-service (SPEC 8, docs/developer.md): a developer signed in with
a JWT manages the API keys it owns under /developer/ on the main listener, and
reads their usage; the page /developer/ is served with a strict CSP. Real
gateway, real upstream, real HTTP."""

import json
import os
import time

from harness import E2ETestCase, Gateway, make_config, wait_for
from test_audit import read_lines
from test_keys import JWT_SECRET, make_jwt

# Ranked by their order here: free < pro < enterprise (docs/developer.md).
TIERS = {
    "anonymous": {"limits": ["1000/h"]},
    "free": {"limits": ["1000/h"], "quota": {"daily": 1000}},
    "pro": {"limits": ["10000/h"], "quota": {"daily": 100000}},
    "enterprise": {"limits": ["100000/h"]},
    "staff": {"exempt": True},
}


def token(sub, tier=None, **extra):
    now = int(time.time())
    c = {"sub": sub, "iat": now, "exp": now + 300}
    if tier:
        c["tier"] = tier
    c.update(extra)
    return make_jwt(c)


def dev_config(up, developer=None, **extra):
    cfg = make_config({"app": up}, routes=[{"prefix": "/echo/", "auth": "required"}])
    cfg["tiers"] = TIERS
    cfg["identity"] = {"jwt": {"algorithms": ["HS256"], "secret": JWT_SECRET}}
    cfg["developer"] = dict({"enabled": True}, **(developer or {}))
    cfg["audit"] = {"path": "audit.log", "key": "6b" * 32}
    cfg.update(extra)
    return cfg


class DeveloperTestCase(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def call(self, gw, method, path, jwt=None, body=None, headers=None):
        h = dict(headers or {})
        if jwt:
            h["Authorization"] = "Bearer " + jwt
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
        return gw.request(method, "/developer/" + path, body=body, headers=h)

    def create(self, gw, jwt, name="ci", **fields):
        r = self.call(gw, "POST", "keys", jwt, dict({"name": name}, **fields))
        self.assertStatus(r, 201, r.body)
        out = r.json()
        self.assertTrue(out["secret"].startswith("sk_live_"), out)
        return out["key"], out["secret"]


class Scoping(DeveloperTestCase):
    def test_create_list_get_rotate_revoke_own_keys(self):
        gw = self.start_gateway(dev_config(self.up))
        alice = token("alice", "pro")
        key, secret = self.create(gw, alice, "ci")
        self.assertEqual(key["owner"], "alice")
        self.assertEqual(key["tier"], "pro")  # the caller's own when none is asked
        self.assertEqual(key["name"], "ci")
        r = self.call(gw, "GET", "keys", alice)
        self.assertStatus(r, 200)
        listed = r.json()
        self.assertEqual(listed["count"], 1)
        self.assertEqual(listed["keys"][0]["id"], key["id"])
        self.assertNotIn(secret, r.body.decode())
        self.assertNotIn("secret", listed["keys"][0])
        self.assertStatus(self.call(gw, "GET", "keys/" + key["id"], alice), 200)
        # the key works at once
        self.assertStatus(gw.request("GET", "/echo/x", headers={"X-API-Key": secret}), 200)
        # rotate with grace: both secrets work
        r = self.call(gw, "POST", "keys/%s/rotate" % key["id"], alice, {"grace": "1h"})
        self.assertStatus(r, 200, r.body)
        new = r.json()["secret"]
        self.assertNotEqual(new, secret)
        for s in (secret, new):
            self.assertStatus(gw.request("GET", "/echo/x", headers={"X-API-Key": s}), 200)
        # revoke: the key gets 401 at once
        r = self.call(gw, "DELETE", "keys/" + key["id"], alice)
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["state"], "revoked")
        for s in (secret, new):
            self.assertJsonError(gw.request("GET", "/echo/x", headers={"X-API-Key": s}), 401)

    def test_another_owners_keys_are_404(self):
        gw = self.start_gateway(dev_config(self.up))
        alice, bob = token("alice", "pro"), token("bob", "pro")
        akey, asecret = self.create(gw, alice, "alice-ci")
        self.create(gw, bob, "bob-ci")
        r = self.call(gw, "GET", "keys", bob)
        self.assertEqual([k["name"] for k in r.json()["keys"]], ["bob-ci"])
        for method, path, body in (("GET", "keys/" + akey["id"], None),
                                   ("POST", "keys/%s/rotate" % akey["id"], {}),
                                   ("DELETE", "keys/" + akey["id"], None)):
            r = self.call(gw, method, path, bob, body)
            self.assertJsonError(r, 404)
            self.assertEqual(r.json()["message"], "no such key")
        # the same answer as for a key that does not exist at all
        self.assertJsonError(self.call(gw, "DELETE", "keys/k_doesnotexist", bob), 404)
        # alice's key is untouched
        self.assertStatus(gw.request("GET", "/echo/x", headers={"X-API-Key": asecret}), 200)
        r = self.call(gw, "GET", "keys/" + akey["id"], alice)
        self.assertEqual(r.json()["state"], "active")
        self.assertEqual(r.json()["rotated_until"], None)

    def test_key_created_by_the_admin_for_an_owner_is_theirs(self):
        gw = self.start_gateway(dev_config(self.up))
        r = gw.admin_request("POST", "/keys", body=json.dumps({"tier": "free", "owner": "carol"}))
        self.assertStatus(r, 201)
        kid = r.json()["key"]["id"]
        r = self.call(gw, "GET", "keys", token("carol", "free"))
        self.assertEqual([k["id"] for k in r.json()["keys"]], [kid])


class Authentication(DeveloperTestCase):
    def test_401_without_a_jwt_with_a_bad_one_or_with_an_api_key(self):
        gw = self.start_gateway(dev_config(self.up))
        _, secret = self.create(gw, token("alice", "pro"))
        now = int(time.time())
        bad = [
            {},
            {"Authorization": "Bearer " + make_jwt({"sub": "alice", "exp": now + 60},
                                                   secret="wrong-secret-0123456789abcdef")},
            {"Authorization": "Bearer " + make_jwt({"sub": "alice", "exp": now - 3600})},
            {"Authorization": "Bearer not.a.jwt"},
            {"X-API-Key": secret},
            {"Authorization": "Bearer " + secret},
        ]
        for headers in bad:
            for method, path in (("GET", "keys"), ("POST", "keys"), ("GET", "usage"),
                                 ("DELETE", "keys/k_x")):
                r = self.call(gw, method, path, headers=headers,
                              body={"name": "x"} if method == "POST" else None)
                self.assertJsonError(r, 401)
                self.assertTrue(r.header("WWW-Authenticate", "").startswith("Bearer"), r)
        self.assertEqual(self.up.stats()["requests"], 0)

    def test_a_token_issued_for_an_api_key_is_not_a_developer(self):
        gw = self.start_gateway(dev_config(self.up))
        _, secret = self.create(gw, token("alice", "pro"))
        r = gw.request("POST", "/auth/token", headers={"X-API-Key": secret})
        self.assertStatus(r, 200)
        access = r.json()["access_token"]
        self.assertStatus(gw.request("GET", "/echo/x",
                                     headers={"Authorization": "Bearer " + access}), 200)
        self.assertJsonError(self.call(gw, "GET", "keys", access), 401)

    def test_off_by_default_and_needs_jwt(self):
        cfg = dev_config(self.up)
        del cfg["developer"]
        cfg["routes"] = [{"prefix": "/"}]
        gw = self.start_gateway(cfg)
        # not intercepted: the upstream's own /developer/ path
        r = self.call(gw, "GET", "keys", token("alice", "pro"))
        self.assertEqual(r.header("X-Upstream"), "A", r)
        self.assertEqual(self.up.stats()["requests"], 1)
        # enabled without identity.jwt: the config is refused
        cfg = dev_config(self.up)
        del cfg["identity"]
        g = Gateway(cfg)
        self.addCleanup(g.cleanup)
        rc, out = g.check()
        self.assertNotEqual(rc, 0)
        self.assertIn("developer.enabled needs identity.jwt", out)


class Rules(DeveloperTestCase):
    def test_cannot_raise_its_own_tier(self):
        gw = self.start_gateway(dev_config(self.up))
        free = token("dora", "free")
        for tier in ("pro", "enterprise", "staff"):
            r = self.call(gw, "POST", "keys", free, {"name": "x", "tier": tier})
            self.assertJsonError(r, 403)
            self.assertIn("above your own", r.json()["message"])
        self.assertJsonError(self.call(gw, "POST", "keys", free,
                                       {"name": "x", "tier": "nosuch"}), 400)
        self.assertJsonError(self.call(gw, "POST", "keys", free,
                                       {"name": "x", "tier": "anonymous"}), 400)
        # a lower tier is fine, and gets the caller's quota cap
        key, _ = self.create(gw, token("erin", "pro"), "low", tier="free")
        self.assertEqual(key["tier"], "free")
        key, _ = self.create(gw, free, "mine")
        self.assertEqual(key["tier"], "free")
        # quotas: no higher than the caller's own
        r = self.call(gw, "POST", "keys", free, {"name": "q", "quotas": {"daily": 5000}})
        self.assertJsonError(r, 403)
        self.assertIn("daily quota", r.json()["message"])
        key, _ = self.create(gw, free, "q", quotas={"daily": 10})
        self.assertEqual(key["quota"]["daily"], 10)
        # a caller whose tier has a quota, asking for a tier without one: capped to its own
        key, _ = self.create(gw, token("erin", "pro"), "ent-capped")
        self.assertEqual(key["tier"], "pro")
        # a token without a tier cannot create keys
        r = self.call(gw, "POST", "keys", token("nobody"), {"name": "x"})
        self.assertJsonError(r, 403)

    def test_owner_cap_is_409(self):
        gw = self.start_gateway(dev_config(self.up, developer={"max_keys": 3}))
        alice = token("alice", "pro")
        keys = [self.create(gw, alice, "k%d" % i)[0] for i in range(3)]
        r = self.call(gw, "POST", "keys", alice, {"name": "one-too-many"})
        self.assertJsonError(r, 409)
        # another owner is not held to alice's count
        self.create(gw, token("bob", "pro"), "b")
        # revoking one frees a place
        self.assertStatus(self.call(gw, "DELETE", "keys/" + keys[0]["id"], alice), 200)
        self.create(gw, alice, "k3")

    def test_bodies_are_bounded_and_strict(self):
        gw = self.start_gateway(dev_config(self.up))
        alice = token("alice", "pro")
        r = self.call(gw, "POST", "keys", alice, {"name": "x", "owner": "mallory"})
        self.assertJsonError(r, 400)
        self.assertIn("unknown field", r.json()["message"])
        for body in ('{"name": "x"', "[]", '{"name": ""}', '{"name": 5}', '{}',
                     '{"name": "x", "quotas": {"daily": -1}}',
                     '{"name": "x", "quotas": {"weekly": 5}}',
                     '{"name": "x", "name": "y"}'):
            self.assertJsonError(self.call(gw, "POST", "keys", alice, body), 400)
        r = self.call(gw, "POST", "keys", alice, json.dumps({"name": "x" * 5000}))
        self.assertJsonError(r, 413)
        r = self.call(gw, "POST", "keys/k_x/rotate", alice, {"grace": "30d"})
        self.assertJsonError(r, 400)
        self.assertJsonError(self.call(gw, "PUT", "keys", alice, {}), 405)
        self.assertJsonError(self.call(gw, "GET", "nothing-here", alice), 404)
        self.assertJsonError(self.call(gw, "GET", "usage?identity=sub:bob", alice), 400)
        self.assertEqual(self.call(gw, "GET", "keys", alice).json()["count"], 0)


class UsageAndAudit(DeveloperTestCase):
    def test_created_key_usage_shows_in_developer_usage(self):
        gw = self.start_gateway(dev_config(self.up))
        alice, bob = token("alice", "pro"), token("bob", "pro")
        key, secret = self.create(gw, alice)
        bkey, bsecret = self.create(gw, bob)
        for _ in range(3):
            self.assertStatus(gw.request("GET", "/echo/x", headers={"X-API-Key": secret}), 200)
        self.assertStatus(gw.request("GET", "/echo/y", headers={"X-API-Key": bsecret}), 200)

        def totals(jwt, query=""):
            r = self.call(gw, "GET", "usage" + query, jwt)
            self.assertStatus(r, 200, r.body)
            return r.json()
        self.assertTrue(wait_for(lambda: totals(alice)["totals"]["requests"] == 3, timeout=5),
                        totals(alice))
        doc = totals(alice)
        self.assertEqual({row["key_id"] for row in doc["rows"]}, {key["id"]})
        self.assertEqual(doc["granularity"], "day")
        self.assertEqual(totals(alice, "?key=" + key["id"])["totals"]["requests"], 3)
        self.assertTrue(wait_for(lambda: totals(bob)["totals"]["requests"] == 1, timeout=5))
        # bob's key through alice: not hers
        self.assertJsonError(self.call(gw, "GET", "usage?key=" + bkey["id"], alice), 404)
        # a developer without keys sees nothing, not everyone's usage
        self.assertEqual(totals(token("nokeys", "pro"))["count"], 0)

    def test_audit_lines_and_events_name_the_developer(self):
        gw = self.start_gateway(dev_config(self.up))
        alice = token("alice", "pro")
        key, secret = self.create(gw, alice)
        self.call(gw, "POST", "keys/%s/rotate" % key["id"], alice, {})
        self.call(gw, "DELETE", "keys/" + key["id"], alice)
        self.call(gw, "DELETE", "keys/" + key["id"], token("bob", "pro"))
        path = os.path.join(gw.dir, "audit.log")
        self.assertTrue(wait_for(lambda: len(read_lines(path)) >= 4), read_lines(path))
        lines = [l for l in read_lines(path) if l["actor"].startswith("developer:")]
        got = [(l["actor"], l["action"], l["target"], l["result"]) for l in lines]
        self.assertEqual(got, [
            ("developer:alice", "key.create", key["id"], "ok"),
            ("developer:alice", "key.rotate", key["id"], "ok"),
            ("developer:alice", "key.revoke", key["id"], "ok"),
            ("developer:bob", "key.revoke", key["id"], "404 Not Found"),
        ])
        text = open(path).read()
        self.assertNotIn(secret, text)


class Page(DeveloperTestCase):
    def test_page_and_script_with_csp(self):
        gw = self.start_gateway(dev_config(self.up))
        r = gw.request("GET", "/developer/")
        self.assertStatus(r, 200)
        self.assertTrue(r.header("Content-Type").startswith("text/html"))
        csp = r.header("Content-Security-Policy")
        self.assertIn("default-src 'self'", csp)
        self.assertNotIn("unsafe-inline", csp)
        html = r.body.decode()
        self.assertIn('<script type="module" src="/developer/app.js"></script>', html)
        # no inline script: every <script> has a src and no body
        self.assertEqual(html.count("<script"), html.count('<script type="module" src='))
        self.assertNotIn("style=", html)
        r = gw.request("GET", "/developer/app.js")
        self.assertStatus(r, 200)
        self.assertTrue(r.header("Content-Type").startswith("text/javascript"))
        self.assertIn("default-src 'self'", r.header("Content-Security-Policy"))
        js = r.body.decode()
        self.assertIn("sessionStorage", js)
        self.assertNotIn("innerHTML", js)
        self.assertEqual(self.up.stats()["requests"], 0)
