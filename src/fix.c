/*
 * fix.c - the actions doctor rules may propose, the plan id that makes a
 * preview and its apply refer to the same thing, and applying a plan.
 *
 * A rule's fix() returns only a description: {kind, targets, description}.
 * packer knows each kind, decides its safety class (a rule cannot call a
 * deletion "safe") and performs it:
 *
 *   kind               safety        what packer does
 *   rewrite_manifest   safe          rewrite asset.json canonically
 *   drop_cache_entry   safe          delete a stale .packer/cache/ entry
 *   delete_file        destructive   delete the files (never directories)
 *   quarantine         relocational  move into .packer/quarantine/ (reversible)
 *   repoint_root       safe          point asset's registry entry at the target,
 *                                    the directory its missing root moved to
 *
 * Invariants: every target is confined to the workspace; only
 * drop_cache_entry may touch .packer/, and only under .packer/cache/. A
 * repoint_root is applied only while packer itself proves the move (the
 * old root is gone, the new one is unregistered and holds exactly what the
 * asset's last build read), whichever rule proposed it.
 * Safe actions are applied by an apply; destructive and relocational ones
 * only with consent, otherwise they stay proposed and are named in
 * blockers. The plan id hashes the snapshot generation, the actions and
 * the on-disk state (size, mtime, inode) of every target: a plan applied
 * after any of that changed is refused as stale.
 *
 * Threads: lane only (inside the doctor's job).
 */
#define _GNU_SOURCE
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "internal.h"

typedef struct {
    const char *kind, *safety;
} action_kind;

static const action_kind KINDS[] = {
    {"rewrite_manifest", "safe"},   {"drop_cache_entry", "safe"}, {"delete_file", "destructive"},
    {"quarantine", "relocational"}, {"repoint_root", "safe"},
};

const char *fix_safety(const char *kind)
{
    for (size_t i = 0; kind && i < sizeof KINDS / sizeof *KINDS; i++)
        if (strcmp(KINDS[i].kind, kind) == 0)
            return KINDS[i].safety;
    return NULL;
}

/* The confined form of target t for an action of this kind, or NULL with
 * err set. Caller frees. */
static char *check_target(doc_run *d, const char *kind, const char *t, char *err, size_t errlen)
{
    char *rel = NULL;
    if (ws_confine(d->root, t, &rel) != 0) {
        snprintf(err, errlen, "fix target %s", packer_last_error());
        return NULL;
    }
    bool cache = strncmp(rel, ".packer/cache/", 14) == 0;
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    const char *why = NULL;
    if (strcmp(kind, "drop_cache_entry") == 0 && !cache)
        why = "drop_cache_entry targets must lie under .packer/cache/";
    else if (strcmp(kind, "drop_cache_entry") != 0 && ws_is_owned(rel))
        why = ".packer/ is packer-owned";
    else if (strcmp(kind, "rewrite_manifest") == 0 && strcmp(base, "asset.json") != 0)
        why = "rewrite_manifest targets must be asset.json files";
    else if (strcmp(rel, ".") == 0)
        why = "the workspace root cannot be a target";
    if (why) {
        snprintf(err, errlen, "fix target %s: %s", t, why);
        pk_free(rel);
        return NULL;
    }
    return rel;
}

static cJSON *targets_of(doc_run *d, lua_State *L, int idx, const char *kind, char *err,
                         size_t errlen)
{
    cJSON *arr = cJSON_CreateArray();
    lua_getfield(L, idx, "targets");
    lua_Integer n = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
    if (n < 1 || n > 10000)
        snprintf(err, errlen, "fix(): \"targets\" must be a list of 1..10000 paths");
    for (lua_Integer i = 1; arr && n >= 1 && n <= 10000 && i <= n; i++) {
        lua_rawgeti(L, -1, i);
        const char *t = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        char *rel = t ? check_target(d, kind, t, err, errlen) : NULL;
        if (!t)
            snprintf(err, errlen, "fix(): every target must be a string path");
        lua_pop(L, 1);
        if (!rel || !cJSON_AddItemToArray(arr, cJSON_CreateString(rel))) {
            pk_free(rel);
            cJSON_Delete(arr);
            lua_pop(L, 1);
            return NULL;
        }
        pk_free(rel);
    }
    lua_pop(L, 1);
    if (n < 1 || n > 10000) {
        cJSON_Delete(arr);
        return NULL;
    }
    return arr;
}

