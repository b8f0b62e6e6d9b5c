/*
 * packer.h - the public C API of libpacker, and its manual.
 *
 * packer is a filesystem-first asset packer runtime. A workspace on disk
 * (packer.json, asset roots with asset.json manifests, the registry under
 * .packer/) is the source of truth; an open project keeps an immutable,
 * reference-counted snapshot of it in memory, serves reads from that
 * snapshot on any thread, and performs every write through one
 * packer-owned write lane per project.
 *
 * Conventions (libgit2/libuv style):
 *   - Functions return 0 on success or a negative PACKER_E* code. Results
 *     come back through out-parameters. packer_last_error() gives the
 *     detailed message of the calling thread's last failed call.
 *   - Handles are opaque. Every _open/_new has a matching _close/_free that
 *     accepts NULL.
 *   - Strings returned by accessor functions are owned by the object they
 *     were read from and live as long as it does; strings documented as
 *     "caller frees" must be released with packer_free().
 *   - "Any thread" means the function may be called concurrently from
 *     several threads on the same handle.
 *
 * Services. Every operation of the spec is a service with a name, an
 * operation class and a structured response:
 *
 *   service                    class               where
 *   init_workspace             workspace_mutation  packer_init_workspace()
 *   register_asset             registry_mutation   (workspace_mutation when
 *                                                   it writes a manifest)
 *   include_asset_in_build     registry_mutation
 *   exclude_asset_from_build   registry_mutation
 *   remove_asset               registry_mutation   (workspace_mutation with
 *                                                   delete_files)
 *   list_assets                read
 *   get_asset_details          read
 *   status                     read
 *   doctor                     read                (workspace_mutation when
 *                                                   it applies fixes)
 *   build                      workspace_mutation
 *   quarantine                 workspace_mutation
 *   quarantine_list            read
 *   restore                    workspace_mutation
 *
 * Each is reachable through packer_call() with JSON parameters (the same
 * shapes the CLI's --json output and the Lua module use), and the common
 * ones through typed wrappers below.
 */
#ifndef PACKER_H
#define PACKER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PACKER_VERSION "0.1.0"
#define PACKER_WORKSPACE_FORMAT 1

/* ---- errors ----------------------------------------------------------- */

/* X-macro: name, value, message. Also drives packer_strerror(). */
#define PACKER_ERRORS(X)                                                     \
    X(PACKER_OK, 0, "ok")                                                    \
    X(PACKER_EINVAL, -1, "invalid argument")                                 \
    X(PACKER_ENOMEM, -2, "out of memory")                                    \
    X(PACKER_EIO, -3, "i/o error")                                           \
    X(PACKER_ENOWORKSPACE, -4, "not a packer workspace")                     \
    X(PACKER_EEXIST, -5, "already exists")                                   \
    X(PACKER_ENOTFOUND, -6, "not found")                                     \
    X(PACKER_EPARSE, -7, "malformed file")                                   \
    X(PACKER_EPATH, -8, "path leaves the workspace")                         \
    X(PACKER_EREFUSED, -9, "refused")                                        \
    X(PACKER_ECLOSED, -10, "project is closed")                              \
    X(PACKER_EUNKNOWN, -11, "unknown service")                               \
    X(PACKER_EBUSY, -12, "workspace is locked")

enum {
#define PACKER_ERR_ENUM(name, value, msg) name = value,
    PACKER_ERRORS(PACKER_ERR_ENUM)
#undef PACKER_ERR_ENUM
};

/* Static string for an error code. Any thread. */
const char *packer_strerror(int err);

/* Detailed message of the calling thread's last failed packer call, e.g.
 * "assets/hero/asset.json:3:14: \"inputs\" must be an array of strings".
 * Thread-local; valid until the thread's next packer call. Never NULL. */
const char *packer_last_error(void);

/* Release memory that packer documents as "caller frees". Accepts NULL. */
void packer_free(void *ptr);

/* ---- enumerations ----------------------------------------------------- */

typedef enum {
    PACKER_OP_READ = 0,
    PACKER_OP_REGISTRY_MUTATION,
    PACKER_OP_WORKSPACE_MUTATION
} packer_op_class;

typedef enum {
    PACKER_STATE_HEALTHY = 0,
    PACKER_STATE_STALE,
    PACKER_STATE_DIVERGED,
    PACKER_STATE_COMMITTING,
    PACKER_STATE_RECONCILING,
    PACKER_STATE_FAILED
} packer_state;

/* Response status. ok: done. preview: nothing changed, proposed_actions
 * says what would (blockers name what is missing, e.g. consent). refused:
 * the request was understood and declined (unknown asset, address in use).
 * blocked: structural errors prevent the operation. failed: workspace or
 * I/O failure. */
