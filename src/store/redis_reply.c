/* Reply objects from a free list (store/redis_reply.h). */
#include "store/redis_reply.h"

#include <stdlib.h>
#include <string.h>

/* Inline room: a rate-limit reply is an array of a few integers, a keystore
 * reply a few short strings. */
#define RDS_REPLY_STR 47
#define RDS_REPLY_ELEMS 8

struct rds_reply_obj {
    redisReply r; /* first: hiredis and our callers hold &r */
    struct rds_reply_pool *pool;
    struct rds_reply_obj *next_free;
    redisReply *elems[RDS_REPLY_ELEMS];
    char str[RDS_REPLY_STR + 1];
};

static struct rds_reply_obj *rds_reply_obj_of(void *reply)
{
    return (struct rds_reply_obj *)reply;
}

void rds_reply_pool_init(struct rds_reply_pool *p)
{
    memset(p, 0, sizeof(*p));
}

void rds_reply_pool_dispose(struct rds_reply_pool *p)
{
    while (p->free) {
        struct rds_reply_obj *o = p->free;
        p->free = o->next_free;
        free(o);
    }
    p->n_free = 0;
}

/* The pool of the task: the reader's privdata for the root, the parent's
 * pool for an element. */
static struct rds_reply_pool *rds_reply_pool_of(const redisReadTask *task)
{
    if (task->parent && task->parent->obj)
        return rds_reply_obj_of(task->parent->obj)->pool;
    return task->privdata;
}

static redisReply *rds_reply_new(const redisReadTask *task, int type)
{
    struct rds_reply_pool *p = rds_reply_pool_of(task);
    struct rds_reply_obj *o = p->free;
    if (o) {
        p->free = o->next_free;
        p->n_free--;
    } else {
        o = malloc(sizeof(*o));
        if (!o)
            return NULL;
        p->n_allocs++;
    }
    memset(&o->r, 0, sizeof(o->r));
    o->r.type = type;
    o->pool = p;
    o->next_free = NULL;
    /* An element is linked into its array at once, as hiredis does, so
     * freeing a half-read array frees what was read of it. */
    if (task->parent && task->parent->obj) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = &o->r;
    }
    return &o->r;
}

static void rds_reply_free(void *reply)
{
    if (!reply)
        return;
    struct rds_reply_obj *o = rds_reply_obj_of(reply);
    redisReply *r = &o->r;
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; r->element && i < r->elements; i++)
            rds_reply_free(r->element[i]);
        if (r->element != o->elems)
            free(r->element);
    } else if (r->str && r->str != o->str) {
        free(r->str);
    }
    struct rds_reply_pool *p = o->pool;
    if (p->n_free >= RDS_REPLY_KEEP) {
        free(o);
        return;
    }
    o->next_free = p->free;
    p->free = o;
    p->n_free++;
}

/* Out of memory after <r> was made: unlinked from its array and freed;
 * NULL, which makes the reader fail. */
static void *rds_reply_drop(const redisReadTask *task, redisReply *r)
{
    if (task->parent && task->parent->obj)
        ((redisReply *)task->parent->obj)->element[task->idx] = NULL;
    rds_reply_free(r);
    return NULL;
}

static void *rds_reply_string(const redisReadTask *task, char *str, size_t len)
{
    redisReply *r = rds_reply_new(task, task->type);
    if (!r)
        return NULL;
    struct rds_reply_obj *o = rds_reply_obj_of(r);
    char *buf = len <= RDS_REPLY_STR ? o->str : malloc(len + 1);
    if (!buf)
        return rds_reply_drop(task, r);
    memcpy(buf, str, len);
    buf[len] = '\0';
    r->str = buf;
    r->len = len;
    return r;
}

static void *rds_reply_array(const redisReadTask *task, int elements)
{
    redisReply *r = rds_reply_new(task, REDIS_REPLY_ARRAY);
    if (!r)
        return NULL;
    struct rds_reply_obj *o = rds_reply_obj_of(r);
    if (elements > 0) {
        size_t n = (size_t)elements;
        r->element = n <= RDS_REPLY_ELEMS ? o->elems : malloc(n * sizeof(*r->element));
        if (!r->element)
            return rds_reply_drop(task, r);
        memset(r->element, 0, n * sizeof(*r->element));
    }
    r->elements = elements > 0 ? (size_t)elements : 0;
    return r;
}

static void *rds_reply_integer(const redisReadTask *task, long long value)
{
    redisReply *r = rds_reply_new(task, REDIS_REPLY_INTEGER);
    if (r)
        r->integer = value;
    return r;
}

static void *rds_reply_nil(const redisReadTask *task)
{
    return rds_reply_new(task, REDIS_REPLY_NIL);
}

/* Not const in hiredis's reader, which never writes to it. */
static const redisReplyObjectFunctions rds_reply_fns = {
    .createString = rds_reply_string,
    .createArray = rds_reply_array,
    .createInteger = rds_reply_integer,
    .createNil = rds_reply_nil,
    .freeObject = rds_reply_free,
};

void rds_reply_use(redisReader *reader, struct rds_reply_pool *p)
{
    reader->fn = (redisReplyObjectFunctions *)&rds_reply_fns;
    reader->privdata = p;
}
