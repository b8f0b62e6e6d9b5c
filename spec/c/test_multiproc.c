/*
 * test_multiproc.c - several processes writing one workspace.
 *
 * Twenty `packer register` processes (the CLI in $PACKER_BIN, default
 * build/packer) start at once on one workspace, each with its own asset
 * roots, twice (the second time writing manifests with --kind): no
 * registration may be lost, and the generation counts every commit. Then
 * a project open in this process meets commits by other processes: its
 * next write announces diverged -> reconciling -> healthy and keeps the
 * other commit; status reports the divergence before that, after which the
 * next write is refused while a reconcile runs; and writes from
 * this process interleaved with writes from CLI processes all survive.
 *
 * When $PACKER_BIN is not there (sanitizer builds may skip the CLI), this
 * program runs itself as a minimal `packer register` with --as-cli.
 *
 * Threads: main, a writer thread in the last part, the lane and the bus
 * dispatcher of the open project; child processes are exec'd at once.
 */
#define _GNU_SOURCE
#include "check.h"
#include "support.h"

#define PROCS 20
#define PER_PROC 5

static const char *cli_bin;
static int self_cli; /* cli_bin is this program with --as-cli */

/* ---- --as-cli: a stand-in for `packer -C DIR register [--kind K] PATH...` */

static int as_cli(int argc, char **argv)
{
    if (argc < 6 || strcmp(argv[2], "-C") != 0 || strcmp(argv[4], "register") != 0)
        return 2;
    int first = 5;
    packer_register_opts opts = {0};
    if (strcmp(argv[5], "--kind") == 0 && argc > 7) {
        opts.kind = argv[6];
        first = 7;
    }
    packer_project *p = NULL;
    packer_response *r = NULL;
    if (packer_project_open(argv[3], NULL, &p) != 0)
        return 3;
    int rc = packer_register_asset(p, (const char *const *)argv + first, (size_t)(argc - first),
                                   &opts, &r);
    int code = rc != 0 ? 3 : packer_response_status(r) == PACKER_STATUS_OK ? 0 : 1;
    packer_response_free(r);
    packer_project_close(p);
    return code;
}

static void pick_cli(void)
{
    cli_bin = t_packer_bin();
    if (access(cli_bin, X_OK) != 0) {
        printf("# %s not found: this program stands in for the CLI\n", cli_bin);
        cli_bin = "/proc/self/exe";
        self_cli = 1;
    }
}

/* Start `packer -C root ARGS...`; log collects its output. */
static pid_t start_cli(const char *root, const char *const *args, int nargs, const char *log)
{
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)cli_bin;
    if (self_cli)
        argv[n++] = "--as-cli";
    argv[n++] = "-C";
    argv[n++] = (char *)root;
    for (int i = 0; i < nargs && n < 63; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    return t_spawn(argv, log);
}

static int run_cli(const char *root, const char *const *args, int nargs)
{
    return t_wait(start_cli(root, args, nargs, NULL));
}

static void show_log(const char *log)
{
    char *text = t_read("/", log + 1);
    if (text && *text)
        fprintf(stderr, "--- %s\n%s", log, text);
    free(text);
}

/* ---- twenty processes at once ------------------------------------------- */

/* Every process registers PER_PROC roots tag<i>/r<j>; returns how many
 * processes failed. */
static int register_burst(const char *root, const char *tag, const char *kind)
{
    pid_t pids[PROCS];
    char logs[PROCS][128];
    for (int i = 0; i < PROCS; i++) {
        char names[PER_PROC][32];
        const char *args[PER_PROC + 3];
        int n = 0;
        args[n++] = "register";
        if (kind) {
            args[n++] = "--kind";
            args[n++] = kind;
        }
        for (int j = 0; j < PER_PROC; j++) {
            snprintf(names[j], sizeof names[j], "%s%d/r%d", tag, i, j);
            args[n++] = names[j];
        }
        snprintf(logs[i], sizeof logs[i], "%s/.log-%s%d", root, tag, i);
        pids[i] = start_cli(root, args, n, logs[i]);
    }
    int failed = 0;
    for (int i = 0; i < PROCS; i++) {
        int code = t_wait(pids[i]);
        if (code != 0) {
            fprintf(stderr, "process %d (%s) exited %d\n", i, tag, code);
            show_log(logs[i]);
            failed++;
        }
        unlink(logs[i]);
    }
    return failed;
}

