/*
 * test_api.c - the public C API of packer.h, driven the way a host does.
 *
 * Covers: error strings and names; init_workspace and its refusal; open
 * and its errors (no workspace, malformed packer.json or registry shard,
 * each named with file:line:col and left untouched); every service
 * through its typed wrapper and through packer_call; the response
 * accessors and the full JSON shape; the event bus (delivery on the
 * dispatcher thread, per-operation sequence, operation ids matching the
 * response, unsubscribe, flush); exclude is not remove; remove
 * --delete-files previews without consent and deletes with it.
 *
 * Threads: main, plus the bus dispatcher running t_record.
 */
#define _GNU_SOURCE
#include "check.h"
#include "support.h"

static t_events events;
static packer_bus *bus;

/* ---- helpers ------------------------------------------------------------ */

static int has(const char *hay, const char *needle)
{
    return hay && needle && strstr(hay, needle) != NULL;
}

/* Number of elements of array key of j (-1 when not an array). */
static int arr_len(const cJSON *j, const char *key)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
}

/* code of the first element of array key of j, or "". */
static const char *first_code(const cJSON *j, const char *key)
{
    const cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, key), 0);
    const char *c = t_str(a, "code");
    return c ? c : "";
}

/* Every registry file (shards and generation) concatenated. */
static char *registry_bytes(const char *root)
{
    char *out = strdup(""), name[64];
    for (int i = 0; i < 256 && out; i++) {
        snprintf(name, sizeof name, ".packer/registry/%02x.json", i);
        char *text = t_read(root, name);
        if (!text)
            continue;
        char *joined = NULL;
        if (asprintf(&joined, "%s%s\n%s", out, name, text) < 0)
            joined = NULL;
        free(out);
        free(text);
        out = joined;
    }
    char *gen = t_read(root, ".packer/generation");
    char *all = NULL;
    if (out && asprintf(&all, "%sgeneration %s", out, gen ? gen : "none") < 0)
        all = NULL;
    free(gen);
    free(out);
    return all;
}

/* Call a service; returns the parsed response (caller deletes) or NULL. */
static cJSON *call(packer_project *p, const char *svc, const char *params)
{
    packer_response *r = NULL;
    CHECK(packer_call(p, svc, params, &r) == 0);
    cJSON *j = t_json(r);
    CHECK(j != NULL);
    packer_response_free(r);
    return j;
}

/* String member key of j equals want. */
static int str_is(const cJSON *j, const char *key, const char *want)
{
    const char *s = t_str(j, key);
    return s && want && strcmp(s, want) == 0;
}

/* ---- names and errors ---------------------------------------------------- */

static void test_names(void)
{
    CHECK(strcmp(packer_strerror(PACKER_OK), "ok") == 0);
    CHECK(strcmp(packer_strerror(PACKER_ENOWORKSPACE), "not a packer workspace") == 0);
    CHECK(strcmp(packer_strerror(PACKER_EPARSE), "malformed file") == 0);
    CHECK(strcmp(packer_strerror(PACKER_EBUSY), "workspace is locked") == 0);
    CHECK(strcmp(packer_strerror(12345), "unknown error") == 0);
    for (int e = 0; e >= PACKER_EBUSY; e--)
        CHECK(strcmp(packer_strerror(e), "unknown error") != 0);
    CHECK(strcmp(packer_op_class_name(PACKER_OP_REGISTRY_MUTATION), "registry_mutation") == 0);
    CHECK(strcmp(packer_op_class_name(PACKER_OP_WORKSPACE_MUTATION), "workspace_mutation") == 0);
    CHECK(strcmp(packer_state_name(PACKER_STATE_RECONCILING), "reconciling") == 0);
    CHECK(strcmp(packer_status_name(PACKER_STATUS_PREVIEW), "preview") == 0);
    CHECK(strcmp(packer_event_kind_name(PACKER_EV_RUNTIME_STATE_CHANGED),
                 "runtime_state_changed") == 0);
    CHECK(strcmp(packer_event_kind_name(PACKER_EV__COUNT), "unknown") == 0);
    CHECK(packer_last_error() != NULL);
    packer_project_close(NULL);
    packer_response_free(NULL);
    packer_bus_free(NULL);
    packer_free(NULL);
}

