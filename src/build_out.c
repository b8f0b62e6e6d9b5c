/*
 * build_out.c - the build's output side: write the output set (the pack
 * and the compile surface, addressables.json), publish it into the output
 * directory, tell whether the published outputs are still current, and
 * compare them with a clean rebuild for --verify.
 *
 * Invariants: outputs are written only into a fresh staging directory
 * next to the output directory, which then replaces it in one rename
 * (RENAME_EXCHANGE): readers and crashes see the previous complete output
 * or the new one, never a mix. Output bytes depend only on (address,
 * asset_id, blob) of the items, in address order. The up-to-date stamps
 * (.packer/build-state.json) are written only after a successful publish
 * and name each output's size, mtime and inode, so any later touch makes
 * the outputs not current.
 *
 * Threads: lane only (the build job), while no worker runs.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build.h"

#define PACK_NAME "assets.pack"
#define SURFACE_NAME "addressables.json"

/* ---- writing ------------------------------------------------------------ */

static char *surface_text(build_ctx *b)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < b->n; i++) {
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddItemToArray(arr, e) ||
            !json_add_str(e, "address", b->items[i].address) ||
            !json_add_str(e, "asset_id", b->items[i].asset_id)) {
            cJSON_Delete(arr);
            return NULL;
        }
    }
    char *text = json_canonical(arr, false);
    cJSON_Delete(arr);
    char *line = text ? pk_asprintf("%s\n", text) : NULL;
    pk_free(text);
    return line;
}

static pack_entry *entries_of(build_ctx *b)
{
    pack_entry *v = pk_calloc(b->n + 1, sizeof *v);
    for (size_t i = 0; v && i < b->n; i++) {
        const cache_obj *o = &b->res[i].obj;
        v[i].address = b->items[i].address;
        v[i].asset_id = b->items[i].asset_id;
        v[i].size = o->size;
        memcpy(v[i].hash, o->hash, 16);
        v[i].blob_offset = o->type == 'B' ? o->offset : 0;
        v[i].blob_path = o->type == 'B' ? pk_strdup(o->blob_path) : io_join(b->root, o->ref_path);
        if (!v[i].blob_path) {
            for (size_t k = 0; k < i; k++)
                pk_free((char *)v[k].blob_path);
            pk_free(v);
            return NULL;
        }
    }
    return v;
}

static void entries_free(pack_entry *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        pk_free((char *)v[i].blob_path);
    pk_free(v);
}

/* Write the complete output set into dir (which must exist). */
int out_write(build_ctx *b, const char *dir)
{
    pack_entry *v = entries_of(b);
    char *pack = io_join(dir, PACK_NAME), *surf = io_join(dir, SURFACE_NAME);
    char *text = surface_text(b);
    int rc = v && pack && surf && text ? pack_write(pack, v, b->n)
                                       : pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0)
        rc = io_write_atomic(surf, text, strlen(text));
    entries_free(v, b->n);
    pk_free(pack);
    pk_free(surf);
    pk_free(text);
    return rc;
}

/* ---- publishing --------------------------------------------------------- */

int out_rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return unlink(path) == 0 || errno == ENOENT ? 0 : pk_err_errno("cannot remove", path);
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *p = io_join(path, e->d_name);
        rc = p ? out_rm_tree(p) : PACKER_ENOMEM;
        pk_free(p);
    }
    closedir(d);
    if (rc == 0 && rmdir(path) != 0)
        rc = pk_err_errno("cannot remove", path);
    return rc;
}

static char *parent_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash && slash != path ? pk_strndup(path, (size_t)(slash - path)) : pk_strdup("/");
}

/* Stage the outputs next to out_dir, then swap them in with one rename. */
int out_publish(build_ctx *b)
{
    char *stage = pk_asprintf("%s.tmp-%ld", b->out_dir, (long)getpid());
    char *parent = parent_of(b->out_dir);
    int rc = stage && parent ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0) {
        out_rm_tree(stage); /* litter of an earlier crash */
        rc = io_mkdirs(parent);
    }
    if (rc == 0 && mkdir(stage, 0755) != 0)
        rc = pk_err_errno("cannot create", stage);
    if (rc == 0)
        rc = out_write(b, stage);
    if (rc == 0)
        rc = io_fsync_dir(stage);
    if (rc == 0) {
        project_set_state(b->o->p, b->o, PACKER_STATE_COMMITTING);
        if (io_is_dir(b->out_dir)) {
            if (renameat2(AT_FDCWD, stage, AT_FDCWD, b->out_dir, RENAME_EXCHANGE) != 0)
                rc = pk_err_errno("cannot swap in the new outputs", b->out_dir);
        } else if (rename(stage, b->out_dir) != 0) {
            rc = pk_err_errno("cannot move the new outputs into place", b->out_dir);
        }
        if (rc == 0)
            rc = io_fsync_dir(parent);
        project_set_state(b->o->p, b->o, PACKER_STATE_HEALTHY);
    }
    if (stage)
        out_rm_tree(stage); /* the previous outputs, or a failed stage */
    pk_free(stage);
    pk_free(parent);
    return rc;
}

