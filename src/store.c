/*
 * store.c - the registry on disk, its journal, and the cross-process lock.
 *
 * Layout under <workspace>/.packer/:
 *   registry/XX.json  one file per id shard (XX = first two hex digits of
 *                     the asset id), assets sorted by id, canonical JSON;
 *                     absent when the shard is empty
 *   generation        commit counter, bumped by every commit
 *   journal           present only between the commit point and the end of
 *                     applying a commit
 *   lock              flock()ed exclusively by the one process committing
 *
 * A commit (store_commit) is a list of whole-file writes and deletions. It
 * is made durable as one journal file (temp, fsync, rename, fsync dir:
 * the commit point), then each file is replaced with io_write_atomic, then
 * the journal is removed. A crash before the rename leaves the old state;
 * after it, store_recover() rolls the journal forward under the lock (and
 * removes the temp files the dead writer left next to its targets), so
 * readers always find the old state or the new one, never a mix.
 *
 * Threads: a store belongs to one project; store_lock serializes processes
 * (and projects within a process, each having its own descriptor). Every
 * function but store_open/close must be called with the lock held, from
 * the project's lane.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define REGISTRY_FORMAT 1

/* What a shard file's stat said when this store last read or wrote it. A
 * reload skips a shard whose stat is unchanged, unless that stat was taken
 * while it could still change within the same timestamp tick (racy). */
typedef struct {
    cache_stat st;
    bool known, present;
} shard_seen;

struct store {
    char *root;
    char *owned;    /* .packer */
    char *registry; /* .packer/registry */
    char *journal;
    char *generation;
    int lock_fd;
    shard_seen seen[SNAP_SHARDS];
};