static void test_open_errors(void)
{
    char *dir = t_tmpdir("api-nows");
    REQUIRE(dir);
    packer_project *p = (packer_project *)1;
    CHECK(packer_project_open(dir, NULL, &p) == PACKER_ENOWORKSPACE);
    CHECK(p == NULL);
    CHECK(has(packer_last_error(), "not a packer workspace"));
    char *missing = t_path(dir, "nope");
    CHECK(packer_project_open(missing, NULL, &p) == PACKER_ENOWORKSPACE);
    free(missing);

    /* a syntax error: the second comma of line 3 (cJSON points just past it) */
    const char *bad = "{\n  \"format\": 1,\n  \"name\": \"x\",,\n  \"project_id\": \"p\"\n}\n";
    CHECK(t_write(dir, "packer.json", bad) == 0);
    CHECK(packer_project_open(dir, NULL, &p) == PACKER_EPARSE);
    CHECK(p == NULL);
    CHECK(has(packer_last_error(), "packer.json:3:1"));
    char *after = t_read(dir, "packer.json");
    CHECK(after && strcmp(after, bad) == 0);
    free(after);

    /* valid JSON, invalid field: named with the field's position */
    const char *wrong =
        "{\n  \"format\": \"one\",\n  \"name\": \"x\",\n  \"project_id\": \"p\"\n}\n";
    CHECK(t_write(dir, "packer.json", wrong) == 0);
    CHECK(packer_project_open(dir, NULL, &p) == PACKER_EPARSE);
    CHECK(has(packer_last_error(), "packer.json:2:3:"));
    CHECK(has(packer_last_error(), "\"format\" must be a number"));
    after = t_read(dir, "packer.json");
    CHECK(after && strcmp(after, wrong) == 0);
    free(after);
    CHECK(!t_exists(dir, ".packer"));
    t_rmrf(dir);
    free(dir);
}

/* ---- init and open ------------------------------------------------------ */

static void test_init(const char *dir, char *project_id, size_t cap)
{
    packer_response *r = NULL;
    CHECK(packer_init_workspace(dir, "apitest", bus, &r) == 0);
    REQUIRE(r);
    CHECK(packer_response_status(r) == PACKER_STATUS_OK);
    CHECK(packer_response_op_class(r) == PACKER_OP_WORKSPACE_MUTATION);
    CHECK(packer_response_state(r) == PACKER_STATE_HEALTHY);
    cJSON *j = t_json(r);
    const cJSON *data = cJSON_GetObjectItem(j, "data");
    CHECK(str_is(data, "name", "apitest"));
    CHECK(str_is(data, "root", dir));
    snprintf(project_id, cap, "%s", t_str(data, "project_id") ? t_str(data, "project_id") : "");
    CHECK(strlen(project_id) == 32);
    CHECK(arr_len(j, "applied_actions") == 1);
    CHECK(t_exists(dir, "packer.json") && t_exists(dir, ".packer/registry"));
    packer_bus_flush(bus);
    CHECK(t_count(&events, packer_response_operation_id(r), PACKER_EV_ACTION_APPLIED) == 1);
    cJSON_Delete(j);
    packer_response_free(r);

    char *before = t_read(dir, "packer.json");
    CHECK(packer_init_workspace(dir, NULL, bus, &r) == 0);
    REQUIRE(r);
    CHECK(packer_response_status(r) == PACKER_STATUS_REFUSED);
    j = t_json(r);
    CHECK(strcmp(first_code(j, "blockers"), "already_initialized") == 0);
    char *after = t_read(dir, "packer.json");
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);
    cJSON_Delete(j);
    packer_response_free(r);
}

