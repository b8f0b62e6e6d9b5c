/*
 * doctor.c - the doctor service: Lua rules run against one coherent
 * snapshot, each in its own sandbox, and their findings become the
 * response's diagnostics (and, with fix, a plan of proposed actions).
 *
 * Rules are Lua files returning {id, class, severity, description,
 * check(ctx), fix?, scope?}. Built-ins are lua/rules/<id>.lua, embedded into
 * libpacker at build time; a workspace adds or overrides them with
 * rules/<name>.lua (same file name: the workspace's wins). class is
 * "structural" (the registered world is broken: build is blocked) or
 * "hygiene" (advisory). scope says when a rule runs: "registered" (every
 * doctor) or "workspace" (doctor --workspace); it defaults to registered
 * for structural rules and workspace for hygiene rules.
 *
 * Invariants:
 *   - The whole run is one lane job holding the workspace lock: the
 *     snapshot, the registry and the files rules look at cannot change
 *     under it, and a fix is applied against exactly what was checked.
 *   - Each rule gets a fresh sandbox (no state leaks between rules), an
 *     instruction budget and a memory cap. A rule that fails to load,
 *     raises, loops, allocates without bound or reaches for a forbidden
 *     global becomes a rule_failed diagnostic naming the rule and the
 *     reason; the other rules still run and the doctor completes.
 *   - Rules never mutate: ctx is read-only, and fix() only describes an
 *     action of a kind packer knows (fix.c), which packer applies.
 *   - A cancellation token (cancel.c) is honoured between rules, before
 *     anything is recorded (doctor-state.json) or applied.
 *   - diagnostics_updated is emitted when the set of diagnostics differs
 *     from the last run of the same mode (digest in .packer/doctor-state.json).
 *
 * Threads: lane only.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

extern const struct {
    const char *name;
    const char *text;
    size_t len;
} packer_builtin_rules[];

#define RULE_MEM_CAP (256u << 20)
#define RULE_BUDGET 200000000L
#define STATE_FILE ".packer/doctor-state.json"

typedef struct {
    char *name;   /* file name without .lua: overriding is by name */
    char *origin; /* chunk name in errors: lua/rules/x.lua, rules/x.lua */
    char *source;
    size_t len;
} rule_src;

typedef struct {
    rule_src *v;
    size_t n;
} rule_list;

typedef struct {
    long budget;
    size_t memory;
} limits;

/* ---- rule sources ------------------------------------------------------- */

static int rules_add(rule_list *l, const char *name, const char *origin, const char *src,
                     size_t len)
{
    rule_src *r = NULL;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0)
            r = &l->v[i];
    if (!r) {
        rule_src *v = pk_realloc(l->v, (l->n + 1) * sizeof *v);
        if (!v)
            return pk_err(PACKER_ENOMEM, "out of memory");
        l->v = v;
        r = &l->v[l->n++];
        memset(r, 0, sizeof *r);
        r->name = pk_strdup(name);
    } else {
        pk_free(r->origin);
        pk_free(r->source);
    }
    r->origin = pk_strdup(origin);
    r->source = pk_strndup(src, len);
    r->len = len;
    return r->name && r->origin && r->source ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
}

static void rules_free(rule_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        pk_free(l->v[i].name);
        pk_free(l->v[i].origin);
        pk_free(l->v[i].source);
    }
    pk_free(l->v);
}

static int load_workspace_rules(rule_list *l, const char *root)
{
    char *dir = io_join(root, "rules");
    DIR *d = dir ? opendir(dir) : NULL;
    char **names = NULL;
    size_t n = 0;
    int rc = dir ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
    struct dirent *e;
    while (rc == 0 && d && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || strcmp(e->d_name + len - 4, ".lua") != 0 || e->d_name[0] == '.')
            continue;
        char **v = pk_realloc(names, (n + 1) * sizeof *v);
        if (!v || !(v[n] = pk_strdup(e->d_name))) {
            names = v ? v : names;
            rc = pk_err(PACKER_ENOMEM, "out of memory");
            break;
        }
        names = v;
        n++;
    }
    if (d)
        closedir(d);
    if (n > 1) /* a stable order of rules and findings */
        qsort(names, n, sizeof *names, str_ptr_cmp);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char *path = io_join(dir, names[i]), *text = NULL;
        char *name = pk_strndup(names[i], strlen(names[i]) - 4);
        char *origin = pk_asprintf("rules/%s", names[i]);
        size_t len = 0;
        rc = path && name && origin ? io_read_file(path, &text, &len)
                                    : pk_err(PACKER_ENOMEM, "out of memory");
        if (rc == 0)
            rc = rules_add(l, name, origin, text, len);
        pk_free(path);
        pk_free(text);
        pk_free(name);
        pk_free(origin);
    }
    for (size_t i = 0; i < n; i++)
        pk_free(names[i]);
    pk_free(names);
    pk_free(dir);
    return rc;
}

