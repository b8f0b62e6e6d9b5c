/*
 * support.h - workspace helpers shared by the C tests in spec/c/.
 *
 * Temporary workspaces (each test makes its own and removes it), asset
 * roots on disk, the registry state as comparable text, and running the
 * packer CLI (path in $PACKER_BIN, default build/packer). Header-only like
 * check.h; a test defines _GNU_SOURCE before its first include.
 *
 * Threads: the helpers keep no state; t_state() and friends may be called
 * from any thread, t_run() from any thread of a process that may fork.
 */
#ifndef PACKER_SUPPORT_H
#define PACKER_SUPPORT_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "packer.h"

/* Seconds on a monotonic clock. */
static inline double t_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A fresh empty directory under $TMPDIR (or /tmp); caller frees. */
static inline char *t_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/packer-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(path))
        return NULL;
    char *real = realpath(path, NULL);
    return real;
}

static inline int t_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* rm -rf dir. */
static inline int t_rmrf(const char *dir)
{
    return dir ? nftw(dir, t_rm_one, 16, FTW_DEPTH | FTW_PHYS) : 0;
}

/* root/rel as a new string; caller frees. */
static inline char *t_path(const char *root, const char *rel)
{
    size_t n = strlen(root) + strlen(rel) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", root, rel);
    return p;
}

/* mkdir -p of every directory above root/rel. */
static inline void t_mkparents(const char *root, const char *rel)
{
    char *p = t_path(root, rel);
    for (char *s = p ? p + strlen(root) + 1 : NULL; s && *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0755);
            *s = '/';
        }
    free(p);
}

/* Write root/rel (creating directories); 0 or -1. */
static inline int t_write(const char *root, const char *rel, const char *text)
{
    t_mkparents(root, rel);
    char *p = t_path(root, rel);
    FILE *fp = p ? fopen(p, "wb") : NULL;
    free(p);
    if (!fp)
        return -1;
    size_t n = strlen(text);
    int rc = fwrite(text, 1, n, fp) == n ? 0 : -1;
    return fclose(fp) == 0 ? rc : -1;
}

/* Contents of root/rel (NUL-terminated), or NULL; caller frees. */
static inline char *t_read(const char *root, const char *rel)
{
    char *p = t_path(root, rel);
    FILE *fp = p ? fopen(p, "rb") : NULL;
    free(p);
    if (!fp)
        return NULL;
    size_t cap = 4096, n = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n - 1, fp)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    fclose(fp);
    if (buf)
        buf[n] = '\0';
    return buf;
}

static inline int t_exists(const char *root, const char *rel)
{
    char *p = t_path(root, rel);
    struct stat sb;
    int ok = p && stat(p, &sb) == 0;
    free(p);
    return ok;
}

/* An asset root: rel/asset.json (kind raw, one input) and rel/data.txt. */
static inline int t_asset(const char *root, const char *rel)
{
    char *m = t_path(rel, "asset.json"), *d = t_path(rel, "data.txt");
    int rc = m && d ? t_write(root, d, rel) : -1;
    if (rc == 0)
        rc = t_write(root, m, "{\"kind\": \"raw\", \"inputs\": [\"data.txt\"]}\n");
    free(m);
    free(d);
    return rc;
}

/* A new workspace in a fresh temporary directory; caller removes and
 * frees. NULL on failure. */
static inline char *t_workspace(const char *tag)
{
    char *dir = t_tmpdir(tag);
    packer_response *r = NULL;
    if (!dir || packer_init_workspace(dir, tag, NULL, &r) != 0 ||
        packer_response_status(r) != PACKER_STATUS_OK) {
        packer_response_free(r);
        t_rmrf(dir);
        free(dir);
        return NULL;
    }
    packer_response_free(r);
    return dir;
}

/* The response as a cJSON tree (caller deletes), NULL when r is NULL. */
static inline cJSON *t_json(const packer_response *r)
{
    const char *text = r ? packer_response_json(r, 0) : NULL;
    return text ? cJSON_Parse(text) : NULL;
}

static inline const char *t_str(const cJSON *obj, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

static inline double t_num(const cJSON *obj, const char *key)
{
    return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

/* Whether response object j has status st. */
static inline int t_status_is(const cJSON *j, const char *st)
{
    const char *s = t_str(j, "status");
    return s && strcmp(s, st) == 0;
}

/* Whether response object j has a blocker with this code. */
static inline int t_has_blocker(const cJSON *j, const char *code)
{
    const cJSON *b;
    cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(j, "blockers"))
    {
        const char *c = t_str(b, "code");
        if (c && strcmp(c, code) == 0)
            return 1;
    }
    return 0;
}

static inline int t_cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The assets of a list_assets response as sorted lines "root address kind
 * included" (ids left out: they are random). Caller frees; NULL when the
 * response is not an ok list. */
static inline char *t_state_of(const cJSON *j)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    const cJSON *assets = cJSON_GetObjectItemCaseSensitive(data, "assets"), *a;
    const char *st = t_str(j, "status");
    if (!st || strcmp(st, "ok") != 0 || !cJSON_IsArray(assets))
        return NULL;
    int n = cJSON_GetArraySize(assets), k = 0;
    char **lines = calloc((size_t)n + 1, sizeof *lines);
    size_t total = 1;
    cJSON_ArrayForEach(a, assets)
    {
        char line[1024];
        snprintf(line, sizeof line, "%s %s %s %d\n", t_str(a, "root"), t_str(a, "address"),
                 t_str(a, "kind"), cJSON_IsTrue(cJSON_GetObjectItem(a, "included")));
        lines[k] = strdup(line);
        total += strlen(line);
        k++;
    }
    qsort(lines, (size_t)k, sizeof *lines, t_cmp_line);
    char *out = malloc(total);
    out[0] = '\0';
    for (int i = 0; i < k; i++) {
        strcat(out, lines[i]);
        free(lines[i]);
    }
    free(lines);
    return out;
}