static void test_find(const char *dir)
{
    CHECK(t_write(dir, "deep/er/x.txt", "x") == 0);
    char *sub = t_path(dir, "deep/er"), *found = NULL;
    CHECK(packer_find_workspace(sub, &found) == 0);
    CHECK(found && strcmp(found, dir) == 0);
    packer_free(found);
    free(sub);
}

/* ---- responses and events ----------------------------------------------- */

/* Every field of the response shape, with its JSON type. */
static void check_shape(const packer_response *r)
{
    cJSON *j = t_json(r);
    REQUIRE(j);
    static const char *const arrays[] = {"affected_assets", "diagnostics", "proposed_actions",
                                         "applied_actions", "blockers"};
    for (size_t i = 0; i < sizeof arrays / sizeof *arrays; i++)
        CHECK(arr_len(j, arrays[i]) >= 0);
    CHECK(str_is(j, "status", packer_status_name(packer_response_status(r))));
    CHECK(str_is(j, "summary", packer_response_summary(r)));
    CHECK(str_is(j, "runtime_state", packer_state_name(packer_response_state(r))));
    CHECK(str_is(j, "operation_id", packer_response_operation_id(r)));
    CHECK(str_is(j, "operation_class", packer_op_class_name(packer_response_op_class(r))));
    CHECK(cJSON_GetObjectItemCaseSensitive(j, "data") != NULL);
    CHECK(cJSON_GetArraySize(j) == 11);
    const char *pretty = packer_response_json(r, 1);
    cJSON *pj = pretty ? cJSON_Parse(pretty) : NULL;
    CHECK(pj && cJSON_Compare(pj, j, 1));
    CHECK(pretty && pretty[strlen(pretty) - 1] == '\n' && has(pretty, "\n  \"status\": "));
    CHECK(!has(packer_response_json(r, 0), "\n"));
    cJSON_Delete(pj);
    cJSON_Delete(j);
}

/* Events of op: all on the dispatcher, sequence rising from 1. */
static void check_op_events(const char *op)
{
    packer_bus_flush(bus);
    pthread_mutex_lock(&events.mu);
    uint64_t want = 0;
    size_t seen = 0;
    for (size_t i = 0; i < events.n; i++) {
        if (strcmp(events.v[i].op, op) != 0)
            continue;
        CHECK(events.v[i].on_dispatcher);
        CHECK(seen ? events.v[i].seq > want : events.v[i].seq == 1);
        want = events.v[i].seq;
        seen++;
    }
    pthread_mutex_unlock(&events.mu);
    CHECK(seen > 0);
}

static void test_register(packer_project *p)
{
    const char *paths[] = {"assets/hero", "assets/bg"};
    CHECK(t_asset(packer_project_root(p), paths[0]) == 0);
    CHECK(t_asset(packer_project_root(p), paths[1]) == 0);
    packer_response *r = NULL;
    CHECK(packer_register_asset(p, paths, 2, NULL, &r) == 0);
    REQUIRE(r);
    CHECK(packer_response_status(r) == PACKER_STATUS_OK);
    CHECK(packer_response_op_class(r) == PACKER_OP_REGISTRY_MUTATION);
    CHECK(packer_response_state(r) == PACKER_STATE_HEALTHY);
    CHECK(has(packer_response_summary(r), "registered 2 assets"));
    check_shape(r);
    cJSON *j = t_json(r);
    CHECK(arr_len(j, "affected_assets") == 2);
    CHECK(arr_len(cJSON_GetObjectItem(j, "data"), "assets") == 2);
    const char *op = packer_response_operation_id(r);
    check_op_events(op);
    CHECK(t_count(&events, op, PACKER_EV_ASSET_DISCOVERED) == 2);
    char states[256];
    t_states(&events, op, states, sizeof states);
    CHECK(strcmp(states, "committing healthy") == 0);
    cJSON_Delete(j);
    packer_response_free(r);
}