/* The built-ins and rules/<name>.lua, or only the one rule given in params
 * (the REPL's "run this file" helper). */
static int collect_rules(doc_run *d, rule_list *l)
{
    const char *src = json_get_str(d->o->params, "rule_source");
    if (src) {
        const char *name = json_get_str(d->o->params, "rule_name");
        d->single = true;
        return rules_add(l, name ? name : "rule", name ? name : "rule", src, strlen(src));
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && packer_builtin_rules[i].name; i++) {
        char origin[128];
        snprintf(origin, sizeof origin, "lua/rules/%s.lua", packer_builtin_rules[i].name);
        rc = rules_add(l, packer_builtin_rules[i].name, origin, packer_builtin_rules[i].text,
                       packer_builtin_rules[i].len);
    }
    return rc ? rc : load_workspace_rules(l, d->root);
}

/* ---- the sandbox a rule runs in ----------------------------------------- */

static const char *const FORBIDDEN[] = {
    "io",     "os",       "debug",      "require",        "package",
    "dofile", "loadfile", "loadstring", "collectgarbage", NULL};

/* __index of the rule's globals: reaching for a library the sandbox does
 * not have is an error that names it, not a puzzling nil. */
static int guard_index(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    for (const char *const *f = FORBIDDEN; k && *f; f++)
        if (strcmp(k, *f) == 0)
            return luaL_error(L, "forbidden global '%s': rules run in a sandbox without it", k);
    return 0;
}

static void install_guard(lua_State *L)
{
    lua_pushglobaltable(L);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, guard_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
}

/* ---- diagnostics --------------------------------------------------------- */

bool doctor_severity_ok(const char *s)
{
    return s && (strcmp(s, "error") == 0 || strcmp(s, "warning") == 0 || strcmp(s, "info") == 0);
}

void doctor_diag(doc_run *d, const char *severity, const char *code, const char *cls,
                 const char *rule, const char *asset_id, const char *path, const char *msg)
{
    cJSON *j = cJSON_CreateObject();
    if (!j || !json_add_str(j, "severity", severity) || !json_add_str(j, "code", code) ||
        !json_add_str(j, "class", cls) || !json_add_str(j, "rule", rule) ||
        !json_add_str(j, "message", msg) || (asset_id && !json_add_str(j, "asset_id", asset_id)) ||
        (path && !json_add_str(j, "path", path)) || !cJSON_AddItemToArray(d->diags, j)) {
        cJSON_Delete(j);
        resp_oom(d->o->r);
        return;
    }
    d->ndiags++;
}

static void rule_failed(doc_run *d, const char *rule, const char *cls, const char *origin,
                        const char *why)
{
    char msg[1200];
    snprintf(msg, sizeof msg, "rule %s (%s) was stopped: %s", rule, origin, why);
    bool structural = cls && strcmp(cls, "structural") == 0;
    doctor_diag(d, structural ? "error" : "warning", "rule_failed",
                structural ? "structural" : "hygiene", rule, NULL, origin, msg);
}

/* ---- running one rule ---------------------------------------------------- */

typedef struct {
    char id[128], cls[16], severity[16], scope[16];
    bool has_fix;
} rule_meta;

