"""GraphQL routes (SPEC 7.4, 3.5): operation limits per type and per
operation, depth/alias/root-field/cost caps, batches, GET, X-GraphQL-Cost,
the body reaching the upstream unchanged; on the memory store and on a
Redis shared by two gateways."""

import hashlib
import json
import re
import time
import urllib.parse

from harness import E2ETestCase, RawConn, build_request, make_config, wait_for

# Seed 001's route, as written in its config.
SEED_ROUTE = {
    "path": "/graphql/",
    "graphql": {"query": "300/h", "mutation": "50/h",
                "operations": {"tokenAuth": "20/m", "createErrand": "20/h"}},
    "rejection": "graphql",
}

TOKEN_AUTH = ("mutation TokenAuth($u: String!, $p: String!) "
              "{ tokenAuth(username: $u, password: $p) { token } }")
CREATE_ERRAND = "mutation { createErrand(input: {title: \"x\"}) { errand { id } } }"
OTHER_MUTATION = "mutation { updateProfile(name: \"n\") { ok } }"
QUERY = "query Me { me { id name } }"


def gql_body(query, name=None, variables=None):
    d = {"query": query}
    if name is not None:
        d["operationName"] = name
    if variables is not None:
        d["variables"] = variables
    return json.dumps(d).encode()


def seed_config(up, extra_limits=None):
    route = dict(SEED_ROUTE)
    route["limits"] = {"anonymous": ["${RATE_LIMIT_DEFAULT:-10000/h}"]}
    cfg = make_config({"app": up}, routes=[route, {"prefix": "/"}])
    cfg["limits"] = {"enabled": "${RATE_LIMIT_ENABLED:-true}"}
    return cfg


def post(conn, path, body, chunked=False):
    return conn.request(build_request("POST", path, body=body, chunked=chunked,
                                      headers={"Content-Type": "application/json"}))


def metric(gw, name):
    text = gw.admin_request("GET", "/metrics").body.decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


