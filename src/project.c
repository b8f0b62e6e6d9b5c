/*
 * project.c - an open project: the snapshot, the write lane, the runtime
 * state, the service table that packer_call() dispatches through, and the
 * typed wrappers (packer_register_asset, ...) over the same dispatch.
 *
 * Invariants:
 *   - `cur` is the last published snapshot. It changes only on the lane,
 *     only after the commit that produced it is durable (store_commit), and
 *     only under snap_mu, which is held for a pointer swap or a reference
 *     grab and never across I/O or user code; readers are never blocked by
 *     a write in progress.
 *   - Every mutation runs as a lane job holding the cross-process lock
 *     (project_begin_write .. project_end_write). Before mutating, the lane
 *     compares the on-disk stamp with the one it last published; when
 *     another process committed in between, the runtime goes diverged ->
 *     reconciling -> healthy by reloading from disk, then writes. A mutation
 *     that starts when the runtime was already told it diverged (by the
 *     observer or status) is refused instead, and a reconcile is queued.
 *   - healthy and stale follow the stale set (fresh.c) exactly: every state
 *     change happens under state_mu, which orders it against the set (lock
 *     order: state_mu, then the stale set's and the bus's own locks).
 *   - Every runtime state change is an event on the host's bus.
 *
 * Threads: packer_call and the accessors from any thread; open/close from
 * the owner.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct packer_project {
    ws_config cfg;
    packer_bus *bus;
    store *st;
    lane *lane;
    pthread_mutex_t snap_mu; /* guards cur and stamp */
    snap *cur;
    store_stamp stamp;
    atomic_int state;
    atomic_ulong ops;
    atomic_uint writing; /* odd while the lane holds the lock: disk changes are ours */
    char op_prefix[9];
    /* observation (observe.c, fresh.c): state_mu orders every state change
     * against the stale set, so healthy/stale follows the set exactly */
    pthread_mutex_t state_mu;
    fresh *fresh;
    _Atomic(obs *) obs;
    atomic_bool foreign; /* diverged by another process (not a failed commit of ours) */
    char *failure;       /* why the runtime is failed (under state_mu) */
};

typedef struct {
    const char *name;
    packer_op_class cls;
    bool write; /* runs on the lane */
    void (*fn)(op *o);
} service;

static void svc_init_open(op *o);

static const service SERVICES[] = {
    {"init_workspace", PACKER_OP_WORKSPACE_MUTATION, false, svc_init_open},
    {"register_asset", PACKER_OP_REGISTRY_MUTATION, true, svc_register_asset},
    {"include_asset_in_build", PACKER_OP_REGISTRY_MUTATION, true, svc_include},
    {"exclude_asset_from_build", PACKER_OP_REGISTRY_MUTATION, true, svc_exclude},
    {"remove_asset", PACKER_OP_REGISTRY_MUTATION, true, svc_remove_asset},
    {"list_assets", PACKER_OP_READ, false, svc_list_assets},
    {"get_asset_details", PACKER_OP_READ, false, svc_get_asset_details},
    {"status", PACKER_OP_READ, false, svc_status},
    {"doctor", PACKER_OP_READ, true, svc_doctor},
    {"build", PACKER_OP_WORKSPACE_MUTATION, true, svc_build},
    {"quarantine", PACKER_OP_WORKSPACE_MUTATION, true, svc_quarantine},
    {"quarantine_list", PACKER_OP_READ, true, svc_quarantine_list},
    {"restore", PACKER_OP_WORKSPACE_MUTATION, true, svc_restore},
};

/* ---- accessors --------------------------------------------------------- */

const char *packer_project_root(const packer_project *p)
{
    return p->cfg.root;
}

const char *packer_project_id(const packer_project *p)
{
    return p->cfg.project_id;
}

const char *project_root_dir(const packer_project *p)
{
    return p->cfg.root;
}

store *project_store(packer_project *p)
{
    return p->st;
}

