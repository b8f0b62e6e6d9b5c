/*
 * test_fault.c - every write, fsync, rename and allocation of a mutation
 * fails in turn (SQLite-style fault injection, alloc.c).
 *
 * For each mutation (register three roots, register writing a manifest,
 * exclude, remove deleting files) and each fault kind, N = 1, 2, ... arms
 * the N-th counted operation to fail, until the mutation runs without
 * reaching it. After each run, faults disarmed:
 *   - an I/O fault fails the call with a response whose status is failed;
 *     an allocation fault, wherever it hit (even in an event), makes
 *     packer_call return PACKER_ENOMEM without a response, which could
 *     have been incomplete; a run that did not reach the fault answers ok
 *     with the full response;
 *   - the workspace, opened fresh (which rolls a journal forward), is
 *     exactly the old state or exactly the new one, files included, with
 *     no journal or temp files left;
 *   - the runtime still reads; what it serves is old or new, and when it
 *     differs from the disk its state says so (diverged or failed);
 *   - a later mutation succeeds: the test undoes a change that reached
 *     the disk through the same runtime, and ends each series with an
 *     unfaulted run.
 * Opening a project and the read services are put through allocation
 * faults too: they answer completely or fail with PACKER_ENOMEM.
 * Run under ASan as well (make test-sanitize) for leaks on failure paths.
 *
 * Threads: main, the lane, the bus dispatcher (whose subscriber must not
 * allocate: faults are process-wide).
 */
#define _GNU_SOURCE
#include <dirent.h>

#include "check.h"
#include "internal.h"
#include "support.h"

#define MAX_N 100000

static packer_project *p;
static packer_bus *bus;
static char *root;
static atomic_long delivered;

static void count_event(const packer_event *ev, void *ud)
{
    (void)ev;
    (void)ud;
    atomic_fetch_add(&delivered, 1); /* no allocation here: faults are process-wide */
}

/* ---- the mutations -------------------------------------------------------- */

typedef struct {
    const char *name;
    const char *service;
    const char *params;
    void (*undo)(void);
    const char *file;      /* a file the mutation creates or deletes */
    int file_in_new_state; /* whether `file` exists in the new state */
} mutation;

/* Run a service without faults; it must answer ok. */
static void must(const char *service, const char *params)
{
    packer_response *r = NULL;
    int rc = packer_call(p, service, params, &r);
    CHECK(rc == 0 && r && packer_response_status(r) == PACKER_STATUS_OK);
    if (r && packer_response_status(r) != PACKER_STATUS_OK)
        fprintf(stderr, "%s %s: %s\n", service, params, packer_response_summary(r));
    packer_response_free(r);
}

static void undo_register3(void)
{
    must("remove_asset", "{\"asset\": \"f/a\"}");
    must("remove_asset", "{\"asset\": \"f/b\"}");
    must("remove_asset", "{\"asset\": \"f/c\"}");
}

static void undo_register_kind(void)
{
    must("remove_asset", "{\"asset\": \"g/x\"}");
    char *m = t_path(root, "g/x/asset.json");
    unlink(m);
    free(m);
}

static void undo_exclude(void)
{
    must("include_asset_in_build", "{\"asset\": \"base/b0\"}");
}

static void undo_remove(void)
{
    CHECK(t_asset(root, "base/b1") == 0);
    must("register_asset", "{\"paths\": [\"base/b1\"]}");
}

static const mutation MUTATIONS[] = {
    {"register 3 roots", "register_asset", "{\"paths\": [\"f/a\", \"f/b\", \"f/c\"]}",
     undo_register3, NULL, 0},
    {"register --kind", "register_asset", "{\"paths\": [\"g/x\"], \"kind\": \"raw\"}",
     undo_register_kind, "g/x/asset.json", 1},
    {"exclude", "exclude_asset_from_build", "{\"asset\": \"base/b0\"}", undo_exclude, NULL, 0},
    {"remove --delete-files", "remove_asset",
     "{\"asset\": \"base/b1\", \"delete_files\": true, \"consent\": true}", undo_remove,
     "base/b1/asset.json", 0},
};

static const struct {
    int kind;
    const char *name;
} KINDS[] = {{FAULT_WRITE, "write"},
             {FAULT_FSYNC, "fsync"},
             {FAULT_RENAME, "rename"},
             {FAULT_ALLOC, "alloc"}};

/* ---- checks ---------------------------------------------------------------- */

/* How many temp files ("*.tmp-*") root/rel holds. */
static int litter_in(const char *rel)
{
    char *dir = t_path(root, rel);
    DIR *d = dir ? opendir(dir) : NULL;
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, ".tmp-") != NULL;
    if (d)
        closedir(d);
    free(dir);
    return n;
}

