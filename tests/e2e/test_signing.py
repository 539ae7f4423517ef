"""Request signing (SPEC 7.2), as a client would meet it: keys with a signing
secret from the admin API and the CLI, signed requests through a real gateway
to a real upstream, every refusal a 401 with its reason, the replay cache in
memory and shared by two gateways through Redis, and the example clients of
examples/signing/ run against a live gateway."""

import glob
import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time

from harness import E2ETestCase, make_config, sluice_bin, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "signing")
ENC_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
TIERS = {"anonymous": {"limits": ["1000/h"]}, "pro": {"limits": ["10000/h"]}}


def canonical(method, path, query, ts, nonce, body):
    parts = sorted(query.encode().split(b"&")) if query else []
    return b"\n".join([method.encode(), path.encode(), b"&".join(parts), str(ts).encode(),
                       nonce.encode(), hashlib.sha256(body).hexdigest().encode()])


def sign(key_id, secret_hex, method, target, body=b"", ts=None, nonce=None):
    path, _, query = target.partition("?")
    ts = int(time.time()) if ts is None else ts
    nonce = nonce or secrets.token_hex(16)
    mac = hmac.new(bytes.fromhex(secret_hex), canonical(method, path, query, ts, nonce, body),
                   hashlib.sha256).hexdigest()
    return {"X-Sluice-Key": key_id, "X-Sluice-Timestamp": str(ts), "X-Sluice-Nonce": nonce,
            "X-Sluice-Signature": "v1=" + mac}


class SigningTestCase(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        self.data_dir = tempfile.mkdtemp(prefix="sluice-sig-")
        self.addCleanup(shutil.rmtree, self.data_dir, True)

    def config(self, store=None, signing=None, server=None):
        cfg = make_config({"app": self.up}, server=server, routes=[
            {"prefix": "/echo/s/", "signing": signing or {"required": True, "skew": "60s"}},
            {"prefix": "/"},
        ])
        cfg["tiers"] = TIERS
        cfg["store"] = {"data_dir": self.data_dir, "encryption_key": ENC_KEY}
        cfg["store"].update(store or {})
        return cfg

    def create_key(self, gw, signing=True):
        r = gw.admin_request("POST", "/keys", body=json.dumps({"tier": "pro",
                                                              "signing": signing}).encode())
        self.assertEqual(r.status, 201, r.body)
        doc = r.json()
        return doc["key"]["id"], doc.get("signing_secret"), doc

    def upstream_requests(self):
        return self.up.stats()["requests"]

    def refused(self, gw, method, target, headers, reason, body=None, status=401):
        before = self.upstream_requests()
        r = gw.request(method, target, body=body, headers=headers)
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.json()["message"], reason, r.body)
        self.assertEqual(self.upstream_requests(), before, "the upstream saw a refused request")
        return r