static void test_register_options(packer_project *p)
{
    const char *root = packer_project_root(p);
    const char *one[] = {"assets/hero3"}, *two[] = {"assets/raw1", "assets/hero3"};
    packer_register_opts opts = {.address = "sprites/hero3"};
    packer_response *r = NULL;
    CHECK(t_asset(root, one[0]) == 0);
    CHECK(packer_register_asset(p, two, 2, &opts, &r) == 0);
    CHECK(r && packer_response_status(r) == PACKER_STATUS_REFUSED);
    packer_response_free(r);
    CHECK(packer_register_asset(p, one, 1, &opts, &r) == 0);
    cJSON *j = t_json(r);
    const cJSON *a =
        cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "assets"), 0);
    CHECK(str_is(a, "address", "sprites/hero3"));
    cJSON_Delete(j);
    packer_response_free(r);

    /* no manifest: --kind writes one, which makes it a workspace mutation */
    CHECK(t_write(root, "assets/raw1/blob.bin", "blob") == 0);
    packer_register_opts kind = {.kind = "raw", .exclude = 1};
    CHECK(packer_register_asset(p, two, 1, NULL, &r) == 0);
    j = t_json(r);
    CHECK(t_status_is(j, "refused") &&
          strcmp(first_code(j, "diagnostics"), "manifest_missing") == 0);
    cJSON_Delete(j);
    packer_response_free(r);
    CHECK(packer_register_asset(p, two, 1, &kind, &r) == 0);
    CHECK(r && packer_response_status(r) == PACKER_STATUS_OK);
    CHECK(r && packer_response_op_class(r) == PACKER_OP_WORKSPACE_MUTATION);
    CHECK(t_exists(root, "assets/raw1/asset.json"));
    j = t_json(r);
    a = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "assets"), 0);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(a, "included")));
    CHECK(str_is(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "applied_actions"), 0), "kind",
                 "write_manifest"));
    cJSON_Delete(j);
    packer_response_free(r);

    /* again: nothing to do; outside the workspace: refused */
    CHECK(packer_register_asset(p, one, 1, NULL, &r) == 0);
    j = t_json(r);
    CHECK(t_status_is(j, "ok") && strcmp(first_code(j, "diagnostics"), "already_registered") == 0);
    cJSON_Delete(j);
    packer_response_free(r);
    const char *out[] = {"../elsewhere"};
    CHECK(packer_register_asset(p, out, 1, NULL, &r) == 0);
    j = t_json(r);
    CHECK(t_status_is(j, "refused"));
    CHECK(strcmp(first_code(j, "diagnostics"), "path_outside_workspace") == 0);
    cJSON_Delete(j);
    packer_response_free(r);
    CHECK(packer_register_asset(p, NULL, 0, NULL, &r) == 0);
    CHECK(r && packer_response_status(r) == PACKER_STATUS_REFUSED);
    packer_response_free(r);
}

