/*
 * test_observe.c - background observation of an open project (issue 6).
 *
 * Each test opens its own workspace with a bus, turns the observer on and
 * changes the workspace underneath: an edited input gives stale and then
 * one asset_changed naming the asset (and a build makes it fresh again);
 * an editor's write-temp-then-rename is one event; packer's own register
 * is no change; a new asset.json is asset_discovered; another process's
 * commit gives diverged, a refused write, reconciling, healthy; 5,000
 * files touched at once give a bounded number of events naming every
 * asset; lost kernel events are found by a rescan; readers on several
 * threads during background reconciles see whole snapshots only; and
 * observe on/off/on and close while observing are clean.
 *
 * Waits are for events, with generous deadlines (the machine is shared);
 * nothing depends on a timing being met except as an upper bound.
 *
 * Threads: main, reader threads in one test, the bus dispatcher, each
 * project's lane and observer; `packer` CLI processes.
 */
#define _GNU_SOURCE
#include "check.h"
#include "support.h"

#include <dirent.h>

#include "internal.h"

#define DEADLINE 30.0  /* s: an upper bound for anything to be reported */
#define GROUP_ARGS 128 /* most arguments of one CLI run */

/* ---- events as JSON ----------------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    cJSON **v;
    size_t n, cap;
} rec;

static void rec_cb(const packer_event *ev, void *ud)
{
    rec *r = ud;
    char *line = packer_event_json(ev);
    cJSON *j = line ? cJSON_Parse(line) : NULL;
    packer_free(line);
    if (!j)
        return;
    pthread_mutex_lock(&r->mu);
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 256;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
    }
    r->v[r->n++] = j;
    pthread_mutex_unlock(&r->mu);
}

/* Event i (stays valid until rec_clear; the array may move meanwhile). */
static const cJSON *ev_at(rec *r, long i)
{
    pthread_mutex_lock(&r->mu);
    const cJSON *e = i >= 0 && (size_t)i < r->n ? r->v[i] : NULL;
    pthread_mutex_unlock(&r->mu);
    return e;
}

static size_t rec_len(rec *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void rec_clear(rec *r)
{
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++)
        cJSON_Delete(r->v[i]);
    r->n = 0;
    pthread_mutex_unlock(&r->mu);
}

static bool is_kind(const cJSON *e, const char *kind)
{
    const char *k = t_str(e, "kind");
    return k && strcmp(k, kind) == 0;
}

static bool is_state(const cJSON *e, const char *state)
{
    const char *s = t_str(e, "runtime_state");
    return is_kind(e, "runtime_state_changed") && s && strcmp(s, state) == 0;
}

static bool names(const cJSON *e, const char *id)
{
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItem(e, "affected_assets"))
    {
        if (cJSON_IsString(a) && strcmp(a->valuestring, id) == 0)
            return true;
    }
    return false;
}

/* Index of the first event at or after `from` of kind (and, for
 * runtime_state_changed, state when given), or -1. */
static long find(rec *r, size_t from, const char *kind, const char *state)
{
    long at = -1;
    pthread_mutex_lock(&r->mu);
    for (size_t i = from; at < 0 && i < r->n; i++)
        if (state ? is_state(r->v[i], state) : is_kind(r->v[i], kind))
            at = (long)i;
    pthread_mutex_unlock(&r->mu);
    return at;
}

static long wait_for(rec *r, size_t from, const char *kind, const char *state)
{
    long at;
    for (double t0 = t_now(); (at = find(r, from, kind, state)) < 0 && t_now() - t0 < DEADLINE;)
        usleep(5000);
    return at;
}

