"""The audit log (SPEC 7.5): admin actions from the admin API and the CLI as
chained JSON lines, `sluice audit verify` finding edited, deleted and reordered
lines, secrets kept out, one line per request with `requests: true`, rotation
by size, and a full disk that drops lines (counted) without slowing traffic."""

import base64
import hashlib
import hmac
import json
import os
import pwd
import signal
import subprocess
import threading

from harness import ADMIN_TOKEN, E2ETestCase, make_config, sluice_bin, wait_for

KEY_HEX = "6a" * 32
ORDER = ["time", "actor", "action", "target", "result", "client"]


def audit_config(up, audit=None, routes=None):
    cfg = make_config({"app": up}, routes=routes or [{"prefix": "/", "cache": {"ttl": "300s"}}])
    cfg["tiers"] = {"pro": {"limits": ["10000/h"]}}
    a = {"path": "audit.log", "key": KEY_HEX}
    a.update(audit or {})
    cfg["audit"] = a
    return cfg


def read_lines(path):
    try:
        with open(path, "rb") as f:
            return [json.loads(l) for l in f.read().splitlines()]
    except FileNotFoundError:
        return []


def docs_verify(key: bytes, paths):           # oldest first: audit.log.2, audit.log.1, audit.log
    prev, n = None, 0
    for path in paths:
        for line in open(path, "rb").read().split(b"\n")[:-1]:
            n += 1
            body, tail = line[:-74], line[-74:]   # 74 = len(',"mac":"') + 64 + len('"}')
            prev = prev or json.loads(body + b"}")["prev"].encode()
            mac = hmac.new(key, prev + body + b"}", hashlib.sha256).hexdigest().encode()
            assert tail == b',"mac":"' + mac + b'"}', "line %d" % n
            prev = mac


def python_verify(key, paths):
    """The ten lines of docs/protection.md, copied as they are there."""
    try:
        docs_verify(key, paths)
    except AssertionError as e:
        return str(e)
    return "ok: %d lines" % sum(open(p, "rb").read().count(b"\n") for p in paths)


