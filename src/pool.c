/*
 * pool.c - the worker pool: run a function over items 0..n-1 on up to
 * `jobs` threads, while the calling thread reports progress.
 *
 * Invariants: every item is run exactly once, on some worker (or on the
 * caller when no thread can be started); pool_run returns only after all
 * have run and every thread it started is joined. Each worker gets its
 * own state from worker_new (freed with worker_free) and takes items in
 * index order from one atomic counter. Progress events are published only
 * by the calling thread, never by a worker. Once the operation is
 * cancelled (cancel.c) the items not yet started are skipped: the caller
 * must check op_cancelled() before trusting that every item ran.
 *
 * Threads: pool_run from the lane; fn, worker_new and worker_free run on
 * the workers, concurrently with each other (they must lock what they share).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <time.h>

#include "internal.h"

typedef struct {
    op *o;
    void *ctx;
    size_t n;
    pool_fn fn;
    void *(*worker_new)(void *ctx);
    void (*worker_free)(void *w);
    atomic_size_t next, done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} pool;

static void *pool_main(void *arg)
{
    pool *p = arg;
    void *w = p->worker_new ? p->worker_new(p->ctx) : NULL;
    for (size_t i; (i = atomic_fetch_add(&p->next, 1)) < p->n;) {
        if (!p->o || !op_cancelled(p->o)) /* cancelled: the rest only count as done */
            p->fn(p->ctx, i, w);
        if (atomic_fetch_add(&p->done, 1) + 1 == p->n) {
            pthread_mutex_lock(&p->mu); /* the waiter is waiting or will see done */
            pthread_cond_signal(&p->cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
    if (p->worker_free)
        p->worker_free(w);
    return NULL;
}

void pool_run(op *o, size_t n, int jobs_wanted, size_t work, const char *what, pool_fn fn,
              void *(*worker_new)(void *ctx), void (*worker_free)(void *w), void *ctx)
{
    pool p = {
        .o = o, .ctx = ctx, .n = n, .fn = fn, .worker_new = worker_new, .worker_free = worker_free};
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    size_t jobs = (size_t)(jobs_wanted < 1 ? 1 : jobs_wanted > 64 ? 64 : jobs_wanted);
    jobs = work < jobs ? (work ? work : 1) : jobs;
    pthread_t t[64];
    size_t started = 0;
    for (; n && started < jobs; started++)
        if (pthread_create(&t[started], NULL, pool_main, &p) != 0)
            break;
    if (started == 0)
        pool_main(&p);
    size_t reported = 0;
    pthread_mutex_lock(&p.mu);
    while (atomic_load(&p.done) < n) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000;
        if (ts.tv_nsec >= 1000000000)
            ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&p.cv, &p.mu, &ts);
        size_t done = atomic_load(&p.done);
        if (done != reported && done < n) {
            pthread_mutex_unlock(&p.mu);
            op_progress(o, done, n, what);
            reported = done;
            pthread_mutex_lock(&p.mu);
        }
    }
    pthread_mutex_unlock(&p.mu);
    for (size_t i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    op_progress(o, n, n, what);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
}
