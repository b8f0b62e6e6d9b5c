/*
 * test_cancel.c - cancellation tokens (packer_cancel_*, cancel.c).
 *
 * A token triggered before a call refuses it without running anything; a
 * write still queued behind a long build is taken off the lane and
 * answers at once while the build goes on; a build of many slow assets
 * cancelled from the bus dispatcher thread stops mid-way, leaves the
 * output directory byte for byte as it was and the runtime healthy, and
 * the next build succeeds; a doctor cancelled between two slow rules
 * stops without recording anything.
 *
 * The slow parts are a workspace recipe and two workspace rules that
 * spin in Lua, so "mid-way" does not depend on the machine's speed.
 *
 * Threads: main, one writer thread in the queued-write test, the lane,
 * the build workers and the bus dispatcher (which triggers the tokens).
 */
#define _GNU_SOURCE
#include "check.h"
#include "support.h"

#define SLOW_ASSETS 120

static const char SLOW_RECIPE[] = "return { version = '1', build = function(ctx)\n"
                                  "  local x = 0\n"
                                  "  for i = 1, 2000000 do x = x + i end\n"
                                  "  return ctx:read(1)\n"
                                  "end }\n";

static const char SLOW_RULE[] = "return { id = '%s', class = 'hygiene', severity = 'info',\n"
                                "  scope = 'registered', description = 'spins',\n"
                                "  check = function(ctx)\n"
                                "    local x = 0\n"
                                "    for i = 1, 20000000 do x = x + i end\n"
                                "  end }\n";

/* Triggers `tok` when an event of kind `kind` is delivered (dispatcher). */
typedef struct {
    t_events rec;
    packer_event_kind kind;
    const char *prefix; /* and a summary starting so (NULL: any) */
    atomic_int armed;
    packer_cancel *tok;
} trigger;

static void on_event(const packer_event *ev, void *ud)
{
    trigger *t = ud;
    t_record(ev, &t->rec);
    const char *sum = packer_event_summary(ev);
    if (atomic_load(&t->armed) && packer_event_get_kind(ev) == t->kind &&
        (!t->prefix || strncmp(sum, t->prefix, strlen(t->prefix)) == 0)) {
        packer_cancel_trigger(t->tok);
        atomic_store(&t->armed, 0);
    }
}

/* A bus delivering to t, and the project at root opened on it. */
static int open_on(const char *root, trigger *t, packer_bus **bus, packer_project **p)
{
    t_events_init(&t->rec);
    if (packer_bus_new(bus) != 0)
        return -1;
    packer_bus_subscribe(*bus, on_event, t, NULL);
    return packer_project_open(root, *bus, p);
}

static int counted;
static int count_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)path, (void)sb, (void)ftw;
    counted += flag == FTW_F;
    return 0;
}

/* Regular files under root/rel. */
static int count_files(const char *root, const char *rel)
{
    char *dir = t_path(root, rel);
    counted = 0;
    nftw(dir, count_one, 16, FTW_PHYS);
    free(dir);
    return counted;
}

/* A raw asset "fast" and SLOW_ASSETS assets of the slow kind. */
static void make_assets(const char *root)
{
    t_asset(root, "assets/fast");
    t_write(root, "recipes/slow.lua", SLOW_RECIPE);
    for (int i = 0; i < SLOW_ASSETS; i++) {
        char rel[128], text[64];
        snprintf(rel, sizeof rel, "assets/slow%03d/asset.json", i);
        t_write(root, rel, "{\"kind\": \"slow\", \"inputs\": [\"data.txt\"]}\n");
        snprintf(rel, sizeof rel, "assets/slow%03d/data.txt", i);
        snprintf(text, sizeof text, "slow %d\n", i);
        t_write(root, rel, text);
    }
}

static cJSON *call(packer_project *p, const char *svc, const char *params, packer_cancel *tok)
{
    packer_response *r = NULL;
    int rc = packer_call_cancellable(p, svc, params, tok, &r);
    cJSON *j = rc == 0 ? t_json(r) : NULL;
    packer_response_free(r);
    return j;
}

