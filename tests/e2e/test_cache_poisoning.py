"""Cache poisoning and deception as data tables (issue 11): unkeyed headers an
application may reflect, path and query variants, methods, and responses meant
for one client. Every case asserts what the upstream saw (upstream.py records
each /origin request: method, target, headers) and what a later clean client
got, not only the status. The upstream's /origin answer reflects the request it
saw (its JSON body holds the target and the headers), as a vulnerable
application would.

Credential headers are covered in test_hardening_cache.py."""

import json
from urllib.parse import parse_qsl

from harness import RawConn, build_request
from test_cache import CacheTestCase, cache_config, xcache

EVIL = "evil.attacker.example"

# Headers the gateway writes itself: the client's value never reaches the upstream,
# so whatever the upstream reflects is the gateway's value, the same for everyone.
# name -> (header as the client sends it, value, what the upstream must see instead
# under the lower-cased canonical name; a function of the gateway, None: absent).
OVERWRITTEN = {
    "x_forwarded_host": ("X-Forwarded-Host", EVIL,
                         lambda gw: ("x-forwarded-host", ["127.0.0.1:%d" % gw.port])),
    "x_forwarded_proto": ("X-Forwarded-Proto", "https",
                          lambda gw: ("x-forwarded-proto", ["http"])),
    "x_forwarded_port": ("X-Forwarded-Port", "31337",
                         lambda gw: ("x-forwarded-port", [str(gw.port)])),
    # WSGI servers read '_' as '-': the client's spelling is dropped too
    "x_forwarded_host_wsgi": ("X_Forwarded_Host", EVIL,
                              lambda gw: ("x_forwarded_host", None)),
}

# Headers frameworks read as the request's host, scheme, prefix, URL or method
# (parts of what a cache key stands for) that the gateway passes on: each is part
# of the key, so a request carrying one fills and reads only its own entry.
# name -> (header, value, the framework that acts on it).
KEYED = {
    "forwarded_host": ("Forwarded", "for=192.0.2.1;host=%s;proto=https" % EVIL,
                       "RFC 7239; Spring ForwardedHeaderFilter, Rack 3"),
    "x_forwarded_scheme": ("X-Forwarded-Scheme", "https", "Rack, nginx configs"),
    "x_forwarded_ssl": ("X-Forwarded-Ssl", "on", "Rack"),
    "front_end_https": ("Front-End-Https", "on", "Rack, IIS"),
    "x_forwarded_prefix": ("X-Forwarded-Prefix", "/" + EVIL, "Spring, Werkzeug ProxyFix"),
    "x_forwarded_server": ("X-Forwarded-Server", EVIL, "Apache mod_proxy apps"),
    "x_host": ("X-Host", EVIL, "Param Miner's classic"),
    "x_original_host": ("X-Original-Host", EVIL, "IIS ARR apps"),
    "x_original_url": ("X-Original-URL", "/admin", "Symfony, Zend, IIS"),
    "x_rewrite_url": ("X-Rewrite-URL", "/admin", "Symfony, Zend"),
    "x_http_method_override": ("X-HTTP-Method-Override", "DELETE",
                               "Express method-override, Spring, Rails"),
    "x_http_method": ("X-HTTP-Method", "DELETE", "OData, Symfony"),
    "x_method_override": ("X-Method-Override", "DELETE", "Symfony"),
    # a WSGI app sees X_Original_URL as X-Original-URL
    "x_original_url_wsgi": ("X_Original_URL", "/admin", "gunicorn, uWSGI"),
}

