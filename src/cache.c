/*
 * cache.c - the build cache under .packer/cache/: what a build learned,
 * so the next one stats instead of reading and reads instead of running.
 *
 *   stat-index     "<hash> <size> <mtime_ns> <ctime_ns> <ino> <path>" per
 *                  input: an input whose stat matches is not re-hashed
 *   objects-index  "<key> <type> <size> <hash> [<path>]" per recipe output
 *   objects/XX/KEY a 'B' output: "PKCACHE1" type(1) pad(7) u64 size,
 *                  hash[16], the blob. KEY = XXH3-128 of recipe identity,
 *                  asset identity, manifest and input hashes. An 'R'
 *                  output (an input streamed as is, the raw recipe) has no
 *                  file: its index line names the input
 *   assets-index   per asset, tab-separated: id, address, root, kind,
 *                  recipe id, the manifest's stat, the cache key and the
 *                  input paths: while all those stats and the recipe stay
 *                  the same, the key is the same without reading anything
 *
 * Invariants: nothing here is trusted blindly. A 'B' object is packed only
 * after its bytes hash to the recorded hash (cache_verify; the pack writer
 * checks again), an 'R' object only when its input still has the recorded
 * hash. A stat that is too recent to tell a later same-tick edit apart
 * ("racy", as git calls it) is not remembered. A damaged index line only
 * costs work. The directory is safe to delete at any time.
 *
 * In memory each index is a strmap whose entries live in one arena
 * (strmap.c); neither locks, the cache's mutex does.
 *
 * Threads: lookups and puts from any thread (one mutex guards the maps);
 * cache_memo_put, cache_save, open and close from the lane only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"

#define OBJ_MAGIC "PKCACHE1"
#define OBJ_HEADER 40
#define RACY_NS 100000000LL /* coarse file timestamps tick every few ms */

/* ---- entries ------------------------------------------------------------ */

typedef struct {
    strmap_node node; /* key: workspace-relative path */
    char hash[HASH_HEX_LEN + 1];
    cache_stat st;
} stat_entry;

typedef struct {
    strmap_node node; /* key: cache key */
    char type;
    uint64_t size;
    unsigned char hash[16];
    char *ref_path; /* 'R' */
} obj_entry;

typedef struct {
    strmap_node node; /* key: asset id */
    cache_memo m;
} memo_entry;

struct cache {
    char *dir; /* .packer/cache */
    strmap stats, objs, memos;
    arena mem;      /* every entry and its strings but the stat and object indexes' ... */
    arena stat_mem; /* ... which are here and in obj_mem: cache_open loads each of the */
    arena obj_mem;  /* three indexes on a thread of its own */
    /* both written under the lock, alone, once workers run */
    /* Lookups (most of a no-op build, on every worker) share it; adding or
     * changing an entry takes it alone. Marking an entry used is a relaxed
     * atomic store, allowed under the shared lock: it only ever sets true. */
    pthread_rwlock_t lock;
    atomic_ulong tmp_counter;
};

static void mark_used(strmap_node *n)
{
    __atomic_store_n(&n->used, true, __ATOMIC_RELAXED);
}

/* A new entry for key, for map m, not yet in it. */
static strmap_node *entry_new(cache *c, const strmap *m, const char *key, size_t size)
{
    arena *mem = m == &c->stats ? &c->stat_mem : m == &c->objs ? &c->obj_mem : &c->mem;
    strmap_node *e = arena_alloc(mem, size);
    if (e && !(e->key = arena_strdup(mem, key)))
        e = NULL;
    return e;
}

/* Find or add the entry for key; *fresh tells which. Under the lock, alone. */
static strmap_node *entry_for(cache *c, strmap *m, const char *key, size_t size, bool *fresh)
{
    strmap_node *e = strmap_find(m, key);
    *fresh = !e;
    if (!e && (e = entry_new(c, m, key, size)) && strmap_add(m, e) != 0)
        e = NULL;
    return e;
}

/* While loading, keys are unique (the files are written from maps), so
 * there is no need to look before adding. */
static strmap_node *entry_load(cache *c, strmap *m, const char *key, size_t size)
{
    strmap_node *e = entry_new(c, m, key, size);
    return e && strmap_add(m, e) == 0 ? e : NULL;
}

