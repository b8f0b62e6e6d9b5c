/*
 * strmap.c - an arena and a string-keyed chained hash map, for tables of
 * many small entries that all live exactly as long as their owner (the
 * cache's indexes: tens of thousands of entries, one free at close
 * instead of one each).
 *
 * Invariants: arena memory is zeroed, aligned for any type, and freed only
 * all at once by arena_free. A strmap holds entries that embed a
 * strmap_node (their first member); it never allocates or frees entries,
 * only its bucket array (the owner pk_frees m->b). Keys are unique: look
 * before adding. The bucket count is zero or a power of two, and stays at
 * least the entry count.
 *
 * Threads: not thread-safe; callers lock (the cache holds its mutex).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- the arena ---------------------------------------------------------- */

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void *arena_alloc(arena *a, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    struct arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > (256u << 10) ? n : (256u << 10);
        if (!(c = pk_malloc(sizeof *c + cap)))
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *arena_strdup(arena *a, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *p = arena_alloc(a, n);
    return p ? memcpy(p, s, n) : NULL;
}

void arena_free(arena *a)
{
    for (struct arena_chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        pk_free(c);
    }
    a->head = NULL;
}

/* ---- the map ------------------------------------------------------------ */

strmap_node *strmap_find(const strmap *m, const char *key)
{
    if (!m->nb)
        return NULL;
    uint64_t h = hash64(key);
    for (strmap_node *e = m->b[h & (m->nb - 1)]; e; e = e->next)
        if (e->h == h && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

int strmap_add(strmap *m, strmap_node *e)
{
    if (m->n + 1 > m->nb) {
        size_t nb = m->nb ? m->nb * 2 : 1024;
        strmap_node **b = pk_calloc(nb, sizeof *b);
        if (!b)
            return pk_err(PACKER_ENOMEM, "out of memory");
        for (size_t i = 0; i < m->nb; i++)
            for (strmap_node *x = m->b[i], *next; x; x = next) {
                next = x->next;
                x->next = b[x->h & (nb - 1)];
                b[x->h & (nb - 1)] = x;
            }
        pk_free(m->b);
        m->b = b;
        m->nb = nb;
    }
    e->h = hash64(e->key);
    e->next = m->b[e->h & (m->nb - 1)];
    m->b[e->h & (m->nb - 1)] = e;
    m->n++;
    return 0;
}

static int cmp_node(const void *a, const void *b)
{
    return strcmp((*(strmap_node *const *)a)->key, (*(strmap_node *const *)b)->key);
}

strmap_node **strmap_used_sorted(const strmap *m, size_t *n)
{
    strmap_node **v = pk_malloc((m->n + 1) * sizeof *v);
    *n = 0;
    for (size_t i = 0; v && i < m->nb; i++)
        for (strmap_node *e = m->b[i]; e; e = e->next)
            if (e->used)
                v[(*n)++] = e;
    if (v)
        qsort(v, *n, sizeof *v, cmp_node);
    return v;
}
