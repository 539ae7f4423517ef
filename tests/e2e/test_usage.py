"""Usage metering (SPEC 6.4) as an operator and a billing job see it: requests of
API keys and anonymous clients over several routes (some refused by a rate
limit, some failing upstream), then GET /usage and GET /usage/top on the admin
API, the same report as CSV, `sluice usage --csv`, a restart (SQLite keeps the
rows), and a fleet of two gateways on one Redis whose reports both show the
fleet's totals."""

import calendar
import csv
import io
import json
import re
import subprocess
import time
import urllib.parse
from decimal import Decimal

from harness import E2ETestCase, RawConn, build_request, make_config, sluice_bin, wait_for

# Long enough for a worker's hand-off (200 ms) and the usage thread's write
# (250 ms apart at most), with a margin for a loaded machine.
FLUSH_WAIT = 1.1

TIERS = {
    "anonymous": {"limits": ["1000/h"]},
    "pro": {"limits": ["10000/h"], "price_per_1k": 2.5},
    "free": {"limits": ["1000/h"], "price_per_1k": "0.4"},
}

ROUTES = [
    {"prefix": "/echo", "cost": 3},
    {"prefix": "/big"},
    {"prefix": "/lim/", "strip_prefix": True,
     "limits": {"anonymous": ["3/min"], "free": ["3/min"], "pro": ["3/min"]}},
    {"prefix": "/status/"},
]

STATUS_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"]


def usage_config(up, redis=None, usage=None):
    cfg = make_config({"app": up}, routes=ROUTES)
    cfg["tiers"] = TIERS
    if redis is not None:
        cfg["store"] = {"backend": "redis", "redis": {"url": redis.url, "timeout": "200ms"}}
    if usage is not None:
        cfg["usage"] = usage
    return cfg


def metric(gw, name):
    text = gw.admin_request("GET", "/metrics").body.decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


