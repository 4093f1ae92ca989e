/* threadpool.c -- a small fork-join pool.
 *
 * Decode runs a few hundred parallel regions per token, each tens of
 * microseconds long, so waking workers through a condition variable every time
 * would cost more than the work. Workers therefore spin for a short while on a
 * generation counter before they sleep; the caller takes tasks too.
 */
#include "common/error.h"
#include "common/alloc.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define SPIN_ITERATIONS (1 << 12) /* ~0.1 ms: covers the gaps between a layer's regions */

struct lkv_threadpool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    int sleeping;  /* guarded by mu */
    int stop;      /* guarded by mu; also read atomically via generation bump */
    atomic_uint generation;
    atomic_int next_task;
    atomic_int active;  /* workers still inside the current run */
    int n_tasks;
    void (*fn)(void *, int, int);
    void *arg;
};

typedef struct worker_arg {
    lkv_threadpool *tp;
    int index;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_tasks(lkv_threadpool *tp, int thread) {
    for (;;) {
        int t = atomic_fetch_add_explicit(&tp->next_task, 1, memory_order_relaxed);
        if (t >= tp->n_tasks)
            break;
        tp->fn(tp->arg, t, thread);
    }
}

static void *worker_main(void *p) {
    worker_arg wa = *(worker_arg *)p;
    lkv_free(p);
    lkv_threadpool *tp = wa.tp;
    unsigned seen = 0; /* the generation at creation; a run may start before we do */
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&tp->generation, memory_order_acquire)) == seen &&
               spins < SPIN_ITERATIONS) {
            cpu_relax();
            spins++;
        }
        if (g == seen) {
            pthread_mutex_lock(&tp->mu);
            tp->sleeping++;
            while ((g = atomic_load(&tp->generation)) == seen && !tp->stop)
                pthread_cond_wait(&tp->wake, &tp->mu);
            tp->sleeping--;
            int stop = tp->stop;
            pthread_mutex_unlock(&tp->mu);
            if (stop && g == seen)
                return NULL;
        }
        seen = g;
        pthread_mutex_lock(&tp->mu);
        int stop = tp->stop;
        pthread_mutex_unlock(&tp->mu);
        if (stop)
            return NULL;
        run_tasks(tp, wa.index);
        atomic_fetch_sub_explicit(&tp->active, 1, memory_order_release);
    }
}

int lkv_threadpool_create(int n_threads, lkv_threadpool **out) {
    if (!out)
        LKV_FAIL(LKV_ERR_INVALID, "threadpool_create: out is NULL");
    *out = NULL;
    if (n_threads < 1 || n_threads > 256)
        LKV_FAIL(LKV_ERR_INVALID, "threadpool_create: n_threads=%d not in [1, 256]", n_threads);
    lkv_threadpool *tp = lkv_calloc(1, sizeof *tp);
    if (!tp)
        LKV_FAIL(LKV_ERR_NOMEM, "threadpool_create: out of memory");
    tp->n_threads = n_threads;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->wake, NULL);
    atomic_init(&tp->generation, 0);
    atomic_init(&tp->next_task, 0);
    atomic_init(&tp->active, 0);
    if (n_threads > 1) {
        tp->threads = lkv_calloc((size_t)n_threads - 1, sizeof(pthread_t));
        if (!tp->threads) {
            lkv_threadpool_free(tp);
            LKV_FAIL(LKV_ERR_NOMEM, "threadpool_create: out of memory");
        }
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = lkv_malloc(sizeof *wa);
        if (!wa) {
            tp->n_threads = i;
            lkv_threadpool_free(tp);
            LKV_FAIL(LKV_ERR_NOMEM, "threadpool_create: out of memory");
        }
        wa->tp = tp;
        wa->index = i;
        if (pthread_create(&tp->threads[i - 1], NULL, worker_main, wa) != 0) {
            lkv_free(wa);
            tp->n_threads = i;
            lkv_threadpool_free(tp);
            LKV_FAIL(LKV_ERR_THREAD, "threadpool_create: pthread_create failed for thread %d", i);
        }
    }
    *out = tp;
    return LKV_OK;
}

int lkv_threadpool_size(const lkv_threadpool *tp) { return tp ? tp->n_threads : 1; }

void lkv_threadpool_free(lkv_threadpool *tp) {
    if (!tp)
        return;
    pthread_mutex_lock(&tp->mu);
    tp->stop = 1;
    atomic_fetch_add(&tp->generation, 1);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 1; i < tp->n_threads; i++)
        pthread_join(tp->threads[i - 1], NULL);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->wake);
    lkv_free(tp->threads);
    lkv_free(tp);
}

void lkv_threadpool_run(lkv_threadpool *tp, int n_tasks, void (*fn)(void *, int, int),
                        void *arg) {
    if (n_tasks <= 0)
        return;
    if (!tp || tp->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++)
            fn(arg, t, 0);
        return;
    }
    tp->fn = fn;
    tp->arg = arg;
    tp->n_tasks = n_tasks;
    atomic_store_explicit(&tp->next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&tp->active, tp->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add_explicit(&tp->generation, 1, memory_order_release);
    if (tp->sleeping)
        pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);
    run_tasks(tp, 0);
    int spins = 0;
    while (atomic_load_explicit(&tp->active, memory_order_acquire) > 0) {
        if (++spins < SPIN_ITERATIONS)
            cpu_relax();
        else
            sched_yield();
    }
}
