/*
 * cache.c - the build cache under .packer/cache/: content hashes of inputs
 * remembered by stat, and recipe outputs stored by cache key.
 *
 *   stat-index      "<hash> <size> <mtime_ns> <ctime_ns> <ino> <path>" per
 *                   line: an input whose stat matches is not re-hashed
 *   objects/XX/KEY  one recipe output, KEY = XXH3-128 of recipe identity,
 *                   asset identity, manifest and input hashes:
 *                   "PKCACHE1" type(1) pad(7) u64 size, hash[16], payload
 *                   type 'B': payload is the blob; type 'R': the blob is an
 *                   input streamed as is, payload is its workspace path
 *
 * Invariants: an object is trusted only after its recorded hash matches
 * its bytes (cache_verify); a mismatch is reported by the caller and the
 * entry rebuilt, never packed. The whole directory is safe to delete at
 * any time: it only ever saves work. Objects are written with a temp file
 * and a rename, so a reader never sees half an object.
 *
 * Threads: cache_stat_lookup/cache_get/cache_verify from any thread once
 * the index is loaded; cache_stat_put/cache_put from the build's workers
 * (puts to the index are guarded by its mutex); load/save from the lane.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"

#define OBJ_MAGIC "PKCACHE1"
#define OBJ_HEADER 40

typedef struct stat_entry {
    char *path;
    char hash[HASH_HEX_LEN + 1];
    uint64_t size;
    int64_t mtime_ns, ctime_ns;
    uint64_t ino;
    bool used;
    struct stat_entry *next;
} stat_entry;

struct cache {
    char *dir;     /* .packer/cache */
    stat_entry **buckets;
    size_t nbuckets, count;
    pthread_mutex_t mu;
    atomic_ulong tmp_counter;
};

static int64_t ns_of(struct timespec ts)
{
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- stat index ---------------------------------------------------------- */

static stat_entry **bucket(cache *c, const char *path)
{
    return &c->buckets[hash64(path) % c->nbuckets];
}

static int index_put(cache *c, const char *path, const char *hash, uint64_t size,
                     int64_t mtime, int64_t ctime, uint64_t ino)
{
    stat_entry **b = bucket(c, path), *e;
    for (e = *b; e; e = e->next)
        if (strcmp(e->path, path) == 0)
            break;
    if (!e) {
        if (!(e = pk_calloc(1, sizeof *e)) || !(e->path = pk_strdup(path))) {
            pk_free(e);
            return pk_err(PACKER_ENOMEM, "out of memory");
        }
        e->next = *b;
        *b = e;
        c->count++;
    }
    snprintf(e->hash, sizeof e->hash, "%s", hash);
    e->size = size;
    e->mtime_ns = mtime;
    e->ctime_ns = ctime;
    e->ino = ino;
    e->used = true;
    return 0;
}

static void index_parse(cache *c, char *text)
{
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char hash[HASH_HEX_LEN + 1];
        unsigned long long size, ino;
        long long mt, ct;
        int off = 0;
        if (sscanf(line, "%32s %llu %lld %lld %llu %n", hash, &size, &mt, &ct, &ino, &off) == 5 &&
            off > 0 && strlen(hash) == HASH_HEX_LEN && line[off])
            index_put(c, line + off, hash, size, mt, ct, ino);
        /* a damaged line only costs a re-hash */
    }
    for (size_t i = 0; i < c->nbuckets; i++)
        for (stat_entry *e = c->buckets[i]; e; e = e->next)
            e->used = false;
}