# Path variants of the resource B = /origin/<case>/p ({b} below).
# name -> (target sent, target the upstream must see, same): <same> when the gateway
# normalises the variant into B's own path (one entry with B, and the upstream saw B);
# otherwise the variant is an entry of its own and the upstream saw it as sent.
PATHS = {
    "semicolon_css": ("{b}/p;x.css", "{b}/p;x.css", False),
    "slash_css": ("{b}/p/x.css", "{b}/p/x.css", False),
    "encoded_slash": ("{b}/p%2Fx", "{b}/p%2Fx", False),
    "encoded_semicolon_css": ("{b}/p%3Bx.css", "{b}/p%3Bx.css", False),
    "tomcat_dotdot_semicolon": ("{b}/x/..;/p", "{b}/x/..;/p", False),
    "encoded_dotdot_slash": ("{b}/x/%2e%2e%2fp", "{b}/x/%2e%2e%2fp", False),
    "encoded_hash": ("{b}/p%23x.css", "{b}/p%23x.css", False),
    "trailing_slash": ("{b}/p/", "{b}/p/", False),
    "upper_case_segment": ("{b}/P", "{b}/P", False),
    "raw_fragment": ("{b}/p#frag", "{b}/p#frag", False),
    "double_slash": ("/{b}/p", "{b}/p", True),
    "inner_double_slash": ("{b}//p", "{b}/p", True),
    "dot_segment": ("{b}/./p", "{b}/p", True),
    "dotdot_segment": ("{b}/x/../p", "{b}/p", True),
    "encoded_dot": ("{b}/%2e/p", "{b}/p", True),
    "encoded_dotdot_upper": ("{b}/x/%2E%2E/p", "{b}/p", True),
    "mixed_encoded_dotdot": ("{b}/x/.%2e/p", "{b}/p", True),
    "empty_query": ("{b}/p?", "{b}/p?", True),
}

# Query variants of /origin/q/<case>: (first query, second query, same entry?).
# Parameters are sorted by name for the key; the upstream always sees the query as
# sent. Two queries may share an entry only if every framework reads the same
# parameters from both.
QUERIES = {
    "reordered_names": ("a=1&b=2", "b=2&a=1", True),
    "empty_parameter": ("a=1&b=2", "a=1&&b=2", True),
    "repeated_name_order": ("a=1&a=2", "a=2&a=1", False),
    "encoded_name_order": ("a=1&%61=2", "%61=2&a=1", False),
    "plus_and_space_name_order": ("a+b=1&a%20b=2", "a%20b=2&a+b=1", False),
    "case_folded_name_order": ("A=1&a=2", "a=2&A=1", False),  # ASP.NET ignores case
    "semicolon_separator_order": ("b=1&a=1;b=2", "a=1;b=2&b=1", False),  # Rack 2, old Python
    "value_differs": ("a=1", "a=2", False),
    "encoded_value": ("a=%31", "a=1", False),
}

# Methods on a cached route: (the first request's method, X-Cache of the GET that
# follows). A HEAD or POST never fills the GET's entry.
METHODS = {
    "head_first": ("HEAD", "MISS"),
    "post_first": ("POST", "MISS"),
    "put_first": ("PUT", "MISS"),
    "delete_first": ("DELETE", "MISS"),
    "patch_first": ("PATCH", "MISS"),
    "options_first": ("OPTIONS", "MISS"),
}

# Responses meant for one client: (query making the upstream's answer, credentials
# of the first request, {caller: X-Cache of its next request}).
ALICE = {"Cookie": "sid=alice"}
BOB = {"Cookie": "sid=bob"}
PERSONAL = {
    "set_cookie_anonymous": ("cookie=sid%3Dnew", {},
                             {"anonymous": "MISS", "alice": "MISS", "same_again": "MISS"}),
    "set_cookie_credentialed": ("cookie=sid%3Dnew", ALICE,
                                {"anonymous": "MISS", "bob": "MISS", "same_again": "MISS"}),
    "private_anonymous": ("cc=private", {},
                          {"anonymous": "MISS", "alice": "MISS", "same_again": "MISS"}),
    "private_credentialed": ("cc=private", ALICE,
                             {"anonymous": "MISS", "bob": "MISS", "same_again": "HIT"}),
    "private_max_age_credentialed": ("cc=private,%20max-age%3D300", ALICE,
                                     {"anonymous": "MISS", "bob": "MISS", "same_again": "HIT"}),
}
CALLERS = {"anonymous": {}, "alice": ALICE, "bob": BOB}


def body_json(r):
    try:
        return json.loads(r.body)
    except ValueError:
        return None


class PoisonTestCase(CacheTestCase):
    def gateway(self, cache=None):
        return self.start_gateway(cache_config(self.up, cache=cache, workers=1))

    def seen(self, n=None):
        """The upstream's /origin requests (the last <n>)."""
        log = self.up.origin_requests()
        return log if n is None else log[-n:]

    def raw_get(self, gw, target, headers=(), method="GET"):
        with RawConn(gw.port) as c:
            return c.request(build_request(method, target, headers=list(headers), close=True),
                             head_request=method == "HEAD")

    def assertUpstreamSaw(self, before, want, msg=""):
        """Since <before> requests, the upstream saw exactly <want>: a list of
        (method, target) pairs; returns those requests."""
        got = self.seen()[before:]
        self.assertEqual([(s["method"], s["target"]) for s in got], want, msg)
        return got