class Expected:
    """What the gateway should have counted, from the responses the client got."""

    def __init__(self):
        self.rows = {}

    def add(self, identity, key_id, route, resp, body_len=0, units=0, price=Decimal(0),
            refused=None):
        r = self.rows.setdefault((identity, route), {
            "identity": identity, "key_id": key_id, "route": route, "requests": 0,
            "status": dict.fromkeys(STATUS_CLASSES, 0),
            "rejections": {"limit": 0, "quota": 0, "ban": 0},
            "bytes_in": 0, "bytes_out": 0, "units": 0, "cost": Decimal(0)})
        r["requests"] += 1
        r["status"]["%dxx" % (resp.status // 100)] += 1
        if refused:
            r["rejections"][refused] += 1
        r["bytes_in"] += body_len
        r["bytes_out"] += len(resp.body)
        r["units"] += units
        r["cost"] += units * price / 1000

    def totals(self):
        t = {"requests": 0, "status": dict.fromkeys(STATUS_CLASSES, 0),
             "rejections": {"limit": 0, "quota": 0, "ban": 0}, "bytes_in": 0, "bytes_out": 0,
             "units": 0, "cost": Decimal(0)}
        for r in self.rows.values():
            for k in ("requests", "bytes_in", "bytes_out", "units", "cost"):
                t[k] += r[k]
            for k in STATUS_CLASSES:
                t["status"][k] += r["status"][k]
            for k in t["rejections"]:
                t["rejections"][k] += r["rejections"][k]
        return t


COUNTED = ("requests", "status", "rejections", "bytes_in", "bytes_out", "units", "cost")


def counted(row):
    return {k: row[k] for k in COUNTED}


class UsageTestCase(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def create_key(self, gw, tier):
        p = subprocess.run([sluice_bin(), "keys", "create", "--json", "--tier", tier, "-c",
                            gw.config_path], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)
        return out["key"]["id"], out["secret"]

    def usage(self, gw, **params):
        r = gw.admin_request("GET", "/usage?" + urllib.parse.urlencode(params))
        self.assertStatus(r, 200, r.body[:300])
        return json.loads(r.body, parse_float=Decimal)

    def send_traffic(self, gw, port=None, exp=None):
        """The traffic of the tests: two keys and anonymous clients on four routes."""
        exp = exp or Expected()
        port = port or gw.port
        ka, sa = self.keys["pro"]
        kb, sb = self.keys["free"]
        anon = "ip:127.0.0.1"
        pro, free = Decimal("2.5"), Decimal("0.4")
        with RawConn(port) as c:
            def req(method, path, secret=None, body=None):
                h = {"X-API-Key": secret} if secret else {}
                return c.request(build_request(method, path, headers=h, body=body))
            for _ in range(5):
                r = req("GET", "/echo/a", sa)
                self.assertStatus(r, 200)
                exp.add("key:" + ka, ka, "/echo", r, units=3, price=pro)
            for n in (1000, 2500):
                r = req("GET", "/big?bytes=%d" % n, sa)
                self.assertStatus(r, 200)
                self.assertEqual(len(r.body), n)
                exp.add("key:" + ka, ka, "/big", r, units=1, price=pro)
            for i in range(4):
                body = b"x" * (100 + i)
                r = req("POST", "/echo/b", sb, body)
                self.assertStatus(r, 200)
                exp.add("key:" + kb, kb, "/echo", r, body_len=len(body), units=3, price=free)
            statuses = []
            for _ in range(5):
                r = req("GET", "/lim/echo", sb)
                statuses.append(r.status)
                refused = "limit" if r.status == 429 else None
                exp.add("key:" + kb, kb, "/lim/", r, units=0 if refused else 1, price=free,
                        refused=refused)
            self.assertEqual(statuses, [200, 200, 200, 429, 429])
            for _ in range(2):
                r = req("GET", "/status/503")
                self.assertStatus(r, 503)
                exp.add(anon, None, "/status/", r, units=1)
            r = req("GET", "/echo/x")
            self.assertStatus(r, 200)
            exp.add(anon, None, "/echo", r, units=3)
        return exp

    def assert_report_matches(self, report, exp):
        got = {(row["identity"], row["route"]): row for row in report["rows"]}
        self.assertEqual(sorted(got), sorted(exp.rows), report)
        for k, want in exp.rows.items():
            row = got[k]
            self.assertEqual(row["key_id"], want["key_id"], k)
            self.assertEqual(counted(row), counted(want), k)
            lat = row["latency_ms"]
            self.assertTrue(0 <= lat["p50"] <= lat["p95"] <= lat["p99"] < 60000, lat)
        self.assertEqual(counted(report["totals"]), exp.totals())


class Reports(UsageTestCase):
    def setUp(self):
        super().setUp()
        self.gw = self.start_gateway(usage_config(self.up))
        self.keys = {t: self.create_key(self.gw, t) for t in ("pro", "free")}

    def test_totals_csv_top_cli_and_restart(self):
        gw = self.gw
        exp = self.send_traffic(gw)
        time.sleep(FLUSH_WAIT)

        # JSON: every row and the totals, exactly as sent.
        rep = self.usage(gw, granularity="hour")
        self.assertEqual(rep["granularity"], "hour")
        self.assert_report_matches(rep, exp)
        hour = rep["rows"][0]["period_start"]
        self.assertTrue(hour.endswith(":00:00Z"), hour)
        self.assertEqual({r["period_start"] for r in rep["rows"]}, {hour})
        # The day and month rows are the sums of the hours (a test that
        # spans midnight UTC would split them; it would take a second).
        for g in ("day", "month"):
            self.assert_report_matches(self.usage(gw, granularity=g), exp)

        # One key, and the same report as CSV (RFC 4180: CRLF, header).
        ka = self.keys["pro"][0]
        params = {"key": ka, "granularity": "hour", "from": rep["from"], "to": rep["to"]}
        by_key = self.usage(gw, **params)
        self.assertEqual({r["identity"] for r in by_key["rows"]}, {"key:" + ka})
        self.assertEqual(by_key["totals"]["requests"], 7)
        self.assertEqual(by_key["totals"]["cost"], Decimal("0.0425"))  # 17 units at 2.5/1k
        r = gw.admin_request("GET", "/usage?" + urllib.parse.urlencode(dict(params,
                                                                            format="csv")))
        self.assertStatus(r, 200)
        self.assertTrue(r.header("Content-Type").startswith("text/csv"), r.header("Content-Type"))
        api_csv = r.body
        self.assertTrue(api_csv.endswith(b"\r\n"))
        self.assertNotIn(b"\n", api_csv.replace(b"\r\n", b""))
        rows = list(csv.DictReader(io.StringIO(api_csv.decode(), newline="")))
        self.assertEqual(len(rows), len(by_key["rows"]))
        for c, j in zip(rows, by_key["rows"]):
            self.assertEqual(c["period_start"], j["period_start"])
            self.assertEqual(c["identity"], j["identity"])
            self.assertEqual(c["key_id"], j["key_id"])
            self.assertEqual(c["route"], j["route"])
            self.assertEqual(int(c["requests"]), j["requests"])
            for k in STATUS_CLASSES:
                self.assertEqual(int(c["status_" + k]), j["status"][k])
            for k in ("limit", "quota", "ban"):
                self.assertEqual(int(c["rejected_" + k]), j["rejections"][k])
            for k in ("bytes_in", "bytes_out", "units"):
                self.assertEqual(int(c[k]), j[k])
            self.assertEqual(Decimal(c["cost"]), j["cost"])
            for q in ("p50", "p95", "p99"):
                self.assertEqual(Decimal(c["latency_%s_ms" % q]), j["latency_ms"][q])

        # The CLI reads the same store and prints the same bytes.
        p = subprocess.run([sluice_bin(), "usage", "-c", gw.config_path, "--key", ka,
                            "--granularity", "hour", "--from", rep["from"], "--to", rep["to"],
                            "--csv"], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, api_csv)
        p = subprocess.run([sluice_bin(), "usage", "-c", gw.config_path, "--granularity", "hour",
                            "--from", rep["from"], "--to", rep["to"]], capture_output=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout, parse_float=Decimal), rep)

        # Top: by requests (free 9, pro 7, anonymous 3), by cost, by
        # rejections (ties by identity).
        kb = self.keys["free"][0]
        anon = "ip:127.0.0.1"

        def top(**params):
            r = gw.admin_request("GET", "/usage/top?" + urllib.parse.urlencode(params))
            self.assertStatus(r, 200, r.body[:300])
            return json.loads(r.body, parse_float=Decimal)
        t = top(by="requests", period="day", n=10)
        self.assertEqual([(x["rank"], x["identity"], x["requests"]) for x in t["rows"]],
                         [(1, "key:" + kb, 9), (2, "key:" + ka, 7), (3, anon, 3)])
        self.assertEqual(t["rows"][0]["key_id"], kb)
        self.assertIsNone(t["rows"][2]["key_id"])
        self.assertEqual([x["identity"] for x in top(by="cost", n=2)["rows"]],
                         ["key:" + ka, "key:" + kb])
        t = top(by="rejections", period="month", n=3)
        self.assertEqual([(x["identity"], x["rejections"]["limit"]) for x in t["rows"]],
                         [("key:" + kb, 2), (anon, 0), ("key:" + ka, 0)])

        self.assertEqual(metric(gw, "sluice_usage_recorded_total"), 19)
        self.assertEqual(metric(gw, "sluice_usage_dropped_total"), 0)

        # A restart keeps the rows, and SIGTERM loses nothing: these were
        # sent just before it, with no time to flush.
        more = Expected()
        with RawConn(gw.port) as c:
            for _ in range(3):
                r = c.request(build_request("GET", "/echo/late"))
                more.add(anon, None, "/echo", r, units=3)
        self.assertEqual(gw.stop(), 0)
        gw.start()
        after = self.usage(gw, granularity="hour")
        row = {(r["identity"], r["route"]): r for r in after["rows"]}[(anon, "/echo")]
        self.assertEqual(row["requests"], exp.rows[(anon, "/echo")]["requests"] + 3)
        self.assertEqual(after["totals"]["requests"], exp.totals()["requests"] + 3)
        self.assertEqual(after["totals"]["bytes_out"],
                         exp.totals()["bytes_out"] + more.totals()["bytes_out"])

    def test_bad_parameters_are_400_and_unknown_key_404(self):
        gw = self.gw
        cases = [
            ("/usage?granularity=week", "hour, day or month"),
            ("/usage?format=xml", "json or csv"),
            ("/usage?from=yesterday", "RFC 3339"),
            ("/usage?to=2024-13-01", "RFC 3339"),
            ("/usage?from=2024-02-30", "RFC 3339"),
            ("/usage?from=2024-05-02&to=2024-05-01", "before"),
            ("/usage?from=0&to=9999999999&granularity=hour", "coarser"),
            ("/usage?granularity=day&granularity=hour", "twice"),
            ("/usage?foo=1", "key, identity, route, from, to, granularity, format"),
            ("/usage?identity=%zz", "escape"),
            ("/usage/top?by=latency", "requests, rejections or cost"),
            ("/usage/top?period=hour", "day or month"),
            ("/usage/top?n=0", "1 to 1000"),
            ("/usage/top?n=abc", "1 to 1000"),
            ("/usage/top?format=csv", "json"),
            ("/usage/top?key=x", "by, period, n, at"),
        ]
        for path, says in cases:
            r = gw.admin_request("GET", path)
            body = self.assertJsonError(r, 400)
            self.assertIn(says, body["message"], path)
        body = self.assertJsonError(gw.admin_request("GET", "/usage?key=key_ffffffffffffffff"),
                                    404)
        self.assertIn("no such key", body["message"])
        # A key that exists but has no usage yet: an empty report.
        rep = self.usage(gw, key=self.keys["pro"][0])
        self.assertEqual((rep["rows"], rep["count"], rep["totals"]["requests"]), ([], 0, 0))
        self.assertIsNone(rep["totals"]["latency_ms"]["p50"])
        self.assertJsonError(gw.admin_request("GET", "/usage", token="wrong"), 401)
        self.assertJsonError(gw.admin_request("POST", "/usage"), 405)
        # The CLI: the same checks, exit 2; an unknown key exits 1.
        for args, code, says in [(["--granularity", "week"], 2, "hour, day or month"),
                                 (["--from", "nope"], 2, "RFC 3339"),
                                 (["--bogus"], 2, "unknown option"),
                                 (["--key", "key_ffffffffffffffff"], 1, "no key")]:
            p = subprocess.run([sluice_bin(), "usage", "-c", gw.config_path] + args,
                               capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL)
            self.assertEqual(p.returncode, code, (args, p.stderr))
            self.assertIn(says, p.stderr, args)

    def test_times_in_every_accepted_form_select_the_same_rows(self):
        gw = self.gw
        with RawConn(gw.port) as c:
            for _ in range(2):
                self.assertStatus(c.request(build_request("GET", "/echo/t")), 200)
        time.sleep(FLUSH_WAIT)
        rep = self.usage(gw, granularity="hour")
        start = rep["rows"][0]["period_start"]
        t0 = calendar.timegm(time.strptime(start, "%Y-%m-%dT%H:%M:%SZ"))
        day = start[:10]
        forms = [{"from": start}, {"from": str(t0)}, {"from": day},
                 {"from": start.replace("Z", "+00:00")},
                 {"from": time.strftime("%Y-%m-%dT%H:%M:%S+02:00", time.gmtime(t0 + 7200))},
                 {"from": day, "to": day}]
        for f in forms:
            r = self.usage(gw, granularity="hour", **f)
            self.assertEqual(r["totals"]["requests"], 2, f)
        # An hour that ended before the requests: nothing.
        r = self.usage(gw, granularity="hour", to=str(t0))
        self.assertEqual(r["totals"]["requests"], 0)


class Fleet(UsageTestCase):
    def test_two_gateways_on_one_redis_report_the_fleet_totals(self):
        redis = self.start_redis()
        a = self.start_gateway(usage_config(self.up, redis))
        b = self.start_gateway(usage_config(self.up, redis))
        self.keys = {t: self.create_key(a, t) for t in ("pro", "free")}
        for gw in (a, b):
            self.assertTrue(wait_for(lambda: metric(gw, "sluice_redis_up") == 1, timeout=5))
        # The rate limit is the fleet's: 3/min over both gateways. Each
        # gateway's part of the traffic is the same; the limited route
        # refuses the second gateway's every request.
        exp = Expected()
        self.send_traffic(a, exp=exp)
        ka, sa = self.keys["pro"]
        kb, sb = self.keys["free"]
        with RawConn(b.port) as c:
            for i in range(6):
                r = c.request(build_request("GET", "/echo/f", headers={"X-API-Key": sa}))
                self.assertStatus(r, 200)
                exp.add("key:" + ka, ka, "/echo", r, units=3, price=Decimal("2.5"))
            for _ in range(2):
                r = c.request(build_request("GET", "/lim/echo", headers={"X-API-Key": sb}))
                self.assertStatus(r, 429)
                exp.add("key:" + kb, kb, "/lim/", r, refused="limit")
        time.sleep(FLUSH_WAIT)
        for gw in (a, b):
            rep = self.usage(gw, granularity="hour")
            self.assert_report_matches(rep, exp)
            self.assert_report_matches(self.usage(gw, granularity="month"), exp)
        p = subprocess.run([sluice_bin(), "usage", "-c", a.config_path, "--granularity", "day"],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout, parse_float=Decimal)["totals"]["requests"],
                         exp.totals()["requests"])
        # Rows expire in Redis (hourly and daily), monthly ones are kept.
        keys = redis.command("KEYS", "sluice:usage:*")
        self.assertTrue(keys)
        for k in keys:
            ttl = int(redis.command("TTL", k))
            if k.startswith("sluice:usage:m:") or k.startswith("sluice:usage:idx:m:"):
                self.assertEqual(ttl, -1, k)
            else:
                self.assertGreater(ttl, 0, k)