static void test_list_and_details(packer_project *p)
{
    packer_response *r = NULL;
    CHECK(packer_list_assets(p, &r) == 0);
    CHECK(r && packer_response_op_class(r) == PACKER_OP_READ);
    check_shape(r);
    cJSON *j = t_json(r);
    const cJSON *data = cJSON_GetObjectItem(j, "data");
    CHECK(t_num(data, "count") == 4 && arr_len(data, "assets") == 4);
    cJSON_Delete(j);
    packer_response_free(r);

    j = call(p, "list_assets", "{\"filter\": \"excluded\"}");
    CHECK(t_num(cJSON_GetObjectItem(j, "data"), "count") == 1);
    cJSON_Delete(j);
    j = call(p, "list_assets", "{\"filter\": \"sideways\"}");
    CHECK(t_status_is(j, "refused") && strcmp(first_code(j, "blockers"), "invalid_params") == 0);
    cJSON_Delete(j);

    CHECK(packer_get_asset_details(p, "assets/hero", &r) == 0);
    check_shape(r);
    j = t_json(r);
    const cJSON *asset = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "asset");
    const cJSON *in = cJSON_GetArrayItem(cJSON_GetObjectItem(asset, "inputs"), 0);
    CHECK(t_status_is(j, "ok") && cJSON_IsTrue(cJSON_GetObjectItem(in, "exists")));
    CHECK(t_num(in, "size") == strlen("assets/hero"));
    CHECK(t_str(in, "hash") && strlen(t_str(in, "hash")) == 32);
    CHECK(str_is(cJSON_GetObjectItem(asset, "manifest"), "kind", "raw"));
    CHECK(arr_len(j, "affected_assets") == 1);
    cJSON_Delete(j);
    packer_response_free(r);
    CHECK(packer_get_asset_details(p, "no/such", &r) == 0);
    j = t_json(r);
    CHECK(t_status_is(j, "refused") && strcmp(first_code(j, "blockers"), "unknown_asset") == 0);
    cJSON_Delete(j);
    packer_response_free(r);
}

static void test_status(packer_project *p)
{
    cJSON *j = call(p, "status", NULL);
    const cJSON *data = cJSON_GetObjectItem(j, "data");
    CHECK(t_status_is(j, "ok"));
    CHECK(t_num(data, "generation") >= 3);
    CHECK(t_num(cJSON_GetObjectItem(data, "assets"), "registered") == 4);
    CHECK(t_num(cJSON_GetObjectItem(data, "assets"), "excluded") == 1);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(data, "disk_changed")));
    CHECK(str_is(data, "project_id", packer_project_id(p)));
    CHECK(str_is(j, "runtime_state", "healthy"));
    cJSON_Delete(j);
    j = call(p, "doctor", "");
    CHECK(t_status_is(j, "ok") && str_is(j, "operation_class", "read"));
    CHECK(str_is(cJSON_GetObjectItem(j, "data"), "mode", "registered"));
    cJSON_Delete(j);
}

static void test_call_errors(packer_project *p)
{
    packer_response *r = (packer_response *)1;
    CHECK(packer_call(p, "frobnicate", NULL, &r) == PACKER_EUNKNOWN);
    CHECK(r == NULL && has(packer_last_error(), "frobnicate"));
    r = (packer_response *)1;
    CHECK(packer_call(p, "list_assets", "[1, 2]", &r) == PACKER_EINVAL && r == NULL);
    CHECK(packer_call(p, "list_assets", "{\"filter\": ", &r) == PACKER_EINVAL && r == NULL);
    CHECK(has(packer_last_error(), "params:1:"));
    CHECK(packer_call(NULL, "list_assets", NULL, &r) == PACKER_EINVAL && r == NULL);
    CHECK(packer_list_assets(NULL, &r) == PACKER_EINVAL && r == NULL);
    cJSON *j = call(p, "include_asset_in_build", "{}");
    CHECK(t_status_is(j, "refused") && strcmp(first_code(j, "blockers"), "invalid_params") == 0);
    cJSON_Delete(j);
    j = call(p, "init_workspace", NULL);
    CHECK(t_status_is(j, "refused"));
    cJSON_Delete(j);
}

/* ---- exclude, include, remove ------------------------------------------- */

/* 1 included, 0 excluded, -1 not registered (by root). */
static int included_in_list(packer_project *p, const char *root)
{
    cJSON *j = call(p, "list_assets", NULL);
    const cJSON *a;
    int v = -1;
    cJSON_ArrayForEach(a, cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "assets"))
    {
        if (str_is(a, "root", root))
            v = cJSON_IsTrue(cJSON_GetObjectItem(a, "included"));
    }
    cJSON_Delete(j);
    return v;
}

