/*
 * observe.c - background observation of an open project's workspace.
 *
 * One thread per observed project waits in poll() on an inotify
 * descriptor (every directory of the workspace outside .packer/, VCS and
 * build output directories, plus .packer/ and .packer/registry/ for
 * divergence) and an eventfd that stops or pokes it. Changed paths are
 * collected into a batch until the workspace is quiet for OBS_QUIET or
 * the batch is OBS_MAX_DELAY old, then classified against the current
 * snapshot:
 *   - a path in a registered asset root: that asset is stale (fresh.c);
 *     one asset_changed event per batch names every affected asset;
 *   - a new asset.json outside any registered root: asset_discovered;
 *   - the registry, generation or packer.json: compared with what the
 *     runtime published; when someone else changed them the runtime is
 *     diverged and a reconcile is posted to the lane (never waited for).
 * A path is a change only when its stat differs from the baseline the
 * observer keeps for every file it watches, so a write-temp-then-rename
 * is one change and a temp file that came and went is none; and packer's
 * own writes (noted by the lane through obs_note_write) are not changes.
 * When the kernel queue overflows, or watches run out, a stat rescan
 * against the baseline finds what the lost events would have said (while
 * watches are exhausted, every OBS_RESCAN seconds).
 *
 * Invariants: observation never mutates the workspace, never takes the
 * cross-process lock and never waits for the lane; states and snapshots
 * it reports are the ones the lane published. At rest the thread sleeps
 * in poll() with no timeout.
 *
 * Threads: packer_project_observe from the owner; the observer thread;
 * obs_note_write from lane threads; obs_post_reconcile from any thread.
 * Lock order: ob->mu is a leaf (nothing else is taken under it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define OBS_QUIET 0.05    /* s without events that closes a batch */
#define OBS_MAX_DELAY 0.5 /* s: a continuous stream still reports */
#define OBS_RESCAN 2.0    /* s between rescans while watches are exhausted */
#define OBS_OWN_TTL 30.0  /* s an own write is remembered */

#define DIR_MASK                                                                                   \
    (IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB |            \
     IN_DONT_FOLLOW | IN_ONLYDIR | IN_EXCL_UNLINK)

struct obs {
    packer_project *p;
    const char *root;
    pthread_mutex_t mu; /* cfg_hash, hold */
    obs_own *own;       /* packer's own recent writes (its own lock) */
    char cfg_hash[HASH_HEX_LEN + 1];
    bool hold, held;
    atomic_bool running, stopping, losing, overflow_asked, queued;
    /* the observer thread's own state */
    pthread_t thread;
    int ifd, wakefd;
    char **wd_path;
    size_t wd_cap;
    ptab base, pending;
    bool pend_registry, overflow, exhausted, rescanned;
    double first, last, next_rescan;
    unsigned long batches;
    char prefix[9];
};

static _Thread_local packer_project *tl_lane_project;

double obs_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *rel_join(const char *dir, const char *name)
{
    return *dir ? pk_asprintf("%s/%s", dir, name) : pk_strdup(name);
}

/* ---- watches -------------------------------------------------------------- */

static void add_watch(obs *ob, const char *rel, uint32_t mask)
{
    if (ob->ifd < 0)
        return;
    char *abs = *rel ? pk_asprintf("%s/%s", ob->root, rel) : pk_strdup(ob->root);
    int wd = abs ? inotify_add_watch(ob->ifd, abs, mask) : -1;
    pk_free(abs);
    if (wd < 0) {
        if (errno == ENOSPC && !ob->exhausted) {
            ob->exhausted = true; /* out of watches: rescans cover the rest */
            ob->next_rescan = obs_now() + OBS_RESCAN;
        }
        return;
    }
    if ((size_t)wd >= ob->wd_cap) {
        size_t cap = (size_t)wd * 2 + 64;
        char **v = pk_realloc(ob->wd_path, cap * sizeof *v);
        if (!v)
            return;
        memset(v + ob->wd_cap, 0, (cap - ob->wd_cap) * sizeof *v);
        ob->wd_path = v;
        ob->wd_cap = cap;
    }
    pk_free(ob->wd_path[wd]); /* same inode seen again (moved): new path */
    ob->wd_path[wd] = pk_strdup(rel);
}

