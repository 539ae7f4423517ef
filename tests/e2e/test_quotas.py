"""Quotas (SPEC 6.1, 6.2) as a user meets them: a real gateway, a counting
upstream, the embedded store and a real Redis; restarts and kill -9."""

import concurrent.futures
import datetime
import json
import os
import re
import signal
import threading
import time

from harness import E2ETestCase, RawConn, build_request, free_port, make_config, wait_for


def create_key(gw, **fields):
    r = gw.admin_request("POST", "/keys", body=json.dumps(fields).encode())
    assert r.status == 201, (r.status, r.body)
    out = r.json()
    return out["key"]["id"], out["secret"]


def patch_key(gw, kid, **fields):
    r = gw.admin_request("PATCH", "/keys/" + kid, body=json.dumps(fields).encode())
    assert r.status == 200, (r.status, r.body)
    return r.json()


def keyed(gw, secret, path="/echo/k"):
    return gw.request("GET", path, headers={"X-API-Key": secret})


def quota_config(up, tiers, routes=None, quotas=None, limits=None, workers=2):
    cfg = make_config({"app": up}, routes=routes or [{"prefix": "/"}], workers=workers)
    cfg["tiers"] = tiers
    if quotas is not None:
        cfg["quotas"] = quotas
    if limits is not None:
        cfg["limits"] = limits
    return cfg


def next_utc_midnight():
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.datetime(now.year, now.month, now.day, tzinfo=datetime.timezone.utc)
    return int((day + datetime.timedelta(days=1)).timestamp())


def metric(gw, name, labels=None):
    text = gw.admin_request("GET", "/metrics").body.decode()
    pat = re.escape(name) + (r"\{%s\}" % re.escape(labels) if labels else "")
    m = re.search(r"^%s (\d+)$" % pat, text, re.M)
    return int(m.group(1)) if m else None