static void test_exclude_is_not_remove(packer_project *p)
{
    const char *root = packer_project_root(p);
    packer_response *r = NULL;
    CHECK(packer_exclude_asset(p, "assets/hero", &r) == 0);
    cJSON *j = t_json(r);
    CHECK(t_status_is(j, "ok") && packer_response_op_class(r) == PACKER_OP_REGISTRY_MUTATION);
    const cJSON *act = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "applied_actions"), 0);
    CHECK(str_is(act, "kind", "exclude_asset_from_build"));
    check_op_events(packer_response_operation_id(r));
    CHECK(t_count(&events, packer_response_operation_id(r), PACKER_EV_ACTION_APPLIED) == 1);
    cJSON_Delete(j);
    packer_response_free(r);
    CHECK(included_in_list(p, "assets/hero") == 0);
    CHECK(t_exists(root, "assets/hero/asset.json") && t_exists(root, "assets/hero/data.txt"));
    j = call(p, "get_asset_details", "{\"asset\": \"assets/hero\"}");
    CHECK(t_status_is(j, "ok"));
    cJSON_Delete(j);

    CHECK(packer_exclude_asset(p, "assets/hero", &r) == 0);
    j = t_json(r);
    CHECK(t_status_is(j, "ok") && arr_len(j, "applied_actions") == 0);
    CHECK(has(packer_response_summary(r), "already excluded"));
    cJSON_Delete(j);
    packer_response_free(r);
    CHECK(packer_include_asset(p, "assets/hero", &r) == 0);
    CHECK(r && packer_response_status(r) == PACKER_STATUS_OK);
    packer_response_free(r);
    CHECK(included_in_list(p, "assets/hero") == 1);
}

static void test_address_clash(packer_project *p)
{
    const char *root = packer_project_root(p);
    const char *dup[] = {"assets/dup"};
    packer_register_opts opts = {.address = "assets/hero"};
    packer_response *r = NULL;
    CHECK(t_asset(root, dup[0]) == 0);
    CHECK(packer_register_asset(p, dup, 1, &opts, &r) == 0);
    cJSON *j = t_json(r);
    CHECK(t_status_is(j, "refused") && strcmp(first_code(j, "blockers"), "address_in_use") == 0);
    cJSON_Delete(j);
    packer_response_free(r);
    CHECK(included_in_list(p, "assets/dup") == -1);
}

static void test_remove_preview(packer_project *p)
{
    const char *root = packer_project_root(p);
    char *before = registry_bytes(root), *state = t_state(p);
    packer_response *r = NULL;
    CHECK(packer_remove_asset(p, "assets/bg", 1, 0, &r) == 0);
    REQUIRE(r);
    CHECK(packer_response_status(r) == PACKER_STATUS_PREVIEW);
    CHECK(packer_response_op_class(r) == PACKER_OP_WORKSPACE_MUTATION);
    cJSON *j = t_json(r);
    CHECK(strcmp(first_code(j, "blockers"), "consent_required") == 0);
    CHECK(arr_len(j, "proposed_actions") == 2 && arr_len(j, "applied_actions") == 0);
    const cJSON *del = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "proposed_actions"), 1);
    CHECK(str_is(del, "safety", "destructive"));
    CHECK(arr_len(del, "targets") == 2);
    check_op_events(packer_response_operation_id(r));
    CHECK(t_count(&events, packer_response_operation_id(r), PACKER_EV_PREVIEW_READY) == 1);
    CHECK(t_count(&events, packer_response_operation_id(r), PACKER_EV_ACTION_APPLIED) == 0);
    cJSON_Delete(j);
    packer_response_free(r);
    char *after = registry_bytes(root), *state2 = t_state(p);
    CHECK(before && after && strcmp(before, after) == 0);
    CHECK(state && state2 && strcmp(state, state2) == 0);
    CHECK(t_exists(root, "assets/bg/asset.json") && t_exists(root, "assets/bg/data.txt"));
    free(before);
    free(after);
    free(state);
    free(state2);
}