static void forget_wd(obs *ob, int wd)
{
    if (wd >= 0 && (size_t)wd < ob->wd_cap) {
        pk_free(ob->wd_path[wd]);
        ob->wd_path[wd] = NULL;
    }
}

static bool under(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* A directory left (moved away): its watches go, so that nothing outside
 * the workspace is ever watched through them. */
static void unwatch_tree(obs *ob, const char *rel)
{
    for (size_t wd = 0; wd < ob->wd_cap; wd++)
        if (ob->wd_path[wd] && under(ob->wd_path[wd], rel)) {
            inotify_rm_watch(ob->ifd, (int)wd);
            forget_wd(ob, (int)wd);
        }
}

/* ---- walks: the baseline, new directories, rescans ------------------------- */

static void visit_dir_watch(void *ctx, const char *rel)
{
    add_watch(ctx, rel, DIR_MASK);
}

static void visit_file_base(void *ctx, const char *rel, const struct stat *st)
{
    ptab_ent *e = ptab_put(&((obs *)ctx)->base, rel);
    if (e) {
        cache_stat_of(st, &e->st);
        e->present = true;
    }
}

static void visit_file_pending(void *ctx, const char *rel, const struct stat *st)
{
    (void)st;
    ptab_put(&((obs *)ctx)->pending, rel);
}

typedef struct {
    obs *ob;
    ptab now;
} rescan_ctx;

static void visit_file_rescan(void *ctx, const char *rel, const struct stat *st)
{
    rescan_ctx *r = ctx;
    ptab_ent *e = ptab_put(&r->now, rel);
    if (e) {
        cache_stat_of(st, &e->st);
        e->present = true;
    }
}

static void visit_dir_rescan(void *ctx, const char *rel)
{
    add_watch(((rescan_ctx *)ctx)->ob, rel, DIR_MASK);
}

static void rescan_gone(ptab_ent *e, void *ctx)
{
    rescan_ctx *r = ctx;
    if (!ptab_get(&r->now, e->key))
        ptab_put(&r->ob->pending, e->key);
}

static void rescan_changed(ptab_ent *e, void *ctx)
{
    rescan_ctx *r = ctx;
    ptab_ent *old = ptab_get(&r->ob->base, e->key);
    if (!old || !old->present || !cache_stat_same(&old->st, &e->st))
        ptab_put(&r->ob->pending, e->key);
}

/* Compare the whole workspace with the baseline: every difference joins
 * the batch (flush updates the baseline path by path). */
static void rescan(obs *ob)
{
    rescan_ctx r = {ob, {0}};
    obs_visitor v = {visit_dir_rescan, visit_file_rescan, &r};
    obs_walk(ob->root, "", &v);
    ptab_each(&ob->base, rescan_gone, &r);
    ptab_each(&r.now, rescan_changed, &r);
    ptab_clear(&r.now);
    ob->pend_registry = ob->rescanned = true;
    ob->first = ob->last = obs_now() - OBS_MAX_DELAY; /* report at once */
}

static void watch_workspace(obs *ob)
{
    obs_visitor v = {visit_dir_watch, visit_file_base, ob};
    obs_walk(ob->root, "", &v);
    add_watch(ob, ".packer", IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_ONLYDIR);
    add_watch(ob, ".packer/registry",
              IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_ONLYDIR | IN_DONT_FOLLOW);
}

static void config_hash(obs *ob, char out[HASH_HEX_LEN + 1])
{
    char *path = io_join(ob->root, "packer.json");
    uint64_t size;
    if (!path || hash_file(path, out, &size) != 0)
        snprintf(out, HASH_HEX_LEN + 1, "unreadable");
    pk_free(path);
}

/* ---- kernel events ---------------------------------------------------------- */

typedef struct {
    ptab *pending;
    const char *prefix;
} prefix_ctx;

static void pend_under(ptab_ent *e, void *ctx)
{
    prefix_ctx *c = ctx;
    if (under(e->key, c->prefix))
        ptab_put(c->pending, e->key);
}

static void on_dir_event(obs *ob, uint32_t mask, const char *path)
{
    if (mask & (IN_CREATE | IN_MOVED_TO)) {
        if (!obs_skip_dir(ob->root, path)) {
            obs_visitor v = {visit_dir_watch, visit_file_pending, ob};
            obs_walk(ob->root, path, &v);
        }
    } else if (mask & IN_MOVED_FROM) {
        unwatch_tree(ob, path);
        prefix_ctx c = {&ob->pending, path};
        ptab_each(&ob->base, pend_under, &c);
    }
}

static void on_event(obs *ob, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW) {
        ob->overflow = true;
        return;
    }
    if (ev->mask & IN_IGNORED) {
        forget_wd(ob, ev->wd);
        return;
    }
    const char *dir = ev->wd >= 0 && (size_t)ev->wd < ob->wd_cap ? ob->wd_path[ev->wd] : NULL;
    if (!dir)
        return;
    if (under(dir, ".packer")) {
        if (strcmp(dir, ".packer") != 0 || strcmp(ev->name, "generation") == 0 ||
            strcmp(ev->name, "journal") == 0 || strcmp(ev->name, "registry") == 0)
            ob->pend_registry = true;
        if (strcmp(dir, ".packer") == 0 && strcmp(ev->name, "registry") == 0)
            add_watch(ob, ".packer/registry", IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE);
    } else {
        char *path = ev->len ? rel_join(dir, ev->name) : pk_strdup(dir);
        if (!path)
            return;
        if (ev->mask & IN_ISDIR) {
            on_dir_event(ob, ev->mask, path);
        } else if (strcmp(path, "packer.json") == 0) {
            ob->pend_registry = true;
        } else {
            struct stat st;
            char *abs = pk_asprintf("%s/%s", ob->root, path);
            /* a regular file just created: wait for its close */
            bool wait =
                (ev->mask & IN_CREATE) && abs && lstat(abs, &st) == 0 && S_ISREG(st.st_mode);
            if (!wait)
                ptab_put(&ob->pending, path);
            pk_free(abs);
        }
        pk_free(path);
    }
    double t = obs_now();
    if (!ob->pending.n && !ob->pend_registry)
        return;
    if (ob->first == 0)
        ob->first = t;
    ob->last = t;
}

