"""API keys and JWT identity (SPEC 5), tried as a user would: the CLI and the
admin API write keys to the store, a running gateway honours them at once."""

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import tempfile
import time

from harness import (E2ETestCase, Gateway, RawConn, build_request, make_config, sluice_bin,
                     wait_for)

JWT_SECRET = "e2e-secret-0123456789-abcdefghijklmnop"

TIERS = {
    "anonymous": {"limits": ["100/h"]},
    "free": {"limits": ["1000/h"]},
    "premium": {"limits": ["5000/h"]},
    "pro": {"limits": ["10000/h"]},
    "staff": {"exempt": True},
}


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims, secret=JWT_SECRET, alg="HS256", header=None):
    head = {"alg": alg, "typ": "JWT"}
    head.update(header or {})
    signing = b64u(json.dumps(head).encode()) + "." + b64u(json.dumps(claims).encode())
    if alg == "none":
        return signing + "."
    sig = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64u(sig)


def claims(**kw):
    now = int(time.time())
    c = {"sub": "user-1", "iat": now, "exp": now + 300}
    c.update(kw)
    return c


def keys_config(up, routes=None, jwt=True, tiers=TIERS):
    cfg = make_config({"app": up}, routes=routes or [{"prefix": "/"}])
    cfg["tiers"] = tiers
    if jwt:
        cfg["identity"] = {"jwt": {"algorithms": ["HS256"], "secret": JWT_SECRET,
                                   "exempt_roles": ["staff"], "access_ttl": "5m"}}
    return cfg