class TestSigning(SigningTestCase):
    def test_signed_get_post_and_replay(self):
        gw = self.start_gateway(self.config())
        key, secret, doc = self.create_key(gw)
        self.assertRegex(secret, r"^[0-9a-f]{64}$")
        self.assertTrue(doc["key"]["signing"])

        target = "/echo/s/e?b=2&a=1&a=0"
        h = sign(key, secret, "GET", target)
        r = gw.request("GET", target, headers=h)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["path"], "/echo/s/e")

        body = os.urandom(300 << 10)  # past the memory buffer of small configs too
        hp = sign(key, secret, "POST", "/echo/s/e", body)
        r = gw.request("POST", "/echo/s/e", body=body, headers=hp)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["body_sha256"], hashlib.sha256(body).hexdigest())
        self.assertEqual(r.json()["body_len"], len(body))

        # The same request again: its nonce was seen.
        self.refused(gw, "GET", target, h, "nonce already used")
        self.refused(gw, "POST", "/echo/s/e", hp, "nonce already used", body=body)

        # An unsigned route is left alone.
        self.assertEqual(gw.request("GET", "/echo/open").status, 200)
        m = gw.admin_request("GET", "/metrics").body.decode()
        self.assertIn('sluice_signing_requests_total{result="ok"} 2', m)
        self.assertIn('sluice_signing_requests_total{result="replay"} 2', m)

    def test_refusals_each_with_its_reason(self):
        gw = self.start_gateway(self.config())
        key, secret, _ = self.create_key(gw)
        plain_key, none, _ = self.create_key(gw, signing=False)
        self.assertIsNone(none)
        t = "/echo/s/x"
        self.refused(gw, "GET", t, {}, "signature required")
        stale = sign(key, secret, "GET", t, ts=int(time.time()) - 3600)
        self.refused(gw, "GET", t, stale, "timestamp outside the allowed skew")
        future = sign(key, secret, "GET", t, ts=int(time.time()) + 3600)
        self.refused(gw, "GET", t, future, "timestamp outside the allowed skew")
        body = b'{"amount": 10}'
        h = sign(key, secret, "POST", t, body)
        self.refused(gw, "POST", t, h, "bad signature", body=b'{"amount": 99}')
        self.refused(gw, "GET", t, sign(key, "11" * 32, "GET", t), "bad signature")
        self.refused(gw, "GET", t + "?a=1", sign(key, secret, "GET", t), "bad signature")
        self.refused(gw, "DELETE", t, sign(key, secret, "GET", t), "bad signature")
        self.refused(gw, "GET", t, sign("key_0000000000000000", secret, "GET", t),
                     "unknown signing key")
        self.refused(gw, "GET", t, sign(plain_key, secret, "GET", t),
                     "this key has no signing secret")
        bad = sign(key, secret, "GET", t)
        bad["X-Sluice-Signature"] = "v2=" + "0" * 64
        self.refused(gw, "GET", t, bad,
                     "malformed signature header: X-Sluice-Signature is not v1=<64 hex digits>")
        short = sign(key, secret, "GET", t, nonce="abc")
        self.refused(gw, "GET", t, short, "malformed signature header: X-Sluice-Nonce is not 8 "
                     "to 128 printable characters without blanks")
        missing = sign(key, secret, "GET", t)
        del missing["X-Sluice-Timestamp"]
        self.refused(gw, "GET", t, missing,
                     "malformed signature header: X-Sluice-Timestamp is missing")
        # A revoked key no longer signs.
        self.assertEqual(gw.admin_request("DELETE", "/keys/" + key).status, 200)
        self.refused(gw, "GET", t, sign(key, secret, "GET", t), "unknown signing key")

    def test_signed_request_identifies_the_key(self):
        cfg = self.config()
        cfg["routes"][0]["auth"] = "required"
        gw = self.start_gateway(cfg)
        key, secret, _ = self.create_key(gw)
        r = gw.request("GET", "/echo/s/who", headers=sign(key, secret, "GET", "/echo/s/who"))
        self.assertEqual(r.status, 200, r.body)
        # The access log names the key's prefix, as for an API key.
        keys = gw.admin_request("GET", "/keys/" + key).json()
        wait_for(lambda: keys["prefix"] in gw.stdout_text() + gw.stderr_text())

    def test_secret_shown_once_never_stored_or_logged_in_clear(self):
        gw = self.start_gateway(self.config())
        key, secret, _ = self.create_key(gw)
        listing = gw.admin_request("GET", "/keys").body.decode()
        self.assertIn('"signing": true', listing)
        self.assertNotIn(secret, listing)
        one = gw.admin_request("GET", "/keys/" + key).body.decode()
        self.assertNotIn(secret, one)
        self.assertNotIn("signing_secret", one)
        self.assertEqual(gw.request("GET", "/echo/s/a",
                                    headers=sign(key, secret, "GET", "/echo/s/a")).status, 200)
        gw.stop()
        raw = bytes.fromhex(secret)
        files = glob.glob(os.path.join(self.data_dir, "**"), recursive=True)
        self.assertTrue(any(f.endswith("sluice.db") for f in files), files)
        for f in files:
            if os.path.isfile(f):
                data = open(f, "rb").read()
                self.assertNotIn(secret.encode(), data, f)
                self.assertNotIn(raw, data, f)
        self.assertNotIn(secret, gw.stdout_text() + gw.stderr_text())

    def test_cli_create_and_update(self):
        gw = self.start_gateway(self.config())
        p = subprocess.run([sluice_bin(), "keys", "create", "-c", gw.config_path, "--tier", "pro",
                            "--signing", "--json"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = json.loads(p.stdout)
        key, secret = doc["key"]["id"], doc["signing_secret"]
        self.assertRegex(secret, r"^[0-9a-f]{64}$")
        self.assertTrue(doc["key"]["signing"])

        def signed_ok():
            h = sign(key, secret, "GET", "/echo/s/cli")
            return gw.request("GET", "/echo/s/cli", headers=h).status == 200
        wait_for(signed_ok, timeout=10)

        # update --signing: a new secret, the old one stops.
        p = subprocess.run([sluice_bin(), "keys", "update", key, "-c", gw.config_path,
                            "--signing"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        line = [l for l in p.stdout.splitlines() if l.startswith("signing secret:")]
        self.assertEqual(len(line), 1, p.stdout)
        new = line[0].split()[-1]
        self.assertNotEqual(new, secret)

        def old_refused():
            h = sign(key, secret, "GET", "/echo/s/cli")
            return gw.request("GET", "/echo/s/cli", headers=h).status == 401
        wait_for(old_refused, timeout=10)
        h = sign(key, new, "GET", "/echo/s/cli")
        self.assertEqual(gw.request("GET", "/echo/s/cli", headers=h).status, 200)

        p = subprocess.run([sluice_bin(), "keys", "update", key, "-c", gw.config_path,
                            "--no-signing", "--json"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertFalse(json.loads(p.stdout)["signing"])

        # Without store.encryption_key the CLI says why.
        cfg = self.config()
        del cfg["store"]["encryption_key"]
        cfg["routes"] = [{"prefix": "/"}]
        path = os.path.join(self.data_dir, "plain.yaml")
        gw.write_config(cfg)
        p = subprocess.run([sluice_bin(), "keys", "create", "-c", gw.config_path, "--tier", "pro",
                            "--signing"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("--signing needs store.encryption_key", p.stderr)
        self.assertFalse(os.path.exists(path))

    def test_admin_signing_needs_encryption_key(self):
        cfg = self.config()
        del cfg["store"]["encryption_key"]
        cfg["routes"] = [{"prefix": "/"}]
        gw = self.start_gateway(cfg)
        r = gw.admin_request("POST", "/keys", body=b'{"tier": "pro", "signing": true}')
        self.assertEqual(r.status, 400, r.body)
        self.assertIn("signing needs store.encryption_key", r.json()["message"])
        r = gw.admin_request("POST", "/keys", body=b'{"tier": "pro", "signing": "yes"}')
        self.assertEqual(r.status, 400, r.body)

    def test_config_errors(self):
        cfg = self.config()
        del cfg["store"]["encryption_key"]
        gw = self.start_gateway(cfg, wait=False)
        self.assertEqual(gw.wait_exit(), 2)
        err = gw.stderr_text()
        self.assertRegex(err, r"\.yaml:\d+: routes\[0\]\.signing: signing needs "
                              r"store\.encryption_key")
        for bad, want in (({"skew": "0s"}, "skew"), ({"skew": "2h"}, "skew"),
                          ({"required": "maybe"}, "required")):
            cfg = self.config(signing=bad)
            code, out = self.start_gateway(cfg, wait=False).check()
            self.assertEqual(code, 2, out)
            self.assertRegex(out, r"\.yaml:\d+: routes\[0\]\.signing\.%s" % want)
        cfg = self.config(store={"encryption_key": "abcd"})
        code, out = self.start_gateway(cfg, wait=False).check()
        self.assertEqual(code, 2, out)
        self.assertRegex(out, r"\.yaml:\d+: store\.encryption_key")

    def test_oversize_signature_header_is_431(self):
        gw = self.start_gateway(self.config(server={"max_header_bytes": "1k"}))
        key, secret, _ = self.create_key(gw)
        h = sign(key, secret, "GET", "/echo/s/x")
        h["X-Sluice-Signature"] = "v1=" + "a" * 4096
        r = gw.request("GET", "/echo/s/x", headers=h)
        self.assertEqual(r.status, 431, r.body)

    def test_optional_signing(self):
        gw = self.start_gateway(self.config(signing={"required": False}))
        key, secret, _ = self.create_key(gw)
        self.assertEqual(gw.request("GET", "/echo/s/x").status, 200)
        self.assertEqual(gw.request("GET", "/echo/s/x",
                                    headers=sign(key, secret, "GET", "/echo/s/x")).status, 200)
        self.refused(gw, "GET", "/echo/s/x", sign(key, "22" * 32, "GET", "/echo/s/x"),
                     "bad signature")


class TestSigningRedis(SigningTestCase):
    def test_replay_refused_by_a_second_gateway(self):
        redis = self.start_redis()
        store = {"backend": "redis", "redis": {"url": redis.url}}
        gw1 = self.start_gateway(self.config(store=store))
        gw2 = self.start_gateway(self.config(store=store))
        key, secret, _ = self.create_key(gw1)
        body = b"transfer=100"

        def known_to_gw2():
            h = sign(key, secret, "GET", "/echo/s/probe")
            return gw2.request("GET", "/echo/s/probe", headers=h).status == 200
        wait_for(known_to_gw2, timeout=10)

        h = sign(key, secret, "POST", "/echo/s/pay", body)
        r = gw1.request("POST", "/echo/s/pay", body=body, headers=h)
        self.assertEqual(r.status, 200, r.body)
        self.refused(gw2, "POST", "/echo/s/pay", h, "nonce already used", body=body)
        self.refused(gw1, "POST", "/echo/s/pay", h, "nonce already used", body=body)
        nonce_keys = redis.command("KEYS", "*n:{%s}:*" % key)
        self.assertIn(h["X-Sluice-Nonce"], " ".join(k.decode() if isinstance(k, bytes) else k
                                                     for k in nonce_keys))


class TestSigningExamples(SigningTestCase):
    """The clients of examples/signing/ (docs/protection.md) against a live gateway."""

    def run_example(self, argv, key, secret):
        env = dict(os.environ, SLUICE_KEY=key, SLUICE_SIGNING_SECRET=secret)
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env,
                              cwd=EXAMPLES)

    def check_example(self, cmd):
        gw = self.start_gateway(self.config())
        key, secret, _ = self.create_key(gw)
        base = "http://127.0.0.1:%d" % gw.port
        p = self.run_example(cmd + ["GET", base + "/echo/s/e?z=1&a=b%20c&a=a"], key, secret)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(json.loads(p.stdout)["query"], "z=1&a=b%20c&a=a")
        p = self.run_example(cmd + ["POST", base + "/echo/s/e", '{"amount": 10}'], key, secret)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(json.loads(p.stdout)["body_sha256"],
                         hashlib.sha256(b'{"amount": 10}').hexdigest())
        p = self.run_example(cmd + ["GET", base + "/echo/s/e"], key, "33" * 32)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn("bad signature", p.stdout + p.stderr)

    def test_python(self):
        self.check_example(["python3", "sign.py"])

    def test_shell(self):
        for tool in ("curl", "openssl"):
            if not shutil.which(tool):
                self.skipTest(tool + " is not installed")
        self.check_example(["sh", "sign.sh"])

    def test_node(self):
        if not shutil.which("node"):
            self.skipTest("node is not installed")
        self.check_example(["node", "sign.js"])

    # Defined only where Go is installed (run.py counts a skipped test as not passed).
    if shutil.which("go"):
        def test_go(self):
            self.check_example(["go", "run", "sign.go"])
