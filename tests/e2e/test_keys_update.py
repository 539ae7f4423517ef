"""Key upgrades (SPEC 6.2: "a tier or quota change applies from the next
request"): `sluice keys update` against a running gateway's store, PATCH
/keys/{id} on the admin API, its validation, and a two-gateway fleet on a
real Redis where a change made through one gateway reaches the other."""

import json
import subprocess
import time

from harness import E2ETestCase, make_config, sluice_bin, wait_for

# free runs out after two requests a minute; pro does not, and says 100.
TIERS = {
    "anonymous": {"limits": ["100/h"]},
    "free": {"limits": ["2/min"]},
    "pro": {"limits": ["100/min"]},
}
JWT_SECRET = "update-secret-0123456789-abcdefghijklm"
# Revocation must reach every gateway within one second (SPEC 5.1): an update
# takes the same path, and is held to the same bound.
PROPAGATION = 1.0


def config(up, store=None):
    cfg = make_config({"app": up}, routes=[{"prefix": "/"}])
    cfg["tiers"] = TIERS
    cfg["identity"] = {"jwt": {"algorithms": ["HS256"], "secret": JWT_SECRET}}
    if store:
        cfg["store"] = store
    return cfg


class KeyUpdateCase(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def cli(self, gw, *args, check=True):
        p = subprocess.run([sluice_bin(), "keys"] + list(args) + ["-c", gw.config_path],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        if check:
            self.assertEqual(p.returncode, 0, "keys %s: %s" % (" ".join(args), p.stderr))
        return p

    def create(self, gw, *args):
        out = json.loads(self.cli(gw, "create", "--json", *args).stdout)
        return out["key"]["id"], out["secret"]

    def patch(self, gw, kid, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return gw.admin_request("PATCH", "/keys/" + kid, body=data)

    def get(self, gw, secret):
        return gw.request("GET", "/echo/u", headers={"X-API-Key": secret})

    def exhaust_free(self, gw, secret, used=0):
        """Uses up the free tier's 2/min (<used> of them spent already): the
        next request is a 429."""
        statuses = [self.get(gw, secret).status for _ in range(3 - used)]
        self.assertEqual(statuses, [200] * (2 - used) + [429])
        r = self.get(gw, secret)
        self.assertEqual((r.status, r.header("X-RateLimit-Limit")), (429, "2"))

    def wait_pro(self, gw, secret, timeout=PROPAGATION):
        """Requests until one is served as pro; how long that took. Every
        request after it must be pro too (no flapping between keyrings)."""
        t0 = time.monotonic()
        while True:
            r = self.get(gw, secret)
            if r.status == 200 and r.header("X-RateLimit-Limit") == "100":
                break
            self.assertEqual((r.status, r.header("X-RateLimit-Limit")), (429, "2"))
            self.assertLess(time.monotonic() - t0, timeout, "the tier change did not arrive")
            time.sleep(0.02)
        took = time.monotonic() - t0
        for _ in range(3):
            r = self.get(gw, secret)
            self.assertEqual((r.status, r.header("X-RateLimit-Limit")), (200, "100"))
        return took


class CliUpdate(KeyUpdateCase):
    def test_tier_change_reaches_the_running_gateway(self):
        gw = self.start_gateway(config(self.up))
        kid, secret = self.create(gw, "--tier", "free", "--name", "ci")
        self.exhaust_free(gw, secret)
        p = self.cli(gw, "update", kid, "--tier", "pro", "--json")
        shown = json.loads(p.stdout)
        # --json prints the key as `keys show --json` does
        self.assertEqual(shown, json.loads(self.cli(gw, "show", kid, "--json").stdout))
        self.assertEqual((shown["id"], shown["tier"], shown["name"]), (kid, "pro", "ci"))
        self.assertLess(self.wait_pro(gw, secret), PROPAGATION)
        # and back: free again, on a fresh counter of its own (two more pass)
        self.cli(gw, "update", kid, "--tier", "free")
        self.assertTrue(wait_for(lambda: self.get(gw, secret).header("X-RateLimit-Limit") == "2",
                                 timeout=PROPAGATION))

    def test_limits_and_quotas(self):
        gw = self.start_gateway(config(self.up))
        kid, secret = self.create(gw, "--tier", "pro", "--quota-monthly", "1000")
        self.cli(gw, "update", kid, "--limit", "3/min", "--quota-daily", "50",
                 "--quota-monthly", "none", "--owner", "acme", "--scopes", "a,b")
        self.assertTrue(wait_for(lambda: self.get(gw, secret).header("X-RateLimit-Limit") == "3",
                                 timeout=PROPAGATION))
        shown = json.loads(self.cli(gw, "show", kid, "--json").stdout)
        self.assertEqual(shown["quota"], {"monthly": None, "daily": 50})
        self.assertEqual((shown["owner"], shown["scopes"], shown["limits"]),
                         ("acme", ["a", "b"], ["3/min"]))
        # --limit none: the tier's limits again; fields not named stay
        self.cli(gw, "update", kid, "--limit", "none")
        self.assertTrue(wait_for(
            lambda: self.get(gw, secret).header("X-RateLimit-Limit") == "100",
            timeout=PROPAGATION))
        shown = json.loads(self.cli(gw, "show", kid, "--json").stdout)
        self.assertEqual((shown["limits"], shown["quota"]["daily"], shown["owner"]),
                         ([], 50, "acme"))

    def test_errors(self):
        gw = self.start_gateway(config(self.up))
        kid, _ = self.create(gw, "--tier", "free")
        before = self.cli(gw, "show", kid, "--json").stdout
        # unknown tier: exit 2, naming the tiers a key can take
        p = self.cli(gw, "update", kid, "--tier", "gold", check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("gold", p.stderr)
        self.assertIn("free, pro", p.stderr)
        for args in (["--tier", "anonymous"], ["--quota-daily", "0"], ["--quota-daily", "-5"],
                     ["--quota-monthly", "12x"], ["--quota-monthly", "9007199254740993"],
                     ["--limit", "lots"], ["--colour", "red"], []):
            p = self.cli(gw, "update", kid, *args, check=False)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
        self.assertEqual(self.cli(gw, "update", check=False).returncode, 2)  # no id
        # unknown id: exit 1, as show/rotate/revoke
        p = self.cli(gw, "update", "key_0000000000000000", "--tier", "pro", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("no key 'key_0000000000000000'", p.stderr)
        self.assertEqual(self.cli(gw, "show", kid, "--json").stdout, before)
        # a revoked key cannot change
        self.cli(gw, "revoke", kid)
        p = self.cli(gw, "update", kid, "--tier", "pro", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("revoked", p.stderr)
        # 2^53 is the largest quota
        kid2, _ = self.create(gw, "--tier", "free")
        p = self.cli(gw, "update", kid2, "--quota-daily", "9007199254740992", "--json")
        self.assertEqual(json.loads(p.stdout)["quota"]["daily"], 9007199254740992)


class PatchKeys(KeyUpdateCase):
    def test_tier_change_applies_from_the_next_request(self):
        gw = self.start_gateway(config(self.up))
        kid, secret = self.create(gw, "--tier", "free")
        token = gw.request("POST", "/auth/token", headers={"X-API-Key": secret}).json()
        bearer = {"Authorization": "Bearer " + token["access_token"]}
        self.exhaust_free(gw, secret, used=1)  # POST /auth/token took one
        r = self.patch(gw, kid, {"tier": "pro"})
        self.assertStatus(r, 200)
        self.assertEqual(r.json(), gw.admin_request("GET", "/keys/" + kid).json())
        self.assertEqual(r.json()["tier"], "pro")
        # the very next request, no waiting: this gateway answered after its keyring changed
        r = self.get(gw, secret)
        self.assertEqual((r.status, r.header("X-RateLimit-Limit")), (200, "100"))
        # access tokens of the key follow its current tier
        r = gw.request("GET", "/echo/t", headers=bearer)
        self.assertEqual((r.status, r.header("X-RateLimit-Limit")), (200, "100"))
        # per-key limits, then null: the tier's again
        self.assertStatus(self.patch(gw, kid, {"limits": ["1/min"]}), 200)
        statuses = [self.get(gw, secret).status for _ in range(2)]
        self.assertEqual(statuses, [200, 429])
        self.assertEqual(self.patch(gw, kid, {"limits": None}).json()["limits"], [])
        self.assertEqual(self.get(gw, secret).header("X-RateLimit-Limit"), "100")

    def test_quota_fields_show_in_get(self):
        gw = self.start_gateway(config(self.up))
        kid, _ = self.create(gw, "--tier", "pro")
        r = self.patch(gw, kid, {"quota_daily": 500, "quota_monthly": 10000, "name": "acme ci",
                                 "owner": "acme", "scopes": "orders:read, orders:write"})
        self.assertStatus(r, 200)
        shown = gw.admin_request("GET", "/keys/" + kid).json()
        self.assertEqual(shown["quota"], {"monthly": 10000, "daily": 500})
        self.assertEqual((shown["name"], shown["owner"], shown["scopes"]),
                         ("acme ci", "acme", ["orders:read", "orders:write"]))
        # null removes one quota (the tier's applies); the other stays
        r = self.patch(gw, kid, {"quota_daily": None})
        self.assertEqual(r.json()["quota"], {"monthly": 10000, "daily": None})
        self.assertEqual(gw.admin_request("GET", "/keys/" + kid).json()["quota"],
                         {"monthly": 10000, "daily": None})
        # the CLI reads the same record
        shown = json.loads(self.cli(gw, "show", kid, "--json").stdout)
        self.assertEqual(shown["quota"], {"monthly": 10000, "daily": None})
        self.assertEqual(self.patch(gw, kid, {"quota_monthly": 9007199254740992}).json()["quota"],
                         {"monthly": 9007199254740992, "daily": None})

    def test_bad_requests_are_400_and_change_nothing(self):
        gw = self.start_gateway(config(self.up))
        kid, _ = self.create(gw, "--tier", "free", "--name", "n")
        before = gw.admin_request("GET", "/keys/" + kid).json()
        cases = [
            (b"", "JSON object"), (b"not json", "JSON object"), (b"[]", "JSON object"),
            (b"{}", "at least one"),
            ({"colour": "red"}, "unknown field 'colour'"),
            ({"tier": "pro", "expires": "1d"}, "unknown field 'expires'"),
            ({"tier": "gold"}, "free, pro"), ({"tier": "anonymous"}, "anonymous"),
            ({"tier": None}, "tier"), ({"tier": 5}, "tier"),
            ({"name": 5}, "name"), ({"owner": ["a"]}, "owner"), ({"name": "x" * 129}, "name"),
            ({"scopes": [1]}, "scopes"), ({"scopes": 7}, "scopes"),
            ({"scopes": "a\"b"}, "scopes"),
            ({"limits": ["lots"]}, "limits"), ({"limits": {"a": 1}}, "limits"),
            ({"quota_daily": 0}, "quota_daily"), ({"quota_daily": -1}, "quota_daily"),
            ({"quota_daily": 1.5}, "quota_daily"), ({"quota_monthly": "100"}, "quota_monthly"),
            ({"quota_monthly": True}, "quota_monthly"),
            ({"quota_monthly": 9007199254740993}, "quota_monthly"),
            # one bad field spoils the whole body
            ({"tier": "pro", "quota_daily": 0}, "quota_daily"),
        ]
        for body, why in cases:
            r = self.patch(gw, kid, body)
            obj = self.assertJsonError(r, 400)
            self.assertIn(why, obj["message"], body)
        self.assertEqual(gw.admin_request("GET", "/keys/" + kid).json(), before)
        # unknown and revoked keys are 404, for a good body
        self.assertJsonError(self.patch(gw, "key_ffffffffffffffff", {"tier": "pro"}), 404)
        self.assertJsonError(self.patch(gw, "x" * 300, {"tier": "pro"}), 404)
        self.assertStatus(gw.admin_request("DELETE", "/keys/" + kid), 200)
        self.assertJsonError(self.patch(gw, kid, {"tier": "pro"}), 404)
        # bodies are bounded; the token is required; PATCH is not a /keys verb
        self.assertJsonError(self.patch(gw, kid, b'{"name": "' + b"x" * (70 << 10) + b'"}'), 413)
        r = gw.admin_request("PATCH", "/keys/" + kid, token="wrong",
                             body=json.dumps({"tier": "pro"}).encode())
        self.assertJsonError(r, 401)
        r = gw.admin_request("PATCH", "/keys", body=b'{"tier": "pro"}')
        self.assertJsonError(r, 405)
        self.assertNotIn("PATCH", r.header("Allow", ""))
        self.assertIn("PATCH", gw.admin_request("PUT", "/keys/" + kid).header("Allow", ""))


class FleetUpdate(KeyUpdateCase):
    """Two gateways on one Redis: a change through one is in force on the
    other within the fleet's propagation time (the revocation bound)."""

    def setUp(self):
        super().setUp()
        self.redis = self.start_redis()

    def fleet(self):
        store = {"backend": "redis", "redis": {"url": self.redis.url, "timeout": "50ms"}}
        return (self.start_gateway(config(self.up, store)),
                self.start_gateway(config(self.up, store)))

    def test_patch_on_a_reaches_b(self):
        a, b = self.fleet()
        kid, secret = self.create(a, "--tier", "free")
        # the fleet shares one counter: two requests anywhere use up free
        self.assertEqual([self.get(a, secret).status, self.get(b, secret).status], [200, 200])
        for gw in (a, b):
            self.assertEqual(self.get(gw, secret).status, 429)
        r = self.patch(a, kid, {"tier": "pro", "quota_monthly": 5000})
        self.assertStatus(r, 200)
        # a answered after its own keyring changed: its next request is pro
        r = self.get(a, secret)
        self.assertEqual((r.status, r.header("X-RateLimit-Limit")), (200, "100"))
        self.assertLess(self.wait_pro(b, secret), PROPAGATION)
        # the record is the fleet's: b and the CLI read what a wrote
        self.assertEqual(b.admin_request("GET", "/keys/" + kid).json()["quota"],
                         {"monthly": 5000, "daily": None})
        # the change was published like the other key changes
        self.assertEqual(self.redis.command("HGET", "sluice:key:" + kid, "tier"), "pro")

    def test_cli_update_reaches_both(self):
        a, b = self.fleet()
        kid, secret = self.create(a, "--tier", "free")
        self.exhaust_free(a, secret)
        self.cli(a, "update", kid, "--tier", "pro")
        for gw in (a, b):
            self.assertLess(self.wait_pro(gw, secret), PROPAGATION)
        # and a revoked key cannot be updated on the fleet either
        self.assertStatus(b.admin_request("DELETE", "/keys/" + kid), 200)
        self.assertJsonError(self.patch(a, kid, {"tier": "free"}), 404)