/* No journal, no temp file in the directories a commit touches. */
static int clean_disk(void)
{
    return !t_exists(root, ".packer/journal") && litter_in(".packer") == 0 &&
           litter_in(".packer/registry") == 0 && litter_in("g/x") == 0 && litter_in("base/b1") == 0;
}

typedef struct {
    long runs, enomem, not_ok;
} tally;

/* What the unfaulted mutation does: states before and after, and the
 * shape of its response. */
typedef struct {
    char *before, *after;
    char shape[128];
} expect;

/* Lengths of the response's lists and of data.assets: an ok response must
 * not silently lose entries. */
static void shape_of(const packer_response *r, char *out, size_t cap)
{
    static const char *const keys[] = {"affected_assets", "diagnostics", "proposed_actions",
                                       "applied_actions", "blockers"};
    cJSON *j = t_json(r);
    size_t len = 0;
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        len += (size_t)snprintf(out + len, cap - len, "%d ",
                                cJSON_GetArraySize(cJSON_GetObjectItem(j, keys[i])));
    const cJSON *data = cJSON_GetObjectItem(j, "data");
    snprintf(out + len, cap - len, "%d %d", cJSON_GetArraySize(cJSON_GetObjectItem(data, "assets")),
             cJSON_GetObjectItem(data, "asset") != NULL);
    cJSON_Delete(j);
}

/* One run of m with the n-th operation of kind failing; returns whether
 * the fault was reached. */
static int run_faulted(const mutation *m, int kind, long n, const expect *x, tally *t)
{
    packer_bus_flush(bus);
    packer_response *r = NULL;
    pk_fault_arm(kind, n);
    int rc = packer_call(p, m->service, m->params, &r);
    long seen = pk_fault_count();
    pk_fault_arm(0, 0);
    int hit = seen >= n;
    packer_status st = r ? packer_response_status(r) : PACKER_STATUS_FAILED;
    char *disk = t_disk_state(root), *mem = t_state(p);
    int is_new = disk && strcmp(disk, x->after) == 0;
    int is_old = disk && strcmp(disk, x->before) == 0;

    t->runs++;
    CHECK(is_old || is_new);
    CHECK(clean_disk());
    if (m->file)
        CHECK(t_exists(root, m->file) == (is_new ? m->file_in_new_state : !m->file_in_new_state));
    CHECK(mem && (strcmp(mem, x->before) == 0 || strcmp(mem, x->after) == 0));
    if (mem && disk && strcmp(mem, disk) != 0)
        CHECK(packer_project_state(p) == PACKER_STATE_DIVERGED ||
              packer_project_state(p) == PACKER_STATE_FAILED);
    if (!hit) {
        CHECK(rc == 0 && st == PACKER_STATUS_OK && is_new);
        char shape[128];
        shape_of(r, shape, sizeof shape);
        CHECK(strcmp(shape, x->shape) == 0);
    } else if (kind == FAULT_ALLOC) {
        /* whatever failed, the response could be incomplete: none at all */
        CHECK(rc == PACKER_ENOMEM && r == NULL);
        t->enomem += rc == PACKER_ENOMEM;
    } else {
        CHECK(rc == 0 && st == PACKER_STATUS_FAILED);
        t->not_ok += rc == 0 && st == PACKER_STATUS_FAILED;
    }
    packer_response_free(r);
    if (is_new) /* put the old state back: a later mutation succeeds */
        m->undo();
    if (!is_old && !is_new)
        fprintf(stderr, "%s, fault %ld: disk is neither old nor new:\n%s", m->name, n,
                disk ? disk : "(does not open)\n");
    free(disk);
    free(mem);
    return hit;
}

static void run_series(const mutation *m, int kind, const char *kind_name, const expect *x)
{
    tally t = {0};
    double t0 = t_now();
    long n = 1;
    while (n < MAX_N && run_faulted(m, kind, n, x, &t))
        n++;
    CHECK(n < MAX_N);
    char *mem = t_state(p), *disk = t_disk_state(root);
    CHECK(mem && disk && strcmp(mem, x->before) == 0 && strcmp(disk, x->before) == 0);
    CHECK(packer_project_state(p) == PACKER_STATE_HEALTHY);
    free(mem);
    free(disk);
    printf("# %-22s %-6s %4ld runs: %3ld out of memory, %3ld failed, %.2f s\n", m->name, kind_name,
           t.runs, t.enomem, t.not_ok, t_now() - t0);
}

