/*
 * test_serve.c - `packer serve` driven over pipes, as a host in another
 * language would ($PACKER_BIN, default build/packer).
 *
 * A scripted session calls every method (every service, initialize,
 * shutdown, exit) and checks each result and that an operation's events
 * (monotonic sequence, build_started before build_finished) all arrive
 * before its response. A server started outside a workspace creates one
 * with init_workspace. Malformed input - garbage headers, bad and huge
 * Content-Length, an overlong header line, invalid JSON, non-objects,
 * batches, unknown methods, wrong params - each gets its error and the
 * server keeps serving. $/cancelRequest stops a long build mid-way and a
 * write queued behind it; a read is answered while the build runs. A
 * client that goes away (pipes closed, or only its reading end) makes the
 * server cancel, exit promptly and leave the workspace unlocked: a
 * `packer register` from another process right after succeeds. An edit
 * under the server (observation is on) arrives as an asset_changed
 * notification and list_assets then says the asset is stale.
 *
 * Threads: main only (the server is another process).
 */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>

#include "check.h"
#include "support.h"

#define SLOW_ASSETS 120
#define TIMEOUT_MS 120000 /* generous: the machine is shared, sanitizers are slow */

typedef struct {
    pid_t pid;
    int to, from; /* the server's stdin (we write) and stdout (we read) */
    char buf[1 << 16];
    size_t pos, end;
    cJSON *events[4096]; /* notifications received, in order */
    size_t nevents;
    char log[4200];
} srv;

static const char SLOW_RECIPE[] = "return { version = '1', build = function(ctx)\n"
                                  "  local x = 0\n"
                                  "  for i = 1, 2000000 do x = x + i end\n"
                                  "  return ctx:read(1)\n"
                                  "end }\n";

static char bin[4096]; /* absolute: the server starts in the workspace */

