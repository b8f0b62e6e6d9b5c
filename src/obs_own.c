/*
 * obs_own.c - packer's own recent writes, as the observer must not report
 * them as someone else's change.
 *
 * The lane notes every file it writes or deletes in the workspace (fsio.c)
 * and every tree it moves (quarantine, restore), with the stat the path
 * had right after (or its absence). When the observer meets a change of
 * that path and the path still looks exactly like that, the change was
 * packer's own. A later edit by anyone else changes the stat (mtime,
 * ctime, inode or size) and is reported. Notes expire after a while, so
 * the table stays small.
 *
 * Threads: any; one mutex, a leaf lock, held for table operations only.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

struct obs_own {
    pthread_mutex_t mu;
    ptab t;
};

obs_own *own_new(void)
{
    obs_own *w = pk_calloc(1, sizeof *w);
    if (w)
        pthread_mutex_init(&w->mu, NULL);
    return w;
}

void own_free(obs_own *w)
{
    if (!w)
        return;
    ptab_clear(&w->t);
    pthread_mutex_destroy(&w->mu);
    pk_free(w);
}

void own_note(obs_own *w, const char *rel, const char *abs, bool tree)
{
    struct stat st;
    bool present = lstat(abs, &st) == 0;
    pthread_mutex_lock(&w->mu);
    ptab_ent *e = ptab_put(&w->t, rel);
    if (e) {
        e->present = present;
        if (present)
            cache_stat_of(&st, &e->st);
        e->tree = tree;
        e->t = obs_now();
    }
    pthread_mutex_unlock(&w->mu);
}

/* Under mu. */
static bool match_locked(obs_own *w, const char *path, bool present, const cache_stat *cur)
{
    const ptab_ent *e = ptab_get(&w->t, path);
    if (e && !e->tree)
        return e->present == present && (!present || cache_stat_same(&e->st, cur));
    char *up = pk_strdup(path);
    bool out = e != NULL;
    for (char *slash; !out && up && (slash = strrchr(up, '/'));) {
        *slash = '\0';
        e = ptab_get(&w->t, up);
        out = e && e->tree;
    }
    pk_free(up);
    return out;
}

bool own_match(void *own, const char *path, bool present, const cache_stat *cur)
{
    obs_own *w = own;
    pthread_mutex_lock(&w->mu);
    bool out = w->t.n && match_locked(w, path, present, cur);
    pthread_mutex_unlock(&w->mu);
    return out;
}

typedef struct {
    char **keys;
    size_t n, cap;
    double now, ttl;
} expired;

static void collect_expired(ptab_ent *e, void *ctx)
{
    expired *x = ctx;
    if (x->now - e->t < x->ttl)
        return;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        char **v = pk_realloc(x->keys, cap * sizeof *v);
        if (!v)
            return;
        x->keys = v;
        x->cap = cap;
    }
    x->keys[x->n++] = e->key;
}

void own_expire(obs_own *w, double ttl)
{
    expired x = {NULL, 0, 0, obs_now(), ttl};
    pthread_mutex_lock(&w->mu);
    ptab_each(&w->t, collect_expired, &x);
    for (size_t i = 0; i < x.n; i++)
        ptab_del(&w->t, x.keys[i]);
    pthread_mutex_unlock(&w->mu);
    pk_free(x.keys);
}
