"""Quota alerts (SPEC 6.3) and the admin event stream (SPEC 8, GET /events).

The request path that raises alerts lives on another branch, so these tests
reach alert delivery from the outside as a restart does: an alert a previous
run left in the outbox (the gateway's SQLite file) is POSTed, signed, to a
real webhook receiver (http.server on a free port), retried when the
receiver fails, and kept for the next start when it never answers. The
event stream is driven by key changes made through the admin API.
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time

from harness import (ADMIN_TOKEN, TIMEOUT, E2ETestCase, Gateway, free_port, make_config,
                     sluice_bin, wait_for)

SECRET = "whsec_e2e_0123456789abcdef"
TIERS = {"pro": {"limits": ["10000/h"]}}


def verify_signature(secret, header, body, tolerance=300):
    """What a receiver does (docs/alerts.md): recompute the HMAC over "<t>." + the
    raw body, compare in constant time, refuse a stale t."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    t = int(parts["t"])
    expected = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - t) <= tolerance


# The Node.js snippet of docs/alerts.md, as it is there.
NODE_VERIFY = r"""
const crypto = require("crypto");

function verifySluice(secret, header, rawBody, toleranceSeconds = 300) {
  const parts = Object.fromEntries(header.split(",").map((p) => p.split("=", 2)));
  const t = Number(parts.t);
  const expected = crypto.createHmac("sha256", secret)
    .update(`${t}.`).update(rawBody).digest("hex");
  const a = Buffer.from(expected), b = Buffer.from(parts.v1 || "");
  return a.length === b.length && crypto.timingSafeEqual(a, b) &&
    Math.abs(Date.now() / 1000 - t) <= toleranceSeconds;
}
"""


def node_verifies(secret, header, body):
    """The Node snippet's verdict on one delivery; None without node."""
    node = shutil.which("node")
    if not node:
        return None
    script = NODE_VERIFY + "process.stdout.write(String(verifySluice(%s, %s, Buffer.from(%s, 'base64'))));" % (
        json.dumps(secret), json.dumps(header), json.dumps(base64.b64encode(body).decode()))
    r = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30)
    return r.stdout == "true"


# ---------------------------------------------------------------------------
# A webhook receiver


class Receiver:
    """http.server on 127.0.0.1:<port>: records each POST (time, headers, raw body)
    and answers with the next status of <statuses> (the last one repeats)."""

    def __init__(self, statuses=(200,), port=0):
        self.statuses = list(statuses)
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.requests.append((time.monotonic(), self.path, dict(self.headers), body))
                    status = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.requests)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------
# A Server-Sent Events client on a raw socket