static int srv_start(srv *s, const char *dir)
{
    memset(s, 0, sizeof *s);
    int in[2], out[2];
    /* close-on-exec: a later server must not hold this one's pipes open */
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
        return -1;
    snprintf(s->log, sizeof s->log, "%s.serve-log", dir);
    s->pid = fork();
    if (s->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0)
            dup2(fd, 2);
        close(in[1]);
        close(out[0]);
        if (chdir(dir) != 0)
            _exit(126);
        execl(bin, bin, "serve", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    s->to = in[1];
    s->from = out[0];
    return s->pid > 0 ? 0 : -1;
}

static void srv_raw(srv *s, const char *bytes, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(s->to, bytes + off, n - off);
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

static void srv_send(srv *s, const char *json)
{
    char head[64];
    int n = snprintf(head, sizeof head, "Content-Length: %zu\r\n\r\n", strlen(json));
    srv_raw(s, head, (size_t)n);
    srv_raw(s, json, strlen(json));
}

/* One byte from the server; -1 at EOF or after TIMEOUT_MS of silence. */
static int srv_byte(srv *s)
{
    if (s->pos == s->end) {
        struct pollfd pfd = {.fd = s->from, .events = POLLIN};
        if (poll(&pfd, 1, TIMEOUT_MS) <= 0)
            return -1;
        ssize_t n = read(s->from, s->buf, sizeof s->buf);
        if (n <= 0)
            return -1;
        s->pos = 0;
        s->end = (size_t)n;
    }
    return (unsigned char)s->buf[s->pos++];
}

/* The next message, parsed; NULL at EOF, on timeout or on a bad frame. */
static cJSON *srv_recv(srv *s)
{
    char head[256];
    size_t n = 0;
    while (n + 1 < sizeof head) {
        int c = srv_byte(s);
        if (c < 0)
            return NULL;
        head[n++] = (char)c;
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[n] = '\0';
    size_t len;
    if (sscanf(head, "Content-Length: %zu", &len) != 1)
        return NULL;
    char *body = malloc(len + 1);
    for (size_t i = 0; body && i < len; i++) {
        int c = srv_byte(s);
        if (c < 0) {
            free(body);
            return NULL;
        }
        body[i] = (char)c;
    }
    cJSON *j = body ? cJSON_ParseWithLength(body, len) : NULL;
    free(body);
    return j;
}

/* The answer to request id; notifications meanwhile are kept. */
static cJSON *srv_wait(srv *s, int id)
{
    for (;;) {
        cJSON *m = srv_recv(s);
        if (!m)
            return NULL;
        const cJSON *mid = cJSON_GetObjectItemCaseSensitive(m, "id");
        if (!mid) {
            if (s->nevents < sizeof s->events / sizeof *s->events)
                s->events[s->nevents++] = m;
            else
                cJSON_Delete(m);
            continue;
        }
        if (cJSON_IsNumber(mid) && mid->valueint == id)
            return m;
        if (id == 0 && cJSON_IsNull(mid))
            return m; /* id 0 stands for "the error with id null" */
        cJSON_Delete(m);
    }
}

static cJSON *srv_call(srv *s, int id, const char *method, const char *params)
{
    char msg[8192];
    snprintf(msg, sizeof msg, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"%s\"%s%s}", id, method,
             params ? ",\"params\":" : "", params ? params : "");
    srv_send(s, msg);
    return srv_wait(s, id);
}

static int srv_exit(srv *s)
{
    close(s->to);
    close(s->from);
    int code = t_wait(s->pid);
    for (size_t i = 0; i < s->nevents; i++)
        cJSON_Delete(s->events[i]);
    s->nevents = 0;
    return code;
}

/* The orderly stop: shutdown (request id), exit; the server's exit code. */
static int srv_stop(srv *s, int id)
{
    cJSON_Delete(srv_call(s, id, "shutdown", NULL));
    srv_send(s, "{\"jsonrpc\":\"2.0\",\"method\":\"exit\"}");
    return srv_exit(s);
}

/* After the server is gone: its log and the test's directory. */
static void srv_done(srv *s, char *root)
{
    unlink(s->log);
    t_rmrf(root);
    free(root);
}

static const cJSON *result(const cJSON *m)
{
    return cJSON_GetObjectItemCaseSensitive(m, "result");
}

static int err_code(const cJSON *m)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(m, "error");
    return e ? (int)t_num(e, "code") : 0;
}

/* Every event of op so far: sequence strictly increasing, and returns how
 * many there were; *kinds gets their kinds, space separated. */
static int op_events(srv *s, const char *op, char *kinds, size_t cap)
{
    int n = 0;
    double last = 0;
    if (kinds)
        kinds[0] = '\0';
    for (size_t i = 0; op && i < s->nevents; i++) {
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(s->events[i], "params");
        const char *o = t_str(ev, "operation_id");
        if (!o || strcmp(o, op) != 0)
            continue;
        double seq = t_num(ev, "sequence");
        CHECK(seq > last);
        last = seq;
        if (kinds) {
            size_t len = strlen(kinds);
            snprintf(kinds + len, cap - len, "%s%s", len ? " " : "", t_str(ev, "kind"));
        }
        n++;
    }
    return n;
}

/* The operation id of a service result. */
static const char *op_of(const cJSON *m)
{
    return t_str(result(m), "operation_id");
}

/* ---- the session -------------------------------------------------------- */

static void test_session(void)
{
    char *root = t_workspace("serve-session");
    REQUIRE(root);
    t_asset(root, "assets/a");
    t_asset(root, "assets/b");
    t_write(root, "stray.txt", "not an asset\n");
    srv s;
    int started = srv_start(&s, root);
    REQUIRE(started == 0);

    cJSON *m = srv_call(&s, 1, "initialize", "{}");
    const cJSON *r = result(m);
    CHECK(r && strcmp(t_str(cJSON_GetObjectItem(r, "server"), "name"), "packer") == 0);
    const char *wsroot = t_str(cJSON_GetObjectItem(r, "workspace"), "root");
    CHECK(wsroot && strcmp(wsroot, root) == 0);
    static const char *const ALL[] = {"init_workspace",
                                      "register_asset",
                                      "include_asset_in_build",
                                      "exclude_asset_from_build",
                                      "remove_asset",
                                      "list_assets",
                                      "get_asset_details",
                                      "status",
                                      "doctor",
                                      "build",
                                      "quarantine",
                                      "quarantine_list",
                                      "restore",
                                      "initialize",
                                      "shutdown",
                                      "exit",
                                      "$/cancelRequest"};
    for (size_t i = 0; i < sizeof ALL / sizeof *ALL; i++) {
        int found = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(r, "methods")) found |=
            strcmp(it->valuestring, ALL[i]) == 0;
        CHECK(found);
    }
    cJSON_Delete(m);

    m = srv_call(&s, 2, "init_workspace", "{}");
    CHECK(t_status_is(result(m), "refused") && t_has_blocker(result(m), "already_initialized"));
    cJSON_Delete(m);

    m = srv_call(&s, 3, "register_asset", "{\"paths\": [\"assets/a\", \"assets/b\"]}");
    char kinds[4096];
    CHECK(t_status_is(result(m), "ok"));
    CHECK(op_events(&s, op_of(m), kinds, sizeof kinds) >= 3);
    CHECK(strstr(kinds, "asset_discovered") != NULL); /* written before the response */
    cJSON_Delete(m);

    m = srv_call(&s, 4, "list_assets", "{\"filter\": \"all\"}");
    CHECK(t_status_is(result(m), "ok"));
    CHECK(t_num(cJSON_GetObjectItem(result(m), "data"), "count") == 2);
    cJSON_Delete(m);

    m = srv_call(&s, 5, "get_asset_details", "{\"asset\": \"assets/a\"}");
    const cJSON *asset = cJSON_GetObjectItem(cJSON_GetObjectItem(result(m), "data"), "asset");
    CHECK(t_status_is(result(m), "ok") && t_str(asset, "root") &&
          strcmp(t_str(asset, "root"), "assets/a") == 0);
    cJSON_Delete(m);

    m = srv_call(&s, 6, "status", NULL);
    CHECK(t_status_is(result(m), "ok"));
    CHECK(t_num(cJSON_GetObjectItem(cJSON_GetObjectItem(result(m), "data"), "assets"),
                "registered") == 2);
    cJSON_Delete(m);

    m = srv_call(&s, 7, "exclude_asset_from_build", "{\"asset\": \"assets/b\"}");
    CHECK(t_status_is(result(m), "ok"));
    cJSON_Delete(m);
    m = srv_call(&s, 8, "include_asset_in_build", "{\"asset\": \"assets/b\"}");
    CHECK(t_status_is(result(m), "ok"));
    CHECK(strcmp(t_str(result(m), "operation_class"), "registry_mutation") == 0);
    cJSON_Delete(m);

    m = srv_call(&s, 9, "doctor", "{}");
    CHECK(t_status_is(result(m), "ok"));
    cJSON_Delete(m);

    m = srv_call(&s, 10, "build", "{\"jobs\": 2}");
    CHECK(t_status_is(result(m), "ok"));
    CHECK(op_events(&s, op_of(m), kinds, sizeof kinds) >= 2);
    const char *bs = strstr(kinds, "build_started"), *bf = strstr(kinds, "build_finished");
    CHECK(bs && bf && bs < bf); /* both before the response, in causal order */
    CHECK(t_exists(root, "build/assets.pack"));
    cJSON_Delete(m);

    m = srv_call(&s, 11, "quarantine", "{\"paths\": [\"stray.txt\"], \"consent\": true}");
    CHECK(t_status_is(result(m), "ok"));
    CHECK(!t_exists(root, "stray.txt"));
    cJSON_Delete(m);
    m = srv_call(&s, 12, "quarantine_list", "{}");
    CHECK(t_status_is(result(m), "ok"));
    const cJSON *recs = cJSON_GetObjectItem(cJSON_GetObjectItem(result(m), "data"), "records");
    const char *qid = t_str(cJSON_GetArrayItem(recs, 0), "id");
    CHECK(qid != NULL);
    char params[256];
    snprintf(params, sizeof params, "{\"id\": \"%s\"}", qid ? qid : "?");
    cJSON_Delete(m);
    m = srv_call(&s, 13, "restore", params);
    CHECK(t_status_is(result(m), "ok"));
    CHECK(t_exists(root, "stray.txt"));
    cJSON_Delete(m);

    m = srv_call(&s, 14, "remove_asset", "{\"asset\": \"assets/b\"}");
    CHECK(t_status_is(result(m), "ok"));
    cJSON_Delete(m);
    m = srv_call(&s, 15, "list_assets", NULL);
    CHECK(t_num(cJSON_GetObjectItem(result(m), "data"), "count") == 1);
    cJSON_Delete(m);

    /* string ids are echoed as sent */
    srv_send(&s, "{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"status\"}");
    m = srv_recv(&s);
    while (m && !cJSON_GetObjectItem(m, "id")) {
        cJSON_Delete(m);
        m = srv_recv(&s);
    }
    CHECK(m && t_str(m, "id") && strcmp(t_str(m, "id"), "abc") == 0);
    cJSON_Delete(m);

    m = srv_call(&s, 16, "shutdown", NULL);
    CHECK(m && cJSON_IsNull(result(m)));
    cJSON_Delete(m);
    m = srv_call(&s, 17, "list_assets", NULL);
    CHECK(err_code(m) == -32003); /* shutting down */
    cJSON_Delete(m);
    srv_send(&s, "{\"jsonrpc\":\"2.0\",\"method\":\"exit\"}");
    CHECK(srv_recv(&s) == NULL); /* the server closes its end */
    CHECK(srv_exit(&s) == 0);
    srv_done(&s, root);
}

/* Started outside a workspace: init_workspace makes one and opens it. */
static void test_lazy_init(void)
{
    char *dir = t_tmpdir("serve-init");
    REQUIRE(dir);
    srv s;
    int started = srv_start(&s, dir);
    REQUIRE(started == 0);
    cJSON *m = srv_call(&s, 1, "initialize", NULL);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(result(m), "workspace")));
    cJSON_Delete(m);
    m = srv_call(&s, 2, "list_assets", NULL);
    CHECK(err_code(m) == -32002);
    cJSON_Delete(m);
    m = srv_call(&s, 3, "init_workspace", "{\"name\": \"lazy\"}");
    CHECK(t_status_is(result(m), "ok"));
    cJSON_Delete(m);
    CHECK(t_exists(dir, "packer.json"));
    t_asset(dir, "assets/x");
    m = srv_call(&s, 4, "register_asset", "{\"paths\": [\"assets/x\"]}");
    CHECK(t_status_is(result(m), "ok"));
    cJSON_Delete(m);
    m = srv_call(&s, 5, "init_workspace", NULL);
    CHECK(t_status_is(result(m), "refused"));
    cJSON_Delete(m);
    /* exit without shutdown: exit code 1, as LSP servers do */
    srv_send(&s, "{\"jsonrpc\":\"2.0\",\"method\":\"exit\"}");
    CHECK(srv_exit(&s) == 1);
    char *state = t_disk_state(dir);
    CHECK(state && strstr(state, "assets/x"));
    free(state);
    srv_done(&s, dir);
}

