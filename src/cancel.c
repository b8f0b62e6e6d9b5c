/*
 * cancel.c - cancellation tokens for long operations.
 *
 * A token is one atomic flag. The host triggers it (from any thread, or
 * from a signal handler: triggering is a lock-free atomic store); the
 * operation it was given to looks at it only at safe points, where
 * stopping leaves the project exactly as it was:
 *   - a write still queued on the lane is taken off the queue and never
 *     runs (lane_run_cancel);
 *   - a build stops between assets (pool.c stops handing out items) and
 *     before its outputs are published; the output directory and the
 *     registry are untouched, the cache keeps what finished;
 *   - a doctor stops between rules, before it records or applies anything.
 * Past those points (a build publishing its outputs, a registry commit)
 * the operation completes and its response says so: cancellation never
 * tears a commit.
 *
 * Threads: packer_cancel_trigger from any thread or a signal handler; the
 * rest from any thread; free once no call uses the token.
 */
#include "internal.h"

struct packer_cancel {
    atomic_int flag;
};

int packer_cancel_new(packer_cancel **out)
{
    *out = pk_calloc(1, sizeof **out);
    return *out ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
}

void packer_cancel_trigger(packer_cancel *c)
{
    if (c)
        atomic_store(&c->flag, 1);
}

int packer_cancel_triggered(const packer_cancel *c)
{
    return c && atomic_load(&((packer_cancel *)c)->flag);
}

void packer_cancel_free(packer_cancel *c)
{
    pk_free(c);
}

bool op_cancelled(const op *o)
{
    return packer_cancel_triggered(o->cancel);
}

void op_cancel_response(op *o, bool started)
{
    resp_status(o->r, started ? PACKER_STATUS_FAILED : PACKER_STATUS_REFUSED);
    resp_blocker(o->r, "cancelled",
                 started ? "cancelled while running; nothing was published"
                         : "cancelled before it started; nothing ran");
    resp_summary(o->r, "%s",
                 started ? "cancelled: stopped before publishing anything"
                         : "cancelled before it started");
}
