/* The bounded GraphQL parser and operation analysis (graphql/parse.h). */
#include "graphql/parse.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/arena.h"

const struct gqlp_limits gqlp_default_limits = {
    .max_bytes = GQLP_DEFAULT_MAX_BYTES,
    .max_tokens = GQLP_DEFAULT_MAX_TOKENS,
    .max_depth = GQLP_DEFAULT_MAX_DEPTH,
};

/* ---- tree ---- */

enum sel_kind { SEL_FIELD, SEL_SPREAD, SEL_INLINE };

/* What a `first`/`last` argument says, kept for the cost. */
enum limit_kind { LIMIT_NONE, LIMIT_INT, LIMIT_VAR, LIMIT_OTHER };

struct limit_arg {
    enum limit_kind kind;
    long long n;     /* LIMIT_INT */
    const char *var; /* LIMIT_VAR: the variable's name without '$' */
};

struct gqlp_sel {
    enum sel_kind kind;
    const char *alias; /* SEL_FIELD, NULL when none */
    const char *name;  /* field or spread fragment name */
    struct limit_arg first, last;
    struct gqlp_sel *children;    /* selection set, NULL when none */
    struct gqlp_sel *next;        /* sibling */
    struct gqlp_sel *next_spread; /* SEL_SPREAD: the definition's next spread */
    size_t frag;                  /* SEL_SPREAD: index in the sorted names */
    unsigned line, column;
};

struct var_def {
    const char *name;
    bool has_int_default;
    long long int_default;
    struct var_def *next;
};

struct gqlp_operation {
    enum gqlp_op_type type;
    const char *name; /* "" when anonymous */
    struct var_def *vars;
    struct gqlp_sel *sel;
    struct gqlp_sel *spreads;
    unsigned line, column;
};

struct gqlp_fragment {
    const char *name;
    struct gqlp_sel *sel;
    struct gqlp_sel *spreads;
    size_t index; /* position in gqlp_doc.frags (the dependency order) */
    unsigned line, column;
    struct gqlp_fragment *next; /* while parsing: document order */
};

/* ---- errors ---- */

