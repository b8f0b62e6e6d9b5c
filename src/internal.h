/*
 * internal.h - declarations shared by libpacker's subsystems; not installed.
 *
 * Each block below belongs to one file in src/ (named in its heading) and
 * uses that file's prefix. Nothing here is part of the public API.
 */
#ifndef PACKER_INTERNAL_H
#define PACKER_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "packer.h"

/* ---- alloc.c: the one allocator, with fault injection ------------------ */

/* Fault kinds counted by the injection hook (SQLite-style): when armed
 * with n, the n-th counted operation of a matching kind fails. */
enum { FAULT_ALLOC = 1, FAULT_WRITE = 2, FAULT_FSYNC = 4, FAULT_RENAME = 8, FAULT_ALL = 15 };

void *pk_malloc(size_t n);
void *pk_calloc(size_t n, size_t size);
void *pk_realloc(void *p, size_t n);
char *pk_strdup(const char *s);
char *pk_strndup(const char *s, size_t n);
void pk_free(void *p);
/* Allocations that failed on the calling thread so far: tells a parser
 * that ran out of memory from one that met bad input. */
unsigned long pk_alloc_failures(void);
/* printf into a fresh string; NULL when out of memory. */
char *pk_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable NUL-terminated string (zero-initialize it; the owner frees
 * s). Once an allocation fails, oom stays set and nothing more is added:
 * check it once at the end. */
typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} strbuf;
void strbuf_put(strbuf *b, const char *s, size_t n);
void strbuf_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Arm: the nth (1-based) counted operation among `kinds` fails. n = 0
 * disarms. Process-wide; meant for tests (spec/c/test_fault.c). */
void pk_fault_arm(int kinds, long n);
/* True when the current operation of `kind` must fail (consumes a count). */
bool pk_fault_hit(int kind);
/* How many counted operations ran since arming (to size the N loop). */
long pk_fault_count(void);

/* ---- error.c: thread-local detailed messages -------------------------- */

/* Record a detailed message for packer_last_error() and return code. */
int pk_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Map errno of a failed syscall on `path` to a PACKER_E* with a message. */
int pk_err_errno(const char *what, const char *path);

/* ---- fsio.c: the one durable-write path ------------------------------- */

/* Read a whole file (NUL-terminated). PACKER_ENOTFOUND when absent. */
int io_read_file(const char *path, char **out, size_t *len);
/* Durably replace `path` with buf: temp file in the same directory, write,
 * fsync, rename over path, fsync the directory. Old or new, never a mix. */
int io_write_atomic(const char *path, const void *buf, size_t len);
/* read(2)/write(2) exactly len bytes (EINTR retried; a read that ends
 * early is an error); path only names the file in errors. */
int io_read_full(int fd, void *buf, size_t len, const char *path);
int io_write_all(int fd, const void *buf, size_t len, const char *path);
/* The same durable write, streamed: begin creates the temp file next to
 * path, write appends (may be called many times), commit fsyncs, renames
 * over path, fsyncs the directory and frees o (also on failure, when the
 * temp file is removed and path is untouched); abort removes the temp file
 * and frees o (accepts NULL). */
typedef struct io_out io_out;
int io_out_begin(const char *path, io_out **out);
int io_out_write(io_out *o, const void *buf, size_t len);
int io_out_commit(io_out *o);
void io_out_abort(io_out *o);
/* Unlink (absent is fine) and fsync the directory. */
int io_unlink_durable(const char *path);
int io_fsync_dir(const char *dir);
/* mkdir -p; existing directories are fine. */
int io_mkdirs(const char *path);
bool io_is_dir(const char *path);
bool io_is_file(const char *path);
/* Join two path parts with '/'. NULL when out of memory. */
char *io_join(const char *a, const char *b);

/* ---- json.c: the one JSON reader and canonical writer ----------------- */

/* Parse file `path`; errors name `display` (workspace-relative) with
 * line:column. PACKER_ENOTFOUND when the file is absent. */
int json_load_file(const char *path, const char *display, cJSON **out);
/* Parse text; on error set the message "display:line:col: ...". */
int json_parse_text(const char *text, size_t len, const char *display, cJSON **out);
/* Error about field `key` of `display`, positioned where the key first
 * appears in `text` (line:col), or without position when not found. */