static void test_tokens(void)
{
    packer_cancel *tok = NULL;
    int made = packer_cancel_new(&tok);
    REQUIRE(made == 0 && tok);
    CHECK(packer_cancel_triggered(tok) == 0);
    packer_cancel_trigger(tok);
    CHECK(packer_cancel_triggered(tok) == 1);
    packer_cancel_trigger(tok); /* idempotent */
    CHECK(packer_cancel_triggered(tok) == 1);
    packer_cancel_free(tok);
    packer_cancel_trigger(NULL);
    CHECK(packer_cancel_triggered(NULL) == 0);
    packer_cancel_free(NULL);
}

static void test_triggered_before(void)
{
    char *root = t_workspace("cancel-pre");
    REQUIRE(root);
    t_asset(root, "assets/a");
    packer_project *p = NULL;
    int open_rc = packer_project_open(root, NULL, &p);
    REQUIRE(open_rc == 0);
    cJSON *j = call(p, "register_asset", "{\"paths\": [\"assets/a\"]}", NULL);
    CHECK(t_status_is(j, "ok"));
    cJSON_Delete(j);
    char *before = t_state(p);
    packer_cancel *tok = NULL;
    packer_cancel_new(&tok);
    packer_cancel_trigger(tok);
    j = call(p, "exclude_asset_from_build", "{\"asset\": \"assets/a\"}", tok);
    CHECK(t_status_is(j, "refused") && t_has_blocker(j, "cancelled"));
    CHECK(t_str(j, "runtime_state") && strcmp(t_str(j, "runtime_state"), "healthy") == 0);
    cJSON_Delete(j);
    j = call(p, "list_assets", NULL, tok);
    CHECK(t_status_is(j, "refused") && t_has_blocker(j, "cancelled"));
    cJSON_Delete(j);
    char *after = t_state(p), *disk = t_disk_state(root);
    CHECK(before && after && disk && strcmp(before, after) == 0 && strcmp(before, disk) == 0);
    /* NULL token: not cancellable, same as packer_call */
    j = call(p, "list_assets", NULL, NULL);
    CHECK(t_status_is(j, "ok"));
    cJSON_Delete(j);
    free(before);
    free(after);
    free(disk);
    packer_cancel_free(tok);
    packer_project_close(p);
    t_rmrf(root);
    free(root);
}

typedef struct {
    packer_project *p;
    const char *svc, *params;
    packer_cancel *tok;
    cJSON *out;
    atomic_int done;
} call_args;

static void *call_thread(void *arg)
{
    call_args *a = arg;
    a->out = call(a->p, a->svc, a->params, a->tok);
    atomic_store(&a->done, 1);
    return NULL;
}

static void wait_kind(trigger *t, packer_event_kind k)
{
    for (int i = 0; i < 60000; i++) {
        pthread_mutex_lock(&t->rec.mu);
        int seen = 0;
        for (size_t e = 0; e < t->rec.n; e++)
            seen |= t->rec.v[e].kind == k;
        pthread_mutex_unlock(&t->rec.mu);
        if (seen)
            return;
        usleep(1000);
    }
}

