"""Operations: SIGHUP reload (during a slow request; a broken config keeps the old
one), SIGTERM drain, the access log."""

import errno
import signal
import socket
import threading
import time
import unittest

from harness import E2ETestCase, RawConn, build_request, make_config, wait_for


def connect_refused(port):
    """True when a TCP connect to <port> is refused (or reset at once)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except ConnectionRefusedError:
        return True
    except OSError as e:
        return e.errno in (errno.ECONNREFUSED, errno.ECONNRESET)
    try:
        s.settimeout(0.2)
        s.sendall(b"GET /_sluice/health HTTP/1.1\r\nHost: x\r\n\r\n")
        data = s.recv(100)
        return data == b""  # accepted by a listener being torn down, then closed
    except (ConnectionResetError, BrokenPipeError):
        return True
    except (socket.timeout, TimeoutError):
        return False
    finally:
        s.close()


class Reload(E2ETestCase):
    def setUp(self):
        self.a = self.start_upstream("A")
        self.b = self.start_upstream("B")

    def config(self, new_route):
        routes = [{"prefix": "/", "upstream": "app"}]
        if new_route:
            routes.insert(0, {"prefix": "/echo/new", "upstream": "b"})
        return make_config({"app": self.a, "b": self.b}, routes=routes)

    def served_by(self, gw, path):
        r = gw.request("GET", path)
        return r.header("X-Upstream") if r.status == 200 else r.status

    def test_sighup_during_slow_request(self):
        gw = self.start_gateway(self.config(False))
        pid = gw.proc.pid
        idle = self.raw(gw)
        self.assertEqual(idle.request(build_request("GET", "/echo?idle=1")).status, 200)
        slow = self.raw(gw)
        slow.send(build_request("GET", "/slow?ms=1500"))
        self.assertTrue(self.a.wait_in_flight(1, match="/slow"),
                        "slow request never reached the upstream")
        self.assertEqual(self.served_by(gw, "/echo/new"), "A")

        gw.reload(self.config(True))
        switched = wait_for(lambda: self.served_by(gw, "/echo/new") == "B", timeout=5)
        self.assertTrue(switched, "the new route table did not apply within 5 s of SIGHUP\n"
                        + gw.describe())
        self.assertEqual(self.served_by(gw, "/echo/new/deeper"), "B")
        self.assertEqual(self.served_by(gw, "/echo/other"), "A")

        resp = slow.read_response()
        self.assertEqual(resp.status, 200, "the in-flight request did not survive the reload")
        self.assertEqual(resp.json()["query"], "ms=1500")
        self.assertEqual(resp.header("X-Upstream"), "A")
        # connections opened before the reload keep working
        self.assertEqual(slow.request(build_request("GET", "/echo?after=1")).status, 200)
        self.assertEqual(idle.request(build_request("GET", "/echo?idle=2")).status, 200)
        self.assertTrue(gw.running())
        self.assertEqual(gw.proc.pid, pid)

    def test_sighup_with_broken_config_keeps_the_old_one(self):
        gw = self.start_gateway(self.config(False))
        idle = self.raw(gw)
        self.assertEqual(idle.request(build_request("GET", "/echo")).status, 200)
        err0, out0 = len(gw.stderr_text()), len(gw.stdout_text())
        good_text = gw.config_text
        broken = good_text.replace("server:\n", "server:\n  bogus_reload_key: 1\n", 1)
        self.assertNotEqual(broken, good_text)
        gw.reload(broken)
        logged = wait_for(lambda: "bogus_reload_key" in gw.stderr_text()[err0:]
                          + gw.stdout_text()[out0:], timeout=5)
        self.assertTrue(gw.running(), "gateway died on a broken config\n" + gw.describe())
        self.assertEqual(self.served_by(gw, "/echo/new"), "A")
        self.assertEqual(idle.request(build_request("GET", "/echo?after=1")).status, 200)
        self.assertTrue(logged, "the rejected config was not logged with the bad key's name\n"
                        + gw.describe())
        # reloading still works afterwards
        gw.reload(self.config(True))
        self.assertTrue(wait_for(lambda: self.served_by(gw, "/echo/new") == "B", timeout=5),
                        "a good config after a bad one did not apply\n" + gw.describe())


    def test_reload_storm_under_load(self):
        gw = self.start_gateway(self.config(False))
        stop = threading.Event()
        errors, counts = [], [0]

        def client(k):
            while not stop.is_set():
                try:
                    with RawConn(gw.port) as c:
                        for i in range(20):
                            r = c.request(build_request("GET", "/echo/new?k=%d&i=%d" % (k, i)))
                            if r.status != 200 or r.header("X-Upstream") not in ("A", "B"):
                                errors.append(r)
                            counts[0] += 1
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(20):
                gw.reload(self.config(i % 2 == 0))
                time.sleep(0.05)
        finally:
            time.sleep(0.2)
            stop.set()
            for t in threads:
                t.join(15)
        self.assertEqual(errors[:5], [])
        self.assertGreater(counts[0], 50)
        self.assertTrue(gw.running(), gw.describe())
        final = wait_for(lambda: self.served_by(gw, "/echo/new") == "A", timeout=5)
        self.assertTrue(final, "the last config (no /echo/new route) did not settle")


class Drain(E2ETestCase):
    def test_sigterm_drains_in_flight_then_exits_0(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up, server={"timeouts": {"drain": "20s"}})
        idle = self.raw(gw)
        self.assertEqual(idle.request(build_request("GET", "/echo")).status, 200)
        slow = self.raw(gw)
        slow.send(build_request("GET", "/slow?ms=2000"))
        self.assertTrue(up.wait_in_flight(1, match="/slow"),
                        "slow request never reached the upstream")
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)

        refused = wait_for(lambda: connect_refused(gw.port), timeout=3, interval=0.05)
        self.assertTrue(refused, "new connections still accepted 3 s after SIGTERM")
        self.assertTrue(gw.running(), "gateway exited before its in-flight request finished")

        resp = slow.read_response()
        self.assertEqual(resp.status, 200, "the in-flight request was not drained")
        self.assertEqual(resp.json()["query"], "ms=2000")
        code = gw.wait_exit(8)
        self.assertIsNotNone(code, "gateway still running 8 s after its last request finished "
                             "(an idle keep-alive connection held it?)\n" + gw.describe())
        self.assertEqual(code, 0, gw.describe())
        self.assertGreaterEqual(time.monotonic() - t0, 1.0)
        self.assertTrue(idle.wait_closed(2), "idle client connection not closed")
        self.assertTrue(connect_refused(gw.port))

    def test_sigterm_when_idle_exits_0_quickly(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up)
        self.assertEqual(gw.request("GET", "/echo").status, 200)
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        code = gw.wait_exit(5)
        self.assertIsNotNone(code, "idle gateway did not exit within 5 s of SIGTERM")
        self.assertEqual(code, 0, gw.describe())
        self.assertLess(time.monotonic() - t0, 5)

    def test_drain_is_bounded_by_the_drain_timeout(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up, server={"timeouts": {"drain": "1s"}})
        slow = self.raw(gw)
        slow.send(build_request("GET", "/slow?ms=8000"))
        self.assertTrue(up.wait_in_flight(1, match="/slow"))
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        code = gw.wait_exit(6)
        self.assertIsNotNone(code, "gateway waited more than 6 s with drain: 1s")
        self.assertGreaterEqual(time.monotonic() - t0, 0.9, "did not wait for the drain timeout")
        self.assertEqual(code, 0, gw.describe())


class AccessLog(E2ETestCase):
    def test_one_line_per_request_on_stdout(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up, server={"access_log": True})
        markers = ["mk%da7" % i for i in range(5)]
        for i, m in enumerate(markers):
            path = "/echo?m=" + m if i != 4 else "/status/404?m=" + m
            gw.request("GET", path)

        def lines():
            return [l for l in gw.stdout_text().splitlines() if "mk" in l]
        ok = wait_for(lambda: all(any(m in l for l in lines()) for m in markers), timeout=3)
        self.assertTrue(ok, "access log lines not on stdout within 3 s (not flushed?): %r"
                        % gw.stdout_text()[-2000:])
        for m in markers:
            got = [l for l in lines() if m in l]
            self.assertEqual(len(got), 1, "want one line for %s, got %r" % (m, got))
            self.assertIn("GET", got[0])
        self.assertRegex([l for l in lines() if markers[4] in l][0], r"\b404\b")
        self.assertRegex([l for l in lines() if markers[0] in l][0], r"\b200\b")

    def test_access_log_off(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up, server={"access_log": False})
        gw.request("GET", "/echo?m=offmarker1")
        self.assertEqual(gw.request("GET", "/echo?m=offmarker2").status, 200)
        gw.stop()
        self.assertNotIn("offmarker", gw.stdout_text())


if __name__ == "__main__":
    unittest.main()