/* ---- malformed input ------------------------------------------------------ */

/* The next message is an error with id null and this code. */
static void expect_null_error(srv *s, int code)
{
    cJSON *m = srv_wait(s, 0);
    CHECK(m && err_code(m) == code);
    cJSON_Delete(m);
}

/* The server still answers. */
static void still_serving(srv *s, int id)
{
    cJSON *m = srv_call(s, id, "status", NULL);
    CHECK(t_status_is(result(m), "ok"));
    cJSON_Delete(m);
}

static void test_malformed(void)
{
    char *root = t_workspace("serve-bad");
    REQUIRE(root);
    t_asset(root, "assets/a");
    srv s;
    int started = srv_start(&s, root);
    REQUIRE(started == 0);

    srv_raw(&s, "this is not a header\r\n\r\n", 24);
    expect_null_error(&s, -32700);
    still_serving(&s, 1);

    const char *bad_len = "Content-Length: 12abc\r\n\r\n{}";
    srv_raw(&s, bad_len, strlen(bad_len));
    expect_null_error(&s, -32700);
    still_serving(&s, 2);

    const char *huge = "Content-Length: 999999999999\r\n\r\n";
    srv_raw(&s, huge, strlen(huge));
    expect_null_error(&s, -32700);
    still_serving(&s, 3);

    const char *none = "Content-Type: application/json\r\n\r\n{}";
    srv_raw(&s, none, strlen(none));
    expect_null_error(&s, -32700);
    still_serving(&s, 4);

    char *longline = malloc(20000);
    memset(longline, 'x', 19998);
    memcpy(longline + 19998, "\r\n", 2);
    srv_raw(&s, longline, 20000);
    free(longline);
    expect_null_error(&s, -32700);
    still_serving(&s, 5);

    /* other headers are fine; bare LF line ends too */
    const char *body = "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"status\"}  ";
    char ok[256];
    snprintf(ok, sizeof ok,
             "Content-Type: application/vscode-jsonrpc; charset=utf-8\n"
             "content-length: %zu\n\n%s",
             strlen(body), body);
    srv_raw(&s, ok, strlen(ok));
    cJSON *m = srv_wait(&s, 6);
    CHECK(t_status_is(result(m), "ok"));
    cJSON_Delete(m);

    srv_send(&s, "{\"jsonrpc\": \"2.0\", \"id\": 7, \"method\": ");
    expect_null_error(&s, -32700);
    srv_send(&s, "42");
    expect_null_error(&s, -32600);
    srv_send(&s, "[{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"status\"}]");
    expect_null_error(&s, -32600); /* batches are not supported */
    srv_send(&s, "{\"id\":9,\"method\":\"status\"}");
    m = srv_wait(&s, 9);
    CHECK(err_code(m) == -32600); /* no "jsonrpc": "2.0" */
    cJSON_Delete(m);
    srv_send(&s, "{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"status\"}");
    expect_null_error(&s, -32600);
    srv_send(&s, "{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":7}");
    m = srv_wait(&s, 10);
    CHECK(err_code(m) == -32600);
    cJSON_Delete(m);

    m = srv_call(&s, 11, "no_such_service", "{}");
    CHECK(err_code(m) == -32601);
    cJSON_Delete(m);
    m = srv_call(&s, 12, "list_assets", "[1, 2]");
    CHECK(err_code(m) == -32602);
    cJSON_Delete(m);
    m = srv_call(&s, 13, "get_asset_details", "{\"asset\": 5}");
    CHECK(err_code(m) == -32602);
    const cJSON *data = cJSON_GetObjectItem(cJSON_GetObjectItem(m, "error"), "data");
    CHECK(t_status_is(data, "refused") && t_has_blocker(data, "invalid_params"));
    cJSON_Delete(m);
    m = srv_call(&s, 14, "build", "{\"jobs\": \"many\"}");
    CHECK(err_code(m) == -32602);
    cJSON_Delete(m);
    /* a refusal that is not about params stays a result */
    m = srv_call(&s, 15, "get_asset_details", "{\"asset\": \"nope\"}");
    CHECK(t_status_is(result(m), "refused") && t_has_blocker(result(m), "unknown_asset"));
    cJSON_Delete(m);

    /* notifications get no answer, even unknown ones */
    srv_send(&s, "{\"jsonrpc\":\"2.0\",\"method\":\"no_such_notification\"}");
    srv_send(&s, "{\"jsonrpc\":\"2.0\",\"method\":\"list_assets\"}");
    srv_send(&s, "{\"jsonrpc\":\"2.0\",\"id\":16,\"method\":\"status\"}");
    m = srv_recv(&s);
    while (m && !cJSON_GetObjectItem(m, "id")) { /* events may come first */
        cJSON_Delete(m);
        m = srv_recv(&s);
    }
    CHECK(m && t_num(m, "id") == 16);
    cJSON_Delete(m);
    CHECK(srv_stop(&s, 17) == 0);
    srv_done(&s, root);
}

