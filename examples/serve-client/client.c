/*
 * client.c - a small client of `packer serve`, written the way a tool in
 * another process (an editor extension, a test harness, Studio tooling
 * that does not link C) drives packer: JSON-RPC 2.0 over the server's
 * stdin/stdout with Content-Length framing (docs/serve-protocol.md).
 *
 * It starts the server as a child over two pipes, then runs one session:
 * initialize, register the asset roots given on the command line, list
 * the assets, build (printing every event notification as it arrives),
 * shutdown and exit, and prints what it got. Only libc and cJSON.
 *
 *   usage: serve-client PACKER WORKSPACE [ASSET_ROOT...]
 *
 * PACKER is the packer binary; WORKSPACE an initialized workspace;
 * ASSET_ROOTs are relative to WORKSPACE. Exit status 0 when every call
 * answered ok and the server exited cleanly.
 *
 * Threads: one. Requests are sent one at a time; notifications that
 * arrive before a response are printed on the way.
 */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static FILE *to_server, *from_server;
static int next_id = 1;

static void send_msg(cJSON *msg)
{
    char *text = cJSON_PrintUnformatted(msg);
    fprintf(to_server, "Content-Length: %zu\r\n\r\n%s", strlen(text), text);
    fflush(to_server);
    free(text);
}

/* The next message, or NULL when the server closed its stdout. */
static cJSON *recv_msg(void)
{
    char line[512];
    long len = -1;
    while (fgets(line, sizeof line, from_server)) {
        if (strcmp(line, "\r\n") == 0 || strcmp(line, "\n") == 0)
            break;
        if (strncmp(line, "Content-Length:", 15) == 0)
            len = strtol(line + 15, NULL, 10);
    }
    if (len < 0)
        return NULL;
    char *body = malloc((size_t)len + 1);
    if (!body || fread(body, 1, (size_t)len, from_server) != (size_t)len) {
        free(body);
        return NULL;
    }
    cJSON *msg = cJSON_ParseWithLength(body, (size_t)len);
    free(body);
    return msg;
}

static void print_event(const cJSON *ev)
{
    const cJSON *progress = cJSON_GetObjectItem(ev, "progress");
    printf("  event %-22s #%-3d %s", cJSON_GetStringValue(cJSON_GetObjectItem(ev, "kind")),
           (int)cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "sequence")),
           cJSON_GetStringValue(cJSON_GetObjectItem(ev, "summary")));
    if (progress)
        printf(" (%d/%d)", (int)cJSON_GetNumberValue(cJSON_GetObjectItem(progress, "done")),
               (int)cJSON_GetNumberValue(cJSON_GetObjectItem(progress, "total")));
    printf("\n");
}

/* Call method with params (taken; NULL for none) and return the response
 * message (caller deletes); events on the way are printed. */
static cJSON *call(const char *method, cJSON *params)
{
    int id = next_id++;
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "jsonrpc", "2.0");
    cJSON_AddNumberToObject(msg, "id", id);
    cJSON_AddStringToObject(msg, "method", method);
    if (params)
        cJSON_AddItemToObject(msg, "params", params);
    send_msg(msg);
    cJSON_Delete(msg);
    cJSON *in;
    while ((in = recv_msg())) {
        const cJSON *rid = cJSON_GetObjectItem(in, "id");
        if (!rid && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(in, "method")), "event") == 0)
            print_event(cJSON_GetObjectItem(in, "params"));
        else if (rid && (int)cJSON_GetNumberValue(rid) == id)
            return in;
        cJSON_Delete(in);
    }
    return NULL;
}

/* Print a service response's status and summary; 1 when status is ok. */
static int report(const char *method, const cJSON *resp)
{
    const cJSON *res = cJSON_GetObjectItem(resp, "result");
    const cJSON *err = cJSON_GetObjectItem(resp, "error");
    if (err) {
        printf("%s: error %d: %s\n", method,
               (int)cJSON_GetNumberValue(cJSON_GetObjectItem(err, "code")),
               cJSON_GetStringValue(cJSON_GetObjectItem(err, "message")));
        return 0;
    }
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItem(res, "status"));
    printf("%s: %s: %s\n", method, status ? status : "?",
           cJSON_GetStringValue(cJSON_GetObjectItem(res, "summary")));
    return status && strcmp(status, "ok") == 0;
}

static pid_t start_server(const char *packer, const char *workspace)
{
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        execl(packer, packer, "-C", workspace, "serve", (char *)NULL);
        perror(packer);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_server = fdopen(in[1], "w");
    from_server = fdopen(out[0], "r");
    return pid;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: serve-client PACKER WORKSPACE [ASSET_ROOT...]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a server that dies shows as EOF, not a signal */
    pid_t pid = start_server(argv[1], argv[2]);
    if (pid < 0)
        return 1;
    int ok = 1;

    cJSON *resp = call("initialize", NULL);
    const cJSON *res = cJSON_GetObjectItem(resp, "result");
    const cJSON *ws = cJSON_GetObjectItem(res, "workspace");
    printf("initialize: %s %s, workspace %s\n",
           cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(res, "server"), "name")),
           cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(res, "server"), "version")),
           ws ? cJSON_GetStringValue(cJSON_GetObjectItem(ws, "root")) : "(none)");
    ok &= resp != NULL;
    cJSON_Delete(resp);

    if (argc > 3) {
        cJSON *params = cJSON_CreateObject();
        cJSON *paths = cJSON_AddArrayToObject(params, "paths");
        for (int i = 3; i < argc; i++)
            cJSON_AddItemToArray(paths, cJSON_CreateString(argv[i]));
        resp = call("register_asset", params);
        ok &= report("register_asset", resp);
        cJSON_Delete(resp);
    }

    resp = call("list_assets", NULL);
    ok &= report("list_assets", resp);
    const cJSON *asset;
    cJSON_ArrayForEach(
        asset, cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(resp, "result"), "data"),
                                   "assets"))
        printf("  %s  %-24s %s\n", cJSON_GetStringValue(cJSON_GetObjectItem(asset, "asset_id")),
               cJSON_GetStringValue(cJSON_GetObjectItem(asset, "address")),
               cJSON_IsTrue(cJSON_GetObjectItem(asset, "included")) ? "included" : "excluded");
    cJSON_Delete(resp);

    resp = call("build", NULL); /* its events are printed before its response */
    ok &= report("build", resp);
    cJSON_Delete(resp);

    resp = call("shutdown", NULL);
    ok &= resp && cJSON_IsNull(cJSON_GetObjectItem(resp, "result"));
    cJSON_Delete(resp);
    cJSON *bye = cJSON_CreateObject();
    cJSON_AddStringToObject(bye, "jsonrpc", "2.0");
    cJSON_AddStringToObject(bye, "method", "exit");
    send_msg(bye);
    cJSON_Delete(bye);
    fclose(to_server);
    fclose(from_server);
    int st = 0;
    waitpid(pid, &st, 0);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    printf("server exited with status %d\n", code);
    return ok && code == 0 ? 0 : 1;
}