static void test_remove(packer_project *p)
{
    const char *root = packer_project_root(p);
    packer_response *r = NULL;
    CHECK(packer_remove_asset(p, "assets/bg", 1, 1, &r) == 0);
    cJSON *j = t_json(r);
    CHECK(t_status_is(j, "ok") && arr_len(j, "applied_actions") == 2);
    CHECK(arr_len(j, "blockers") == 0);
    cJSON_Delete(j);
    packer_response_free(r);
    CHECK(!t_exists(root, "assets/bg/asset.json") && !t_exists(root, "assets/bg/data.txt"));
    CHECK(!t_exists(root, "assets/bg"));
    CHECK(included_in_list(p, "assets/bg") == -1);
    CHECK(packer_get_asset_details(p, "assets/bg", &r) == 0);
    CHECK(r && packer_response_status(r) == PACKER_STATUS_REFUSED);
    packer_response_free(r);

    /* without delete_files: unregistered, files stay */
    CHECK(packer_remove_asset(p, "sprites/hero3", 0, 0, &r) == 0);
    CHECK(r && packer_response_status(r) == PACKER_STATUS_OK);
    CHECK(r && packer_response_op_class(r) == PACKER_OP_REGISTRY_MUTATION);
    packer_response_free(r);
    CHECK(included_in_list(p, "assets/hero3") == -1);
    CHECK(t_exists(root, "assets/hero3/asset.json") && t_exists(root, "assets/hero3/data.txt"));
    CHECK(packer_remove_asset(p, "sprites/hero3", 0, 0, &r) == 0);
    CHECK(r && packer_response_status(r) == PACKER_STATUS_REFUSED);
    packer_response_free(r);
}

/* ---- the bus ------------------------------------------------------------- */

static atomic_int slow_calls;

static void slow_sub(const packer_event *ev, void *ud)
{
    (void)ev;
    (void)ud;
    usleep(2000);
    atomic_fetch_add(&slow_calls, 1);
}

static void test_bus(packer_project *p)
{
    uint64_t id = 0;
    packer_bus_flush(bus); /* nothing older reaches the new subscriber */
    CHECK(packer_bus_subscribe(bus, slow_sub, NULL, &id) == 0 && id != 0);
    packer_response *r = NULL;
    CHECK(packer_exclude_asset(p, "assets/hero", &r) == 0);
    packer_bus_flush(bus);
    /* flush returned: every event of the exclude reached both subscribers */
    size_t n = t_count(&events, packer_response_operation_id(r), -1);
    CHECK(n >= 3 && atomic_load(&slow_calls) == (int)n);
    packer_response_free(r);
    CHECK(packer_bus_unsubscribe(bus, id) == 0);
    int calls = atomic_load(&slow_calls);
    CHECK(packer_include_asset(p, "assets/hero", &r) == 0);
    packer_bus_flush(bus);
    CHECK(t_count(&events, packer_response_operation_id(r), -1) >= 3);
    CHECK(atomic_load(&slow_calls) == calls);
    packer_response_free(r);
    CHECK(packer_bus_unsubscribe(bus, id) == PACKER_ENOTFOUND);
    CHECK(packer_bus_subscribe(NULL, slow_sub, NULL, NULL) == PACKER_EINVAL);
    CHECK(packer_bus_subscribe(bus, NULL, NULL, NULL) == PACKER_EINVAL);
}

/* The envelope of a registered event, through a subscriber that keeps
 * packer_event_json. */
static char *last_json;
static pthread_mutex_t last_mu = PTHREAD_MUTEX_INITIALIZER;

static void keep_json(const packer_event *ev, void *ud)
{
    (void)ud;
    char *line = packer_event_json(ev);
    pthread_mutex_lock(&last_mu);
    free(last_json);
    last_json = line;
    pthread_mutex_unlock(&last_mu);
}

