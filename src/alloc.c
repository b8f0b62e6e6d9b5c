/*
 * alloc.c - the one allocator of libpacker, and the fault-injection hook.
 *
 * Every allocation (ours and cJSON's, through cJSON_InitHooks) goes through
 * pk_malloc so that tests can fail the Nth one, as SQLite does. The same
 * counter serves the I/O wrappers in fsio.c (writes, fsyncs, renames).
 * Failed allocations are also counted per thread, so that a parser that
 * gave up can tell running out of memory from bad input.
 * The wrappers are plain malloc/free underneath, so memory allocated here
 * may be released with free() and the reverse.
 *
 * Threads: any. The counter is atomic; arming is meant for tests that
 * drive one operation at a time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static _Thread_local unsigned long alloc_failures;
static atomic_int fault_kinds;
static atomic_long fault_left; /* > 0: armed */
static atomic_long fault_seen;

void pk_fault_arm(int kinds, long n)
{
    atomic_store(&fault_kinds, n > 0 ? kinds : 0);
    atomic_store(&fault_left, n);
    atomic_store(&fault_seen, 0);
}

bool pk_fault_hit(int kind)
{
    if (!(atomic_load_explicit(&fault_kinds, memory_order_relaxed) & kind))
        return false;
    atomic_fetch_add(&fault_seen, 1);
    return atomic_fetch_sub(&fault_left, 1) == 1;
}

long pk_fault_count(void)
{
    return atomic_load(&fault_seen);
}

unsigned long pk_alloc_failures(void)
{
    return alloc_failures;
}

static void *counted(void *p)
{
    if (!p)
        alloc_failures++;
    return p;
}

void *pk_malloc(size_t n)
{
    return counted(pk_fault_hit(FAULT_ALLOC) ? NULL : malloc(n ? n : 1));
}

void *pk_calloc(size_t n, size_t size)
{
    return counted(pk_fault_hit(FAULT_ALLOC) ? NULL : calloc(n ? n : 1, size ? size : 1));
}

void *pk_realloc(void *p, size_t n)
{
    return counted(pk_fault_hit(FAULT_ALLOC) ? NULL : realloc(p, n ? n : 1));
}

void pk_free(void *p)
{
    free(p);
}

char *pk_strndup(const char *s, size_t n)
{
    char *d = pk_malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *pk_strdup(const char *s)
{
    return s ? pk_strndup(s, strlen(s)) : NULL;
}

char *pk_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = pk_malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Room for n more bytes and the NUL; false (oom set) when out of memory. */
static bool strbuf_room(strbuf *b, size_t n)
{
    if (b->oom)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *s = pk_realloc(b->s, cap);
    if (!s)
        return !(b->oom = true);
    b->s = s;
    b->cap = cap;
    return true;
}

void strbuf_put(strbuf *b, const char *s, size_t n)
{
    if (!strbuf_room(b, n))
        return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void strbuf_printf(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s && !b->oom ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if (b->s && !b->oom && (size_t)n < b->cap - b->len) {
        b->len += (size_t)n;
        return;
    }
    if (!strbuf_room(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void packer_free(void *ptr)
{
    free(ptr);
}

/* While a thread parses into an arena (json_parse_arena), cJSON's nodes
 * come from that arena and its frees do nothing: the tree goes with the
 * arena, at once. Set only around one cJSON parse call, so no tree made
 * outside it is ever freed inside it, or the reverse. */
static _Thread_local arena *cjson_arena;

static void *cjson_alloc(size_t n)
{
    return cjson_arena ? arena_alloc(cjson_arena, n) : pk_malloc(n);
}

static void cjson_free(void *p)
{
    if (!cjson_arena)
        pk_free(p);
}

arena *pk_cjson_arena(arena *a)
{
    arena *old = cjson_arena;
    cjson_arena = a;
    return old;
}

/* cJSON allocates through us so that injected faults reach it too. */
__attribute__((constructor)) static void alloc_hook_cjson(void)
{
    cJSON_Hooks h = {cjson_alloc, cjson_free};
    cJSON_InitHooks(&h);
}