/* The registry as the open project p sees it (see t_state_of). */
static inline char *t_state(packer_project *p)
{
    packer_response *r = NULL;
    if (packer_list_assets(p, &r) != 0)
        return NULL;
    cJSON *j = t_json(r);
    char *s = j ? t_state_of(j) : NULL;
    cJSON_Delete(j);
    packer_response_free(r);
    return s;
}

/* The registry on disk: a fresh project (which rolls a journal forward)
 * opened, listed and closed. NULL when it does not open. */
static inline char *t_disk_state(const char *root)
{
    packer_project *p = NULL;
    if (packer_project_open(root, NULL, &p) != 0)
        return NULL;
    char *s = t_state(p);
    packer_project_close(p);
    return s;
}

/* The packer CLI under test. */
static inline const char *t_packer_bin(void)
{
    const char *bin = getenv("PACKER_BIN");
    return bin && *bin ? bin : "build/packer";
}

/* Start argv[0] with stdout and stderr appended to `log` (NULL:
 * /dev/null); returns the pid or -1. */
static inline pid_t t_spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    execv(argv[0], argv);
    _exit(127);
}

/* Exit status of pid (128 + signal when killed), -1 on error. */
static inline int t_wait(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- an event recorder ------------------------------------------------ */

#define T_MAX_EVENTS 4096

typedef struct {
    packer_event_kind kind;
    uint64_t seq;
    char op[48];
    char state[24]; /* runtime_state of runtime_state_changed, else "" */
    char summary[160];
    int on_dispatcher; /* delivered on another thread than t_events.caller */
} t_event;

/* Subscribe t_record with a t_events as userdata; read under mu (or after
 * packer_bus_flush). */
typedef struct {
    pthread_mutex_t mu;
    pthread_t caller;
    size_t n, dropped;
    t_event v[T_MAX_EVENTS];
} t_events;

static inline void t_events_init(t_events *e)
{
    memset(e, 0, sizeof *e);
    pthread_mutex_init(&e->mu, NULL);
    e->caller = pthread_self();
}

static inline void t_record(const packer_event *ev, void *ud)
{
    t_events *e = ud;
    t_event rec = {.kind = packer_event_get_kind(ev), .seq = packer_event_sequence(ev)};
    snprintf(rec.op, sizeof rec.op, "%s", packer_event_operation_id(ev));
    snprintf(rec.summary, sizeof rec.summary, "%s", packer_event_summary(ev));
    rec.on_dispatcher = !pthread_equal(pthread_self(), e->caller);
    if (rec.kind == PACKER_EV_RUNTIME_STATE_CHANGED) {
        char *line = packer_event_json(ev);
        cJSON *j = line ? cJSON_Parse(line) : NULL;
        const char *st = t_str(j, "runtime_state");
        snprintf(rec.state, sizeof rec.state, "%s", st ? st : "?");
        cJSON_Delete(j);
        packer_free(line);
    }
    pthread_mutex_lock(&e->mu);
    if (e->n < T_MAX_EVENTS)
        e->v[e->n++] = rec;
    else
        e->dropped++;
    pthread_mutex_unlock(&e->mu);
}

/* How many recorded events belong to operation op (and have kind k, or
 * any kind when k < 0). */
static inline size_t t_count(t_events *e, const char *op, int k)
{
    size_t n = 0;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->n; i++)
        n += strcmp(e->v[i].op, op) == 0 && (k < 0 || (int)e->v[i].kind == k);
    pthread_mutex_unlock(&e->mu);
    return n;
}

/* The runtime states announced during op, space separated ("diverged
 * reconciling healthy committing healthy"). */
static inline void t_states(t_events *e, const char *op, char *out, size_t cap)
{
    out[0] = '\0';
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->v[i].op, op) == 0 && e->v[i].kind == PACKER_EV_RUNTIME_STATE_CHANGED) {
            size_t len = strlen(out);
            snprintf(out + len, cap - len, "%s%s", len ? " " : "", e->v[i].state);
        }
    pthread_mutex_unlock(&e->mu);
}

#endif