lane *project_lane(packer_project *p)
{
    return p->lane;
}

packer_bus *project_bus(packer_project *p)
{
    return p->bus;
}

packer_state packer_project_state(const packer_project *p)
{
    return (packer_state)atomic_load(&((packer_project *)p)->state);
}

snap *project_snapshot(packer_project *p)
{
    pthread_mutex_lock(&p->snap_mu);
    snap *s = snap_ref(p->cur);
    pthread_mutex_unlock(&p->snap_mu);
    return s;
}

static void publish(packer_project *p, snap *next, const store_stamp *stamp)
{
    pthread_mutex_lock(&p->snap_mu);
    snap *old = p->cur;
    p->cur = next;
    p->stamp = *stamp;
    pthread_mutex_unlock(&p->snap_mu);
    snap_unref(old);
}

/* ---- events ----------------------------------------------------------- */

void op_emit(op *o, packer_event_kind kind, const char *summary, cJSON *affected, cJSON *extra)
{
    packer_project *p = o->p;
    if (!p->bus) {
        cJSON_Delete(affected);
        cJSON_Delete(extra);
        return;
    }
    packer_event *ev = event_new(kind, p->cfg.project_id, o->id, ++o->seq, summary);
    event_set(ev, "affected_assets", affected);
    while (extra && extra->child) {
        cJSON *c = cJSON_DetachItemViaPointer(extra, extra->child);
        char *key = pk_strdup(c->string);
        if (key)
            event_set(ev, key, c);
        else
            cJSON_Delete(c);
        pk_free(key);
    }
    cJSON_Delete(extra);
    bus_publish(p->bus, ev);
}

bool op_observed(const op *o)
{
    return o->p->bus != NULL;
}

void op_progress(op *o, uint64_t done, uint64_t total, const char *summary)
{
    if (!o->p->bus)
        return;
    packer_event *ev =
        event_new(PACKER_EV_PROGRESS_UPDATED, o->p->cfg.project_id, o->id, ++o->seq, summary);
    event_set_progress(ev, done, total);
    bus_publish(o->p->bus, ev);
}

fresh *project_fresh(packer_project *p)
{
    return p->fresh;
}

obs *project_obs(packer_project *p)
{
    return atomic_load(&p->obs);
}

void project_set_obs(packer_project *p, obs *ob)
{
    atomic_store(&p->obs, ob);
}

/* Under state_mu: set s (healthy becomes stale while assets are stale) and
 * announce the change with `affected` (taken). */
static void set_state_locked(packer_project *p, op *o, packer_state s, cJSON *affected)
{
    if (s == PACKER_STATE_HEALTHY && fresh_count(p->fresh))
        s = PACKER_STATE_STALE;
    packer_state prev = (packer_state)atomic_exchange(&p->state, (int)s);
    if (prev == s || !o) {
        cJSON_Delete(affected);
        return;
    }
    cJSON *extra = cJSON_CreateObject();
    if (extra) {
        json_add_str(extra, "previous_state", packer_state_name(prev));
        json_add_str(extra, "runtime_state", packer_state_name(s));
        if (s == PACKER_STATE_FAILED && p->failure)
            json_add_str(extra, "message", p->failure);
    }
    char summary[96];
    snprintf(summary, sizeof summary, "runtime %s -> %s", packer_state_name(prev),
             packer_state_name(s));
    op_emit(o, PACKER_EV_RUNTIME_STATE_CHANGED, summary, affected, extra);
}

void project_set_state_assets(packer_project *p, op *o, packer_state s, cJSON *affected)
{
    pthread_mutex_lock(&p->state_mu);
    set_state_locked(p, o, s, affected);
    pthread_mutex_unlock(&p->state_mu);
}

void project_set_state(packer_project *p, op *o, packer_state s)
{
    project_set_state_assets(p, o, s, NULL);
}