class AuditTestCase(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def log(self, gw):
        return os.path.join(gw.dir, "audit.log")

    def lines(self, gw, n=None, pred=None):
        """The lines of <gw>'s audit log, once there are <n> of them (or <pred> holds)."""
        ok = wait_for(lambda: (len(read_lines(self.log(gw))) >= n if n is not None
                               else pred(read_lines(self.log(gw)))))
        got = read_lines(self.log(gw))
        self.assertTrue(ok, "audit log: %r" % got)
        return got

    def verify(self, gw, *files, config=True):
        files = files or (self.log(gw),)
        args = [sluice_bin(), "audit", "verify"] + list(files)
        args += ["-c", gw.config_path] if config else ["--key", KEY_HEX]
        return subprocess.run(args, capture_output=True, text=True, timeout=30)

    def cli(self, gw, *args):
        p = subprocess.run([sluice_bin()] + list(args) + ["-c", gw.config_path],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, "%s: %s" % (" ".join(args), p.stderr))
        return p

    def admin(self, gw, method, path, body=None, token=ADMIN_TOKEN):
        data = json.dumps(body).encode() if body is not None else None
        h = {"Content-Type": "application/json"} if data else {}
        return gw.admin_request(method, path, body=data, headers=h, token=token)

    def find(self, lines, action, **fields):
        for l in lines:
            if l["action"] == action and all(l.get(k) == v for k, v in fields.items()):
                return l
        self.fail("no %s line with %r in %s" % (action, fields, json.dumps(lines, indent=1)))

    def assertVerifies(self, gw, *files, count=None):
        p = self.verify(gw, *files)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertTrue(p.stdout.startswith("ok: "), p.stdout)
        if count is not None:
            self.assertEqual(p.stdout.strip(), "ok: %d lines" % count)
        return p


class AuditAdminTest(AuditTestCase):
    def test_admin_api_actions_give_lines_without_secrets(self):
        gw = self.start_gateway(audit_config(self.up))
        r = self.admin(gw, "POST", "/keys", {"tier": "pro", "name": "ci"})
        self.assertStatus(r, 201)
        kid, secret = r.json()["key"]["id"], r.json()["secret"]
        self.assertStatus(self.admin(gw, "PATCH", "/keys/" + kid, {"name": "ci-2"}), 200)
        r = self.admin(gw, "POST", "/keys/%s/rotate" % kid, {"grace": "1h"})
        self.assertStatus(r, 200)
        secret2 = r.json()["secret"]
        self.assertStatus(self.admin(gw, "DELETE", "/keys/" + kid), 200)
        self.assertStatus(self.admin(gw, "DELETE", "/keys/key_nosuchkey0000"), 404)
        self.assertStatus(self.admin(gw, "POST", "/cache/purge", {"prefix": "/a/"}), 200)
        self.assertStatus(self.admin(gw, "POST", "/reload"), 200)
        self.assertStatus(self.admin(gw, "GET", "/keys", token="wrong-token"), 401)

        lines = self.lines(gw, pred=lambda ls: any(l["action"] == "admin.auth" for l in ls))
        common = {"actor": "admin-api", "client": "127.0.0.1"}
        create = self.find(lines, "key.create", target=kid, result="ok", tier="pro", **common)
        self.find(lines, "key.update", target=kid, result="ok", **common)
        self.find(lines, "key.rotate", target=kid, result="ok", grace_ms=3600000, **common)
        self.find(lines, "key.revoke", target=kid, result="ok", **common)
        self.find(lines, "key.revoke", target="key_nosuchkey0000", result="404 Not Found")
        self.find(lines, "cache.purge", target="prefix:/a/", result="ok", **common)
        self.find(lines, "reload", target=gw.config_path, result="ok", **common)
        self.find(lines, "config.reloaded", actor="gateway", result="ok")
        self.find(lines, "admin.auth", target="/keys", result="401 Unauthorized", **common)
        self.assertEqual(lines[0]["action"], "audit.open")
        self.assertEqual(lines[0]["prev"], "0" * 64)
        # fixed key order: the six fields, the extras, then seq and mac
        self.assertEqual(list(create)[:6], ORDER)
        self.assertEqual(list(create)[-2:], ["seq", "mac"])
        self.assertEqual([l["seq"] for l in lines], list(range(1, len(lines) + 1)))

        with open(self.log(gw), "rb") as f:
            raw = f.read()
        for s in (secret, secret2, ADMIN_TOKEN, "wrong-token", KEY_HEX):
            self.assertNotIn(s.encode(), raw)
        self.assertVerifies(gw, count=len(lines))
        metrics = self.admin(gw, "GET", "/metrics").body.decode()
        self.assertRegex(metrics, r"\nsluice_audit_lines_total [1-9]\d*\n")
        self.assertIn('\nsluice_audit_dropped_total{reason="queue_full"} 0\n', metrics)
        self.assertEqual(python_verify(bytes.fromhex(KEY_HEX), [self.log(gw)]),
                         "ok: %d lines" % len(lines))
        # --key instead of the config; a wrong key fails at the first line
        self.assertEqual(self.verify(gw, config=False).returncode, 0)
        p = subprocess.run([sluice_bin(), "audit", "verify", self.log(gw), "--key", "6b" * 32],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("audit.log:1: edited", p.stderr)

    def test_access_changes_give_lines(self):
        gw = self.start_gateway(audit_config(self.up))
        r = self.admin(gw, "POST", "/access", {"list": "deny", "cidr": "203.0.113.0/24",
                                               "ttl": "1h", "note": "scraper \"x\""})
        self.assertStatus(r, 201)
        eid = r.json()["id"]
        self.assertStatus(self.admin(gw, "DELETE", "/access/%d" % eid), 204)
        self.assertStatus(self.admin(gw, "DELETE", "/access/%d" % eid), 404)
        lines = self.lines(gw, pred=lambda ls: sum(l["action"] == "access.delete"
                                                   for l in ls) >= 2)
        common = {"actor": "admin-api", "client": "127.0.0.1"}
        add = self.find(lines, "access.add", target="deny:203.0.113.0/24", result="ok",
                        id=eid, note='scraper "x"', **common)
        self.assertGreater(add["expires_ms"], 0)
        self.find(lines, "access.delete", target=str(eid), result="ok", **common)
        self.find(lines, "access.delete", target=str(eid), result="404 Not Found", **common)
        self.assertVerifies(gw, count=len(lines))

    def test_verify_as_spec_1_writes_it_takes_the_key_from_the_environment(self):
        gw = self.start_gateway(audit_config(self.up))
        self.assertStatus(self.admin(gw, "POST", "/reload"), 200)
        self.lines(gw, pred=lambda ls: any(l["action"] == "reload" for l in ls))
        env = {k: v for k, v in os.environ.items()
               if k not in ("SLUICE_AUDIT_KEY", "SLUICE_ENCRYPTION_KEY")}
        run = lambda extra: subprocess.run([sluice_bin(), "audit", "verify", self.log(gw)],
                                           capture_output=True, text=True, timeout=30,
                                           env=dict(env, **extra))
        p = run({"SLUICE_AUDIT_KEY": KEY_HEX})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith("ok: "), p.stdout)
        # base64 of the same 32 bytes, in the variable the config usually reads
        p = run({"SLUICE_ENCRYPTION_KEY": base64.b64encode(bytes.fromhex(KEY_HEX)).decode()})
        self.assertEqual(p.returncode, 0, p.stderr)
        p = run({"SLUICE_ENCRYPTION_KEY": "6b" * 32})
        self.assertEqual(p.returncode, 1)
        p = run({})
        self.assertEqual(p.returncode, 2)
        self.assertIn("SLUICE_AUDIT_KEY", p.stderr)

    def test_cli_key_actions_give_lines(self):
        gw = self.start_gateway(audit_config(self.up))
        out = json.loads(self.cli(gw, "keys", "create", "--tier", "pro", "--json").stdout)
        kid = out["key"]["id"]
        self.cli(gw, "keys", "update", kid, "--name", "renamed")
        self.cli(gw, "keys", "rotate", kid)
        self.cli(gw, "keys", "revoke", kid)
        lines = self.lines(gw, n=5)
        user = "cli:" + pwd.getpwuid(os.geteuid()).pw_name
        for action in ("key.create", "key.update", "key.rotate", "key.revoke"):
            self.find(lines, action, actor=user, client="local", target=kid, result="ok")
        with open(self.log(gw), "rb") as f:
            self.assertNotIn(out["secret"].encode(), f.read())
        self.assertVerifies(gw, count=5)

    def test_sighup_reload_gives_a_line(self):
        gw = self.start_gateway(audit_config(self.up))
        gw.signal(signal.SIGHUP)
        lines = self.lines(gw, pred=lambda ls: any(l["action"] == "config.reloaded" for l in ls))
        self.find(lines, "config.reloaded", actor="gateway", client="local",
                  target=gw.config_path)

    def test_no_key_is_a_config_error(self):
        cfg = audit_config(self.up)
        del cfg["audit"]["key"]
        gw = self.start_gateway(audit_config(self.up))
        gw.write_config(cfg)
        rc, out = gw.check()
        self.assertEqual(rc, 2, out)
        self.assertRegex(out, r"\.yaml:\d+: audit: needs audit.key or store.encryption_key")
        # store.encryption_key stands in for audit.key
        cfg["store"] = {"encryption_key": KEY_HEX}
        gw.write_config(cfg)
        self.assertEqual(gw.check()[0], 0)


class AuditChainTest(AuditTestCase):
    def test_cli_and_gateway_interleaved_keep_the_chain(self):
        gw = self.start_gateway(audit_config(self.up, {"requests": True}))
        stop = threading.Event()
        sent = [0]

        def traffic():
            while not stop.is_set():
                self.assertStatus(gw.request("GET", "/echo/r%d" % sent[0]), 200)
                sent[0] += 1

        t = threading.Thread(target=traffic)
        t.start()
        try:
            for _ in range(6):
                out = json.loads(self.cli(gw, "keys", "create", "--tier", "pro", "--json").stdout)
                self.cli(gw, "keys", "revoke", out["key"]["id"])
        finally:
            stop.set()
            t.join()
        gw.stop()  # SIGTERM drains the queue: every request has its line
        lines = read_lines(self.log(gw))
        # (the harness's readiness probes of /_sluice/health are requests too)
        echo = [l for l in lines if l["action"] == "request" and l["target"].startswith("/echo/")]
        self.assertEqual(len(echo), sent[0])
        self.assertEqual(sum(1 for l in lines if l["actor"].startswith("cli:")), 12)
        self.assertGreater(sent[0], 0)
        self.assertVerifies(gw, count=len(lines))

    def tampered(self, gw, edit):
        """Applies <edit> to the log's lines (a list of bytes) and runs verify."""
        with open(self.log(gw), "rb") as f:
            lines = f.read().split(b"\n")[:-1]
        edit(lines)
        with open(self.log(gw), "wb") as f:
            f.write(b"".join(l + b"\n" for l in lines))
        return self.verify(gw)

    def test_edited_deleted_reordered_lines_are_caught(self):
        gw = self.start_gateway(audit_config(self.up))
        for i in range(6):
            self.assertStatus(self.admin(gw, "POST", "/cache/purge", {"key": "/k%d" % i}), 200)
        self.lines(gw, n=7)
        gw.stop()
        with open(self.log(gw), "rb") as f:
            orig = f.read()
        self.assertVerifies(gw, count=7)

        def restore():
            with open(self.log(gw), "wb") as f:
                f.write(orig)

        p = self.tampered(gw, lambda ls: ls.__setitem__(3, ls[3].replace(b"/k2", b"/k9")))
        self.assertEqual(p.returncode, 1)
        self.assertIn("audit.log:4: edited", p.stderr)
        restore()
        p = self.tampered(gw, lambda ls: ls.pop(4))
        self.assertEqual(p.returncode, 1)
        self.assertIn("audit.log:5: 1 line(s) missing before this one", p.stderr)
        restore()
        p = self.tampered(gw, lambda ls: ls.insert(2, ls.pop(5)))
        self.assertEqual(p.returncode, 1)
        self.assertIn("audit.log:3: ", p.stderr)
        restore()
        p = self.tampered(gw, lambda ls: ls.pop())  # the last line deleted: the chain is fine
        self.assertEqual(p.returncode, 0)
        restore()
        with open(self.log(gw), "wb") as f:
            f.write(orig[:-30])
        p = self.verify(gw)
        self.assertEqual(p.returncode, 1)
        self.assertIn("audit.log:7: truncated", p.stderr)


class AuditRequestsTest(AuditTestCase):
    def test_request_lines(self):
        gw = self.start_gateway(audit_config(self.up, {"requests": True}))
        r = gw.request("GET", "/echo/1?token=hunter2-secret")
        self.assertStatus(r, 200)
        rid = r.header("X-Request-Id")
        self.assertStatus(gw.request("GET", "/echo/1?token=hunter2-secret"), 200)
        def echo(ls):
            return [l for l in ls if l["action"] == "request" and l["target"] == "/echo/1"]

        reqs = echo(self.lines(gw, pred=lambda ls: len(echo(ls)) >= 2))
        first = reqs[0]
        self.assertEqual(list(first)[:6], ORDER)
        self.assertEqual(first["actor"], "ip:127.0.0.1")
        self.assertEqual(first["target"], "/echo/1")  # never the query string
        self.assertEqual(first["result"], "200")
        self.assertEqual(first["client"], "127.0.0.1")
        self.assertEqual(first["method"], "GET")
        self.assertEqual(first["status"], 200)
        self.assertEqual(first["decision"], "none")
        self.assertEqual(first["cache"], "MISS")
        self.assertEqual(reqs[1]["cache"], "HIT")
        self.assertGreaterEqual(first["latency_ms"], 0)
        if rid:
            self.assertEqual(first["request_id"], rid)
        self.assertTrue(first["request_id"])
        with open(self.log(gw), "rb") as f:
            self.assertNotIn(b"hunter2", f.read())
        # admin calls are not requests
        self.assertStatus(self.admin(gw, "GET", "/health"), 200)
        self.assertVerifies(gw)

    def test_requests_off_by_default(self):
        gw = self.start_gateway(audit_config(self.up))
        self.assertStatus(gw.request("GET", "/echo/x"), 200)
        self.assertStatus(self.admin(gw, "POST", "/cache/purge", {"all": True}), 200)
        lines = self.lines(gw, pred=lambda ls: any(l["action"] == "cache.purge" for l in ls))
        self.assertFalse([l for l in lines if l["action"] == "request"])

    def test_rotation_keeps_files_and_verifies_across_them(self):
        gw = self.start_gateway(audit_config(self.up, {"requests": True, "max_size": "1k",
                                                       "keep": 3}))
        for i in range(60):
            self.assertStatus(gw.request("GET", "/echo/r%d" % i), 200)
        gw.stop()
        base = self.log(gw)
        for i in (1, 2, 3):
            self.assertTrue(os.path.exists("%s.%d" % (base, i)), os.listdir(gw.dir))
            self.assertLessEqual(os.path.getsize("%s.%d" % (base, i)), 1024)
        self.assertFalse(os.path.exists(base + ".4"))
        files = ["%s.%d" % (base, i) for i in (3, 2, 1)] + [base]
        self.assertVerifies(gw, *files)
        self.assertTrue(python_verify(bytes.fromhex(KEY_HEX), files).startswith("ok"))
        # a file left out in the middle is a chain break
        p = self.verify(gw, files[0], files[2], files[3])
        self.assertEqual(p.returncode, 1)
        self.assertIn("audit.log.1:1: chain break", p.stderr)

    def test_full_disk_drops_lines_and_keeps_serving(self):
        gw = self.start_gateway(audit_config(self.up, {"requests": True, "path": "/dev/full"}))
        for i in range(50):
            self.assertStatus(gw.request("GET", "/echo/r%d" % i), 200)

        def dropped():
            m = gw.admin_request("GET", "/metrics").body.decode()
            for line in m.splitlines():
                if line.startswith('sluice_audit_dropped_total{reason="write_error"}'):
                    return int(line.split()[-1])
            return 0

        self.assertTrue(wait_for(lambda: dropped() >= 50), dropped())
        self.assertStatus(gw.request("GET", "/echo/after"), 200)
        self.assertIn("\nsluice_audit_lines_total 0\n", gw.admin_request("GET", "/metrics")
                      .body.decode())
        self.assertIn("No space left on device", gw.stderr_text())
