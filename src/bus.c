/*
 * bus.c - the typed event bus and the event envelope.
 *
 * The host owns the bus (packer.h: embedded bootstrap rule). Publishing
 * never blocks on subscribers: events are queued and one dispatcher thread
 * delivers them, in publication order, so subscribers never run on the
 * thread that called a service. A progress_updated event still queued when
 * a newer one of the same operation arrives is replaced by it; nothing
 * else is ever coalesced.
 *
 * Lock order: deliver_mu (held by the dispatcher around callbacks) is never
 * taken while holding mu.
 *
 * Threads: every function may be called from any thread; see packer.h for
 * the two that must not be called from a callback.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct packer_event {
    packer_event_kind kind;
    cJSON *env;
    char *json; /* canonical one-line form, made at publish */
    const char *op_id, *summary;
    uint64_t seq;
    uint64_t pub; /* publication number */
    struct packer_event *next;
};

typedef struct {
    uint64_t id;
    packer_event_cb cb;
    void *ud;
} sub;

struct packer_bus {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* queue non-empty, stopping, or delivered moved */
    pthread_mutex_t deliver_mu;
    packer_event *head, *tail;
    sub *subs;
    size_t nsubs, capsubs;
    uint64_t next_sub, published, delivered;
    bool stopping;
};

static const char *const KIND_NAMES[PACKER_EV__COUNT] = {
    "asset_discovered", "asset_changed", "diagnostics_updated", "build_started",
    "build_finished",   "cache_hit",     "cache_miss",          "preview_ready",
    "action_applied",   "action_failed", "progress_updated",    "runtime_state_changed",
};

const char *packer_event_kind_name(packer_event_kind k)
{
    return (unsigned)k < PACKER_EV__COUNT ? KIND_NAMES[k] : "unknown";
}

/* ---- envelopes -------------------------------------------------------- */

static void timestamp(char out[64])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

packer_event *event_new(packer_event_kind kind, const char *project_id, const char *op_id,
                        uint64_t seq, const char *summary)
{
    packer_event *ev = pk_calloc(1, sizeof *ev);
    cJSON *env = cJSON_CreateObject();
    char ts[64];
    timestamp(ts);
    if (!ev || !env || !json_add_str(env, "project_id", project_id) ||
        !json_add_str(env, "operation_id", op_id) ||
        !cJSON_AddNumberToObject(env, "sequence", (double)seq) ||
        !json_add_str(env, "kind", packer_event_kind_name(kind)) ||
        !json_add_str(env, "timestamp", ts) || !json_add_str(env, "summary", summary)) {
        pk_free(ev);
        cJSON_Delete(env);
        return NULL;
    }
    ev->kind = kind;
    ev->env = env;
    ev->seq = seq;
    return ev;
}