/* What m does, by running it once without faults; then every fault. */
static void test_mutation(const mutation *m)
{
    expect x = {.before = t_disk_state(root)};
    packer_response *r = NULL;
    CHECK(packer_call(p, m->service, m->params, &r) == 0);
    CHECK(r && packer_response_status(r) == PACKER_STATUS_OK);
    if (r)
        shape_of(r, x.shape, sizeof x.shape);
    packer_response_free(r);
    x.after = t_disk_state(root);
    REQUIRE(x.before && x.after && strcmp(x.before, x.after) != 0);
    m->undo();
    char *back = t_disk_state(root);
    CHECK(back && strcmp(back, x.before) == 0);
    free(back);
    for (size_t k = 0; k < sizeof KINDS / sizeof *KINDS; k++)
        run_series(m, KINDS[k].kind, KINDS[k].name, &x);
    free(x.before);
    free(x.after);
}

/* ---- open and close under allocation faults -------------------------------- */

static void test_open_faulted(void)
{
    long n = 1, errors = 0;
    for (;; n++) {
        packer_project *q = NULL;
        pk_fault_arm(FAULT_ALL, n);
        int rc = packer_project_open(root, NULL, &q);
        long seen = pk_fault_count();
        pk_fault_arm(0, 0);
        if (rc != 0) {
            CHECK(q == NULL);
            CHECK(rc == PACKER_ENOMEM);
            errors++;
        }
        packer_project_close(q);
        if (seen < n || n >= MAX_N)
            break;
    }
    CHECK(n < MAX_N && errors > 0);
    printf("# open %ld runs: %ld errors\n", n, errors);
}

/* ---- reads under allocation faults -------------------------------------- */

/* The response as a tree without its operation id (which always differs). */
static cJSON *answer(const packer_response *r)
{
    cJSON *j = t_json(r);
    cJSON_DeleteItemFromObjectCaseSensitive(j, "operation_id");
    return j;
}

/* A read answers completely or not at all (PACKER_ENOMEM). */
static void test_read_faulted(const char *service, const char *params)
{
    packer_response *r = NULL;
    CHECK(packer_call(p, service, params, &r) == 0);
    cJSON *want = answer(r);
    packer_response_free(r);
    REQUIRE(want);
    long n = 1, errors = 0;
    for (; n < MAX_N; n++) {
        r = NULL;
        pk_fault_arm(FAULT_ALLOC, n);
        int rc = packer_call(p, service, params, &r);
        long seen = pk_fault_count();
        pk_fault_arm(0, 0);
        cJSON *got = answer(r);
        if (seen < n)
            CHECK(rc == 0 && got && cJSON_Compare(got, want, 1));
        else
            CHECK(rc == PACKER_ENOMEM && !r);
        errors += rc != 0;
        cJSON_Delete(got);
        packer_response_free(r);
        if (seen < n)
            break;
    }
    CHECK(n < MAX_N && errors == n - 1);
    cJSON_Delete(want);
    printf("# %-22s alloc  %4ld runs: %3ld out of memory\n", service, n, errors);
}

static int setup(void)
{
    root = t_workspace("fault");
    if (!root || t_asset(root, "f/a") || t_asset(root, "f/b") || t_asset(root, "f/c") ||
        t_write(root, "g/x/blob.bin", "blob") || t_asset(root, "base/b0") ||
        t_asset(root, "base/b1") || t_asset(root, "base/b2"))
        return -1;
    if (packer_bus_new(&bus) || packer_bus_subscribe(bus, count_event, NULL, NULL) ||
        packer_project_open(root, bus, &p))
        return -1;
    must("register_asset", "{\"paths\": [\"base/b0\", \"base/b1\", \"base/b2\"]}");
    return 0;
}

int main(void)
{
    double t0 = t_now();
    if (setup() != 0) {
        fprintf(stderr, "setup failed: %s\n", packer_last_error());
        CHECK(0);
    } else {
        for (size_t i = 0; i < sizeof MUTATIONS / sizeof *MUTATIONS; i++)
            test_mutation(&MUTATIONS[i]);
        test_open_faulted();
        test_read_faulted("list_assets", NULL);
        test_read_faulted("get_asset_details", "{\"asset\": \"base/b2\"}");
        test_read_faulted("status", NULL);
        must("list_assets", NULL);
    }
    packer_project_close(p);
    packer_bus_free(bus);
    CHECK(atomic_load(&delivered) > 0);
    t_rmrf(root);
    free(root);
    printf("# %.1f s\n", t_now() - t0);
    CHECK_DONE();
}