/* ---- cancellation and client death ----------------------------------------- */

/* A workspace with SLOW_ASSETS assets of a slow recipe, registered. */
static char *slow_workspace(const char *tag)
{
    char *root = t_workspace(tag);
    if (!root)
        return NULL;
    t_write(root, "recipes/slow.lua", SLOW_RECIPE);
    t_asset(root, "assets/fast");
    char *cmd = NULL;
    size_t cap = 0;
    FILE *args = open_memstream(&cmd, &cap);
    for (int i = 0; i < SLOW_ASSETS; i++) {
        char rel[128], text[64];
        snprintf(rel, sizeof rel, "assets/slow%03d/asset.json", i);
        t_write(root, rel, "{\"kind\": \"slow\", \"inputs\": [\"data.txt\"]}\n");
        snprintf(rel, sizeof rel, "assets/slow%03d/data.txt", i);
        snprintf(text, sizeof text, "slow %d\n", i);
        t_write(root, rel, text);
        fprintf(args, "%s\"assets/slow%03d\"", i ? "," : "", i);
    }
    fclose(args);
    packer_project *p = NULL;
    packer_response *r = NULL;
    char *params = malloc(cap + 64);
    snprintf(params, cap + 64, "{\"paths\": [%s, \"assets/fast\"]}", cmd);
    if (packer_project_open(root, NULL, &p) == 0)
        packer_call(p, "register_asset", params, &r);
    packer_response_free(r);
    packer_project_close(p);
    free(params);
    free(cmd);
    return root;
}