/* ---- stat ------------------------------------------------------------------ */

static int64_t ns_of(struct timespec ts)
{
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void cache_stat_of(const struct stat *st, cache_stat *out)
{
    out->size = (uint64_t)st->st_size;
    out->mtime_ns = ns_of(st->st_mtim);
    out->ctime_ns = ns_of(st->st_ctim);
    out->ino = (uint64_t)st->st_ino;
}

bool cache_stat_same(const cache_stat *a, const cache_stat *b)
{
    return a->size == b->size && a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns &&
           a->ino == b->ino;
}

bool cache_stat_racy(const cache_stat *s)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t t = ns_of(now);
    return t - s->mtime_ns < RACY_NS || t - s->ctime_ns < RACY_NS;
}

/* ---- loading and saving the indexes ----------------------------------------- */

/* Split line into at most max fields at sep; returns the count. */
static size_t split(char *line, char sep, char **f, size_t max)
{
    size_t n = 0;
    while (n < max) {
        f[n++] = line;
        char *p = strchr(line, sep);
        if (!p)
            break;
        *p = '\0';
        line = p + 1;
    }
    return n;
}

/* Decimal digits only, no sign or space, no overflow: what save writes.
 * By hand because strtoull's locale machinery was 6% of a no-op build. */
static bool parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        /* 19 digits never overflow: only the 20th needs the check */
        if (p - s >= 19 && (v > UINT64_MAX / 10 || v * 10 > UINT64_MAX - d))
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return p != s && !*p;
}

static bool parse_stat(char **f, cache_stat *st)
{
    uint64_t mt = 0, ct = 0;
    bool ok = parse_u64(f[0], &st->size) && parse_u64(f[1], &mt) && parse_u64(f[2], &ct) &&
              parse_u64(f[3], &st->ino);
    st->mtime_ns = (int64_t)mt;
    st->ctime_ns = (int64_t)ct;
    return ok;
}

static void load_stat_line(cache *c, char *line)
{
    char *f[6];
    cache_stat st;
    if (split(line, ' ', f, 5) != 5 || strlen(f[0]) != HASH_HEX_LEN || !parse_stat(f + 1, &st))
        return;
    char *path = f[4] + strlen(f[4]) + 1; /* the rest of the line, spaces and all */
    if (!*path)
        return;
    stat_entry *e = (stat_entry *)entry_load(c, &c->stats, path, sizeof *e);
    if (e) {
        memcpy(e->hash, f[0], HASH_HEX_LEN + 1);
        e->st = st;
    }
}

static void load_obj_line(cache *c, char *line)
{
    char *f[5];
    size_t n = split(line, ' ', f, 5);
    uint64_t size;
    unsigned char h[16];
    if (n < 4 || strlen(f[0]) != HASH_HEX_LEN || strlen(f[1]) != 1 ||
        (f[1][0] != 'B' && f[1][0] != 'R') || (f[1][0] == 'R') != (n == 5) ||
        !parse_u64(f[2], &size) || !hash_from_hex(f[3], h))
        return;
    obj_entry *e = (obj_entry *)entry_load(c, &c->objs, f[0], sizeof *e);
    if (!e)
        return;
    e->type = f[1][0];
    e->size = size;
    memcpy(e->hash, h, 16);
    e->ref_path = n == 5 ? arena_strdup(&c->obj_mem, f[4]) : NULL;
}

/* Copy m's strings into the arena; false when out of memory. */
static bool memo_copy(cache *c, cache_memo *dst, const cache_memo *m)
{
    *dst = *m;
    dst->address = arena_strdup(&c->mem, m->address);
    dst->root = arena_strdup(&c->mem, m->root);
    dst->kind = arena_strdup(&c->mem, m->kind);
    dst->inputs = arena_alloc(&c->mem, (m->ninputs + 1) * sizeof *dst->inputs);
    bool ok = dst->address && dst->root && dst->kind && dst->inputs;
    for (size_t i = 0; ok && i < m->ninputs; i++)
        ok = (dst->inputs[i] = arena_strdup(&c->mem, m->inputs[i])) != NULL;
    return ok;
}

