/*
 * test_threads.c - reads on many threads while writes go through the lane.
 *
 * Four reader threads take snapshots through the read services (list,
 * details, status) as fast as they can, while three writer threads submit
 * thousands of mutations (exclude/include toggles of their own asset and
 * registrations of new roots). Readers check what must hold of any one
 * snapshot (data.count equals the entries listed, registered = included +
 * excluded, every response parses) and across snapshots (asset count and
 * generation never go backwards, no divergence is reported: nobody else
 * writes). Writers check that their mutations apply in their order: each
 * toggle finds the state its previous toggle left, each registration is
 * visible to their next read, and the bus announces their registrations
 * in submission order. At the end, the generation counts every commit and
 * the disk agrees with memory. Meant to run clean under ThreadSanitizer.
 *
 * Threads: main, 4 readers, 3 writers, the lane, the bus dispatcher.
 */
#define _GNU_SOURCE
#include "check.h"
#include "support.h"

#define READERS 4
#define WRITERS 3
#define OPS 800     /* per writer */
#define REG_EVERY 4 /* one op in REG_EVERY registers a new root */
#define NREG (OPS / REG_EVERY)

static packer_project *project;
static packer_bus *bus;
static atomic_bool writers_done;
static atomic_int failures; /* checks failed on worker threads */
static atomic_long reads_done;

/* CHECK is not thread-safe: workers count failures and print the first. */
#define WCHECK(cond)                                                                               \
    do {                                                                                           \
        if (!(cond) && atomic_fetch_add(&failures, 1) < 20)                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
    } while (0)

/* ---- events: registrations per writer arrive in submission order ------- */

typedef struct {
    pthread_mutex_t mu;
    int next_index[WRITERS]; /* next registration index expected */
    int out_of_order;
    char last_op[48];
    uint64_t last_seq;
    int seq_backwards;
} ev_track;

static ev_track track = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_event(const packer_event *ev, void *ud)
{
    (void)ud;
    ev_track *t = &track;
    pthread_mutex_lock(&t->mu);
    /* lane operations run one at a time: sequences rise within each */
    const char *op = packer_event_operation_id(ev);
    if (strcmp(op, t->last_op) == 0 && packer_event_sequence(ev) <= t->last_seq)
        t->seq_backwards++;
    snprintf(t->last_op, sizeof t->last_op, "%s", op);
    t->last_seq = packer_event_sequence(ev);
    int w, i;
    const char *at = strstr(packer_event_summary(ev), " at w");
    if (packer_event_get_kind(ev) == PACKER_EV_ASSET_DISCOVERED && at &&
        sscanf(at, " at w%d/r%d", &w, &i) == 2 && w >= 0 && w < WRITERS) {
        if (i != t->next_index[w])
            t->out_of_order++;
        t->next_index[w] = i + 1;
    }
    pthread_mutex_unlock(&t->mu);
}

/* ---- readers ------------------------------------------------------------ */

typedef struct {
    int id;
    double max_count;
    double max_generation;
    unsigned seed;
} reader;

static cJSON *read_call(const char *svc, const char *params)
{
    packer_response *r = NULL;
    int rc = packer_call(project, svc, params, &r);
    WCHECK(rc == 0 && r);
    cJSON *j = t_json(r);
    WCHECK(j != NULL);
    WCHECK(r && packer_response_op_class(r) == PACKER_OP_READ);
    packer_response_free(r);
    const char *st = t_str(j, "runtime_state");
    WCHECK(st && (strcmp(st, "healthy") == 0 || strcmp(st, "committing") == 0));
    return j;
}