/* ---- up to date? --------------------------------------------------------- */

/* "size:mtime_ns" of an output file, as recorded after a build. */
static bool file_stamp(const char *dir, const char *name, char out[64])
{
    char *p = io_join(dir, name);
    struct stat st;
    bool ok = p && stat(p, &st) == 0;
    if (ok)
        snprintf(out, 64, "%lld:%lld:%llu", (long long)st.st_size,
                 (long long)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec,
                 (unsigned long long)st.st_ino);
    pk_free(p);
    return ok;
}

static char *state_path(build_ctx *b)
{
    return io_join(b->root, ".packer/build-state.json");
}

bool out_current(build_ctx *b, const char *digest)
{
    char *path = state_path(b);
    cJSON *j = NULL;
    bool same = false;
    char pack[64], surf[64];
    if (path && json_load_file(path, ".packer/build-state.json", &j) == 0 &&
        file_stamp(b->out_dir, PACK_NAME, pack) && file_stamp(b->out_dir, SURFACE_NAME, surf)) {
        const char *d = json_get_str(j, "digest"), *p = json_get_str(j, "pack");
        const char *s = json_get_str(j, "surface");
        same =
            d && p && s && strcmp(d, digest) == 0 && strcmp(p, pack) == 0 && strcmp(s, surf) == 0;
    }
    cJSON_Delete(j);
    pk_free(path);
    return same;
}

int out_save_state(build_ctx *b, const char *digest)
{
    char pack[64], surf[64];
    if (!file_stamp(b->out_dir, PACK_NAME, pack) || !file_stamp(b->out_dir, SURFACE_NAME, surf))
        return 0;
    cJSON *j = cJSON_CreateObject();
    char *path = state_path(b), *text = NULL;
    if (j && json_add_str(j, "digest", digest) && json_add_str(j, "pack", pack) &&
        json_add_str(j, "surface", surf))
        text = json_canonical(j, true);
    int rc = text && path ? io_write_atomic(path, text, strlen(text))
                          : pk_err(PACKER_ENOMEM, "out of memory");
    cJSON_Delete(j);
    pk_free(path);
    pk_free(text);
    return rc;
}

/* ---- --verify ------------------------------------------------------------- */

/* 0 when the two files have the same bytes; compared in chunks, so memory
 * stays bounded whatever their size. */
static int compare_file(const char *a, const char *b_path)
{
    static _Thread_local char x[1 << 16], y[1 << 16];
    int fa = open(a, O_RDONLY | O_CLOEXEC), fb = open(b_path, O_RDONLY | O_CLOEXEC);
    struct stat sa, sb;
    int rc = fa < 0 || fb < 0 || fstat(fa, &sa) != 0 || fstat(fb, &sb) != 0
                 ? pk_err_errno("cannot open", fa < 0 ? a : b_path)
             : sa.st_size != sb.st_size ? PACKER_EREFUSED
                                        : 0;
    for (off_t left = sa.st_size; rc == 0 && left > 0;) {
        size_t want = left < (off_t)sizeof x ? (size_t)left : sizeof x;
        if (io_read_full(fa, x, want, a) != 0 || io_read_full(fb, y, want, b_path) != 0)
            rc = PACKER_EIO;
        else if (memcmp(x, y, want) != 0)
            rc = PACKER_EREFUSED;
        left -= (off_t)want;
    }
    if (fa >= 0)
        close(fa);
    if (fb >= 0)
        close(fb);
    return rc;
}

bool out_same(build_ctx *b, const char *dir)
{
    bool ok = true;
    const char *names[] = {PACK_NAME, SURFACE_NAME};
    for (int i = 0; i < 2; i++) {
        char *x = io_join(b->out_dir, names[i]), *y = io_join(dir, names[i]);
        if (!x || !y || compare_file(x, y) != 0) {
            char msg[600];
            snprintf(msg, sizeof msg, "%s differs from a clean rebuild", names[i]);
            resp_diag(b->o->r, "error", "verify_mismatch", NULL, names[i], msg);
            resp_blocker(b->o->r, "verify_mismatch", msg);
            ok = false;
        }
        pk_free(x);
        pk_free(y);
    }
    return ok;
}