static int fail_at(struct gqlp_error *err, unsigned line, unsigned column, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_at(struct gqlp_error *err, unsigned line, unsigned column, const char *fmt, ...)
{
    char text[sizeof(err->message) - 32]; /* room for " at line:column" */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    /* The message quotes the document and the caller's operation name, cut
     * at a byte count: printable ASCII only, so it can go into a JSON error
     * or a log line as it is. */
    for (char *c = text; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
            *c = '?';
    err->line = line;
    err->column = column;
    if (line)
        snprintf(err->message, sizeof(err->message), "%s at %u:%u", text, line, column);
    else
        snprintf(err->message, sizeof(err->message), "%s", text);
    return -1;
}

/* ---- lexer ---- */

enum tok_kind {
    T_EOF,
    T_BANG,
    T_DOLLAR,
    T_AMP,
    T_LPAREN,
    T_RPAREN,
    T_SPREAD,
    T_COLON,
    T_EQUALS,
    T_AT,
    T_LBRACKET,
    T_RBRACKET,
    T_LBRACE,
    T_PIPE,
    T_RBRACE,
    T_NAME,
    T_INT,
    T_FLOAT,
    T_STRING,
    T_BLOCK_STRING,
};

struct token {
    enum tok_kind kind;
    const char *start;
    size_t len;
    unsigned line, column;
};

struct lexer {
    const char *p, *end;
    const char *line_start;
    unsigned line;
    unsigned n_tokens, max_tokens;
    struct token tok; /* the current (lookahead) token */
    struct gqlp_error *err;
};

static unsigned column_of(const struct lexer *lx, const char *at)
{
    return (unsigned)(at - lx->line_start) + 1;
}

static int lex_fail(struct lexer *lx, const char *at, const char *fmt, const char *arg)
{
    return fail_at(lx->err, lx->line, column_of(lx, at), fmt, arg);
}

/* A line terminator at p (\n, \r\n or \r) is consumed and counted. */
static bool skip_newline(struct lexer *lx)
{
    if (*lx->p == '\r') {
        lx->p++;
        if (lx->p < lx->end && *lx->p == '\n')
            lx->p++;
    } else if (*lx->p == '\n') {
        lx->p++;
    } else {
        return false;
    }
    lx->line++;
    lx->line_start = lx->p;
    return true;
}

/* Whitespace, line terminators, commas, comments and the BOM (2.1.1-2.1.7). */
static void skip_ignored(struct lexer *lx)
{
    while (lx->p < lx->end) {
        /* Runs of blanks with a local cursor (see lex_next's names). */
        const char *q = lx->p, *end = lx->end;
        while (q < end && (*q == ' ' || *q == '\t' || *q == ','))
            q++;
        lx->p = q;
        if (q == end)
            return;
        unsigned char c = (unsigned char)*q;
        if (c == '\n') { /* skip_newline's commonest case, inline: it is hot */
            lx->p++;
            lx->line++;
            lx->line_start = lx->p;
        } else if (c == '\r') {
            skip_newline(lx);
        } else if (c == '#') {
            while (lx->p < lx->end && *lx->p != '\n' && *lx->p != '\r')
                lx->p++;
        } else if (c == 0xEF && lx->end - lx->p >= 3 && (unsigned char)lx->p[1] == 0xBB &&
                   (unsigned char)lx->p[2] == 0xBF) {
            lx->p += 3;
        } else {
            return;
        }
    }
}

static bool is_name_start(char c)
{
    return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* [_0-9A-Za-z]: the characters of a Name after its first (2.1.9). */
static const bool lex_name_char[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['_'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,
    ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,
    ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,
    ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,
    ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool at(const struct lexer *lx, const char *s)
{
    size_t n = strlen(s);
    return (size_t)(lx->end - lx->p) >= n && memcmp(lx->p, s, n) == 0;
}

static int lex_digits(struct lexer *lx)
{
    if (lx->p >= lx->end || !is_digit(*lx->p))
        return lex_fail(lx, lx->p, "Syntax Error: Invalid number, expected digit%s", "");
    while (lx->p < lx->end && is_digit(*lx->p))
        lx->p++;
    return 0;
}

/* IntValue and FloatValue (2.9.1, 2.9.2); the lookahead restriction: no
 * digit, '.' or name start right after a number. */
static int lex_number(struct lexer *lx, struct token *t)
{
    const char *start = lx->p;
    t->kind = T_INT;
    if (*lx->p == '-')
        lx->p++;
    if (lx->p < lx->end && *lx->p == '0') {
        lx->p++;
        if (lx->p < lx->end && is_digit(*lx->p))
            return lex_fail(lx, lx->p, "Syntax Error: Invalid number, unexpected digit after 0%s",
                            "");
    } else if (lex_digits(lx) < 0) {
        return -1;
    }
    if (lx->p < lx->end && *lx->p == '.') {
        lx->p++;
        t->kind = T_FLOAT;
        if (lex_digits(lx) < 0)
            return -1;
    }
    if (lx->p < lx->end && (*lx->p == 'e' || *lx->p == 'E')) {
        lx->p++;
        t->kind = T_FLOAT;
        if (lx->p < lx->end && (*lx->p == '+' || *lx->p == '-'))
            lx->p++;
        if (lex_digits(lx) < 0)
            return -1;
    }
    if (lx->p < lx->end && (*lx->p == '.' || is_name_start(*lx->p) || is_digit(*lx->p)))
        return lex_fail(lx, lx->p, "Syntax Error: Invalid number%s", "");
    t->len = (size_t)(lx->p - start);
    return 0;
}

/* A "..." string (2.9.4): escapes are checked, the text is not decoded. */
static int lex_string(struct lexer *lx)
{
    lx->p++;
    while (lx->p < lx->end) {
        unsigned char c = (unsigned char)*lx->p;
        if (c == '"') {
            lx->p++;
            return 0;
        }
        if (c == '\n' || c == '\r')
            break;
        if (c < 0x20 && c != '\t')
            return lex_fail(lx, lx->p, "Syntax Error: Invalid character within String%s", "");
        if (c != '\\') {
            lx->p++;
            continue;
        }
        if (lx->end - lx->p < 2)
            break;
        char e = lx->p[1];
        if (e == 'u') {
            if (lx->end - lx->p < 6 || !is_hex(lx->p[2]) || !is_hex(lx->p[3]) ||
                !is_hex(lx->p[4]) || !is_hex(lx->p[5]))
                return lex_fail(lx, lx->p, "Syntax Error: Invalid Unicode escape sequence%s", "");
            lx->p += 6;
        } else if (strchr("\"\\/bfnrt", e) && e != '\0') {
            lx->p += 2;
        } else {
            return lex_fail(lx, lx->p, "Syntax Error: Invalid character escape sequence%s", "");
        }
    }
    return lex_fail(lx, lx->p, "Syntax Error: Unterminated string%s", "");
}

/* A """block string""" (2.9.4): any text up to """, where \""" is an
 * escaped triple quote. */
static int lex_block_string(struct lexer *lx)
{
    lx->p += 3;
    while (lx->p < lx->end) {
        if (at(lx, "\"\"\"")) {
            lx->p += 3;
            return 0;
        }
        if (at(lx, "\\\"\"\"")) {
            lx->p += 4;
        } else if (skip_newline(lx)) {
        } else {
            unsigned char c = (unsigned char)*lx->p;
            if (c < 0x20 && c != '\t')
                return lex_fail(lx, lx->p, "Syntax Error: Invalid character within String%s", "");
            lx->p++;
        }
    }
    return lex_fail(lx, lx->p, "Syntax Error: Unterminated string%s", "");
}

static enum tok_kind punctuator(char c)
{
    switch (c) {
    case '!':
        return T_BANG;
    case '$':
        return T_DOLLAR;
    case '&':
        return T_AMP;
    case '(':
        return T_LPAREN;
    case ')':
        return T_RPAREN;
    case ':':
        return T_COLON;
    case '=':
        return T_EQUALS;
    case '@':
        return T_AT;
    case '[':
        return T_LBRACKET;
    case ']':
        return T_RBRACKET;
    case '{':
        return T_LBRACE;
    case '|':
        return T_PIPE;
    case '}':
        return T_RBRACE;
    default:
        return T_EOF;
    }
}

/* Read the next token into lx->tok. */
static int lex_next(struct lexer *lx)
{
    skip_ignored(lx);
    struct token *t = &lx->tok;
    t->start = lx->p;
    t->line = lx->line;
    t->column = column_of(lx, lx->p);
    t->len = 1;
    if (lx->p >= lx->end) {
        t->kind = T_EOF;
        t->len = 0;
        return 0;
    }
    if (++lx->n_tokens > lx->max_tokens)
        return fail_at(lx->err, t->line, t->column, "Too many tokens: the limit is %u",
                       lx->max_tokens);
    char c = *lx->p;
    if ((t->kind = punctuator(c)) != T_EOF) {
        lx->p++;
        return 0;
    }
    if (c == '.') {
        if (!at(lx, "..."))
            return lex_fail(lx, lx->p, "Syntax Error: Unexpected \"%s\"", ".");
        lx->p += 3;
        t->kind = T_SPREAD;
        t->len = 3;
        return 0;
    }
    if (is_name_start(c)) {
        /* A local cursor: through lx->p, every char read could alias the
         * pointer itself, and the compiler would store and reload it. */
        const char *q = lx->p, *end = lx->end;
        while (q < end && lex_name_char[(unsigned char)*q])
            q++;
        lx->p = q;
        t->kind = T_NAME;
        t->len = (size_t)(lx->p - t->start);
        return 0;
    }
    if (c == '-' || is_digit(c))
        return lex_number(lx, t);
    if (c == '"') {
        bool block = at(lx, "\"\"\"");
        int rc = block ? lex_block_string(lx) : lex_string(lx);
        t->kind = block ? T_BLOCK_STRING : T_STRING;
        t->len = (size_t)(lx->p - t->start);
        return rc;
    }
    if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
        return fail_at(lx->err, t->line, t->column, "Syntax Error: Unexpected character 0x%02x",
                       (unsigned char)c);
    return fail_at(lx->err, t->line, t->column, "Syntax Error: Unexpected character \"%c\"", c);
}

/* ---- parser ---- */

struct parser {
    struct lexer lx;
    struct arena *a;
    struct gqlp_error *err;
    unsigned depth, max_depth;
    struct gqlp_sel **spread_tail; /* where the current definition's next spread goes */
    size_t n_ops, n_frags;
};

static const char *tok_name(enum tok_kind k)
{
    static const char *const names[] = {
        "<EOF>", "!", "$", "&", "(", ")",    "...", ":",     "=",      "@",
        "[",     "]", "{", "|", "}", "Name", "Int", "Float", "String", "BlockString"};
    return names[k];
}

/* "Expected <what>, found <current token>". */
static int unexpected(struct parser *ps, const char *what)
{
    const struct token *t = &ps->lx.tok;
    char found[64];
    if (t->kind == T_EOF)
        snprintf(found, sizeof(found), "<EOF>");
    else if (t->kind == T_STRING || t->kind == T_BLOCK_STRING) /* quoted already */
        snprintf(found, sizeof(found), "%s %.*s", tok_name(t->kind),
                 (int)(t->len > 24 ? 24 : t->len), t->start);
    else if (t->kind >= T_NAME)
        snprintf(found, sizeof(found), "%s \"%.*s\"", tok_name(t->kind),
                 (int)(t->len > 24 ? 24 : t->len), t->start);
    else
        snprintf(found, sizeof(found), "\"%s\"", tok_name(t->kind));
    return fail_at(ps->err, t->line, t->column, "Syntax Error: Expected %s, found %s", what, found);
}

static bool peek(const struct parser *ps, enum tok_kind k)
{
    return ps->lx.tok.kind == k;
}

static bool peek_name(const struct parser *ps, const char *name)
{
    const struct token *t = &ps->lx.tok;
    return t->kind == T_NAME && t->len == strlen(name) && memcmp(t->start, name, t->len) == 0;
}

static int expect(struct parser *ps, enum tok_kind k)
{
    if (!peek(ps, k)) {
        char what[16];
        snprintf(what, sizeof(what), "\"%s\"", tok_name(k));
        return unexpected(ps, what);
    }
    return lex_next(&ps->lx);
}

/* The current Name, copied into the arena; <out> may be NULL. */
static int parse_name(struct parser *ps, const char **out)
{
    if (!peek(ps, T_NAME))
        return unexpected(ps, "Name");
    if (out)
        *out = arena_strndup(ps->a, ps->lx.tok.start, ps->lx.tok.len);
    return lex_next(&ps->lx);
}

/* Every nesting construct goes through here, so recursion stays below
 * max_depth and the C stack with it. */
static int enter(struct parser *ps)
{
    if (++ps->depth > ps->max_depth)
        return fail_at(ps->err, ps->lx.tok.line, ps->lx.tok.column, "Too deep: nesting exceeds %u",
                       ps->max_depth);
    return 0;
}

static void leave(struct parser *ps)
{
    ps->depth--;
}

static int parse_value(struct parser *ps, bool is_const, struct limit_arg *lim);

static int parse_list_value(struct parser *ps, bool is_const)
{
    if (enter(ps) < 0 || lex_next(&ps->lx) < 0)
        return -1;
    while (!peek(ps, T_RBRACKET))
        if (parse_value(ps, is_const, NULL) < 0)
            return -1;
    leave(ps);
    return lex_next(&ps->lx);
}

static int parse_object_value(struct parser *ps, bool is_const)
{
    if (enter(ps) < 0 || lex_next(&ps->lx) < 0)
        return -1;
    while (!peek(ps, T_RBRACE))
        if (parse_name(ps, NULL) < 0 || expect(ps, T_COLON) < 0 ||
            parse_value(ps, is_const, NULL) < 0)
            return -1;
    leave(ps);
    return lex_next(&ps->lx);
}

/* An Int literal's value, saturated (only its size matters for the cost). */
static long long int_value(const struct token *t)
{
    long long n = 0;
    size_t i = t->start[0] == '-';
    for (; i < t->len; i++)
        n = n >= GQLP_SATURATED ? (long long)GQLP_SATURATED : n * 10 + (t->start[i] - '0');
    return t->start[0] == '-' ? -n : n;
}

/* Value[Const] (2.9); <lim>, when not NULL, learns what a first/last says. */
static int parse_value(struct parser *ps, bool is_const, struct limit_arg *lim)
{
    const struct token *t = &ps->lx.tok;
    if (lim)
        lim->kind = LIMIT_OTHER;
    switch (t->kind) {
    case T_DOLLAR:
        if (is_const)
            return unexpected(ps, "a constant value");
        if (lex_next(&ps->lx) < 0)
            return -1;
        if (lim && peek(ps, T_NAME))
            lim->kind = LIMIT_VAR;
        return parse_name(ps, lim ? &lim->var : NULL);
    case T_INT:
        if (lim) {
            lim->kind = LIMIT_INT;
            lim->n = int_value(t);
        }
        return lex_next(&ps->lx);
    case T_FLOAT:
    case T_STRING:
    case T_BLOCK_STRING:
    case T_NAME: /* true, false, null and enum values */
        return lex_next(&ps->lx);
    case T_LBRACKET:
        return parse_list_value(ps, is_const);
    case T_LBRACE:
        return parse_object_value(ps, is_const);
    default:
        return unexpected(ps, "a value");
    }
}

/* Arguments[Const] (2.6); a field's first/last are kept in <sel>. */
static int parse_arguments(struct parser *ps, bool is_const, struct gqlp_sel *sel)
{
    if (!peek(ps, T_LPAREN))
        return 0;
    if (lex_next(&ps->lx) < 0)
        return -1;
    do {
        struct limit_arg *lim = NULL;
        if (sel && peek_name(ps, "first"))
            lim = &sel->first;
        else if (sel && peek_name(ps, "last"))
            lim = &sel->last;
        if (parse_name(ps, NULL) < 0 || expect(ps, T_COLON) < 0 ||
            parse_value(ps, is_const, lim) < 0)
            return -1;
    } while (!peek(ps, T_RPAREN));
    return lex_next(&ps->lx);
}

/* Directives[Const] (2.12). */
static int parse_directives(struct parser *ps, bool is_const)
{
    while (peek(ps, T_AT))
        if (lex_next(&ps->lx) < 0 || parse_name(ps, NULL) < 0 ||
            parse_arguments(ps, is_const, NULL) < 0)
            return -1;
    return 0;
}

/* Type (2.11): Name, [Type], either followed by '!'. */
static int parse_type(struct parser *ps)
{
    if (peek(ps, T_LBRACKET)) {
        if (enter(ps) < 0 || lex_next(&ps->lx) < 0 || parse_type(ps) < 0 ||
            expect(ps, T_RBRACKET) < 0)
            return -1;
        leave(ps);
    } else if (parse_name(ps, NULL) < 0) {
        return -1;
    }
    return peek(ps, T_BANG) ? lex_next(&ps->lx) : 0;
}

static int parse_selection_set(struct parser *ps, struct gqlp_sel **out);

static struct gqlp_sel *new_sel(struct parser *ps, enum sel_kind kind)
{
    struct gqlp_sel *s = arena_calloc(ps->a, sizeof(*s));
    s->kind = kind;
    s->line = ps->lx.tok.line;
    s->column = ps->lx.tok.column;
    return s;
}

/* Field (2.5): Alias? Name Arguments? Directives? SelectionSet? */
static int parse_field(struct parser *ps, struct gqlp_sel **out)
{
    struct gqlp_sel *s = *out = new_sel(ps, SEL_FIELD);
    if (parse_name(ps, &s->name) < 0)
        return -1;
    if (peek(ps, T_COLON)) {
        s->alias = s->name;
        if (lex_next(&ps->lx) < 0 || parse_name(ps, &s->name) < 0)
            return -1;
    }
    if (parse_arguments(ps, false, s) < 0 || parse_directives(ps, false) < 0)
        return -1;
    return peek(ps, T_LBRACE) ? parse_selection_set(ps, &s->children) : 0;
}

/* After "...": FragmentSpread (FragmentName Directives?) or InlineFragment
 * (TypeCondition? Directives? SelectionSet) (2.8). */
static int parse_fragment_selection(struct parser *ps, struct gqlp_sel **out)
{
    unsigned line = ps->lx.tok.line, column = ps->lx.tok.column;
    if (lex_next(&ps->lx) < 0)
        return -1;
    struct gqlp_sel *s;
    if (peek(ps, T_NAME) && !peek_name(ps, "on")) {
        s = *out = new_sel(ps, SEL_SPREAD);
        *ps->spread_tail = s;
        ps->spread_tail = &s->next_spread;
        if (parse_name(ps, &s->name) < 0 || parse_directives(ps, false) < 0)
            return -1;
    } else {
        s = *out = new_sel(ps, SEL_INLINE);
        if (peek_name(ps, "on") && (lex_next(&ps->lx) < 0 || parse_name(ps, NULL) < 0))
            return -1;
        if (parse_directives(ps, false) < 0)
            return -1;
        if (!peek(ps, T_LBRACE))
            return unexpected(ps, "\"{\"");
        if (parse_selection_set(ps, &s->children) < 0)
            return -1;
    }
    s->line = line;
    s->column = column;
    return 0;
}

/* SelectionSet (2.4): { Selection+ } */
static int parse_selection_set(struct parser *ps, struct gqlp_sel **out)
{
    if (enter(ps) < 0 || expect(ps, T_LBRACE) < 0)
        return -1;
    struct gqlp_sel **tail = out;
    do {
        int rc = peek(ps, T_SPREAD) ? parse_fragment_selection(ps, tail) : parse_field(ps, tail);
        if (rc < 0)
            return -1;
        tail = &(*tail)->next;
    } while (!peek(ps, T_RBRACE));
    leave(ps);
    return lex_next(&ps->lx);
}

/* VariableDefinitions (2.10): ( $name: Type = default? Directives? ... ) */
static int parse_variable_definitions(struct parser *ps, struct gqlp_operation *op)
{
    if (!peek(ps, T_LPAREN))
        return 0;
    if (lex_next(&ps->lx) < 0)
        return -1;
    struct var_def **tail = &op->vars;
    do {
        struct var_def *v = *tail = arena_calloc(ps->a, sizeof(*v));
        tail = &v->next;
        if (expect(ps, T_DOLLAR) < 0 || parse_name(ps, &v->name) < 0 || expect(ps, T_COLON) < 0 ||
            parse_type(ps) < 0)
            return -1;
        if (peek(ps, T_EQUALS)) {
            struct limit_arg def = {0};
            if (lex_next(&ps->lx) < 0 || parse_value(ps, true, &def) < 0)
                return -1;
            v->has_int_default = def.kind == LIMIT_INT;
            v->int_default = def.n;
        }
        if (parse_directives(ps, true) < 0)
            return -1;
    } while (!peek(ps, T_RPAREN));
    return lex_next(&ps->lx);
}

/* OperationDefinition (2.3); the shorthand `{ ... }` is an anonymous query. */
static int parse_operation(struct parser *ps, struct gqlp_operation *op)
{
    op->line = ps->lx.tok.line;
    op->column = ps->lx.tok.column;
    op->name = "";
    op->type = GQLP_QUERY;
    ps->spread_tail = &op->spreads;
    if (peek(ps, T_NAME)) {
        if (peek_name(ps, "mutation"))
            op->type = GQLP_MUTATION;
        else if (peek_name(ps, "subscription"))
            op->type = GQLP_SUBSCRIPTION;
        if (lex_next(&ps->lx) < 0)
            return -1;
        if (peek(ps, T_NAME) && parse_name(ps, &op->name) < 0)
            return -1;
        if (parse_variable_definitions(ps, op) < 0 || parse_directives(ps, false) < 0)
            return -1;
    }
    return parse_selection_set(ps, &op->sel);
}

/* FragmentDefinition (2.8): fragment Name on Type Directives? SelectionSet */
static int parse_fragment(struct parser *ps, struct gqlp_fragment *f)
{
    f->line = ps->lx.tok.line;
    f->column = ps->lx.tok.column;
    ps->spread_tail = &f->spreads;
    if (lex_next(&ps->lx) < 0)
        return -1;
    if (peek_name(ps, "on"))
        return unexpected(ps, "a fragment name (not \"on\")");
    if (parse_name(ps, &f->name) < 0)
        return -1;
    if (!peek_name(ps, "on"))
        return unexpected(ps, "\"on\"");
    if (lex_next(&ps->lx) < 0 || parse_name(ps, NULL) < 0 || parse_directives(ps, false) < 0)
        return -1;
    return parse_selection_set(ps, &f->sel);
}

static bool is_type_system_keyword(const struct parser *ps)
{
    static const char *const words[] = {"schema", "scalar", "type",      "interface", "union",
                                        "enum",   "input",  "directive", "extend"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (peek_name(ps, words[i]))
            return true;
    return false;
}

/* Operations go to a list in the arena as they come (the final array is
 * made once their number is known). */
struct op_node {
    struct gqlp_operation op;
    struct op_node *next;
};

/* Document (2.2): ExecutableDefinition+ */
static int parse_document(struct parser *ps, struct op_node **ops, struct gqlp_fragment **frags)
{
    struct op_node **op_tail = ops;
    struct gqlp_fragment **frag_tail = frags;
    if (lex_next(&ps->lx) < 0)
        return -1;
    if (peek(ps, T_EOF))
        return unexpected(ps, "a definition");
    while (!peek(ps, T_EOF)) {
        if (peek(ps, T_LBRACE) || peek_name(ps, "query") || peek_name(ps, "mutation") ||
            peek_name(ps, "subscription")) {
            struct op_node *n = *op_tail = arena_calloc(ps->a, sizeof(*n));
            op_tail = &n->next;
            ps->n_ops++;
            if (parse_operation(ps, &n->op) < 0)
                return -1;
        } else if (peek_name(ps, "fragment")) {
            struct gqlp_fragment *f = *frag_tail = arena_calloc(ps->a, sizeof(*f));
            frag_tail = &f->next;
            ps->n_frags++;
            if (parse_fragment(ps, f) < 0)
                return -1;
        } else if (is_type_system_keyword(ps) || peek(ps, T_STRING) || peek(ps, T_BLOCK_STRING)) {
            return fail_at(ps->err, ps->lx.tok.line, ps->lx.tok.column,
                           "Syntax Error: only executable definitions are accepted");
        } else {
            return unexpected(ps, "a definition");
        }
    }
    return 0;
}

/* ---- fragment checks ---- */

static int cmp_frag_name(const void *a, const void *b)
{
    const struct gqlp_fragment *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static struct gqlp_fragment *find_fragment(struct gqlp_fragment **sorted, size_t n,
                                           const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, sorted[mid]->name);
        if (c == 0)
            return sorted[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Point each spread of the list at its fragment (by index in <sorted>). */
static int resolve_spreads(struct gqlp_sel *spreads, struct gqlp_fragment **sorted, size_t n,
                           struct gqlp_error *err)
{
    for (struct gqlp_sel *s = spreads; s; s = s->next_spread) {
        struct gqlp_fragment *f = find_fragment(sorted, n, s->name);
        if (!f)
            return fail_at(err, s->line, s->column, "Unknown fragment \"%s\"", s->name);
        s->frag = f->index;
    }
    return 0;
}

/* Order the fragments so each follows those it spreads, by a depth-first
 * walk with an explicit stack (a chain of thousands of fragments must not
 * use the C stack); a spread back to a fragment on the stack is a cycle.
 * On entry f->index is the position in <sorted>; on return <order> holds the
 * dependency order and f->index the position in it. */
static int order_fragments(struct gqlp_fragment **sorted, size_t n, struct gqlp_fragment **order,
                           struct arena *a, struct gqlp_error *err)
{
    enum { WHITE, GREY, BLACK };
    unsigned char *color = arena_calloc(a, n ? n : 1);
    struct frame {
        size_t frag;
        struct gqlp_sel *next;
    } *stack = arena_alloc(a, (n ? n : 1) * sizeof(*stack));
    size_t done = 0;
    for (size_t root = 0; root < n; root++) {
        if (color[root] != WHITE)
            continue;
        size_t top = 0;
        stack[top++] = (struct frame){root, sorted[root]->spreads};
        color[root] = GREY;
        while (top) {
            struct frame *fr = &stack[top - 1];
            if (!fr->next) {
                color[fr->frag] = BLACK;
                order[done++] = sorted[fr->frag];
                top--;
                continue;
            }
            struct gqlp_sel *s = fr->next;
            fr->next = s->next_spread;
            if (color[s->frag] == GREY)
                return fail_at(err, s->line, s->column,
                               "Cannot spread fragment \"%s\" within itself", s->name);
            if (color[s->frag] == WHITE) {
                color[s->frag] = GREY;
                stack[top++] = (struct frame){s->frag, sorted[s->frag]->spreads};
            }
        }
    }
    return 0;
}

/* Unique names, known spreads, no cycles; fills doc->frags in dependency
 * order and turns every spread's index into a position in it. */
static int check_fragments(struct gqlp_doc *doc, struct gqlp_fragment *list, struct op_node *ops,
                           struct arena *a, struct gqlp_error *err)
{
    size_t n = doc->n_frags;
    struct gqlp_fragment **sorted = arena_alloc(a, (n ? n : 1) * sizeof(*sorted));
    size_t i = 0;
    for (struct gqlp_fragment *f = list; f; f = f->next)
        sorted[i++] = f;
    qsort(sorted, n, sizeof(*sorted), cmp_frag_name);
    for (i = 0; i < n; i++) {
        sorted[i]->index = i;
        if (i && strcmp(sorted[i - 1]->name, sorted[i]->name) == 0)
            return fail_at(err, sorted[i]->line, sorted[i]->column,
                           "There can be only one fragment named \"%s\"", sorted[i]->name);
    }
    for (i = 0; i < n; i++)
        if (resolve_spreads(sorted[i]->spreads, sorted, n, err) < 0)
            return -1;
    for (struct op_node *o = ops; o; o = o->next)
        if (resolve_spreads(o->op.spreads, sorted, n, err) < 0)
            return -1;
    doc->frags = arena_alloc(a, (n ? n : 1) * sizeof(*doc->frags));
    if (order_fragments(sorted, n, doc->frags, a, err) < 0)
        return -1;
    for (i = 0; i < n; i++)
        doc->frags[i]->index = i;
    /* Spreads held positions in <sorted>; make them positions in doc->frags. */
    for (i = 0; i < n; i++)
        for (struct gqlp_sel *s = sorted[i]->spreads; s; s = s->next_spread)
            s->frag = sorted[s->frag]->index;
    for (struct op_node *o = ops; o; o = o->next)
        for (struct gqlp_sel *s = o->op.spreads; s; s = s->next_spread)
            s->frag = sorted[s->frag]->index;
    return 0;
}

int gqlp_parse(struct gqlp_doc *doc, const char *src, size_t len, const struct gqlp_limits *lim,
               struct arena *a, struct gqlp_error *err)
{
    memset(doc, 0, sizeof(*doc));
    memset(err, 0, sizeof(*err));
    if (!lim)
        lim = &gqlp_default_limits;
    if (len > lim->max_bytes)
        return fail_at(err, 0, 0, "Document too long: %zu bytes, the limit is %zu", len,
                       lim->max_bytes);
    struct parser ps = {
        .lx = {.p = src,
               .end = src + len,
               .line_start = src,
               .line = 1,
               .max_tokens = lim->max_tokens,
               .err = err},
        .a = a,
        .err = err,
        .max_depth = lim->max_depth,
    };
    struct op_node *ops = NULL;
    struct gqlp_fragment *frags = NULL;
    int rc = parse_document(&ps, &ops, &frags);
    doc->n_tokens = ps.lx.n_tokens;
    if (rc < 0)
        return -1;
    doc->n_ops = ps.n_ops;
    doc->n_frags = ps.n_frags;
    doc->ops = arena_alloc(a, (ps.n_ops ? ps.n_ops : 1) * sizeof(*doc->ops));
    size_t i = 0;
    for (struct op_node *o = ops; o; o = o->next)
        doc->ops[i++] = o->op;
    return check_fragments(doc, frags, ops, a, err);
}

/* ---- analysis ---- */

/* What a selection set (or a fragment) adds up to; see graphql/parse.h. */
struct metrics {
    uint32_t depth, aliases, cost, root_fields;
    const char *names[GQLP_MAX_ROOT_NAMES];
    unsigned n_names;
    uint32_t watched; /* bit i: a root field is named watch[i] */
};

struct analysis {
    const struct gqlp_operation *op;
    const json_t *variables;
    const struct metrics *frag; /* per fragment, in doc->frags order */
    const char *const *watch;   /* root field names asked about (gqlp_analyze_watch) */
    unsigned n_watch;
};

static uint32_t sat_add(uint32_t a, uint32_t b)
{
    uint64_t s = (uint64_t)a + b;
    return s > GQLP_SATURATED ? GQLP_SATURATED : (uint32_t)s;
}

static uint32_t sat_mul(uint32_t a, uint32_t b)
{
    uint64_t p = (uint64_t)a * b;
    return p > GQLP_SATURATED ? GQLP_SATURATED : (uint32_t)p;
}

static void add_name(const struct analysis *an, struct metrics *m, const char *name)
{
    if (m->n_names < GQLP_MAX_ROOT_NAMES)
        m->names[m->n_names++] = name;
    for (unsigned i = 0; i < an->n_watch; i++)
        if (strcmp(an->watch[i], name) == 0)
            m->watched |= 1u << i;
}

/* The value of a first/last argument: true with <n> when known. */
static bool limit_value(const struct analysis *an, const struct limit_arg *lim, long long *n)
{
    if (lim->kind == LIMIT_INT) {
        *n = lim->n;
        return true;
    }
    if (lim->kind != LIMIT_VAR)
        return false;
    const json_t *v = an->variables ? json_object_get((json_t *)an->variables, lim->var) : NULL;
    if (v) {
        if (!json_is_integer(v))
            return false;
        *n = json_integer_value(v);
        return true;
    }
    for (const struct var_def *d = an->op->vars; d; d = d->next)
        if (strcmp(d->name, lim->var) == 0) {
            *n = d->int_default;
            return d->has_int_default;
        }
    return false;
}

static uint32_t clamp_count(long long n)
{
    return n < 0 ? 0 : n > GQLP_SATURATED ? GQLP_SATURATED : (uint32_t)n;
}

/* A field's cost from its children's (the rule of graphql/parse.h). */
static uint32_t field_cost(const struct analysis *an, const struct gqlp_sel *s, uint32_t children)
{
    long long first, last;
    /* Most fields have neither: no call for them. */
    bool has_first = s->first.kind != LIMIT_NONE && limit_value(an, &s->first, &first);
    bool has_last = s->last.kind != LIMIT_NONE && limit_value(an, &s->last, &last);
    uint32_t own = sat_add(1, children);
    if (has_first || has_last) {
        long long n = has_first && has_last ? (first > last ? first : last)
                      : has_first           ? first
                                            : last;
        return sat_mul(own, clamp_count(n));
    }
    if (!s->children)
        return 0;
    bool sized = s->first.kind != LIMIT_NONE || s->last.kind != LIMIT_NONE;
    return sized ? sat_mul(own, 10) : own;
}

/* Add the selections <sel> to <m>; <top>: they are at <m>'s first level
 * (root fields are counted and named). Recursion follows the nesting of
 * selection sets, which the parser bounded; spreads use the fragment's
 * metrics, computed before. */
static void measure(const struct analysis *an, const struct gqlp_sel *sel, struct metrics *m,
                    bool top)
{
    for (const struct gqlp_sel *s = sel; s; s = s->next) {
        if (s->kind == SEL_INLINE) {
            measure(an, s->children, m, top);
            continue;
        }
        if (s->kind == SEL_SPREAD) {
            const struct metrics *f = &an->frag[s->frag];
            if (f->depth > m->depth)
                m->depth = f->depth;
            m->aliases = sat_add(m->aliases, f->aliases);
            m->cost = sat_add(m->cost, f->cost);
            if (top) {
                m->root_fields = sat_add(m->root_fields, f->root_fields);
                for (unsigned i = 0; i < f->n_names; i++)
                    if (m->n_names < GQLP_MAX_ROOT_NAMES)
                        m->names[m->n_names++] = f->names[i];
                m->watched |= f->watched;
            }
            continue;
        }
        /* Not "= {0}": the names (unused below the root) would be zeroed for
         * every field, a good part of the analysis of a wide document. */
        struct metrics c;
        c.depth = c.aliases = c.cost = c.root_fields = c.watched = 0;
        c.n_names = 0;
        measure(an, s->children, &c, false);
        uint32_t depth = sat_add(1, c.depth);
        if (depth > m->depth)
            m->depth = depth;
        m->aliases = sat_add(m->aliases, sat_add(s->alias ? 1 : 0, c.aliases));
        m->cost = sat_add(m->cost, field_cost(an, s, c.cost));
        if (top) {
            m->root_fields = sat_add(m->root_fields, 1);
            add_name(an, m, s->name);
        }
    }
}

/* GetOperation (spec 6.1), plus the lone anonymous operation rule. */
static const struct gqlp_operation *pick_operation(const struct gqlp_doc *doc, const char *name,
                                                   struct gqlp_error *err)
{
    if (doc->n_ops > 1)
        for (size_t i = 0; i < doc->n_ops; i++)
            if (!doc->ops[i].name[0]) {
                fail_at(err, doc->ops[i].line, doc->ops[i].column,
                        "This anonymous operation must be the only defined operation");
                return NULL;
            }
    if (doc->n_ops == 0) {
        fail_at(err, 0, 0, "The document has no operation, only fragments");
        return NULL;
    }
    if (!name || !name[0]) {
        if (doc->n_ops == 1)
            return &doc->ops[0];
        fail_at(err, 0, 0, "Must provide operation name if query contains multiple operations");
        return NULL;
    }
    const struct gqlp_operation *found = NULL;
    for (size_t i = 0; i < doc->n_ops; i++) {
        if (strcmp(doc->ops[i].name, name) != 0)
            continue;
        if (found) {
            fail_at(err, doc->ops[i].line, doc->ops[i].column,
                    "There can be only one operation named \"%.64s\"", name);
            return NULL;
        }
        found = &doc->ops[i];
    }
    if (!found)
        fail_at(err, 0, 0, "Unknown operation named \"%.64s\"", name);
    return found;
}

const char *gqlp_operation_name(const struct gqlp_doc *doc, size_t i)
{
    return i < doc->n_ops ? doc->ops[i].name : NULL;
}

int gqlp_analyze(const struct gqlp_doc *doc, const char *operation_name, const json_t *variables,
                 struct gqlp_op_info *out, struct gqlp_error *err)
{
    return gqlp_analyze_watch(doc, operation_name, variables, NULL, 0, out, err);
}

int gqlp_analyze_watch(const struct gqlp_doc *doc, const char *operation_name,
                       const json_t *variables, const char *const *watch, unsigned n_watch,
                       struct gqlp_op_info *out, struct gqlp_error *err)
{
    static const char *const type_names[] = {"query", "mutation", "subscription"};
    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    const struct gqlp_operation *op = pick_operation(doc, operation_name, err);
    if (!op)
        return -1;
    struct metrics *frag = calloc(doc->n_frags ? doc->n_frags : 1, sizeof(*frag));
    if (!frag)
        return fail_at(err, 0, 0, "Out of memory");
    struct analysis an = {
        .op = op,
        .variables = json_is_object(variables) ? variables : NULL,
        .frag = frag,
        .watch = watch,
        .n_watch = n_watch < GQLP_MAX_WATCH ? n_watch : GQLP_MAX_WATCH,
    };
    /* doc->frags lists each fragment after those it spreads: one pass. */
    for (size_t i = 0; i < doc->n_frags; i++)
        measure(&an, doc->frags[i]->sel, &frag[i], true);
    struct metrics m = {0};
    measure(&an, op->sel, &m, true);
    free(frag);
    out->type = op->type;
    out->type_name = type_names[op->type];
    out->name = op->name;
    memcpy(out->root_names, m.names, sizeof(m.names));
    out->n_root_names = m.n_names;
    out->root_fields = m.root_fields;
    out->depth = m.depth;
    out->aliases = m.aliases;
    out->cost = m.cost;
    out->watched = m.watched;
    return 0;
}