static void load_memo_line(cache *c, char *line)
{
    char *f[64];
    cache_memo m = {0};
    uint64_t ninputs;
    size_t n = split(line, '\t', f, 64);
    if (n < 11 || strlen(f[4]) != HASH_HEX_LEN || strlen(f[9]) != HASH_HEX_LEN ||
        !parse_stat(f + 5, &m.manifest) || !parse_u64(f[10], &ninputs) || n != 11 + ninputs)
        return;
    m.address = f[1];
    m.root = f[2];
    m.kind = f[3];
    memcpy(m.recipe_id, f[4], HASH_HEX_LEN + 1);
    memcpy(m.key, f[9], HASH_HEX_LEN + 1);
    m.inputs = f + 11;
    m.ninputs = (size_t)ninputs;
    memo_entry *e = (memo_entry *)entry_load(c, &c->memos, f[0], sizeof *e);
    if (e && !memo_copy(c, &e->m, &m))
        e->m.ninputs = 0, e->m.kind = NULL; /* unusable: memo_key checks kind */
}

static void load_index(cache *c, const char *name, void (*line_fn)(cache *, char *))
{
    char *path = io_join(c->dir, name), *text = NULL;
    if (path && io_read_file(path, &text, NULL) == 0)
        for (char *line = text, *next; line && *line; line = next) {
            next = strchr(line, '\n');
            if (next)
                *next++ = '\0';
            line_fn(c, line);
        }
    pk_free(text);
    pk_free(path);
}

static void *load_stats(void *c)
{
    load_index(c, "stat-index", load_stat_line);
    return NULL;
}

static void *load_objs(void *c)
{
    load_index(c, "objects-index", load_obj_line);
    return NULL;
}

int cache_open(const char *root, bool fresh, cache **out)
{
    cache *c = pk_calloc(1, sizeof *c);
    *out = NULL;
    if (!c)
        return pk_err(PACKER_ENOMEM, "out of memory");
    pthread_rwlock_init(&c->lock, NULL);
    c->dir = io_join(root, ".packer/cache");
    char *objs = c->dir ? io_join(c->dir, "objects") : NULL;
    int rc = objs ? io_mkdirs(objs) : pk_err(PACKER_ENOMEM, "out of memory");
    pk_free(objs);
    if (rc) {
        cache_close(c);
        return rc;
    }
    if (!fresh) { /* three indexes at once: each its own map, its own arena */
        pthread_t ts, to;
        bool stats = pthread_create(&ts, NULL, load_stats, c) == 0;
        bool objs = pthread_create(&to, NULL, load_objs, c) == 0;
        if (!stats)
            load_stats(c);
        if (!objs)
            load_objs(c);
        load_index(c, "assets-index", load_memo_line);
        if (stats)
            pthread_join(ts, NULL);
        if (objs)
            pthread_join(to, NULL);
    }
    *out = c;
    return 0;
}

void cache_close(cache *c)
{
    if (!c)
        return;
    pk_free(c->stats.b);
    pk_free(c->objs.b);
    pk_free(c->memos.b);
    arena_free(&c->mem);
    arena_free(&c->stat_mem);
    arena_free(&c->obj_mem);
    pk_free(c->dir);
    pthread_rwlock_destroy(&c->lock);
    pk_free(c);
}

static void stat_line(strbuf *t, const strmap_node *n)
{
    const stat_entry *e = (const stat_entry *)n;
    strbuf_printf(t, "%s %llu %lld %lld %llu %s\n", e->hash, (unsigned long long)e->st.size,
                  (long long)e->st.mtime_ns, (long long)e->st.ctime_ns,
                  (unsigned long long)e->st.ino, n->key);
}

static void obj_line(strbuf *t, const strmap_node *n)
{
    const obj_entry *e = (const obj_entry *)n;
    char hex[HASH_HEX_LEN + 1];
    hash_to_hex(e->hash, hex);
    strbuf_printf(t, "%s %c %llu %s%s%s\n", n->key, e->type, (unsigned long long)e->size, hex,
                  e->ref_path ? " " : "", e->ref_path ? e->ref_path : "");
}

