/*
 * cli_pack.c - `packer pack ls` and `packer pack cat`: look inside a pack
 * file (docs/pack-format.md) through the standalone reader, pack_reader.h.
 * No workspace is needed; PACKFILE is relative to the current directory
 * (after -C).
 *
 * ls prints a table, or with --json the response object every command
 * prints (status, summary, data.entries, diagnostics, ...). cat writes the
 * blob's bytes to stdout only after they matched their content hash, so a
 * damaged pack never passes off wrong bytes.
 * Exit codes as for every command: 0 done, 1 no such entry, 2 usage, 3 an
 * unreadable or malformed pack, or a blob that fails its hash.
 *
 * Threads: main thread of the CLI.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "internal.h"
#include "pack_reader.h"

enum { EXIT_DONE = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_FAILURE_IO = 3 };

#define CAT_CHUNK (64 * 1024)

const char cli_pack_usage[] = "pack ls PACKFILE [--json] | pack cat PACKFILE ASSET";
const char cli_pack_help[] =
    "Look inside a pack file (docs/pack-format.md); no workspace needed.\n"
    "  pack ls PACKFILE         list its entries: address, asset id, size, XXH3-128 hash\n"
    "    --json                 print the response object (data.entries) instead\n"
    "  pack cat PACKFILE ASSET  write the blob of ASSET (address or asset id) to stdout,\n"
    "                           after checking it against its content hash\n"
    "Exit codes: 0 done, 1 no such entry, 2 usage error, 3 unreadable or malformed\n"
    "pack, or a blob that does not match its hash.";

static int usage(const char *msg, const char *arg)
{
    fprintf(stderr, "packer: %s%s%s\nTry 'packer pack --help'.\n", msg, arg ? " " : "",
            arg ? arg : "");
    return EXIT_USAGE;
}

/* ---- XXH3-128 for pkr_verify ------------------------------------------- */

static void *xxh_begin(void *ud)
{
    (void)ud;
    return hash_stream_new();
}

static void xxh_update(void *st, const void *buf, size_t len)
{
    hash_stream_update(st, buf, len);
}

static void xxh_end(void *st, unsigned char out[PKR_HASH_SIZE])
{
    hash_stream_end(st, out);
}

static const pkr_hasher XXH3_128 = {xxh_begin, xxh_update, xxh_end, NULL};

/* ---- responses ------------------------------------------------------------ */

static resp *pack_resp(void)
{
    char hex[9], id[16];
    hash_random_hex(hex, 4);
    snprintf(id, sizeof id, "op-%s-1", hex);
    return resp_new(PACKER_OP_READ, id);
}

/* Print r (consumed) as the --json response; false when out of memory. */
static bool print_resp(resp *r, packer_state state)
{
    packer_response *out = r ? resp_finish(r, state) : NULL;
    const char *text = out ? packer_response_json(out, 1) : NULL;
    fputs(text ? text : "{\"status\": \"failed\", \"summary\": \"out of memory\"}\n", stdout);
    packer_response_free(out);
    resp_free(r);
    return text != NULL;
}

/* A failure: one line on stderr, and the failed response with --json. */
static int fail(bool json, const char *code, const char *path, const char *msg, int exit_code)
{
    if (json) {
        resp *r = pack_resp();
        if (r) {
            resp_status(r, PACKER_STATUS_FAILED);
            resp_summary(r, "%s: %s", path, msg);
            resp_diag(r, "error", code, NULL, path, msg);
        }
        print_resp(r, PACKER_STATE_FAILED);
    }
    fprintf(stderr, "packer: %s: %s\n", path, msg);
    return exit_code;
}

static int open_pack(const char *path, bool json, pkr_pack **p)
{
    int rc = pkr_open(path, p);
    if (rc == PKR_EIO)
        return fail(json, "pack_unreadable", path, strerror(errno), EXIT_FAILURE_IO);
    if (rc)
        return fail(json, "pack_malformed", path, pkr_strerror(rc), EXIT_FAILURE_IO);
    return EXIT_DONE;
}

/* ---- pack ls ------------------------------------------------------------------ */