class Embedded(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def test_daily_quota_admits_exactly_n_with_headers_then_429(self):
        gw = self.start_gateway(quota_config(self.up, {"anonymous": {"quota": {"daily": 5}}}))
        c = RawConn(gw.port)
        reset = next_utc_midnight()
        for i in range(5):
            r = c.request(build_request("GET", "/echo/a"))
            self.assertEqual(r.status, 200, "request %d" % (i + 1))
            self.assertEqual(r.header("X-Quota-Limit"), "5")
            self.assertEqual(r.header("X-Quota-Remaining"), str(4 - i))
            self.assertIn(int(r.header("X-Quota-Reset")), (reset, reset + 86400))
        r = c.request(build_request("GET", "/echo/a"))
        self.assertEqual(r.status, 429)
        self.assertEqual(r.header("X-Quota-Remaining"), "0")
        body = r.json()
        self.assertEqual(body["error"], "Quota exceeded")
        self.assertEqual(body["message"], "Daily quota of 5 requests used up")
        self.assertEqual(body["quota"], "daily")
        self.assertEqual(body["reset"], int(r.header("X-Quota-Reset")))
        retry = int(r.header("Retry-After"))
        self.assertLessEqual(abs(time.time() + retry - body["reset"]), 2)
        self.assertEqual(self.up.stats()["requests"], 5, "a refused request reached the upstream")
        self.assertEqual(metric(gw, "sluice_quota_decisions_total", 'outcome="refused"'), 1)
        self.assertEqual(metric(gw, "sluice_quota_decisions_total", 'outcome="admitted"'), 5)

    def test_monthly_is_the_tightest_when_it_has_fewer_left(self):
        gw = self.start_gateway(quota_config(
            self.up, {"anonymous": {"quota": {"daily": 100, "monthly": 3}}}))
        for i in range(3):
            r = gw.request("GET", "/echo/m")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("X-Quota-Limit"), "3")
            self.assertEqual(r.header("X-Quota-Remaining"), str(2 - i))
        r = gw.request("GET", "/echo/m")
        self.assertEqual(r.status, 429)
        self.assertEqual(r.json()["quota"], "monthly")
        self.assertEqual(r.json()["message"], "Monthly quota of 3 requests used up")

    def test_route_cost_counts_against_the_quota(self):
        gw = self.start_gateway(quota_config(
            self.up, {"anonymous": {"quota": {"daily": 10}}},
            routes=[{"prefix": "/echo/export", "cost": 3}, {"prefix": "/"}]))
        for left in (7, 4, 1):
            r = gw.request("GET", "/echo/export")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("X-Quota-Remaining"), str(left))
        self.assertEqual(gw.request("GET", "/echo/export").status, 429, "3 units with 1 left")
        r = gw.request("GET", "/echo/cheap")
        self.assertEqual(r.status, 200, "a 1-unit request still fits")
        self.assertEqual(r.header("X-Quota-Remaining"), "0")

    def test_a_rate_limit_refusal_consumes_no_quota(self):
        gw = self.start_gateway(quota_config(
            self.up, {"anonymous": {"quota": {"daily": 10}}},
            routes=[{"prefix": "/echo/limited", "limits": {"anonymous": ["2/min"]}},
                    {"prefix": "/"}]))
        self.assertEqual([gw.request("GET", "/echo/limited").status for _ in range(4)],
                         [200, 200, 429, 429])
        r = gw.request("GET", "/echo/free")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Quota-Remaining"), "7", "the two 429s took quota")

    def test_a_quota_refusal_consumes_no_rate_limit(self):
        tiers = {"anonymous": {"limits": ["100/h"], "quota": {"daily": 1}}}
        cfg = quota_config(self.up, tiers)
        gw = self.start_gateway(cfg)
        r = gw.request("GET", "/echo/x")
        self.assertEqual(r.header("X-RateLimit-Remaining"), "99")
        for _ in range(3):
            self.assertEqual(gw.request("GET", "/echo/x").status, 429)
        tiers["anonymous"]["quota"]["daily"] = 10
        gw.reload(cfg)
        self.assertTrue(wait_for(lambda: gw.request("GET", "/echo/x").status == 200, timeout=5))
        r = gw.request("GET", "/echo/x")
        self.assertEqual(r.header("X-RateLimit-Remaining"), "97",
                         "quota refusals took rate limit (or the reload lost the counts)")
        self.assertEqual(r.header("X-Quota-Remaining"), "7")

    def test_rejection_styles_and_ietf_items(self):
        gw = self.start_gateway(quota_config(
            self.up, {"anonymous": {"quota": {"daily": 1, "monthly": 50}}},
            routes=[{"prefix": "/drf/", "rejection": "drf"},
                    {"prefix": "/graphql", "rejection": "graphql"}, {"prefix": "/"}],
            limits={"headers": ["x-ratelimit", "ietf"]}))
        r = gw.request("GET", "/echo/first")
        self.assertEqual(r.status, 200)
        policy = r.header("RateLimit-Policy")
        self.assertIn('"daily-quota";q=1;w=86400', policy)
        self.assertRegex(policy, r'"monthly-quota";q=50;w=\d+')
        self.assertRegex(r.header("RateLimit"), r'"daily-quota";r=0;t=\d+')
        r = gw.request("GET", "/drf/x")
        self.assertEqual(r.status, 429)
        self.assertRegex(r.json()["detail"],
                         r"^Request was throttled\. Expected available in \d+ seconds?\.$")
        r = gw.request("POST", "/graphql", body=b'{"query": "{ a }"}',
                       headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 429)
        err = r.json()["errors"][0]
        self.assertEqual(err["extensions"]["code"], "QUOTA_EXCEEDED")
        self.assertEqual(err["extensions"]["quota"], "daily")
        self.assertEqual(err["message"], "Daily quota of 1 requests used up")

    def test_a_restart_keeps_the_consumption(self):
        gw = self.start_gateway(quota_config(self.up, {"anonymous": {"quota": {"daily": 5}}}))
        for _ in range(3):
            self.assertEqual(gw.request("GET", "/echo/r").status, 200)
        gw.stop()
        gw.start()
        r = gw.request("GET", "/echo/r")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Quota-Remaining"), "1", "SIGTERM lost counts")

    def test_kill_9_loses_at_most_one_second_of_counts(self):
        """Requests flow on 4 connections; the gateway is killed with SIGKILL in
        the middle. After a restart the count it resumes from may miss only
        requests admitted in the last second before the kill."""
        gw = self.start_gateway(quota_config(
            self.up, {"anonymous": {"quota": {"daily": 10000000}}}))
        admitted = []  # (time admitted,) per 200
        lock = threading.Lock()
        stop = threading.Event()

        def client():
            c = RawConn(gw.port)
            while not stop.is_set():
                try:
                    r = c.request(build_request("GET", "/echo/k"))
                except Exception:
                    return
                if r.status == 200:
                    with lock:
                        admitted.append(time.monotonic())

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(2.5)
        killed_at = time.monotonic()
        gw.signal(signal.SIGKILL)
        gw.wait_exit()
        stop.set()
        for t in threads:
            t.join()
        gw.stop(check=False)
        gw.start()
        r = gw.request("GET", "/echo/k")
        resumed = 10000000 - int(r.header("X-Quota-Remaining")) - 1
        total = len(admitted)
        last_second = sum(1 for t in admitted if t > killed_at - 1.0)
        lost = total - resumed
        print("\nkill -9: %d admitted, %d resumed, %d lost; %d in the last second"
              % (total, resumed, lost, last_second))
        self.assertGreater(total, 100)
        # A request is charged before it is forwarded: the (at most 4, one per
        # connection) in flight at the kill may be counted without their
        # clients having seen the 200.
        self.assertGreaterEqual(lost, -4, "the restart counted requests never admitted")
        self.assertLessEqual(lost, last_second, "lost more than the last second of counts")

    def test_usage_counts_quota_refusals_by_cause(self):
        gw = self.start_gateway(quota_config(
            self.up, {"anonymous": {"quota": {"daily": 3}, "price_per_1k": 2}},
            routes=[{"prefix": "/echo/limited", "limits": {"anonymous": ["4/min"]}},
                    {"prefix": "/"}]))
        statuses = [gw.request("GET", "/echo/limited").status for _ in range(6)]
        self.assertEqual(statuses, [200, 200, 200, 429, 429, 429])
        time.sleep(1.2)  # the usage write-behind: within a second

        def totals():
            r = gw.admin_request("GET", "/usage?identity=ip:127.0.0.1&granularity=day")
            self.assertEqual(r.status, 200, r.body)
            return r.json()["totals"]
        t = totals()
        self.assertEqual(t["requests"], 6)
        self.assertEqual(t["rejections"], {"limit": 0, "quota": 3, "ban": 0},
                         "quota refusals not counted as such (or counted as limit)")
        self.assertEqual(t["units"], 3)
        self.assertAlmostEqual(float(t["cost"]), 3 * 2 / 1000)
        self.assertEqual(t["status"]["2xx"], 3)
        self.assertEqual(t["status"]["4xx"], 3)

    def test_limits_off_route_counts_no_quota(self):
        gw = self.start_gateway(quota_config(
            self.up, {"anonymous": {"quota": {"daily": 1}}},
            routes=[{"prefix": "/echo/health", "limits": "off"}, {"prefix": "/"}]))
        for _ in range(3):
            r = gw.request("GET", "/echo/health")
            self.assertEqual(r.status, 200)
            self.assertIsNone(r.header("X-Quota-Limit"))
        self.assertEqual(gw.request("GET", "/echo/other").status, 200)
        self.assertEqual(gw.request("GET", "/echo/other").status, 429)


