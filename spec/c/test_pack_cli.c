/*
 * test_pack_cli.c - `packer pack ls` and `packer pack cat`, run as the
 * installed binary ($PACKER_BIN) over packs written with the C API:
 * tables and --json responses, blobs byte for byte by address and by
 * asset id, and the exit codes (0 done, 1 no such entry, 2 usage, 3
 * unreadable or malformed pack, or a blob failing its hash).
 *
 * Threads: main only (forks the CLI).
 */
#define _GNU_SOURCE

#include "check.h"
#include "pack_support.h"

static char *dir;

/* Run packer with args (NULL-terminated); stdout and stderr to files in
 * dir. Returns the exit status. */
static int run(const char *const *args)
{
    char *argv[16] = {(char *)t_packer_bin()};
    for (int i = 0; args[i] && i < 14; i++)
        argv[i + 1] = (char *)args[i];
    char *out = t_path(dir, "stdout"), *err = t_path(dir, "stderr");
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1);
        dup2(e, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    free(out);
    free(err);
    return t_wait(pid);
}

/* What the last run printed on stdout (sets *len) or stderr. */
static unsigned char *out_bytes(size_t *len)
{
    char *p = t_path(dir, "stdout");
    unsigned char *b = p_slurp(p, len);
    free(p);
    return b;
}

static char *text_of(const char *name)
{
    return t_read(dir, name);
}

static void test_ls(const char *pack)
{
    CHECK(run((const char *[]){"pack", "ls", pack, NULL}) == 0);
    char *out = text_of("stdout");
    CHECK(out && strstr(out, "ADDRESS") && strstr(out, "sprites/hero") &&
          strstr(out, "9cf079a50663ea85"));
    char summary[64]; /* the blobs: 0 + big + 32 + 11 + 1 bytes */
    snprintf(summary, sizeof summary, "5 entries, %u bytes of blobs in", P_BIG_SIZE + 44);
    CHECK(out && strstr(out, summary));
    free(out);
    /* --json as a global flag and as an ls option: the same response shape */
    const char *forms[2][6] = {{"--json", "pack", "ls", pack, NULL},
                               {"pack", "ls", pack, "--json", NULL}};
    for (int f = 0; f < 2; f++) {
        CHECK(run(forms[f]) == 0);
        char *text = text_of("stdout");
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        const cJSON *data = cJSON_GetObjectItem(j, "data");
        const cJSON *entries = cJSON_GetObjectItem(data, "entries");
        CHECK(j && strcmp(t_str(j, "status"), "ok") == 0);
        CHECK(j && strcmp(t_str(j, "operation_class"), "read") == 0);
        CHECK(cJSON_IsArray(cJSON_GetObjectItem(j, "diagnostics")));
        CHECK(t_num(data, "count") == 5 && cJSON_GetArraySize(entries) == 5);
        const cJSON *e0 = cJSON_GetArrayItem(entries, 0), *e1 = cJSON_GetArrayItem(entries, 1);
        CHECK(e0 && strcmp(t_str(e0, "address"), "audio/silence") == 0 && t_num(e0, "size") == 0);
        CHECK(e0 && strcmp(t_str(e0, "hash"), "99aa06d3014798d86001c324468d497f") == 0);
        CHECK(e1 && strcmp(t_str(e1, "asset_id"), "9cf079a50663ea85") == 0);
        CHECK(e1 && t_num(e1, "size") == P_BIG_SIZE);
        cJSON_Delete(j);
        free(text);
    }
}

static void test_cat(const char *pack, const p_sample *s)
{
    size_t len;
    CHECK(run((const char *[]){"pack", "cat", pack, "sprites/hero", NULL}) == 0);
    unsigned char *b = out_bytes(&len);
    CHECK(b && len == 11 && memcmp(b, "hero-bytes!", 11) == 0);
    free(b);
    CHECK(run((const char *[]){"pack", "cat", pack, "1111222233334444", NULL}) == 0);
    b = out_bytes(&len);
    CHECK(b && len == 32 && memcmp(b, "enemy-bytes, longer than sixteen", 32) == 0);
    free(b);
    CHECK(run((const char *[]){"pack", "cat", pack, "levels/big", NULL}) == 0);
    b = out_bytes(&len);
    CHECK(b && len == P_BIG_SIZE && memcmp(b, s->big, P_BIG_SIZE) == 0);
    free(b);
    CHECK(run((const char *[]){"pack", "cat", pack, "audio/silence", NULL}) == 0);
    b = out_bytes(&len);
    CHECK(b && len == 0);
    free(b);
    CHECK(run((const char *[]){"pack", "cat", pack, "nope", NULL}) == 1);
    char *err = text_of("stderr");
    CHECK(err && strstr(err, "no entry with address or asset id 'nope'"));
    free(err);
}