typedef enum {
    PACKER_STATUS_OK = 0,
    PACKER_STATUS_PREVIEW,
    PACKER_STATUS_REFUSED,
    PACKER_STATUS_BLOCKED,
    PACKER_STATUS_FAILED
} packer_status;

/* Lower-case names as they appear in JSON ("registry_mutation", "healthy",
 * "ok"). Static strings. Any thread. */
const char *packer_op_class_name(packer_op_class c);
const char *packer_state_name(packer_state s);
const char *packer_status_name(packer_status s);

/* ---- event bus -------------------------------------------------------- */

/*
 * The typed event bus is owned by the host (Studio's Container, the CLI,
 * a test). The host creates it, hands the same reference to every project
 * it opens, subscribes, and frees it after closing those projects. packer
 * never creates a bus of its own behind the host's back.
 *
 * Events are delivered on the bus's own dispatcher thread, never on the
 * thread that called the service, in publication order. Within one
 * operation `sequence` is monotonic and events arrive in causal order.
 * Consecutive progress_updated events of one operation that have not yet
 * been delivered may be coalesced into the latest; lifecycle events never
 * are.
 */
typedef struct packer_bus packer_bus;
typedef struct packer_event packer_event;

typedef enum {
    PACKER_EV_ASSET_DISCOVERED = 0,
    PACKER_EV_ASSET_CHANGED,
    PACKER_EV_DIAGNOSTICS_UPDATED,
    PACKER_EV_BUILD_STARTED,
    PACKER_EV_BUILD_FINISHED,
    PACKER_EV_CACHE_HIT,
    PACKER_EV_CACHE_MISS,
    PACKER_EV_PREVIEW_READY,
    PACKER_EV_ACTION_APPLIED,
    PACKER_EV_ACTION_FAILED,
    PACKER_EV_PROGRESS_UPDATED,
    PACKER_EV_RUNTIME_STATE_CHANGED,
    PACKER_EV__COUNT
} packer_event_kind;

/* Subscriber callback. Runs on the dispatcher thread. The event is
 * borrowed: valid only during the call (use packer_event_json() to keep
 * it). A callback must not call packer_bus_free() or packer_bus_flush() on
 * its own bus; it may call any read service. */
typedef void (*packer_event_cb)(const packer_event *ev, void *userdata);

/* Create a bus and its dispatcher thread. Returns 0 or PACKER_ENOMEM.
 * Any thread. Caller frees with packer_bus_free(). */
int packer_bus_new(packer_bus **out);

/* Deliver what is queued, stop the dispatcher and free the bus. Every
 * project opened with this bus must be closed first. Accepts NULL. */
void packer_bus_free(packer_bus *bus);

/* Subscribe cb(ev, userdata) to every event; *out_id (may be NULL)
 * identifies the subscription. Any thread. */
int packer_bus_subscribe(packer_bus *bus, packer_event_cb cb, void *userdata,
                         uint64_t *out_id);

/* Remove a subscription. When this returns, cb is not running and will not
 * run again (unless called from cb itself). Any thread. */
int packer_bus_unsubscribe(packer_bus *bus, uint64_t id);

/* Block until every event published before the call has been delivered.
 * Any thread except the dispatcher. */
void packer_bus_flush(packer_bus *bus);

/* Event accessors; strings owned by the event. */
packer_event_kind packer_event_get_kind(const packer_event *ev);
const char *packer_event_kind_name(packer_event_kind k);
const char *packer_event_operation_id(const packer_event *ev);
uint64_t packer_event_sequence(const packer_event *ev);
const char *packer_event_summary(const packer_event *ev);
/* The whole envelope as one line of JSON (project_id, operation_id,
 * sequence, kind, timestamp, summary, progress, affected_assets, ...).
 * Caller frees with packer_free(); NULL when out of memory. */
char *packer_event_json(const packer_event *ev);

/* ---- responses -------------------------------------------------------- */

/*
 * Every service returns one response: status, summary, runtime_state,
 * operation_id, operation_class, affected_assets, diagnostics,
 * proposed_actions, applied_actions, blockers, and data for reads.
 * Immutable once returned; may be read from any thread; caller frees with
 * packer_response_free().
 */
typedef struct packer_response packer_response;

void packer_response_free(packer_response *r);
packer_status packer_response_status(const packer_response *r);
packer_op_class packer_response_op_class(const packer_response *r);
packer_state packer_response_state(const packer_response *r);
const char *packer_response_summary(const packer_response *r);
const char *packer_response_operation_id(const packer_response *r);
/* The response as JSON text; pretty = 2-space indent, else one line.
 * Owned by the response. NULL only when out of memory. */
const char *packer_response_json(const packer_response *r, int pretty);