static void read_events(obs *ob, bool discard)
{
    char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(ob->ifd, buf, sizeof buf);
        if (n <= 0)
            return; /* EAGAIN: drained */
        if (discard)
            continue;
        for (char *at = buf; at < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)at;
            on_event(ob, ev);
            at += sizeof *ev + ev->len;
        }
    }
}

/* ---- packer's own writes ------------------------------------------------------ */

void obs_lane_enter(packer_project *p)
{
    tl_lane_project = p;
}

void obs_lane_leave(void)
{
    tl_lane_project = NULL;
}

void obs_note_write(const char *abs, bool tree)
{
    obs *ob = tl_lane_project ? project_obs(tl_lane_project) : NULL;
    if (!ob || !atomic_load(&ob->running))
        return;
    size_t n = strlen(ob->root);
    if (strncmp(abs, ob->root, n) != 0 || abs[n] != '/' || under(abs + n + 1, ".packer"))
        return;
    const char *rel = abs + n + 1;
    own_note(ob->own, rel, abs, tree);
}

/* ---- divergence and reconcile ------------------------------------------------ */

static void op_for(op *o, packer_project *p, const char *prefix, const char *what, unsigned long n)
{
    memset(o, 0, sizeof *o);
    o->p = p;
    snprintf(o->id, sizeof o->id, "op-%s-%s%lu", prefix, what, n);
}

/* Lane job: reload packer.json and the registry under the lock
 * (project_begin_write reconciles a diverged or failed runtime).
 * Readers keep the old snapshot until the new one is published. */
static void reconcile_job(void *arg)
{
    packer_project *p = arg;
    obs *ob = project_obs(p);
    static atomic_ulong seq;
    op o;
    op_for(&o, p, ob ? ob->prefix : "rec", "reconcile", atomic_fetch_add(&seq, 1) + 1);
    if (ob)
        atomic_store(&ob->queued, false); /* changes from now on queue another */
    snap *cur = NULL;
    int rc = project_begin_write(p, &o, &cur); /* reconciles: packer.json, registry */
    if (rc == 0) {
        snap_unref(cur);
        project_end_write(p);
    }
    if (ob && rc == 0) { /* packer.json as reconciled is the new reference */
        char h[HASH_HEX_LEN + 1];
        config_hash(ob, h);
        pthread_mutex_lock(&ob->mu);
        memcpy(ob->cfg_hash, h, sizeof h);
        pthread_mutex_unlock(&ob->mu);
    }
}