/* Wait for an event of this kind (and summary prefix) from op (any op
 * when NULL); 1 when it came. */
static int wait_event(srv *s, const char *kind, const char *prefix)
{
    for (size_t seen = 0;;) {
        for (; seen < s->nevents; seen++) {
            const cJSON *ev = cJSON_GetObjectItemCaseSensitive(s->events[seen], "params");
            const char *k = t_str(ev, "kind"), *sum = t_str(ev, "summary");
            if (k && strcmp(k, kind) == 0 &&
                (!prefix || (sum && strncmp(sum, prefix, strlen(prefix)) == 0)))
                return 1;
        }
        cJSON *m = srv_recv(s);
        if (!m)
            return 0;
        if (cJSON_GetObjectItem(m, "id") || s->nevents == sizeof s->events / sizeof *s->events) {
            cJSON_Delete(m); /* not expected here */
            continue;
        }
        s->events[s->nevents++] = m;
    }
}

static void test_cancel(void)
{
    char *root = slow_workspace("serve-cancel");
    REQUIRE(root);
    srv s;
    int started = srv_start(&s, root);
    REQUIRE(started == 0);
    srv_send(&s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"build\",\"params\":{\"jobs\":1}}");
    CHECK(wait_event(&s, "progress_updated", "running recipes"));
    /* a read is not stuck behind the build; a write queues behind it */
    cJSON *m = srv_call(&s, 2, "list_assets", NULL);
    CHECK(t_status_is(result(m), "ok"));
    cJSON_Delete(m);
    srv_send(&s, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"exclude_asset_from_build\","
                 "\"params\":{\"asset\":\"assets/fast\"}}");
    srv_send(&s, "{\"jsonrpc\":\"2.0\",\"method\":\"$/cancelRequest\",\"params\":{\"id\":3}}");
    m = srv_wait(&s, 3);
    CHECK(err_code(m) == -32800);
    const cJSON *data = cJSON_GetObjectItem(cJSON_GetObjectItem(m, "error"), "data");
    CHECK(t_status_is(data, "refused") && t_has_blocker(data, "cancelled"));
    cJSON_Delete(m);
    srv_send(&s, "{\"jsonrpc\":\"2.0\",\"method\":\"$/cancelRequest\",\"params\":{\"id\":1}}");
    m = srv_wait(&s, 1);
    CHECK(err_code(m) == -32800);
    data = cJSON_GetObjectItem(cJSON_GetObjectItem(m, "error"), "data");
    CHECK(t_status_is(data, "failed") && t_has_blocker(data, "cancelled"));
    char kinds[8192];
    op_events(&s, t_str(data, "operation_id"), kinds, sizeof kinds);
    CHECK(strstr(kinds, "build_finished") != NULL); /* before the error */
    CHECK(!t_exists(root, "build/assets.pack"));
    cJSON_Delete(m);
    /* cancelling an id that is done or unknown is harmless */
    srv_send(&s, "{\"jsonrpc\":\"2.0\",\"method\":\"$/cancelRequest\",\"params\":{\"id\":99}}");
    m = srv_call(&s, 4, "get_asset_details", "{\"asset\": \"assets/fast\"}");
    const cJSON *asset = cJSON_GetObjectItem(cJSON_GetObjectItem(result(m), "data"), "asset");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(asset, "included"))); /* the write never ran */
    cJSON_Delete(m);
    CHECK(srv_stop(&s, 5) == 0);
    srv_done(&s, root);
}

