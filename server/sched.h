/*
 * sched.h - the scheduler: ties the job registry, the bounded queue, the batcher and the worker
 * pool together on the loop thread (DESIGN.md 5).
 *
 * A submitted job's units enter the queue; whenever a worker is idle the batcher is asked for a
 * due batch (a uv timer wakes the loop when the oldest group will fall due; with no batching
 * delay every group is due, so a batch leaves on submit or as soon as a worker frees up); finished batches and
 * per-step progress arrive through a uv_async_t that the workers signal, and are turned into the
 * events below for whoever waits on the job (the HTTP layer). A 100 ms tick enforces per-job
 * deadlines and expires finished jobs.
 *
 * Thread-safety: loop thread only (the pool's notify hook is the one thing workers call).
 */
#ifndef TTTD_SERVER_SCHED_H
#define TTTD_SERVER_SCHED_H

#include <uv.h>

#include "server/batcher.h"
#include "server/jobs.h"
#include "server/metrics.h"
#include "server/options.h"
#include "server/queue.h"
#include "server/worker.h"

/* What happens to a job, told to its waiter (job->waiter, when not NULL), on the loop thread. */
typedef struct srv_sched_events {
    /* Denoising step `step` of `steps` finished for the job's units in one batch; index: the
     * unit, or -1 when that batch holds all of the job's units. */
    void (*progress)(void *waiter, srv_job *j, int index, int step, int steps);
    /* A preview of unit index after step `step`: PNG bytes at latent resolution (w x h), valid
     * during the call. Only for jobs with preview_every > 0. May be NULL. */
    void (*preview)(void *waiter, srv_job *j, int index, int step, int steps, const uint8_t *png,
                    size_t len, int w, int h);
    /* Unit index has its encoded image (j->units[index].image). */
    void (*image)(void *waiter, srv_job *j, int index);
    /* The job has finished: DONE, or FAILED / CANCELED with j->error. Called once. */
    void (*finished)(void *waiter, srv_job *j);
    /* The workers finished loading (SRV_LOAD_READY) or one failed (SRV_LOAD_FAILED, msg says
     * why). */
    void (*load_state)(void *user, srv_load_state state, const char *msg);
    /* Units left the queue (a batch started, a job was canceled): queue positions moved. */
    void (*queue_moved)(void *user);
} srv_sched_events;

typedef struct srv_sched {
    uv_loop_t *loop;
    const srv_options *opts;
    srv_metrics *metrics;
    srv_sched_events ev;
    void *ev_user;

    srv_queue queue;
    srv_batcher batcher;
    srv_jobs jobs;
    srv_pool *pool;
    srv_batch *inflight; /* batches handed to workers, linked by prev/next */

    uv_async_t async;
    uv_timer_t batch_timer, tick;
    int handles_open;

    /* The fields are the scheduler's own: other modules ask through the functions below. */
    srv_load_state load_state;
    int draining; /* no new jobs; every group is due at once */
} srv_sched;

/*
 * Starts the workers (they load the models in the background) and the scheduler's handles.
 * pool: the pool's configuration (notify is filled in here). Returns 0 or a negative errno.
 */
int srv_sched_init(srv_sched *s, uv_loop_t *loop, const srv_options *o, srv_metrics *m,
                   const srv_pool_config *pool, const srv_sched_events *ev, void *ev_user);
/*
 * Stops the workers (after their current batch: cancel first, see srv_sched_cancel_all), frees
 * the jobs and closes the handles (the loop must run once more to finish closing them).
 */
void srv_sched_close(srv_sched *s);

/*
 * Whether a job of n images can be taken now: 0, -EBUSY (models still loading), -ESHUTDOWN
 * (draining) or -EAGAIN (the queue has fewer than n free places).
 */
int srv_sched_can_accept(const srv_sched *s, int n);
/*
 * Queues a job made with srv_jobs_create(&s->jobs, n) whose request fields and unit seeds are
 * filled in. Returns as srv_sched_can_accept; on failure the job is left unqueued.
 */
int srv_sched_submit(srv_sched *s, srv_job *j, double timeout_ms);
/*
 * Cancels a job that has not finished: its queued units leave the queue, its running ones are
 * dropped between steps, and it finishes at once (CANCELED for DELETE and disconnects, FAILED
 * with API_ERR_TIMEOUT / API_ERR_SHUTTING_DOWN otherwise). No-op on a finished job.
 */
void srv_sched_cancel(srv_sched *s, srv_job *j, srv_cancel reason);
/* Cancels every unfinished job (the drain timeout has passed). */
void srv_sched_cancel_all(srv_sched *s, srv_cancel reason);
/* Refuses new jobs from now on and stops waiting for fuller batches. */
void srv_sched_drain(srv_sched *s);
/* Unfinished jobs plus batches still on a worker: 0 once everything is done. */
int srv_sched_pending(const srv_sched *s);
/* 1-based position of the job's first queued unit, or 0 when none is queued. */
int srv_sched_position(const srv_sched *s, const srv_job *j);

/* ---- what the HTTP layer and the daemon ask ---- */

/* Images (units) waiting in the queue, and how many it holds at most (--max-queue). */
int srv_sched_queue_len(const srv_sched *s);
int srv_sched_queue_capacity(const srv_sched *s);
/* Where the workers are with loading the models; srv_sched_ready: SRV_LOAD_READY. */
srv_load_state srv_sched_load_state(const srv_sched *s);
int srv_sched_ready(const srv_sched *s);
/* Whether srv_sched_drain was called. */
int srv_sched_draining(const srv_sched *s);
/* Jobs not yet finished (queued or running). */
int srv_sched_unfinished(const srv_sched *s);
/* The number of workers. */
int srv_sched_workers(const srv_sched *s);
/* The job registry the scheduler owns (create, find, discard jobs through it). */
srv_jobs *srv_sched_jobs(srv_sched *s);

#endif
