/*
 * quarantine.c - explicit, reversible removal of content from the
 * workspace: `packer quarantine PATH... --yes`, `quarantine list`,
 * `restore ID`, and the doctor's quarantine fix.
 *
 *   .packer/quarantine/<id>/record.json   {id, original, reason, time,
 *                                           state, type, files: [{path,
 *                                           size, hash}]}
 *   .packer/quarantine/<id>/content       the moved file or directory
 *
 * Crash safety: a move is (1) write the record durably with state
 * "moving", (2) rename the content into place (atomic, same file system)
 * and fsync both directories, (3) rewrite the record as "quarantined". A
 * restore is the same in reverse with state "restoring", ending with the
 * record's removal. Interrupted anywhere, the content is at exactly one of
 * its two places and the record says where it was going; quar_recover()
 * (run before every list, move and restore, under the lock) finishes or
 * rolls back by looking where the content is. Content is never copied, so
 * it is never half in both places, and never lost.
 *
 * Restore puts back the bytes that were moved (checked against the
 * recorded XXH3 hashes first) and refuses when anything now occupies the
 * original path. Quarantining a registered asset root also excludes that
 * asset from the build (a registry commit before the move), so a build is
 * never blocked by content the user set aside on purpose; doctor reports
 * records whose content a registered asset still references.
 *
 * Threads: lane only, with the workspace lock held.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define QDIR ".packer/quarantine"

/* Test hook: PACKER_TEST_CRASH=quarantine:<point> ends the process there,
 * as a power cut would (spec/quarantine_spec.lua). */
static void crash_point(const char *point)
{
    const char *want = getenv("PACKER_TEST_CRASH");
    if (want && strncmp(want, "quarantine:", 11) == 0 && strcmp(want + 11, point) == 0)
        _exit(86);
}

static char *qpath(const char *root, const char *id, const char *leaf)
{
    return leaf ? pk_asprintf("%s/" QDIR "/%s/%s", root, id, leaf)
                : pk_asprintf("%s/" QDIR "/%s", root, id);
}

static int write_record(const char *root, cJSON *rec)
{
    char *path = qpath(root, json_get_str(rec, "id"), "record.json");
    char *text = json_canonical(rec, true);
    int rc = path && text ? io_write_atomic(path, text, strlen(text))
                          : pk_err(PACKER_ENOMEM, "out of memory");
    pk_free(path);
    pk_free(text);
    return rc;
}

static int set_state(const char *root, cJSON *rec, const char *state)
{
    cJSON_DeleteItemFromObjectCaseSensitive(rec, "state");
    if (!json_add_str(rec, "state", state))
        return pk_err(PACKER_ENOMEM, "out of memory");
    return write_record(root, rec);
}

/* ---- hashing what is moved ------------------------------------------------ */

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names in directory abs, sorted (records list files in a stable order,
 * whatever order the file system returns them in). */
static int sorted_names(const char *abs, char ***out, size_t *n)
{
    DIR *d = opendir(abs);
    *out = NULL;
    *n = 0;
    if (!d)
        return pk_err_errno("cannot open", abs);
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char **v = pk_realloc(*out, (*n + 1) * sizeof *v);
        if (!v || !(v[*n] = pk_strdup(e->d_name))) {
            *out = v ? v : *out;
            rc = pk_err(PACKER_ENOMEM, "out of memory");
            break;
        }
        *out = v;
        (*n)++;
    }
    closedir(d);
    if (*n > 1)
        qsort(*out, *n, sizeof **out, cmp_name);
    return rc;
}