static cJSON *entry_json(const pkr_info *e)
{
    char hex[HASH_HEX_LEN + 1];
    hash_to_hex(e->hash, hex);
    cJSON *o = cJSON_CreateObject();
    if (o &&
        (!json_add_str(o, "address", e->address) || !json_add_str(o, "asset_id", e->asset_id) ||
         !json_add_str(o, "hash", hex) || !cJSON_AddNumberToObject(o, "size", (double)e->size) ||
         !cJSON_AddNumberToObject(o, "offset", (double)e->offset))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* data: {pack, format, count, bytes, entries: [...]}; false when out of memory. */
static bool ls_data(resp *r, const pkr_pack *p, const char *path, uint64_t bytes)
{
    cJSON *data = resp_data(r), *entries = cJSON_CreateArray();
    if (!data || !entries || !json_add_item(data, "entries", entries) ||
        !json_add_str(data, "pack", path) ||
        !cJSON_AddNumberToObject(data, "format", PKR_FORMAT_VERSION) ||
        !cJSON_AddNumberToObject(data, "count", (double)pkr_count(p)) ||
        !cJSON_AddNumberToObject(data, "bytes", (double)bytes))
        return false;
    for (size_t i = 0; i < pkr_count(p); i++) {
        pkr_info e;
        pkr_entry(p, i, &e);
        cJSON *o = entry_json(&e);
        if (!o || !cJSON_AddItemToArray(entries, o)) {
            cJSON_Delete(o);
            return false;
        }
    }
    return true;
}

static void ls_table(const pkr_pack *p)
{
    if (pkr_count(p) > 0)
        printf("%-32s  %-16s  %10s  %s\n", "ADDRESS", "ASSET", "SIZE", "HASH");
    for (size_t i = 0; i < pkr_count(p); i++) {
        pkr_info e;
        char hex[HASH_HEX_LEN + 1];
        pkr_entry(p, i, &e);
        hash_to_hex(e.hash, hex);
        printf("%-32s  %-16s  %10llu  %s\n", e.address, e.asset_id, (unsigned long long)e.size,
               hex);
    }
}

static int pack_ls(const char *path, bool json)
{
    pkr_pack *p;
    int code = open_pack(path, json, &p);
    if (code)
        return code;
    uint64_t bytes = 0;
    for (size_t i = 0; i < pkr_count(p); i++) {
        pkr_info e;
        pkr_entry(p, i, &e);
        bytes += e.size;
    }
    char summary[512];
    snprintf(summary, sizeof summary, "%zu entr%s, %llu byte%s of blobs in %s", pkr_count(p),
             pkr_count(p) == 1 ? "y" : "ies", (unsigned long long)bytes, bytes == 1 ? "" : "s",
             path);
    if (json) {
        resp *r = pack_resp();
        if (r) {
            resp_summary(r, "%s", summary);
            if (!ls_data(r, p, path, bytes))
                resp_oom(r);
        }
        code = print_resp(r, PACKER_STATE_HEALTHY) ? EXIT_DONE : EXIT_FAILURE_IO;
    } else {
        ls_table(p);
        printf("%s\n", summary);
    }
    pkr_close(p);
    return code;
}

/* ---- pack cat ------------------------------------------------------------------ */

static int copy_out(const pkr_pack *p, size_t i, const char *path)
{
    static unsigned char buf[CAT_CHUNK];
    pkr_info e;
    pkr_entry(p, i, &e);
    for (uint64_t done = 0; done < e.size;) {
        size_t got;
        int rc = pkr_read_at(p, i, done, buf, sizeof buf, &got);
        if (rc)
            return fail(false, NULL, path, rc == PKR_EIO ? strerror(errno) : pkr_strerror(rc),
                        EXIT_FAILURE_IO);
        if (fwrite(buf, 1, got, stdout) != got)
            break;
        done += got;
    }
    if (fflush(stdout) != 0 || ferror(stdout))
        return fail(false, NULL, "stdout", strerror(errno), EXIT_FAILURE_IO);
    return EXIT_DONE;
}

static int pack_cat(const char *path, const char *asset)
{
    pkr_pack *p;
    int code = open_pack(path, false, &p);
    if (code)
        return code;
    size_t i;
    if (pkr_find_address(p, asset, &i) != 0 && pkr_find_id(p, asset, &i) != 0) {
        fprintf(stderr, "packer: %s: no entry with address or asset id '%s'\n", path, asset);
        pkr_close(p);
        return EXIT_REFUSED;
    }
    int rc = pkr_verify(p, i, &XXH3_128);
    if (rc) {
        pkr_info e;
        pkr_entry(p, i, &e);
        fprintf(stderr, "packer: %s: %s: %s\n", path, e.address,
                rc == PKR_EIO ? strerror(errno) : pkr_strerror(rc));
        code = EXIT_FAILURE_IO;
    } else {
        code = copy_out(p, i, path);
    }
    pkr_close(p);
    return code;
}

/* ---- dispatch -------------------------------------------------------------------- */

int cli_pack(int argc, char **argv, int json)
{
    static const struct option opts[] = {{"json", no_argument, 0, 'j'}, {0, 0, 0, 0}};
    if (argc < 2)
        return usage("pack: ls or cat is required", NULL);
    const char *sub = argv[1];
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
        if (ch != 'j')
            return usage("pack: unknown option", NULL);
        json = 1;
    }
    int nargs = argc - 1 - optind;
    char **args = argv + 1 + optind;
    if (strcmp(sub, "ls") == 0) {
        if (nargs != 1)
            return usage("pack ls: exactly one PACKFILE is required", NULL);
        return pack_ls(args[0], json);
    }
    if (strcmp(sub, "cat") == 0) {
        if (json)
            return usage("pack cat: writes the blob's bytes; --json is not available", NULL);
        if (nargs != 2)
            return usage("pack cat: PACKFILE and ASSET are required", NULL);
        return pack_cat(args[0], args[1]);
    }
    return usage("pack: unknown subcommand", sub);
}