void project_fail(packer_project *p, op *o, const char *why)
{
    pthread_mutex_lock(&p->state_mu);
    pk_free(p->failure);
    p->failure = pk_strdup(why);
    set_state_locked(p, o, PACKER_STATE_FAILED, NULL);
    pthread_mutex_unlock(&p->state_mu);
}

char *project_failure(packer_project *p)
{
    pthread_mutex_lock(&p->state_mu);
    char *out = p->failure ? pk_strdup(p->failure) : NULL;
    pthread_mutex_unlock(&p->state_mu);
    return out;
}

void project_refresh_state(packer_project *p, op *o, cJSON *affected)
{
    pthread_mutex_lock(&p->state_mu);
    packer_state st = (packer_state)atomic_load(&p->state);
    if (st == PACKER_STATE_HEALTHY || st == PACKER_STATE_STALE)
        set_state_locked(p, o, PACKER_STATE_HEALTHY, affected);
    else
        cJSON_Delete(affected);
    pthread_mutex_unlock(&p->state_mu);
}

/* ---- the write path ----------------------------------------------------- */

/* packer.json is packer-owned state too: a reconcile succeeds only when it
 * still reads and still names this project. */
static int check_config(packer_project *p)
{
    ws_config cfg;
    int rc = ws_load(p->cfg.root, &cfg);
    if (rc == 0 && strcmp(cfg.project_id, p->cfg.project_id) != 0)
        rc = pk_err(PACKER_EREFUSED,
                    "packer.json: project_id is now %s, not %s; reopen the workspace",
                    cfg.project_id, p->cfg.project_id);
    ws_config_clear(&cfg);
    return rc;
}

static int reconcile(packer_project *p, op *o)
{
    project_set_state(p, o, PACKER_STATE_RECONCILING);
    snap *fresh = NULL;
    store_stamp stamp;
    int rc = check_config(p);
    if (rc == 0) /* cur changes only here, on the lane */
        rc = store_reload(p->st, p->cur, &fresh);
    if (rc == 0)
        rc = store_stamp_read(p->st, &stamp);
    if (rc) {
        snap_unref(fresh);
        project_fail(p, o, packer_last_error());
        return rc;
    }
    atomic_store(&p->foreign, false);
    pthread_mutex_lock(&p->state_mu);
    pk_free(p->failure);
    p->failure = NULL;
    pthread_mutex_unlock(&p->state_mu);
    snap *old = project_snapshot(p);
    cJSON *changed = snap_diff_ids(old, fresh);
    snap_unref(old);
    publish(p, fresh, &stamp);
    fresh_prune(p->fresh, fresh, NULL);
    project_set_state_assets(p, o, PACKER_STATE_HEALTHY, changed);
    return 0;
}

int project_begin_write(packer_project *p, op *o, snap **cur)
{
    *cur = NULL;
    int rc = store_lock(p->st);
    if (rc)
        return rc;
    atomic_fetch_add(&p->writing, 1);
    store_stamp disk, mine;
    rc = store_recover(p->st);
    if (rc == 0)
        rc = store_stamp_read(p->st, &disk);
    if (rc) {
        project_fail(p, o, packer_last_error());
        project_end_write(p);
        return rc;
    }
    pthread_mutex_lock(&p->snap_mu);
    mine = p->stamp;
    pthread_mutex_unlock(&p->snap_mu);
    packer_state st = packer_project_state(p);
    if (!store_stamp_eq(&disk, &mine) || st == PACKER_STATE_DIVERGED || st == PACKER_STATE_FAILED) {
        if (st != PACKER_STATE_DIVERGED && st != PACKER_STATE_FAILED)
            project_set_state(p, o, PACKER_STATE_DIVERGED);
        if ((rc = reconcile(p, o)) != 0) {
            project_end_write(p);
            return rc;
        }
    }
    *cur = project_snapshot(p);
    return 0;
}