static int hash_tree(const char *abs, const char *rel, cJSON *files)
{
    struct stat st;
    if (lstat(abs, &st) != 0)
        return pk_err_errno("cannot stat", abs);
    if (S_ISDIR(st.st_mode)) {
        char **names = NULL;
        size_t n = 0;
        int rc = sorted_names(abs, &names, &n);
        for (size_t i = 0; i < n; i++) {
            char *ca = rc == 0 ? io_join(abs, names[i]) : NULL;
            char *cr = rc != 0 ? NULL
                       : *rel  ? pk_asprintf("%s/%s", rel, names[i])
                               : pk_strdup(names[i]);
            if (rc == 0)
                rc = ca && cr ? hash_tree(ca, cr, files) : pk_err(PACKER_ENOMEM, "out of memory");
            pk_free(ca);
            pk_free(cr);
            pk_free(names[i]);
        }
        pk_free(names);
        return rc;
    }
    if (!S_ISREG(st.st_mode))
        return 0; /* links and the like move as they are; only contents are hashed */
    char hex[HASH_HEX_LEN + 1];
    uint64_t size;
    int rc = hash_file(abs, hex, &size);
    if (rc)
        return rc;
    cJSON *f = cJSON_CreateObject();
    if (!f || !json_add_str(f, "path", *rel ? rel : ".") || !json_add_str(f, "hash", hex) ||
        !cJSON_AddNumberToObject(f, "size", (double)size) || !cJSON_AddItemToArray(files, f)) {
        cJSON_Delete(f);
        return pk_err(PACKER_ENOMEM, "out of memory");
    }
    return 0;
}

/* True when content under abs still has every recorded hash. */
static bool hashes_match(const char *abs, const cJSON *rec)
{
    cJSON *now = cJSON_CreateArray();
    bool ok = now && hash_tree(abs, "", now) == 0;
    const cJSON *want = cJSON_GetObjectItem(rec, "files");
    ok = ok && cJSON_GetArraySize(now) == cJSON_GetArraySize(want);
    const cJSON *a = now ? now->child : NULL, *b = want ? want->child : NULL;
    for (; ok && a && b; a = a->next, b = b->next) /* both walks are sorted by name */
        ok = strcmp(json_get_str(a, "hash"), json_get_str(b, "hash")) == 0 &&
             strcmp(json_get_str(a, "path"), json_get_str(b, "path")) == 0;
    cJSON_Delete(now);
    return ok;
}

/* ---- recovery --------------------------------------------------------------- */

static bool exists(const char *abs)
{
    struct stat st;
    return abs && lstat(abs, &st) == 0;
}

static int remove_record(const char *root, const char *id)
{
    char *rec = qpath(root, id, "record.json"), *dir = qpath(root, id, NULL);
    int rc = rec && dir ? io_unlink_durable(rec) : pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0 && rmdir(dir) != 0 && errno != ENOENT)
        rc = pk_err_errno("cannot remove", dir);
    pk_free(rec);
    pk_free(dir);
    return rc;
}

/* Finish or roll back one interrupted move or restore. */
static int recover_one(const char *root, cJSON *rec)
{
    const char *state = json_get_str(rec, "state"), *id = json_get_str(rec, "id");
    const char *orig = json_get_str(rec, "original");
    if (!state || !id || !orig || strcmp(state, "quarantined") == 0)
        return 0;
    char *content = qpath(root, id, "content"), *at = io_join(root, orig);
    bool in_q = exists(content);
    int rc = 0;
    if (in_q) /* the content is in quarantine: the record must say so */
        rc = set_state(root, rec, "quarantined");
    else if (exists(at)) /* back at its place: the move never happened, or the restore did */
        rc = remove_record(root, id);
    pk_free(content);
    pk_free(at);
    return rc;
}

int quar_list(const char *root, cJSON **out)
{
    *out = cJSON_CreateArray();
    char *dir = io_join(root, QDIR);
    char **ids = NULL;
    size_t n = 0;
    int rc = *out && dir ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0 && io_is_dir(dir))
        rc = sorted_names(dir, &ids, &n);
    for (size_t i = 0; i < n; i++) {
        char *path = qpath(root, ids[i], "record.json");
        cJSON *rec = NULL;
        if (ids[i][0] != '.' && rc == 0 && path && json_load_file(path, path, &rec) == 0 &&
            cJSON_IsObject(rec)) {
            rc = recover_one(root, rec);
            char *content = qpath(root, ids[i], "content");
            if (rc == 0 && exists(content) && !cJSON_AddItemToArray(*out, rec))
                rc = pk_err(PACKER_ENOMEM, "out of memory");
            else if (rc == 0 && exists(content))
                rec = NULL;
            pk_free(content);
        }
        cJSON_Delete(rec);
        pk_free(path);
        pk_free(ids[i]);
    }
    pk_free(ids);
    pk_free(dir);
    if (rc) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- moving ----------------------------------------------------------------- */

static char *new_id(void)
{
    char rnd[9], stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    hash_random_hex(rnd, 4);
    return pk_asprintf("q-%s-%s", stamp, rnd);
}

