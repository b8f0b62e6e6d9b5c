/*
 * lane.c - the write lane: one thread per project that runs every write.
 *
 * Jobs run one at a time in submission order, whatever the timing of the
 * threads that submit them; this is what makes "write/write on the same
 * project is serialized" true inside one process (store.c's flock extends
 * it across processes). lane_run() waits for its job, so a caller sees the
 * result of its own write and of every write submitted before it.
 *
 * lane_post queues a job without waiting for it (the observer schedules
 * reconciles this way: observation never blocks on the lane).
 *
 * Threads: lane_run from any thread except the lane itself (a job that
 * needs another write does it inline); lane_post from any thread; lane_free
 * from the owner only.
 */
#include <pthread.h>
#include <time.h>

#include "internal.h"

typedef struct job {
    lane_fn fn;
    void *arg;
    bool done;
    bool posted; /* lane_post: nobody waits; the lane frees it */
    struct job *next;
} job;

struct lane {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* jobs queued or stopping */
    pthread_cond_t done_cv; /* a job finished */
    job *head, *tail;
    bool stopping;
};

static void *lane_main(void *arg)
{
    lane *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->head && !l->stopping)
            pthread_cond_wait(&l->work_cv, &l->mu);
        if (!l->head)
            break;
        job *j = l->head;
        l->head = j->next;
        if (!l->head)
            l->tail = NULL;
        pthread_mutex_unlock(&l->mu);
        j->fn(j->arg);
        if (j->posted) {
            pk_free(j);
            pthread_mutex_lock(&l->mu);
            continue;
        }
        pthread_mutex_lock(&l->mu);
        j->done = true;
        pthread_cond_broadcast(&l->done_cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int lane_new(lane **out)
{
    lane *l = pk_calloc(1, sizeof *l);
    *out = NULL;
    if (!l)
        return pk_err(PACKER_ENOMEM, "out of memory");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work_cv, NULL);
    pthread_cond_init(&l->done_cv, NULL);
    if (pthread_create(&l->thread, NULL, lane_main, l) != 0) {
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->work_cv);
        pthread_cond_destroy(&l->done_cv);
        pk_free(l);
        return pk_err(PACKER_ENOMEM, "cannot start the write lane thread");
    }
    *out = l;
    return 0;
}

/* Under mu: append j and wake the lane; false (and an error set) when the
 * lane is stopping. */
static bool enqueue(lane *l, job *j)
{
    if (l->stopping) {
        pk_err(PACKER_ECLOSED, "project is closing");
        return false;
    }
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
    pthread_cond_signal(&l->work_cv);
    return true;
}

int lane_run(lane *l, lane_fn fn, void *arg)
{
    job j = {.fn = fn, .arg = arg};
    pthread_mutex_lock(&l->mu);
    bool queued = enqueue(l, &j);
    while (queued && !j.done)
        pthread_cond_wait(&l->done_cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
    return queued ? 0 : PACKER_ECLOSED;
}

/* Unlink j from the queue; true when it was still there (not started). */
static bool lane_unqueue(lane *l, job *j)
{
    job *prev = NULL;
    for (job *q = l->head; q; prev = q, q = q->next) {
        if (q != j)
            continue;
        if (prev)
            prev->next = j->next;
        else
            l->head = j->next;
        if (l->tail == j)
            l->tail = prev;
        return true;
    }
    return false;
}

int lane_run_cancel(lane *l, lane_fn fn, void *arg, const packer_cancel *tok, bool *dropped)
{
    *dropped = false;
    if (!tok)
        return lane_run(l, fn, arg);
    job j = {.fn = fn, .arg = arg};
    pthread_mutex_lock(&l->mu);
    bool queued = enqueue(l, &j);
    while (queued && !j.done) {
        /* the trigger is a bare atomic store (signal-safe), so nobody
         * signals this condition for it: look every 10 ms */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10000000;
        if (ts.tv_nsec >= 1000000000)
            ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&l->done_cv, &l->mu, &ts);
        if (!j.done && packer_cancel_triggered(tok) && lane_unqueue(l, &j)) {
            *dropped = true;
            break;
        }
    }
    pthread_mutex_unlock(&l->mu);
    return queued ? 0 : PACKER_ECLOSED;
}

int lane_post(lane *l, lane_fn fn, void *arg)
{
    job *j = pk_calloc(1, sizeof *j);
    if (!j)
        return pk_err(PACKER_ENOMEM, "out of memory");
    j->fn = fn;
    j->arg = arg;
    j->posted = true;
    pthread_mutex_lock(&l->mu);
    bool queued = enqueue(l, j);
    pthread_mutex_unlock(&l->mu);
    if (!queued)
        pk_free(j);
    return queued ? 0 : PACKER_ECLOSED;
}

bool lane_is_current(const lane *l)
{
    return l && pthread_equal(pthread_self(), l->thread);
}

void lane_free(lane *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    pthread_cond_signal(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->done_cv);
    pk_free(l);
}