static void memo_line(strbuf *t, const strmap_node *n)
{
    const cache_memo *m = &((const memo_entry *)n)->m;
    strbuf_printf(t, "%s\t%s\t%s\t%s\t%s\t%llu\t%lld\t%lld\t%llu\t%s\t%zu", n->key, m->address,
                  m->root, m->kind, m->recipe_id, (unsigned long long)m->manifest.size,
                  (long long)m->manifest.mtime_ns, (long long)m->manifest.ctime_ns,
                  (unsigned long long)m->manifest.ino, m->key, m->ninputs);
    for (size_t i = 0; i < m->ninputs; i++)
        strbuf_printf(t, "\t%s", m->inputs[i]);
    strbuf_printf(t, "\n");
}

static int save_index(cache *c, strmap *m, const char *name,
                      void (*line_fn)(strbuf *, const strmap_node *))
{
    if (!m->dirty)
        return 0;
    size_t n;
    strmap_node **v = strmap_used_sorted(m, &n);
    strbuf t = {0};
    for (size_t i = 0; v && i < n; i++)
        line_fn(&t, v[i]);
    char *path = io_join(c->dir, name);
    int rc = v && path && !t.oom ? io_write_atomic(path, t.s ? t.s : "", t.len)
                                 : pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0)
        m->dirty = false;
    pk_free(path);
    pk_free(t.s);
    pk_free(v);
    return rc;
}

/* An index is rewritten when something was added, or something it holds
 * went unused (it then drops out). */
static void settle(strmap *m)
{
    size_t used = 0;
    for (size_t i = 0; i < m->nb; i++)
        for (strmap_node *e = m->b[i]; e; e = e->next)
            used += e->used;
    if (used != m->n)
        m->dirty = true;
}

int cache_save(cache *c)
{
    settle(&c->stats);
    settle(&c->objs);
    settle(&c->memos);
    int rc = save_index(c, &c->stats, "stat-index", stat_line);
    int rc2 = save_index(c, &c->objs, "objects-index", obj_line);
    int rc3 = save_index(c, &c->memos, "assets-index", memo_line);
    return rc ? rc : rc2 ? rc2 : rc3;
}

/* ---- input hashes ------------------------------------------------------- */

bool cache_input_known(cache *c, const char *path, const cache_stat *st,
                       char hash[HASH_HEX_LEN + 1])
{
    pthread_rwlock_rdlock(&c->lock);
    stat_entry *e = (stat_entry *)strmap_find(&c->stats, path);
    bool hit = e && cache_stat_same(&e->st, st);
    if (hit) {
        memcpy(hash, e->hash, HASH_HEX_LEN + 1);
        mark_used(&e->node);
    }
    pthread_rwlock_unlock(&c->lock);
    return hit;
}

