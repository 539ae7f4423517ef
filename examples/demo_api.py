#!/usr/bin/env python3
"""A small demo API to put behind sluice (see examples/quickstart.yaml).

It imitates a market/leads application: a slow market overview (about 200 ms,
so caching visibly helps later), market indices, a public leads form, public
content pages and a minimal GraphQL endpoint. Python 3 standard library only.

    python3 examples/demo_api.py --port 8000
"""

import argparse
import itertools
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MAX_BODY = 1 << 20  # the demo refuses larger request bodies

INDICES = [
    {"symbol": "SPX", "name": "S&P 500", "value": 5021.84, "change_pct": 0.42},
    {"symbol": "NDX", "name": "Nasdaq 100", "value": 17642.11, "change_pct": 0.87},
    {"symbol": "DJI", "name": "Dow Jones", "value": 38996.39, "change_pct": -0.11},
    {"symbol": "UKX", "name": "FTSE 100", "value": 7682.50, "change_pct": 0.05},
    {"symbol": "DAX", "name": "DAX 40", "value": 17423.37, "change_pct": 0.31},
]

PAGES = [
    {"slug": "about", "title": "About us", "updated": "2024-01-15"},
    {"slug": "pricing", "title": "Pricing", "updated": "2024-02-01"},
    {"slug": "faq", "title": "Frequently asked questions", "updated": "2024-02-20"},
    {"slug": "contact", "title": "Contact", "updated": "2023-11-03"},
]


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr, quiet=False):
        super().__init__(addr, DemoHandler)
        self.quiet = quiet
        self.lead_ids = itertools.count(1001)
        self.lock = threading.Lock()

    def next_lead_id(self):
        with self.lock:
            return next(self.lead_ids)


class DemoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "demo-api/1.0"
    disable_nagle_algorithm = True

    # -- plumbing -----------------------------------------------------------

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            sys.stderr.write("demo_api: %s %s\n" % (self.address_string(), fmt % args))

    def read_body(self):
        """The request body (Content-Length or chunked), or None when too big."""
        te = self.headers.get("Transfer-Encoding", "")
        if te.lower().strip().endswith("chunked"):
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def send_json(self, status, obj, extra_headers=()):
        body = json.dumps(obj, indent=None).encode()
        head = ["HTTP/1.1 %d %s" % (status, self.responses.get(status, ("",))[0]),
                "Server: " + self.version_string(),
                "Date: " + self.date_time_string(),
                "Content-Type: application/json",
                "Content-Length: %d" % len(body)]
        head.extend("%s: %s" % h for h in extra_headers)
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            data += body
        self.wfile.write(data)
        self.log_request(status, len(body))

    def error_json(self, status, message):
        self.send_json(status, {"error": self.responses.get(status, ("Error",))[0],
                                "message": message})

    # -- routing ------------------------------------------------------------

    def dispatch(self):
        path = urlsplit(self.path).path
        body = self.read_body()
        if body is None:
            self.close_connection = True
            return self.error_json(413, "request body over %d bytes" % MAX_BODY)
        route = ROUTES.get((self.command if self.command != "HEAD" else "GET", path))
        if route is None:
            if any(p == path for (_, p) in ROUTES):
                return self.error_json(405, "method %s not allowed on %s" % (self.command, path))
            return self.error_json(404, "no such endpoint: %s" % path)
        return route(self, body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = dispatch

    # -- endpoints ----------------------------------------------------------

    def market_overview(self, body):
        time.sleep(0.2)  # an expensive aggregate; the gateway cache will hide this
        gainers = sorted(INDICES, key=lambda i: -i["change_pct"])
        self.send_json(200, {
            "as_of": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sentiment": "bullish" if sum(i["change_pct"] for i in INDICES) > 0 else "bearish",
            "top_gainer": gainers[0]["symbol"],
            "top_loser": gainers[-1]["symbol"],
            "indices": len(INDICES),
            "volume": random.randint(3_000_000_000, 5_000_000_000),
        })

    def market_indices(self, body):
        self.send_json(200, {"indices": INDICES})

    def create_lead(self, body):
        try:
            lead = json.loads(body or b"{}")
        except ValueError:
            return self.error_json(400, "body must be JSON")
        if not isinstance(lead, dict):
            return self.error_json(400, "body must be a JSON object")
        if "email" in lead and "@" not in str(lead["email"]):
            return self.send_json(400, {"email": ["Enter a valid email address."]})
        lead_id = self.server.next_lead_id()
        self.send_json(201, dict(lead, id=lead_id, status="new"),
                       extra_headers=[("Location", "/public/leads/%d/" % lead_id)])

    def account(self, body):
        # Behind sluice, only requests with a valid key or token get here
        # (the route says auth: required); the app need not check again.
        self.send_json(200, {"account": "demo", "plan": "pro",
                             "authenticated_by": "sluice" if (
                                 self.headers.get("X-API-Key")
                                 or self.headers.get("Authorization")) else "nobody"})

    def content_pages(self, body):
        self.send_json(200, PAGES)

    def graphql(self, body):
        try:
            req = json.loads(body or b"{}")
            query = req["query"]
        except (ValueError, KeyError, TypeError):
            return self.send_json(400, {"errors": [{"message": "expected {\"query\": ...}"}]})
        q = str(query).strip()
        if q.startswith("mutation"):
            data = {"ok": True, "id": self.server.next_lead_id()}
        else:
            data = {"indices": [{"symbol": i["symbol"], "value": i["value"]} for i in INDICES]}
        self.send_json(200, {"data": data})


ROUTES = {
    ("GET", "/api/market/overview"): DemoHandler.market_overview,
    ("GET", "/api/market/indices"): DemoHandler.market_indices,
    ("GET", "/api/account/"): DemoHandler.account,
    ("POST", "/public/leads/"): DemoHandler.create_lead,
    ("GET", "/public/content/pages"): DemoHandler.content_pages,
    ("POST", "/graphql/"): DemoHandler.graphql,
}


def main(argv=None):
    ap = argparse.ArgumentParser(description="sluice demo API (stdlib only)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--quiet", action="store_true", help="no per-request log lines")
    args = ap.parse_args(argv)
    server = DemoServer((args.host, args.port), quiet=args.quiet)
    sys.stderr.write("demo_api: listening on http://%s:%d\n"
                     % (args.host, server.server_address[1]))
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