/* A build cancelled mid-way leaves the outputs as they were. */
static void test_cancel_build(void)
{
    char *root = t_workspace("cancel-build");
    REQUIRE(root);
    make_assets(root);
    packer_bus *bus = NULL;
    packer_project *p = NULL;
    /* recipes report progress every 100 ms once some are done */
    trigger t = {.kind = PACKER_EV_PROGRESS_UPDATED, .prefix = "running recipes"};
    int open_rc = open_on(root, &t, &bus, &p);
    REQUIRE(open_rc == 0);
    cJSON *j = call(p, "register_asset", "{\"paths\": [\"assets/fast\"]}", NULL);
    cJSON_Delete(j);
    j = call(p, "build", "{\"jobs\": 2}", NULL);
    CHECK(t_status_is(j, "ok"));
    cJSON_Delete(j);
    char *pack0 = t_read(root, "build/assets.pack");
    char *addr0 = t_read(root, "build/addressables.json");
    REQUIRE(pack0 && addr0);

    char buf[64];
    cJSON *paths = cJSON_CreateArray();
    for (int i = 0; i < SLOW_ASSETS; i++) {
        snprintf(buf, sizeof buf, "assets/slow%03d", i);
        cJSON_AddItemToArray(paths, cJSON_CreateString(buf));
    }
    cJSON *params = cJSON_CreateObject();
    cJSON_AddItemToObject(params, "paths", paths);
    char *ptext = cJSON_PrintUnformatted(params);
    j = call(p, "register_asset", ptext, NULL);
    CHECK(t_status_is(j, "ok"));
    cJSON_Delete(j);
    free(ptext);
    cJSON_Delete(params);

    packer_cancel_new(&t.tok);
    atomic_store(&t.armed, 1); /* the dispatcher cancels on the first progress */
    double t0 = t_now();
    j = call(p, "build", "{\"jobs\": 2}", t.tok);
    double took = t_now() - t0;
    printf("# cancelled build answered after %.3f s\n", took);
    CHECK(t_status_is(j, "failed") && t_has_blocker(j, "cancelled"));
    CHECK(t_str(j, "runtime_state") && strcmp(t_str(j, "runtime_state"), "healthy") == 0);
    CHECK(!cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "data"), "assets"));
    const char *op = t_str(j, "operation_id");
    packer_bus_flush(bus);
    CHECK(op && t_count(&t.rec, op, PACKER_EV_BUILD_FINISHED) == 1);
    CHECK(op && t_count(&t.rec, op, PACKER_EV_CACHE_MISS) == 0); /* never announced */
    cJSON_Delete(j);
    char *pack1 = t_read(root, "build/assets.pack");
    char *addr1 = t_read(root, "build/addressables.json");
    CHECK(pack1 && addr1 && strcmp(addr0, addr1) == 0 && strlen(pack0) == strlen(pack1));
    struct stat a, b;
    char *pp = t_path(root, "build/assets.pack");
    CHECK(stat(pp, &a) == 0);
    free(pp);
    CHECK(packer_project_state(p) == PACKER_STATE_HEALTHY);
    /* mid-way: some recipes ran (their outputs are cached), not all */
    int objs = count_files(root, ".packer/cache/objects");
    printf("# %d of %d slow outputs were cached before the cancel\n", objs, SLOW_ASSETS);
    CHECK(objs > 0 && objs < SLOW_ASSETS);

    /* the next build, not cancelled, builds everything */
    j = call(p, "build", "{\"jobs\": 2}", NULL);
    CHECK(t_status_is(j, "ok"));
    const cJSON *tot =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "data"), "totals");
    CHECK(t_num(tot, "assets") == SLOW_ASSETS + 1);
    cJSON_Delete(j);
    pp = t_path(root, "build/assets.pack");
    CHECK(stat(pp, &b) == 0 && b.st_size > a.st_size);
    free(pp);
    char *addr2 = t_read(root, "build/addressables.json");
    CHECK(addr2 && strstr(addr2, "assets/slow119"));
    free(addr2);
    free(pack0);
    free(pack1);
    free(addr0);
    free(addr1);
    packer_cancel_free(t.tok);
    packer_project_close(p);
    packer_bus_free(bus);
    t_rmrf(root);
    free(root);
}