int cache_hash_input(cache *c, int rootfd, const char *path, char hash[HASH_HEX_LEN + 1],
                     uint64_t *size)
{
    struct stat sb;
    cache_stat st;
    if (fstatat(rootfd, path, &sb, 0) != 0)
        return pk_err_errno("cannot stat", path);
    cache_stat_of(&sb, &st);
    *size = st.size;
    if (cache_input_known(c, path, &st, hash))
        return 0;
    int fd = openat(rootfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pk_err_errno("cannot open", path);
    int rc = hash_fd(fd, path, hash, size);
    close(fd);
    if (rc || cache_stat_racy(&st) || *size != st.size)
        return rc;
    bool fresh;
    pthread_rwlock_wrlock(&c->lock);
    stat_entry *e = (stat_entry *)entry_for(c, &c->stats, path, sizeof *e, &fresh);
    if (e) {
        memcpy(e->hash, hash, HASH_HEX_LEN + 1);
        e->st = st;
        e->node.used = true;
        c->stats.dirty = true;
    }
    pthread_rwlock_unlock(&c->lock);
    return e ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
}

/* ---- asset memos -------------------------------------------------------- */

const cache_memo *cache_memo_get(cache *c, const char *asset_id)
{
    pthread_rwlock_rdlock(&c->lock);
    memo_entry *e = (memo_entry *)strmap_find(&c->memos, asset_id);
    if (e)
        mark_used(&e->node);
    pthread_rwlock_unlock(&c->lock);
    return e ? &e->m : NULL;
}

static bool plain(const char *s)
{
    return s && !strpbrk(s, "\t\n");
}

int cache_memo_put(cache *c, const char *asset_id, const cache_memo *m)
{
    bool ok = plain(asset_id) && plain(m->address) && plain(m->root) && plain(m->kind);
    for (size_t i = 0; ok && i < m->ninputs; i++)
        ok = plain(m->inputs[i]);
    if (!ok || m->ninputs > CACHE_MEMO_MAX_INPUTS)
        return 0; /* not representable: that asset simply takes the long way */
    bool fresh;
    pthread_rwlock_wrlock(&c->lock);
    memo_entry *e = (memo_entry *)entry_for(c, &c->memos, asset_id, sizeof *e, &fresh);
    ok = e && memo_copy(c, &e->m, m);
    if (e) {
        e->node.used = ok; /* a memo that failed to copy is dropped at save */
        c->memos.dirty = true;
    }
    pthread_rwlock_unlock(&c->lock);
    return ok ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
}

/* ---- objects ---------------------------------------------------------- */

/* <dir>/objects/<first two of key>/<key>; by hand, as it runs per asset. */
static char *object_path(const cache *c, const char *key)
{
    size_t nd = strlen(c->dir), nk = strlen(key);
    char *s = nk >= 2 ? pk_malloc(nd + 9 + 3 + nk + 1) : NULL;
    if (!s)
        return nk >= 2 ? NULL : pk_asprintf("%s/objects/%s/%s", c->dir, key, key);
    memcpy(s, c->dir, nd);
    memcpy(s + nd, "/objects/", 9);
    memcpy(s + nd + 9, key, 2);
    s[nd + 11] = '/';
    memcpy(s + nd + 12, key, nk + 1);
    return s;
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Record an object in the index (under the lock, alone). */
static int remember(cache *c, const char *key, const cache_obj *o)
{
    bool fresh;
    obj_entry *e = (obj_entry *)entry_for(c, &c->objs, key, sizeof *e, &fresh);
    if (!e)
        return pk_err(PACKER_ENOMEM, "out of memory");
    e->type = o->type;
    e->size = o->size;
    memcpy(e->hash, o->hash, 16);
    e->ref_path = o->ref_path ? arena_strdup(&c->obj_mem, o->ref_path) : NULL;
    e->node.used = true;
    c->objs.dirty = true;
    return o->ref_path && !e->ref_path ? pk_err(PACKER_ENOMEM, "out of memory") : 0;
}

static int fill_obj(cache *c, const char *key, char type, uint64_t size,
                    const unsigned char hash[16], const char *ref, cache_obj *out)
{
    memset(out, 0, sizeof *out);
    out->type = type;
    out->size = size;
    memcpy(out->hash, hash, 16);
    if (type == 'R') {
        out->ref_path = pk_strdup(ref);
        return out->ref_path ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
    }
    out->blob_path = object_path(c, key);
    out->offset = OBJ_HEADER;
    return out->blob_path ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
}

/* Create tmp in objects/XX, making the directory the first time. */
static int create_tmp(const char *tmp)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT) {
        char *dir = pk_strndup(tmp, (size_t)(strrchr(tmp, '/') - tmp));
        int rc = dir ? io_mkdirs(dir) : pk_err(PACKER_ENOMEM, "out of memory");
        pk_free(dir);
        if (rc == 0)
            fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
    return fd;
}

static int write_object(cache *c, const char *key, const void *blob, size_t len,
                        const unsigned char hash[16])
{
    char *path = object_path(c, key);
    char *tmp = path ? pk_asprintf("%s.tmp-%ld-%lu", path, (long)getpid(),
                                   atomic_fetch_add(&c->tmp_counter, 1))
                     : NULL;
    if (!path || !tmp) {
        pk_free(path);
        pk_free(tmp);
        return pk_err(PACKER_ENOMEM, "out of memory");
    }
    unsigned char head[OBJ_HEADER] = {0};
    memcpy(head, OBJ_MAGIC, 8);
    head[8] = 'B';
    put_u64(head + 16, len);
    memcpy(head + 24, hash, 16);
    int rc = 0, fd = create_tmp(tmp);
    if (fd < 0) {
        rc = pk_err_errno("cannot create", tmp);
    } else {
        /* no fsync: a lost or torn object fails its hash and is rebuilt */
        bool ok =
            io_write_all(fd, head, sizeof head, tmp) == 0 && io_write_all(fd, blob, len, tmp) == 0;
        if (close(fd) != 0 || !ok)
            rc = pk_err_errno("cannot write", tmp);
        if (rc == 0 && rename(tmp, path) != 0)
            rc = pk_err_errno("cannot rename", path);
        if (rc)
            unlink(tmp);
    }
    pk_free(path);
    pk_free(tmp);
    return rc;
}

int cache_put(cache *c, const char *key, char type, const void *payload, size_t len, uint64_t size,
              const unsigned char hash[16], cache_obj *out)
{
    memset(out, 0, sizeof *out);
    int rc = type == 'B' ? write_object(c, key, payload, len, hash) : 0;
    char *ref = type == 'R' ? pk_strndup(payload, len) : NULL;
    if (rc == 0 && type == 'R' && !ref)
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0)
        rc = fill_obj(c, key, type, size, hash, ref, out);
    if (rc == 0) {
        pthread_rwlock_wrlock(&c->lock);
        rc = remember(c, key, out);
        pthread_rwlock_unlock(&c->lock);
    }
    pk_free(ref);
    return rc;
}