/* The rule table is at the top of the stack: check its shape. */
static bool read_meta(lua_State *L, const rule_src *r, rule_meta *m, char *err, size_t errlen)
{
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "%s: must return a table {id = ..., class = ..., check = ...}",
                 r->origin);
        return false;
    }
    lua_getfield(L, -1, "id");
    lua_getfield(L, -2, "class");
    lua_getfield(L, -3, "severity");
    lua_getfield(L, -4, "scope");
    lua_getfield(L, -5, "check");
    lua_getfield(L, -6, "fix");
    const char *id = lua_tostring(L, -6), *cls = lua_tostring(L, -5);
    const char *sev = lua_tostring(L, -4), *scope = lua_tostring(L, -3);
    bool ok = false;
    if (!id || !*id || strlen(id) >= sizeof m->id)
        snprintf(err, errlen, "%s: \"id\" must be a short non-empty string", r->origin);
    else if (!cls || (strcmp(cls, "structural") != 0 && strcmp(cls, "hygiene") != 0))
        snprintf(err, errlen, "%s: \"class\" must be \"structural\" or \"hygiene\"", r->origin);
    else if (sev && !doctor_severity_ok(sev))
        snprintf(err, errlen, "%s: \"severity\" must be error, warning or info", r->origin);
    else if (scope && strcmp(scope, "registered") != 0 && strcmp(scope, "workspace") != 0)
        snprintf(err, errlen, "%s: \"scope\" must be \"registered\" or \"workspace\"", r->origin);
    else if (!lua_isfunction(L, -2))
        snprintf(err, errlen, "%s: \"check\" must be a function", r->origin);
    else if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
        snprintf(err, errlen, "%s: \"fix\" must be a function when present", r->origin);
    else
        ok = true;
    if (ok) {
        bool structural = strcmp(cls, "structural") == 0;
        snprintf(m->id, sizeof m->id, "%s", id);
        snprintf(m->cls, sizeof m->cls, "%s", cls);
        snprintf(m->severity, sizeof m->severity, "%s",
                 sev          ? sev
                 : structural ? "error"
                              : "warning");
        snprintf(m->scope, sizeof m->scope, "%s",
                 scope        ? scope
                 : structural ? "registered"
                              : "workspace");
        m->has_fix = lua_isfunction(L, -1);
    }
    lua_pop(L, 6);
    return ok;
}

/* Ask the rule's fix() for an action for each of its diagnostics, which
 * start at `first` (NULL: it reported none). */