void event_set(packer_event *ev, const char *key, cJSON *val)
{
    if (!ev || !val) {
        cJSON_Delete(val);
        return;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(ev->env, key);
    if (!cJSON_AddItemToObject(ev->env, key, val))
        cJSON_Delete(val);
}

void event_set_progress(packer_event *ev, uint64_t done, uint64_t total)
{
    cJSON *p = cJSON_CreateObject();
    if (p && (!cJSON_AddNumberToObject(p, "done", (double)done) ||
              !cJSON_AddNumberToObject(p, "total", (double)total))) {
        cJSON_Delete(p);
        return;
    }
    event_set(ev, "progress", p);
}

void event_free(packer_event *ev)
{
    if (!ev)
        return;
    cJSON_Delete(ev->env);
    pk_free(ev->json);
    pk_free(ev);
}

packer_event_kind packer_event_get_kind(const packer_event *ev)
{
    return ev->kind;
}

const char *packer_event_operation_id(const packer_event *ev)
{
    return ev->op_id;
}

uint64_t packer_event_sequence(const packer_event *ev)
{
    return ev->seq;
}

const char *packer_event_summary(const packer_event *ev)
{
    return ev->summary;
}

char *packer_event_json(const packer_event *ev)
{
    return ev->json ? pk_strdup(ev->json) : NULL;
}

/* ---- delivery --------------------------------------------------------- */

static void deliver(packer_bus *b, packer_event *ev)
{
    pthread_mutex_lock(&b->deliver_mu);
    pthread_mutex_lock(&b->mu);
    size_t n = b->nsubs;
    sub local[16], *v = n <= 16 ? local : pk_malloc(n * sizeof *v);
    if (v)
        memcpy(v, b->subs, n * sizeof *v);
    pthread_mutex_unlock(&b->mu);
    for (size_t i = 0; v && i < n; i++)
        v[i].cb(ev, v[i].ud);
    if (v != local)
        pk_free(v);
    pthread_mutex_unlock(&b->deliver_mu);
}

static void *bus_main(void *arg)
{
    packer_bus *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->head && !b->stopping)
            pthread_cond_wait(&b->cv, &b->mu);
        if (!b->head)
            break;
        packer_event *ev = b->head;
        b->head = ev->next;
        if (!b->head)
            b->tail = NULL;
        pthread_mutex_unlock(&b->mu);
        deliver(b, ev);
        pthread_mutex_lock(&b->mu);
        b->delivered = ev->pub;
        pthread_cond_broadcast(&b->cv);
        event_free(ev);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int packer_bus_new(packer_bus **out)
{
    packer_bus *b = pk_calloc(1, sizeof *b);
    *out = NULL;
    if (!b)
        return pk_err(PACKER_ENOMEM, "out of memory");
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_init(&b->deliver_mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    if (pthread_create(&b->thread, NULL, bus_main, b) != 0) {
        pthread_mutex_destroy(&b->mu);
        pthread_mutex_destroy(&b->deliver_mu);
        pthread_cond_destroy(&b->cv);
        pk_free(b);
        return pk_err(PACKER_ENOMEM, "cannot start the event dispatcher thread");
    }
    *out = b;
    return 0;
}

void packer_bus_free(packer_bus *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->stopping = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    pthread_mutex_destroy(&b->mu);
    pthread_mutex_destroy(&b->deliver_mu);
    pthread_cond_destroy(&b->cv);
    pk_free(b->subs);
    pk_free(b);
}

void bus_publish(packer_bus *b, packer_event *ev)
{
    if (!ev)
        return;
    ev->op_id = json_get_str(ev->env, "operation_id");
    ev->summary = json_get_str(ev->env, "summary");
    ev->json = json_canonical(ev->env, false);
    if (!b || !ev->json) {
        event_free(ev);
        return;
    }
    pthread_mutex_lock(&b->mu);
    ev->pub = ++b->published;
    packer_event *t = b->tail;
    if (t && t->kind == PACKER_EV_PROGRESS_UPDATED && ev->kind == PACKER_EV_PROGRESS_UPDATED &&
        strcmp(t->op_id, ev->op_id) == 0) {
        /* coalesce: the newer progress replaces the undelivered one */
        packer_event *prev = NULL;
        for (packer_event *e = b->head; e != t; e = e->next)
            prev = e;
        if (prev)
            prev->next = ev;
        else
            b->head = ev;
        b->tail = ev;
        event_free(t);
    } else if (t) {
        t->next = ev;
        b->tail = ev;
    } else {
        b->head = b->tail = ev;
    }
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

void packer_bus_flush(packer_bus *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    uint64_t target = b->published;
    while (b->delivered < target)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

int packer_bus_subscribe(packer_bus *b, packer_event_cb cb, void *ud, uint64_t *out_id)
{
    if (!b || !cb)
        return pk_err(PACKER_EINVAL, "bus and callback are required");
    pthread_mutex_lock(&b->mu);
    if (b->nsubs == b->capsubs) {
        size_t cap = b->capsubs ? b->capsubs * 2 : 4;
        sub *ns = pk_realloc(b->subs, cap * sizeof *ns);
        if (!ns) {
            pthread_mutex_unlock(&b->mu);
            return pk_err(PACKER_ENOMEM, "out of memory");
        }
        b->subs = ns;
        b->capsubs = cap;
    }
    uint64_t id = ++b->next_sub;
    b->subs[b->nsubs++] = (sub){id, cb, ud};
    pthread_mutex_unlock(&b->mu);
    if (out_id)
        *out_id = id;
    return 0;
}

int packer_bus_unsubscribe(packer_bus *b, uint64_t id)
{
    if (!b)
        return pk_err(PACKER_EINVAL, "bus is required");
    bool found = false;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->nsubs; i++)
        if (b->subs[i].id == id) {
            memmove(b->subs + i, b->subs + i + 1, (b->nsubs - i - 1) * sizeof *b->subs);
            b->nsubs--;
            found = true;
            break;
        }
    pthread_mutex_unlock(&b->mu);
    if (!pthread_equal(pthread_self(), b->thread)) {
        pthread_mutex_lock(&b->deliver_mu); /* wait out a delivery in flight */
        pthread_mutex_unlock(&b->deliver_mu);
    }
    return found ? 0 : pk_err(PACKER_ENOTFOUND, "no subscription %llu", (unsigned long long)id);
}