void obs_post_reconcile(packer_project *p)
{
    obs *ob = project_obs(p);
    if (ob) {
        pthread_mutex_lock(&ob->mu);
        bool hold = ob->hold;
        ob->held |= hold;
        pthread_mutex_unlock(&ob->mu);
        if (hold || atomic_exchange(&ob->queued, true))
            return;
    }
    if (lane_post(project_lane(p), reconcile_job, p) != 0 && ob)
        atomic_store(&ob->queued, false);
}

void obs_test_hold(packer_project *p, bool hold)
{
    obs *ob = project_obs(p);
    if (!ob)
        return;
    pthread_mutex_lock(&ob->mu);
    ob->hold = hold;
    bool held = ob->held && !hold;
    if (!hold)
        ob->held = false;
    pthread_mutex_unlock(&ob->mu);
    if (held)
        obs_post_reconcile(p);
}

/* The registry, generation or packer.json changed on disk: diverged when
 * it was not this runtime's commit, and a reconcile in the background. */
static void check_registry(obs *ob, op *o)
{
    char h[HASH_HEX_LEN + 1];
    config_hash(ob, h);
    pthread_mutex_lock(&ob->mu);
    bool cfg = strcmp(h, ob->cfg_hash) != 0;
    pthread_mutex_unlock(&ob->mu);
    bool disk = project_check_disk(ob->p, o);
    packer_state st = packer_project_state(ob->p);
    if (cfg && (st == PACKER_STATE_HEALTHY || st == PACKER_STATE_STALE))
        project_set_diverged(ob->p, o), st = PACKER_STATE_DIVERGED;
    if (disk || cfg || st == PACKER_STATE_DIVERGED || st == PACKER_STATE_FAILED)
        obs_post_reconcile(ob->p);
}

/* ---- the thread -------------------------------------------------------------- */

static void flush(obs *ob)
{
    op o;
    op_for(&o, ob->p, ob->prefix, "obs", ++ob->batches);
    if (ob->pending.n) {
        own_expire(ob->own, OBS_OWN_TTL);
        obs_batch b = {.p = ob->p,
                       .root = ob->root,
                       .o = &o,
                       .base = &ob->base,
                       .pending = &ob->pending,
                       .own = own_match,
                       .own_ctx = ob->own,
                       .rescan = ob->rescanned};
        obs_batch_run(&b);
        ptab_clear(&ob->pending);
    }
    if (ob->pend_registry)
        check_registry(ob, &o);
    ob->pend_registry = ob->rescanned = false;
    ob->first = ob->last = 0;
}

/* Kernel events were lost: forget the batch, drain the queue, rescan. */
static void recover_overflow(obs *ob)
{
    ob->overflow = false;
    ptab_clear(&ob->pending);
    if (ob->ifd >= 0)
        read_events(ob, true);
    rescan(ob);
}

static int poll_timeout(obs *ob, double t)
{
    double due = -1;
    if (ob->first > 0) {
        double quiet = ob->last + OBS_QUIET, max = ob->first + OBS_MAX_DELAY;
        due = quiet < max ? quiet : max;
    }
    if (ob->exhausted && (due < 0 || ob->next_rescan < due))
        due = ob->next_rescan;
    if (due < 0)
        return -1; /* at rest: sleep until the kernel or the owner speaks */
    double ms = (due - t) * 1000;
    return ms <= 0 ? 0 : (int)ms + 1;
}

static void *obs_main(void *arg)
{
    obs *ob = arg;
    struct pollfd fds[2] = {{ob->wakefd, POLLIN, 0}, {ob->ifd, POLLIN, 0}};
    while (!atomic_load(&ob->stopping)) {
        int n = poll(fds, ob->ifd >= 0 ? 2 : 1, poll_timeout(ob, obs_now()));
        if (n < 0 && errno != EINTR)
            break;
        if (fds[0].revents & POLLIN) {
            uint64_t v;
            if (read(ob->wakefd, &v, sizeof v) < 0 && errno != EAGAIN)
                break;
        }
        if (atomic_exchange(&ob->overflow_asked, false))
            ob->overflow = true;
        if (!ob->overflow && ob->ifd >= 0 && (fds[1].revents & POLLIN))
            read_events(ob, atomic_load(&ob->losing));
        double t = obs_now();
        if (ob->overflow) {
            recover_overflow(ob);
        } else if (ob->exhausted && t >= ob->next_rescan) {
            rescan(ob);
            ob->next_rescan = t + OBS_RESCAN;
        }
        if (ob->first > 0 && (t >= ob->last + OBS_QUIET || t >= ob->first + OBS_MAX_DELAY))
            flush(ob);
    }
    return NULL;
}

