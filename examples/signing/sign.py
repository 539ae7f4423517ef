#!/usr/bin/env python3
"""Send one request signed for sluice (docs/protection.md, "Request signing").

    SLUICE_KEY=key_... SLUICE_SIGNING_SECRET=<64 hex digits> \
        python3 sign.py METHOD URL [BODY]

Prints the response body; exits 0 on a 2xx answer, 1 otherwise. Standard
library only."""

import hashlib
import hmac
import http.client
import os
import secrets
import sys
import time
import urllib.parse


def canonical(method, path, query, timestamp, nonce, body):
    # SORTED_QUERY: the raw name=value parts, sorted bytewise, as sent (no decoding).
    parts = sorted(query.encode().split(b"&")) if query else []
    return b"\n".join([method.encode(), path.encode(), b"&".join(parts),
                       timestamp.encode(), nonce.encode(),
                       hashlib.sha256(body).hexdigest().encode()])


def signed_headers(key_id, secret_hex, method, path, query, body):
    timestamp = str(int(time.time()))
    nonce = secrets.token_hex(16)
    msg = canonical(method, path, query, timestamp, nonce, body)
    mac = hmac.new(bytes.fromhex(secret_hex), msg, hashlib.sha256).hexdigest()
    return {"X-Sluice-Key": key_id, "X-Sluice-Timestamp": timestamp,
            "X-Sluice-Nonce": nonce, "X-Sluice-Signature": "v1=" + mac}


def main():
    method, url = sys.argv[1].upper(), sys.argv[2]
    body = sys.argv[3].encode() if len(sys.argv) > 3 else b""
    u = urllib.parse.urlsplit(url)
    path = u.path or "/"
    headers = signed_headers(os.environ["SLUICE_KEY"], os.environ["SLUICE_SIGNING_SECRET"],
                             method, path, u.query, body)
    conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(u.hostname, u.port)
    target = path + ("?" + u.query if u.query else "")
    conn.request(method, target, body=body if body else None, headers=headers)
    resp = conn.getresponse()
    sys.stdout.write(resp.read().decode(errors="replace"))
    sys.stdout.write("\n")
    return 0 if 200 <= resp.status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