/* A flipped blob byte: ls still lists, cat refuses with 3 and no bytes. */
static void test_damaged(const char *pack)
{
    size_t len;
    unsigned char *b = p_slurp(pack, &len);
    REQUIRE(b);
    char *bad = t_path(dir, "bad.pack");
    b[len - 16] ^= 1; /* the last blob is z's one byte, then 15 of padding */
    CHECK(p_spit(bad, b, len) == 0);
    CHECK(run((const char *[]){"pack", "ls", bad, NULL}) == 0);
    CHECK(run((const char *[]){"pack", "cat", bad, "z", NULL}) == 3);
    size_t n;
    unsigned char *out = out_bytes(&n);
    char *err = text_of("stderr");
    CHECK(n == 0 && err && strstr(err, "z: blob does not match its content hash"));
    free(out);
    free(err);
    /* truncated: malformed, with a failed response under --json */
    CHECK(p_spit(bad, b, len - 1) == 0);
    CHECK(run((const char *[]){"pack", "ls", bad, NULL}) == 3);
    CHECK(run((const char *[]){"pack", "cat", bad, "z", NULL}) == 3);
    CHECK(run((const char *[]){"--json", "pack", "ls", bad, NULL}) == 3);
    char *text = text_of("stdout");
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    const cJSON *d = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "diagnostics"), 0);
    CHECK(j && strcmp(t_str(j, "status"), "failed") == 0);
    CHECK(d && strcmp(t_str(d, "code"), "pack_malformed") == 0);
    CHECK(d && strstr(t_str(d, "message"), "truncated"));
    cJSON_Delete(j);
    free(text);
    CHECK(run((const char *[]){"pack", "ls", "/nonexistent.pack", NULL}) == 3);
    err = text_of("stderr");
    CHECK(err && strstr(err, "/nonexistent.pack: No such file or directory"));
    free(err);
    free(b);
    free(bad);
}

static void test_usage(const char *pack)
{
    CHECK(run((const char *[]){"pack", NULL}) == 2);
    CHECK(run((const char *[]){"pack", "ls", NULL}) == 2);
    CHECK(run((const char *[]){"pack", "ls", pack, pack, NULL}) == 2);
    CHECK(run((const char *[]){"pack", "cat", pack, NULL}) == 2);
    CHECK(run((const char *[]){"pack", "frob", pack, NULL}) == 2);
    CHECK(run((const char *[]){"pack", "ls", "--bogus", pack, NULL}) == 2);
    CHECK(run((const char *[]){"--json", "pack", "cat", pack, "z", NULL}) == 2);
    for (int k = 0; k < 3; k++) {
        const char *sub[] = {"ls", "cat", NULL};
        CHECK(run((const char *[]){"pack", sub[k] ? sub[k] : "--help", "--help", NULL}) == 0);
        char *out = text_of("stdout");
        CHECK(out && strstr(out, "pack ls PACKFILE") && strstr(out, "pack cat PACKFILE ASSET"));
        free(out);
    }
    CHECK(run((const char *[]){"help", "pack", NULL}) == 0);
}

int main(void)
{
    dir = t_tmpdir("pack-cli");
    p_sample s;
    if (!dir || p_sample_make(&s, dir, 1) != 0)
        return 1;
    char *pack = t_path(dir, "game.pack");
    CHECK(pack_write(pack, s.e, P_NSAMPLE) == 0);
    test_ls(pack);
    test_cat(pack, &s);
    test_damaged(pack);
    test_usage(pack);
    free(pack);
    p_sample_free(&s);
    t_rmrf(dir);
    free(dir);
    CHECK_DONE();
}