int store_open(const char *root, store **out)
{
    store *st = pk_calloc(1, sizeof *st);
    *out = NULL;
    if (!st)
        return pk_err(PACKER_ENOMEM, "out of memory");
    st->lock_fd = -1;
    st->root = pk_strdup(root);
    st->owned = io_join(root, ".packer");
    st->registry = io_join(root, ".packer/registry");
    st->journal = io_join(root, ".packer/journal");
    st->generation = io_join(root, ".packer/generation");
    char *lock = io_join(root, ".packer/lock");
    int rc = 0;
    if (!st->root || !st->owned || !st->registry || !st->journal || !st->generation || !lock)
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0)
        rc = io_mkdirs(st->registry);
    if (rc == 0 && (st->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
        rc = pk_err_errno("cannot open lock file", lock);
    pk_free(lock);
    if (rc) {
        store_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

void store_close(store *st)
{
    if (!st)
        return;
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    pk_free(st->root);
    pk_free(st->owned);
    pk_free(st->registry);
    pk_free(st->journal);
    pk_free(st->generation);
    pk_free(st);
}

int store_lock(store *st)
{
    while (flock(st->lock_fd, LOCK_EX) < 0) {
        if (errno != EINTR)
            return pk_err_errno("cannot lock", ".packer/lock");
    }
    return 0;
}

void store_unlock(store *st)
{
    flock(st->lock_fd, LOCK_UN);
}

/* ---- transactions ------------------------------------------------------ */

int txn_add(txn *t, const char *path, const char *content, size_t len)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        txn_op *ops = pk_realloc(t->ops, cap * sizeof *ops);
        if (!ops)
            return pk_err(PACKER_ENOMEM, "out of memory");
        t->ops = ops;
        t->cap = cap;
    }
    txn_op *op = &t->ops[t->n];
    op->path = pk_strdup(path);
    op->content = content ? pk_strndup(content, len) : NULL;
    op->len = len;
    if (!op->path || (content && !op->content)) {
        pk_free(op->path);
        pk_free(op->content);
        return pk_err(PACKER_ENOMEM, "out of memory");
    }
    t->n++;
    return 0;
}

void txn_clear(txn *t)
{
    for (size_t i = 0; i < t->n; i++) {
        pk_free(t->ops[i].path);
        pk_free(t->ops[i].content);
    }
    pk_free(t->ops);
    memset(t, 0, sizeof *t);
}

static char *journal_text(const txn *t)
{
    cJSON *j = cJSON_CreateObject(), *ops = cJSON_CreateArray();
    char *text = NULL;
    if (!j || !ops || !cJSON_AddItemToObject(j, "ops", ops)) {
        cJSON_Delete(ops);
        goto out;
    }
    for (size_t i = 0; i < t->n; i++) {
        cJSON *op = cJSON_CreateObject();
        if (!op || !cJSON_AddItemToArray(ops, op) || !json_add_str(op, "path", t->ops[i].path))
            goto out;
        if (t->ops[i].content ? !json_add_str(op, "content", t->ops[i].content)
                              : !cJSON_AddTrueToObject(op, "delete"))
            goto out;
    }
    if (cJSON_AddNumberToObject(j, "format", REGISTRY_FORMAT))
        text = json_canonical(j, false);
out:
    cJSON_Delete(j);
    return text;
}

static int apply_op(store *st, const char *path, const char *content, size_t len)
{
    char *abs = io_join(st->root, path);
    if (!abs)
        return pk_err(PACKER_ENOMEM, "out of memory");
    int rc = content ? io_write_atomic(abs, content, len) : io_unlink_durable(abs);
    pk_free(abs);
    return rc;
}

/* ---- what each shard file looked like --------------------------------- */

static char *shard_path(const store *st, int i)
{
    char name[8];
    snprintf(name, sizeof name, "%02x.json", i);
    return io_join(st->registry, name);
}

/* The shard number of a workspace-relative registry file path, or -1. */
static int shard_of_path(const char *rel)
{
    static const char dir[] = ".packer/registry/";
    unsigned i;
    char tail;
    if (strncmp(rel, dir, sizeof dir - 1) != 0 || strlen(rel) != sizeof dir - 1 + 7 ||
        strcmp(rel + sizeof dir - 1 + 2, ".json") != 0 ||
        sscanf(rel + sizeof dir - 1, "%2x%c", &i, &tail) != 2 || tail != '.')
        return -1;
    return (int)i;
}

/* Remember shard i's stat now, before its content is read or after it was
 * written (a change in between then only costs a needless re-read). */
static void seen_record(store *st, int i)
{
    shard_seen *s = &st->seen[i];
    char *path = shard_path(st, i);
    struct stat sb;
    memset(s, 0, sizeof *s);
    if (!path)
        return;
    if (stat(path, &sb) == 0) {
        cache_stat_of(&sb, &s->st);
        s->present = true;
        s->known = !cache_stat_racy(&s->st);
    } else {
        s->known = errno == ENOENT;
    }
    pk_free(path);
}

/* Whether shard i may differ from what was last recorded. */
static bool seen_changed(store *st, int i)
{
    const shard_seen *s = &st->seen[i];
    char *path = shard_path(st, i);
    struct stat sb;
    bool present = path && stat(path, &sb) == 0;
    cache_stat now;
    if (present)
        cache_stat_of(&sb, &now);
    bool changed =
        !path || !s->known || s->present != present || (present && !cache_stat_same(&s->st, &now));
    pk_free(path);
    return changed;
}

void store_forget(store *st)
{
    memset(st->seen, 0, sizeof st->seen);
}

int store_commit(store *st, const txn *t, bool *durable)
{
    *durable = false;
    char *text = journal_text(t);
    if (!text)
        return pk_err(PACKER_ENOMEM, "out of memory");
    int rc = io_write_atomic(st->journal, text, strlen(text));
    pk_free(text);
    if (rc) {
        /* nothing changed, unless the rename happened and only the
         * directory fsync failed: the journal is then in place, and whoever
         * takes the lock next rolls it forward */
        *durable = io_is_file(st->journal);
        return rc;
    }
    *durable = true;
    for (size_t i = 0; rc == 0 && i < t->n; i++) {
        rc = apply_op(st, t->ops[i].path, t->ops[i].content, t->ops[i].len);
        int shard = shard_of_path(t->ops[i].path);
        if (shard >= 0)
            seen_record(st, shard);
    }
    if (rc == 0)
        rc = io_unlink_durable(st->journal);
    return rc;
}

/* ---- recovery ---------------------------------------------------------- */

/* Temp files of writers that died mid-write (the lock is ours now): in
 * dir, those of target `base` ("<base>.tmp-*"), or all "*.tmp-*" when
 * base is NULL (in .packer/, where every file is ours). */
static void drop_litter(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t n = base ? strlen(base) : 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (base ? strncmp(e->d_name, base, n) == 0 && strncmp(e->d_name + n, ".tmp-", 5) == 0
                 : strstr(e->d_name, ".tmp-") != NULL) {
            char *p = io_join(dir, e->d_name);
            if (p)
                unlink(p);
            pk_free(p);
        }
    closedir(d);
}

/* A writer killed while applying a journal op may have left the temp file
 * of that op's target, possibly in an asset root. */
static void drop_litter_of(store *st, const char *rel)
{
    char *abs = io_join(st->root, rel);
    char *slash = abs ? strrchr(abs, '/') : NULL;
    if (slash) {
        *slash = '\0';
        drop_litter(abs, slash + 1);
    }
    pk_free(abs);
}

static int replay(store *st)
{
    cJSON *j = NULL;
    int rc = json_load_file(st->journal, ".packer/journal", &j);
    if (rc == PACKER_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    const cJSON *ops = cJSON_GetObjectItemCaseSensitive(j, "ops"), *op;
    if (!cJSON_IsArray(ops))
        rc = pk_err(PACKER_EPARSE, ".packer/journal: \"ops\" must be an array");
    cJSON_ArrayForEach(op, ops)
    {
        if (rc)
            break;
        const char *path = json_get_str(op, "path"), *content = json_get_str(op, "content");
        char *safe = NULL;
        if (!path || ws_confine(st->root, path, &safe) != 0)
            rc = pk_err(PACKER_EPARSE, ".packer/journal: op with a bad \"path\"");
        else
            rc = apply_op(st, safe, content, content ? strlen(content) : 0);
        if (rc == 0)
            drop_litter_of(st, safe);
        pk_free(safe);
    }
    cJSON_Delete(j);
    return rc ? rc : io_unlink_durable(st->journal);
}

int store_recover(store *st)
{
    int rc = replay(st);
    if (rc == 0) {
        drop_litter(st->owned, NULL);
        drop_litter(st->registry, NULL);
    }
    return rc;
}

int store_stamp_read(store *st, store_stamp *out)
{
    memset(out, 0, sizeof *out);
    char *text = NULL;
    int rc = io_read_file(st->generation, &text, NULL);
    if (rc == 0) {
        char *end;
        errno = 0;
        unsigned long long g = strtoull(text, &end, 10);
        if (errno || end == text || (*end && *end != '\n'))
            rc = pk_err(PACKER_EPARSE, ".packer/generation:1:1: expected a commit counter");
        out->generation = g;
    } else if (rc == PACKER_ENOTFOUND) {
        rc = 0; /* a new workspace: generation 0 */
    }
    pk_free(text);
    struct stat sb;
    if (rc == 0 && stat(st->registry, &sb) == 0) {
        out->dir_mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        out->dir_ctime_ns = (int64_t)sb.st_ctim.tv_sec * 1000000000 + sb.st_ctim.tv_nsec;
    }
    return rc;
}

bool store_stamp_eq(const store_stamp *a, const store_stamp *b)
{
    return a->generation == b->generation && a->dir_mtime_ns == b->dir_mtime_ns &&
           a->dir_ctime_ns == b->dir_ctime_ns;
}

/* ---- shards ----------------------------------------------------------- */

int store_shard_text(const snap *s, int i, char **out, size_t *len)
{
    size_t n;
    const asset_rec *const *v = snap_shard_items(s, i, &n);
    *out = NULL;
    *len = 0;
    if (n == 0)
        return 0;
    cJSON *j = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    int rc = 0;
    if (!j || !arr || !cJSON_AddItemToObject(j, "assets", arr)) {
        cJSON_Delete(arr);
        rc = PACKER_ENOMEM;
    }
    for (size_t k = 0; rc == 0 && k < n; k++) {
        cJSON *a = cJSON_CreateObject();
        if (!a || !cJSON_AddItemToArray(arr, a)) {
            cJSON_Delete(a);
            rc = PACKER_ENOMEM;
        } else if (!json_add_str(a, "address", v[k]->address) ||
                   !json_add_str(a, "asset_id", v[k]->id) ||
                   !cJSON_AddBoolToObject(a, "included", v[k]->included) ||
                   !json_add_str(a, "kind", v[k]->kind) || !json_add_str(a, "root", v[k]->root)) {
            rc = PACKER_ENOMEM; /* a belongs to arr: freed with j */
        }
    }
    if (rc == 0 && !cJSON_AddNumberToObject(j, "format", REGISTRY_FORMAT))
        rc = PACKER_ENOMEM;
    if (rc == 0 && !(*out = json_canonical(j, true)))
        rc = PACKER_ENOMEM;
    cJSON_Delete(j);
    if (rc)
        return pk_err(rc, "out of memory");
    *len = strlen(*out);
    return 0;
}

static int load_asset(const cJSON *a, const char *display, int idx, int shard_no, asset_rec **out)
{
    const char *id = json_get_str(a, "asset_id"), *root = json_get_str(a, "root");
    const char *addr = json_get_str(a, "address"), *kind = json_get_str(a, "kind");
    const cJSON *inc = cJSON_GetObjectItemCaseSensitive(a, "included");
    const char *bad = !id || !*id          ? "asset_id"
                      : !root || !*root    ? "root"
                      : !addr              ? "address"
                      : !kind              ? "kind"
                      : !cJSON_IsBool(inc) ? "included"
                                           : NULL;
    if (bad)
        return pk_err(PACKER_EPARSE, "%s: assets[%d]: \"%s\" is missing or has the wrong type",
                      display, idx, bad);
    if (snap_id_shard(id) != shard_no)
        return pk_err(PACKER_EPARSE, "%s: assets[%d]: asset_id %s belongs to another shard",
                      display, idx, id);
    *out = rec_new(id, root, addr, kind, cJSON_IsTrue(inc));
    return *out ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
}

/* One shard file's records, parsed on any thread; put into the edit later
 * by the one thread that owns it. */
typedef struct {
    int shard;
    asset_rec **recs;
    size_t n;
    int rc;
    char *err; /* the message of a failure (packer_last_error is per thread) */
} shard_load;

static int parse_recs(const char *text, size_t len, const char *display, shard_load *sl)
{
    cJSON *j = NULL;
    arena nodes = {0}; /* ~6 nodes an asset: freed at once, not one by one */
    int rc = json_parse_arena(text, len, display, &nodes, &j);
    const cJSON *arr = rc == 0 ? cJSON_GetObjectItemCaseSensitive(j, "assets") : NULL;
    if (rc == 0 && !cJSON_IsArray(arr))
        rc = pk_err(PACKER_EPARSE, "%s: \"assets\" must be an array", display);
    int n = rc == 0 ? cJSON_GetArraySize(arr) : 0;
    if (n > 0 && !(sl->recs = pk_calloc((size_t)n, sizeof *sl->recs)))
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    const cJSON *a;
    cJSON_ArrayForEach(a, arr)
    {
        if (rc)
            break;
        rc = load_asset(a, display, (int)sl->n, sl->shard, &sl->recs[sl->n]);
        sl->n += rc == 0;
    }
    arena_free(&nodes);
    return rc;
}

/* Put the records of v[0..n-1] into e at once when rc is 0, else drop
 * them; free v's arrays. A duplicate id is an error of its shard file. */
static int put_recs(shard_load *v, size_t n, snap_edit *e, int rc)
{
    size_t total = 0, k = 0;
    for (size_t i = 0; i < n; i++)
        total += v[i].n;
    asset_rec **all = rc == 0 ? pk_malloc((total + 1) * sizeof *all) : NULL;
    if (rc == 0 && !all)
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < v[i].n; j++)
            if (all)
                all[k++] = v[i].recs[j];
            else
                rec_unref(v[i].recs[j]);
        pk_free(v[i].recs);
        pk_free(v[i].err);
        v[i].recs = NULL;
        v[i].n = 0;
        v[i].err = NULL;
    }
    const char *dup = NULL;
    if (rc == 0 && (rc = snap_edit_put_all(e, all, k, &dup)) == PACKER_EEXIST)
        rc = pk_err(PACKER_EPARSE, ".packer/registry/%02x.json: asset_id %s appears twice",
                    snap_id_shard(dup), dup);
    pk_free(all);
    return rc;
}