static void propose_fixes(doc_run *d, sandbox *sb, const rule_src *r, cJSON *first,
                          const limits *lim, char *err, size_t errlen)
{
    lua_State *L = sandbox_state(sb);
    for (cJSON *diag = first; diag; diag = diag->next) {
        lua_getfield(L, 1, "fix");
        doctor_push_ctx(L, d);
        sandbox_push_json(L, diag);
        if (sandbox_call(sb, 2, 1, lim->budget, err, errlen) != 0) {
            rule_failed(d, d->rule_id, d->rule_class, r->origin, err);
            return;
        }
        cJSON *act = NULL;
        if (!lua_isnil(L, -1) && fix_from_lua(d, L, -1, &act, err, errlen) != 0) {
            lua_pop(L, 1);
            rule_failed(d, d->rule_id, d->rule_class, r->origin, err);
            return;
        }
        lua_pop(L, 1);
        if (!act)
            continue;
        fix_propose(d, diag, act);
    }
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Run one rule; its entry in data.rules goes into `report`. */
static void run_rule(doc_run *d, const rule_src *r, const limits *lim, cJSON *report)
{
    char err[1024], chunk[300];
    rule_meta m;
    memset(&m, 0, sizeof m);
    sandbox *sb = NULL;
    double t0 = now_ms();
    const char *status = "ok";
    size_t before = d->ndiags;
    cJSON *last = d->diags->child ? d->diags->child->prev : NULL; /* O(1) */
    snprintf(chunk, sizeof chunk, "@%s", r->origin);
    int rc = sandbox_new(lim->memory, &sb);
    if (rc) {
        snprintf(err, sizeof err, "%s", packer_last_error());
    } else {
        install_guard(sandbox_state(sb));
        rc = sandbox_load(sb, r->source, r->len, chunk, err, sizeof err);
    }
    if (rc == 0)
        rc = sandbox_call(sb, 0, 1, lim->budget, err, sizeof err);
    if (rc == 0 && !read_meta(sandbox_state(sb), r, &m, err, sizeof err))
        rc = PACKER_EPARSE;
    if (rc) {
        rule_failed(d, m.id[0] ? m.id : r->name, NULL, r->origin, err);
        status = "failed";
    } else if (strcmp(m.scope, "workspace") == 0 && !d->workspace && !d->single) {
        status = "skipped";
    } else {
        lua_State *L = sandbox_state(sb);
        d->rule_id = m.id;
        d->rule_class = m.cls;
        d->rule_severity = m.severity;
        lua_getfield(L, 1, "check");
        doctor_push_ctx(L, d);
        if (sandbox_call(sb, 1, 0, lim->budget, err, sizeof err) != 0) {
            rule_failed(d, m.id, m.cls, r->origin, err);
            status = "failed";
        } else if (d->fix && m.has_fix) {
            propose_fixes(d, sb, r, last ? last->next : d->diags->child, lim, err, sizeof err);
        }
        d->rule_id = d->rule_class = d->rule_severity = NULL;
    }
    sandbox_free(sb);
    cJSON *e = cJSON_CreateObject();
    if (e && json_add_str(e, "id", m.id[0] ? m.id : r->name) &&
        json_add_str(e, "origin", r->origin) && json_add_str(e, "status", status) &&
        cJSON_AddNumberToObject(e, "diagnostics", (double)(d->ndiags - before)) &&
        cJSON_AddNumberToObject(e, "ms", (double)(long)((now_ms() - t0) * 1000) / 1000) &&
        (!m.id[0] || (json_add_str(e, "class", m.cls) && json_add_str(e, "scope", m.scope))) &&
        cJSON_AddItemToArray(report, e))
        return;
    cJSON_Delete(e);
    resp_oom(d->o->r);
}

/* ---- the response --------------------------------------------------------- */

typedef struct {
    int error, warning, info, structural;
} counts;

static counts count_diags(const doc_run *d)
{
    counts c = {0};
    const cJSON *j;
    cJSON_ArrayForEach(j, d->diags)
    {
        const char *sev = json_get_str(j, "severity");
        bool err = strcmp(sev, "error") == 0;
        c.error += err;
        c.warning += strcmp(sev, "warning") == 0;
        c.info += strcmp(sev, "info") == 0;
        c.structural += err && strcmp(json_get_str(j, "class"), "structural") == 0;
    }
    return c;
}

/* Digest of the diagnostics as a set of findings: the fields that say what
 * is wrong and where, not the fix ids a --fix run adds. */
static void diags_digest(const doc_run *d, char out[HASH_HEX_LEN + 1])
{
    static const char *const KEYS[] = {"code",     "severity", "class",  "rule",
                                       "asset_id", "path",     "message"};
    hash_stream *h = hash_stream_new();
    unsigned char bin[16] = {0};
    for (const cJSON *j = h ? d->diags->child : NULL; j; j = j->next)
        for (size_t k = 0; k < sizeof KEYS / sizeof *KEYS; k++) {
            const char *v = json_get_str(j, KEYS[k]);
            hash_stream_update(h, v ? v : "", v ? strlen(v) + 1 : 1);
        }
    if (h)
        hash_stream_end(h, bin);
    hash_to_hex(bin, out);
}

/* Emit diagnostics_updated when this mode's set differs from the last run. */
static void note_changes(doc_run *d, const counts *c)
{
    const char *mode = d->workspace ? "workspace" : "registered";
    char digest[HASH_HEX_LEN + 1], *path = io_join(d->root, STATE_FILE);
    if (!path)
        return;
    diags_digest(d, digest);
    cJSON *state = NULL;
    if (json_load_file(path, STATE_FILE, &state) != 0 || !cJSON_IsObject(state)) {
        cJSON_Delete(state);
        state = cJSON_CreateObject();
    }
    const char *prev = json_get_str(state, mode);
    bool changed = prev ? strcmp(prev, digest) != 0 : d->ndiags > 0;
    if (!prev || changed) {
        cJSON_DeleteItemFromObjectCaseSensitive(state, mode);
        char *out = json_add_str(state, mode, digest) ? json_canonical(state, true) : NULL;
        if (out)
            io_write_atomic(path, out, strlen(out)); /* only a change detector: best effort */
        pk_free(out);
    }
    if (changed) {
        cJSON *extra = cJSON_CreateObject(), *affected = cJSON_CreateArray();
        const cJSON *j;
        int n = 0;
        cJSON_ArrayForEach(j, d->diags)
        {
            const char *id = json_get_str(j, "asset_id");
            if (id && affected && n++ < 1000) /* an event, not a report: bounded */
                cJSON_AddItemToArray(affected, cJSON_CreateString(id));
        }
        json_add_str(extra, "mode", mode);
        json_add_str(extra, "digest", digest);
        cJSON_AddNumberToObject(extra, "errors", c->error);
        cJSON_AddNumberToObject(extra, "warnings", c->warning);
        cJSON_AddNumberToObject(extra, "infos", c->info);
        char sum[160];
        snprintf(sum, sizeof sum, "diagnostics changed: %d errors, %d warnings, %d notes", c->error,
                 c->warning, c->info);
        op_emit(d->o, PACKER_EV_DIAGNOSTICS_UPDATED, sum, affected, extra);
    }
    cJSON_Delete(state);
    pk_free(path);
}

static void move_diags(doc_run *d)
{
    while (d->diags->child) {
        cJSON *j = cJSON_DetachItemViaPointer(d->diags, d->diags->child);
        const char *id = json_get_str(j, "asset_id");
        if (id && strcmp(json_get_str(j, "severity"), "error") == 0)
            resp_affected(d->o->r, id);
        resp_diag_json(d->o->r, j);
    }
}

static void propose_all(doc_run *d)
{
    const cJSON *a;
    cJSON_ArrayForEach(a, d->actions) resp_proposed(d->o->r, cJSON_Duplicate(a, 1));
}

/* fix: preview the plan, or apply it when it is still the plan the caller
 * saw (plan_id), refusing a stale one with the fresh preview. */
static void plan(doc_run *d, char plan_id[HASH_HEX_LEN + 1])
{
    const cJSON *p = d->o->params;
    bool apply = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "apply"));
    const char *want = json_get_str(p, "plan_id");
    fix_plan_id(d, plan_id);
    json_add_str(resp_data(d->o->r), "plan_id", plan_id);
    int n = cJSON_GetArraySize(d->actions);
    if (apply && want && strcmp(want, plan_id) != 0) {
        resp_status(d->o->r, PACKER_STATUS_REFUSED);
        resp_blocker(d->o->r, "stale_plan",
                     "the workspace changed since that plan was previewed; review the fresh "
                     "plan and apply it by its new plan_id");
        propose_all(d);
        op_emit(d->o, PACKER_EV_PREVIEW_READY, "fresh fix plan after a stale one", NULL, NULL);
        return;
    }
    if (!apply) {
        resp_status(d->o->r, PACKER_STATUS_PREVIEW);
        propose_all(d);
        char sum[160];
        snprintf(sum, sizeof sum, "fix plan %.12s: %d proposed action%s", plan_id, n,
                 n == 1 ? "" : "s");
        cJSON *extra = cJSON_CreateObject();
        json_add_str(extra, "plan_id", plan_id);
        op_emit(d->o, PACKER_EV_PREVIEW_READY, sum, NULL, extra);
        return;
    }
    resp_set_op_class(d->o->r, PACKER_OP_WORKSPACE_MUTATION);
    fix_apply(d, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "consent")));
}