static size_t count(rec *r, const char *kind)
{
    size_t n = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++)
        n += is_kind(r->v[i], kind);
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* Events the observer published since `from` (its operation ids). */
static size_t observer_events(rec *r, size_t from)
{
    size_t n = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = from; i < r->n; i++) {
        const char *op = t_str(r->v[i], "operation_id");
        n += op && strstr(op, "-obs") != NULL;
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

static bool wait_state(packer_project *p, packer_state s)
{
    for (double t0 = t_now(); packer_project_state(p) != s && t_now() - t0 < DEADLINE;)
        usleep(5000);
    return packer_project_state(p) == s;
}

/* ---- workspaces ----------------------------------------------------------- */

typedef struct {
    char *root;
    packer_bus *bus;
    packer_project *p;
    rec *ev; /* on the heap: the dispatcher thread writes it */
} fixture;

static bool setup(fixture *f, const char *tag, const char *const *roots, size_t n)
{
    memset(f, 0, sizeof *f);
    f->ev = calloc(1, sizeof *f->ev);
    pthread_mutex_init(&f->ev->mu, NULL);
    if (!(f->root = t_workspace(tag)))
        return false;
    for (size_t i = 0; i < n; i++)
        if (t_asset(f->root, roots[i]) != 0)
            return false;
    if (packer_bus_new(&f->bus) != 0 || packer_bus_subscribe(f->bus, rec_cb, f->ev, NULL) != 0 ||
        packer_project_open(f->root, f->bus, &f->p) != 0)
        return false;
    packer_response *r = NULL;
    bool ok = n == 0 || (packer_register_asset(f->p, roots, n, NULL, &r) == 0 &&
                         packer_response_status(r) == PACKER_STATUS_OK);
    packer_response_free(r);
    return ok && packer_project_observe(f->p, 1) == 0;
}

static void teardown(fixture *f)
{
    packer_project_close(f->p);
    packer_bus_free(f->bus);
    rec_clear(f->ev);
    free(f->ev->v);
    pthread_mutex_destroy(&f->ev->mu);
    free(f->ev);
    t_rmrf(f->root);
    free(f->root);
}

/* The id of the asset at root, from the project's registry. */
static char *id_of(packer_project *p, const char *root)
{
    packer_response *r = NULL;
    char *out = NULL;
    if (packer_get_asset_details(p, root, &r) == 0) {
        cJSON *j = t_json(r);
        const char *id =
            t_str(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "asset"), "asset_id");
        out = id ? strdup(id) : NULL;
        cJSON_Delete(j);
    }
    packer_response_free(r);
    return out;
}

static const char *freshness_of(packer_project *p, const char *asset, char *buf, size_t cap)
{
    packer_response *r = NULL;
    buf[0] = '\0';
    if (packer_get_asset_details(p, asset, &r) == 0) {
        cJSON *j = t_json(r);
        const char *f =
            t_str(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "asset"), "freshness");
        snprintf(buf, cap, "%s", f ? f : "");
        cJSON_Delete(j);
    }
    packer_response_free(r);
    return buf;
}