/* ---- projects --------------------------------------------------------- */

typedef struct packer_project packer_project;

/* Create a workspace at `dir` (which must exist): packer.json with a new
 * stable project id and `name` (NULL: the directory's name), and .packer/.
 * When dir is already a workspace nothing is written and the response says
 * status refused with an "already_initialized" blocker; an I/O failure is
 * status failed. Events go to `bus` (may be NULL: no events). Any thread.
 * Returns 0 whenever *out was set (inspect its status), PACKER_ENOMEM when
 * no response could be formed. Caller frees *out. */
int packer_init_workspace(const char *dir, const char *name, packer_bus *bus,
                          packer_response **out);

/* Find the workspace containing `start` (searching upward like git); on
 * success *out_root is its absolute path (caller frees with packer_free). */
int packer_find_workspace(const char *start, char **out_root);

/* Open the workspace rooted at `dir`. Loads the registry into the first
 * snapshot and starts the project's write lane. `bus` is the host's event
 * bus (NULL: the host wants no events). Errors: PACKER_ENOWORKSPACE,
 * PACKER_EPARSE (message names the file and position), PACKER_EIO.
 * Caller closes with packer_project_close(). */
int packer_project_open(const char *dir, packer_bus *bus, packer_project **out);

/* Finish queued writes, stop the lane, release the project. Calls in
 * flight on other threads must have returned. Accepts NULL. */
void packer_project_close(packer_project *p);

/* Absolute workspace root and stable project id; owned by the project. */
const char *packer_project_root(const packer_project *p);
const char *packer_project_id(const packer_project *p);

/* Current runtime state. Any thread. */
packer_state packer_project_state(const packer_project *p);

/*
 * Background observation (off by default). With on != 0 the project
 * watches its workspace on a thread of its own: inotify on every directory
 * of the workspace except .packer/ (whose registry it watches apart), VCS
 * and build output directories, never following a symlink; a stat rescan
 * against the last known stats when the kernel queue overflows, and every
 * 2 s while watches are exhausted. Changes are coalesced until the
 * workspace is quiet for 50 ms (at most 500 ms), so a burst (a checkout
 * touching thousands of files) gives one event, not a storm:
 *   - asset_changed, affected_assets naming every registered asset whose
 *     root changed, "paths" (up to 64) and "path_count"; before it, the
 *     runtime goes stale (runtime_state_changed naming the newly stale
 *     assets). list_assets and get_asset_details say "freshness":
 *     "fresh" | "stale" per asset and status lists "stale_assets"; reads
 *     still answer from the last coherent snapshot. A successful build
 *     makes the assets it built fresh again (not those changed after it
 *     started).
 *   - asset_discovered, "paths": a new asset.json outside every
 *     registered root (nothing is registered by observation).
 *   - diverged when another process changed the registry or packer.json,
 *     then reconciling -> healthy as the lane reloads the snapshot in the
 *     background (readers keep the old one until the new one is
 *     published; the healthy event names the assets that changed), or
 *     failed with the reason (status: reconcile_failed) when what is on
 *     disk cannot be read. failed is left only by a reconcile that works.
 * packer's own writes are not reported as changes. Observation never
 * writes to the workspace, never takes the cross-process lock, never waits
 * for the write lane, and runs with or without a bus (without one, states
 * and freshness still change). Calling it again with the same `on` does
 * nothing; on == 0 stops the thread (staleness already known stays);
 * packer_project_close stops it too. Turning it on returns once the first
 * walk is done (every file stat'ed, every directory watched: about 0.2 s
 * per 10,000 assets), so a change made after the call is seen. Owner
 * thread (the one that opens and closes the project). Returns 0,
 * PACKER_EINVAL (p is NULL) or
 * PACKER_EIO / PACKER_ENOMEM (packer_last_error says why).
 */
int packer_project_observe(packer_project *p, int on);