static void test_envelope(packer_project *p)
{
    uint64_t id;
    packer_bus_flush(bus);
    CHECK(packer_bus_subscribe(bus, keep_json, NULL, &id) == 0);
    packer_response *r = NULL;
    CHECK(packer_exclude_asset(p, "assets/hero", &r) == 0);
    packer_bus_flush(bus);
    CHECK(packer_bus_unsubscribe(bus, id) == 0);
    pthread_mutex_lock(&last_mu);
    cJSON *ev = last_json ? cJSON_Parse(last_json) : NULL;
    free(last_json);
    last_json = NULL;
    pthread_mutex_unlock(&last_mu);
    CHECK(ev != NULL);
    CHECK(str_is(ev, "project_id", packer_project_id(p)));
    CHECK(str_is(ev, "operation_id", packer_response_operation_id(r)));
    CHECK(t_str(ev, "kind") && t_str(ev, "timestamp") && t_str(ev, "summary"));
    CHECK(t_num(ev, "sequence") >= 1);
    cJSON_Delete(ev);
    packer_response_free(r);
    CHECK(packer_include_asset(p, "assets/hero", &r) == 0);
    packer_response_free(r);
}

/* ---- a malformed registry ---------------------------------------------- */

static void test_bad_shard(const char *dir)
{
    const char *bad = "{\n  \"assets\": [\n    {\"asset_id\": \"ab01\",, }\n  ]\n}\n";
    CHECK(t_write(dir, ".packer/registry/ab.json", bad) == 0);
    packer_project *p = NULL;
    CHECK(packer_project_open(dir, bus, &p) == PACKER_EPARSE && p == NULL);
    CHECK(has(packer_last_error(), ".packer/registry/ab.json:3:"));
    char *after = t_read(dir, ".packer/registry/ab.json");
    CHECK(after && strcmp(after, bad) == 0);
    free(after);

    const char *wrong = "{\"assets\": [{\"root\": \"x\"}], \"format\": 1}\n";
    CHECK(t_write(dir, ".packer/registry/ab.json", wrong) == 0);
    CHECK(packer_project_open(dir, bus, &p) == PACKER_EPARSE && p == NULL);
    CHECK(has(packer_last_error(), ".packer/registry/ab.json"));
    CHECK(has(packer_last_error(), "asset_id"));
    char *path = t_path(dir, ".packer/registry/ab.json");
    unlink(path);
    free(path);
    CHECK(packer_project_open(dir, bus, &p) == 0);
    packer_project_close(p);
}

int main(void)
{
    t_events_init(&events);
    test_names();
    test_open_errors();
    if (packer_bus_new(&bus) != 0 || packer_bus_subscribe(bus, t_record, &events, NULL) != 0) {
        fprintf(stderr, "cannot make a bus: %s\n", packer_last_error());
        return 1;
    }
    char *dir = t_tmpdir("api");
    char project_id[64] = "";
    packer_project *p = NULL;
    if (dir) {
        test_init(dir, project_id, sizeof project_id);
        test_find(dir);
        CHECK(packer_project_open(dir, bus, &p) == 0);
    }
    if (p) {
        CHECK(strcmp(packer_project_root(p), dir) == 0);
        CHECK(strcmp(packer_project_id(p), project_id) == 0);
        CHECK(packer_project_state(p) == PACKER_STATE_HEALTHY);
        test_register(p);
        test_register_options(p);
        test_list_and_details(p);
        test_status(p);
        test_call_errors(p);
        test_exclude_is_not_remove(p);
        test_address_clash(p);
        test_remove_preview(p);
        test_remove(p);
        test_bus(p);
        test_envelope(p);
        packer_project_close(p);
        test_bad_shard(dir);
    }
    packer_bus_flush(bus);
    CHECK(events.dropped == 0);
    packer_bus_free(bus);
    t_rmrf(dir);
    free(dir);
    CHECK_DONE();
}