/* Another process can write the workspace: the server left no lock. */
static int cli_register(const char *root, const char *rel)
{
    t_asset(root, rel);
    char *argv[] = {bin, "-C", (char *)root, "register", (char *)rel, NULL};
    return t_wait(t_spawn(argv, NULL));
}

static void test_client_death(int stdin_too)
{
    char *root = slow_workspace("serve-death");
    REQUIRE(root);
    srv s;
    int started = srv_start(&s, root);
    REQUIRE(started == 0);
    srv_send(&s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"build\",\"params\":{\"jobs\":1}}");
    CHECK(wait_event(&s, "build_started", NULL));
    double t0 = t_now();
    close(s.from); /* the client stops listening: the next event write fails */
    if (stdin_too)
        close(s.to); /* and goes away altogether */
    int code = t_wait(s.pid);
    double took = t_now() - t0;
    printf("# server exited %.2f s after the client %s\n", took,
           stdin_too ? "closed both pipes" : "closed its reading end");
    CHECK(code == 1);
    CHECK(took < 60);
    if (!stdin_too)
        close(s.to);
    for (size_t i = 0; i < s.nevents; i++)
        cJSON_Delete(s.events[i]);
    CHECK(cli_register(root, "assets/after") == 0);
    CHECK(!t_exists(root, "build/assets.pack")); /* the build was cancelled */
    char *log = t_read("/", s.log + 1);
    CHECK(log && strstr(log, "cancelling"));
    free(log);
    srv_done(&s, root);
}