class EventStream:
    """GET /events on the admin port: the response head, then events as they come."""

    def __init__(self, port, token=ADMIN_TOKEN):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        auth = "Authorization: Bearer %s\r\n" % token if token else ""
        self.sock.sendall(("GET /events HTTP/1.1\r\nHost: admin\r\n%s\r\n" % auth).encode())
        self.buf = b""
        head = self._read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            if line:
                k, v = line.split(":", 1)
                self.headers[k.strip().lower()] = v.strip()
        self.text = ""  # the body, de-chunked
        self.ended = False  # the terminating chunk came

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data

    def _read_until(self, delim):
        while delim not in self.buf:
            self._fill()
        i = self.buf.index(delim) + len(delim)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_chunk(self):
        size = int(self._read_until(b"\r\n").strip(), 16)
        while len(self.buf) < size + 2:
            self._fill()
        data, self.buf = self.buf[:size], self.buf[size + 2:]
        if size == 0:
            self.ended = True
        self.text += data.decode()

    def next_event(self, timeout=TIMEOUT):
        """(type, data) of the next event; comments (": ping") are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            while "\n\n" in self.text:
                block, self.text = self.text.split("\n\n", 1)
                fields = [l.split(": ", 1) for l in block.split("\n") if not l.startswith(":")]
                if fields:
                    ev = dict(f for f in fields if f[0] == "event")
                    data = "\n".join(f[1] for f in fields if f[0] == "data")
                    return ev.get("event", "message"), data
            left = deadline - time.monotonic()
            if left <= 0 or self.ended:
                raise TimeoutError("no event; have %r" % self.text)
            self.sock.settimeout(left)
            self._read_chunk()

    def read_comment(self):
        while "\n\n" not in self.text:
            self._read_chunk()
        block, self.text = self.text.split("\n\n", 1)
        return block

    def close(self):
        self.sock.close()


def metric(gw, name):
    text = gw.admin_request("GET", "/metrics").body.decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


class Events(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        cfg = make_config({"app": self.up}, routes=[{"prefix": "/"}])
        cfg["tiers"] = TIERS
        self.gw = self.start_gateway(cfg)

    def stream(self, token=ADMIN_TOKEN):
        s = EventStream(self.gw.admin_port, token)
        self.addCleanup(s.close)
        return s

    def test_requires_the_admin_token(self):
        for token, headers in ((None, None), ("wrong", None),
                               (None, {"Authorization": "Basic " + ADMIN_TOKEN})):
            r = self.gw.admin_request("GET", "/events", token=token, headers=headers)
            self.assertJsonError(r, 401)
            self.assertEqual(r.header("WWW-Authenticate"), 'Bearer realm="sluice-admin"')
        self.assertEqual(self.stream(token=None).status, 401)
        self.assertJsonError(self.gw.admin_request("POST", "/events"), 405)

    def test_stream_head(self):
        s = self.stream()
        self.assertEqual(s.status, 200)
        self.assertEqual(s.headers.get("content-type"), "text/event-stream")
        self.assertEqual(s.headers.get("transfer-encoding"), "chunked")
        self.assertNotIn("content-length", s.headers)
        self.assertEqual(s.headers.get("cache-control"), "no-store")
        self.assertEqual(s.read_comment(), ": connected")
        self.assertFalse(s.ended)

    def test_key_changes_arrive_on_every_stream(self):
        a, b = self.stream(), self.stream()
        for s in (a, b):
            s.read_comment()
        r = self.gw.admin_request("POST", "/keys", body=json.dumps(
            {"tier": "pro", "name": "ci", "owner": "alice"}).encode())
        self.assertStatus(r, 201)
        created = r.json()
        kid, secret = created["key"]["id"], created["secret"]
        for s in (a, b):
            typ, data = s.next_event()
            self.assertEqual(typ, "key.created")
            ev = json.loads(data)
            self.assertEqual(ev["type"], "key.created")
            self.assertEqual(ev["key"]["id"], kid)
            self.assertEqual(ev["key"]["owner"], "alice")
            self.assertNotIn(secret, data)
            self.assertNotIn("secret", ev)
        self.assertStatus(self.gw.admin_request("POST", "/keys/%s/rotate" % kid), 200)
        typ, data = a.next_event()
        self.assertEqual((typ, json.loads(data)["key"]["id"]), ("key.rotated", kid))
        self.assertStatus(self.gw.admin_request("DELETE", "/keys/%s" % kid), 200)
        typ, data = a.next_event()
        self.assertEqual(typ, "key.revoked")
        self.assertEqual(json.loads(data)["key"]["state"], "revoked")
        # A read is not a change; a failed change is not an event.
        self.assertStatus(self.gw.admin_request("GET", "/keys/%s" % kid), 200)
        self.assertStatus(self.gw.admin_request("DELETE", "/keys/key_nope"), 404)
        self.assertRaises(TimeoutError, a.next_event, 0.5)

    def test_a_client_that_leaves_frees_its_stream(self):
        streams = [self.stream() for _ in range(3)]
        for s in streams:
            s.read_comment()
        self.assertEqual(metric(self.gw, "sluice_event_streams"), 3)
        for s in streams:
            s.close()
        self.assertTrue(wait_for(lambda: metric(self.gw, "sluice_event_streams") == 0),
                        "streams still counted after their clients left")
        # Events still flow to a new client.
        s = self.stream()
        s.read_comment()
        self.gw.admin_request("POST", "/keys", body=b'{"tier": "pro"}')
        self.assertEqual(s.next_event()[0], "key.created")

    def test_sigterm_ends_open_streams(self):
        s = self.stream()
        s.read_comment()
        t0 = time.monotonic()
        self.gw.signal(signal.SIGTERM)
        code = self.gw.wait_exit(timeout=8)
        self.assertEqual(code, 0, self.gw.describe())
        self.assertLess(time.monotonic() - t0, 8)
        self.assertRaises(TimeoutError, s.next_event, 2)
        self.assertTrue(s.ended, "the stream was cut, not ended")


# ---------------------------------------------------------------------------
# The webhook


def alert_body(alert_id):
    return json.dumps({"type": "quota.threshold", "identity": "key:k_e2e", "key_id": "k_e2e",
                       "owner": "alice", "quota": "monthly", "threshold": 80, "used": 80,
                       "limit": 100, "period_start": 1793577600, "period_end": 1796256000,
                       "id": alert_id})


def leave_in_outbox(gw, alert_id, body):
    """What a previous run of the gateway left undelivered in <data_dir>/sluice.db."""
    data_dir = os.path.join(gw.dir, "var")
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    db = sqlite3.connect(os.path.join(data_dir, "sluice.db"))
    db.execute("CREATE TABLE IF NOT EXISTS alert_outbox (id TEXT PRIMARY KEY, body TEXT NOT NULL,"
               " created_s INTEGER NOT NULL, next_s INTEGER NOT NULL,"
               " attempts INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID")
    now = int(time.time())
    db.execute("INSERT INTO alert_outbox VALUES (?, ?, ?, ?, 0)", (alert_id, body, now, now))
    db.commit()
    db.close()


def outbox_rows(gw):
    db = sqlite3.connect(os.path.join(gw.dir, "var", "sluice.db"))
    try:
        return db.execute("SELECT id, attempts FROM alert_outbox").fetchall()
    finally:
        db.close()


class AlertWebhook(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def config(self, webhook, alerts=None):
        cfg = make_config({"app": self.up}, routes=[{"prefix": "/"}])
        rows = {"thresholds": [80, 95, 100], "webhook": webhook, "secret": "${WEBHOOK_SECRET}"}
        rows.update(alerts or {})
        cfg["quota_alerts"] = rows
        return cfg

    @staticmethod
    def check(gw, env):
        """`sluice check` with <env> added to the environment: (exit code, output)."""
        e = dict(os.environ)
        e.pop("WEBHOOK_SECRET", None)
        e.update(env)
        r = subprocess.run([sluice_bin(), "check", "-c", gw.config_path], capture_output=True,
                           text=True, timeout=30, env=e)
        return r.returncode, r.stdout + r.stderr

    def gateway(self, cfg):
        gw = Gateway(cfg, env={"WEBHOOK_SECRET": SECRET})
        self.addCleanup(self._finish_gateway, gw)
        return gw

    def receiver(self, statuses=(200,), port=0):
        r = Receiver(statuses, port)
        self.addCleanup(r.stop)
        return r

    def test_config_is_checked(self):
        cases = (
            ({"webhook": "ftp://127.0.0.1/x"}, "quota_alerts: webhook: not an http:// or https:// URL"),
            ({"webhook": "http://127.0.0.1:99999/x"}, "the port must be a number 1..65535"),
            ({"webhook": "http://user:pw@hooks.example/x"}, "a user or password in the URL"),
            ({"secret": ""}, "quota_alerts.secret: must not be empty"),
            ({"secret": "short"}, "quota_alerts: secret: at least 16 characters"),
            ({"thresholds": [95, 80]}, "quota_alerts.thresholds[1]: 80 after 95"),
            ({"thresholds": [0]}, "quota_alerts.thresholds[0]: '0' is not a percentage 1..100"),
        )
        for change, message in cases:
            cfg = self.config("http://127.0.0.1:9/alerts", change)
            gw = self.gateway(cfg)
            code, out = self.check(gw, {"WEBHOOK_SECRET": SECRET})
            self.assertEqual(code, 2, (change, out))
            self.assertRegex(out, r"%s:\d+: " % re.escape(gw.config_path), out)
            self.assertIn(message, out)
            gw.start(wait=False)
            self.assertEqual(gw.wait_exit(), 2, change)
        gw = self.gateway(self.config("https://hooks.example.com/sluice"))
        code, out = self.check(gw, {})
        self.assertEqual(code, 2)
        self.assertIn("quota_alerts.secret: environment variable 'WEBHOOK_SECRET' is not set", out)
        self.assertEqual(self.check(gw, {"WEBHOOK_SECRET": SECRET}), (0, "%s: ok\n" % gw.config_path))

    def test_left_in_outbox_delivered_signed_after_a_retry(self):
        rcv = self.receiver(statuses=(500, 200))
        gw = self.gateway(self.config("http://127.0.0.1:%d/hooks/sluice?src=e2e" % rcv.port))
        alert_id = "0123456789abcdef0123456789abcdef"
        body = alert_body(alert_id)
        leave_in_outbox(gw, alert_id, body)
        gw.start()
        self.assertTrue(wait_for(lambda: rcv.count() >= 2, timeout=10), gw.describe())
        (t1, path, headers, raw1), (t2, _, headers2, raw2) = rcv.requests[:2]
        self.assertEqual(path, "/hooks/sluice?src=e2e")
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(raw1, body.encode())  # byte for byte what was stored
        self.assertEqual(raw2, raw1)
        for h, raw in ((headers, raw1), (headers2, raw2)):
            self.assertTrue(verify_signature(SECRET, h["X-Sluice-Signature"], raw), h)
            self.assertFalse(verify_signature("another secret 0123", h["X-Sluice-Signature"], raw))
            self.assertFalse(verify_signature(SECRET, h["X-Sluice-Signature"], raw + b" "))
            if node_verifies(SECRET, h["X-Sluice-Signature"], raw) is not None:
                self.assertTrue(node_verifies(SECRET, h["X-Sluice-Signature"], raw))
                self.assertFalse(node_verifies(SECRET + "x", h["X-Sluice-Signature"], raw))
        self.assertEqual(json.loads(raw2)["id"], alert_id)
        self.assertGreaterEqual(t2 - t1, 0.5)  # the retry waited (1 s, whole seconds)
        self.assertTrue(wait_for(lambda: metric(
            gw, 'sluice_alert_webhooks_total{result="delivered"}') == 1), gw.describe())
        self.assertEqual(metric(gw, 'sluice_alert_webhooks_total{result="failed"}'), 1)
        time.sleep(1.5)
        self.assertEqual(rcv.count(), 2, "delivered once, then never again")
        self.assertIn("sluice: alert %s: webhook attempt 1 failed: the webhook answered 500 "
                      "(next in 1 s)" % alert_id, gw.stderr_text())
        self.assertEqual(gw.stop(), 0)
        self.assertEqual(outbox_rows(gw), [])

    def test_undelivered_waits_for_the_next_start(self):
        port = free_port()  # nobody listens yet
        gw = self.gateway(self.config("http://127.0.0.1:%d/alerts" % port))
        alert_id = "fedcba9876543210fedcba9876543210"
        leave_in_outbox(gw, alert_id, alert_body(alert_id))
        gw.start()
        self.assertTrue(wait_for(lambda: "webhook attempt 1 failed: connect: Connection refused"
                                 in gw.stderr_text(), timeout=5), gw.describe())
        self.assertEqual(gw.stop(), 0)
        rows = outbox_rows(gw)
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0][0], alert_id)
        self.assertGreaterEqual(rows[0][1], 1)

        rcv = self.receiver(port=port)
        gw.start()
        self.assertTrue(wait_for(lambda: rcv.count() == 1, timeout=10), gw.describe())
        self.assertEqual(json.loads(rcv.requests[0][3])["id"], alert_id)
        self.assertTrue(wait_for(lambda: outbox_rows(gw) == []))

    def test_sigterm_does_not_wait_for_a_silent_receiver(self):
        # Accepts connections, never answers: each attempt would wait 10 s.
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        self.addCleanup(silent.close)
        gw = self.gateway(self.config("http://127.0.0.1:%d/" % silent.getsockname()[1]))
        alert_id = "00000000000000000000000000000001"
        leave_in_outbox(gw, alert_id, alert_body(alert_id))
        gw.start()
        conn, _ = silent.accept()
        self.addCleanup(conn.close)
        t0 = time.monotonic()
        self.assertEqual(gw.stop(), 0)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual([r[0] for r in outbox_rows(gw)], [alert_id])
