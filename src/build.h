/*
 * build.h - shared by the build's files (build.c, build_out.c): one
 * build's state and what build_out.c does with it.
 */
#ifndef PACKER_BUILD_H
#define PACKER_BUILD_H

#include "internal.h"

/* What phases 1 and 3 learned about one item. */
typedef struct {
    char key[HASH_HEX_LEN + 1];
    cache_obj obj;
    cache_stat manifest; /* taken before the manifest was read */
    bool manifest_ok;    /* that stat may be remembered (not racy) */
    bool hit, failed, corrupt, memo;
    const char *code; /* a structural error the scan found, with error */
    char *path, *error;
    double ms;
} result;

typedef struct {
    op *o;
    const char *root;
    int rootfd;
    snap *cur;
    char *out_dir; /* absolute */
    bool clean, verify;
    bool quiet; /* the --verify rebuild: no events of its own */
    bool brief; /* params.details false: no per-asset list in the response */
    int jobs;
    recipe_set *rs;
    cache *cache;
    build_item *items;
    result *res;
    size_t n;
    size_t hits, misses, failures;
    uint64_t bytes;
    bool up_to_date;
} build_ctx;

/* ---- build_out.c: writing, publishing and checking the output set ------ */

/* Write the complete output set of b into dir (which must exist). */
int out_write(build_ctx *b, const char *dir);
/* Stage the outputs next to b->out_dir, then swap them in with one rename. */
int out_publish(build_ctx *b);
/* Whether the outputs in b->out_dir were written from digest and are
 * untouched since (.packer/build-state.json). */
bool out_current(build_ctx *b, const char *digest);
/* Record digest and the outputs' stamps after a publish. */
int out_save_state(build_ctx *b, const char *digest);
/* --verify: compare the published outputs with those in dir byte for byte;
 * each difference is a verify_mismatch blocker. False when any differ. */
bool out_same(build_ctx *b, const char *dir);
/* rm -r path (absent is fine). */
int out_rm_tree(const char *path);

#endif