static bool parse_limits(op *o, limits *lim)
{
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o->params, "rule_budget");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o->params, "rule_memory");
    lim->budget = RULE_BUDGET;
    lim->memory = RULE_MEM_CAP;
    if ((b && (!cJSON_IsNumber(b) || b->valuedouble < 1000 || b->valuedouble > 1e10)) ||
        (m && (!cJSON_IsNumber(m) || m->valuedouble < (1 << 20) || m->valuedouble > 4e9))) {
        resp_status(o->r, PACKER_STATUS_REFUSED);
        resp_blocker(o->r, "invalid_params",
                     "\"rule_budget\" must be 1000..1e10 instructions and \"rule_memory\" "
                     "1 MiB..4 GB");
        resp_summary(o->r, "invalid doctor parameters");
        return false;
    }
    if (b)
        lim->budget = (long)b->valuedouble;
    if (m)
        lim->memory = (size_t)m->valuedouble;
    return true;
}

static void summarize(doc_run *d, const counts *c, size_t nrules)
{
    packer_status st = resp_get_status(d->o->r);
    if (st == PACKER_STATUS_REFUSED)
        resp_summary(d->o->r, "fix plan is stale: nothing applied; a fresh plan is proposed");
    else if (st == PACKER_STATUS_PREVIEW)
        resp_summary(d->o->r, "%d errors, %d warnings, %d notes; %d proposed fixes (preview)",
                     c->error, c->warning, c->info, cJSON_GetArraySize(d->actions));
    else
        resp_summary(d->o->r, "%zu rules: %d errors (%d structural), %d warnings, %d notes%s",
                     nrules, c->error, c->structural, c->warning, c->info,
                     c->structural ? "; build is blocked" : "");
}