class Seed001(E2ETestCase):
    """Seed 001's config as written: query/mutation/operation limits, the
    GraphQL 429 body, RATE_LIMIT_ENABLED and RATE_LIMIT_DEFAULT from the
    environment."""

    def setUp(self):
        self.up = self.start_upstream("A")

    def assert_graphql_429(self, r, type_, op, limit, window_s):
        self.assertEqual(r.status, 429, r.body)
        err = r.json()["errors"][0]
        retry = int(r.header("Retry-After"))
        self.assertEqual(err["message"],
                         "Rate limit exceeded for %s '%s'. Limit: %d requests per %ds. "
                         "Try again after %d seconds." % (type_, op, limit, window_s, retry))
        ext = err["extensions"]
        self.assertEqual((ext["code"], ext["operation"], ext["type"]),
                         ("RATE_LIMIT_EXCEEDED", op, type_))
        self.assertAlmostEqual(ext["resetAt"], time.time() + retry, delta=3)
        self.assertIsNotNone(r.header("X-GraphQL-Cost"))

    def test_operation_and_type_limits(self):
        gw = self.start_gateway(seed_config(self.up))
        c = RawConn(gw.port)
        vars_ = {"u": "ann", "p": "secret"}
        for i in range(20):
            r = post(c, "/graphql/", gql_body(TOKEN_AUTH, "TokenAuth", vars_))
            self.assertEqual(r.status, 200, "tokenAuth %d: %r" % (i + 1, r.body))
        r = post(c, "/graphql/", gql_body(TOKEN_AUTH, "TokenAuth", vars_))
        self.assert_graphql_429(r, "mutation", "tokenAuth", 20, 60)
        # renaming the operation does not get around a root field's limit
        r = post(c, "/graphql/", gql_body(TOKEN_AUTH.replace("TokenAuth", "Innocent")))
        self.assert_graphql_429(r, "mutation", "tokenAuth", 20, 60)
        # nor does hiding it behind an alias, a fragment or other root fields
        r = post(c, "/graphql/", gql_body(
            "mutation { a: ping b: ping c: ping d: ping e: ping f: ping g: ping h: ping "
            "i: ping ...F } fragment F on Mutation { t: tokenAuth(username: \"a\", "
            "password: \"b\") { token } }"))
        self.assert_graphql_429(r, "mutation", "tokenAuth", 20, 60)
        # other mutations are still allowed: the refused ones took nothing
        for i in range(20):
            self.assertEqual(post(c, "/graphql/", gql_body(CREATE_ERRAND)).status, 200)
        r = post(c, "/graphql/", gql_body(CREATE_ERRAND))
        self.assert_graphql_429(r, "mutation", "createErrand", 20, 3600)
        # 40 mutations so far; the type's 50/h leaves 10
        for i in range(10):
            self.assertEqual(post(c, "/graphql/", gql_body(OTHER_MUTATION)).status, 200, i)
        r = post(c, "/graphql/", gql_body(OTHER_MUTATION))
        self.assert_graphql_429(r, "mutation", "updateProfile", 50, 3600)
        # queries have a counter of their own
        r = post(c, "/graphql/", gql_body(QUERY))
        self.assertEqual(r.status, 200)
        self.assertEqual(self.up.stats()["requests"], 51)

    def test_a_batch_counts_each_operation(self):
        gw = self.start_gateway(seed_config(self.up))
        c = RawConn(gw.port)
        batch = json.dumps([{"query": QUERY}] * 16).encode()
        for i in range(18):  # 288 queries
            r = post(c, "/graphql/", batch)
            self.assertEqual(r.status, 200, i)
        r = post(c, "/graphql/", json.dumps([{"query": QUERY}] * 13).encode())
        self.assert_graphql_429(r, "query", "me", 300, 3600)
        r = post(c, "/graphql/", json.dumps([{"query": QUERY}] * 12).encode())
        self.assertEqual(r.status, 200)
        r = post(c, "/graphql/", gql_body(QUERY))
        self.assert_graphql_429(r, "query", "me", 300, 3600)
        # a batch mixing types counts each against its own type and name
        mixed = json.dumps([{"query": TOKEN_AUTH, "variables": {"u": "a", "p": "b"}},
                            {"query": CREATE_ERRAND}] + [{"query": TOKEN_AUTH,
                                                          "variables": {"u": "a", "p": "b"}}] * 2
                           ).encode()
        for i in range(6):
            self.assertEqual(post(c, "/graphql/", mixed).status, 200, i)
        # 18 tokenAuth counted: a batch with 3 more passes the 20/m no longer
        r = post(c, "/graphql/", mixed)
        self.assert_graphql_429(r, "mutation", "tokenAuth", 20, 60)
        r = post(c, "/graphql/", gql_body(TOKEN_AUTH, variables={"u": "a", "p": "b"}))
        self.assertEqual(r.status, 200)  # the refused batch consumed nothing: 19 + 1

    def test_rate_limit_enabled_false_turns_it_off(self):
        gw = self.start_gateway(seed_config(self.up), env={"RATE_LIMIT_ENABLED": "false"})
        c = RawConn(gw.port)
        for i in range(25):
            r = post(c, "/graphql/", gql_body(TOKEN_AUTH, variables={"u": "a", "p": "b"}))
            self.assertEqual(r.status, 200, i)
            self.assertIsNone(r.header("X-RateLimit-Limit"))
        # the caps and the cost header do not depend on limiting
        self.assertEqual(r.header("X-GraphQL-Cost"), "1")

    def test_rate_limit_default_from_the_environment(self):
        gw = self.start_gateway(seed_config(self.up), env={"RATE_LIMIT_DEFAULT": "3/m"})
        c = RawConn(gw.port)
        for i in range(3):
            r = post(c, "/graphql/", gql_body(QUERY))
            self.assertEqual(r.status, 200, i)
            self.assertEqual(r.header("X-RateLimit-Limit"), "3")
        r = post(c, "/graphql/", gql_body(QUERY))
        # the route's own limit refused: the body still names the operation
        self.assert_graphql_429(r, "query", "me", 3, 60)

    def test_ietf_headers_show_a_batched_counter_once(self):
        cfg = make_config({"app": self.up}, routes=[
            {"path": "/graphql/", "graphql": {"query": "10/m"},
             "limits": {"anonymous": ["100/h"]}, "rejection": "graphql"}, {"prefix": "/"}])
        cfg["limits"] = {"headers": ["x-ratelimit", "ietf"]}
        gw = self.start_gateway(cfg)
        c = RawConn(gw.port)
        r = post(c, "/graphql/", json.dumps([{"query": QUERY}] * 3).encode())
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("RateLimit-Policy"), '"hourly";q=100;w=3600, '
                                                       '"per-minute";q=10;w=60')
        self.assertRegex(r.header("RateLimit"), r'^"hourly";r=99;t=\d+, "per-minute";r=7;t=\d+$')
        self.assertEqual(r.header("X-RateLimit-Remaining"), "7")
        r = post(c, "/graphql/", json.dumps([{"query": QUERY}] * 8).encode())
        self.assertEqual(r.status, 429)
        # refused: what the counters had before the request
        self.assertRegex(r.header("RateLimit"), r'^"hourly";r=99;t=\d+, "per-minute";r=7;t=\d+$')

    def test_unconfigured_names_make_no_counters(self):
        gw = self.start_gateway(seed_config(self.up))
        c = RawConn(gw.port)
        post(c, "/graphql/", gql_body(QUERY))
        before = metric(gw, "sluice_ratelimit_counters")
        for i in range(50):
            q = "query Op%d { field%d { id } }" % (i, i)
            self.assertEqual(post(c, "/graphql/", gql_body(q, "Op%d" % i)).status, 200)
        self.assertEqual(metric(gw, "sluice_ratelimit_counters"), before)

    def test_config_errors_name_file_and_line(self):
        from harness import Gateway
        bad = [
            ({"query": "300/x"}, "bad limit '300/x'"),
            ({"mutation": "concurrency 5"}, "not requests in flight"),
            ({"operations": {"1bad": "1/m"}}, "is not a GraphQL name"),
            ({"max_depth": 0}, "out of range"),
            ({"max_cost": "lots"}, "is not a whole number"),
            ({"maxdepth": 3}, "unknown key"),
        ]
        for g, want in bad:
            cfg = make_config({"app": self.up}, routes=[
                {"path": "/graphql/", "graphql": g}, {"prefix": "/"}])
            gw = Gateway(cfg)
            self.addCleanup(gw.cleanup)
            rc, out = gw.check()
            self.assertEqual(rc, 2, (g, out))
            self.assertRegex(out, r"\.yaml:\d+: .*" + re.escape(want), g)
            self.assertIn("graphql", out)


