"""Helpers for sluice's end-to-end tests (Python 3 standard library only).

- free_port(), start_upstream(): free loopback ports, test upstreams
  (in-process on a thread, or a subprocess).
- Gateway: writes a config (a YAML template or a dict) with free ports into a
  temporary directory, starts `$SLUICE_BIN serve -c FILE` with stdout/stderr in
  files there, waits for GET /_sluice/health == 200, and stops it with SIGTERM
  (SIGKILL after 10 s). Sanitizer reports on its stderr fail the test.
- RawConn: raw-socket client that sends bytes and reads whole responses
  (Content-Length, chunked, close-delimited, HEAD, 1xx), read_until_close,
  wait_closed; keepalive_requests(); concurrent_requests() (selectors);
  http_request() (http.client convenience).
- E2ETestCase: unittest base class that owns and cleans up all of the above.

Environment: SLUICE_BIN (the binary; default build/sluice under the repo root),
SLUICE_E2E_TIMEOUT (per-request seconds, default 10), SLUICE_E2E_KEEP=1 (keep
the temporary directories), SLUICE_E2E_VERBOSE=1 (print gateway stderr always).
"""

import atexit
import collections
import ctypes
import errno
import http.client
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parents[1]
sys.path.insert(0, str(E2E_DIR))

import upstream as upstream_mod  # noqa: E402
from upstream import UpstreamServer, pattern_bytes  # noqa: E402,F401

TIMEOUT = float(os.environ.get("SLUICE_E2E_TIMEOUT", "10"))
START_TIMEOUT = float(os.environ.get("SLUICE_E2E_START_TIMEOUT", "10"))
STOP_TIMEOUT = 10.0
ADMIN_TOKEN = "e2e-admin-token"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ERROR: ThreadSanitizer", "WARNING: ThreadSanitizer")


def sluice_bin():
    b = os.environ.get("SLUICE_BIN") or "build/sluice"
    p = Path(b)
    if not p.is_absolute():
        p = REPO_ROOT / p
    return str(p)


def raise_nofile(want=65536):
    """Raise RLIMIT_NOFILE's soft limit (children, the gateway too, inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


raise_nofile()


_HANDED_OUT = collections.deque(maxlen=256)


def free_port():
    """A loopback TCP port that was free a moment ago (bind 0, read, close),
    and not one of the last ports handed out: the kernel may give a port
    just closed again, so two calls in a row (a gateway's listen and admin
    ports) could return the same one."""
    for _ in range(64):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.append(port)
            return port
    raise RuntimeError("no fresh loopback port in 64 tries")


def wait_for(pred, timeout=TIMEOUT, interval=0.02):
    """Poll <pred> until it returns a true value (returned) or <timeout> passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Upstreams


class UpstreamProcess:
    """upstream.py in a subprocess; same surface as UpstreamServer for tests."""

    def __init__(self, name="upstream", idle_timeout=None, drop_after=None):
        cmd = [sys.executable, str(E2E_DIR / "upstream.py"), "--port", "0", "--name", name]
        if idle_timeout is not None:
            cmd += ["--idle-timeout", str(idle_timeout)]
        if drop_after is not None:
            cmd += ["--drop-after", str(drop_after)]
        self.name = name
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError("upstream subprocess did not start: %r" % line)
        self.port = int(line.split()[1])

    def _get(self, path):
        r = http_request(self.port, "GET", path)
        return r.json()

    def stats(self):
        return self._get("/count")

    def reset(self):
        return self._get("/count/reset")

    def wait_in_flight(self, n, timeout=TIMEOUT, match=None):
        return bool(wait_for(lambda: upstream_mod.count_active(self.stats(), match) >= n,
                             timeout))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def start_upstream(name="upstream", subprocess_mode=False, **kw):
    """Start a test upstream (see upstream.py) and return it; the caller stops it."""
    if subprocess_mode:
        return UpstreamProcess(name=name, **kw)
    return UpstreamServer(name=name, **kw).start()


