"""The endpoints sluice's e2e tests call (the Express app has the same ones).

Hit counters live in files under $APP_STATE_DIR (one byte appended per hit),
so every gunicorn worker process counts into the same number."""

import hashlib
import os

from django.http import HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.views.decorators.http import etag as etag_decorator
from rest_framework.decorators import api_view, throttle_classes
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle

STATE = os.environ.get("APP_STATE_DIR", "/tmp")
MB = 1 << 20


def hit(name):
    """Count one hit of <name>; returns the count including it."""
    fd = os.open(os.path.join(STATE, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, b".")
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def count(name):
    try:
        return os.path.getsize(os.path.join(STATE, name))
    except OSError:
        return 0


@api_view(["POST"])
def leads(request):
    """Echo what arrived, as DRF reads a body: request.stream is None when
    there is no CONTENT_LENGTH (a chunked body under a WSGI server)."""
    h = hashlib.sha256()
    n = 0
    stream = request.stream
    while stream is not None:
        chunk = stream.read(64 * 1024)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    return Response({"received": n, "sha256": h.hexdigest(),
                     "content_length": request.META.get("CONTENT_LENGTH") or None,
                     "transfer_encoding": request.META.get("HTTP_TRANSFER_ENCODING"),
                     "lead": hit("leads")}, status=201)


@api_view(["GET", "HEAD"])
def market_overview(request):
    return Response({"sentiment": "bullish", "indices": {"SLC": 101.5},
                     "served": hit("market")})


def big(request):
    """<mb> MiB (?mb=N) streamed in 64 KiB pieces without a length: gunicorn
    sends it chunked. Byte i is i % 251."""
    size = int(request.GET.get("mb", "1")) * MB
    piece = bytes(i % 251 for i in range(251 * 262))  # 65762 bytes, a whole period

    def gen():
        sent = 0
        while sent < size:
            n = min(len(piece) // 251 * 251, size - sent)
            yield piece[:n]
            sent += n
    hit("big")
    return StreamingHttpResponse(gen(), content_type="application/octet-stream")


def empty(request):
    return HttpResponse(status=204)


@etag_decorator(lambda request: '"overview-v1"')
def etag(request):
    return HttpResponse("versioned body\n", content_type="text/plain")


def redirect(request):
    to = request.GET.get("to", "/api/headers")
    if request.GET.get("absolute"):
        to = request.build_absolute_uri(to)
    return HttpResponseRedirect(to)


def headers(request):
    """The request as the app saw it: HTTP_* of the WSGI environ, the host,
    scheme and client address Django derives from them."""
    seen = {k[5:].lower().replace("_", "-"): v for k, v in request.META.items()
            if k.startswith("HTTP_")}
    r = Response({"headers": seen, "host": request.get_host(), "scheme": request.scheme,
                  "absolute": request.build_absolute_uri("/x"),
                  "remote_addr": request.META.get("REMOTE_ADDR"),
                  "path": request.path, "query": request.META.get("QUERY_STRING", ""),
                  "method": request.method})
    r["X-App-Internal"] = "secret"
    return r


headers = api_view(["GET", "HEAD", "POST", "PUT", "DELETE"])(headers)


@api_view(["GET"])
@throttle_classes([AnonRateThrottle])
def drf_throttled(request):
    return Response({"ok": True})


@api_view(["GET"])
def stats(request):
    return Response({name: count(name) for name in ("leads", "market", "big")})