int json_field_err(const char *display, const char *text, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Canonical text: keys sorted, 2-space indent when pretty, trailing
 * newline when pretty. Sorts `item` in place. Caller frees (pk_free). */
char *json_canonical(cJSON *item, bool pretty);
/* Append s as a JSON string, d as a JSON number, exactly as
 * json_canonical writes them (for writers that stream canonical text). */
void json_put_str(strbuf *b, const char *s);
void json_put_num(strbuf *b, double d);
/* Sort object keys recursively, in place; false when out of memory. */
bool json_sort_keys(cJSON *item);
/* cJSON helpers that respect fault injection and return NULL on ENOMEM. */
cJSON *json_add_str(cJSON *obj, const char *key, const char *val);
/* Add item (owned) under key; on failure item is deleted, NULL returned. */
cJSON *json_add_item(cJSON *obj, const char *key, cJSON *item);
cJSON *json_str_array(const char *const *v, size_t n);
const char *json_get_str(const cJSON *obj, const char *key);

/* ---- hash.c: XXH3 content hashes -------------------------------------- */

#define HASH_HEX_LEN 32
/* XXH3-128 of a buffer as 32 lowercase hex digits + NUL. */
void hash_hex(const void *buf, size_t len, char out[HASH_HEX_LEN + 1]);
/* Stream a file (or an open fd, from its current offset) through XXH3-128;
 * path only names it in errors. */
int hash_file(const char *path, char out[HASH_HEX_LEN + 1], uint64_t *size);
int hash_fd(int fd, const char *path, char out[HASH_HEX_LEN + 1], uint64_t *size);
/* 16 canonical bytes <-> 32 hex digits. hash_from_hex: false if malformed. */
void hash_to_hex(const unsigned char bin[16], char out[HASH_HEX_LEN + 1]);
bool hash_from_hex(const char *hex, unsigned char bin[16]);
/* XXH3-128 over bytes fed in pieces; the digest in canonical form (16
 * big-endian bytes). new: NULL when out of memory; end frees the stream. */
typedef struct hash_stream hash_stream;
hash_stream *hash_stream_new(void);
void hash_stream_update(hash_stream *h, const void *buf, size_t len);
void hash_stream_end(hash_stream *h, unsigned char out[16]);
/* 64-bit hash for in-memory tables. */
uint64_t hash64(const char *s);
/* n random bytes as 2n hex digits + NUL (getrandom). */
void hash_random_hex(char *out, size_t nbytes);

/* ---- workspace.c: packer.json and path confinement -------------------- */

typedef struct {
    char *root; /* absolute, realpath'd */
    char *project_id;
    char *name;
    int format;
} ws_config;

int ws_find(const char *start, char **out_root);
int ws_load(const char *dir, ws_config *out);
/* Validate packer.json text; fills project_id, name and format of out. */
int ws_parse_config(const char *text, size_t len, ws_config *out);
void ws_config_clear(ws_config *c);
int ws_create(const char *dir, const char *name, ws_config *out);
/* Normalize a workspace-relative path: '/' separators, no '.', no empty
 * segments, no trailing '/'. Refuses absolute paths, '..' leaving the
 * workspace, and paths whose existing prefix resolves (through symlinks)
 * outside root. "." is returned for the root itself. Caller frees. */
int ws_confine(const char *root, const char *rel, char **out);
/* Like ws_confine for a path relative to `base` (itself workspace-relative). */
int ws_confine_under(const char *root, const char *base, const char *rel, char **out);
/* True when rel is inside .packer/ (packer-owned, never an asset). */
bool ws_is_owned(const char *rel);

/* ---- manifest.c: asset.json ------------------------------------------- */

typedef struct {
    char *kind;
    char **inputs; /* as written, relative to the asset root */
    size_t ninputs;
    char *address; /* NULL when absent */
    cJSON *options;
} manifest;

/* Load and validate <root>/<asset_root>/asset.json. Errors name the file
 * (workspace-relative) and position. */
int manifest_load(const char *root, const char *asset_root, manifest **out);
/* Validate manifest text already in memory (display names it in errors). */
int manifest_parse(const char *text, size_t len, const char *display, manifest **out);
void manifest_free(manifest *m);
/* Minimal manifest text for `kind` listing the regular files of the
 * directory (sorted, dotfiles skipped). Caller frees. */
int manifest_minimal(const char *dir_abs, const char *kind, char **out);
/* Address syntax: non-empty, no leading/trailing '/', no '.'/'..'
 * segments, no backslash or control characters. */
bool manifest_address_ok(const char *addr);

/* ---- snapshot.c: immutable, reference-counted registry views ---------- */

#define SNAP_SHARDS 256

typedef struct asset_rec {
    atomic_int refs;
    char *id;
    char *root;
    char *address;
    char *kind;
    bool included;
} asset_rec;

typedef struct shard shard;
typedef struct snap snap;

asset_rec *rec_new(const char *id, const char *root, const char *address, const char *kind,
                   bool included);
asset_rec *rec_ref(asset_rec *r);
void rec_unref(asset_rec *r);

snap *snap_empty(void);
snap *snap_ref(snap *s);
void snap_unref(snap *s);
uint64_t snap_generation(const snap *s);
size_t snap_count(const snap *s);
size_t snap_included_count(const snap *s);
const asset_rec *snap_by_id(const snap *s, const char *id);
/* Any asset at root, or NULL. */
const asset_rec *snap_by_root(const snap *s, const char *root);
/* The included asset with this address, or NULL. */
const asset_rec *snap_included_by_address(const snap *s, const char *addr);
/* First asset (lowest id) with this address, included or not. */
const asset_rec *snap_by_address(const snap *s, const char *addr);
/* Ids that differ between a and b (added, removed, or any field changed),
 * sorted, as a JSON array; NULL when out of memory. */
cJSON *snap_diff_ids(const snap *a, const snap *b);
/* All records sorted by root; borrowed, lives as long as s (computed once
 * per snapshot). NULL when out of memory. */
const asset_rec *const *snap_all(const snap *s, size_t *n);
/* Records of id shard i (0..255), sorted by id; borrowed. */
const asset_rec *const *snap_shard_items(const snap *s, int i, size_t *n);
/* Records of root shard i (0..255), sorted by (root, id): records with one
 * root are neighbours in one shard. Borrowed. */
const asset_rec *const *snap_root_shard_items(const snap *s, int i, size_t *n);
int snap_id_shard(const char *id);

/* Copy-on-write editing: only shards touched by put/del are copied. */
typedef struct snap_edit snap_edit;
snap_edit *snap_edit_begin(const snap *base);
int snap_edit_put(snap_edit *e, asset_rec *r); /* takes a reference */
/* Put v[0..n-1] at once (for loading: one append and one sort per touched
 * shard instead of a sorted insert each); takes over every reference,
 * also on failure. An id met twice (among v or already in e) gives
 * PACKER_EEXIST with *dup borrowed from the edit; on any failure the edit
 * must be aborted. */
int snap_edit_put_all(snap_edit *e, asset_rec **v, size_t n, const char **dup);
int snap_edit_del(snap_edit *e, const char *id);
/* Borrowed view of the edit in progress (for lookups during a batch). */
const snap *snap_edit_view(const snap_edit *e);
bool snap_edit_dirty(const snap_edit *e, int shard);
snap *snap_edit_finish(snap_edit *e, uint64_t generation);
void snap_edit_abort(snap_edit *e);

/* ---- store.c: the registry on disk, journal, cross-process lock ------- */

typedef struct store store;

/* A commit: files to write or delete, relative to the workspace root. */
typedef struct {
    char *path;
    char *content; /* NULL: delete */
    size_t len;
} txn_op;

typedef struct {
    txn_op *ops;
    size_t n, cap;
} txn;

/* Stamp of the on-disk registry: differs after a commit by anyone. */
typedef struct {
    uint64_t generation;
    int64_t dir_mtime_ns;
    int64_t dir_ctime_ns;
} store_stamp;

int store_open(const char *root, store **out);
void store_close(store *st);
/* Exclusive cross-process lock (flock on .packer/lock); blocks. */
int store_lock(store *st);
void store_unlock(store *st);
/* Under the lock: roll a committed journal forward, drop temp litter. */
int store_recover(store *st);
int store_stamp_read(store *st, store_stamp *out);
bool store_stamp_eq(const store_stamp *a, const store_stamp *b);
/* Under the lock: read every registry shard into a fresh snapshot. */
int store_load(store *st, snap **out);
/* Under the lock: the registry on disk as a snapshot derived from base
 * (the one this store last loaded, reloaded or committed), re-reading
 * only the shard files whose stat changed since: a reconcile after
 * another process's commit costs the shards it touched. */
int store_reload(store *st, const snap *base, snap **out);
/* The published snapshot no longer matches what the store recorded (a
 * commit failed halfway): the next reload re-reads every shard. */
void store_forget(store *st);
/* Parse one shard file's text into the edit (errors name `display`). */
int store_parse_shard(const char *text, size_t len, const char *display, int shard_no,
                      snap_edit *e);
/* Serialize id shard i of s into its file text (NULL when empty). */
int store_shard_text(const snap *s, int i, char **out, size_t *len);

int txn_add(txn *t, const char *path, const char *content, size_t len);
void txn_clear(txn *t);
/* Under the lock: make t durable (journal), apply it, retire the journal.
 * *durable tells whether the commit point was passed, even on error: then
 * the disk holds the new state, or will once the journal is rolled forward. */
int store_commit(store *st, const txn *t, bool *durable);

/* ---- lane.c: the per-project write lane ------------------------------- */

typedef struct lane lane;
typedef void (*lane_fn)(void *arg);

int lane_new(lane **out);
/* Run fn(arg) on the lane thread after every earlier job; wait for it. */
int lane_run(lane *l, lane_fn fn, void *arg);
/* Queue fn(arg) after every earlier job and return at once; the lane
 * runs it (also while draining at lane_free). Any thread. */
int lane_post(lane *l, lane_fn fn, void *arg);
/* Drain queued jobs, stop and free. Accepts NULL. */
void lane_free(lane *l);
bool lane_is_current(const lane *l);
/* lane_run with a cancellation token: while the job is still queued, a
 * triggered tok takes it off the queue (checked every 10 ms) and *dropped
 * is set; fn never runs then. Once fn has started it runs to its end. */
int lane_run_cancel(lane *l, lane_fn fn, void *arg, const packer_cancel *tok, bool *dropped);

/* ---- bus.c: events and their delivery --------------------------------- */

/* Build an envelope; summary copied. NULL when out of memory. */
packer_event *event_new(packer_event_kind kind, const char *project_id, const char *op_id,
                        uint64_t seq, const char *summary);
/* Attach fields (takes ownership of `val`, also when ev is NULL). */
void event_set(packer_event *ev, const char *key, cJSON *val);
void event_set_progress(packer_event *ev, uint64_t done, uint64_t total);
void event_free(packer_event *ev);
/* Queue for delivery; takes ownership. NULL bus: dropped. */
void bus_publish(packer_bus *bus, packer_event *ev);

/* ---- response.c: the structured response ------------------------------ */

typedef struct resp resp;
resp *resp_new(packer_op_class cls, const char *op_id);
void resp_status(resp *r, packer_status st);
packer_status resp_get_status(const resp *r);
void resp_summary(resp *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void resp_affected(resp *r, const char *asset_id);
/* severity: "error" | "warning" | "info". */
void resp_diag(resp *r, const char *severity, const char *code, const char *asset_id,
               const char *path, const char *message);
/* A diagnostic object built by the caller (taken, also on failure). */
void resp_diag_json(resp *r, cJSON *diag);
void resp_blocker(resp *r, const char *code, const char *message);
/* Action objects: {"id","kind","safety","description","targets":[...]}. */
cJSON *resp_action(const char *id, const char *kind, const char *safety, const char *desc);
void resp_proposed(resp *r, cJSON *action);
void resp_applied(resp *r, cJSON *action);
/* data object (created on first use). */
cJSON *resp_data(resp *r);
void resp_set_op_class(resp *r, packer_op_class cls);
/* Mark r incomplete (an allocation failed while it was built):
 * resp_finish() then returns NULL. */
void resp_oom(resp *r);
/* Freeze with the runtime state; NULL when out of memory. */
packer_response *resp_finish(resp *r, packer_state state);
void resp_free(resp *r);
const cJSON *response_root(const packer_response *r);

/* ---- sandbox.c: Lua under an instruction budget and a memory cap ----- */

struct lua_State;
typedef struct sandbox sandbox;

int sandbox_new(size_t mem_cap, sandbox **out);
void sandbox_free(sandbox *sb);
struct lua_State *sandbox_state(sandbox *sb);
/* Load a text chunk (binary refused) onto the stack, with a fresh
 * globals table of its own; message into err. */
int sandbox_load(sandbox *sb, const char *src, size_t len, const char *chunkname, char *err,
                 size_t errlen);
/* The function on top of the stack as bytecode (kept there); *out is the
 * caller's to pk_free. Loading it back with sandbox_load_dump (fresh
 * globals too) skips the parse, for chunks the runtime itself compiled
 * with sandbox_load and runs many times; never for bytes from outside. */
int sandbox_dump(sandbox *sb, char **out, size_t *len);
int sandbox_load_dump(sandbox *sb, const char *bc, size_t len, const char *chunkname);
/* lua_pcall under the budget; on failure the stack is emptied and err says
 * why ("instruction budget exceeded", "memory cap exceeded", or the error
 * with its chunk:line position). */
int sandbox_call(sandbox *sb, int nargs, int nresults, long instructions, char *err, size_t errlen);
void sandbox_push_json(struct lua_State *L, const cJSON *j);

/* ---- recipes.c: build recipes ------------------------------------------ */

typedef struct {
    char *name; /* as declared in the manifest */
    char *path; /* workspace-relative, confined */
    char hash[HASH_HEX_LEN + 1];
    uint64_t size;
} build_input;

typedef struct {
    const char *asset_id, *address, *root, *kind; /* borrowed from the snapshot */
    build_input *inputs;
    size_t ninputs;
    cJSON *options;
    char *manifest_text; /* canonical manifest, part of the cache key */
} build_item;

typedef struct {
    char *bytes; /* the blob, or NULL when stream_input is set */
    size_t len;
    int stream_input; /* 1-based: the blob is this input's bytes as they are */
} recipe_output;

typedef struct recipe_set recipe_set;
typedef struct recipe_runner recipe_runner;

int recipes_load(const char *root, recipe_set **out);
void recipes_free(recipe_set *rs);
/* Identity hash of the recipe for kind; NULL when there is none or it is
 * broken (*error then says why, or is NULL for "no recipe"). */
const char *recipes_id(const recipe_set *rs, const char *kind, const char **error);
int runner_new(const recipe_set *rs, const char *root, recipe_runner **out);
void runner_free(recipe_runner *rr);
int runner_run(recipe_runner *rr, const build_item *it, recipe_output *out, char *err,
               size_t errlen);

/* ---- strmap.c: an arena and a string-keyed hash map (callers lock) ---- */

/* strcmp over two char * elements, for qsort and bsearch of string arrays. */
int str_ptr_cmp(const void *a, const void *b);

/* Zero-initialize; memory lives until arena_free releases all of it. */
typedef struct {
    struct arena_chunk *head;
} arena;

/* n zeroed bytes aligned for any type; NULL when out of memory. */
void *arena_alloc(arena *a, size_t n);
/* A copy of s in the arena; NULL when out of memory. */
char *arena_strdup(arena *a, const char *s);
void arena_free(arena *a);
/* alloc.c: make cJSON allocate from a on this thread (NULL: stop); returns
 * the previous one. Use json_parse_arena rather than this. */
arena *pk_cjson_arena(arena *a);
/* json.c: json_parse_text with every node in a: *out is released with
 * arena_free(a), never cJSON_Delete. For big, short-lived trees (shards). */
int json_parse_arena(const char *text, size_t len, const char *display, arena *a, cJSON **out);

/* Entries embed a strmap_node as their first member (key set by the owner). */
typedef struct strmap_node {
    struct strmap_node *next;
    char *key;
    uint64_t h;
    bool used; /* seen by this build: saved; unused entries drop out */
} strmap_node;

/* Zero-initialize; the owner frees b (pk_free) and the entries. */
typedef struct {
    strmap_node **b;
    size_t nb, n;
    bool dirty;
} strmap;

strmap_node *strmap_find(const strmap *m, const char *key);
/* Add e (its key set, not yet in m). */
int strmap_add(strmap *m, strmap_node *e);
/* The used entries, sorted by key (saved files are deterministic); caller
 * frees the array (pk_free). NULL when out of memory. */
strmap_node **strmap_used_sorted(const strmap *m, size_t *n);

/* ---- cache.c: input hashes by stat, recipe outputs by key -------------- */

struct stat;
typedef struct cache cache;

typedef struct {
    char type;       /* 'B': blob in blob_path at offset; 'R': input streamed as is */
    char *blob_path; /* 'B' only, absolute */
    uint64_t offset;
    char *ref_path; /* 'R' only, workspace-relative input */
    uint64_t size;
    unsigned char hash[16]; /* XXH3-128 canonical of the blob */
} cache_obj;

/* What a stat says about a file, as the cache compares it. */
typedef struct {
    uint64_t size, ino;
    int64_t mtime_ns, ctime_ns;
} cache_stat;

void cache_stat_of(const struct stat *st, cache_stat *out);
bool cache_stat_same(const cache_stat *a, const cache_stat *b);
/* Changed too recently to trust: an edit in the same timestamp tick would
 * leave the stat as it is. Such stats are never remembered. */
bool cache_stat_racy(const cache_stat *s);

/* What one asset's last successful build depended on (assets-index). An
 * asset with more inputs than CACHE_MEMO_MAX_INPUTS is never memoized. */
#define CACHE_MEMO_MAX_INPUTS 50
typedef struct {
    char *address, *root, *kind;
    char recipe_id[HASH_HEX_LEN + 1], key[HASH_HEX_LEN + 1];
    cache_stat manifest;
    char **inputs; /* workspace-relative paths, declared order */
    size_t ninputs;
} cache_memo;

/* fresh: start empty, ignoring every index (a --clean build). */
int cache_open(const char *root, bool fresh, cache **out);
void cache_close(cache *c);
/* Write the indexes that changed (entries this build did not use drop
 * out). Lane. */
int cache_save(cache *c);
/* The remembered hash of input path if st matches what was remembered. */
bool cache_input_known(cache *c, const char *path, const cache_stat *st,
                       char hash[HASH_HEX_LEN + 1]);
/* Content hash of workspace file `path` (relative to rootfd), from the
 * stat index when its stat matches, else by reading it. Any thread. */
int cache_hash_input(cache *c, int rootfd, const char *path, char hash[HASH_HEX_LEN + 1],
                     uint64_t *size);
/* The memo of asset_id, valid until cache_close; NULL when none. */
const cache_memo *cache_memo_get(cache *c, const char *asset_id);
/* Remember m (copied) for asset_id. Lane, while no worker runs. */
int cache_memo_put(cache *c, const char *asset_id, const cache_memo *m);
/* Store an output: 'B' payload is the blob, 'R' payload the input's path.
 * *out describes the stored object (cache_obj_clear it). */
int cache_put(cache *c, const char *key, char type, const void *payload, size_t len, uint64_t size,
              const unsigned char hash[16], cache_obj *out);
/* PACKER_ENOTFOUND when absent, PACKER_EPARSE when damaged. A hit is not
 * yet verified: cache_verify a 'B' object before using its bytes. */
int cache_get(cache *c, const char *key, cache_obj *out);
void cache_obj_clear(cache_obj *o);
/* Re-hash a 'B' object's bytes against its recorded hash: 0, PACKER_EPARSE
 * (damaged), or PACKER_ENOTFOUND (its file is gone). */
int cache_verify(const cache_obj *o);

/* ---- pack.c: the pack writer (docs/pack-format.md) -------------------- */

typedef struct {
    const char *address;
    const char *asset_id;
    const char *blob_path; /* file holding the blob bytes (NULL ok when size is 0) */
    uint64_t blob_offset;  /* where they start in that file */
    uint64_t size;
    unsigned char hash[16]; /* XXH3-128 canonical of the blob */
} pack_entry;

/* Write a complete pack to `path` (created or replaced durably: temp
 * file, write, fsync, rename, fsync dir). Entries are sorted by address
 * here, in place (caller order does not matter); duplicate or empty
 * addresses, empty asset ids and sets past the format's limits are
 * PACKER_EINVAL. Blobs are streamed from blob_path in bounded memory
 * (never the whole blob in RAM), and their bytes are re-hashed while
 * copying: a mismatch with entry.hash, or a blob file shorter than
 * blob_offset + size, fails the write (PACKER_EIO, message names the
 * address) and leaves `path` untouched. The bytes depend only on the set
 * of (address, asset_id, blob bytes). Any thread; not concurrently on the
 * same path. */
int pack_write(const char *path, pack_entry *entries, size_t n);

/* ---- scan.c: the workspace walk and the duplicate finder --------------- */

typedef struct {
    char *path;    /* workspace-relative */
    uint64_t size; /* of the link itself for symlinks */
    int root;      /* index into scan.roots of the asset root it lies in, or -1 */
    bool link;
} scan_file;

typedef struct scan_index {
    scan_file *files; /* sorted by path */
    size_t nfiles;
    char **roots; /* directories holding an asset.json, workspace-relative */
    size_t nroots;
} scan_index;

/* Whether directory `name` in dir_abs is one no walk enters: .packer/, a
 * VCS directory, or a build output (addressables.json beside assets.pack). */
bool scan_skip_dir(const char *dir_abs, const char *name);
/* Every file under root except .packer/, VCS directories and build output
 * directories; symlinks are listed, never followed. */
int scan_workspace(const char *root, scan_index **out);
void scan_free(scan_index *s);

typedef struct {
    size_t *files; /* indexes into scan.files, two or more */
    size_t n;
    uint64_t size;
    char hash[HASH_HEX_LEN + 1];
} dup_group;

/* Groups of identical non-empty files inside asset roots (size, then the
 * first 4 KiB, then the whole file, XXH3-128), on `threads` threads. */
int scan_duplicates(const scan_index *s, const char *root, int threads, dup_group **out, size_t *n);
void dup_groups_free(dup_group *g, size_t n);

/* ---- project.c / services: the runtime -------------------------------- */

typedef struct op op;

/* An operation in flight: id, event sequence, response under construction. */
struct op {
    packer_project *p;
    char id[40];
    uint64_t seq;
    resp *r;
    cJSON *params;
    const void *svc; /* the service table entry, for the lane job */
    packer_cancel *cancel; /* NULL: not cancellable (cancel.c) */
};

/* cancel.c: whether o's token was triggered; the response of an operation
 * that stopped for it (started: it ran part way; else nothing ran). */
bool op_cancelled(const op *o);
void op_cancel_response(op *o, bool started);

void op_emit(op *o, packer_event_kind kind, const char *summary, cJSON *affected,
             cJSON *extra_key_vals);
void op_progress(op *o, uint64_t done, uint64_t total, const char *summary);
/* Whether anyone can see o's events (the project has a bus): lets a
 * service skip composing events nobody receives. */
bool op_observed(const op *o);

/* Project internals used by the service files. */
snap *project_snapshot(packer_project *p);
const char *project_root_dir(const packer_project *p);
store *project_store(packer_project *p);
packer_bus *project_bus(packer_project *p);
void project_set_state(packer_project *p, op *o, packer_state s);
/* In the lane: take the lock, recover, reconcile if another process
 * committed. On success the lock is held; returns the current snapshot
 * (a new reference). */
int project_begin_write(packer_project *p, op *o, snap **cur);
/* In the lane with the lock held: commit txn, publish next (consumed). */
int project_commit(packer_project *p, op *o, const txn *t, snap *next);
void project_end_write(packer_project *p);
/* Any thread: true when another process committed since our snapshot; the
 * runtime then reports diverged until its next write reconciles. */
bool project_check_disk(packer_project *p, op *o);
const char *project_name(const packer_project *p);
/* Name of service i in packer.h's table order, NULL past the last: what
 * packer serve offers as methods. */
const char *project_service_name(size_t i);
/* packer_call with params built in C (consumed; NULL: building them ran
 * out of memory) and no token: the typed wrappers of api.c. */
int project_call(packer_project *p, const char *service_name, cJSON *params,
                 packer_response **out);
/* Observation's hooks into the project (observe.c, fresh.c). */
typedef struct fresh fresh;
typedef struct obs obs;
lane *project_lane(packer_project *p);
fresh *project_fresh(packer_project *p);
obs *project_obs(packer_project *p);
void project_set_obs(packer_project *p, obs *ob);
/* project_set_state announcing the asset ids it concerns (taken). */
void project_set_state_assets(packer_project *p, op *o, packer_state s, cJSON *affected);
/* The runtime is failed because of `why` (kept for status and the event);
 * only a reconcile that succeeds leaves it. */
void project_fail(packer_project *p, op *o, const char *why);
/* Why the runtime last failed, or NULL (caller frees). Any thread. */
char *project_failure(packer_project *p);
/* Another process changed packer-owned state: diverged, and the next
 * mutation is refused until a reconcile (a failed commit of our own only
 * makes the next write reconcile first). */
void project_set_diverged(packer_project *p, op *o);
/* After the stale set changed: healthy <-> stale to match it, announced
 * with `affected` (taken). Other states are left as they are. */
void project_refresh_state(packer_project *p, op *o, cJSON *affected);

/* Resolve an asset given by id or address: the id, else the included
 * asset with that address, else any asset with that address. */
const asset_rec *svc_find_asset(const snap *s, const char *key);
cJSON *svc_asset_json(const asset_rec *a);
/* The asset named by params.asset in s, or NULL after refusing the
 * response (invalid_params or unknown_asset blocker). */
const asset_rec *svc_lookup(op *o, const snap *s);

/* registry.c */
/* In the lane with the lock held: commit the edit's touched shards and the
 * next generation (gen + 1) in one transaction and publish the result. */
int registry_commit_edit(op *o, snap_edit *e, txn *t, uint64_t gen);
void svc_register_asset(op *o);
void svc_include(op *o);
void svc_exclude(op *o);
void svc_remove_asset(op *o);
/* build.c */
void svc_build(op *o);
/* Whether the asset root cand (workspace-relative) holds exactly what the
 * last build of asset_id read: the key remembered in its memo, recomputed
 * over cand's manifest and the content of its inputs. This is the proof a
 * moved root needs before its registry entry is re-pointed. Lane. */
bool build_root_proves(const char *root, int rootfd, recipe_set *rs, cache *c, const char *asset_id,
                       const char *cand);
/* reads.c */
void svc_list_assets(op *o);
void svc_get_asset_details(op *o);
void svc_status(op *o);

/* ---- pool.c: the worker pool ------------------------------------------- */

/* Run item i with the worker's state; the return value is ignored. */
typedef int (*pool_fn)(void *ctx, size_t i, void *worker);
/* Run fn(ctx, i, worker) for every i in 0..n-1 on up to `jobs` threads
 * (clamped to 1..64, and to `work` when fewer items have work to do);
 * worker_new(ctx) makes each thread's worker state and worker_free frees
 * it (both optional, NULL). The caller publishes op_progress on o as
 * "what" every 100 ms until all are done. Lane. */
void pool_run(op *o, size_t n, int jobs, size_t work, const char *what, pool_fn fn,
              void *(*worker_new)(void *ctx), void (*worker_free)(void *w), void *ctx);

/* ---- doctor.c, doctor_ctx.c, fix.c: the doctor ------------------------- */

/* One declared input as the doctor sees it. */
typedef struct {
    char *path;    /* confined, workspace-relative; NULL when it escapes */
    char *message; /* why it escapes or is missing; NULL when fine */
    bool exists;
    uint64_t size;
} doc_input;

/* One asset's manifest and inputs, looked at most once per doctor run
 * whatever the number of rules asking. */
typedef struct {
    bool loaded, inputs_done;
    int rc; /* 0, or the manifest_load error */
    char *error;
    manifest *m;
    char *text; /* asset.json as read, when it parsed */
    size_t len;
    int canonical;     /* text is in canonical form: 1, 0, or -1 not known yet */
    doc_input *inputs; /* m->ninputs of them once inputs_done */
    bool moved_done;
    char *moved; /* the unregistered root proven to hold it (doctor_moved_root) */
} doc_asset;

/* One doctor run: a coherent snapshot, what was learned about it so far,
 * and the diagnostics and actions the rules produced. Lane only. */
typedef struct doc_run {
    op *o;
    const char *root;
    snap *cur;
    const asset_rec *const *all; /* sorted by root */
    size_t nall;
    doc_asset *memo; /* parallel to all */
    recipe_set *rs;
    cJSON *config; /* packer.json */
    bool workspace, fix;
    bool single;    /* one rule given as source: it runs whatever its scope */
    scan_index *sc; /* workspace walk, on first use or from the prefetch */
    cache *cache;   /* the build's memos, opened by the first doctor_moved_root */
    int rootfd;     /* with it, or -1 */
    dup_group *dups;
    size_t ndups;
    bool dups_done;
    struct doc_prefetch *prefetch; /* walk and duplicates on another core */
    cJSON *diags;                  /* diagnostic objects, in report order */
    size_t ndiags;                 /* their number (cJSON counts by walking the list) */
    cJSON *actions;                /* proposed actions, unique ids */
    strmap targets;                /* first target -> its action: one action per target */
    arena targets_arena;
    const char *rule_id, *rule_class, *rule_severity; /* the rule running */
} doc_run;

/* doctor.c: add a diagnostic of the running rule's class. */
void doctor_diag(doc_run *d, const char *severity, const char *code, const char *cls,
                 const char *rule, const char *asset_id, const char *path, const char *msg);
bool doctor_severity_ok(const char *s);
/* doctor_ctx.c: push the ctx table rules receive. Helpers shared with
 * doctor_ws.c: the run of a ctx method (upvalue 1), fields of the table on
 * top of the stack. */
void doctor_push_ctx(struct lua_State *L, doc_run *d);
doc_run *doctor_run_of(struct lua_State *L);
void doctor_set_str(struct lua_State *L, const char *key, const char *val);
void doctor_set_int(struct lua_State *L, const char *key, long long v);
void doctor_set_bool(struct lua_State *L, const char *key, bool v);
/* doctor_ws.c: add the workspace methods to the ctx table on top. */
void doctor_ws_methods(struct lua_State *L, doc_run *d);
/* The record of asset index i (into d->all) with its manifest loaded. */
doc_asset *doctor_asset(doc_run *d, size_t i);
/* Index into d->all of the asset with this id, or -1. */
long doctor_index(doc_run *d, const char *id);
int doctor_scan(doc_run *d);
/* The unregistered asset root that holds exactly what the last build of
 * asset_id read (build_root_proves), when its registered root is missing;
 * NULL otherwise, or with packer_last_error set when the walk failed.
 * Borrowed from the run. */
const char *doctor_moved_root(doc_run *d, const char *asset_id, int *rc);
/* Start the workspace walk and the duplicate search on a thread of their
 * own, so they overlap the rules that do not need them; doctor_scan and
 * ctx:duplicates() wait for it. doctor_prefetch_end joins it (idempotent). */
void doctor_prefetch(doc_run *d);
void doctor_prefetch_end(doc_run *d);

/* fix.c: actions rules may propose, and applying them. */
/* Safety class of an action kind ("safe", "destructive", "relocational"),
 * or NULL for a kind packer does not know. */
const char *fix_safety(const char *kind);
/* Validate the action table at idx returned by a rule's fix(); on success
 * *out is a new action object {id, kind, safety, description, targets}. */
int fix_from_lua(doc_run *d, struct lua_State *L, int idx, cJSON **out, char *err, size_t errlen);
/* Propose act (taken) for diag: the diagnostic's "fix" names it, or the
 * action already proposed for the same target. */
void fix_propose(doc_run *d, cJSON *diag, cJSON *act);
void fix_targets_free(doc_run *d);
/* Id of the current plan: the actions and the on-disk state of every
 * target, so a plan applied after the workspace changed is refused. */
void fix_plan_id(doc_run *d, char out[HASH_HEX_LEN + 1]);
/* Apply the plan's actions: safe ones always, the others with consent. */
void fix_apply(doc_run *d, bool consent);
void svc_doctor(op *o);

/* ---- quarantine.c: reversible moves into .packer/quarantine/ ---------- */

/* Move workspace-relative `rel` (file or directory) into quarantine with
 * a record; *id_out (caller frees) names it. Lane, under the lock. */
int quar_move(const char *root, const char *rel, const char *reason, char **id_out);
/* Every record (finishing or rolling back interrupted moves first). */
int quar_list(const char *root, cJSON **out);
void svc_quarantine(op *o);
void svc_quarantine_list(op *o);
void svc_restore(op *o);

/* ---- fresh.c: the stale set (per-asset freshness) --------------------- */

fresh *fresh_new(void);
void fresh_free(fresh *f);
/* Mark ids stale (copied); ids not stale before are appended to `added`
 * (a JSON array, may be NULL). */
int fresh_mark(fresh *f, const char *const *ids, size_t n, cJSON *added);
/* The latest mark number: a build passes it to fresh_built. */
uint64_t fresh_seq(fresh *f);
/* How many assets are stale; 0 for NULL. Lock-free. */
size_t fresh_count(const fresh *f);
bool fresh_is_stale(fresh *f, const char *id);
/* After a successful build of snapshot s: the included assets not marked
 * after `upto` are fresh again (ids no longer in s go too). */
void fresh_built(fresh *f, const snap *s, uint64_t upto, cJSON *removed);
/* After a reconcile: drop ids s no longer has. */
void fresh_prune(fresh *f, const snap *s, cJSON *removed);
/* The stale ids, sorted, as a new JSON array. */
cJSON *fresh_list(fresh *f);

/* ---- observe.c, obs_walk.c: background observation ---------------------- */

/* Seconds on the monotonic clock: batch timing, own-write expiry. */
double obs_now(void);
/* Stop the observer thread (if running) and free it. Owner, at close. */
void obs_free(obs *ob);
/* The calling lane thread runs a job of p: files it writes until
 * obs_lane_leave are packer's own (obs_note_write). */
void obs_lane_enter(packer_project *p);
void obs_lane_leave(void);
/* fsio.c and quarantine.c, after writing, deleting or moving abs: when
 * the calling thread runs a lane job of an observed project, remember the
 * result so that the observer does not report it as someone else's change.
 * tree: abs is a directory moved as a whole (everything under it). */
void obs_note_write(const char *abs, bool tree);
/* Queue a reconcile on p's lane (one at a time). Any thread. */
void obs_post_reconcile(packer_project *p);
/* Tests: lose = true: kernel events are read and thrown away from now on,
 * as when the kernel queue overflows; lose = false: the overflow is
 * noticed (as IN_Q_OVERFLOW), and a rescan must find what was lost. */
int obs_test_overflow(packer_project *p, bool lose);
/* Tests: while held, the observer announces divergence but defers the
 * reconcile it would post (a write in between is refused, reliably). */
void obs_test_hold(packer_project *p, bool hold);

/* obs_walk.c: a table of workspace-relative paths, and the walk that
 * fills it. Not thread-safe (the observer thread owns its tables). */
typedef struct ptab_ent {
    struct ptab_ent *next;
    char *key;
    uint64_t h;
    cache_stat st;
    bool present; /* st is valid (the path existed) */
    bool tree;    /* own writes: the whole tree under key */
    double t;     /* own writes: when noted */
} ptab_ent;

typedef struct {
    ptab_ent **b;
    size_t nb, n;
} ptab;

ptab_ent *ptab_get(const ptab *t, const char *key);
/* The entry for key, added (zeroed, key copied) when absent; NULL on ENOMEM. */
ptab_ent *ptab_put(ptab *t, const char *key);
void ptab_del(ptab *t, const char *key);
void ptab_clear(ptab *t);
/* Call fn for every entry (fn may not add or delete). */
void ptab_each(const ptab *t, void (*fn)(ptab_ent *e, void *ctx), void *ctx);

/* obs_own.c: packer's own recent writes, so that the observer does not
 * report them. Any thread (one mutex inside). */
typedef struct obs_own obs_own;
obs_own *own_new(void);
void own_free(obs_own *w);
/* Remember what workspace-relative rel (absolute abs) is now, after packer
 * wrote, deleted or (tree) moved it. */
void own_note(obs_own *w, const char *rel, const char *abs, bool tree);
/* Whether path, now present with stat cur or absent, is what packer left
 * there (its own write or delete, or anything under a tree it moved).
 * own is an obs_own (the obs_batch callback). */
bool own_match(void *own, const char *path, bool present, const cache_stat *cur);
/* Forget notes older than ttl seconds. */
void own_expire(obs_own *w, double ttl);

/* obs_batch.c: classify one batch of changed paths (pending) against the
 * baseline stats and the published snapshot; update the baseline; mark
 * stale assets and emit asset_changed / asset_discovered on o. own says
 * whether a path is packer's own write. */
#define OBS_SAMPLE 64 /* paths listed in one event */
typedef struct {
    packer_project *p;
    const char *root;
    op *o;
    ptab *base, *pending;
    bool (*own)(void *ctx, const char *path, bool present, const cache_stat *cur);
    void *own_ctx;
    bool rescan;           /* the paths come from a rescan (said in the event) */
    size_t changed_assets; /* out */
} obs_batch;
void obs_batch_run(obs_batch *b);

/* Visit every directory and file under root/rel (rel "" for the whole
 * workspace) without following symlinks, skipping .packer, VCS and build
 * output directories: dir(ctx, rel) for each directory (rel "" for the
 * root), file(ctx, rel, st) for everything else. */
typedef struct {
    void (*dir)(void *ctx, const char *rel);
    void (*file)(void *ctx, const char *rel, const struct stat *st);
    void *ctx;
} obs_visitor;
void obs_walk(const char *root, const char *rel, const obs_visitor *v);
/* Whether the directory root/rel is one the walk skips. */
bool obs_skip_dir(const char *root, const char *rel);

#endif