int store_parse_shard(const char *text, size_t len, const char *display, int shard_no, snap_edit *e)
{
    shard_load sl = {.shard = shard_no};
    return put_recs(&sl, 1, e, parse_recs(text, len, display, &sl));
}

/* Read and parse one shard file into sl (remembering its stat first). */
static void read_shard(store *st, shard_load *sl)
{
    seen_record(st, sl->shard);
    char name[8];
    snprintf(name, sizeof name, "%02x.json", sl->shard);
    char *path = io_join(st->registry, name);
    char *display = pk_asprintf(".packer/registry/%s", name);
    char *text = NULL;
    size_t len = 0;
    int rc =
        path && display ? io_read_file(path, &text, &len) : pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0)
        rc = parse_recs(text, len, display, sl);
    if ((sl->rc = rc) != 0)
        sl->err = pk_strdup(packer_last_error());
    pk_free(text);
    pk_free(path);
    pk_free(display);
}

/* The shards to read, split between the calling thread and a helper. */
typedef struct {
    store *st;
    shard_load *v;
    size_t n;
    atomic_size_t next;
} shard_batch;

static void *read_shards(void *arg)
{
    shard_batch *b = arg;
    for (size_t i; (i = atomic_fetch_add(&b->next, 1)) < b->n;)
        read_shard(b->st, &b->v[i]);
    return NULL;
}