static int run_cli(const char *root, const char *const *args, int nargs)
{
    char *argv[GROUP_ARGS];
    int n = 0;
    argv[n++] = (char *)t_packer_bin();
    argv[n++] = "-C";
    argv[n++] = (char *)root;
    for (int i = 0; i < nargs && n < GROUP_ARGS - 1; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    return t_wait(t_spawn(argv, NULL));
}

/* Replace root/rel by writing a temporary file and renaming it over. */
static int replace(const char *root, const char *rel, const char *text)
{
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp-test", rel);
    char *a = t_path(root, tmp), *b = t_path(root, rel);
    int rc = t_write(root, tmp, text) == 0 && rename(a, b) == 0 ? 0 : -1;
    free(a);
    free(b);
    return rc;
}

/* ---- the tests ------------------------------------------------------------- */

static void test_edit_makes_stale(void)
{
    const char *roots[] = {"assets/a", "assets/b"};
    fixture f;
    bool ready = setup(&f, "obs-stale", roots, 2); /* (REQUIRE evaluates twice) */
    REQUIRE(ready);
    char *a = id_of(f.p, "assets/a"), fr[16];
    REQUIRE(a);
    size_t from = rec_len(f.ev);
    CHECK(t_write(f.root, "assets/a/data.txt", "edited by an artist") == 0);
    long changed = wait_for(f.ev, from, "asset_changed", NULL);
    long stale = find(f.ev, from, NULL, "stale");
    REQUIRE(changed >= 0 && stale >= 0);
    CHECK(stale < changed); /* stale is announced first, then the change */
    CHECK(names(ev_at(f.ev, changed), a) && names(ev_at(f.ev, stale), a));
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(ev_at(f.ev, changed), "affected_assets")) == 1);
    CHECK(packer_project_state(f.p) == PACKER_STATE_STALE);
    CHECK(strcmp(freshness_of(f.p, "assets/a", fr, sizeof fr), "stale") == 0);
    CHECK(strcmp(freshness_of(f.p, "assets/b", fr, sizeof fr), "fresh") == 0);
    packer_response *r = NULL;
    CHECK(packer_call(f.p, "status", NULL, &r) == 0);
    cJSON *j = t_json(r);
    cJSON *list = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "stale_assets");
    CHECK(cJSON_GetArraySize(list) == 1 &&
          strcmp(cJSON_GetArrayItem(list, 0)->valuestring, a) == 0);
    CHECK(t_str(j, "runtime_state") && strcmp(t_str(j, "runtime_state"), "stale") == 0);
    cJSON_Delete(j);
    packer_response_free(r);
    /* a successful build makes it fresh again: stale -> healthy naming it */
    from = rec_len(f.ev);
    CHECK(packer_call(f.p, "build", NULL, &r) == 0);
    CHECK(r && packer_response_status(r) == PACKER_STATUS_OK);
    packer_response_free(r);
    CHECK(packer_project_state(f.p) == PACKER_STATE_HEALTHY);
    CHECK(strcmp(freshness_of(f.p, "assets/a", fr, sizeof fr), "fresh") == 0);
    packer_bus_flush(f.bus);
    long healthy = find(f.ev, from, NULL, "healthy");
    CHECK(healthy >= 0 && names(ev_at(f.ev, healthy), a));
    /* the build's own output is no change to anything */
    usleep(300000);
    CHECK(find(f.ev, from, "asset_changed", NULL) < 0);
    free(a);
    teardown(&f);
}

static void test_editor_rename(void)
{
    const char *roots[] = {"hero"};
    fixture f;
    bool ready = setup(&f, "obs-rename", roots, 1); /* (REQUIRE evaluates twice) */
    REQUIRE(ready);
    size_t from = rec_len(f.ev);
    CHECK(t_write(f.root, "hero/.data.txt.swp", "new text") == 0);
    char *tmp = t_path(f.root, "hero/.data.txt.swp"), *dst = t_path(f.root, "hero/data.txt");
    CHECK(rename(tmp, dst) == 0);
    long at = wait_for(f.ev, from, "asset_changed", NULL);
    REQUIRE(at >= 0);
    usleep(500000); /* anything else would have come by now */
    CHECK(count(f.ev, "asset_changed") == 1);
    CHECK(t_num(ev_at(f.ev, at), "path_count") == 1);
    const cJSON *paths = cJSON_GetObjectItem(ev_at(f.ev, at), "paths");
    CHECK(cJSON_GetArraySize(paths) == 1 &&
          strcmp(cJSON_GetArrayItem(paths, 0)->valuestring, "hero/data.txt") == 0);
    free(tmp);
    free(dst);
    teardown(&f);
}