class UnkeyedHeaders(PoisonTestCase):
    def check_overwritten(self, name, value, want):
        gw = self.gateway()
        p = "/origin/h/" + name.lower()
        canon, expected = want(gw)
        r1 = gw.request("GET", p, headers={name: value})
        self.assertEqual((r1.status, xcache(r1)), (200, "MISS"))
        (s1,) = self.assertUpstreamSaw(0, [("GET", p)])
        self.assertEqual(s1["headers"].get(canon), expected,
                         "the upstream saw the client's %s" % name)
        reflected = [v for k, vs in body_json(r1)["headers"].items() for v in vs
                     if k != "x-request-id" and value in v]
        self.assertEqual(reflected, [], "the client's %s was reflected" % name)
        # the clean client shares the entry: it holds nothing the client chose
        r2 = gw.request("GET", p)
        self.assertEqual((r2.status, xcache(r2)), (200, "HIT"))
        self.assertEqual(r2.body, r1.body)
        self.assertEqual(len(self.seen()), 1)

    def check_keyed(self, name, value):
        gw = self.gateway()
        p = "/origin/h/" + name.lower()
        r1 = gw.request("GET", p, headers={name: value})
        self.assertEqual((r1.status, xcache(r1)), (200, "MISS"))
        (s1,) = self.assertUpstreamSaw(0, [("GET", p)])
        self.assertEqual(s1["headers"].get(name.lower()), [value])
        self.assertEqual(body_json(r1)["headers"].get(name.lower()), [value],
                         "the upstream reflects the header")
        # a clean client: not the poisoned answer, and the upstream saw no such header
        r2 = gw.request("GET", p)
        self.assertEqual((r2.status, xcache(r2)), (200, "MISS"),
                         "the answer to a request with %s was served without it" % name)
        (s2,) = self.assertUpstreamSaw(1, [("GET", p)])
        self.assertNotIn(name.lower(), s2["headers"])
        self.assertNotIn(name.lower(), body_json(r2)["headers"], "the clean client got it")
        # each kind of request is cached on its own entry
        r3 = gw.request("GET", p)
        self.assertEqual((xcache(r3), r3.body), ("HIT", r2.body))
        r4 = gw.request("GET", p, headers={name: value})
        self.assertEqual((xcache(r4), r4.body), ("HIT", r1.body))
        r5 = gw.request("GET", p, headers={name: value + "x"})
        self.assertEqual(xcache(r5), "MISS", "another %s value shared an entry" % name)
        self.assertEqual(len(self.seen()), 3)

    for _case, (_name, _value, _want) in OVERWRITTEN.items():
        def _t(self, name=_name, value=_value, want=_want):
            self.check_overwritten(name, value, want)
        _t.__name__ = "test_overwritten_" + _case
        _t.__doc__ = "%s: the gateway's value reaches the upstream" % _name
        locals()[_t.__name__] = _t
    for _case, (_name, _value, _who) in KEYED.items():
        def _t(self, name=_name, value=_value):
            self.check_keyed(name, value)
        _t.__name__ = "test_keyed_" + _case
        _t.__doc__ = "%s (%s): part of the key" % (_name, _who)
        locals()[_t.__name__] = _t
    del _case, _name, _value, _want, _who, _t

    def test_requests_without_them_still_share_an_entry(self):
        # with no such header, every anonymous client shares one entry as before
        gw = self.gateway()
        first = gw.request("GET", "/origin/h/plain", headers={"User-Agent": "a"})
        again = gw.request("GET", "/origin/h/plain", headers={"User-Agent": "b"})
        self.assertEqual((xcache(first), xcache(again)), ("MISS", "HIT"))
        self.assertEqual(len(self.seen()), 1)