/*
 * Generic service entry point. `service` is a service name from the table
 * above; `params_json` is a JSON object (NULL or "" for none). Reads run on
 * the calling thread against the current snapshot and are never blocked
 * by a write in progress; mutations are queued on the project's write lane
 * and executed in submission order, and this call waits for the result.
 * A mutation (or doctor with apply) that starts while the runtime is
 * diverged because another process changed the registry or packer.json
 * (announced by the observer or by status) is refused with a "diverged"
 * blocker saying so, and a reconcile is queued; retry once the runtime is
 * healthy again (a runtime_state_changed event tells).
 * Any thread. Returns 0 when a response was produced (whatever its
 * status; inspect it), PACKER_EUNKNOWN for an unknown service,
 * PACKER_EINVAL for parameters that are not a JSON object, PACKER_ENOMEM
 * when memory ran out while the service ran (no response: it could be
 * incomplete; a mutation may still have been committed, the workspace
 * holds the old state or the new one). Caller frees *out.
 *
 * Parameters per service:
 *   register_asset  {"paths": [..], "address": s?, "kind": s?,
 *                    "exclude": b?}   paths relative to the workspace root
 *   include_asset_in_build / exclude_asset_from_build / get_asset_details
 *                   {"asset": id-or-address}
 *   remove_asset    {"asset": s, "delete_files": b?, "consent": b?}
 *   list_assets     {"filter": "all" | "included" | "excluded"}
 *   build           {"out": s?, "clean": b?, "jobs": 1..64?, "verify": b?,
 *                    "details": b?}
 *                   out: output directory (default "build", relative to the
 *                   workspace root); blocked by structural errors; data is
 *                   the build report, whose per-asset list is left out with
 *                   details false (.packer/build-report.json always has it)
 *   doctor          {"workspace": b?, "fix": b?, "apply": b?, "consent": b?,
 *                    "plan_id": s?, "rule_source": s?, "rule_name": s?,
 *                    "rule_budget": n?, "rule_memory": n?}
 *                   fix: a plan of proposed_actions (status preview); apply:
 *                   its safe actions, the others only with consent; a
 *                   plan_id that no longer matches is refused as stale
 *   quarantine      {"paths": [..], "reason": s?, "consent": b?}
 *   quarantine_list {}
 *   restore         {"id": s}   a quarantine record id
 */
int packer_call(packer_project *p, const char *service, const char *params_json,
                packer_response **out);

/* ---- cancellation ------------------------------------------------------ */

/*
 * A cancellation token for one or more long operations (build, doctor, a
 * write waiting its turn on the lane). The host creates it, passes it to
 * packer_call_cancellable() and may trigger it at any time; the operation
 * stops at the next point where stopping leaves the project exactly as it
 * was, and answers with a "cancelled" blocker:
 *   - not started yet (a write still queued on the lane, or any call whose
 *     token was already triggered): nothing runs; status refused;
 *   - build: stops between assets and before publishing; the output
 *     directory and the registry are left as they were (the cache keeps
 *     the outputs of the assets that finished); status failed;
 *   - doctor: stops between rules; nothing recorded or applied; failed.
 * A token triggered after the operation's commit point (a build already
 * swapping its outputs in, a registry commit) changes nothing: the
 * operation completes and its response says ok. Reads and registry
 * mutations are short and only honour a token before they start. The
 * runtime state is never changed by a cancellation.
 * A token stays triggered; use a new one per operation.
 */
typedef struct packer_cancel packer_cancel;

/* New untriggered token. Returns 0 or PACKER_ENOMEM. Any thread. Caller
 * frees with packer_cancel_free() once no call using it is in flight. */
int packer_cancel_new(packer_cancel **out);
/* Ask every operation holding tok to stop. Any thread, and
 * async-signal-safe (one lock-free atomic store). Accepts NULL. */
void packer_cancel_trigger(packer_cancel *tok);
/* 1 once triggered, else 0 (also for NULL). Any thread. */
int packer_cancel_triggered(const packer_cancel *tok);
/* Accepts NULL. */
void packer_cancel_free(packer_cancel *tok);

/* packer_call() with a cancellation token (NULL: not cancellable). Same
 * threads, ownership and return codes; a cancelled operation still
 * returns 0 with a response (status refused or failed, blocker
 * "cancelled"). A queued write whose token is triggered returns within
 * about 10 ms, without waiting for the writes ahead of it. */
int packer_call_cancellable(packer_project *p, const char *service, const char *params_json,
                            packer_cancel *tok, packer_response **out);

/* Typed wrappers over packer_call(); same threading and ownership. */
typedef struct {
    const char *address; /* only with exactly one path; NULL: from manifest */
    const char *kind;    /* write a minimal manifest when none exists */
    int exclude;         /* register without including in the build */
} packer_register_opts;

int packer_register_asset(packer_project *p, const char *const *paths, size_t npaths,
                          const packer_register_opts *opts, packer_response **out);
int packer_include_asset(packer_project *p, const char *asset, packer_response **out);
int packer_exclude_asset(packer_project *p, const char *asset, packer_response **out);
/* delete_files: also delete the asset's manifest and inputs (a workspace
 * mutation); without consent the response is a preview. */
int packer_remove_asset(packer_project *p, const char *asset, int delete_files, int consent,
                        packer_response **out);
int packer_list_assets(packer_project *p, packer_response **out);
int packer_get_asset_details(packer_project *p, const char *asset, packer_response **out);

#ifdef __cplusplus
}
#endif
#endif /* PACKER_H */