int project_commit(packer_project *p, op *o, const txn *t, snap *next)
{
    project_set_state(p, o, PACKER_STATE_COMMITTING);
    store_stamp stamp;
    bool durable;
    int rc = store_commit(p->st, t, &durable);
    if (rc == 0)
        rc = store_stamp_read(p->st, &stamp);
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", packer_last_error());
        snap_unref(next);
        store_forget(p->st); /* what it wrote is not what we publish */
        /* past the commit point the disk holds (or will, once the journal
         * is rolled forward) the new state: memory no longer matches it
         * until the next write reconciles. Before it, nothing changed. */
        project_set_state(p, o, durable ? PACKER_STATE_DIVERGED : PACKER_STATE_HEALTHY);
        return pk_err(rc, "%s", msg);
    }
    publish(p, next, &stamp);
    project_set_state(p, o, PACKER_STATE_HEALTHY);
    return 0;
}

void project_end_write(packer_project *p)
{
    atomic_fetch_add(&p->writing, 1);
    store_unlock(p->st);
}

/* While our lane holds the lock (or took it during the comparison), the
 * disk differs from our snapshot only by our own commit in progress: no
 * other process can have committed, and the next write reconciles anyway. */
bool project_check_disk(packer_project *p, op *o)
{
    store_stamp disk, mine;
    unsigned writing = atomic_load(&p->writing);
    if (writing % 2 || store_stamp_read(p->st, &disk) != 0)
        return false;
    pthread_mutex_lock(&p->snap_mu);
    mine = p->stamp;
    pthread_mutex_unlock(&p->snap_mu);
    if (atomic_load(&p->writing) != writing || store_stamp_eq(&disk, &mine))
        return false;
    packer_state st = packer_project_state(p);
    if (st == PACKER_STATE_HEALTHY || st == PACKER_STATE_STALE)
        project_set_diverged(p, o);
    return true;
}

void project_set_diverged(packer_project *p, op *o)
{
    atomic_store(&p->foreign, true);
    project_set_state(p, o, PACKER_STATE_DIVERGED);
}

const char *project_name(const packer_project *p)
{
    return p->cfg.name;
}

/* ---- open / close ------------------------------------------------------- */

int packer_project_open(const char *dir, packer_bus *bus, packer_project **out)
{
    *out = NULL;
    char *root = NULL;
    int rc = ws_find(dir, &root);
    if (rc)
        return rc;
    packer_project *p = pk_calloc(1, sizeof *p);
    if (!p) {
        free(root);
        return pk_err(PACKER_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&p->snap_mu, NULL);
    pthread_mutex_init(&p->state_mu, NULL);
    p->bus = bus;
    hash_random_hex(p->op_prefix, 4);
    rc = ws_load(root, &p->cfg);
    free(root);
    if (rc == 0)
        rc = store_open(p->cfg.root, &p->st);
    if (rc == 0 && (rc = store_lock(p->st)) == 0) {
        rc = store_recover(p->st);
        if (rc == 0)
            rc = store_load(p->st, &p->cur);
        if (rc == 0)
            rc = store_stamp_read(p->st, &p->stamp);
        store_unlock(p->st);
    }
    if (rc == 0)
        rc = lane_new(&p->lane);
    if (rc == 0 && !(p->fresh = fresh_new()))
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", packer_last_error());
        packer_project_close(p);
        return pk_err(rc, "%s", msg);
    }
    *out = p;
    return 0;
}

void packer_project_close(packer_project *p)
{
    if (!p)
        return;
    obs *ob = atomic_load(&p->obs);
    packer_project_observe(p, 0); /* no more lane posts; queued jobs still run */
    lane_free(p->lane);
    project_set_obs(p, NULL);
    obs_free(ob);
    fresh_free(p->fresh);
    pk_free(p->failure);
    pthread_mutex_destroy(&p->state_mu);
    store_close(p->st);
    snap_unref(p->cur);
    ws_config_clear(&p->cfg);
    pthread_mutex_destroy(&p->snap_mu);
    pk_free(p);
}