class PathVariants(PoisonTestCase):
    """A credentialed answer on a variant is never served to anyone else, on the
    variant or on the canonical path; the cache and the upstream agree on which
    resource each variant is."""

    def check(self, case, target, upstream_target, same):
        gw = self.gateway()
        b = "/origin/" + case
        target, upstream_target = target.format(b=b), upstream_target.format(b=b)
        canonical = b + "/p"
        # alice fetches the variant
        r = self.raw_get(gw, target, ALICE.items())
        self.assertEqual((r.status, xcache(r)), (200, "MISS"), target)
        (s,) = self.assertUpstreamSaw(0, [("GET", upstream_target)])
        self.assertEqual(s["headers"].get("cookie"), ["sid=alice"])
        # an anonymous client on the same variant gets an answer of its own
        r2 = self.raw_get(gw, target)
        self.assertEqual((r2.status, xcache(r2)), (200, "MISS"),
                         "%s: alice's answer served to an anonymous client" % target)
        self.assertNotIn(b"alice", r2.body)
        (s2,) = self.assertUpstreamSaw(1, [("GET", upstream_target)])
        self.assertNotIn("cookie", s2["headers"])
        # bob neither
        r3 = self.raw_get(gw, target, BOB.items())
        self.assertEqual(xcache(r3), "MISS", "%s: alice's answer served to bob" % target)
        self.assertNotIn(b"alice", r3.body)
        # the anonymous canonical path: the same entry only when the gateway made the
        # variant into the canonical path (the upstream saw that path)
        r4 = self.raw_get(gw, canonical)
        self.assertNotIn(b"alice", r4.body)
        if same:
            self.assertEqual(upstream_target.split("?")[0], canonical)
            self.assertEqual((xcache(r4), r4.body), ("HIT", r2.body),
                             "%s and %s were normalised apart" % (target, canonical))
            self.assertEqual(len(self.seen()), 3)
        else:
            self.assertEqual(xcache(r4), "MISS",
                             "%s and %s, two upstream resources, shared one entry"
                             % (target, canonical))
            self.assertUpstreamSaw(3, [("GET", canonical)])
            self.assertNotEqual(body_json(r4)["target"], body_json(r2)["target"])
        # and the anonymous variant is now cached on its own entry
        r5 = self.raw_get(gw, target)
        self.assertEqual((xcache(r5), r5.body), ("HIT", r2.body), target)

    for _case, (_target, _up, _same) in PATHS.items():
        def _t(self, case=_case, target=_target, up=_up, same=_same):
            self.check(case, target, up, same)
        _t.__name__ = "test_path_" + _case
        _t.__doc__ = "%s -> upstream %s, %s" % (_target, _up, "one entry with {b}/p" if _same
                                                 else "an entry of its own")
        locals()[_t.__name__] = _t
    del _case, _target, _up, _same, _t

    def test_shared_route_caches_a_credentialed_variant_only_under_its_own_path(self):
        # shared: true says answers do not depend on the caller, so a credentialed
        # answer is served to others, but only for the target it was fetched for
        gw = self.gateway({"ttl": "300s", "shared": True})
        r = self.raw_get(gw, "/origin/s/x/..;/p", ALICE.items())
        self.assertEqual(xcache(r), "MISS")
        r2 = self.raw_get(gw, "/origin/s/p")
        self.assertEqual(xcache(r2), "MISS")
        self.assertNotIn(b"alice", r2.body)
        self.assertUpstreamSaw(0, [("GET", "/origin/s/x/..;/p"), ("GET", "/origin/s/p")])


class QueryVariants(PoisonTestCase):
    def check(self, case, q1, q2, same):
        gw = self.gateway()
        p = "/origin/q/" + case
        r1 = self.raw_get(gw, p + "?" + q1)
        self.assertEqual((r1.status, xcache(r1)), (200, "MISS"))
        r2 = self.raw_get(gw, p + "?" + q2)
        self.assertEqual(r2.status, 200)
        if same:
            self.assertEqual((xcache(r2), r2.body), ("HIT", r1.body))
            self.assertUpstreamSaw(0, [("GET", p + "?" + q1)])
            # only because every framework reads the same parameters from both
            self.assertEqual(sorted(parse_qsl(q1)), sorted(parse_qsl(q2)))
        else:
            self.assertEqual(xcache(r2), "MISS",
                             "?%s and ?%s shared one entry" % (q1, q2))
            self.assertUpstreamSaw(0, [("GET", p + "?" + q1), ("GET", p + "?" + q2)])
            self.assertEqual(body_json(r2)["query"], q2)
            r3 = self.raw_get(gw, p + "?" + q2)
            self.assertEqual((xcache(r3), r3.body), ("HIT", r2.body))

    for _case, (_q1, _q2, _same) in QUERIES.items():
        def _t(self, case=_case, q1=_q1, q2=_q2, same=_same):
            self.check(case, q1, q2, same)
        _t.__name__ = "test_query_" + _case
        _t.__doc__ = "?%s then ?%s: %s" % (_q1, _q2, "one entry" if _same else "two entries")
        locals()[_t.__name__] = _t
    del _case, _q1, _q2, _same, _t