/* Roots tag<i>/r<j>, with a manifest or (for --kind) only a file. */
static void make_roots(const char *root, const char *tag, int manifests)
{
    int failed = 0;
    for (int i = 0; i < PROCS; i++)
        for (int j = 0; j < PER_PROC; j++) {
            char rel[64], file[80];
            snprintf(rel, sizeof rel, "%s%d/r%d", tag, i, j);
            snprintf(file, sizeof file, "%s/blob.bin", rel);
            failed += manifests ? t_asset(root, rel) != 0 : t_write(root, file, rel) != 0;
        }
    CHECK(failed == 0);
}

/* Every root tag<i>/r<j> is registered exactly once. */
static void check_all_present(const char *state, const char *tag)
{
    int missing = 0;
    for (int i = 0; i < PROCS; i++)
        for (int j = 0; j < PER_PROC; j++) {
            char line[80];
            snprintf(line, sizeof line, "%s%d/r%d %s%d/r%d raw 1\n", tag, i, j, tag, i, j);
            const char *at = strstr(state, line);
            if (!at || (at != state && at[-1] != '\n') || strstr(at + 1, line)) {
                fprintf(stderr, "lost or doubled: %s", line);
                missing++;
            }
        }
    CHECK(missing == 0);
}

static void test_concurrent_registers(void)
{
    char *root = t_workspace("multiproc");
    REQUIRE(root);
    make_roots(root, "p", 1);
    make_roots(root, "k", 0);
    double t0 = t_now();
    CHECK(register_burst(root, "p", NULL) == 0);
    CHECK(register_burst(root, "k", "raw") == 0);
    double dt = t_now() - t0;
    char *state = t_disk_state(root);
    REQUIRE(state);
    check_all_present(state, "p");
    check_all_present(state, "k");
    for (int i = 0; i < PROCS; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "k%d/r%d/asset.json", i, PER_PROC - 1);
        CHECK(t_exists(root, rel));
    }
    char *gen = t_read(root, ".packer/generation");
    CHECK(gen && atoi(gen) == 2 * PROCS);
    CHECK(!t_exists(root, ".packer/journal"));
    printf("# %d processes registered %d assets in %.2f s\n", 2 * PROCS, 2 * PROCS * PER_PROC, dt);
    free(gen);
    free(state);
    t_rmrf(root);
    free(root);
}

/* ---- an open project meets other processes' commits --------------------- */

static int reg(packer_project *p, const char *path, char *op, size_t cap)
{
    const char *paths[] = {path};
    packer_response *r = NULL;
    int rc = packer_register_asset(p, paths, 1, NULL, &r);
    int ok = rc == 0 && r && packer_response_status(r) == PACKER_STATUS_OK;
    if (r && op)
        snprintf(op, cap, "%s", packer_response_operation_id(r));
    if (r && !ok)
        fprintf(stderr, "register %s: %s\n", path, packer_response_summary(r));
    packer_response_free(r);
    return ok;
}