static void read_list(reader *rd, const char *params, bool all)
{
    cJSON *j = read_call("list_assets", params);
    const cJSON *data = cJSON_GetObjectItem(j, "data");
    const cJSON *assets = cJSON_GetObjectItem(data, "assets"), *a;
    double count = t_num(data, "count");
    WCHECK(cJSON_IsArray(assets) && count == cJSON_GetArraySize(assets));
    cJSON_ArrayForEach(a, assets)
        WCHECK(t_str(a, "asset_id") && t_str(a, "root") && t_str(a, "address") &&
               cJSON_IsBool(cJSON_GetObjectItem(a, "included")));
    if (all) {
        WCHECK(count >= rd->max_count);
        if (count > rd->max_count)
            rd->max_count = count;
    }
    cJSON_Delete(j);
}

static void read_status(reader *rd)
{
    cJSON *j = read_call("status", NULL);
    const cJSON *data = cJSON_GetObjectItem(j, "data");
    const cJSON *assets = cJSON_GetObjectItem(data, "assets");
    double reg = t_num(assets, "registered"), gen = t_num(data, "generation");
    WCHECK(reg == t_num(assets, "included") + t_num(assets, "excluded"));
    WCHECK(reg >= rd->max_count && gen >= rd->max_generation);
    WCHECK(cJSON_IsFalse(cJSON_GetObjectItem(data, "disk_changed")));
    rd->max_count = reg;
    rd->max_generation = gen;
    cJSON_Delete(j);
}

static void read_details(reader *rd)
{
    char params[64];
    snprintf(params, sizeof params, "{\"asset\": \"base/b%u\"}", rand_r(&rd->seed) % WRITERS);
    cJSON *j = read_call("get_asset_details", params);
    const cJSON *asset = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "asset");
    WCHECK(t_str(j, "status") && strcmp(t_str(j, "status"), "ok") == 0);
    WCHECK(cJSON_IsBool(cJSON_GetObjectItem(asset, "included")));
    cJSON_Delete(j);
}

static void *reader_main(void *arg)
{
    reader *rd = arg;
    long n = 0;
    while (!atomic_load(&writers_done)) {
        read_list(rd, NULL, true);
        read_status(rd);
        read_details(rd);
        read_list(rd, "{\"filter\": \"included\"}", false);
        packer_response *r = NULL;
        WCHECK(packer_list_assets(project, &r) == 0 && r);
        packer_response_free(r);
        n += 5;
    }
    atomic_fetch_add(&reads_done, n);
    return NULL;
}

/* ---- writers ------------------------------------------------------------ */

typedef struct {
    int id;
    int included; /* state of base/b<id> as this writer left it */
    int registered;
} writer;

/* exclude or include our own asset: it must be in the state we left it */
static void toggle(writer *w)
{
    char asset[32];
    snprintf(asset, sizeof asset, "base/b%d", w->id);
    packer_response *r = NULL;
    int rc = w->included ? packer_exclude_asset(project, asset, &r)
                         : packer_include_asset(project, asset, &r);
    WCHECK(rc == 0 && r);
    cJSON *j = t_json(r);
    WCHECK(r && packer_response_status(r) == PACKER_STATUS_OK);
    WCHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "applied_actions")) == 1);
    w->included = !w->included;
    cJSON_Delete(j);
    packer_response_free(r);
}

/* register w<id>/r<n>; our next read must see it */
static void register_next(writer *w)
{
    char root[32], params[64];
    snprintf(root, sizeof root, "w%d/r%d", w->id, w->registered++);
    const char *paths[] = {root};
    packer_response *r = NULL;
    WCHECK(packer_register_asset(project, paths, 1, NULL, &r) == 0 && r);
    WCHECK(r && packer_response_status(r) == PACKER_STATUS_OK);
    packer_response_free(r);
    snprintf(params, sizeof params, "{\"asset\": \"%s\"}", root);
    r = NULL;
    WCHECK(packer_call(project, "get_asset_details", params, &r) == 0 && r);
    WCHECK(r && packer_response_status(r) == PACKER_STATUS_OK);
    packer_response_free(r);
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    for (int i = 0; i < OPS; i++) {
        if (i % REG_EVERY == REG_EVERY - 1)
            register_next(w);
        else
            toggle(w);
    }
    return NULL;
}

