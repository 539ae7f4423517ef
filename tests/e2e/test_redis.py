"""Distributed state on Redis (SPEC 3.6, 4.4), as an operator would run it: a
real redis-server, two gateways sharing it, outages and recoveries."""

import concurrent.futures
import json
import re
import time

from harness import E2ETestCase, RawConn, build_request, make_config, wait_for

LIMIT = "60/min"


def fleet_config(up, redis, on_failure="local", routes=None, timeout="50ms"):
    cfg = make_config({"app": up}, routes=routes or [
        {"prefix": "/echo/", "limits": {"anonymous": [LIMIT]}},
        {"prefix": "/origin/", "cache": {"ttl": "300s"}},
        {"prefix": "/"}])
    cfg["store"] = {"backend": "redis",
                    "redis": {"url": redis.url, "timeout": timeout, "on_failure": on_failure}}
    return cfg


def metric(gw, name):
    text = gw.admin_request("GET", "/metrics").body.decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


class Fleet(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        self.redis = self.start_redis()

    def two_gateways(self, **kw):
        a = self.start_gateway(fleet_config(self.up, self.redis, **kw))
        b = self.start_gateway(fleet_config(self.up, self.redis, **kw))
        for gw in (a, b):
            self.assertTrue(wait_for(lambda: metric(gw, "sluice_redis_up") == 1, timeout=5),
                            "gateway not connected to redis")
        return a, b

    def wait_fleet_of(self, gws, n):
        for gw in gws:
            self.assertTrue(wait_for(lambda: metric(gw, "sluice_fleet_gateways") == n, timeout=5),
                            "gateway does not see a fleet of %d" % n)

    def test_alternating_requests_share_one_limit(self):
        # A generous Redis timeout: this checks shared counting, and on a
        # loaded machine 50 ms can pass and degrade a gateway to local.
        a, b = self.two_gateways(timeout="2s")
        ca, cb = RawConn(a.port), RawConn(b.port)

        def evalsha_calls():
            stats = self.redis.command("INFO", "commandstats")
            m = re.search(r"cmdstat_evalsha:calls=(\d+)", stats)
            return int(m.group(1)) if m else 0
        before, t0 = evalsha_calls(), time.monotonic()
        statuses = []
        for i in range(70):
            c = ca if i % 2 == 0 else cb
            r = c.request(build_request("GET", "/echo/x"))
            statuses.append(r.status)
            self.assertEqual(r.header("X-RateLimit-Limit"), "60")
        self.assertEqual(statuses.count(200), 60, statuses)
        self.assertEqual(statuses.count(429), 10)
        self.assertEqual(statuses[:60], [200] * 60)
        # One Redis command per request (EVALSHA). Each gateway's heartbeat
        # is an EVALSHA too, once a second: those are allowed for, no more.
        calls = evalsha_calls() - before
        beats = 2 * (int(time.monotonic() - t0) + 2)
        self.assertGreaterEqual(calls, 70)
        self.assertLessEqual(calls, 70 + beats, "more than one Redis command per request")

    def test_parallel_requests_over_both_gateways(self):
        a, b = self.two_gateways(timeout="2s")

        def one(i):
            gw = a if i % 2 else b
            return gw.request("GET", "/echo/p%d" % i).status
        with concurrent.futures.ThreadPoolExecutor(max_workers=32) as ex:
            statuses = list(ex.map(one, range(150)))
        self.assertEqual(statuses.count(200), 60, statuses)
        self.assertEqual(statuses.count(429), 90, statuses)

    def test_outage_local_share_then_recovery(self):
        a, b = self.two_gateways()
        self.wait_fleet_of((a, b), 2)
        self.redis.kill()
        for gw in (a, b):
            self.assertTrue(wait_for(lambda: metric(gw, "sluice_redis_up") == 0, timeout=3))
        # each gateway now admits its share: 60 / 2
        for gw in (a, b):
            c = RawConn(gw.port)
            statuses = []
            for _ in range(45):
                t0 = time.monotonic()
                statuses.append(c.request(build_request("GET", "/echo/out")).status)
                self.assertLess(time.monotonic() - t0, 1.0, "a request waited for redis")
            self.assertNotIn(500, statuses)
            self.assertIn(statuses.count(200), (29, 30, 31), statuses)
            self.assertEqual(statuses.count(200) + statuses.count(429), 45)
        self.assertGreater(metric(a, "sluice_ratelimit_fallback_total{mode=\"local\"}") or 0, 0)
        # Redis comes back on the same port: shared counting again within 5 s
        self.redis.start()
        t0 = time.monotonic()
        for gw in (a, b):
            self.assertTrue(wait_for(lambda: metric(gw, "sluice_redis_up") == 1, timeout=5),
                            "no reconnect within 5 s")
        self.assertLess(time.monotonic() - t0, 5.0)
        r = a.request("GET", "/echo/back")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-RateLimit-Remaining"), "59")  # a fresh Redis counter
        r = b.request("GET", "/echo/back")
        self.assertEqual(r.header("X-RateLimit-Remaining"), "58")  # shared with a

    def test_outage_under_load_no_5xx_no_hang(self):
        a, b = self.two_gateways()
        stop = time.monotonic() + 3.0
        errors, slow, counts = [], [], {}

        def load(gw):
            c = RawConn(gw.port)
            while time.monotonic() < stop:
                t0 = time.monotonic()
                try:
                    st = c.request(build_request("GET", "/echo/load")).status
                except Exception as e:  # noqa: BLE001 - any failure is the finding
                    errors.append(repr(e))
                    return
                if time.monotonic() - t0 > 0.5:
                    slow.append(time.monotonic() - t0)
                counts[st] = counts.get(st, 0) + 1
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
            futs = [ex.submit(load, gw) for gw in (a, b, a, b)]
            time.sleep(1.0)
            self.redis.kill()
            for f in futs:
                f.result()
        self.assertEqual(errors, [])
        self.assertEqual(slow, [], "requests waited for the dead redis")
        self.assertEqual(set(counts) - {200, 429}, set(), counts)

    def test_on_failure_allow_and_deny(self):
        for mode, want in (("allow", 200), ("deny", 503)):
            redis = self.start_redis()
            gw = self.start_gateway(fleet_config(self.up, redis, on_failure=mode))
            self.assertTrue(wait_for(lambda: metric(gw, "sluice_redis_up") == 1, timeout=5))
            redis.kill()
            self.assertTrue(wait_for(lambda: metric(gw, "sluice_redis_up") == 0, timeout=3))
            statuses = [gw.request("GET", "/echo/f").status for _ in range(70)]
            self.assertEqual(set(statuses), {want}, (mode, statuses))
            if mode == "deny":
                r = gw.request("GET", "/echo/f")
                self.assertJsonError(r, 503)
            # routes without limits are not affected by the outage
            self.assertEqual(gw.request("GET", "/origin/unlimited").status, 200)

    def test_purge_on_one_gateway_reaches_the_other(self):
        a, b = self.two_gateways()
        self.wait_fleet_of((a, b), 2)
        for gw in (a, b):
            self.assertEqual(gw.request("GET", "/origin/p").header("X-Cache"), "MISS")
            self.assertEqual(gw.request("GET", "/origin/p").header("X-Cache"), "HIT")
        self.assertEqual(b.request("GET", "/origin/q").header("X-Cache"), "MISS")
        r = a.admin_request("POST", "/cache/purge", body=json.dumps({"prefix": "/origin/"}).encode())
        self.assertEqual(r.status, 200)
        # the fleet's count: A's one entry and B's two, B having reported
        self.assertEqual(r.json(), {"purged": 3, "fleet": True, "gateways": 2})
        t0 = time.monotonic()
        self.assertTrue(wait_for(lambda: metric(b, "sluice_fleet_events_total") == 1, timeout=1))
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(b.request("GET", "/origin/p").header("X-Cache"), "MISS")
        self.assertEqual(a.request("GET", "/origin/p").header("X-Cache"), "MISS")


    def test_purge_answers_without_a_gateway_that_is_gone(self):
        a, b = self.two_gateways()
        self.wait_fleet_of((a, b), 2)
        self.assertEqual(a.request("GET", "/origin/p").header("X-Cache"), "MISS")
        b.proc.kill()  # still counted in the fleet for a few seconds
        t0 = time.monotonic()
        r = a.admin_request("POST", "/cache/purge", body=json.dumps({"all": True}).encode())
        waited = time.monotonic() - t0
        self.assertEqual(r.json(), {"purged": 1, "fleet": True, "gateways": 1})
        self.assertGreaterEqual(waited, 0.9)  # it waited for B's report...
        self.assertLess(waited, 3.0)          # ...for a bounded time

class Concurrency(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        self.redis = self.start_redis()

    def config(self, lease="2m"):
        cfg = fleet_config(self.up, self.redis, routes=[
            {"prefix": "/slow", "limits": {"anonymous": ["concurrency 2"]}}, {"prefix": "/"}])
        cfg["store"]["redis"]["lease"] = lease
        return cfg

    def test_slots_are_shared_and_given_back(self):
        a = self.start_gateway(self.config())
        b = self.start_gateway(self.config())
        for gw in (a, b):
            self.assertTrue(wait_for(lambda: metric(gw, "sluice_redis_up") == 1, timeout=5))
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
            held = [ex.submit(gw.request, "GET", "/slow?ms=1500") for gw in (a, b)]
            self.assertTrue(self.up.wait_in_flight(2, match="/slow"))
            # both slots are taken, whichever gateway asks
            for gw in (a, b):
                r = gw.request("GET", "/slow?ms=0")
                self.assertEqual(r.status, 429)
                self.assertIn("concurrent", r.json()["message"])
            self.assertEqual([f.result().status for f in held], [200, 200])
        # given back when they ended
        self.assertEqual(a.request("GET", "/slow?ms=0").status, 200)
        self.assertEqual(b.request("GET", "/slow?ms=0").status, 200)

    def test_a_crashed_gateway_leaks_its_slot_only_until_the_lease_ends(self):
        a = self.start_gateway(self.config(lease="2s"))
        b = self.start_gateway(self.config(lease="2s"))
        for gw in (a, b):
            self.assertTrue(wait_for(lambda: metric(gw, "sluice_redis_up") == 1, timeout=5))
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
            held = [ex.submit(a.request, "GET", "/slow?ms=3000") for _ in range(2)]
            self.assertTrue(self.up.wait_in_flight(2, match="/slow"))
            a.proc.kill()  # SIGKILL: no release is ever sent
            a.proc.wait()
            for f in held:
                try:
                    f.result()
                except Exception:  # noqa: BLE001 - the gateway died under it
                    pass
        t0 = time.monotonic()
        self.assertEqual(b.request("GET", "/slow?ms=0").status, 429)
        self.assertTrue(wait_for(lambda: b.request("GET", "/slow?ms=0").status == 200,
                                 timeout=5), "the dead gateway's slots never came back")
        self.assertLess(time.monotonic() - t0, 3.5)


class FleetKeys(E2ETestCase):
    """API keys in Redis: created, rotated and revoked on one gateway (or by
    the CLI), in force on every gateway of the fleet."""

    def setUp(self):
        self.up = self.start_upstream("A")
        self.redis = self.start_redis()

    def config(self):
        cfg = fleet_config(self.up, self.redis)
        cfg["tiers"] = {"anonymous": {"limits": ["100/h"]}, "pro": {"limits": ["10000/h"]}}
        cfg["identity"] = {"jwt": {"secret": "fleet-secret-0123456789-abcdefghijkl"}}
        return cfg

    def cli(self, gw, *args):
        import subprocess
        from harness import sluice_bin
        p = subprocess.run([sluice_bin(), "keys"] + list(args) + ["-c", gw.config_path],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def test_keys_are_shared_by_the_fleet(self):
        a = self.start_gateway(self.config())
        b = self.start_gateway(self.config())
        out = json.loads(self.cli(a, "create", "--tier", "pro", "--json"))
        kid, secret = out["key"]["id"], out["secret"]
        for gw in (a, b):
            r = gw.request("GET", "/echo/k", headers={"X-API-Key": secret})
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("X-RateLimit-Limit"), "10000")
        # the secret is stored nowhere in Redis, only its hash
        for k in self.redis.command("KEYS", "*"):
            self.assertNotIn(secret, k)
            if self.redis.command("TYPE", k) == "hash":
                self.assertNotIn(secret, json.dumps(self.redis.command("HGETALL", k)))
        # created through one gateway's admin API, known to the other and the CLI
        r = a.admin_request("POST", "/keys", body=json.dumps({"tier": "pro"}).encode())
        self.assertEqual(r.status, 201)
        s2 = r.json()["secret"]
        self.assertEqual(b.request("GET", "/echo/k", headers={"X-API-Key": s2}).status, 200)
        self.assertEqual(len(json.loads(self.cli(b, "list", "--json"))["keys"]), 2)
        # revoked on b: refused by a within a second
        self.assertEqual(b.admin_request("DELETE", "/keys/" + kid).status, 200)
        t0 = time.monotonic()
        self.assertTrue(wait_for(lambda: a.request("GET", "/echo/k", headers={
            "X-API-Key": secret}).status == 401, timeout=1.0), "revocation did not reach a")
        self.assertLess(time.monotonic() - t0, 1.0)
        # tokens: issued by a, refreshed by b, reuse caught by a
        t = a.request("POST", "/auth/token", headers={"X-API-Key": s2}).json()
        r = b.request("POST", "/auth/refresh", body=json.dumps(
            {"refresh_token": t["refresh_token"]}).encode())
        self.assertEqual(r.status, 200)
        r = a.request("POST", "/auth/refresh", body=json.dumps(
            {"refresh_token": t["refresh_token"]}).encode())
        self.assertEqual(r.status, 401)
