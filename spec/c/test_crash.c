/*
 * test_crash.c - a writer killed with SIGKILL at a random instant.
 *
 * Each round forks a child that opens the workspace and commits in a loop:
 * register r/<i> with --kind (the manifest r/<i>/asset.json is written in
 * the same commit as the registry), and after every even i a second
 * commit excluding r/<i>. The parent kills it after a random 0..20 ms,
 * then checks what a crash may leave:
 *   - before any recovery, every registry shard and the generation file
 *     parse (files are only ever replaced whole);
 *   - opening the workspace (which rolls a journal forward) succeeds, and
 *     leaves no journal and no temp files in .packer/ or any asset root;
 *   - the registered roots are exactly r/1 .. r/k for some k (a prefix: no
 *     torn commit, nothing lost); r/<i>/asset.json exists exactly for
 *     i <= k; even i < k are excluded, r/k may be either;
 *   - the generation counts exactly the commits that state is made of.
 * The next round's child continues from k. Every few rounds the workspace
 * starts over, so the registry stays small and the test fast.
 *
 * The seed is printed; set PACKER_TEST_SEED to replay one.
 *
 * Threads: main only; the child is forked while no project is open.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>

#include "check.h"
#include "support.h"

#define ROUNDS 300
#define PER_WORKSPACE 60
#define BATCH 48 /* roots a child may register in one round */
#define MAX_KILL_US 20000

/* ---- the child ------------------------------------------------------------ */

static int commit(packer_project *p, const char *service, const char *params)
{
    packer_response *r = NULL;
    int ok = packer_call(p, service, params, &r) == 0 && r &&
             packer_response_status(r) == PACKER_STATUS_OK;
    packer_response_free(r);
    return ok;
}

static int exclude(packer_project *p, int i)
{
    char params[64];
    snprintf(params, sizeof params, "{\"asset\": \"r/%d\"}", i);
    return commit(p, "exclude_asset_from_build", params);
}

/* Register r/from .. r/(from + BATCH - 1), excluding the even ones; first
 * exclude r/(from - 1) when the last round was killed before it did. */
static void child(const char *root, int from, int exclude_last)
{
    packer_project *p = NULL;
    if (packer_project_open(root, NULL, &p) != 0)
        _exit(2);
    if (exclude_last && !exclude(p, from - 1))
        _exit(4);
    for (int i = from; i < from + BATCH; i++) {
        char params[96];
        snprintf(params, sizeof params, "{\"paths\": [\"r/%d\"], \"kind\": \"raw\"}", i);
        if (!commit(p, "register_asset", params))
            _exit(3);
        if (i % 2 == 0 && !exclude(p, i))
            _exit(4);
    }
    packer_project_close(p);
    _exit(0);
}

/* ---- the parent's checks -------------------------------------------------- */

/* Every shard file and the generation parse, as a crash left them. */
static int registry_parses(const char *root)
{
    char *dir = t_path(root, ".packer/registry");
    DIR *d = dir ? opendir(dir) : NULL;
    int ok = d != NULL;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strlen(e->d_name) != 7 || strcmp(e->d_name + 2, ".json") != 0)
            continue;
        char rel[300];
        snprintf(rel, sizeof rel, ".packer/registry/%s", e->d_name);
        char *text = t_read(root, rel);
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        if (!cJSON_IsArray(cJSON_GetObjectItem(j, "assets"))) {
            fprintf(stderr, "%s does not parse:\n%s\n", rel, text ? text : "(unreadable)");
            ok = 0;
        }
        cJSON_Delete(j);
        free(text);
    }
    if (d)
        closedir(d);
    free(dir);
    char *gen = t_read(root, ".packer/generation");
    char *end = NULL;
    if (gen && (strtoull(gen, &end, 10), end == gen || (*end && *end != '\n')))
        ok = 0;
    free(gen);
    return ok;
}

static int litter_in(const char *root, const char *rel)
{
    char *dir = t_path(root, rel);
    DIR *d = dir ? opendir(dir) : NULL;
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp-")) {
            fprintf(stderr, "litter: %s/%s\n", rel, e->d_name);
            n++;
        }
    if (d)
        closedir(d);
    free(dir);
    return n;
}

typedef struct {
    int k;          /* r/1 .. r/k registered */
    int last_excl;  /* r/k excluded */
    double gen;     /* generation */
    int consistent; /* the list was a prefix with the right flags */
} reg_state;

/* Read the registry through a fresh project (this recovers) and check it
 * is a prefix r/1 .. r/k with the expected included flags. */