class NginxServer:
    """A real nginx (Debian's) on a free loopback port as an upstream: `return 200`
    on every path, one worker with <worker_connections> (a small app server's
    capacity: past it nginx refuses connections). Everything it writes stays in
    a temp prefix."""

    def __init__(self, worker_connections=1024):
        self.worker_connections = worker_connections
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sluice-nginx-")
        self.proc = None

    def start(self):
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = (user + "worker_processes 1;\ndaemon off;\nmaster_process on;\n"
                "pid %(d)s/nginx.pid;\nerror_log %(d)s/error.log warn;\n"
                "events { worker_connections %(wc)d; }\n"
                "http {\n access_log off;\n client_body_temp_path %(d)s/tmp/body;\n"
                " proxy_temp_path %(d)s/tmp/proxy;\n fastcgi_temp_path %(d)s/tmp/fastcgi;\n"
                " uwsgi_temp_path %(d)s/tmp/uwsgi;\n scgi_temp_path %(d)s/tmp/scgi;\n"
                " keepalive_requests 1000000;\n"
                " server { listen 127.0.0.1:%(port)d backlog=511;"
                " location / { return 200 \"ok\\n\"; } }\n}\n"
                % {"d": self.dir, "wc": self.worker_connections, "port": self.port})
        path = os.path.join(self.dir, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(["nginx", "-p", self.dir + "/", "-e",
                                      os.path.join(self.dir, "error.log"), "-c", path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        if not wait_for(lambda: _port_open(self.port), timeout=10):
            self.stop()
            raise RuntimeError("nginx did not start: %s" % self.error_log())
        return self

    def error_log(self):
        try:
            with open(os.path.join(self.dir, "error.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class RedisServer:
    """A real redis-server on a free loopback port; it can be killed and started
    again on the same port (an outage and a recovery). Without <persist> it keeps
    nothing on disk, so a restart comes back empty; with it, an append-only file
    synced on every write brings the data back even after SIGKILL."""

    def __init__(self, port=None, persist=False):
        self.port = port or free_port()
        self.persist = persist
        self.dir = tempfile.mkdtemp(prefix="sluice-redis-")
        self.proc = None

    def start(self):
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server is not installed (scripts/deps installs it)")
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else [
            "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""] + aof +
            ["--dir", self.dir, "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent)
        _LIVE.add(self.proc)
        if not wait_for(lambda: self.ping(), timeout=START_TIMEOUT):
            raise RuntimeError("redis-server did not answer PING on port %d" % self.port)
        return self

    def command(self, *args, timeout=2.0):
        """One command over a fresh connection (RESP); returns the decoded reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            f = s.makefile("rb")
            return _resp_read(f)

    def ping(self):
        try:
            return self.command("PING") == "PONG"
        except OSError:
            return False
        except RuntimeError:  # LOADING: still reading its append-only file
            return False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        _LIVE.discard(self.proc)

    def stop(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port


def _resp_read(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RuntimeError("bad RESP reply %r" % line)


# ---------------------------------------------------------------------------
# Config


_PLAIN = re.compile(r"^[A-Za-z0-9_/][A-Za-z0-9_./-]*$")


def _scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    reserved = ("true", "false", "null", "yes", "no", "on", "off", "~")
    if _PLAIN.match(s) and s.lower() not in reserved:
        return s
    return json.dumps(s)


def to_yaml(obj, indent=0):
    """Block-style YAML for a config made of dicts, lists and scalars."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict):
                out.append("%s%s:" % (pad, k))
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list) and v and all(isinstance(i, dict) for i in v):
                out.append("%s%s:" % (pad, k))
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                out.append("%s%s: [%s]" % (pad, k, ", ".join(_scalar(i) for i in v)))
            else:
                out.append("%s%s: %s" % (pad, k, _scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            body = to_yaml(item, indent + 2).split("\n")
            body[0] = pad + "- " + body[0][indent + 2:]
            out.extend(body)
    else:
        out.append(pad + _scalar(obj))
    return "\n".join(out)


def upstream_addr(u):
    """'127.0.0.1:PORT' for an upstream object, a port number, or a 'host:port' string."""
    if isinstance(u, str):
        return u
    if isinstance(u, int):
        return "127.0.0.1:%d" % u
    return "127.0.0.1:%d" % u.port


def make_config(upstreams, routes=None, server=None, admin=True, keepalive=16, workers=2):
    """A config dict. <upstreams>: {name: upstream | port | [several]}; <routes>: list of
    route dicts (None: no routes key); <server>: keys merged over the defaults
    (timeouts merged too). Listen addresses are filled in by Gateway."""
    srv = {"workers": workers, "timeouts": {}, "access_log": True}
    for k, v in (server or {}).items():
        if k == "timeouts":
            srv["timeouts"].update(v)
        else:
            srv[k] = v
    if not srv["timeouts"]:
        del srv["timeouts"]
    cfg = {"server": srv}
    if admin:
        cfg["admin"] = {"token": ADMIN_TOKEN}
    ups = {}
    for name, u in upstreams.items():
        servers = u if isinstance(u, list) else [u]
        ups[name] = {"servers": [upstream_addr(s) for s in servers], "keepalive": keepalive}
    cfg["upstreams"] = ups
    if routes is not None:
        cfg["routes"] = routes
    return cfg


# ---------------------------------------------------------------------------
# Gateway


class GatewayError(AssertionError):
    pass


_LIVE = set()  # gateway processes not yet stopped: killed at exit, whatever happened


@atexit.register
def _kill_leftovers():
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _die_with_parent():
    """In the child before exec: SIGKILL when the test runner dies (Linux prctl)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort, not on every platform
        pass


class Gateway:
    """One sluice process. <config> is a dict (see make_config) or a YAML template
    where {{PORT}} {{LISTEN}} {{ADMIN_PORT}} {{ADMIN}} {{TOKEN}} {{DIR}} and the keys
    of <subs> are replaced. Ports are chosen at construction."""

    def __init__(self, config, subs=None, env=None, name="sluice"):
        self.port = free_port()
        self.admin_port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sluice-e2e-")
        self.config_path = os.path.join(self.dir, name + ".yaml")
        self.stdout_path = os.path.join(self.dir, "stdout.log")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.subs = dict(subs or {})
        self.env = env
        self.proc = None
        self.returncode = None
        self.killed = False
        self.write_config(config)

    # -- config ----------------------------------------------------------------

    def render(self, config):
        if isinstance(config, dict):
            cfg = json.loads(json.dumps(config))  # deep copy
            srv = cfg.setdefault("server", {})
            srv.setdefault("listen", ["127.0.0.1:%d" % self.port])
            if "admin" in cfg and cfg["admin"] is not None:
                cfg["admin"].setdefault("listen", "127.0.0.1:%d" % self.admin_port)
                cfg["admin"].setdefault("token", ADMIN_TOKEN)
            elif "admin" in cfg:
                del cfg["admin"]
            return to_yaml(cfg) + "\n"
        text = str(config)
        subs = {"PORT": str(self.port), "LISTEN": "127.0.0.1:%d" % self.port,
                "ADMIN_PORT": str(self.admin_port), "ADMIN": "127.0.0.1:%d" % self.admin_port,
                "TOKEN": ADMIN_TOKEN, "DIR": self.dir}
        subs.update({k: str(v) for k, v in self.subs.items()})
        for k, v in subs.items():
            text = text.replace("{{%s}}" % k, v)
        return text

    def write_config(self, config):
        """Write <config> to the config file atomically (rename)."""
        self.config_text = self.render(config)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.config_text)
        os.replace(tmp, self.config_path)

    def check(self):
        """`sluice check` on the config: (exit code, stdout + stderr)."""
        r = subprocess.run([sluice_bin(), "check", "-c", self.config_path], capture_output=True,
                           text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr

    # -- process ---------------------------------------------------------------

    def start(self, wait=True):
        env = dict(os.environ)
        env.update(self.env or {})
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        binary = sluice_bin()
        if not os.path.exists(binary):
            raise GatewayError("gateway binary %s does not exist (build it, or set SLUICE_BIN)"
                               % binary)
        self.proc = subprocess.Popen([binary, "serve", "-c", self.config_path],
                                     stdout=self._out, stderr=self._err, env=env,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        _LIVE.add(self.proc)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GatewayError("gateway exited with %s before it was ready\nconfig:\n%s\n%s"
                                   % (self.proc.returncode, self.config_text, self.describe()))
            try:
                r = http_request(self.port, "GET", "/_sluice/health", timeout=1.0)
                if r.status == 200:
                    return
                last = "status %d" % r.status
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            time.sleep(0.02)
        self.stop(check=False)
        raise GatewayError("gateway not ready after %.0fs (last: %s)\nconfig:\n%s\n%s"
                           % (timeout, last, self.config_text, self.describe()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self, config):
        """Rewrite the config file and send SIGHUP."""
        self.write_config(config)
        self.signal(signal.SIGHUP)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Wait for the process to exit; returns its code or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout)
            return self.returncode
        except subprocess.TimeoutExpired:
            return None

    def stop(self, check=True):
        """SIGTERM, then SIGKILL after 10 s. With <check>, raise if the gateway had to be
        killed or its stderr carries a sanitizer report. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        _LIVE.discard(self.proc)
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f is not None and not f.closed:
                f.close()
        if check:
            self.check_sanitizers()
            if self.killed:
                raise GatewayError("gateway did not exit within %.0fs of SIGTERM (killed)\n%s"
                                   % (STOP_TIMEOUT, self.describe()))
        return self.returncode

    def check_sanitizers(self):
        err = self.stderr_text()
        for m in SANITIZER_MARKERS:
            if m in err:
                i = err.index(m)
                raise GatewayError("sanitizer report in gateway stderr:\n%s"
                                   % err[max(0, i - 200):i + 4000])

    def cleanup(self, keep=False):
        if not keep and not os.environ.get("SLUICE_E2E_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- output ----------------------------------------------------------------

    def stdout_text(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def describe(self, lines=40):
        err = self.stderr_text().splitlines()[-lines:]
        return "gateway stderr (%s, last %d lines):\n%s" % (self.stderr_path, len(err),
                                                             "\n".join("  | " + l for l in err))

    # -- clients ---------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, timeout=TIMEOUT):
        return http_request(self.port, method, path, body=body, headers=headers, timeout=timeout)

    def admin_request(self, method, path, token=ADMIN_TOKEN, headers=None, timeout=TIMEOUT,
                      body=None):
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        return http_request(self.admin_port, method, path, body=body, headers=h, timeout=timeout)

    def raw(self, timeout=TIMEOUT):
        return RawConn(self.port, timeout=timeout)


# ---------------------------------------------------------------------------
# Responses and raw sockets


class Response:
    def __init__(self, version, status, reason, headers, body=b"", trailers=None,
                 framing=None, raw_head=b""):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as received
        self.body = body
        self.trailers = trailers or []
        self.framing = framing  # "content-length" | "chunked" | "close" | "none"
        self.raw_head = raw_head

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def header_names(self):
        return {k.lower() for k, _ in self.headers}

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %s %s %s body=%d bytes %r>" % (
            self.status, self.reason, self.headers, len(self.body), self.body[:200])


class ConnectionClosed(Exception):
    """The peer closed (or reset) the connection before a whole response arrived."""


class _Reader:
    """Buffered reading for the response parser over a recv function."""

    def __init__(self, recv):
        self._recv = recv
        self.buf = bytearray()
        self.eof = False

    def fill(self):
        if self.eof:
            raise ConnectionClosed("connection closed; buffered %r" % bytes(self.buf[:200]))
        data = self._recv()
        if not data:
            self.eof = True
            raise ConnectionClosed("connection closed; buffered %r" % bytes(self.buf[:200]))
        self.buf += data

    def read_until(self, delim, limit=1 << 20):
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise ValueError("no %r within %d bytes" % (delim, limit))
            self.fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_all(self):
        try:
            while True:
                self.fill()
        except ConnectionClosed:
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out


def _read_response(reader, head_request=False, skip_interim=True):
    while True:
        raw_head = reader.read_until(b"\r\n\r\n")
        lines = raw_head[:-4].decode("latin-1").split("\r\n")
        m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise ValueError("bad status line %r (head %r)" % (lines[0], raw_head[:300]))
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError("bad header line %r" % line)
            headers.append((name, value.strip(" \t")))
        version, status, reason = m.group(1), int(m.group(2)), m.group(3) or ""
        resp = Response(version, status, reason, headers, raw_head=raw_head)
        if 100 <= status < 200:
            resp.framing = "none"
            if skip_interim and status != 101:
                continue
            return resp
        te = resp.header("Transfer-Encoding")
        cl = resp.header("Content-Length")
        if head_request or status in (204, 304):
            resp.framing = "none"
        elif te is not None and te.lower().replace(" ", "").endswith("chunked"):
            resp.framing = "chunked"
            chunks = []
            while True:
                line = reader.read_until(b"\r\n")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while True:
                        t = reader.read_until(b"\r\n")
                        if t == b"\r\n":
                            break
                        n, _, v = t.decode("latin-1").strip().partition(":")
                        resp.trailers.append((n, v.strip()))
                    break
                chunks.append(reader.read_exact(size))
                if reader.read_exact(2) != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
            resp.body = b"".join(chunks)
        elif cl is not None:
            resp.framing = "content-length"
            resp.body = reader.read_exact(int(cl))
        else:
            resp.framing = "close"
            resp.body = reader.read_all()
        return resp


def parse_response(data, head_request=False):
    """Parse one whole response held in <data> (bytes)."""
    chunks = [bytes(data)]
    return _read_response(_Reader(lambda: chunks.pop() if chunks else b""), head_request)


class RawConn:
    """A raw TCP client: send bytes, read whole responses, observe closing."""

    def __init__(self, port, host="127.0.0.1", timeout=TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.reader = _Reader(self._recv)
        self.reset = False

    def _recv(self):
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            self.reset = True
            return b""

    def settimeout(self, t):
        self.timeout = t
        self.sock.settimeout(t)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def read_response(self, head_request=False, skip_interim=True, timeout=None):
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            return _read_response(self.reader, head_request, skip_interim)
        finally:
            if timeout is not None:
                self.sock.settimeout(self.timeout)

    def request(self, data, head_request=False):
        self.send(data)
        return self.read_response(head_request=head_request)

    def read_until_close(self, timeout=None):
        """Everything until EOF or reset (buffered bytes included); raises socket.timeout
        if the connection stays open longer than <timeout>."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            return self.reader.read_all()
        finally:
            if timeout is not None:
                self.sock.settimeout(self.timeout)

    def wait_closed(self, timeout=TIMEOUT):
        """True when the peer closes (EOF or RST) within <timeout>, False if it stays open.
        Bytes that arrive meanwhile are kept in self.extra."""
        try:
            self.extra = self.read_until_close(timeout)
            return True
        except (socket.timeout, TimeoutError):
            self.extra = bytes(self.reader.buf)
            return False

    def buffered(self):
        return bytes(self.reader.buf)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def build_request(method, path, headers=None, body=None, host="sluice.test", chunked=False,
                  close=False):
    """Request bytes. <headers>: list of pairs or dict; Content-Length is added for a
    body unless <chunked> (then <body> is a list of chunks) or headers set framing."""
    hs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in hs}
    if "host" not in names and host is not None:
        hs.insert(0, ("Host", host))
    data = b""
    if chunked:
        if "transfer-encoding" not in names:
            hs.append(("Transfer-Encoding", "chunked"))
        for c in body or []:
            data += b"%x\r\n%s\r\n" % (len(c), c)
        data += b"0\r\n\r\n"
    elif body is not None:
        if "content-length" not in names and "transfer-encoding" not in names:
            hs.append(("Content-Length", str(len(body))))
        data = body
    if close:
        hs.append(("Connection", "close"))
    head = "%s %s HTTP/1.1\r\n" % (method, path)
    head += "".join("%s: %s\r\n" % (k, v) for k, v in hs)
    return head.encode("latin-1") + b"\r\n" + data


def keepalive_requests(port, requests, timeout=TIMEOUT):
    """Send each request (bytes, or (bytes, head_request)) in turn on one connection,
    reading each response before the next; returns the responses."""
    out = []
    with RawConn(port, timeout=timeout) as c:
        for r in requests:
            data, head = (r if isinstance(r, tuple) else (r, False))
            out.append(c.request(data, head_request=head))
    return out


def http_request(port, method, path, body=None, headers=None, timeout=TIMEOUT,
                 host="127.0.0.1"):
    """One request on a fresh http.client connection; returns a Response."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        r = conn.getresponse()
        body = r.read()
        return Response("HTTP/%d.%d" % divmod(r.version, 10), r.status, r.reason,
                        r.getheaders(), body,
                        framing="chunked" if r.chunked else "content-length")
    finally:
        conn.close()


def concurrent_requests(port, n, request, timeout=60.0):
    """Open <n> connections at once (all connected before any request is sent), then
    send <request> (bytes; should ask for Connection: close) on each and read every
    answer to EOF. Returns (connected, list of bytes-or-exception per connection)."""
    sel = selectors.DefaultSelector()
    addr = ("127.0.0.1", port)
    socks = []
    deadline = time.monotonic() + timeout
    try:
        pending = set()
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(addr)
            if err not in (0, errno.EINPROGRESS):
                s.close()
                raise OSError(err, "connect: " + os.strerror(err))
            socks.append(s)
            pending.add(s)
            sel.register(s, selectors.EVENT_WRITE)
        results = {s: None for s in socks}
        connected = 0
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(0.5):
                s = key.fileobj
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                sel.unregister(s)
                pending.discard(s)
                if err:
                    results[s] = OSError(err, "connect: " + os.strerror(err))
                else:
                    connected += 1
        for s in pending:
            sel.unregister(s)
            results[s] = TimeoutError("connect timed out")
        # every connection is open at this point: now the requests
        bufs = {}
        out = {}
        for s in socks:
            if results[s] is None:
                out[s] = memoryview(request)
                bufs[s] = bytearray()
                sel.register(s, selectors.EVENT_WRITE | selectors.EVENT_READ)
        open_ = set(out)
        while open_ and time.monotonic() < deadline:
            for key, ev in sel.select(0.5):
                s = key.fileobj
                if ev & selectors.EVENT_WRITE and len(out[s]):
                    try:
                        k = s.send(out[s])
                        out[s] = out[s][k:]
                    except OSError as e:
                        results[s] = e
                        sel.unregister(s)
                        open_.discard(s)
                        continue
                    if not len(out[s]):
                        sel.modify(s, selectors.EVENT_READ)
                if ev & selectors.EVENT_READ:
                    try:
                        data = s.recv(65536)
                    except ConnectionResetError as e:
                        data = b""
                        if not bufs[s]:
                            results[s] = e
                    except BlockingIOError:
                        continue
                    if data:
                        bufs[s] += data
                    else:
                        if results[s] is None:
                            results[s] = bytes(bufs[s])
                        sel.unregister(s)
                        open_.discard(s)
        for s in open_:
            results[s] = TimeoutError("no complete answer; got %r" % bytes(bufs[s][:200]))
        return connected, [results[s] for s in socks]
    finally:
        sel.close()
        for s in socks:
            s.close()


# ---------------------------------------------------------------------------
# unittest base class


class E2ETestCase(unittest.TestCase):
    """Owns upstreams, gateways and sockets; all are stopped/closed at the end of the
    test (even on failure), in reverse order of creation."""

    maxDiff = 4000

    def start_upstream(self, name="A", **kw):
        up = start_upstream(name=name, **kw)
        self.addCleanup(up.stop)
        return up

    def start_redis(self, port=None, persist=False):
        r = RedisServer(port=port, persist=persist).start()
        self.addCleanup(r.stop)
        return r

    def start_gateway(self, config, subs=None, env=None, wait=True):
        gw = Gateway(config, subs=subs, env=env)
        self.addCleanup(self._finish_gateway, gw)
        gw.start(wait=wait)
        return gw

    def gateway_for(self, up, routes=None, server=None, admin=True, upstreams=None,
                    keepalive=16, workers=2):
        """A gateway whose upstream "app" is <up> (plus <upstreams>), default routes: none."""
        ups = {"app": up}
        ups.update(upstreams or {})
        cfg = make_config(ups, routes=routes, server=server, admin=admin,
                          keepalive=keepalive, workers=workers)
        return self.start_gateway(cfg)

    def _finish_gateway(self, gw):
        outcome = getattr(self, "_outcome", None)
        ok_so_far = getattr(outcome, "success", True)
        try:
            gw.stop(check=True)
        finally:
            failed = not ok_so_far
            if failed or os.environ.get("SLUICE_E2E_VERBOSE"):
                sys.stderr.write("\n--- %s: %s\n" % (self.id(), gw.describe()))
            gw.cleanup(keep=failed)

    def raw(self, gw_or_port, timeout=TIMEOUT):
        port = gw_or_port if isinstance(gw_or_port, int) else gw_or_port.port
        c = RawConn(port, timeout=timeout)
        self.addCleanup(c.close)
        return c

    # -- assertions --------------------------------------------------------------

    def assertStatus(self, resp, status, msg=None):
        if resp.status != status:
            self.fail("expected status %d, got %r%s" % (status, resp,
                                                         " (%s)" % msg if msg else ""))

    def assertJsonError(self, resp, status):
        """A gateway error: <status>, Content-Type application/json, {"error": ...}."""
        self.assertStatus(resp, status)
        ctype = resp.header("Content-Type", "")
        self.assertTrue(ctype.lower().startswith("application/json"),
                        "error %d has Content-Type %r, want application/json" % (status, ctype))
        try:
            obj = resp.json()
        except ValueError as e:
            self.fail("error %d body is not JSON (%s): %r" % (status, e, resp.body[:300]))
        self.assertIsInstance(obj, dict, "error body is not a JSON object: %r" % resp.body)
        self.assertIn("error", obj, "error body lacks the \"error\" key: %r" % resp.body)
        self.assertIsInstance(obj["error"], str)
        self.assertTrue(obj["error"], "empty \"error\"")
        return obj

    def assertClosed(self, conn, timeout=3.0, msg=""):
        """The gateway closes <conn> within <timeout> (sending nothing more)."""
        closed = conn.wait_closed(timeout)
        self.assertTrue(closed, "connection still open %.1fs after %s" % (timeout, msg or "it"))
        return conn.extra

    def assertEcho(self, resp, method, body=b""):
        """A 200 from the test upstream's /echo that saw <method> and exactly <body>."""
        import hashlib
        self.assertStatus(resp, 200)
        e = resp.json()
        self.assertEqual(e["method"], method)
        self.assertEqual(e["body_len"], len(body), "upstream saw a body of a different length")
        self.assertEqual(e["body_sha256"], hashlib.sha256(body).hexdigest(),
                         "upstream saw different body bytes")
        return e