class Caps(E2ETestCase):
    def setUp(self):
        self.up = self.start_upstream("A")
        self.gw = self.start_gateway(make_config({"app": self.up}, routes=[
            {"prefix": "/graphql", "graphql": {"max_depth": 3, "max_aliases": 2,
                                               "max_root_fields": 2, "max_cost": 50}},
            {"prefix": "/"}]))

    def refused(self, r, code, limit, actual):
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(r.header("Content-Type"), "application/json")
        body = r.json()
        self.assertEqual(list(body), ["errors"])
        err = body["errors"][0]
        self.assertEqual(err["extensions"], {"code": code, "limit": limit, "actual": actual})
        self.assertIsInstance(err["message"], str)

    def test_each_cap_with_limit_and_actual(self):
        c = RawConn(self.gw.port)
        self.refused(post(c, "/graphql", gql_body("{ a { b { c { d } } } }")),
                     "MAX_DEPTH_EXCEEDED", 3, 4)
        self.refused(post(c, "/graphql", gql_body("{ x: a y: a z: a }")),
                     "MAX_ALIASES_EXCEEDED", 2, 3)
        self.refused(post(c, "/graphql", gql_body("{ a b c }")),
                     "MAX_ROOT_FIELDS_EXCEEDED", 2, 3)
        # users(first: 10) { friends(first: 10) { id } }: (1 + 10 x 1) x 10 = 110
        self.refused(post(c, "/graphql", gql_body(
            "query($n: Int) { users(first: $n) { friends(first: 10) { id } } }",
            variables={"n": 10})), "MAX_COST_EXCEEDED", 50, 110)
        self.assertEqual(self.up.stats()["requests"], 0, "a refused document reached the upstream")
        r = post(c, "/graphql", gql_body("{ a { b { c } } }"))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-GraphQL-Cost"), "2")

    def test_depth_counts_through_fragments(self):
        c = RawConn(self.gw.port)
        r = post(c, "/graphql", gql_body(
            "query { a { ...F } } fragment F on T { b { ... on U { c { d } } } }"))
        self.refused(r, "MAX_DEPTH_EXCEEDED", 3, 4)

    def test_parse_failures(self):
        c = RawConn(self.gw.port)
        cases = [
            (gql_body("{ a "), "Syntax Error"),
            (b"not json", "not JSON"),
            (b'{"operationName": "x"}', "Must provide query string"),
            (b'{"query": "{ a }", "query": "{ b }"}', "not JSON"),
            (gql_body("query A { a } query B { b }"), "operation name"),
            (gql_body("query A { a }", "B"), "Unknown operation named"),
            (json.dumps([{"query": "{ a }"}] * 17).encode(), "more than 16"),
            (b"[]", "empty batch"),
            (gql_body("type T { a: Int }"), ""),
        ]
        for body, want in cases:
            r = post(c, "/graphql", body)
            self.assertEqual(r.status, 400, body)
            err = r.json()["errors"][0]
            self.assertEqual(err["extensions"], {"code": "GRAPHQL_PARSE_FAILED"}, body)
            self.assertIn(want, err["message"], body)
        # larger than 64 KiB: refused whole, the connection still usable
        big = gql_body("{ a }", variables={"pad": "x" * 70000})
        r = post(c, "/graphql", big)
        self.assertEqual(r.json()["errors"][0]["extensions"]["code"], "GRAPHQL_PARSE_FAILED")
        self.assertIn("larger than 65536", r.json()["errors"][0]["message"])
        self.assertEqual(post(c, "/graphql", gql_body("{ a }")).status, 200)
        self.assertEqual(self.up.stats()["requests"], 1)

    def test_batch_first_failing_operation_decides(self):
        c = RawConn(self.gw.port)
        body = json.dumps([{"query": "{ ok }"}, {"query": "{ x: a y: a z: a }"},
                           {"query": "{ a { b { c { d } } } }"}]).encode()
        self.refused(post(c, "/graphql", body), "MAX_ALIASES_EXCEEDED", 2, 3)
        body = json.dumps([{"query": "{ ok }"}, {"query": "{ a { b { c } } }"},
                           {"query": "query($n: Int = 5) { u(last: $n) { id } }"}]).encode()
        r = post(c, "/graphql", body)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-GraphQL-Cost"), str(0 + 2 + 5))

    def test_get_query(self):
        c = RawConn(self.gw.port)
        q = urllib.parse.urlencode({"query": "query Q($n: Int) { users(first: $n) { id } }",
                                    "operationName": "Q", "variables": json.dumps({"n": 7})})
        r = c.request(build_request("GET", "/graphql?" + q))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-GraphQL-Cost"), "7")
        self.assertEqual(r.json()["query"], q)
        q = urllib.parse.quote("{ a { b { c { d } } } }")
        self.refused(c.request(build_request("GET", "/graphql?query=" + q)),
                     "MAX_DEPTH_EXCEEDED", 3, 4)
        r = c.request(build_request("GET", "/graphql?query=%7B+a+"))
        self.assertEqual(r.json()["errors"][0]["extensions"]["code"], "GRAPHQL_PARSE_FAILED")
        # a POST carrying GraphQL parameters in its URL could run what was not read
        r = post(c, "/graphql?query=" + urllib.parse.quote("{ a { b { c { d } } } }"),
                 gql_body("{ a }"))
        self.assertEqual(r.status, 400)
        self.assertIn("in its URL", r.json()["errors"][0]["message"])
        c = RawConn(self.gw.port)  # refused before its body was read: that connection closes
        self.assertEqual(post(c, "/graphql?debug=1", gql_body("{ a }")).status, 200)
        # a GET without a query is not an operation (an IDE's page): it goes through
        r = c.request(build_request("GET", "/graphql"))
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("X-GraphQL-Cost"))

    def test_expect_100_continue(self):
        c = RawConn(self.gw.port)
        body = gql_body("{ a { b } }")
        c.send(build_request("POST", "/graphql", headers=[
            ("Expect", "100-continue"), ("Content-Length", str(len(body))),
            ("Content-Type", "application/json")]))
        interim = c.read_response(skip_interim=False, timeout=5)
        self.assertEqual(interim.status, 100)
        c.send(body)
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["body_len"], len(body))
        self.assertEqual(r.header("X-GraphQL-Cost"), "1")

    def test_upstream_receives_the_body_unchanged(self):
        c = RawConn(self.gw.port)
        body = ('{"variables": {"n": 3, "s": "caf\\u00e9 \\"q\\""},\n  "query": '
                '"query($n: Int) { users(first: $n) { id } }"  ,"extensions": {}}').encode()
        for chunked in (False, True):
            payload = [body[:7], body[7:40], body[40:]] if chunked else body
            r = post(c, "/graphql", payload, chunked=chunked)
            self.assertEqual(r.status, 200)
            e = r.json()
            self.assertEqual(e["body_len"], len(body))
            self.assertEqual(e["body_sha256"], hashlib.sha256(body).hexdigest())
            self.assertEqual(r.header("X-GraphQL-Cost"), "3")