/* Observation is on: an edit under the server arrives as notifications. */
static void test_observed(void)
{
    char *root = t_workspace("serve-observe");
    REQUIRE(root);
    t_asset(root, "assets/a");
    packer_project *p = NULL;
    packer_response *r = NULL;
    if (packer_project_open(root, NULL, &p) == 0)
        packer_call(p, "register_asset", "{\"paths\": [\"assets/a\"]}", &r);
    packer_response_free(r);
    packer_project_close(p);
    srv s;
    int started = srv_start(&s, root);
    REQUIRE(started == 0);
    cJSON *m = srv_call(&s, 1, "status", NULL);
    CHECK(t_status_is(result(m), "ok"));
    cJSON_Delete(m);
    /* serve turned observation on before it answered: the watches are set */
    t_write(root, "assets/a/data.txt", "edited under the server\n");
    CHECK(wait_event(&s, "asset_changed", NULL));
    m = srv_call(&s, 2, "list_assets", NULL);
    const cJSON *a = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(result(m), "data"), "assets"), 0);
    CHECK(t_str(a, "freshness") && strcmp(t_str(a, "freshness"), "stale") == 0);
    cJSON_Delete(m);
    CHECK(srv_stop(&s, 3) == 0);
    srv_done(&s, root);
}

#define PIPELINED 3000

static void *send_many(void *arg)
{
    srv *s = arg;
    char msg[128];
    for (int i = 1; i <= PIPELINED; i++) {
        snprintf(msg, sizeof msg, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"%s\"}", i,
                 i % 2 ? "status" : "list_assets");
        srv_send(s, msg);
    }
    return NULL;
}

/* Requests pipelined without waiting (more than the server keeps in
 * flight: it stops reading until there is room) are all answered once. */
static void test_pipelined(void)
{
    char *root = t_workspace("serve-pipe");
    REQUIRE(root);
    srv s;
    int started = srv_start(&s, root);
    REQUIRE(started == 0);
    pthread_t t;
    pthread_create(&t, NULL, send_many, &s);
    static char seen[PIPELINED + 1];
    memset(seen, 0, sizeof seen);
    int answers = 0, dup = 0, oks = 0;
    while (answers < PIPELINED) {
        cJSON *m = srv_recv(&s);
        if (!m)
            break;
        const cJSON *id = cJSON_GetObjectItem(m, "id");
        if (cJSON_IsNumber(id) && id->valueint >= 1 && id->valueint <= PIPELINED) {
            dup += seen[id->valueint]++;
            answers++;
            oks += t_status_is(result(m), "ok");
        }
        cJSON_Delete(m);
    }
    pthread_join(t, NULL);
    CHECK(answers == PIPELINED);
    CHECK(dup == 0);
    CHECK(oks == PIPELINED);
    CHECK(srv_stop(&s, PIPELINED + 1) == 0);
    srv_done(&s, root);
}

/* SIGTERM: the same orderly stop. */
static void test_signal(void)
{
    char *root = t_workspace("serve-signal");
    REQUIRE(root);
    srv s;
    int started = srv_start(&s, root);
    REQUIRE(started == 0);
    cJSON *m = srv_call(&s, 1, "status", NULL);
    CHECK(t_status_is(result(m), "ok"));
    cJSON_Delete(m);
    kill(s.pid, SIGTERM);
    CHECK(srv_exit(&s) == 1);
    CHECK(cli_register(root, "assets/x") == 0);
    srv_done(&s, root);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (!realpath(t_packer_bin(), bin) || access(bin, X_OK) != 0) {
        printf("# %s not found: serve is not tested\n", t_packer_bin());
        CHECK_DONE();
    }
    test_session();
    test_lazy_init();
    test_malformed();
    test_cancel();
    test_client_death(1);
    test_client_death(0);
    test_observed();
    test_pipelined();
    test_signal();
    CHECK_DONE();
}