static void run_doctor(doc_run *d, const limits *lim)
{
    rule_list rules = {0};
    int rc = recipes_load(d->root, &d->rs);
    char *cfg = rc == 0 ? io_join(d->root, "packer.json") : NULL;
    if (rc == 0)
        rc = cfg ? json_load_file(cfg, "packer.json", &d->config) : PACKER_ENOMEM;
    pk_free(cfg);
    if (rc == 0)
        rc = collect_rules(d, &rules);
    d->all = rc == 0 ? snap_all(d->cur, &d->nall) : NULL;
    d->memo = d->all ? pk_calloc(d->nall + 1, sizeof *d->memo) : NULL;
    d->diags = cJSON_CreateArray();
    d->actions = cJSON_CreateArray();
    cJSON *report = cJSON_CreateArray();
    if (rc == 0 && (!d->memo || !d->diags || !d->actions || !report))
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    if (rc) {
        resp_status(d->o->r, PACKER_STATUS_FAILED);
        resp_diag(d->o->r, "error", "io_error", NULL, NULL, packer_last_error());
        resp_summary(d->o->r, "doctor failed: %s", packer_last_error());
        cJSON_Delete(report);
        rules_free(&rules);
        return;
    }
    for (size_t i = 0; i < rules.n; i++) {
        if (op_cancelled(d->o)) { /* between rules: nothing recorded or applied yet */
            op_cancel_response(d->o, true);
            cJSON_Delete(report);
            rules_free(&rules);
            return;
        }
        op_progress(d->o, i, rules.n, "running doctor rules");
        run_rule(d, &rules.v[i], lim, report);
    }
    op_progress(d->o, rules.n, rules.n, "running doctor rules");
    counts c = count_diags(d);
    note_changes(d, &c);
    cJSON *data = resp_data(d->o->r);
    json_add_str(data, "mode", d->workspace ? "workspace" : "registered");
    cJSON_AddItemToObject(data, "rules", report);
    cJSON *cj = cJSON_AddObjectToObject(data, "counts");
    cJSON_AddNumberToObject(cj, "errors", c.error);
    cJSON_AddNumberToObject(cj, "warnings", c.warning);
    cJSON_AddNumberToObject(cj, "infos", c.info);
    cJSON_AddNumberToObject(cj, "structural_errors", c.structural);
    if (d->fix) {
        char plan_id[HASH_HEX_LEN + 1];
        plan(d, plan_id);
    }
    move_diags(d);
    summarize(d, &c, rules.n);
    rules_free(&rules);
}

void svc_doctor(op *o)
{
    limits lim;
    if (!parse_limits(o, &lim))
        return;
    doc_run d = {.o = o, .root = project_root_dir(o->p), .rootfd = -1};
    d.workspace = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o->params, "workspace"));
    d.fix = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o->params, "fix")) ||
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o->params, "apply"));
    int rc = project_begin_write(o->p, o, &d.cur);
    if (rc) {
        resp_status(o->r, PACKER_STATUS_FAILED);
        resp_diag(o->r, "error", "io_error", NULL, NULL, packer_last_error());
        resp_summary(o->r, "%s", packer_last_error());
        return;
    }
    if (d.workspace)
        doctor_prefetch(&d); /* under the lock: it sees the same workspace the rules do */
    run_doctor(&d, &lim);
    doctor_prefetch_end(&d);
    for (size_t i = 0; d.memo && i < d.nall; i++) {
        doc_asset *m = &d.memo[i];
        for (size_t k = 0; m->inputs && k < m->m->ninputs; k++) {
            pk_free(m->inputs[k].path);
            pk_free(m->inputs[k].message);
        }
        pk_free(m->inputs);
        pk_free(m->text);
        manifest_free(m->m);
        pk_free(m->error);
        pk_free(m->moved);
    }
    pk_free(d.memo);
    cJSON_Delete(d.diags);
    cJSON_Delete(d.actions);
    fix_targets_free(&d);
    cJSON_Delete(d.config);
    recipes_free(d.rs);
    scan_free(d.sc);
    cache_close(d.cache);
    if (d.rootfd >= 0)
        close(d.rootfd);
    dup_groups_free(d.dups, d.ndups);
    snap_unref(d.cur);
    project_end_write(o->p);
}