/* An object the index does not know: read its file's header. */
static int read_object_header(cache *c, const char *key, cache_obj *out)
{
    char *path = object_path(c, key);
    if (!path)
        return pk_err(PACKER_ENOMEM, "out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    pk_free(path);
    if (fd < 0)
        return PACKER_ENOTFOUND;
    unsigned char head[OBJ_HEADER];
    struct stat st;
    int rc = 0;
    if (read(fd, head, sizeof head) != (ssize_t)sizeof head || memcmp(head, OBJ_MAGIC, 8) != 0 ||
        head[8] != 'B' || fstat(fd, &st) != 0 ||
        (uint64_t)st.st_size - OBJ_HEADER != get_u64(head + 16))
        rc = pk_err(PACKER_EPARSE, ".packer/cache/objects/%.2s/%s: damaged cache entry", key, key);
    close(fd);
    if (rc == 0)
        rc = fill_obj(c, key, 'B', get_u64(head + 16), head + 24, NULL, out);
    if (rc == 0) {
        pthread_rwlock_wrlock(&c->lock);
        rc = remember(c, key, out);
        pthread_rwlock_unlock(&c->lock);
    }
    return rc;
}

int cache_get(cache *c, const char *key, cache_obj *out)
{
    memset(out, 0, sizeof *out);
    pthread_rwlock_rdlock(&c->lock);
    obj_entry *e = (obj_entry *)strmap_find(&c->objs, key);
    char type = e ? e->type : 0;
    uint64_t size = e ? e->size : 0;
    unsigned char hash[16];
    char *ref = e && e->ref_path ? pk_strdup(e->ref_path) : NULL;
    if (e) {
        memcpy(hash, e->hash, 16);
        mark_used(&e->node);
    }
    pthread_rwlock_unlock(&c->lock);
    if (!e)
        return read_object_header(c, key, out);
    int rc = type == 'R' && !ref ? pk_err(PACKER_ENOMEM, "out of memory")
                                 : fill_obj(c, key, type, size, hash, ref, out);
    pk_free(ref);
    return rc;
}

void cache_obj_clear(cache_obj *o)
{
    pk_free(o->blob_path);
    pk_free(o->ref_path);
    memset(o, 0, sizeof *o);
}

int cache_verify(const cache_obj *o)
{
    int fd = open(o->blob_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? PACKER_ENOTFOUND : pk_err_errno("cannot open", o->blob_path);
    struct stat st;
    char hex[HASH_HEX_LEN + 1], want[HASH_HEX_LEN + 1];
    uint64_t size = 0;
    int rc = fstat(fd, &st) != 0 || (uint64_t)st.st_size != o->offset + o->size ||
                     lseek(fd, (off_t)o->offset, SEEK_SET) < 0
                 ? PACKER_EPARSE
                 : hash_fd(fd, o->blob_path, hex, &size);
    close(fd);
    hash_to_hex(o->hash, want);
    if (rc == 0 && (size != o->size || strcmp(hex, want) != 0))
        rc = PACKER_EPARSE;
    return rc;
}