class Keys(E2ETestCase):
    """A key's own quota replaces its tier's; an upgrade applies from the next
    request and keeps what was used."""

    def setUp(self):
        self.up = self.start_upstream("A")

    def test_key_quota_overrides_the_tier_span_by_span_and_upgrades_at_once(self):
        gw = self.start_gateway(quota_config(self.up, {
            "free": {"quota": {"daily": 100, "monthly": 1000}},
            "pro": {"quota": {"daily": 10000}}}))
        kid, secret = create_key(gw, tier="free", quota_daily=3)
        other_id, other = create_key(gw, tier="free")
        for left in (2, 1, 0):
            r = keyed(gw, secret)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("X-Quota-Limit"), "3")
            self.assertEqual(r.header("X-Quota-Remaining"), str(left))
        r = keyed(gw, secret)
        self.assertEqual(r.status, 429)
        self.assertEqual(r.json()["message"], "Daily quota of 3 requests used up")
        # another key of the tier has the tier's quota, counted apart
        r = keyed(gw, other)
        self.assertEqual(r.header("X-Quota-Limit"), "100")
        self.assertEqual(r.header("X-Quota-Remaining"), "99")
        # an upgrade of the quota: the very next request, and what was used stays used
        patch_key(gw, kid, quota_daily=5)
        r = keyed(gw, secret)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Quota-Limit"), "5")
        self.assertEqual(r.header("X-Quota-Remaining"), "1")
        # back to the tier's daily quota; its monthly quota was there all along
        patch_key(gw, kid, quota_daily=None)
        r = keyed(gw, secret)
        self.assertEqual(r.header("X-Quota-Limit"), "100")
        self.assertEqual(r.header("X-Quota-Remaining"), "95")
        # a tier change: pro has no monthly quota and a bigger daily one
        patch_key(gw, kid, tier="pro")
        r = keyed(gw, secret)
        self.assertEqual(r.header("X-Quota-Limit"), "10000")
        self.assertEqual(r.header("X-Quota-Remaining"), str(10000 - 6))

    def test_cli_update_reaches_a_running_gateway(self):
        gw = self.start_gateway(quota_config(self.up, {"free": {"quota": {"daily": 2}}}))
        kid, secret = create_key(gw, tier="free")
        self.assertEqual([keyed(gw, secret).status for _ in range(3)], [200, 200, 429])
        import subprocess
        from harness import sluice_bin
        p = subprocess.run([sluice_bin(), "keys", "update", kid, "--quota-daily", "10",
                            "-c", gw.config_path], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(wait_for(lambda: keyed(gw, secret).status == 200, timeout=1.0),
                        "the CLI's upgrade did not reach the gateway within a second")


class BadConfig(E2ETestCase):
    def check(self, text):
        up = self.start_upstream("A")
        from harness import Gateway
        g = Gateway(make_config({"app": up}, routes=[{"prefix": "/"}]))
        self.addCleanup(g.cleanup)
        with open(g.config_path, "a") as f:
            f.write(text)
        return g.check()

    def test_malformed_quota_is_a_file_line_error(self):
        rc, out = self.check("tiers:\n  free:\n    quota:\n      daily: lots\n")
        self.assertEqual(rc, 2)
        self.assertRegex(out, r"\.yaml:\d+: .*daily.*'lots' is not a whole number")
        rc, out = self.check("tiers:\n  free:\n    quota:\n      weekly: 5\n")
        self.assertEqual(rc, 2)
        self.assertRegex(out, r"\.yaml:\d+: .*weekly")
        rc, out = self.check("quotas:\n  timezone: Mars/Olympus\n")
        self.assertEqual(rc, 2)
        self.assertRegex(out, r"\.yaml:\d+: .*timezone")
        rc, out = self.check("quotas:\n  monthly_reset_day: 31\n")
        self.assertEqual(rc, 2)
        self.assertRegex(out, r"\.yaml:\d+: .*out of range \(1\.\.28\)")


class Fleet(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        self.redis = self.start_redis()

    def fleet(self, tiers, on_failure="local", routes=None):
        cfg = quota_config(self.up, tiers, routes=routes)
        cfg["store"] = {"backend": "redis",
                        "redis": {"url": self.redis.url, "timeout": "200ms",
                                  "on_failure": on_failure}}
        gws = [self.start_gateway(cfg), self.start_gateway(cfg)]
        for gw in gws:
            self.assertTrue(wait_for(lambda: metric(gw, "sluice_redis_up") == 1, timeout=5))
            self.assertTrue(wait_for(lambda: metric(gw, "sluice_fleet_gateways") == 2, timeout=5))
        return gws

    def test_two_gateways_on_one_redis_admit_exactly_n(self):
        n = 300
        a, b = self.fleet({"anonymous": {"quota": {"daily": n}}})
        calls0, t0 = self.redis_calls(), time.monotonic()

        def hammer(gw):
            c = RawConn(gw.port)
            return [c.request(build_request("GET", "/echo/f")).status for _ in range(200)]

        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            results = list(ex.map(hammer, [a, b, a, b]))
        statuses = [s for r in results for s in r]
        self.assertEqual(statuses.count(200), n)
        self.assertEqual(statuses.count(429), 800 - n)
        self.assertEqual(self.up.stats()["requests"], n)
        # one script call per request, quota included; each gateway's
        # heartbeat is an EVALSHA too, once a second
        calls = self.redis_calls() - calls0
        beats = 2 * (int(time.monotonic() - t0) + 2)
        self.assertGreaterEqual(calls, 800)
        self.assertLessEqual(calls, 800 + beats, "more than one Redis command per request")
        h = self.redis.command("HGETALL", "sluice:q:{ip:127.0.0.1}")
        fields = dict(zip(h[::2], h[1::2]))  # decoded strings
        self.assertEqual(int(fields["du"]), n)
        self.assertGreater(int(self.redis.command("TTL", "sluice:q:{ip:127.0.0.1}")), 86400)

    def redis_calls(self):
        info = self.redis.command("INFO", "commandstats")
        m = re.search(r"cmdstat_evalsha:calls=(\d+)", info)
        return int(m.group(1)) if m else 0

    def test_redis_down_local_share_of_the_quota(self):
        a, b = self.fleet({"anonymous": {"quota": {"daily": 10}}})
        self.redis.kill()
        for gw in (a, b):
            self.assertTrue(wait_for(lambda: metric(gw, "sluice_redis_up") == 0, timeout=5))
        statuses = [a.request("GET", "/echo/d").status for _ in range(8)]
        self.assertEqual(statuses, [200] * 5 + [429] * 3, "not half of the quota on each")

    def test_an_upgrade_on_one_gateway_applies_on_the_other(self):
        a, b = self.fleet({"free": {"quota": {"daily": 2}}})
        kid, secret = create_key(a, tier="free")
        self.assertEqual([keyed(x, secret).status for x in (a, b, a)], [200, 200, 429])
        patch_key(a, kid, quota_daily=4)
        self.assertEqual(keyed(a, secret).status, 200, "not the next request on A")
        self.assertTrue(wait_for(lambda: keyed(b, secret).header("X-Quota-Limit") == "4",
                                 timeout=1.0), "B did not see the upgrade within a second")
        r = keyed(a, secret)
        self.assertEqual(r.status, 429, "the fleet admitted more than the new quota")


class Alerts(E2ETestCase):
    """Alerts raised by real traffic (SPEC 6.3): once per identity x quota x
    threshold x period, on the log, on GET /events and as a signed webhook,
    also when two gateways cross a threshold together."""

    def setUp(self):
        self.up = self.start_upstream("A")

    def receiver(self, port=0):
        from test_alerts import Receiver
        r = Receiver((200,), port)
        self.addCleanup(r.stop)
        return r

    def config(self, webhook, tiers, redis=None):
        cfg = quota_config(self.up, tiers)
        cfg["quota_alerts"] = {"thresholds": [80, 95, 100], "webhook": webhook,
                               "secret": "${WEBHOOK_SECRET}"}
        if redis is not None:
            cfg["store"] = {"backend": "redis",
                            "redis": {"url": redis.url, "timeout": "200ms"}}
        return cfg

    def gateway(self, cfg):
        from test_alerts import SECRET
        return self.start_gateway(cfg, env={"WEBHOOK_SECRET": SECRET})

    def bodies(self, rcv):
        from test_alerts import SECRET, verify_signature
        out = []
        for _, _, headers, raw in list(rcv.requests):
            self.assertTrue(verify_signature(SECRET, headers["X-Sluice-Signature"], raw), headers)
            out.append(json.loads(raw))
        return out

    def test_each_threshold_once_on_log_events_and_webhook(self):
        from test_alerts import EventStream
        rcv = self.receiver()
        gw = self.gateway(self.config("http://127.0.0.1:%d/hook" % rcv.port,
                                      {"free": {"quota": {"daily": 20}}}))
        events = EventStream(gw.admin_port)
        self.addCleanup(events.close)
        kid, secret = create_key(gw, tier="free", owner="acme")
        self.assertEqual(events.next_event()[0], "key.created")
        statuses = [keyed(gw, secret).status for _ in range(25)]
        self.assertEqual(statuses, [200] * 20 + [429] * 5)
        seen = [json.loads(events.next_event()[1]) for _ in range(3)]
        self.assertEqual([e["threshold"] for e in seen], [80, 95, 100])
        self.assertTrue(wait_for(lambda: rcv.count() >= 3, timeout=5), gw.describe())
        time.sleep(0.5)
        bodies = self.bodies(rcv)
        self.assertEqual(len(bodies), 3, "an alert was sent twice")
        by = {b["threshold"]: b for b in bodies}
        self.assertEqual(sorted(by), [80, 95, 100])
        self.assertEqual([by[t]["used"] for t in (80, 95, 100)], [16, 19, 20])
        midnight = next_utc_midnight()
        for b in bodies:
            self.assertEqual(b["type"], "quota.threshold")
            self.assertEqual(b["identity"], "key:" + kid)
            self.assertEqual(b["key_id"], kid)
            self.assertEqual(b["owner"], "acme")
            self.assertEqual(b["quota"], "daily")
            self.assertEqual(b["limit"], 20)
            self.assertIn(b["period_end"], (midnight, midnight + 86400))
            self.assertEqual(b["period_end"] - b["period_start"], 86400)
        self.assertEqual(len({b["id"] for b in bodies}), 3)
        self.assertEqual(seen, sorted(bodies, key=lambda b: b["threshold"]))
        log = gw.stderr_text()
        for b in bodies:
            self.assertIn('"id":"%s"' % b["id"], log.replace(" ", ""))

    def test_two_gateways_crossing_together_alert_once(self):
        redis = self.start_redis()
        rcv = self.receiver()
        cfg = self.config("http://127.0.0.1:%d/hook" % rcv.port,
                          {"anonymous": {"quota": {"daily": 200}}}, redis=redis)
        a, b = self.gateway(cfg), self.gateway(cfg)
        for gw in (a, b):
            self.assertTrue(wait_for(lambda: metric(gw, "sluice_redis_up") == 1, timeout=5))

        def hammer(gw):
            c = RawConn(gw.port)
            return [c.request(build_request("GET", "/echo/t")).status for _ in range(60)]

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            results = list(ex.map(hammer, [a, b] * 4))
        self.assertEqual(sum(r.count(200) for r in results), 200)
        self.assertTrue(wait_for(lambda: rcv.count() >= 3, timeout=5))
        time.sleep(1.0)
        bodies = self.bodies(rcv)
        self.assertEqual(sorted(x["threshold"] for x in bodies), [80, 95, 100],
                         "not exactly one alert per threshold across the fleet")
        self.assertEqual(sorted(x["used"] for x in bodies), [160, 190, 200])

    def test_a_receiver_down_at_first_gets_the_alert_later(self):
        port = free_port()  # nobody listens there yet
        gw = self.gateway(self.config("http://127.0.0.1:%d/hook" % port,
                                      {"anonymous": {"quota": {"daily": 5}}}))
        for _ in range(4):
            self.assertEqual(gw.request("GET", "/echo/l").status, 200)
        self.assertTrue(wait_for(lambda: "webhook attempt 1 failed" in gw.stderr_text(),
                                 timeout=5), gw.describe())
        rcv = self.receiver(port)
        self.assertTrue(wait_for(lambda: rcv.count() >= 1, timeout=10), gw.describe())
        bodies = self.bodies(rcv)
        self.assertEqual(bodies[0]["threshold"], 80)
        self.assertEqual(bodies[0]["used"], 4)