/* ---- dispatch ----------------------------------------------------------- */

static void op_init(op *o, packer_project *p, const char *prefix, unsigned long n)
{
    memset(o, 0, sizeof *o);
    o->p = p;
    snprintf(o->id, sizeof o->id, "op-%s-%lu", prefix, n);
}

/* Run svc on this thread. An allocation that failed meanwhile may have
 * left the response incomplete or misleading (a dropped list entry, a
 * refusal that was really out of memory): the caller then gets
 * PACKER_ENOMEM, as when the response itself cannot be built. */
static void run_service(op *o, const service *svc)
{
    unsigned long failures = pk_alloc_failures();
    svc->fn(o);
    if (pk_alloc_failures() != failures)
        resp_oom(o->r);
}

/* A mutation that starts while the runtime is diverged by another process
 * (announced by the observer or by status) is refused, and a
 * reconcile is queued behind it: the caller learns why at once and may
 * retry once the runtime is healthy again. Reads on the lane (doctor
 * without apply, quarantine_list) reconcile in project_begin_write. */
static bool refuse_diverged(op *o, const service *svc)
{
    bool mutation =
        svc->cls != PACKER_OP_READ || cJSON_IsTrue(cJSON_GetObjectItem(o->params, "apply"));
    if (!mutation || packer_project_state(o->p) != PACKER_STATE_DIVERGED ||
        !atomic_load(&o->p->foreign))
        return false;
    resp_status(o->r, PACKER_STATUS_REFUSED);
    resp_blocker(o->r, "diverged",
                 "another process changed packer-owned state (the registry or packer.json) "
                 "since this runtime's snapshot; the runtime is reconciling: retry when it is "
                 "healthy");
    resp_summary(o->r, "%s refused: the workspace diverged from the runtime; reconciling",
                 svc->name);
    obs_post_reconcile(o->p);
    return true;
}

static void run_job(void *arg)
{
    op *o = arg;
    if (refuse_diverged(o, o->svc))
        return;
    obs_lane_enter(o->p); /* files this job writes are packer's own, not changes */
    run_service(o, o->svc);
    obs_lane_leave();
}

const char *project_service_name(size_t i)
{
    return i < sizeof SERVICES / sizeof *SERVICES ? SERVICES[i].name : NULL;
}

static const service *find_service(const char *name)
{
    for (size_t i = 0; i < sizeof SERVICES / sizeof *SERVICES; i++)
        if (strcmp(SERVICES[i].name, name) == 0)
            return &SERVICES[i];
    return NULL;
}

/* Run svc with params (consumed) and freeze its response into *out. */
static int dispatch(packer_project *p, const service *svc, cJSON *params, packer_cancel *tok,
                    packer_response **out)
{
    op o;
    op_init(&o, p, p->op_prefix, atomic_fetch_add(&p->ops, 1) + 1);
    o.params = params;
    o.cancel = tok;
    o.r = resp_new(svc->cls, o.id);
    int rc = 0;
    bool dropped = false;
    if (!o.r) {
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    } else if (op_cancelled(&o)) {
        op_cancel_response(&o, false);
    } else if (svc->write) {
        o.svc = svc;
        rc = lane_run_cancel(p->lane, run_job, &o, tok, &dropped);
        if (rc == 0 && dropped)
            op_cancel_response(&o, false);
    } else {
        run_service(&o, svc);
    }
    if (rc == 0 && !(*out = resp_finish(o.r, packer_project_state(p))))
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    resp_free(o.r);
    cJSON_Delete(params);
    return rc;
}

int packer_call(packer_project *p, const char *service_name, const char *params_json,
                packer_response **out)
{
    return packer_call_cancellable(p, service_name, params_json, NULL, out);
}