static void test_own_writes_and_discovery(void)
{
    fixture f;
    bool ready = setup(&f, "obs-own", NULL, 0); /* (REQUIRE evaluates twice) */
    REQUIRE(ready);
    CHECK(t_write(f.root, "props/chair/chair.obj", "v 0 0 0") == 0);
    usleep(300000);
    size_t from = rec_len(f.ev);
    /* packer's own write: register --kind writes props/chair/asset.json */
    const char *paths[] = {"props/chair"};
    packer_register_opts opts = {.kind = "raw"};
    packer_response *r = NULL;
    CHECK(packer_register_asset(f.p, paths, 1, &opts, &r) == 0);
    CHECK(r && packer_response_status(r) == PACKER_STATUS_OK);
    packer_response_free(r);
    CHECK(t_exists(f.root, "props/chair/asset.json"));
    CHECK(packer_exclude_asset(f.p, "props/chair", &r) == 0);
    packer_response_free(r);
    usleep(600000);
    CHECK(find(f.ev, from, "asset_changed", NULL) < 0);
    CHECK(observer_events(f.ev, from) == 0); /* (register announces its own discovery) */
    CHECK(find(f.ev, from, NULL, "diverged") < 0);
    CHECK(packer_project_state(f.p) == PACKER_STATE_HEALTHY);
    /* someone else's new asset root is discovered, not registered */
    CHECK(t_asset(f.root, "props/table") == 0);
    long at;
    while ((at = wait_for(f.ev, from, "asset_discovered", NULL)) >= 0 &&
           !cJSON_GetObjectItem(ev_at(f.ev, at), "paths"))
        from = (size_t)at + 1;
    REQUIRE(at >= 0);
    const cJSON *found = cJSON_GetObjectItem(ev_at(f.ev, at), "paths");
    CHECK(cJSON_GetArraySize(found) == 1 &&
          strcmp(cJSON_GetArrayItem(found, 0)->valuestring, "props/table") == 0);
    CHECK(packer_project_state(f.p) == PACKER_STATE_HEALTHY);
    teardown(&f);
}

static void test_divergence(void)
{
    const char *roots[] = {"mine"};
    fixture f;
    bool ready = setup(&f, "obs-diverge", roots, 1); /* (REQUIRE evaluates twice) */
    REQUIRE(ready);
    CHECK(t_asset(f.root, "theirs") == 0);
    usleep(300000);
    obs_test_hold(f.p, true); /* the refused write below must meet `diverged` */
    size_t from = rec_len(f.ev);
    const char *args[] = {"register", "theirs"};
    CHECK(run_cli(f.root, args, 2) == 0);
    CHECK(wait_for(f.ev, from, NULL, "diverged") >= 0);
    CHECK(packer_project_state(f.p) == PACKER_STATE_DIVERGED);
    packer_response *r = NULL;
    CHECK(packer_exclude_asset(f.p, "mine", &r) == 0);
    CHECK(r && packer_response_status(r) == PACKER_STATUS_REFUSED);
    cJSON *j = t_json(r);
    cJSON *b = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "blockers"), 0);
    CHECK(b && strcmp(t_str(b, "code"), "diverged") == 0 && strstr(t_str(b, "message"), "another"));
    cJSON_Delete(j);
    packer_response_free(r);
    char *mem = t_state(f.p); /* reads keep serving the old snapshot */
    CHECK(mem && !strstr(mem, "theirs"));
    free(mem);
    obs_test_hold(f.p, false);
    long rec_at = wait_for(f.ev, from, NULL, "reconciling");
    long ok_at = rec_at >= 0 ? wait_for(f.ev, (size_t)rec_at, NULL, "healthy") : -1;
    CHECK(rec_at >= 0 && ok_at > rec_at);
    CHECK(wait_state(f.p, PACKER_STATE_HEALTHY));
    char *theirs = id_of(f.p, "theirs");
    CHECK(theirs && ok_at >= 0 && names(ev_at(f.ev, ok_at), theirs));
    free(theirs);
    mem = t_state(f.p);
    CHECK(mem && strstr(mem, "theirs theirs raw 1\n"));
    free(mem);
    CHECK(packer_exclude_asset(f.p, "mine", &r) == 0);
    CHECK(r && packer_response_status(r) == PACKER_STATUS_OK);
    packer_response_free(r);
    /* a registry made unreadable: failed with diagnostics, left only by a
     * reconcile that succeeds */
    char shard[300] = "", *text = NULL;
    char *regdir = t_path(f.root, ".packer/registry");
    DIR *d = opendir(regdir);
    for (struct dirent *de; d && (de = readdir(d));)
        if (de->d_name[0] != '.')
            snprintf(shard, sizeof shard, ".packer/registry/%s", de->d_name);
    if (d)
        closedir(d);
    free(regdir);
    if (shard[0])
        text = t_read(f.root, shard);
    REQUIRE(text);
    CHECK(replace(f.root, shard, "{ this is not json") == 0); /* as a checkout would */
    CHECK(wait_state(f.p, PACKER_STATE_FAILED));
    CHECK(packer_call(f.p, "status", NULL, &r) == 0);
    CHECK(r && strstr(packer_response_json(r, 0), "reconcile_failed"));
    packer_response_free(r);
    CHECK(replace(f.root, shard, text) == 0);
    CHECK(wait_state(f.p, PACKER_STATE_HEALTHY));
    free(text);
    teardown(&f);
}