static char *parent_dir(const char *abs)
{
    const char *slash = strrchr(abs, '/');
    return slash && slash != abs ? pk_strndup(abs, (size_t)(slash - abs)) : pk_strdup("/");
}

static cJSON *new_record(const char *id, const char *rel, const char *reason, bool dir)
{
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON *rec = cJSON_CreateObject();
    if (!rec || !json_add_str(rec, "id", id) || !json_add_str(rec, "original", rel) ||
        !json_add_str(rec, "reason", reason ? reason : "quarantined by request") ||
        !json_add_str(rec, "time", when) || !json_add_str(rec, "state", "moving") ||
        !json_add_str(rec, "type", dir ? "directory" : "file") ||
        !cJSON_AddArrayToObject(rec, "files")) {
        cJSON_Delete(rec);
        return NULL;
    }
    return rec;
}

int quar_move(const char *root, const char *given, const char *reason, char **id_out)
{
    *id_out = NULL;
    char *rel = NULL;
    int rc = ws_confine(root, given, &rel);
    if (rc)
        return rc;
    char *abs = io_join(root, rel), *id = new_id(), *qdir = NULL, *content = NULL;
    cJSON *rec = NULL;
    struct stat st;
    if (!abs || !id)
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    else if (strcmp(rel, ".") == 0 || ws_is_owned(rel))
        rc = pk_err(PACKER_EREFUSED, "%s: cannot quarantine the workspace root or .packer/", given);
    else if (lstat(abs, &st) != 0)
        rc = pk_err(PACKER_ENOTFOUND, "%s: no such file or directory", rel);
    if (rc == 0 && !(rec = new_record(id, rel, reason, S_ISDIR(st.st_mode))))
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0)
        rc = hash_tree(abs, "", cJSON_GetObjectItem(rec, "files"));
    if (rc == 0 && (!(qdir = qpath(root, id, NULL)) || !(content = qpath(root, id, "content"))))
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0)
        rc = io_mkdirs(qdir);
    if (rc == 0)
        rc = write_record(root, rec); /* (1) the intent, durable before anything moves */
    crash_point("after_record");
    if (rc == 0 && rename(abs, content) != 0) /* (2) the move itself: atomic */
        rc = pk_err_errno("cannot move into quarantine", rel);
    if (rc == 0)
        obs_note_write(abs, true); /* gone by packer's hand: not a change to report */
    if (rc == 0) {
        char *parent = parent_dir(abs);
        rc = parent ? io_fsync_dir(parent) : PACKER_ENOMEM;
        if (rc == 0)
            rc = io_fsync_dir(qdir);
        pk_free(parent);
    }
    crash_point("after_move");
    if (rc == 0)
        rc = set_state(root, rec, "quarantined"); /* (3) */
    else if (qdir)
        remove_record(root, id); /* nothing moved: drop the intent */
    if (rc == 0) {
        *id_out = id;
        id = NULL;
    }
    cJSON_Delete(rec);
    pk_free(rel);
    pk_free(abs);
    pk_free(id);
    pk_free(qdir);
    pk_free(content);
    return rc;
}

static int restore(const char *root, const char *id, cJSON **rec_out)
{
    *rec_out = NULL;
    cJSON *all = NULL, *rec = NULL;
    int rc = quar_list(root, &all); /* recovers interrupted moves first */
    const cJSON *r;
    cJSON_ArrayForEach(r, all)
    {
        if (!rec && strcmp(json_get_str(r, "id"), id) == 0)
            rec = cJSON_Duplicate(r, 1);
    }
    cJSON_Delete(all);
    if (rc)
        return rc;
    if (!rec)
        return pk_err(PACKER_ENOTFOUND, "%s: no such quarantine record", id);
    const char *orig = json_get_str(rec, "original");
    char *content = qpath(root, id, "content"), *at = io_join(root, orig);
    char *parent = at ? parent_dir(at) : NULL;
    if (!content || !at || !parent)
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    else if (exists(at))
        rc = pk_err(PACKER_EEXIST,
                    "%s: something now occupies the original path; move it away "
                    "first",
                    orig);
    else if (!hashes_match(content, rec))
        rc = pk_err(PACKER_EREFUSED, "%s: quarantined content no longer matches its record", id);
    if (rc == 0)
        rc = io_mkdirs(parent);
    if (rc == 0)
        rc = set_state(root, rec, "restoring");
    crash_point("after_restore_record");
    if (rc == 0 && rename(content, at) != 0)
        rc = pk_err_errno("cannot restore", orig);
    if (rc == 0)
        obs_note_write(at, true);
    if (rc == 0 && (rc = io_fsync_dir(parent)) == 0)
        rc = remove_record(root, id);
    else if (rc && json_get_str(rec, "state") &&
             strcmp(json_get_str(rec, "state"), "restoring") == 0)
        set_state(root, rec, "quarantined");
    pk_free(content);
    pk_free(at);
    pk_free(parent);
    if (rc)
        cJSON_Delete(rec);
    else
        *rec_out = rec;
    return rc;
}