int fix_from_lua(doc_run *d, lua_State *L, int idx, cJSON **out, char *err, size_t errlen)
{
    *out = NULL;
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx)) {
        snprintf(err, errlen, "fix() must return nil or {kind = ..., targets = {...}}");
        return PACKER_EPARSE;
    }
    lua_getfield(L, idx, "kind");
    lua_getfield(L, idx, "description");
    const char *kind = lua_tostring(L, -2), *desc = lua_tostring(L, -1);
    const char *safety = fix_safety(kind);
    int rc = 0;
    if (!safety) {
        snprintf(err, errlen,
                 "fix(): unknown action kind \"%s\" (rewrite_manifest, drop_cache_entry, "
                 "delete_file, quarantine, repoint_root)",
                 kind ? kind : "nil");
        rc = PACKER_EPARSE;
    }
    lua_getfield(L, idx, "asset");
    const char *asset = lua_tostring(L, -1);
    bool repoint = rc == 0 && strcmp(kind, "repoint_root") == 0;
    if (repoint && (!asset || doctor_index(d, asset) < 0)) {
        snprintf(err, errlen, "fix(): repoint_root needs \"asset\", a registered asset id");
        rc = PACKER_EPARSE;
    }
    cJSON *targets = rc == 0 ? targets_of(d, L, idx, kind, err, errlen) : NULL;
    if (rc == 0 && !targets)
        rc = PACKER_EPARSE;
    if (rc == 0) {
        char *id = pk_asprintf("%s:%s", kind, cJSON_GetArrayItem(targets, 0)->valuestring);
        cJSON *a = id ? resp_action(id, kind, safety, desc ? desc : kind) : NULL;
        pk_free(id);
        if (a && json_add_str(a, "rule", d->rule_id) &&
            (!repoint || json_add_str(a, "asset_id", asset))) {
            cJSON_ReplaceItemInObjectCaseSensitive(a, "targets", targets);
            targets = NULL;
            *out = a;
        } else {
            cJSON_Delete(a);
            snprintf(err, errlen, "out of memory");
            rc = PACKER_ENOMEM;
        }
    }
    cJSON_Delete(targets);
    lua_pop(L, 3);
    return rc;
}

/* ---- one action per target ------------------------------------------------ */

/* first target -> its action: two rules acting on one file (a stray file
 * that is also undeclared) give one action, the first rule's */
typedef struct {
    strmap_node node; /* key: the action's first target (borrowed) */
    const cJSON *action;
} target_entry;

void fix_propose(doc_run *d, cJSON *diag, cJSON *act)
{
    char *target = cJSON_GetArrayItem(cJSON_GetObjectItem(act, "targets"), 0)->valuestring;
    const target_entry *same = (const target_entry *)strmap_find(&d->targets, target);
    json_add_str(diag, "fix", json_get_str(same ? same->action : act, "id"));
    if (same) {
        cJSON_Delete(act);
        return;
    }
    target_entry *e = arena_alloc(&d->targets_arena, sizeof *e);
    if (!e || !cJSON_AddItemToArray(d->actions, act)) {
        cJSON_Delete(act);
        resp_oom(d->o->r);
        return;
    }
    e->node.key = target; /* lives as long as the action, in d->actions */
    e->action = act;
    if (strmap_add(&d->targets, &e->node) != 0)
        resp_oom(d->o->r);
}

void fix_targets_free(doc_run *d)
{
    pk_free(d->targets.b);
    arena_free(&d->targets_arena);
}

/* ---- the plan id ---------------------------------------------------------- */

static void add_str(XXH3_state_t *st, const char *s)
{
    XXH3_128bits_update(st, s, strlen(s) + 1);
}

void fix_plan_id(doc_run *d, char out[HASH_HEX_LEN + 1])
{
    XXH3_state_t *st = XXH3_createState();
    out[0] = '\0';
    if (!st)
        return;
    XXH3_128bits_reset(st);
    char buf[96];
    snprintf(buf, sizeof buf, "packer-plan-1 %llu", (unsigned long long)snap_generation(d->cur));
    add_str(st, buf);
    const cJSON *a, *t;
    cJSON_ArrayForEach(a, d->actions)
    {
        cJSON *copy = cJSON_Duplicate(a, 1); /* canonical form sorts in place */
        char *text = copy ? json_canonical(copy, false) : NULL;
        add_str(st, text ? text : "");
        pk_free(text);
        cJSON_Delete(copy);
        cJSON_ArrayForEach(t, cJSON_GetObjectItem(a, "targets"))
        {
            char *abs = io_join(d->root, t->valuestring);
            struct stat sb;
            if (abs && lstat(abs, &sb) == 0)
                snprintf(buf, sizeof buf, "%lld %lld.%ld %llu", (long long)sb.st_size,
                         (long long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec,
                         (unsigned long long)sb.st_ino);
            else
                snprintf(buf, sizeof buf, "absent");
            add_str(st, buf);
            pk_free(abs);
        }
    }
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
    XXH3_freeState(st);
    hash_to_hex(c.digest, out);
}

/* ---- applying --------------------------------------------------------------- */

static int rewrite_manifest(const char *root, const char *rel)
{
    char *abs = io_join(root, rel), *text = NULL;
    cJSON *j = NULL;
    int rc = abs ? json_load_file(abs, rel, &j) : PACKER_ENOMEM;
    if (rc == 0 && !(text = json_canonical(j, true)))
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0)
        rc = io_write_atomic(abs, text, strlen(text));
    cJSON_Delete(j);
    pk_free(text);
    pk_free(abs);
    return rc;
}