static reg_state read_state(const char *root, int max)
{
    reg_state s = {0};
    packer_project *p = NULL;
    packer_response *r = NULL;
    if (packer_project_open(root, NULL, &p) != 0) {
        fprintf(stderr, "open after kill: %s\n", packer_last_error());
        return s;
    }
    char *seen = calloc((size_t)max + 2, 1);
    int n = 0, bad = 0;
    if (packer_list_assets(p, &r) == 0) {
        cJSON *j = t_json(r), *a;
        cJSON_ArrayForEach(a, cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "assets"))
        {
            int i = 0;
            const char *rt = t_str(a, "root");
            if (!rt || sscanf(rt, "r/%d", &i) != 1 || i < 1 || i > max || seen[i]) {
                bad++;
                continue;
            }
            seen[i] = cJSON_IsTrue(cJSON_GetObjectItem(a, "included")) ? 1 : 2;
            n++;
        }
        cJSON_Delete(j);
    }
    packer_response_free(r);
    for (int i = 1; i <= n; i++)
        bad += !seen[i] || (i < n && seen[i] != (i % 2 ? 1 : 2));
    s.k = n;
    s.last_excl = n > 0 && seen[n] == 2;
    s.consistent = !bad;
    free(seen);
    CHECK(packer_call(p, "status", NULL, &r) == 0);
    cJSON *j = t_json(r);
    s.gen = t_num(cJSON_GetObjectItem(j, "data"), "generation");
    cJSON_Delete(j);
    packer_response_free(r);
    packer_project_close(p);
    return s;
}

/* r/from .. r/to as manifest-less roots (the child writes manifests). */
static void make_roots(const char *root, int from, int to)
{
    int failed = 0;
    for (int i = from; i <= to; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "r/%d/blob.bin", i);
        failed += !t_exists(root, rel) && t_write(root, rel, rel) != 0;
    }
    CHECK(failed == 0);
}

static int journals; /* kills that left a commit to roll forward */

static void check_round(const char *root, int k0, int *k, int *pending)
{
    CHECK(registry_parses(root));
    journals += t_exists(root, ".packer/journal");
    reg_state s = read_state(root, k0 + BATCH);
    CHECK(s.consistent);
    CHECK(s.k >= k0 && s.k <= k0 + BATCH);
    /* one commit per register, one per exclude of an even root */
    int commits = s.k + s.k / 2 - (s.k > 0 && s.k % 2 == 0 && !s.last_excl);
    CHECK(s.gen == commits);
    CHECK(!s.last_excl || s.k % 2 == 0);
    CHECK(!t_exists(root, ".packer/journal"));
    CHECK(litter_in(root, ".packer") == 0 && litter_in(root, ".packer/registry") == 0);
    int torn = 0, litter = 0;
    for (int i = k0 + 1; i <= k0 + BATCH; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "r/%d/asset.json", i);
        torn += t_exists(root, rel) != (i <= s.k);
        snprintf(rel, sizeof rel, "r/%d", i);
        litter += litter_in(root, rel);
    }
    CHECK(torn == 0);   /* manifests written exactly with their commits */
    CHECK(litter == 0); /* no temp file left in an asset root */
    *k = s.k;
    *pending = s.k % 2 == 0 && s.k > 0 && !s.last_excl;
}

int main(void)
{
    double t0 = t_now();
    const char *env = getenv("PACKER_TEST_SEED");
    unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL) ^ getpid();
    printf("# seed %u\n", seed);
    srand(seed);
    char *root = NULL;
    int k = 0, pending = 0, killed = 0, finished = 0, total = 0;
    for (int round = 0; round < ROUNDS; round++) {
        if (round % PER_WORKSPACE == 0) {
            total += k;
            t_rmrf(root);
            free(root);
            root = t_workspace("crash");
            k = pending = 0;
            if (!root) {
                CHECK(root != NULL);
                break;
            }
        }
        make_roots(root, k + 1, k + BATCH);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0)
            child(root, k + 1, pending);
        CHECK(pid > 0);
        usleep((useconds_t)(rand() % MAX_KILL_US));
        kill(pid, SIGKILL);
        int code = t_wait(pid);
        CHECK(code == 128 + SIGKILL || code == 0);
        killed += code == 128 + SIGKILL;
        finished += code == 0;
        int k0 = k;
        check_round(root, k0, &k, &pending);
    }
    total += k;
    t_rmrf(root);
    free(root);
    printf("# %d rounds: %d killed (%d mid-commit), %d finished; %d commits kept in %.1f s\n",
           ROUNDS, killed, journals, finished, total, t_now() - t0);
    CHECK_DONE();
}