/* packer.json is packer-owned too: rewritten by someone else it makes the
 * runtime diverge and reconcile; unreadable, failed until it is fixed. */
static void test_config_divergence(void)
{
    const char *roots[] = {"cfg"};
    fixture f;
    bool ready = setup(&f, "obs-config", roots, 1); /* (REQUIRE evaluates twice) */
    REQUIRE(ready);
    char *text = t_read(f.root, "packer.json");
    REQUIRE(text);
    size_t from = rec_len(f.ev);
    char *renamed = malloc(strlen(text) + 32);
    const char *name = strstr(text, "\"name\"");
    REQUIRE(renamed && name);
    snprintf(renamed, strlen(text) + 32, "%.*s\"name\": \"renamed\",%s", (int)(name - text), text,
             strchr(name, ',') + 1);
    CHECK(replace(f.root, "packer.json", renamed) == 0);
    long div = wait_for(f.ev, from, NULL, "diverged");
    long ok = div >= 0 ? wait_for(f.ev, (size_t)div, NULL, "healthy") : -1;
    CHECK(div >= 0 && ok > div);
    CHECK(find(f.ev, from, NULL, "reconciling") > div);
    CHECK(wait_state(f.p, PACKER_STATE_HEALTHY));
    from = rec_len(f.ev);
    CHECK(replace(f.root, "packer.json", "{ \"format\": ") == 0);
    CHECK(wait_state(f.p, PACKER_STATE_FAILED));
    long failed = wait_for(f.ev, from, NULL, "failed"); /* the event may trail the state */
    CHECK(failed >= 0 && t_str(ev_at(f.ev, failed), "message") &&
          strstr(t_str(ev_at(f.ev, failed), "message"), "packer.json"));
    packer_response *r = NULL;
    CHECK(packer_exclude_asset(f.p, "cfg", &r) == 0); /* a write cannot reconcile it either */
    CHECK(r && packer_response_status(r) != PACKER_STATUS_OK);
    packer_response_free(r);
    CHECK(packer_project_state(f.p) == PACKER_STATE_FAILED);
    CHECK(replace(f.root, "packer.json", text) == 0);
    CHECK(wait_state(f.p, PACKER_STATE_HEALTHY));
    free(renamed);
    free(text);
    teardown(&f);
}

#define STORM_ASSETS 500
#define STORM_FILES 10