class Methods(PoisonTestCase):
    def check(self, method, then):
        gw = self.gateway()
        p = "/origin/m/" + method.lower()
        body = b"payload" if method in ("POST", "PUT", "PATCH") else None
        r1 = gw.request(method, p, body=body)
        self.assertEqual(r1.status, 200)
        self.assertEqual(xcache(r1), "MISS" if method == "HEAD" else "BYPASS")
        self.assertUpstreamSaw(0, [(method, p)])
        r2 = gw.request("GET", p)
        self.assertEqual((r2.status, xcache(r2)), (200, then),
                         "a %s filled the GET's entry" % method)
        self.assertUpstreamSaw(1, [("GET", p)])
        self.assertEqual(body_json(r2)["method"], "GET")
        # the GET's entry now answers a HEAD, without a body and without the upstream
        r3 = gw.request("HEAD", p)
        self.assertEqual((r3.status, xcache(r3), r3.body), (200, "HIT", b""))
        self.assertEqual(r3.header("Content-Length"), str(len(r2.body)))
        self.assertEqual(len(self.seen()), 2)
        # and the GET's answer is not served to this method
        if method != "HEAD":
            r4 = gw.request(method, p, body=body)
            self.assertEqual(xcache(r4), "BYPASS")
            self.assertEqual(body_json(r4)["method"], method)
            self.assertEqual(len(self.seen()), 3)

    for _case, (_method, _then) in METHODS.items():
        def _t(self, method=_method, then=_then):
            self.check(method, then)
        _t.__name__ = "test_method_" + _case
        _t.__doc__ = "%s, then GET: %s" % (_method, _then)
        locals()[_t.__name__] = _t
    del _case, _method, _then, _t

    def test_method_override_on_get_is_not_the_get(self):
        gw = self.gateway()
        p = "/origin/m/override"
        r1 = gw.request("GET", p, headers={"X-HTTP-Method-Override": "POST"})
        self.assertEqual(xcache(r1), "MISS")
        r2 = gw.request("GET", p)
        self.assertEqual(xcache(r2), "MISS", "an overridden GET filled the plain GET's entry")
        seen = self.assertUpstreamSaw(0, [("GET", p), ("GET", p)])
        self.assertEqual(seen[0]["headers"].get("x-http-method-override"), ["POST"])
        self.assertNotIn("x-http-method-override", seen[1]["headers"])


class PersonalResponses(PoisonTestCase):
    """Set-Cookie and Cache-Control: private are never served to another client."""

    def check(self, query, first, nexts):
        gw = self.gateway()
        p = "/origin/u/%d?%s" % (len(self.seen()), query)
        r1 = gw.request("GET", p, headers=first)
        self.assertEqual((r1.status, xcache(r1)), (200, "MISS"))
        self.assertUpstreamSaw(0, [("GET", p)])
        n = 1
        for caller, want in nexts.items():
            headers = first if caller == "same_again" else CALLERS[caller]
            r = gw.request("GET", p, headers=headers)
            self.assertEqual(xcache(r), want, "%s after %r" % (caller, first))
            if want == "MISS":
                n += 1
                (s,) = self.assertUpstreamSaw(n - 1, [("GET", p)])
                self.assertEqual(s["headers"].get("cookie"),
                                 [headers["Cookie"]] if "Cookie" in headers else None)
                self.assertNotEqual(r.body, r1.body, "%s got the first answer" % caller)
            else:
                self.assertEqual(r.body, r1.body)
                self.assertIsNone(r.header("Set-Cookie"))
            self.assertEqual(len(self.seen()), n)

    for _case, (_query, _first, _nexts) in PERSONAL.items():
        def _t(self, query=_query, first=_first, nexts=_nexts):
            self.check(query, first, nexts)
        _t.__name__ = "test_personal_" + _case
        _t.__doc__ = "?%s for %r: %r" % (_query, _first, _nexts)
        locals()[_t.__name__] = _t
    del _case, _query, _first, _nexts, _t