static int delete_one(const char *root, const char *rel)
{
    char *abs = io_join(root, rel);
    struct stat st;
    int rc = abs ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0 && lstat(abs, &st) == 0 && S_ISDIR(st.st_mode))
        rc = pk_err(PACKER_EREFUSED, "%s: is a directory; delete_file removes files only", rel);
    if (rc == 0)
        rc = io_unlink_durable(abs);
    pk_free(abs);
    return rc;
}

/* Re-point asset id at root `to` once the move is proven again, against
 * the latest snapshot: an earlier action of this apply may have committed. */
static int repoint(doc_run *d, const char *id, const char *to)
{
    snap *cur = project_snapshot(d->o->p);
    const asset_rec *a = snap_by_id(cur, id);
    int rc = 0;
    const char *proven = NULL;
    if (!a)
        rc = pk_err(PACKER_EREFUSED, "%s is not registered", id);
    else if (snap_by_root(cur, to))
        rc = pk_err(PACKER_EREFUSED, "%s is already a registered asset root", to);
    else if (!(proven = doctor_moved_root(d, id, &rc)) && rc == 0)
        proven = "";
    if (rc == 0 && a && strcmp(proven, to) != 0)
        rc = pk_err(PACKER_EREFUSED, "%s does not hold what the last build of %s read", to, id);
    if (rc == 0) {
        txn t = {0};
        asset_rec *r = rec_new(a->id, to, a->address, a->kind, a->included);
        snap_edit *e = snap_edit_begin(cur);
        rc = r && e ? snap_edit_put(e, r) : (rec_unref(r), pk_err(PACKER_ENOMEM, "out of memory"));
        if (rc == 0)
            rc = registry_commit_edit(d->o, e, &t, snap_generation(cur));
        else
            snap_edit_abort(e);
        txn_clear(&t);
        if (rc == 0)
            resp_affected(d->o->r, id);
    }
    snap_unref(cur);
    return rc;
}

/* Perform one action; quarantine ids go into `result`. */
static int apply_one(doc_run *d, const cJSON *a, cJSON *result)
{
    const char *kind = json_get_str(a, "kind");
    const cJSON *t;
    int rc = 0;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(a, "targets"))
    {
        const char *rel = t->valuestring;
        if (strcmp(kind, "rewrite_manifest") == 0) {
            rc = rewrite_manifest(d->root, rel);
        } else if (strcmp(kind, "repoint_root") == 0) {
            rc = repoint(d, json_get_str(a, "asset_id"), rel);
        } else if (strcmp(kind, "quarantine") == 0) {
            char *id = NULL;
            rc = quar_move(d->root, rel, json_get_str(a, "description"), &id);
            if (rc == 0)
                cJSON_AddItemToArray(result, cJSON_CreateString(id));
            pk_free(id);
        } else {
            rc = delete_one(d->root, rel);
        }
        if (rc)
            break;
    }
    return rc;
}

void fix_apply(doc_run *d, bool consent)
{
    int applied = 0, failed = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, d->actions)
    {
        const char *id = json_get_str(a, "id"), *safety = json_get_str(a, "safety");
        if (strcmp(safety, "safe") != 0 && !consent) {
            char msg[700];
            snprintf(msg, sizeof msg, "%s: a %s action; apply it with consent (--yes)", id, safety);
            resp_blocker(d->o->r, "consent_required", msg);
            resp_proposed(d->o->r, cJSON_Duplicate(a, 1));
            continue;
        }
        cJSON *done = cJSON_Duplicate(a, 1), *qids = cJSON_CreateArray();
        char sum[900];
        int rc = apply_one(d, a, qids);
        cJSON *extra = cJSON_CreateObject();
        json_add_str(extra, "action_id", id);
        if (rc == 0) {
            if (cJSON_GetArraySize(qids) > 0)
                cJSON_AddItemToObject(done, "quarantine_ids", cJSON_Duplicate(qids, 1));
            resp_applied(d->o->r, done);
            snprintf(sum, sizeof sum, "applied %s", id);
            op_emit(d->o, PACKER_EV_ACTION_APPLIED, sum, NULL, extra);
            applied++;
        } else {
            snprintf(sum, sizeof sum, "%s failed: %s", id, packer_last_error());
            resp_diag(d->o->r, "error", "action_failed", NULL,
                      cJSON_GetArrayItem(cJSON_GetObjectItem(a, "targets"), 0)->valuestring, sum);
            op_emit(d->o, PACKER_EV_ACTION_FAILED, sum, NULL, extra);
            cJSON_Delete(done);
            failed++;
        }
        cJSON_Delete(qids);
    }
    resp_status(d->o->r, failed ? PACKER_STATUS_FAILED : PACKER_STATUS_OK);
    cJSON *data = resp_data(d->o->r);
    cJSON_AddNumberToObject(data, "applied", applied);
    cJSON_AddNumberToObject(data, "failed", failed);
}