static void test_storm(void)
{
    fixture f;
    bool ready = setup(&f, "obs-storm", NULL, 0); /* (REQUIRE evaluates twice) */
    REQUIRE(ready);
    const char **roots = calloc(STORM_ASSETS, sizeof *roots);
    char name[64], file[96];
    for (int i = 0; i < STORM_ASSETS; i++) {
        snprintf(name, sizeof name, "s/a%03d", i);
        roots[i] = strdup(name);
        strbuf m = {0};
        strbuf_printf(&m, "{\"kind\": \"raw\", \"inputs\": [\"f0\"]}\n");
        for (int k = 0; k < STORM_FILES; k++) {
            snprintf(file, sizeof file, "%s/f%d", name, k);
            t_write(f.root, file, name);
        }
        snprintf(file, sizeof file, "%s/asset.json", name);
        t_write(f.root, file, m.s);
        pk_free(m.s);
    }
    usleep(800000); /* let the creation be reported (as discoveries) first */
    packer_response *r = NULL;
    CHECK(packer_register_asset(f.p, roots, STORM_ASSETS, NULL, &r) == 0);
    CHECK(r && packer_response_status(r) == PACKER_STATUS_OK);
    packer_response_free(r);
    usleep(300000);
    rec_clear(f.ev);
    /* touch 5,000 files at once, as a checkout would */
    double t0 = t_now();
    struct timespec ts[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
    int touched = 0;
    for (int i = 0; i < STORM_ASSETS; i++)
        for (int k = 0; k < STORM_FILES; k++) {
            snprintf(file, sizeof file, "%s/%s/f%d", f.root, roots[i], k);
            touched += utimensat(AT_FDCWD, file, ts, 0) == 0;
        }
    CHECK(touched == STORM_ASSETS * STORM_FILES);
    /* wait until every asset was named, then for quiet */
    char **ids = calloc(STORM_ASSETS, sizeof *ids);
    for (int i = 0; i < STORM_ASSETS; i++)
        ids[i] = id_of(f.p, roots[i]);
    size_t named = 0;
    while (named < STORM_ASSETS && t_now() - t0 < DEADLINE) {
        usleep(50000);
        named = 0;
        pthread_mutex_lock(&f.ev->mu);
        for (int i = 0; i < STORM_ASSETS; i++)
            for (size_t e = 0; e < f.ev->n; e++)
                if (is_kind(f.ev->v[e], "asset_changed") && ids[i] && names(f.ev->v[e], ids[i])) {
                    named++;
                    break;
                }
        pthread_mutex_unlock(&f.ev->mu);
    }
    usleep(600000);
    size_t events = count(f.ev, "asset_changed");
    printf("# %d files touched: %zu asset_changed event(s) named %zu assets in %.2f s\n", touched,
           events, named, t_now() - t0);
    CHECK(named == STORM_ASSETS);
    CHECK(events >= 1 && events <= 10);
    CHECK(count(f.ev, "asset_discovered") == 0);
    for (int i = 0; i < STORM_ASSETS; i++) {
        free(ids[i]);
        free((char *)roots[i]);
    }
    free(ids);
    free(roots);
    teardown(&f);
}

static void test_overflow_rescan(void)
{
    const char *roots[] = {"tex/wall", "tex/floor"};
    fixture f;
    bool ready = setup(&f, "obs-overflow", roots, 2); /* (REQUIRE evaluates twice) */
    REQUIRE(ready);
    char *wall = id_of(f.p, "tex/wall");
    CHECK(obs_test_overflow(f.p, true) == 0); /* kernel events are lost from now */
    size_t from = rec_len(f.ev);
    CHECK(t_write(f.root, "tex/wall/data.txt", "repainted") == 0);
    CHECK(t_write(f.root, "tex/wall/extra.png", "new file") == 0);
    usleep(400000);
    CHECK(find(f.ev, from, "asset_changed", NULL) < 0); /* nothing seen: they were lost */
    CHECK(obs_test_overflow(f.p, false) == 0);          /* IN_Q_OVERFLOW: rescan */
    long at = wait_for(f.ev, from, "asset_changed", NULL);
    REQUIRE(at >= 0);
    CHECK(names(ev_at(f.ev, at), wall));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(ev_at(f.ev, at), "rescan")));
    CHECK(t_num(ev_at(f.ev, at), "path_count") == 2);
    CHECK(packer_project_state(f.p) == PACKER_STATE_STALE);
    /* the rescan brought the baseline up to date: no repeat afterwards */
    CHECK(t_write(f.root, "tex/floor/data.txt", "swept") == 0);
    long next = wait_for(f.ev, (size_t)at + 1, "asset_changed", NULL);
    REQUIRE(next >= 0);
    CHECK(!names(ev_at(f.ev, next), wall) && t_num(ev_at(f.ev, next), "path_count") == 1);
    free(wall);
    teardown(&f);
}

/* ---- readers during reconciles ---------------------------------------------- */

#define GROUP 100
#define ROUNDS 6

typedef struct {
    packer_project *p;
    atomic_bool *stop;
    long reads, torn;
} reader;

/* Each round's CLI commit registers a whole group g<k>/r*: a coherent
 * snapshot holds none of a group or all of it. */
