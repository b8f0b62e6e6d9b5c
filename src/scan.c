/*
 * scan.c - the workspace walk behind `doctor --workspace`, and the
 * duplicate-content finder.
 *
 * The walk lists every file under the workspace root once, without
 * following symlinks, and notes for each the asset root it lies in: the
 * nearest directory above it that holds an asset.json, registered or not.
 * It never descends into packer-owned state (.packer/), version-control
 * directories, or a build output directory (one holding addressables.json
 * and assets.pack). Files come out sorted by path, roots sorted too.
 *
 * Duplicates are found the way fast duplicate finders (jdupes, rmlint) do
 * it: group by size, drop sizes seen once, then hash only the remaining
 * candidates - first their leading bytes, then, for the candidates still
 * tied, the whole file - on several threads. Sizes are exact and hashes
 * are XXH3-128, so a group is a group of identical contents in practice;
 * the result is advisory anyway.
 *
 * Threads: a scan is built and read by one thread; scan_duplicates starts
 * and joins its own workers.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"

#define HEAD_BYTES 4096

typedef struct {
    scan_index *s;
    const char *root;
    size_t fcap, rcap;
    int rc;
} walker;

static const char *const SKIP_DIRS[] = {".packer", ".git", ".svn", ".hg", NULL};

bool scan_skip_dir(const char *dir_abs, const char *name)
{
    for (const char *const *n = SKIP_DIRS; *n; n++)
        if (strcmp(name, *n) == 0)
            return true;
    char *surface = pk_asprintf("%s/%s/addressables.json", dir_abs, name);
    char *pack = pk_asprintf("%s/%s/assets.pack", dir_abs, name);
    bool out = surface && pack && io_is_file(surface) && io_is_file(pack);
    pk_free(surface);
    pk_free(pack);
    return out;
}

static int add_file(walker *w, char *rel, uint64_t size, int root, bool link)
{
    scan_index *s = w->s;
    if (s->nfiles == w->fcap) {
        size_t cap = w->fcap ? w->fcap * 2 : 256;
        scan_file *v = pk_realloc(s->files, cap * sizeof *v);
        if (!v) {
            pk_free(rel);
            return pk_err(PACKER_ENOMEM, "out of memory");
        }
        s->files = v;
        w->fcap = cap;
    }
    s->files[s->nfiles++] = (scan_file){.path = rel, .size = size, .root = root, .link = link};
    return 0;
}

static int add_root(walker *w, const char *rel)
{
    scan_index *s = w->s;
    if (s->nroots == w->rcap) {
        size_t cap = w->rcap ? w->rcap * 2 : 64;
        char **v = pk_realloc(s->roots, cap * sizeof *v);
        if (!v)
            return pk_err(PACKER_ENOMEM, "out of memory");
        s->roots = v;
        w->rcap = cap;
    }
    if (!(s->roots[s->nroots] = pk_strdup(rel)))
        return pk_err(PACKER_ENOMEM, "out of memory");
    s->nroots++;
    return 0;
}

/* Walk dir (workspace-relative, "" for the root); `root` is the index of
 * the asset root it lies in, or -1. */
static void walk(walker *w, const char *rel, int root)
{
    char *abs = *rel ? io_join(w->root, rel) : pk_strdup(w->root);
    char *manifest = abs ? io_join(abs, "asset.json") : NULL;
    if (!abs || !manifest) {
        w->rc = pk_err(PACKER_ENOMEM, "out of memory");
        goto out;
    }
    if (*rel && io_is_file(manifest)) {
        if ((w->rc = add_root(w, rel)) != 0)
            goto out;
        root = (int)w->s->nroots - 1;
    }
    DIR *d = opendir(abs);
    if (!d)
        goto out; /* unreadable: nothing to say about its contents */
    struct dirent *e;
    while (w->rc == 0 && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *child = *rel ? pk_asprintf("%s/%s", rel, e->d_name) : pk_strdup(e->d_name);
        if (!child) {
            w->rc = pk_err(PACKER_ENOMEM, "out of memory");
            break;
        }
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            pk_free(child);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (!scan_skip_dir(abs, e->d_name))
                walk(w, child, root);
            pk_free(child);
        } else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
            w->rc = add_file(w, child, (uint64_t)st.st_size, root, S_ISLNK(st.st_mode));
        } else {
            pk_free(child);
        }
    }
    closedir(d);
