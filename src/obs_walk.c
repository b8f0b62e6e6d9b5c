/*
 * obs_walk.c - the observer's path tables and its walk of the workspace.
 *
 * A ptab maps workspace-relative paths to what the observer last knew of
 * them (a stat, or absence); the observer keeps three: the stat of every
 * file it watches (the baseline a rescan compares against), the paths
 * changed in the batch being collected, and packer's own recent writes.
 * Chained hashing with a power-of-two bucket count that doubles as the
 * table grows, and deletion (unlike strmap, whose entries live as long as
 * the map).
 *
 * The walk skips what scan.c's walk skips (scan_skip_dir: .packer/, VCS
 * directories, build outputs), and it never follows a symlink, so it
 * cannot leave the workspace.
 *
 * Threads: not thread-safe; each table belongs to one thread or lock.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

/* ---- the table ------------------------------------------------------------ */

ptab_ent *ptab_get(const ptab *t, const char *key)
{
    if (!t->nb)
        return NULL;
    uint64_t h = hash64(key);
    for (ptab_ent *e = t->b[h & (t->nb - 1)]; e; e = e->next)
        if (e->h == h && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static int grow(ptab *t)
{
    size_t nb = t->nb ? t->nb * 2 : 256;
    ptab_ent **b = pk_calloc(nb, sizeof *b);
    if (!b)
        return PACKER_ENOMEM;
    for (size_t i = 0; i < t->nb; i++)
        for (ptab_ent *e = t->b[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->h & (nb - 1)];
            b[e->h & (nb - 1)] = e;
        }
    pk_free(t->b);
    t->b = b;
    t->nb = nb;
    return 0;
}

ptab_ent *ptab_put(ptab *t, const char *key)
{
    ptab_ent *e = ptab_get(t, key);
    if (e)
        return e;
    if (t->n + 1 > t->nb && grow(t) != 0)
        return NULL;
    if (!(e = pk_calloc(1, sizeof *e)) || !(e->key = pk_strdup(key))) {
        pk_free(e);
        return NULL;
    }
    e->h = hash64(key);
    e->next = t->b[e->h & (t->nb - 1)];
    t->b[e->h & (t->nb - 1)] = e;
    t->n++;
    return e;
}

void ptab_del(ptab *t, const char *key)
{
    if (!t->nb)
        return;
    uint64_t h = hash64(key);
    for (ptab_ent **pe = &t->b[h & (t->nb - 1)]; *pe; pe = &(*pe)->next) {
        ptab_ent *e = *pe;
        if (e->h == h && strcmp(e->key, key) == 0) {
            *pe = e->next;
            pk_free(e->key);
            pk_free(e);
            t->n--;
            return;
        }
    }
}

void ptab_clear(ptab *t)
{
    for (size_t i = 0; i < t->nb; i++)
        for (ptab_ent *e = t->b[i], *next; e; e = next) {
            next = e->next;
            pk_free(e->key);
            pk_free(e);
        }
    pk_free(t->b);
    memset(t, 0, sizeof *t);
}

void ptab_each(const ptab *t, void (*fn)(ptab_ent *e, void *ctx), void *ctx)
{
    for (size_t i = 0; i < t->nb; i++)
        for (ptab_ent *e = t->b[i]; e; e = e->next)
            fn(e, ctx);
}

/* ---- the walk ------------------------------------------------------------- */

bool obs_skip_dir(const char *root, const char *rel)
{
    const char *slash = strrchr(rel, '/');
    if (!slash)
        return scan_skip_dir(root, rel);
    char *parent = pk_asprintf("%s/%.*s", root, (int)(slash - rel), rel);
    bool out = parent && scan_skip_dir(parent, slash + 1);
    pk_free(parent);
    return out;
}

void obs_walk(const char *root, const char *rel, const obs_visitor *v)
{
    char *abs = *rel ? pk_asprintf("%s/%s", root, rel) : pk_strdup(root);
    DIR *d = abs ? opendir(abs) : NULL;
    if (!d) {
        pk_free(abs);
        return; /* gone or unreadable: the next event or rescan tells */
    }
    if (v->dir)
        v->dir(v->ctx, rel);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *child = *rel ? pk_asprintf("%s/%s", rel, de->d_name) : pk_strdup(de->d_name);
        char *cabs = pk_asprintf("%s/%s", abs, de->d_name);
        struct stat st;
        if (child && cabs && lstat(cabs, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                if (!scan_skip_dir(abs, de->d_name))
                    obs_walk(root, child, v);
            } else if (v->file) {
                v->file(v->ctx, child, &st);
            }
        }
        pk_free(child);
        pk_free(cabs);
    }
    closedir(d);
    pk_free(abs);
}