int cache_open(const char *root, bool fresh, cache **out)
{
    cache *c = pk_calloc(1, sizeof *c);
    *out = NULL;
    if (!c)
        return pk_err(PACKER_ENOMEM, "out of memory");
    pthread_mutex_init(&c->mu, NULL);
    c->nbuckets = 1 << 16;
    c->dir = io_join(root, ".packer/cache");
    c->buckets = pk_calloc(c->nbuckets, sizeof *c->buckets);
    char *objs = c->dir ? io_join(c->dir, "objects") : NULL;
    int rc = c->dir && c->buckets && objs ? io_mkdirs(objs) : pk_err(PACKER_ENOMEM, "out of memory");
    pk_free(objs);
    char *idx = rc == 0 ? io_join(c->dir, "stat-index") : NULL, *text = NULL;
    if (rc == 0 && !fresh && idx && io_read_file(idx, &text, NULL) == 0)
        index_parse(c, text);
    pk_free(text);
    pk_free(idx);
    if (rc) {
        cache_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void cache_close(cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; c->buckets && i < c->nbuckets; i++)
        for (stat_entry *e = c->buckets[i], *n; e; e = n) {
            n = e->next;
            pk_free(e->path);
            pk_free(e);
        }
    pk_free(c->buckets);
    pk_free(c->dir);
    pthread_mutex_destroy(&c->mu);
    pk_free(c);
}

int cache_hash_input(cache *c, const char *root, const char *path, char hash[HASH_HEX_LEN + 1],
                     uint64_t *size)
{
    char *abs = io_join(root, path);
    struct stat st;
    if (!abs)
        return pk_err(PACKER_ENOMEM, "out of memory");
    if (stat(abs, &st) != 0) {
        int rc = pk_err_errno("cannot stat", path);
        pk_free(abs);
        return rc;
    }
    pthread_mutex_lock(&c->mu);
    stat_entry *e;
    for (e = *bucket(c, path); e; e = e->next)
        if (strcmp(e->path, path) == 0)
            break;
    bool hit = e && e->size == (uint64_t)st.st_size && e->mtime_ns == ns_of(st.st_mtim) &&
               e->ctime_ns == ns_of(st.st_ctim) && e->ino == (uint64_t)st.st_ino;
    if (hit) {
        memcpy(hash, e->hash, HASH_HEX_LEN + 1);
        *size = e->size;
        e->used = true;
    }
    pthread_mutex_unlock(&c->mu);
    if (hit) {
        pk_free(abs);
        return 0;
    }
    int rc = hash_file(abs, hash, size);
    pk_free(abs);
    if (rc)
        return rc;
    pthread_mutex_lock(&c->mu);
    rc = index_put(c, path, hash, *size, ns_of(st.st_mtim), ns_of(st.st_ctim), (uint64_t)st.st_ino);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp((*(stat_entry *const *)a)->path, (*(stat_entry *const *)b)->path);
}

int cache_save_index(cache *c)
{
    stat_entry **v = pk_malloc((c->count ? c->count : 1) * sizeof *v);
    if (!v)
        return pk_err(PACKER_ENOMEM, "out of memory");
    size_t n = 0, bytes = 0;
    for (size_t i = 0; i < c->nbuckets; i++)
        for (stat_entry *e = c->buckets[i]; e; e = e->next)
            if (e->used) { /* inputs no longer used drop out */
                v[n++] = e;
                bytes += strlen(e->path) + 120;
            }
    qsort(v, n, sizeof *v, cmp_entry);
    char *text = pk_malloc(bytes + 1), *p = text;
    int rc = text ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++)
        p += sprintf(p, "%s %llu %lld %lld %llu %s\n", v[i]->hash, (unsigned long long)v[i]->size,
                     (long long)v[i]->mtime_ns, (long long)v[i]->ctime_ns,
                     (unsigned long long)v[i]->ino, v[i]->path);
    char *idx = rc == 0 ? io_join(c->dir, "stat-index") : NULL;
    if (rc == 0)
        rc = idx ? io_write_atomic(idx, text, (size_t)(p - text))
                 : pk_err(PACKER_ENOMEM, "out of memory");
    pk_free(idx);
    pk_free(text);
    pk_free(v);
    return rc;
}

/* ---- objects ---------------------------------------------------------- */