static void test_divergence(packer_bus *bus, t_events *ev)
{
    char *root = t_workspace("diverge");
    REQUIRE(root);
    const char *names[] = {"solo/a", "solo/b", "solo/c", "solo/d"};
    for (int i = 0; i < 4; i++)
        CHECK(t_asset(root, names[i]) == 0);
    packer_project *p = NULL;
    CHECK(packer_project_open(root, bus, &p) == 0);
    REQUIRE(p);
    char op[64], states[256];
    CHECK(reg(p, "solo/a", op, sizeof op));

    /* another process commits; our next write notices and reconciles */
    const char *reg_b[] = {"register", "solo/b"};
    CHECK(run_cli(root, reg_b, 2) == 0);
    CHECK(reg(p, "solo/c", op, sizeof op));
    packer_bus_flush(bus);
    t_states(ev, op, states, sizeof states);
    CHECK(strncmp(states, "diverged reconciling healthy", 28) == 0);
    CHECK(packer_project_state(p) == PACKER_STATE_HEALTHY);
    char *mem = t_state(p), *disk = t_disk_state(root);
    CHECK(mem && strstr(mem, "solo/a ") && strstr(mem, "solo/b ") && strstr(mem, "solo/c "));
    CHECK(mem && disk && strcmp(mem, disk) == 0);
    free(mem);
    free(disk);

    /* status reports the divergence first; the next write is refused (the
     * response says why) and a reconcile runs; a retry then succeeds */
    const char *reg_d[] = {"register", "solo/d"};
    CHECK(run_cli(root, reg_d, 2) == 0);
    packer_response *r = NULL;
    CHECK(packer_call(p, "status", NULL, &r) == 0);
    cJSON *j = t_json(r);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "disk_changed")));
    CHECK(r && packer_response_state(r) == PACKER_STATE_DIVERGED);
    CHECK(packer_project_state(p) == PACKER_STATE_DIVERGED);
    cJSON_Delete(j);
    packer_response_free(r);
    mem = t_state(p); /* reads keep serving the snapshot they have */
    CHECK(mem && !strstr(mem, "solo/d "));
    free(mem);
    CHECK(packer_exclude_asset(p, "solo/c", &r) == 0);
    CHECK(r && packer_response_status(r) == PACKER_STATUS_REFUSED);
    j = t_json(r);
    cJSON *blocker = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "blockers"), 0);
    CHECK(blocker && t_str(blocker, "code") && strcmp(t_str(blocker, "code"), "diverged") == 0);
    cJSON_Delete(j);
    packer_response_free(r);
    for (double t0 = t_now(); packer_project_state(p) != PACKER_STATE_HEALTHY && t_now() - t0 < 30;)
        usleep(2000);
    CHECK(packer_project_state(p) == PACKER_STATE_HEALTHY);
    packer_bus_flush(bus);
    CHECK(packer_exclude_asset(p, "solo/c", &r) == 0);
    CHECK(r && packer_response_status(r) == PACKER_STATUS_OK);
    packer_response_free(r);
    mem = t_state(p);
    CHECK(mem && strstr(mem, "solo/d solo/d raw 1\n") && strstr(mem, "solo/c solo/c raw 0\n"));
    disk = t_disk_state(root);
    CHECK(mem && disk && strcmp(mem, disk) == 0);
    free(mem);
    free(disk);
    packer_project_close(p);
    t_rmrf(root);
    free(root);
}

/* ---- this process and CLI processes writing at once ---------------------- */

#define MINE 20

static void *write_mine(void *arg)
{
    packer_project *p = arg;
    long ok = 0;
    for (int i = 0; i < MINE; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "mine/r%d", i);
        ok += reg(p, rel, NULL, 0);
    }
    return (void *)ok;
}

static void test_interleaved(packer_bus *bus)
{
    char *root = t_workspace("interleave");
    REQUIRE(root);
    make_roots(root, "c", 1);
    for (int i = 0; i < MINE; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "mine/r%d", i);
        CHECK(t_asset(root, rel) == 0);
    }
    packer_project *p = NULL;
    CHECK(packer_project_open(root, bus, &p) == 0);
    REQUIRE(p);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, write_mine, p) == 0);
    CHECK(register_burst(root, "c", NULL) == 0);
    void *ok = NULL;
    pthread_join(th, &ok);
    CHECK((long)ok == MINE);
    CHECK(t_asset(root, "last") == 0);
    CHECK(reg(p, "last", NULL, 0)); /* reconciles with whatever came last */
    char *mem = t_state(p), *disk = t_disk_state(root);
    REQUIRE(mem && disk);
    CHECK(strcmp(mem, disk) == 0);
    check_all_present(mem, "c");
    for (int i = 0; i < MINE; i++) {
        char line[64];
        snprintf(line, sizeof line, "mine/r%d mine/r%d raw 1\n", i, i);
        CHECK(strstr(mem, line) != NULL);
    }
    free(mem);
    free(disk);
    packer_project_close(p);
    t_rmrf(root);
    free(root);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--as-cli") == 0)
        return as_cli(argc, argv);
    double t0 = t_now();
    pick_cli();
    test_concurrent_registers();
    static t_events ev;
    t_events_init(&ev);
    packer_bus *bus = NULL;
    CHECK(packer_bus_new(&bus) == 0 && packer_bus_subscribe(bus, t_record, &ev, NULL) == 0);
    if (bus) {
        test_divergence(bus, &ev);
        test_interleaved(bus);
    }
    packer_bus_free(bus);
    printf("# %.2f s\n", t_now() - t0);
    CHECK_DONE();
}