class KeysTestCase(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def cli(self, gw, *args, check=True):
        p = subprocess.run([sluice_bin(), "keys"] + list(args) + ["-c", gw.config_path],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        if check:
            self.assertEqual(p.returncode, 0, "keys %s: %s" % (" ".join(args), p.stderr))
        return p

    def create(self, gw, *args):
        p = self.cli(gw, "create", "--json", *args)
        out = json.loads(p.stdout)
        self.assertTrue(out["secret"].startswith("sk_live_"), out)
        return out["key"]["id"], out["secret"]

    def get(self, gw, path="/echo/x", headers=None):
        return gw.request("GET", path, headers=headers or {})

    def assert_unauthorized(self, r):
        self.assertJsonError(r, 401)
        self.assertTrue(r.header("WWW-Authenticate", "").startswith("Bearer realm=\"sluice\""),
                        r.header("WWW-Authenticate"))


class ApiKeys(KeysTestCase):
    def test_pro_key_gets_pro_limits_by_header_and_by_bearer(self):
        gw = self.start_gateway(keys_config(self.up))
        kid, secret = self.create(gw, "--tier", "pro", "--name", "ci")
        r = self.get(gw, headers={"X-API-Key": secret})
        self.assertStatus(r, 200)
        self.assertEqual(r.header("X-RateLimit-Limit"), "10000")
        r = self.get(gw, headers={"Authorization": "Bearer " + secret})
        self.assertStatus(r, 200)
        self.assertEqual(r.header("X-RateLimit-Limit"), "10000")
        # both ways count against the one key
        self.assertEqual(r.header("X-RateLimit-Remaining"), "9998")
        # anonymous clients keep the anonymous tier
        self.assertEqual(self.get(gw).header("X-RateLimit-Limit"), "100")
        self.assertEqual(self.up.stats()["requests"], 3)
        # the access log names the key by its visible prefix, never by its secret
        prefix = secret[:len("sk_live_") + 4]

        def logged():
            return [l for l in gw.stdout_text().splitlines() if "/echo/x" in l]
        self.assertTrue(wait_for(lambda: len(logged()) == 3, timeout=3), logged())
        users = [l.split(" ")[2] for l in logged()]
        self.assertEqual(sorted(users), ["-", prefix, prefix])
        self.assertNotIn(secret, gw.stdout_text() + gw.stderr_text())

    def test_unknown_malformed_and_empty_keys_are_401(self):
        gw = self.start_gateway(keys_config(self.up))
        self.create(gw, "--tier", "pro")
        for headers in ({"X-API-Key": "sk_live_" + "A" * 43},
                        {"X-API-Key": "not-a-key"},
                        {"X-API-Key": ""},
                        {"Authorization": "Bearer sk_live_" + "B" * 43},
                        {"Authorization": "Bearer "}):
            r = self.get(gw, headers=headers)
            self.assert_unauthorized(r)
        self.assertEqual(self.up.stats()["requests"], 0, "a bad key reached the upstream")

    def test_secret_is_stored_nowhere_in_data_dir(self):
        gw = self.start_gateway(keys_config(self.up))
        kid, secret = self.create(gw, "--tier", "free")
        self.assertStatus(self.get(gw, headers={"X-API-Key": secret}), 200)
        # rotate too, so both secrets have been through the store
        p = self.cli(gw, "rotate", kid, "--grace", "1h", "--json")
        secret2 = json.loads(p.stdout)["secret"]
        gw.stop()
        data_dir = os.path.join(gw.dir, "var")
        files = [os.path.join(d, f) for d, _, fs in os.walk(data_dir) for f in fs]
        self.assertTrue(any(f.endswith("sluice.db") for f in files), files)
        for path in files:
            with open(path, "rb") as f:
                data = f.read()
            for s in (secret, secret2):
                self.assertNotIn(s.encode(), data, path)
                self.assertNotIn(s.split("_")[-1].encode(), data, path)

    def test_revoke_takes_effect_within_one_second(self):
        gw = self.start_gateway(keys_config(self.up))
        kid, secret = self.create(gw, "--tier", "pro")
        self.assertStatus(self.get(gw, headers={"X-API-Key": secret}), 200)
        self.cli(gw, "revoke", kid)
        t0 = time.monotonic()
        while self.get(gw, headers={"X-API-Key": secret}).status != 401:
            self.assertLess(time.monotonic() - t0, 1.0, "still accepted 1 s after revoke")
            time.sleep(0.02)
        self.assertLess(time.monotonic() - t0, 1.0)
        shown = json.loads(self.cli(gw, "show", kid, "--json").stdout)
        self.assertEqual(shown["state"], "revoked")

    def test_rotate_keeps_old_secret_for_grace_only(self):
        gw = self.start_gateway(keys_config(self.up))
        kid, old = self.create(gw, "--tier", "pro")
        p = self.cli(gw, "rotate", kid, "--grace", "2s", "--json")
        new = json.loads(p.stdout)["secret"]
        self.assertNotEqual(old, new)
        t_rotated = time.monotonic()
        self.assertTrue(wait_for(lambda: self.get(gw, headers={"X-API-Key": new}).status == 200,
                                 timeout=2), "the new secret is not accepted")
        self.assertStatus(self.get(gw, headers={"X-API-Key": old}), 200)
        self.assertTrue(wait_for(lambda: self.get(gw, headers={"X-API-Key": old}).status == 401,
                                 timeout=5), "the old secret outlived its grace")
        self.assertGreaterEqual(time.monotonic() - t_rotated, 1.5, "old secret ended early")
        self.assertStatus(self.get(gw, headers={"X-API-Key": new}), 200)

    def test_per_key_limit_overrides_the_tier(self):
        gw = self.start_gateway(keys_config(self.up))
        kid, secret = self.create(gw, "--tier", "pro", "--limit", "3/min")
        statuses = []
        for _ in range(4):
            r = self.get(gw, headers={"X-API-Key": secret})
            statuses.append(r.status)
            self.assertEqual(r.header("X-RateLimit-Limit"), "3")
        self.assertEqual(statuses, [200, 200, 200, 429])

    def test_expired_key_is_refused(self):
        gw = self.start_gateway(keys_config(self.up))
        p = self.cli(gw, "create", "--tier", "pro", "--expires", "1s", "--json")
        secret = json.loads(p.stdout)["secret"]
        self.assertStatus(self.get(gw, headers={"X-API-Key": secret}), 200)
        self.assertTrue(wait_for(lambda: self.get(gw, headers={"X-API-Key": secret}).status == 401,
                                 timeout=4), "the key outlived its expiry")

    def test_kill_9_right_after_create_loses_nothing(self):
        gw = self.start_gateway(keys_config(self.up))
        r = gw.admin_request("POST", "/keys", body=json.dumps({"tier": "pro"}).encode())
        self.assertStatus(r, 201)
        secret = r.json()["secret"]
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait()
        p = self.cli(gw, "list", "--json")
        self.assertEqual(len(json.loads(p.stdout)["keys"]), 1)
        kid, secret2 = self.create(gw, "--tier", "free")
        gw.start()
        self.assertEqual(self.get(gw, headers={"X-API-Key": secret}).header("X-RateLimit-Limit"),
                         "10000")
        self.assertEqual(self.get(gw, headers={"X-API-Key": secret2}).header("X-RateLimit-Limit"),
                         "1000")

    def test_cli_errors(self):
        gw = self.start_gateway(keys_config(self.up))
        self.assertEqual(self.cli(gw, "create", "--tier", "gold", check=False).returncode, 2)
        self.assertEqual(self.cli(gw, "create", "--tier", "anonymous", check=False).returncode, 2)
        self.assertEqual(self.cli(gw, "create", "--tier", "pro", "--limit", "lots",
                                  check=False).returncode, 2)
        p = self.cli(gw, "show", "key_0000000000000000", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("key_0000000000000000", p.stderr)
        self.assertEqual(self.cli(gw, "frobnicate", check=False).returncode, 2)
        # a key's own quotas: whole numbers from 1 to 2^53, stored with the key
        for bad in ("0", "-5", "none", "1e3", "9007199254740993"):
            p = self.cli(gw, "create", "--tier", "pro", "--quota-monthly", bad, check=False)
            self.assertEqual(p.returncode, 2, (bad, p.stderr))
        self.assertEqual(self.cli(gw, "list", "--json").stdout.count('"id"'), 0)
        p = self.cli(gw, "create", "--tier", "pro", "--quota-monthly", "100", "--quota-daily",
                     "5", "--json")
        self.assertEqual(json.loads(p.stdout)["key"]["quota"], {"monthly": 100, "daily": 5})
        kid = json.loads(p.stdout)["key"]["id"]
        shown = json.loads(self.cli(gw, "show", kid, "--json").stdout)
        self.assertEqual(shown["quota"], {"monthly": 100, "daily": 5})
        self.cli(gw, "revoke", kid)
        # the human output of create names the secret once
        p = self.cli(gw, "create", "--tier", "pro", "--name", "human")
        self.assertRegex(p.stdout, r"sk_live_[0-9A-Za-z]{43}")
        listing = self.cli(gw, "list").stdout
        self.assertIn("human", listing)
        self.assertNotRegex(listing, r"sk_live_[0-9A-Za-z]{43}")


class AdminKeys(KeysTestCase):
    def test_create_list_show_rotate_revoke(self):
        gw = self.start_gateway(keys_config(self.up))
        body = {"tier": "premium", "name": "partner", "owner": "acme", "scopes": ["orders:read"],
                "limits": ["50/min"], "quota_monthly": 100000}
        # a key's own quota is stored with it (null, or absent: the tier's)
        r = gw.admin_request("POST", "/keys", body=json.dumps(body).encode())
        self.assertStatus(r, 201)
        created = r.json()
        key, secret = created["key"], created["secret"]
        self.assertEqual((key["tier"], key["name"], key["owner"]), ("premium", "partner", "acme"))
        self.assertEqual(key["scopes"], ["orders:read"])
        self.assertEqual(key["quota"], {"monthly": 100000, "daily": None})
        self.assertEqual(gw.admin_request("GET", "/keys/" + key["id"]).json()["quota"],
                         {"monthly": 100000, "daily": None})
        self.assertTrue(secret.startswith(key["prefix"].rstrip(".…")), (secret, key["prefix"]))
        self.assertEqual(self.get(gw, headers={"X-API-Key": secret}).header("X-RateLimit-Limit"),
                         "50")
        listed = gw.admin_request("GET", "/keys").json()
        self.assertEqual([k["id"] for k in listed["keys"]], [key["id"]])
        self.assertNotIn(secret, json.dumps(listed))
        shown = gw.admin_request("GET", "/keys/" + key["id"]).json()
        self.assertEqual(shown["id"], key["id"])
        r = gw.admin_request("POST", "/keys/%s/rotate" % key["id"],
                             body=json.dumps({"grace": "1h"}).encode())
        self.assertStatus(r, 200)
        secret2 = r.json()["secret"]
        for s in (secret, secret2):
            self.assertStatus(self.get(gw, headers={"X-API-Key": s}), 200)
        r = gw.admin_request("DELETE", "/keys/" + key["id"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["state"], "revoked")
        for s in (secret, secret2):
            self.assert_unauthorized(self.get(gw, headers={"X-API-Key": s}))
        self.assertJsonError(gw.admin_request("GET", "/keys/key_ffffffffffffffff"), 404)

    def test_bad_requests(self):
        gw = self.start_gateway(keys_config(self.up))
        for body in (b"", b"[]", b"{}", b'{"tier": "gold"}', b'{"tier": "pro", "limits": ["x"]}',
                     b'{"tier": "pro", "colour": "red"}', b'{"tier": "pro", "expires": "soon"}',
                     b'{"tier": "pro", "quota_monthly": 0}', b'{"tier": "pro", "quota_daily": -1}',
                     b'{"tier": "pro", "quota_daily": 2.5}', b'{"tier": "pro", "quota_daily": "9"}',
                     b'{"tier": "pro", "quota_monthly": 9007199254740993}'):
            self.assertJsonError(gw.admin_request("POST", "/keys", body=body), 400)
        self.assertJsonError(gw.admin_request("GET", "/keys", token="wrong"), 401)
        self.assertEqual(gw.admin_request("GET", "/keys").json()["count"], 0)


class Jwt(KeysTestCase):
    def test_premium_jwt_gets_premium_limits(self):
        gw = self.start_gateway(keys_config(self.up))
        tok = make_jwt(claims(tier="premium"))
        r = self.get(gw, headers={"Authorization": "Bearer " + tok})
        self.assertStatus(r, 200)
        self.assertEqual(r.header("X-RateLimit-Limit"), "5000")

    def test_staff_jwt_is_exempt(self):
        gw = self.start_gateway(keys_config(self.up, tiers=dict(TIERS, anonymous={
            "limits": ["2/h"]}, free={"limits": ["2/h"]})))
        tok = make_jwt(claims(tier="free", roles=["staff"]))
        c = RawConn(gw.port)
        for i in range(10):
            r = c.request(build_request("GET", "/echo/x",
                                        headers={"Authorization": "Bearer " + tok}))
            self.assertStatus(r, 200, "request %d" % (i + 1))
            self.assertIsNone(r.header("X-RateLimit-Limit"))
        # the same tier without the role is limited
        tok2 = make_jwt(claims(tier="free", sub="user-2"))
        got = [self.get(gw, headers={"Authorization": "Bearer " + tok2}).status for _ in range(3)]
        self.assertEqual(got, [200, 200, 429])

    def test_bad_tokens_are_401(self):
        gw = self.start_gateway(keys_config(self.up))
        now = int(time.time())
        bad = {
            "expired": make_jwt(claims(exp=now - 60)),
            "not yet valid": make_jwt(claims(nbf=now + 120)),
            "wrong secret": make_jwt(claims(), secret="another-secret-of-enough-length-000"),
            "alg none": make_jwt(claims(), alg="none"),
            "garbage": "abc.def.ghi",
        }
        for name, tok in bad.items():
            r = self.get(gw, headers={"Authorization": "Bearer " + tok})
            self.assert_unauthorized(r)
        # within the 30 s leeway an expired token still passes
        self.assertStatus(self.get(gw, headers={
            "Authorization": "Bearer " + make_jwt(claims(exp=now - 5))}), 200)
        self.assertEqual(self.up.stats()["requests"], 1)

    def test_without_identity_jwt_bearer_tokens_are_the_upstreams(self):
        gw = self.start_gateway(keys_config(self.up, jwt=False))
        for auth in ("Bearer " + make_jwt(claims(tier="pro")), "Bearer opaque-app-token",
                     "Basic dXNlcjpwYXNz"):
            r = self.get(gw, headers={"Authorization": auth})
            self.assertStatus(r, 200)
            # anonymous for sluice, passed on untouched
            self.assertEqual(r.header("X-RateLimit-Limit"), "100")
            self.assertEqual(r.json()["headers"]["authorization"], [auth])
        # an sk_ bearer is sluice's own format: unknown is 401 even so
        self.assert_unauthorized(self.get(gw, headers={"Authorization": "Bearer sk_live_" +
                                                       "C" * 43}))
        # and without a signing secret the token endpoints are the upstream's paths
        r = gw.request("POST", "/echo/../auth/token", body=b"")
        self.assertStatus(r, 404)
        self.assertEqual(r.header("X-Upstream"), "A")


class Scopes(KeysTestCase):
    def routes(self):
        return [{"prefix": "/echo/orders", "scopes": ["orders:read"]},
                {"prefix": "/echo/private", "auth": "required"},
                {"prefix": "/"}]

    def test_auth_required_and_scopes(self):
        gw = self.start_gateway(keys_config(self.up, routes=self.routes()))
        _, reader = self.create(gw, "--tier", "pro", "--scopes", "orders:read,profile")
        _, plain = self.create(gw, "--tier", "pro")
        self.assert_unauthorized(self.get(gw, "/echo/private"))
        self.assertStatus(self.get(gw, "/echo/private", {"X-API-Key": plain}), 200)
        self.assert_unauthorized(self.get(gw, "/echo/orders/1"))
        r = self.get(gw, "/echo/orders/1", {"X-API-Key": plain})
        self.assertJsonError(r, 403)
        self.assertIn('error="insufficient_scope"', r.header("WWW-Authenticate"))
        self.assertIn("orders:read", r.json()["message"])
        self.assertStatus(self.get(gw, "/echo/orders/1", {"X-API-Key": reader}), 200)
        # JWT scopes: a space-separated string or a list
        for scope in ("profile orders:read", ["orders:read"]):
            tok = make_jwt(claims(scope=scope))
            self.assertStatus(self.get(gw, "/echo/orders/1", {"Authorization": "Bearer " + tok}),
                              200)
        tok = make_jwt(claims(scope="profile"))
        self.assertJsonError(self.get(gw, "/echo/orders/1", {"Authorization": "Bearer " + tok}),
                             403)
        self.assertStatus(self.get(gw, "/echo/public"), 200)
        self.assert_unauthorized(self.get(gw, "/echo/public", {"X-API-Key": "sk_live_nope"}))
        metrics = gw.admin_request("GET", "/metrics").body.decode()
        # a 403 was identified first: api_key counts the plain key on both routes
        want = {"api_key": 3, "jwt": 3, "invalid": 1, "missing": 2, "forbidden": 2}
        for result, n in want.items():
            self.assertIn('sluice_auth_requests_total{result="%s"} %d\n' % (result, n), metrics)
        self.assertIn("sluice_api_keys 2\n", metrics)


class Tokens(KeysTestCase):
    def post(self, gw, path, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return gw.request("POST", path, body=data, headers=h)

    def test_exchange_refresh_and_reuse_detection(self):
        gw = self.start_gateway(keys_config(self.up))
        kid, secret = self.create(gw, "--tier", "pro", "--scopes", "orders:read")
        self.assert_unauthorized(self.post(gw, "/auth/token"))
        r = self.post(gw, "/auth/token", headers={"X-API-Key": secret})
        self.assertStatus(r, 200)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        t1 = r.json()
        self.assertEqual(t1["token_type"], "Bearer")
        self.assertEqual(t1["expires_in"], 300)
        # the access token identifies the key: its tier and its counters
        r = self.get(gw, headers={"Authorization": "Bearer " + t1["access_token"]})
        self.assertStatus(r, 200)
        self.assertEqual(r.header("X-RateLimit-Limit"), "10000")
        payload = json.loads(base64.urlsafe_b64decode(t1["access_token"].split(".")[1] + "=="))
        self.assertEqual((payload["sub"], payload["tier"], payload["scope"]),
                         (kid, "pro", "orders:read"))
        # refresh: a new pair; the old refresh token is spent
        r = self.post(gw, "/auth/refresh", {"refresh_token": t1["refresh_token"]})
        self.assertStatus(r, 200)
        t2 = r.json()
        self.assertNotEqual(t2["refresh_token"], t1["refresh_token"])
        self.assertStatus(self.get(gw, headers={"Authorization": "Bearer " + t2["access_token"]}),
                          200)
        # reuse of the spent one revokes the whole family, t2's refresh token included
        self.assert_unauthorized(self.post(gw, "/auth/refresh",
                                           {"refresh_token": t1["refresh_token"]}))
        self.assert_unauthorized(self.post(gw, "/auth/refresh",
                                           {"refresh_token": t2["refresh_token"]}))
        self.assertJsonError(self.post(gw, "/auth/refresh", {"nope": 1}), 400)
        # small bodies are read whole, with a bound: refresh 4 KiB, admin calls 64 KiB
        self.assertJsonError(self.post(gw, "/auth/refresh", {"refresh_token": "x" * 5000}), 413)
        r = gw.admin_request("POST", "/keys", body=json.dumps({"tier": "pro",
                                                               "name": "y" * 70000}).encode())
        self.assertJsonError(r, 413)
        self.assertEqual(self.up.stats()["requests"], 2, "token endpoints reached the upstream")

    def test_revoking_the_key_ends_its_access_tokens(self):
        gw = self.start_gateway(keys_config(self.up))
        kid, secret = self.create(gw, "--tier", "pro")
        tok = self.post(gw, "/auth/token", headers={"X-API-Key": secret}).json()
        self.assertStatus(self.get(gw, headers={"Authorization": "Bearer " + tok["access_token"]}),
                          200)
        self.cli(gw, "revoke", kid)
        self.assertTrue(wait_for(lambda: self.get(gw, headers={
            "Authorization": "Bearer " + tok["access_token"]}).status == 401, timeout=1.5),
            "the access token outlived its key")
        self.assert_unauthorized(self.post(gw, "/auth/refresh",
                                           {"refresh_token": tok["refresh_token"]}))


def rsa_jwk(key_pem_path, kid):
    """The public JWK of an RSA private key file, read with the openssl CLI."""
    out = subprocess.run(["openssl", "rsa", "-in", key_pem_path, "-noout", "-modulus"],
                         capture_output=True, text=True, check=True).stdout
    n = int(out.strip().split("=", 1)[1], 16)
    e = 65537

    def be(i):
        return i.to_bytes((i.bit_length() + 7) // 8, "big")
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64u(be(n)),
            "e": b64u(be(e))}


def rs256_jwt(key_pem_path, claims_, kid):
    head = {"alg": "RS256", "typ": "JWT", "kid": kid}
    signing = b64u(json.dumps(head).encode()) + "." + b64u(json.dumps(claims_).encode())
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_pem_path],
                         input=signing.encode(), capture_output=True, check=True).stdout
    return signing + "." + b64u(sig)


class Jwks(KeysTestCase):
    def test_rs256_from_a_jwks_file_and_key_rollover_on_reload(self):
        keys = {}
        for kid in ("k1", "k2"):
            p = os.path.join(self.tmp(), kid + ".pem")
            subprocess.run(["openssl", "genrsa", "-out", p, "2048"], capture_output=True,
                           check=True)
            keys[kid] = p
        cfg = keys_config(self.up)
        cfg["identity"] = {"jwt": {"algorithms": ["RS256"], "jwks_file": "jwks.json",
                                   "issuer": "https://id.example", "audience": "api"}}
        gw = Gateway(cfg)
        gw_dir = gw.dir
        self.addCleanup(self._finish_gateway, gw)
        with open(os.path.join(gw_dir, "jwks.json"), "w") as f:
            json.dump({"keys": [rsa_jwk(keys["k1"], "k1")]}, f)
        gw.start()
        good = claims(tier="pro", iss="https://id.example", aud=["web", "api"])
        r = self.get(gw, headers={"Authorization": "Bearer " + rs256_jwt(keys["k1"], good, "k1")})
        self.assertStatus(r, 200)
        self.assertEqual(r.header("X-RateLimit-Limit"), "10000")
        # wrong audience, unknown kid, and an HS256 token "signed" with the public key
        self.assert_unauthorized(self.get(gw, headers={"Authorization": "Bearer " + rs256_jwt(
            keys["k1"], dict(good, aud="other"), "k1")}))
        t2 = rs256_jwt(keys["k2"], good, "k2")
        self.assert_unauthorized(self.get(gw, headers={"Authorization": "Bearer " + t2}))
        pub = subprocess.run(["openssl", "rsa", "-in", keys["k1"], "-pubout"],
                             capture_output=True, text=True, check=True).stdout
        forged = make_jwt(good, secret=pub, header={"kid": "k1"})
        self.assert_unauthorized(self.get(gw, headers={"Authorization": "Bearer " + forged}))
        # the identity provider rolls its keys: the file changes, a reload reads it
        with open(os.path.join(gw_dir, "jwks.json"), "w") as f:
            json.dump({"keys": [rsa_jwk(keys["k1"], "k1"), rsa_jwk(keys["k2"], "k2")]}, f)
        self.assertStatus(gw.admin_request("POST", "/reload"), 200)
        self.assertStatus(self.get(gw, headers={"Authorization": "Bearer " + t2}), 200)

    def tmp(self):
        d = tempfile.mkdtemp(prefix="sluice-jwks-")
        self.addCleanup(subprocess.run, ["rm", "-rf", d])
        return d