/* A write queued behind a long build leaves the lane at once. */
static void test_cancel_queued(void)
{
    char *root = t_workspace("cancel-queued");
    REQUIRE(root);
    make_assets(root);
    packer_bus *bus = NULL;
    packer_project *p = NULL;
    trigger t = {.kind = PACKER_EV__COUNT};
    int open_rc = open_on(root, &t, &bus, &p);
    REQUIRE(open_rc == 0);
    char rel[64];
    cJSON *paths = cJSON_CreateArray();
    for (int i = 0; i < SLOW_ASSETS; i++) {
        snprintf(rel, sizeof rel, "assets/slow%03d", i);
        cJSON_AddItemToArray(paths, cJSON_CreateString(rel));
    }
    cJSON_AddItemToArray(paths, cJSON_CreateString("assets/fast"));
    cJSON *params = cJSON_CreateObject();
    cJSON_AddItemToObject(params, "paths", paths);
    char *ptext = cJSON_PrintUnformatted(params);
    cJSON *j = call(p, "register_asset", ptext, NULL);
    CHECK(t_status_is(j, "ok"));
    cJSON_Delete(j);
    free(ptext);
    cJSON_Delete(params);

    call_args build = {.p = p, .svc = "build", .params = "{\"jobs\": 1, \"clean\": true}"};
    pthread_t bt, wt;
    pthread_create(&bt, NULL, call_thread, &build);
    wait_kind(&t, PACKER_EV_BUILD_STARTED); /* the lane is busy now */
    call_args w = {
        .p = p, .svc = "exclude_asset_from_build", .params = "{\"asset\": \"assets/fast\"}"};
    packer_cancel_new(&w.tok);
    pthread_create(&wt, NULL, call_thread, &w);
    usleep(50000);
    CHECK(!atomic_load(&w.done)); /* queued behind the build */
    packer_cancel_trigger(w.tok);
    pthread_join(wt, NULL);
    int build_running = !atomic_load(&build.done);
    CHECK(build_running); /* the write left without waiting for the build */
    CHECK(t_status_is(w.out, "refused") && t_has_blocker(w.out, "cancelled"));
    pthread_join(bt, NULL);
    CHECK(t_status_is(build.out, "ok"));
    cJSON *d = call(p, "get_asset_details", "{\"asset\": \"assets/fast\"}", NULL);
    const cJSON *asset =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(d, "data"), "asset");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(asset, "included"))); /* never ran */
    cJSON_Delete(d);
    cJSON_Delete(w.out);
    cJSON_Delete(build.out);
    packer_cancel_free(w.tok);
    packer_project_close(p);
    packer_bus_free(bus);
    t_rmrf(root);
    free(root);
}

/* A doctor cancelled between rules records nothing. */
static void test_cancel_doctor(void)
{
    char *root = t_workspace("cancel-doctor");
    REQUIRE(root);
    t_asset(root, "assets/a");
    char rule[512];
    snprintf(rule, sizeof rule, SLOW_RULE, "slow_one");
    t_write(root, "rules/slow_one.lua", rule);
    snprintf(rule, sizeof rule, SLOW_RULE, "slow_two");
    t_write(root, "rules/slow_two.lua", rule);
    packer_bus *bus = NULL;
    packer_project *p = NULL;
    trigger t = {.kind = PACKER_EV_PROGRESS_UPDATED};
    int open_rc = open_on(root, &t, &bus, &p);
    REQUIRE(open_rc == 0);
    cJSON *j = call(p, "register_asset", "{\"paths\": [\"assets/a\"]}", NULL);
    cJSON_Delete(j);
    packer_cancel_new(&t.tok);
    atomic_store(&t.armed, 1);
    j = call(p, "doctor", NULL, t.tok);
    CHECK(t_status_is(j, "failed") && t_has_blocker(j, "cancelled"));
    CHECK(!t_exists(root, ".packer/doctor-state.json"));
    cJSON_Delete(j);
    j = call(p, "doctor", NULL, NULL);
    CHECK(t_status_is(j, "ok"));
    cJSON_Delete(j);
    packer_cancel_free(t.tok);
    packer_project_close(p);
    packer_bus_free(bus);
    t_rmrf(root);
    free(root);
}

int main(void)
{
    test_tokens();
    test_triggered_before();
    test_cancel_build();
    test_cancel_queued();
    test_cancel_doctor();
    CHECK_DONE();
}