/* Read the shards listed in v (n of them, in shard order) into e: parsing
 * on two threads, the edit on this one. The first failure in shard order
 * is the one reported, whatever the thread timing. */
static int load_shards(store *st, shard_load *v, size_t n, snap_edit *e)
{
    shard_batch b = {.st = st, .v = v, .n = n};
    pthread_t helper;
    bool two = n >= 16 && pthread_create(&helper, NULL, read_shards, &b) == 0;
    read_shards(&b);
    if (two)
        pthread_join(helper, NULL);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && v[i].rc == PACKER_ENOTFOUND) /* vanished since listed: empty */
            v[i].rc = 0;
        if (rc == 0 && v[i].rc)
            rc = pk_err(v[i].rc, "%s", v[i].err ? v[i].err : "out of memory");
    }
    rc = put_recs(v, n, e, rc);
    return rc;
}

int store_load(store *st, snap **out)
{
    *out = NULL;
    snap *empty = snap_empty();
    if (!empty)
        return pk_err(PACKER_ENOMEM, "out of memory");
    store_forget(st);
    int rc = store_reload(st, empty, out);
    snap_unref(empty);
    return rc;
}

int store_reload(store *st, const snap *base, snap **out)
{
    *out = NULL;
    store_stamp stamp;
    int rc = store_stamp_read(st, &stamp);
    if (rc)
        return rc;
    snap_edit *e = snap_edit_begin(base);
    shard_load *v = pk_calloc(SNAP_SHARDS, sizeof *v);
    if (!e || !v) {
        snap_edit_abort(e);
        pk_free(v);
        return pk_err(PACKER_ENOMEM, "out of memory");
    }
    size_t n = 0;
    for (int i = 0; rc == 0 && i < SNAP_SHARDS; i++) {
        if (!seen_changed(st, i))
            continue;
        size_t k, nold;
        const asset_rec *const *old = snap_shard_items(base, i, &nold);
        for (k = 0; rc == 0 && k < nold; k++)
            rc = snap_edit_del(e, old[k]->id);
        v[n++].shard = i;
    }
    if (rc == 0)
        rc = load_shards(st, v, n, e);
    pk_free(v);
    if (rc) {
        store_forget(st);
        snap_edit_abort(e);
        return rc;
    }
    *out = snap_edit_finish(e, stamp.generation);
    return *out ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
}