int obs_test_overflow(packer_project *p, bool lose)
{
    obs *ob = project_obs(p);
    if (!ob || !atomic_load(&ob->running))
        return pk_err(PACKER_EINVAL, "the project is not observed");
    atomic_store(&ob->losing, lose);
    if (lose)
        return 0;
    atomic_store(&ob->overflow_asked, true);
    uint64_t one = 1;
    return write(ob->wakefd, &one, sizeof one) == sizeof one ? 0 : pk_err_errno("wake", "eventfd");
}

/* ---- on / off --------------------------------------------------------------- */

static void stop(obs *ob)
{
    if (!atomic_load(&ob->running))
        return;
    atomic_store(&ob->stopping, true);
    uint64_t one = 1;
    if (write(ob->wakefd, &one, sizeof one) < 0) {
        /* the eventfd cannot fail to take one increment; poll wakes anyway */
    }
    pthread_join(ob->thread, NULL);
    atomic_store(&ob->running, false);
    if (ob->ifd >= 0)
        close(ob->ifd);
    close(ob->wakefd);
    ob->ifd = ob->wakefd = -1;
    for (size_t i = 0; i < ob->wd_cap; i++)
        pk_free(ob->wd_path[i]);
    pk_free(ob->wd_path);
    ob->wd_path = NULL;
    ob->wd_cap = 0;
    ptab_clear(&ob->base);
    ptab_clear(&ob->pending);
    ob->first = ob->last = 0;
    ob->pend_registry = ob->overflow = ob->exhausted = false;
}

static int start(obs *ob)
{
    ob->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ob->ifd < 0) /* out of instances: rescans alone */
        ob->exhausted = true;
    ob->next_rescan = obs_now() + OBS_RESCAN;
    ob->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ob->wakefd < 0) {
        if (ob->ifd >= 0)
            close(ob->ifd);
        return pk_err_errno("cannot observe", "eventfd");
    }
    char h[HASH_HEX_LEN + 1];
    config_hash(ob, h);
    pthread_mutex_lock(&ob->mu);
    memcpy(ob->cfg_hash, h, sizeof h);
    pthread_mutex_unlock(&ob->mu);
    watch_workspace(ob); /* before returning: a change made after observe() is seen */
    atomic_store(&ob->stopping, false);
    atomic_store(&ob->running, true);
    if (pthread_create(&ob->thread, NULL, obs_main, ob) != 0) {
        atomic_store(&ob->running, false);
        ptab_clear(&ob->base);
        close(ob->wakefd);
        if (ob->ifd >= 0)
            close(ob->ifd);
        return pk_err(PACKER_ENOMEM, "cannot start the observer thread");
    }
    return 0;
}

int packer_project_observe(packer_project *p, int on)
{
    if (!p)
        return pk_err(PACKER_EINVAL, "project is required");
    obs *ob = project_obs(p);
    if (!on) {
        if (ob)
            stop(ob);
        return 0;
    }
    if (!ob) {
        if (!(ob = pk_calloc(1, sizeof *ob)) || !(ob->own = own_new())) {
            pk_free(ob);
            return pk_err(PACKER_ENOMEM, "out of memory");
        }
        ob->p = p;
        ob->root = packer_project_root(p);
        ob->ifd = ob->wakefd = -1;
        pthread_mutex_init(&ob->mu, NULL);
        hash_random_hex(ob->prefix, 4);
        project_set_obs(p, ob);
    }
    return atomic_load(&ob->running) ? 0 : start(ob);
}

void obs_free(obs *ob)
{
    if (!ob)
        return;
    stop(ob);
    own_free(ob->own);
    pthread_mutex_destroy(&ob->mu);
    pk_free(ob);
}