static void *read_loop(void *arg)
{
    reader *rd = arg;
    while (!atomic_load(rd->stop)) {
        packer_response *r = NULL;
        if (packer_list_assets(rd->p, &r) != 0)
            continue;
        cJSON *j = t_json(r), *a;
        int per[ROUNDS] = {0};
        cJSON_ArrayForEach(a, cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "assets"))
        {
            int g;
            const char *root = t_str(a, "root");
            if (root && sscanf(root, "g%d/", &g) == 1 && g >= 0 && g < ROUNDS)
                per[g]++;
        }
        for (int g = 0; g < ROUNDS; g++)
            rd->torn += per[g] != 0 && per[g] != GROUP;
        rd->reads++;
        cJSON_Delete(j);
        packer_response_free(r);
    }
    return NULL;
}

static void test_readers_during_reconcile(void)
{
    fixture f;
    bool ready = setup(&f, "obs-readers", NULL, 0); /* (REQUIRE evaluates twice) */
    REQUIRE(ready);
    char rel[32];
    for (int g = 0; g < ROUNDS; g++)
        for (int i = 0; i < GROUP; i++) {
            snprintf(rel, sizeof rel, "g%d/r%03d", g, i);
            CHECK(t_asset(f.root, rel) == 0);
        }
    usleep(800000);
    atomic_bool stop = false;
    reader rd[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        rd[i] = (reader){f.p, &stop, 0, 0};
        pthread_create(&th[i], NULL, read_loop, &rd[i]);
    }
    int reconciles = 0;
    for (int g = 0; g < ROUNDS; g++) {
        const char *args[GROUP + 1];
        char names_buf[GROUP][32];
        args[0] = "register";
        for (int i = 0; i < GROUP; i++) {
            snprintf(names_buf[i], sizeof names_buf[i], "g%d/r%03d", g, i);
            args[i + 1] = names_buf[i];
        }
        size_t from = rec_len(f.ev);
        CHECK(run_cli(f.root, args, GROUP + 1) == 0);
        long at = wait_for(f.ev, from, NULL, "reconciling");
        reconciles += at >= 0 && wait_for(f.ev, (size_t)at, NULL, "healthy") >= 0;
    }
    atomic_store(&stop, true);
    long reads = 0, torn = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        reads += rd[i].reads;
        torn += rd[i].torn;
    }
    printf("# %d background reconciles, %ld reads, %ld torn\n", reconciles, reads, torn);
    CHECK(reconciles == ROUNDS);
    CHECK(reads > 0 && torn == 0);
    char *mem = t_state(f.p), *disk = t_disk_state(f.root);
    CHECK(mem && disk && strcmp(mem, disk) == 0);
    free(mem);
    free(disk);
    teardown(&f);
}

static void test_on_off_close(void)
{
    const char *roots[] = {"x"};
    fixture f;
    bool ready = setup(&f, "obs-onoff", roots, 1); /* (REQUIRE evaluates twice) */
    REQUIRE(ready);
    CHECK(packer_project_observe(f.p, 1) == 0); /* already on: nothing happens */
    CHECK(packer_project_observe(f.p, 0) == 0);
    CHECK(packer_project_observe(f.p, 0) == 0);
    size_t from = rec_len(f.ev);
    CHECK(t_write(f.root, "x/data.txt", "unobserved") == 0);
    usleep(300000);
    CHECK(find(f.ev, from, "asset_changed", NULL) < 0);
    CHECK(packer_project_observe(f.p, 1) == 0);
    CHECK(t_write(f.root, "x/data.txt", "observed again") == 0);
    CHECK(wait_for(f.ev, from, "asset_changed", NULL) >= 0);
    CHECK(t_write(f.root, "x/data.txt", "closing") == 0);
    teardown(&f); /* close while observing, with a batch pending */
    CHECK(packer_project_observe(NULL, 1) == PACKER_EINVAL);
}

int main(void)
{
    double t0 = t_now();
    test_edit_makes_stale();
    test_editor_rename();
    test_own_writes_and_discovery();
    test_divergence();
    test_config_divergence();
    test_storm();
    test_overflow_rescan();
    test_readers_during_reconcile();
    test_on_off_close();
    printf("# %.2f s\n", t_now() - t0);
    CHECK_DONE();
}