/* ---- the services ------------------------------------------------------------- */

static void fail(op *o, int rc)
{
    resp_status(o->r, rc == PACKER_EIO || rc == PACKER_ENOMEM ? PACKER_STATUS_FAILED
                                                              : PACKER_STATUS_REFUSED);
    resp_diag(o->r, "error", rc == PACKER_EEXIST ? "path_occupied" : "quarantine_failed", NULL,
              NULL, packer_last_error());
    resp_blocker(o->r, rc == PACKER_EEXIST ? "path_occupied" : "quarantine_failed",
                 packer_last_error());
    resp_summary(o->r, "%s", packer_last_error());
}

/* Exclude the included assets whose root lies at or under rel. */
static int exclude_under(op *o, snap *cur, const char *rel)
{
    size_t n = 0, len = strlen(rel);
    const asset_rec *const *all = snap_all(cur, &n);
    snap_edit *e = NULL;
    for (size_t i = 0; all && i < n; i++) {
        const asset_rec *a = all[i];
        if (!a->included || strncmp(a->root, rel, len) != 0 ||
            (a->root[len] != '\0' && a->root[len] != '/'))
            continue;
        if (!e && !(e = snap_edit_begin(cur)))
            return pk_err(PACKER_ENOMEM, "out of memory");
        asset_rec *r = rec_new(a->id, a->root, a->address, a->kind, false);
        if (!r || snap_edit_put(e, r) != 0) {
            rec_unref(r);
            snap_edit_abort(e);
            return pk_err(PACKER_ENOMEM, "out of memory");
        }
        char msg[600];
        snprintf(msg, sizeof msg, "%s (%s) excluded from the build: its root is quarantined", a->id,
                 a->root);
        resp_affected(o->r, a->id);
        resp_diag(o->r, "info", "excluded_by_quarantine", a->id, a->root, msg);
    }
    if (!e)
        return 0;
    txn t = {0};
    int rc = registry_commit_edit(o, e, &t, snap_generation(cur));
    txn_clear(&t);
    return rc;
}

static cJSON *quarantine_action(const char *path)
{
    char *id = pk_asprintf("quarantine:%s", path);
    cJSON *a = id ? resp_action(id, "quarantine", "relocational",
                                "move into .packer/quarantine/ (restore with packer restore ID)")
                  : NULL;
    pk_free(id);
    if (a)
        cJSON_AddItemToArray(cJSON_GetObjectItem(a, "targets"), cJSON_CreateString(path));
    return a;
}