class Fleet(E2ETestCase):
    """Operation limits are shared by the gateways of one Redis."""

    def test_operation_limits_shared_on_redis(self):
        up = self.start_upstream("A")
        redis = self.start_redis()
        cfg = make_config({"app": up}, routes=[
            {"path": "/graphql/", "rejection": "graphql",
             "graphql": {"mutation": "50/h", "operations": {"tokenAuth": "5/m"}}},
            {"prefix": "/"}])
        cfg["store"] = {"backend": "redis", "redis": {"url": redis.url, "timeout": "200ms"}}
        a = self.start_gateway(cfg)
        b = self.start_gateway(cfg)
        for gw in (a, b):
            self.assertTrue(wait_for(lambda: metric(gw, "sluice_redis_up") == 1, timeout=5))
        ca, cb = RawConn(a.port), RawConn(b.port)
        body = gql_body(TOKEN_AUTH, variables={"u": "a", "p": "b"})
        codes = [post(ca if i % 2 == 0 else cb, "/graphql/", body).status for i in range(5)]
        self.assertEqual(codes, [200] * 5)
        for c in (ca, cb):
            r = post(c, "/graphql/", body)
            self.assertEqual(r.status, 429)
            self.assertEqual(r.json()["errors"][0]["extensions"]["operation"], "tokenAuth")
        # a batch of two more on one gateway counts two on the shared counter
        r = post(ca, "/graphql/", json.dumps([{"query": OTHER_MUTATION}] * 2).encode())
        self.assertEqual(r.status, 200)
        # 5 tokenAuth (3 on a, 2 on b; the refused ones took nothing) + 2
        self.assertEqual(r.header("X-RateLimit-Remaining"), "43")
        keys = redis.command("KEYS", "*")
        keys = [k.decode() if isinstance(k, bytes) else k for k in keys]
        self.assertTrue(any(":op:tokenAuth:" in k for k in keys), keys)
        self.assertTrue(any(":type:mutation:" in k for k in keys), keys)
        self.assertEqual(up.stats()["requests"], 6)