static char *object_path(const cache *c, const char *key)
{
    return pk_asprintf("%s/objects/%.2s/%s", c->dir, key, key);
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

int cache_put(cache *c, const char *key, char type, const void *payload, size_t len,
              uint64_t size, const unsigned char hash[16])
{
    char *path = object_path(c, key);
    char *dir = path ? pk_strndup(path, strrchr(path, '/') - path) : NULL;
    char *tmp = path ? pk_asprintf("%s.tmp-%ld-%lu", path, (long)getpid(),
                                   atomic_fetch_add(&c->tmp_counter, 1))
                     : NULL;
    unsigned char head[OBJ_HEADER] = {0};
    int rc = path && dir && tmp ? io_mkdirs(dir) : pk_err(PACKER_ENOMEM, "out of memory");
    memcpy(head, OBJ_MAGIC, 8);
    head[8] = (unsigned char)type;
    put_u64(head + 16, size);
    memcpy(head + 24, hash, 16);
    FILE *f = rc == 0 ? fopen(tmp, "wb") : NULL;
    if (rc == 0 && !f)
        rc = pk_err_errno("cannot create", tmp);
    if (f) {
        bool ok = fwrite(head, 1, sizeof head, f) == sizeof head &&
                  fwrite(payload, 1, len, f) == len;
        if (fclose(f) != 0 || !ok)
            rc = pk_err_errno("cannot write", tmp);
        if (rc == 0 && rename(tmp, path) != 0)
            rc = pk_err_errno("cannot rename", path);
        if (rc)
            unlink(tmp);
    }
    pk_free(path);
    pk_free(dir);
    pk_free(tmp);
    return rc;
}

int cache_get(cache *c, const char *key, cache_obj *out)
{
    memset(out, 0, sizeof *out);
    char *path = object_path(c, key);
    if (!path)
        return pk_err(PACKER_ENOMEM, "out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        pk_free(path);
        return PACKER_ENOTFOUND;
    }
    unsigned char head[OBJ_HEADER];
    struct stat st;
    int rc = 0;
    if (read(fd, head, sizeof head) != (ssize_t)sizeof head || memcmp(head, OBJ_MAGIC, 8) != 0 ||
        (head[8] != 'B' && head[8] != 'R') || fstat(fd, &st) != 0)
        rc = PACKER_EPARSE;
    if (rc == 0) {
        out->type = (char)head[8];
        out->size = get_u64(head + 16);
        memcpy(out->hash, head + 24, 16);
        uint64_t payload = (uint64_t)st.st_size - OBJ_HEADER;
        if (out->type == 'B' && payload != out->size)
            rc = PACKER_EPARSE; /* truncated or padded */
        else if (out->type == 'R' && (payload == 0 || payload > 4096))
            rc = PACKER_EPARSE;
    }
    if (rc == 0 && out->type == 'R') {
        char buf[4097];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n <= 0)
            rc = PACKER_EPARSE;
        else
            buf[n] = '\0', out->ref_path = pk_strdup(buf);
    }
    close(fd);
    if (rc == 0 && out->type == 'B') {
        out->blob_path = path;
        out->offset = OBJ_HEADER;
        path = NULL;
    }
    pk_free(path);
    if (rc)
        pk_err(rc, ".packer/cache/objects/%.2s/%s: damaged cache entry", key, key);
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
        return pk_err_errno("cannot open", o->blob_path);
    XXH3_state_t *st = XXH3_createState();
    static _Thread_local unsigned char buf[1 << 16];
    uint64_t left = o->size;
    int rc = st ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0) {
        XXH3_128bits_reset(st);
        if (lseek(fd, (off_t)o->offset, SEEK_SET) < 0)
            rc = PACKER_EIO;
    }
    while (rc == 0 && left > 0) {
        ssize_t n = read(fd, buf, left < sizeof buf ? left : sizeof buf);
        if (n <= 0) {
            rc = PACKER_EPARSE;
            break;
        }
        XXH3_128bits_update(st, buf, (size_t)n);
        left -= (uint64_t)n;
    }
    if (rc == 0) {
        XXH128_canonical_t cn;
        XXH128_canonicalFromHash(&cn, XXH3_128bits_digest(st));
        if (memcmp(cn.digest, o->hash, 16) != 0)
            rc = PACKER_EPARSE;
    }
    XXH3_freeState(st);
    close(fd);
    return rc;
}
