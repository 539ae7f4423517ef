#include "guard/graphql.h"

#include <jansson.h>

static bool gql_name_char(char c, bool first)
{
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (!first && c >= '0' && c <= '9');
}

/* Skips white space, commas (insignificant in GraphQL) and # comments. */
static size_t gql_skip(const char *s, size_t len, size_t i)
{
    while (i < len) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',') {
            i++;
        } else if (c == '#') {
            while (i < len && s[i] != '\n')
                i++;
        } else {
            break;
        }
    }
    return i;
}

/* Reads a name at <i> into <out>; returns the index after it (== i: none). */
static size_t gql_name(const char *s, size_t len, size_t i, char *out, size_t cap)
{
    size_t start = i;
    while (i < len && gql_name_char(s[i], i == start))
        i++;
    size_t n = i - start < cap - 1 ? i - start : cap - 1;
    memcpy(out, s + start, n);
    out[n] = '\0';
    return i;
}

/* Skips a balanced (...) group at <i> (variables, arguments). */
static size_t gql_skip_parens(const char *s, size_t len, size_t i)
{
    if (i >= len || s[i] != '(')
        return i;
    int depth = 0;
    bool in_string = false;
    for (; i < len; i++) {
        if (in_string) {
            if (s[i] == '\\')
                i++;
            else if (s[i] == '"')
                in_string = false;
        } else if (s[i] == '"') {
            in_string = true;
        } else if (s[i] == '(') {
            depth++;
        } else if (s[i] == ')' && --depth == 0) {
            return i + 1;
        }
    }
    return len;
}

bool gql_inspect_document(const char *s, size_t len, struct gql_op *op)
{
    size_t i = gql_skip(s, len, 0);
    snprintf(op->type, sizeof(op->type), "query"); /* the shorthand "{ ... }" is a query */
    op->field[0] = '\0';
    if (i < len && s[i] != '{') {
        char word[16];
        size_t j = gql_name(s, len, i, word, sizeof(word));
        if (strcmp(word, "query") != 0 && strcmp(word, "mutation") != 0 &&
            strcmp(word, "subscription") != 0)
            return false; /* a fragment first, or not GraphQL */
        snprintf(op->type, sizeof(op->type), "%s", word);
        i = gql_skip(s, len, j);
        char name[64];
        i = gql_skip(s, len, gql_name(s, len, i, name, sizeof(name))); /* operation name */
        i = gql_skip(s, len, gql_skip_parens(s, len, i));              /* variables */
        while (i < len && s[i] == '@') {                               /* directives */
            i = gql_name(s, len, i + 1, name, sizeof(name));
            i = gql_skip(s, len, gql_skip_parens(s, len, gql_skip(s, len, i)));
        }
    }
    if (i >= len || s[i] != '{')
        return false;
    i = gql_skip(s, len, i + 1);
    size_t j = gql_name(s, len, i, op->field, sizeof(op->field));
    if (j == i)
        return false;
    j = gql_skip(s, len, j);
    if (j < len && s[j] == ':') /* alias: the field is after it */
        gql_name(s, len, gql_skip(s, len, j + 1), op->field, sizeof(op->field));
    return op->field[0] != '\0';
}

bool gql_inspect_json(const char *body, size_t len, struct gql_op *op)
{
    json_error_t err;
    json_t *doc = json_loadb(body, len, 0, &err);
    if (!doc)
        return false;
    json_t *q = json_object_get(doc, "query");
    bool ok =
        json_is_string(q) && gql_inspect_document(json_string_value(q), json_string_length(q), op);
    json_decref(doc);
    return ok;
}
