"""The key store on Redis through outages and data loss (issue 11, findings 4
and 5), as an operator would live them: a gateway started while Redis is down
serves the keys of its snapshot and local limits, then joins when Redis comes
back; a Redis restarted empty does not lock the clients out, says so, and is
re-seeded with `sluice keys export` and `sluice keys import`."""

import json
import os
import stat
import subprocess
import time

from harness import E2ETestCase, Gateway, sluice_bin, wait_for
from test_redis import fleet_config, metric

SOURCE_STORE = 'sluice_api_keys_source{source="store"}'
SOURCE_SNAPSHOT = 'sluice_api_keys_source{source="snapshot"}'


def config(up, redis):
    cfg = fleet_config(up, redis)
    cfg["tiers"] = {"anonymous": {"limits": ["100/h"]}, "pro": {"limits": ["10000/h"]}}
    return cfg


def snapshot_path(gw):
    return os.path.join(gw.dir, "var", "keyring.snapshot")


class KeyStoreOutage(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")

    def cli(self, gw, *args, code=0):
        p = subprocess.run([sluice_bin(), "keys"] + list(args) + ["-c", gw.config_path],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, code, "stdout: %s\nstderr: %s" % (p.stdout, p.stderr))
        return p

    def create_key(self, gw):
        out = json.loads(self.cli(gw, "create", "--tier", "pro", "--json").stdout)
        return out["key"]["id"], out["secret"]

    def key_status(self, gw, secret):
        r = gw.request("GET", "/echo/k", headers={"X-API-Key": secret})
        if r.status == 200:
            self.assertEqual(r.header("X-RateLimit-Limit"), "10000")  # the key's tier
        return r.status

    def wait_snapshot_has(self, gw, kid):
        def has():
            try:
                with open(snapshot_path(gw)) as f:
                    return kid in f.read()
            except FileNotFoundError:
                return False
        self.assertTrue(wait_for(has, timeout=3), "no snapshot with %s" % kid)

    def test_start_while_redis_is_down_then_join(self):
        redis = self.start_redis(persist=True)
        gw = self.start_gateway(config(self.up, redis))
        kid, secret = self.create_key(gw)
        self.assertTrue(wait_for(lambda: self.key_status(gw, secret) == 200, timeout=2))
        self.wait_snapshot_has(gw, kid)
        st = os.stat(snapshot_path(gw))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        with open(snapshot_path(gw)) as f:
            self.assertNotIn(secret, f.read())
        self.assertEqual(metric(gw, SOURCE_STORE), 1)

        gw.stop()
        redis.kill()
        gw.start()  # same config, same data_dir: it starts on the snapshot
        self.assertIn("starting without the key store: 1 API key(s) from the snapshot",
                      gw.stderr_text())
        self.assertEqual(self.key_status(gw, secret), 200)
        r = gw.request("GET", "/echo/anon")  # anonymous: the route's limit, counted locally
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-RateLimit-Limit"), "60")
        self.assertEqual(self.key_status(gw, "sk_live_" + "A" * 43), 401)
        self.assertEqual(metric(gw, "sluice_keystore_up"), 0)
        self.assertEqual(metric(gw, SOURCE_SNAPSHOT), 1)
        self.assertEqual(metric(gw, "sluice_redis_up"), 0)
        # key operations say why they cannot work, and nothing crashes
        r = gw.admin_request("POST", "/keys", body=json.dumps({"tier": "pro"}).encode())
        self.assertEqual(r.status, 503, r.body)
        self.assertIn("cannot be reached", r.json()["message"])
        self.assertEqual(gw.admin_request("GET", "/keys").status, 503)
        p = self.cli(gw, "create", "--tier", "pro", code=1)
        self.assertIn("cannot be reached", p.stderr)
        self.cli(gw, "list", code=1)

        redis.start()  # the same data (AOF): the gateway joins
        for name, want in (("sluice_keystore_up", 1), (SOURCE_STORE, 1),
                           ("sluice_redis_up", 1)):
            self.assertTrue(wait_for(lambda: metric(gw, name) == want, timeout=5),
                            "%s != %d" % (name, want))
        self.assertEqual(metric(gw, "sluice_keystore_data_lost"), 0)
        self.assertIn("the key store answers again", gw.stderr_text())
        kid2, secret2 = self.create_key(gw)
        self.assertTrue(wait_for(lambda: self.key_status(gw, secret2) == 200, timeout=1.5))
        self.assertEqual(self.key_status(gw, secret), 200)
        self.wait_snapshot_has(gw, kid2)

    def lose_redis_data(self, redis, gw, kid, secret):
        """Redis restarted empty under a gateway that knows key <kid>."""
        self.assertTrue(wait_for(lambda: self.key_status(gw, secret) == 200, timeout=2))
        self.wait_snapshot_has(gw, kid)
        redis.kill()
        redis.start()
        self.assertTrue(wait_for(lambda: metric(gw, "sluice_keystore_data_lost") == 1,
                                 timeout=5), "the loss was not noticed")
        self.assertEqual(self.key_status(gw, secret), 200)
        self.assertEqual(metric(gw, SOURCE_SNAPSHOT), 1)

    def test_redis_restarted_empty_keeps_keys_and_is_reseeded(self):
        redis = self.start_redis()  # no persistence: a restart loses everything
        gw = self.start_gateway(config(self.up, redis))
        kid, secret = self.create_key(gw)
        self.lose_redis_data(redis, gw, kid, secret)
        self.assertEqual(metric(gw, "sluice_api_keys"), 1)
        time.sleep(0.5)  # several ticks: the loss is logged once
        self.assertEqual(gw.stderr_text().count("LOST ITS DATA"), 1, gw.stderr_text())
        self.assertEqual(self.key_status(gw, secret), 200)

        # re-seed: export (auto: from the snapshot, as the store lost its data), import
        dump = os.path.join(gw.dir, "keys.jsonl")
        p = self.cli(gw, "export", "--out", dump)
        self.assertRegex(p.stderr, r"1 key\(s\) from \S*/var/keyring.snapshot")
        self.assertEqual(stat.S_IMODE(os.stat(dump).st_mode), 0o600)
        with open(dump) as f:
            self.assertNotIn(secret, f.read())
        p = self.cli(gw, "import", dump)
        self.assertIn("imported 1 key(s) of 1", p.stdout)
        self.assertIn("epoch is now", p.stdout)
        self.assertTrue(wait_for(lambda: metric(gw, "sluice_keystore_data_lost") == 0 and
                                 metric(gw, SOURCE_STORE) == 1, timeout=3))
        self.assertIn("holds its data again", gw.stderr_text())
        self.assertEqual(self.key_status(gw, secret), 200)
        # a gateway that never saw the old Redis reads the key from it
        gw2 = self.start_gateway(config(self.up, redis))
        self.assertEqual(self.key_status(gw2, secret), 200)
        self.assertIn("persists nothing", gw2.stderr_text())
        # the same file again changes nothing; the store's export is the same key
        self.assertIn("imported 1 key(s) of 1", self.cli(gw, "import", dump).stdout)
        p = self.cli(gw, "export", "--from", "store")
        self.assertIn("1 key(s) from the key store", p.stderr)
        self.assertIn(kid, p.stdout)

    def test_keys_created_after_the_loss_work_too_and_force_restores_the_epoch(self):
        redis = self.start_redis()
        gw = self.start_gateway(config(self.up, redis))
        kid, secret = self.create_key(gw)
        self.lose_redis_data(redis, gw, kid, secret)
        # a key created in the empty store works alongside the ones kept
        _, secret_new = self.create_key(gw)
        self.assertTrue(wait_for(lambda: self.key_status(gw, secret_new) == 200, timeout=1.5))
        self.assertEqual(self.key_status(gw, secret), 200)
        self.assertEqual(metric(gw, "sluice_api_keys"), 2)
        dump = os.path.join(gw.dir, "keys.jsonl")
        self.cli(gw, "export", "--from", "snapshot", "--out", dump)
        # the store holds a key now: import adds, but keeps the store's epoch
        p = self.cli(gw, "import", dump)
        self.assertIn("imported 1 key(s) of 1", p.stdout)
        self.assertIn("epoch kept", p.stdout)
        self.assertEqual(metric(gw, "sluice_keystore_data_lost"), 1)
        # a key with other data is refused, unless --force
        with open(dump) as f:
            lines = f.read().splitlines()
        doc = json.loads(lines[1])
        doc["key"]["tier"] = "anonymous"
        other = os.path.join(gw.dir, "other.jsonl")
        with open(other, "w") as f:
            f.write(lines[0] + "\n" + json.dumps(doc) + "\n")
        p = self.cli(gw, "import", other, code=1)
        self.assertIn("exists with other data", p.stderr)
        p = self.cli(gw, "import", dump, "--force")
        self.assertIn("epoch is now", p.stdout)
        self.assertTrue(wait_for(lambda: metric(gw, "sluice_keystore_data_lost") == 0,
                                 timeout=3))
        for s in (secret, secret_new):
            self.assertEqual(self.key_status(gw, s), 200)