static void quarantine_paths(op *o, snap *cur, const cJSON *paths)
{
    const char *root = project_root_dir(o->p), *reason = json_get_str(o->params, "reason");
    bool consent = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o->params, "consent"));
    cJSON *recs = NULL;
    int rc = quar_list(root, &recs), n = 0;
    cJSON_Delete(recs);
    const cJSON *p;
    cJSON_ArrayForEach(p, paths)
    {
        char *rel = NULL;
        if (rc == 0 && (rc = ws_confine(root, cJSON_GetStringValue(p), &rel)) == 0) {
            char *abs = io_join(root, rel);
            if (!exists(abs))
                rc = pk_err(PACKER_ENOTFOUND, "%s: no such file or directory", rel);
            pk_free(abs);
        }
        if (rc == 0 && !consent) {
            resp_proposed(o->r, quarantine_action(rel));
        } else if (rc == 0 && (rc = exclude_under(o, cur, rel)) == 0) {
            snap_unref(cur);
            cur = project_snapshot(o->p);
            char *id = NULL;
            if ((rc = quar_move(root, rel, reason, &id)) == 0) {
                cJSON *a = quarantine_action(rel);
                cJSON_AddItemToObject(a, "quarantine_id", cJSON_CreateString(id));
                resp_applied(o->r, a);
                char sum[700];
                snprintf(sum, sizeof sum, "quarantined %s as %s", rel, id);
                op_emit(o, PACKER_EV_ACTION_APPLIED, sum, NULL, NULL);
                n++;
            }
            pk_free(id);
        }
        pk_free(rel);
    }
    snap_unref(cur);
    if (rc) {
        op_emit(o, PACKER_EV_ACTION_FAILED, packer_last_error(), NULL, NULL);
        fail(o, rc);
    } else if (!consent) {
        resp_status(o->r, PACKER_STATUS_PREVIEW);
        resp_blocker(o->r, "consent_required",
                     "quarantine moves content (relocational): confirm with --yes");
        resp_summary(o->r, "would quarantine %d path%s; confirm with --yes",
                     cJSON_GetArraySize(paths), cJSON_GetArraySize(paths) == 1 ? "" : "s");
        op_emit(o, PACKER_EV_PREVIEW_READY, "quarantine preview", NULL, NULL);
    } else {
        resp_summary(o->r, "quarantined %d path%s", n, n == 1 ? "" : "s");
    }
}

void svc_quarantine(op *o)
{
    const cJSON *paths = cJSON_GetObjectItemCaseSensitive(o->params, "paths");
    const cJSON *p;
    bool ok = cJSON_IsArray(paths) && cJSON_GetArraySize(paths) > 0;
    cJSON_ArrayForEach(p, paths) ok = ok && cJSON_IsString(p);
    if (!ok) {
        resp_status(o->r, PACKER_STATUS_REFUSED);
        resp_blocker(o->r, "invalid_params", "\"paths\" must be a non-empty array of strings");
        resp_summary(o->r, "nothing to quarantine");
        return;
    }
    snap *cur = NULL;
    int rc = project_begin_write(o->p, o, &cur);
    if (rc) {
        fail(o, rc);
        return;
    }
    quarantine_paths(o, cur, paths); /* consumes cur */
    project_end_write(o->p);
}

void svc_quarantine_list(op *o)
{
    snap *cur = NULL;
    int rc = project_begin_write(o->p, o, &cur);
    cJSON *recs = NULL;
    if (rc == 0)
        rc = quar_list(project_root_dir(o->p), &recs);
    if (rc) {
        fail(o, rc);
    } else {
        int n = cJSON_GetArraySize(recs);
        cJSON_AddItemToObject(resp_data(o->r), "records", recs);
        resp_summary(o->r, "%d quarantine record%s", n, n == 1 ? "" : "s");
    }
    snap_unref(cur);
    if (cur)
        project_end_write(o->p);
}

void svc_restore(op *o)
{
    const char *id = json_get_str(o->params, "id");
    if (!id || !*id || strchr(id, '/') || id[0] == '.') {
        resp_status(o->r, PACKER_STATUS_REFUSED);
        resp_blocker(o->r, "invalid_params", "\"id\" must be a quarantine record id");
        resp_summary(o->r, "which quarantine record?");
        return;
    }
    snap *cur = NULL;
    int rc = project_begin_write(o->p, o, &cur);
    cJSON *rec = NULL;
    if (rc == 0)
        rc = restore(project_root_dir(o->p), id, &rec);
    if (rc) {
        fail(o, rc);
        op_emit(o, PACKER_EV_ACTION_FAILED, packer_last_error(), NULL, NULL);
    } else {
        const char *orig = json_get_str(rec, "original");
        char desc[700];
        snprintf(desc, sizeof desc, "restored %s from %s", orig, id);
        cJSON *a = resp_action("restore", "restore", "safe", desc);
        if (a)
            cJSON_AddItemToArray(cJSON_GetObjectItem(a, "targets"), cJSON_CreateString(orig));
        resp_applied(o->r, a);
        json_add_item(resp_data(o->r), "record", rec);
        resp_summary(o->r, "%s", desc);
        op_emit(o, PACKER_EV_ACTION_APPLIED, desc, NULL, NULL);
    }
    snap_unref(cur);
    if (cur)
        project_end_write(o->p);
}
