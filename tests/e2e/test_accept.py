"""Bursts of connections (issue 18): accepted in bounded batches so that
connections already open keep being served; max_connections still sheds; an
idle keep-alive connection costs little memory."""

import os
import re
import signal
import threading
import time

from harness import (ConnectionClosed, E2ETestCase, RawConn, build_request, concurrent_requests,
                     parse_response, raise_nofile)


def tally(results):
    """{outcome: count} over concurrent_requests' results: "200", "status N", or an error."""
    out = {}
    for r in results:
        if isinstance(r, bytes):
            if not r:
                key = "closed without an answer"
            else:
                try:
                    key = str(parse_response(r).status)
                except Exception as e:  # noqa: BLE001 - tallied
                    key = "unparsable (%s)" % e
        else:
            key = type(r).__name__
        out[key] = out.get(key, 0) + 1
    return out


def metric(gw, name):
    body = gw.admin_request("GET", "/metrics").body.decode()
    m = re.search(r"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), body, re.M)
    return float(m.group(1)) if m else None


class Probe(threading.Thread):
    """Requests on one keep-alive connection opened before the burst, one after
    the other until stopped; records when each was sent and answered."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.conn = RawConn(port, timeout=10)
        self.stop = threading.Event()
        self.answers = []  # (sent, answered) monotonic times
        self.statuses = []
        self.error = None

    def run(self):
        try:
            while not self.stop.is_set():
                t0 = time.monotonic()
                r = self.conn.request(build_request("GET", "/_sluice/health"))
                self.answers.append((t0, time.monotonic()))
                self.statuses.append(r.status)
                time.sleep(0.005)
        except (OSError, ConnectionClosed, ValueError) as e:
            self.error = e
        finally:
            self.conn.close()


class Bursts(E2ETestCase):
    BURST = 2000
    STOPPED = 1.0  # seconds the gateway is stopped while the burst connects

    def setUp(self):
        # the burst's sockets, the gateway's and the upstream's, all from this limit
        if raise_nofile(4 * self.BURST + 1024) < 3 * self.BURST + 512:
            self.fail("RLIMIT_NOFILE is too low for a burst of %d" % self.BURST)

    def test_burst_is_answered_while_open_connections_keep_being_served(self):
        up = self.start_upstream("A")
        gw = self.gateway_for(up, keepalive=64, server={"max_connections": 10000},
                              routes=[{"prefix": "/", "upstream": "app"}])
        probe = Probe(gw.port)
        probe.start()
        time.sleep(0.1)
        # The whole burst waits in the listen backlogs (the kernel completes the
        # handshakes) while the gateway is stopped, and arrives at once when it
        # resumes: far more than one accept batch per worker.
        gw.signal(signal.SIGSTOP)
        resumed = []

        def resume():
            resumed.append(time.monotonic())
            gw.signal(signal.SIGCONT)
        timer = threading.Timer(self.STOPPED, resume)
        timer.start()
        self.addCleanup(timer.cancel)
        req = b"GET /echo?burst=1 HTTP/1.1\r\nHost: sluice.test\r\nConnection: close\r\n\r\n"
        connected, results = concurrent_requests(gw.port, self.BURST, req, timeout=30)
        done = time.monotonic()
        admin = gw.admin_request("GET", "/health")
        probe.stop.set()
        probe.join(10)
        self.assertTrue(resumed, "the burst was over before the gateway was resumed")
        self.assertEqual(connected, self.BURST)
        self.assertEqual(tally(results), {"200": self.BURST}, "burst of %d (%.1fs after resuming)"
                         % (self.BURST, done - resumed[0]))
        self.assertIsNone(probe.error, "the keep-alive connection opened before the burst "
                          "failed during it")
        self.assertEqual(set(probe.statuses), {200})
        # requests sent on the open connection while the burst was taken in
        during = [b - a for a, b in probe.answers if resumed[0] <= a and b <= done]
        self.assertGreaterEqual(len(during), 1, "the open connection was not served while "
                                "%d connections were taken in (%.2fs)"
                                % (self.BURST, done - resumed[0]))
        self.assertLess(max(during), 1.0, "an answer on the open connection took %.2fs "
                        "during the burst" % max(during))
        self.assertGreater(metric(gw, "sluice_accept_deferred_total") or 0, 0,
                           "the burst never reached an accept batch's bound")
        self.assertEqual(admin.status, 200, "the admin listener after a burst")
        self.assertEqual(gw.request("GET", "/_sluice/health").status, 200)

    def test_max_connections_sheds_a_burst(self):
        up = self.start_upstream("A")
        limit, burst = 100, 500
        gw = self.gateway_for(up, workers=1, server={"max_connections": limit},
                              routes=[{"prefix": "/", "upstream": "app"}])
        req = b"GET /echo HTTP/1.1\r\nHost: sluice.test\r\nConnection: close\r\n\r\n"
        connected, results = concurrent_requests(gw.port, burst, req, timeout=30)
        t = tally(results)
        served = t.pop("200", 0)
        self.assertGreaterEqual(served, limit // 2, "outcomes: 200 x %d, %r" % (served, t))
        self.assertLess(served, burst, "a burst of %d with max_connections: %d was all served"
                        % (burst, limit))
        self.assertEqual(set(t) - {"closed without an answer", "ConnectionResetError"}, set(),
                         "a shed connection got something other than a close: %r" % t)
        rejected = metric(gw, "sluice_connections_rejected_total")
        self.assertGreaterEqual(rejected or 0, burst - served)
        # below the bound again: served
        self.assertEqual(gw.request("GET", "/echo?after=1").status, 200)


class IdleMemory(E2ETestCase):
    N = 1000
    # The goal is about 1 KiB (bench/idle_conns.py); 4 KiB still tells apart a
    # regression to a 64 KiB read buffer kept per connection (~7 KiB measured).
    MAX_KIB_PER_CONN = 4.0

    def rss_kib(self, gw):
        with open("/proc/%d/status" % gw.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        self.fail("no VmRSS")

    def test_idle_keepalive_connections_cost_little_memory(self):
        raise_nofile(2 * self.N + 1024)
        up = self.start_upstream("A")
        gw = self.gateway_for(up, workers=1, keepalive=64,
                              server={"max_connections": 5000, "timeouts": {"idle": "300s"}},
                              routes=[{"prefix": "/", "upstream": "app"}])
        req = build_request("GET", "/echo?idle=1")

        def open_used(n):
            conns = []
            for _ in range(n):
                c = self.raw(gw)
                c.send(req)
                conns.append(c)
            for c in conns:
                self.assertEqual(c.read_response().status, 200)
            return conns

        for c in open_used(20):  # first-use allocations (pools, metrics) out of the way
            c.close()
        time.sleep(0.2)
        before = self.rss_kib(gw)
        conns = []
        while len(conns) < self.N:
            conns += open_used(min(100, self.N - len(conns)))
        time.sleep(0.3)
        after = self.rss_kib(gw)
        per = (after - before) / self.N
        if os.environ.get("SLUICE_E2E_VERBOSE"):
            print("\nRSS %d -> %d KiB: %.2f KiB per idle connection" % (before, after, per))
        # every connection is still usable
        self.assertEqual(conns[0].request(req).status, 200)
        self.assertEqual(conns[-1].request(req).status, 200)
        if os.environ.get("SLUICE_SANITIZED"):
            return  # ASan's allocator (redzones, quarantine) says nothing about ours
        self.assertLess(per, self.MAX_KIB_PER_CONN, "RSS %d -> %d KiB for %d idle keep-alive "
                        "connections" % (before, after, self.N))