int packer_call_cancellable(packer_project *p, const char *service_name, const char *params_json,
                            packer_cancel *tok, packer_response **out)
{
    *out = NULL;
    if (!p || !service_name)
        return pk_err(PACKER_EINVAL, "project and service are required");
    const service *svc = find_service(service_name);
    if (!svc)
        return pk_err(PACKER_EUNKNOWN, "%s: no such service", service_name);
    cJSON *params = NULL;
    if (params_json && *params_json) {
        int rc = json_parse_text(params_json, strlen(params_json), "params", &params);
        if (rc)
            return rc == PACKER_EPARSE ? PACKER_EINVAL : rc; /* not a file: bad argument */
        if (!cJSON_IsObject(params)) {
            cJSON_Delete(params);
            return pk_err(PACKER_EINVAL, "params: must be a JSON object");
        }
    } else if (!(params = cJSON_CreateObject())) {
        return pk_err(PACKER_ENOMEM, "out of memory");
    }
    return dispatch(p, svc, params, tok, out);
}

/* The typed wrappers' way in (api.c): params consumed, NULL when building
 * them ran out of memory. */
int project_call(packer_project *p, const char *service_name, cJSON *params, packer_response **out)
{
    *out = NULL;
    if (!p) {
        cJSON_Delete(params);
        return pk_err(PACKER_EINVAL, "project is required");
    }
    if (!params)
        return pk_err(PACKER_ENOMEM, "out of memory");
    return dispatch(p, find_service(service_name), params, NULL, out);
}

static void svc_init_open(op *o)
{
    resp_status(o->r, PACKER_STATUS_REFUSED);
    resp_blocker(o->r, "already_initialized", "this directory is already a packer workspace");
    resp_summary(o->r, "%s is already a workspace", o->p->cfg.root);
}

/* ---- init_workspace (no project yet) ----------------------------------- */

int packer_init_workspace(const char *dir, const char *name, packer_bus *bus, packer_response **out)
{
    *out = NULL;
    char prefix[9];
    hash_random_hex(prefix, 4);
    packer_project tmp = {0};
    tmp.bus = bus;
    op o;
    op_init(&o, &tmp, prefix, 1);
    o.r = resp_new(PACKER_OP_WORKSPACE_MUTATION, o.id);
    if (!o.r)
        return pk_err(PACKER_ENOMEM, "out of memory");
    int rc = ws_create(dir ? dir : ".", name, &tmp.cfg);
    if (rc == PACKER_EEXIST) {
        resp_status(o.r, PACKER_STATUS_REFUSED);
        resp_blocker(o.r, "already_initialized", packer_last_error());
        resp_summary(o.r, "%s", packer_last_error());
    } else if (rc) {
        resp_status(o.r, PACKER_STATUS_FAILED);
        resp_diag(o.r, "error", "io_error", NULL, NULL, packer_last_error());
        resp_summary(o.r, "%s", packer_last_error());
    } else {
        cJSON *act = resp_action("create_workspace", "create_workspace", "safe",
                                 "create packer.json and .packer/");
        cJSON *targets = act ? cJSON_GetObjectItem(act, "targets") : NULL;
        if (targets) {
            cJSON_AddItemToArray(targets, cJSON_CreateString("packer.json"));
            cJSON_AddItemToArray(targets, cJSON_CreateString(".packer/"));
        }
        resp_applied(o.r, act);
        cJSON *data = resp_data(o.r);
        json_add_str(data, "root", tmp.cfg.root);
        json_add_str(data, "project_id", tmp.cfg.project_id);
        json_add_str(data, "name", tmp.cfg.name);
        resp_summary(o.r, "initialized workspace '%s' in %s", tmp.cfg.name, tmp.cfg.root);
        op_emit(&o, PACKER_EV_ACTION_APPLIED, "created packer.json and .packer/", NULL, NULL);
    }
    *out = resp_finish(o.r, rc && rc != PACKER_EEXIST ? PACKER_STATE_FAILED : PACKER_STATE_HEALTHY);
    resp_free(o.r);
    ws_config_clear(&tmp.cfg);
    return *out ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
}
