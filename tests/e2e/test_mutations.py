"""Mutated requests: a seeded, bounded stream of valid requests with bytes
flipped, inserted, deleted or split at random points. Whatever arrives, the
gateway answers with a well-formed response or closes the connection --
never hangs, never crashes (under ASan/UBSan the harness also fails on any
sanitizer report) -- and keeps serving clean requests afterwards."""

import random
import socket
import unittest

from harness import E2ETestCase, build_request, parse_response

SEED = 20261123
CASES = 300

BASES = [
    build_request("GET", "/echo?a=1&b=2", headers={"X-Forwarded-For": "1.2.3.4"}),
    build_request("POST", "/echo", body=b"hello world"),
    build_request("PUT", "/echo", body=[b"abc", b"defgh"], chunked=True),
    build_request("GET", "/echo/a/../b/%2e%2e/c", headers={"Expect": "100-continue"}),
    build_request("HEAD", "/echo", headers={"Connection": "x-y", "X-Y": "z"}),
]
INTERESTING = [b"\r\n", b"\n", b"\r", b"\x00", b" ", b"\t", b":", b"0", b"-1",
               b"Transfer-Encoding: chunked\r\n", b"Content-Length: 99\r\n", b"\xff", b"%"]


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op == 1:
            data[pos:pos] = rng.choice(INTERESTING)
        elif op == 2 and data:
            del data[pos:pos + rng.randint(1, 8)]
        else:
            data[pos:pos] = data[max(0, pos - 16):pos]
    return bytes(data)


class Mutations(E2ETestCase):
    def test_mutated_requests_never_hang_or_crash(self):
        up = self.start_upstream("A")
        gw = self.start_gateway_quiet(up)
        rng = random.Random(SEED + self.stages)
        statuses = {}
        resets = 0
        for case in range(CASES):
            data = mutate(rng, rng.choice(BASES))
            with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
                # send in random pieces, then half-close so an incomplete
                # request ends instead of waiting for the header timeout
                i = 0
                while i < len(data):
                    n = rng.randint(1, len(data) - i)
                    s.sendall(data[i:i + n])
                    i += n
                s.shutdown(socket.SHUT_WR)
                got = b""
                try:
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        got += chunk
                except socket.timeout:
                    self.fail("case %d hung: %r" % (case, data[:200]))
                except ConnectionResetError:
                    resets += 1
            if got:
                first = got.split(b"\r\n", 1)[0]
                self.assertRegex(first, rb"^HTTP/1\.1 [1-5]\d\d ",
                                 "case %d: not a status line: %r" % (case, got[:200]))
                code = int(first.split()[1])
                statuses[code] = statuses.get(code, 0) + 1
                if code >= 400 and code != 404 and code < 500:
                    # a gateway error: well-formed JSON with a length
                    parse_response(got.split(b"HTTP/1.1 100 Continue\r\n\r\n")[-1],
                                   head_request=data.startswith(b"HEAD"))
        self.assertTrue(gw.running(), "the gateway died")
        # still healthy and correct for a clean request
        r = gw.request("GET", "/echo/clean?after=1")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["query"], "after=1")
        self.assertIn(400, statuses, "no mutation was rejected: the mutator is not biting")
        if self.stages:
            self.assertIn(429, statuses, "the stream never reached the rate limit: %r" % statuses)
        # lingering close: an error answer is not destroyed by a reset
        self.assertEqual(resets, 0, "connections reset instead of closed: %d" % resets)

    def test_mutated_requests_through_limits_and_cache(self):
        """The same stream through the rate-limit and cache stages (HITs,
        coalesced MISSes, 429s), where exchanges end in more ways."""
        self.stages = True
        self.test_mutated_requests_never_hang_or_crash()

    stages = False

    def start_gateway_quiet(self, up):
        from harness import make_config
        routes = None
        if self.stages:
            routes = [{"path": "/echo/clean", "limits": "off"},
                      {"prefix": "/", "limits": {"anonymous": ["8/min", "concurrency 50"]},
                       "cache": {"ttl": "60s", "stale_if_error": "60s"}}]
        cfg = make_config({"app": up}, routes=routes,
                          server={"access_log": False, "timeouts": {"header": "2s", "idle": "2s"}})
        return self.start_gateway(cfg)


if __name__ == "__main__":
    unittest.main()