/* ---- setup and the final state ------------------------------------------ */

static int setup(const char *root)
{
    const char *base[WRITERS];
    char names[WRITERS][32];
    for (int w = 0; w < WRITERS; w++) {
        snprintf(names[w], sizeof names[w], "base/b%d", w);
        base[w] = names[w];
        if (t_asset(root, names[w]) != 0)
            return -1;
        for (int i = 0; i < NREG; i++) {
            char rel[32];
            snprintf(rel, sizeof rel, "w%d/r%d", w, i);
            if (t_asset(root, rel) != 0)
                return -1;
        }
    }
    packer_response *r = NULL;
    int rc = packer_register_asset(project, base, WRITERS, NULL, &r);
    int ok = rc == 0 && r && packer_response_status(r) == PACKER_STATUS_OK;
    packer_response_free(r);
    return ok ? 0 : -1;
}

static void check_final(const char *root, writer *ws)
{
    packer_response *r = NULL;
    CHECK(packer_call(project, "status", NULL, &r) == 0);
    cJSON *j = t_json(r);
    const cJSON *data = cJSON_GetObjectItem(j, "data");
    /* one commit for the base assets, then one per mutation */
    CHECK(t_num(data, "generation") == 1 + WRITERS * OPS);
    CHECK(t_num(cJSON_GetObjectItem(data, "assets"), "registered") == WRITERS + WRITERS * NREG);
    cJSON_Delete(j);
    packer_response_free(r);
    for (int w = 0; w < WRITERS; w++) {
        char params[64];
        snprintf(params, sizeof params, "{\"asset\": \"base/b%d\"}", w);
        CHECK(packer_call(project, "get_asset_details", params, &r) == 0);
        j = t_json(r);
        const cJSON *a = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "asset");
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(a, "included")) == ws[w].included);
        cJSON_Delete(j);
        packer_response_free(r);
    }
    char *mem = t_state(project), *disk = t_disk_state(root);
    CHECK(mem && disk && strcmp(mem, disk) == 0);
    free(mem);
    free(disk);
}

int main(void)
{
    double t0 = t_now();
    char *root = t_workspace("threads");
    if (!root || packer_bus_new(&bus) != 0 ||
        packer_bus_subscribe(bus, on_event, NULL, NULL) != 0 ||
        packer_project_open(root, bus, &project) != 0 || setup(root) != 0) {
        fprintf(stderr, "setup failed: %s\n", packer_last_error());
        CHECK(0);
        CHECK_DONE();
    }
    pthread_t rt[READERS], wt[WRITERS];
    reader rds[READERS];
    writer ws[WRITERS];
    for (int i = 0; i < READERS; i++) {
        rds[i] = (reader){.id = i, .seed = (unsigned)i + 1};
        CHECK(pthread_create(&rt[i], NULL, reader_main, &rds[i]) == 0);
    }
    for (int i = 0; i < WRITERS; i++) {
        ws[i] = (writer){.id = i, .included = 1};
        CHECK(pthread_create(&wt[i], NULL, writer_main, &ws[i]) == 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(wt[i], NULL);
    atomic_store(&writers_done, true);
    for (int i = 0; i < READERS; i++)
        pthread_join(rt[i], NULL);
    packer_bus_flush(bus);
    CHECK(atomic_load(&failures) == 0);
    pthread_mutex_lock(&track.mu);
    CHECK(track.out_of_order == 0 && track.seq_backwards == 0);
    for (int w = 0; w < WRITERS; w++)
        CHECK(track.next_index[w] == NREG);
    pthread_mutex_unlock(&track.mu);
    check_final(root, ws);
    packer_project_close(project);
    packer_bus_free(bus);
    printf("# %d mutations, %ld reads in %.1f s\n", WRITERS * OPS, atomic_load(&reads_done),
           t_now() - t0);
    t_rmrf(root);
    free(root);
    CHECK_DONE();
}