out:
    pk_free(abs);
    pk_free(manifest);
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const scan_file *)a)->path, ((const scan_file *)b)->path);
}

int scan_workspace(const char *root, scan_index **out)
{
    *out = NULL;
    scan_index *s = pk_calloc(1, sizeof *s);
    if (!s)
        return pk_err(PACKER_ENOMEM, "out of memory");
    walker w = {.s = s, .root = root};
    walk(&w, "", -1);
    if (w.rc) {
        scan_free(s);
        return w.rc;
    }
    /* roots were found in walk order; files keep their root index, so
     * sort files only (roots are reported through them or in walk order) */
    if (s->nfiles > 1)
        qsort(s->files, s->nfiles, sizeof *s->files, cmp_file);
    *out = s;
    return 0;
}

void scan_free(scan_index *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nfiles; i++)
        pk_free(s->files[i].path);
    for (size_t i = 0; i < s->nroots; i++)
        pk_free(s->roots[i]);
    pk_free(s->files);
    pk_free(s->roots);
    pk_free(s);
}

/* ---- duplicates ---------------------------------------------------------- */

typedef struct {
    size_t file; /* index into scan files */
    uint64_t size;
    unsigned char head[16], full[16];
    bool ok;
} cand;

typedef struct {
    const scan_index *s;
    const char *root;
    cand *c;
    size_t *todo; /* indexes into c */
    size_t ntodo;
    bool full; /* pass: whole file, else the first HEAD_BYTES */
    atomic_size_t next;
} dup_pass;

static bool hash_prefix(const char *path, uint64_t limit, unsigned char out[16])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    XXH3_state_t *st = XXH3_createState();
    bool ok = st != NULL;
    if (ok)
        XXH3_128bits_reset(st);
    static __thread char buf[1 << 16];
    uint64_t left = limit;
    while (ok && left > 0) {
        ssize_t n = read(fd, buf, left < sizeof buf ? (size_t)left : sizeof buf);
        if (n < 0)
            ok = false;
        if (n <= 0)
            break;
        XXH3_128bits_update(st, buf, (size_t)n);
        left -= (uint64_t)n;
    }
    close(fd);
    if (ok) {
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
        memcpy(out, c.digest, 16);
    }
    XXH3_freeState(st);
    return ok;
}

static void *dup_worker(void *arg)
{
    dup_pass *p = arg;
    for (size_t k; (k = atomic_fetch_add(&p->next, 1)) < p->ntodo;) {
        cand *c = &p->c[p->todo[k]];
        char *abs = io_join(p->root, p->s->files[c->file].path);
        c->ok =
            abs && hash_prefix(abs, p->full ? c->size : HEAD_BYTES, p->full ? c->full : c->head);
        pk_free(abs);
    }
    return NULL;
}

static void run_pass(dup_pass *p, int threads)
{
    pthread_t t[16];
    int started = 0;
    threads = threads < 1 ? 1 : threads > 16 ? 16 : threads;
    for (; started < threads - 1 && (size_t)started + 1 < p->ntodo; started++)
        if (pthread_create(&t[started], NULL, dup_worker, p) != 0)
            break;
    dup_worker(p); /* the calling thread is a worker too */
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
}

static int cmp_size(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return x->size < y->size   ? -1
           : x->size > y->size ? 1
                               : (x->file > y->file) - (x->file < y->file);
}

static int cmp_full(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->ok != y->ok)
        return x->ok ? -1 : 1;
    if (x->size != y->size)
        return x->size < y->size ? -1 : 1;
    int c = memcmp(x->full, y->full, 16);
    return c ? c : (x->file > y->file) - (x->file < y->file);
}

/* Indexes of candidates that share (size and, when `key` is set, the
 * 16 bytes at offset key) with a neighbour in sorted order. */
static size_t tied(cand *c, size_t n, size_t key_off, bool with_key, size_t *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        bool same_prev =
            i > 0 && c[i].size == c[i - 1].size &&
            (!with_key || (c[i - 1].ok && c[i].ok &&
                           memcmp((char *)&c[i] + key_off, (char *)&c[i - 1] + key_off, 16) == 0));
        bool same_next =
            i + 1 < n && c[i].size == c[i + 1].size &&
            (!with_key || (c[i + 1].ok && c[i].ok &&
                           memcmp((char *)&c[i] + key_off, (char *)&c[i + 1] + key_off, 16) == 0));
        if (same_prev || same_next)
            out[m++] = i;
        else if (with_key)
            c[i].ok = false;
    }
    return m;
}

static int cmp_head(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->size != y->size)
        return x->size < y->size ? -1 : 1;
    if (x->ok != y->ok)
        return x->ok ? -1 : 1;
    int c = memcmp(x->head, y->head, 16);
    return c ? c : (x->file > y->file) - (x->file < y->file);
}

static int emit_groups(const scan_index *s, cand *c, size_t n, dup_group **out, size_t *nout)
{
    size_t ng = 0;
    dup_group *g = NULL;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && c[j].ok && c[i].ok && c[j].size == c[i].size &&
               memcmp(c[j].full, c[i].full, 16) == 0)
            j++;
        if (c[i].ok && j - i >= 2) {
            dup_group *v = pk_realloc(g, (ng + 1) * sizeof *v);
            size_t *files = pk_calloc(j - i, sizeof *files);
            if (!v || !files) {
                pk_free(files);
                dup_groups_free(v ? v : g, ng);
                return pk_err(PACKER_ENOMEM, "out of memory");
            }
            g = v;
            for (size_t k = i; k < j; k++)
                files[k - i] = c[k].file;
            g[ng] = (dup_group){.files = files, .n = j - i, .size = c[i].size};
            hash_to_hex(c[i].full, g[ng].hash);
            ng++;
        }
        i = j;
    }
    (void)s;
    *out = g;
    *nout = ng;
    return 0;
}

int scan_duplicates(const scan_index *s, const char *root, int threads, dup_group **out,
                    size_t *nout)
{
    *out = NULL;
    *nout = 0;
    cand *c = pk_calloc(s->nfiles + 1, sizeof *c);
    size_t *todo = pk_calloc(s->nfiles + 1, sizeof *todo);
    size_t n = 0;
    int rc = c && todo ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < s->nfiles; i++) {
        const scan_file *f = &s->files[i];
        const char *base = strrchr(f->path, '/');
        base = base ? base + 1 : f->path;
        if (f->root >= 0 && !f->link && f->size > 0 && strcmp(base, "asset.json") != 0)
            c[n++] = (cand){.file = i, .size = f->size};
    }
    if (rc == 0) {
        /* pass 1: sizes seen once cannot have a twin */
        qsort(c, n, sizeof *c, cmp_size);
        size_t m = tied(c, n, 0, false, todo);
        size_t k = 0;
        for (size_t i = 0; i < m; i++)
            c[k++] = c[todo[i]];
        n = k;
        /* pass 2: the leading bytes */
        for (size_t i = 0; i < n; i++)
            todo[i] = i;
        dup_pass p = {.s = s, .root = root, .c = c, .todo = todo, .ntodo = n};
        run_pass(&p, threads);
        qsort(c, n, sizeof *c, cmp_head);
        m = tied(c, n, offsetof(cand, head), true, todo);
        /* pass 3: whole files, only where the head did not already cover
         * the whole file */
        size_t t = 0;
        for (size_t i = 0; i < m; i++) {
            cand *x = &c[todo[i]];
            if (x->size <= HEAD_BYTES)
                memcpy(x->full, x->head, 16);
            else
                todo[t++] = todo[i];
        }
        p = (dup_pass){.s = s, .root = root, .c = c, .todo = todo, .ntodo = t, .full = true};
        run_pass(&p, threads);
        qsort(c, n, sizeof *c, cmp_full);
        rc = emit_groups(s, c, n, out, nout);
    }
    pk_free(c);
    pk_free(todo);
    return rc;
}

void dup_groups_free(dup_group *g, size_t n)
{
    for (size_t i = 0; g && i < n; i++)
        pk_free(g[i].files);
    pk_free(g);
}
