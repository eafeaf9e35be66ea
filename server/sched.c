/*
 * sched.c - the scheduler on the loop thread (see sched.h): submit, dispatch, completion,
 * cancellation, deadlines.
 */
#include "server/sched.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/core/error.h"
#include "engine/core/log.h"
#include "server/errmap.h"
#include "server/loop.h"

#define TICK_MS 100
#define MAX_KEPT_JOBS 10000
/* The cancel value of a job stopped by a failure (not a srv_cancel reason: no metric). */
#define CANCEL_FAILED SRV_CANCEL_COUNT

static void dispatch(srv_sched *s);

static void pool_notify(void *user)
{
    uv_async_send(user);
}

/* Takes a job's queued units out of the queue and tells workers to drop its running ones. */
static void job_stop(srv_sched *s, srv_job *j, int cancel_value)
{
    int moved = 0;
    atomic_store(&j->cancel, cancel_value);
    for (int k = 0; k < j->n; k++) {
        srv_unit *u = &j->units[k];
        if (u->in_queue) {
            srv_queue_remove(&s->queue, u);
            j->units_out--;
            moved = 1;
        }
    }
    srv_metrics_set_queue_size(s->metrics, s->queue.size);
    if (moved && s->ev.queue_moved)
        s->ev.queue_moved(s->ev_user);
}

static void job_finished(srv_sched *s, srv_job *j, api_job_state state, api_err e,
                         const char *msg)
{
    srv_job_finish(&s->jobs, j, state, e, msg, srv_now_ms());
    if (j->waiter && s->ev.finished)
        s->ev.finished(j->waiter, j);
}

/* ---- progress and completion ---- */

/* Reports every step of b not yet reported, once per job of the batch. */
static void report_progress(srv_sched *s, srv_batch *b)
{
    int step = atomic_load_explicit(&b->step, memory_order_acquire);
    int steps = b->key.steps;
    for (; b->emitted_step < step; b->emitted_step++) {
        int st = b->emitted_step + 1;
        for (int k = 0; k < b->n; k++) {
            srv_unit *u = b->units[k];
            srv_job *j = u->job;
            j->unit_step[u->index] = st;
            /* One event per job and step: at the job's first unit in this batch. */
            int first = 1, all = 0;
            for (int q = 0; q < k && first; q++)
                first = b->units[q]->job != j;
            if (!first || srv_job_is_finished(j) || !j->waiter || !s->ev.progress)
                continue;
            for (int q = k; q < b->n; q++)
                all += b->units[q]->job == j;
            s->ev.progress(j->waiter, j, all == j->n ? -1 : u->index, st, steps);
        }
    }
}

static void complete_batch(srv_sched *s, srv_batch *b)
{
    report_progress(s, b);
    for (int k = 0; k < b->n; k++) {
        srv_unit *u = b->units[k];
        srv_job *j = u->job;
        j->units_out--;
        /* Phase times once per job and batch (the units of a job share them). */
        int first = 1;
        for (int q = 0; q < k && first; q++)
            first = b->units[q]->job != j;
        if (first && b->status != ENG_ECANCELED) {
            j->text_encode_ms += b->timings.text_encode_ms;
            j->denoise_ms += b->timings.denoise_ms;
            j->vae_ms += b->timings.vae_ms;
            if (b->n > j->batch_size)
                j->batch_size = b->n;
        }
        if (srv_job_is_finished(j))
            continue;
        if (u->status == 0) {
            j->encode_ms += u->encode_ms;
            j->images_done++;
            srv_metrics_images(s->metrics, 1);
            if (j->waiter && s->ev.image)
                s->ev.image(j->waiter, j, u->index);
            if (j->images_done == j->n)
                job_finished(s, j, API_JOB_DONE, API_OK, NULL);
        } else if (u->status != ENG_ECANCELED) {
            eng_log(ENG_LOG_ERROR, j->id, "image %d failed: %s", u->index, b->errmsg);
            j->units_failed++;
            job_stop(s, j, CANCEL_FAILED);
            job_finished(s, j, API_JOB_FAILED, srv_errmap_engine(u->status), b->errmsg);
        }
    }
}

static void on_async(uv_async_t *h)
{
    srv_sched *s = h->data;
    /* In this order: the done batches, then the previews (a batch posts all of its previews
     * before itself, so these jobs are alive), then the steps (the worker stores a step before
     * posting its previews, so progress comes before the previews of its step). */
    srv_batch *done = srv_pool_take_done(s->pool);
    srv_preview *pv = srv_pool_take_previews(s->pool);
    for (srv_batch *b = s->inflight; b; b = b->next)
        report_progress(s, b);
    while (pv) {
        srv_preview *next = pv->next;
        srv_job *j = pv->job;
        if (j && !srv_job_is_finished(j) && j->waiter && s->ev.preview)
            s->ev.preview(j->waiter, j, pv->index, pv->step, pv->steps, pv->png, pv->png_len,
                          pv->width, pv->height);
        srv_preview_free(pv);
        pv = next;
    }

    while (done) {
        srv_batch *b = done;
        done = done->done_next;
        /* Unlink from the in-flight list. */
        for (srv_batch **pp = &s->inflight; *pp; pp = &(*pp)->next)
            if (*pp == b) {
                *pp = b->next;
                break;
            }
        complete_batch(s, b);
        free(b);
    }

    if (s->load_state == SRV_LOAD_PENDING) {
        char msg[600] = "";
        srv_load_state st = srv_pool_load_state(s->pool, msg, sizeof msg);
        if (st != SRV_LOAD_PENDING) {
            s->load_state = st;
            srv_metrics_set_ready(s->metrics, st == SRV_LOAD_READY);
            if (s->ev.load_state)
                s->ev.load_state(s->ev_user, st, msg);
        }
    }
    dispatch(s);
}

/* ---- dispatch ---- */

static void on_batch_timer(uv_timer_t *t)
{
    dispatch(t->data);
}

static void dispatch(srv_sched *s)
{
    double wait = -1;
    int moved = 0;
    while (s->load_state == SRV_LOAD_READY) {
        int w = srv_pool_idle_worker(s->pool);
        if (w < 0)
            break;
        srv_batch *b = calloc(1, sizeof *b);
        if (!b) {
            wait = 10; /* try again soon; the units stay queued */
            break;
        }
        double now = srv_now_ms();
        if (!srv_batcher_take(&s->batcher, &s->queue, now, s->draining, b->units, &b->n, &wait)) {
            free(b);
            break;
        }
        b->key = b->units[0]->key;
        for (int k = 0; k < b->n; k++) {
            srv_unit *u = b->units[k];
            srv_job *j = u->job;
            if (j->state == API_JOB_QUEUED)
                j->state = API_JOB_RUNNING;
            if (j->first_start_ms <= 0)
                j->first_start_ms = now;
            srv_metrics_queue_wait(s->metrics, (now - u->enqueued_ms) / 1e3);
        }
        b->next = s->inflight;
        s->inflight = b;
        srv_pool_submit(s->pool, w, b);
        wait = -1;
        moved = 1;
    }
    srv_metrics_set_queue_size(s->metrics, s->queue.size);
    uv_timer_stop(&s->batch_timer);
    if (wait >= 0 && s->queue.size > 0)
        uv_timer_start(&s->batch_timer, on_batch_timer, (uint64_t)(wait + 0.999), 0);
    if (moved && s->ev.queue_moved)
        s->ev.queue_moved(s->ev_user);
}

/* ---- the tick: deadlines and expiry ---- */

static void on_tick(uv_timer_t *t)
{
    srv_sched *s = t->data;
    double now = srv_now_ms();
    for (srv_job *j = s->jobs.head, *next; j; j = next) {
        next = j->next;
        if (!srv_job_is_finished(j) && j->deadline_ms > 0 && now >= j->deadline_ms)
            srv_sched_cancel(s, j, SRV_CANCEL_TIMEOUT);
    }
    srv_jobs_gc(&s->jobs, now, (double)s->opts->job_ttl_ms, MAX_KEPT_JOBS);
}

/* ---- the public face ---- */

int srv_sched_init(srv_sched *s, uv_loop_t *loop, const srv_options *o, srv_metrics *m,
                   const srv_pool_config *pool, const srv_sched_events *ev, void *ev_user)
{
    int rc;
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->opts = o;
    s->metrics = m;
    s->ev = *ev;
    s->ev_user = ev_user;
    srv_queue_init(&s->queue, o->max_queue);
    s->batcher.max_batch = o->max_batch < SRV_MAX_BATCH ? o->max_batch : SRV_MAX_BATCH;
    s->batcher.max_delay_ms = o->max_queue_delay_ms;
    if ((rc = srv_jobs_init(&s->jobs)))
        return rc;
    if ((rc = uv_async_init(loop, &s->async, on_async)))
        goto fail_jobs;
    s->async.data = s;
    uv_timer_init(loop, &s->batch_timer);
    uv_timer_init(loop, &s->tick);
    s->batch_timer.data = s->tick.data = s;
    s->handles_open = 1;
    uv_timer_start(&s->tick, on_tick, TICK_MS, TICK_MS);

    srv_pool_config pc = *pool;
    pc.metrics = m;
    pc.notify = pool_notify;
    pc.notify_user = &s->async;
    if ((rc = srv_pool_start(&s->pool, &pc)))
        goto fail_handles;
    return 0;

fail_handles:
    uv_timer_stop(&s->tick);
    uv_close((uv_handle_t *)&s->async, NULL);
    uv_close((uv_handle_t *)&s->batch_timer, NULL);
    uv_close((uv_handle_t *)&s->tick, NULL);
    s->handles_open = 0;
fail_jobs:
    srv_jobs_free(&s->jobs);
    return rc;
}

void srv_sched_close(srv_sched *s)
{
    srv_pool_stop(s->pool);
    s->pool = NULL;
    while (s->inflight) {
        srv_batch *b = s->inflight;
        s->inflight = b->next;
        free(b);
    }
    srv_jobs_free(&s->jobs);
    if (s->handles_open) {
        uv_timer_stop(&s->tick);
        uv_timer_stop(&s->batch_timer);
        uv_close((uv_handle_t *)&s->async, NULL);
        uv_close((uv_handle_t *)&s->batch_timer, NULL);
        uv_close((uv_handle_t *)&s->tick, NULL);
        s->handles_open = 0;
    }
}

int srv_sched_can_accept(const srv_sched *s, int n)
{
    if (s->draining)
        return -ESHUTDOWN;
    if (s->load_state != SRV_LOAD_READY)
        return -EBUSY;
    if (srv_queue_space(&s->queue) < n)
        return -EAGAIN;
    return 0;
}

int srv_sched_submit(srv_sched *s, srv_job *j, double timeout_ms)
{
    int rc = srv_sched_can_accept(s, j->n);
    if (rc)
        return rc;
    double now = srv_now_ms();
    if (j->arrival_ms <= 0)
        j->arrival_ms = now;
    j->deadline_ms = timeout_ms > 0 ? j->arrival_ms + timeout_ms : 0;
    for (int k = 0; k < j->n; k++) {
        srv_unit *u = &j->units[k];
        u->key = (srv_unit_key){j->model, j->width, j->height, j->steps};
        u->guidance = j->guidance;
        u->enqueued_ms = now;
        srv_queue_push(&s->queue, u); /* cannot fail: the space was checked */
        j->units_out++;
    }
    dispatch(s);
    return 0;
}

void srv_sched_cancel(srv_sched *s, srv_job *j, srv_cancel reason)
{
    if (srv_job_is_finished(j))
        return;
    job_stop(s, j, reason);
    srv_metrics_cancel(s->metrics, reason);
    eng_log(ENG_LOG_INFO, j->id, "canceled (%s)", srv_cancel_label(reason));
    switch (reason) {
    case SRV_CANCEL_TIMEOUT:
        job_finished(s, j, API_JOB_FAILED, API_ERR_TIMEOUT, NULL);
        break;
    case SRV_CANCEL_SHUTDOWN:
        job_finished(s, j, API_JOB_CANCELED, API_ERR_SHUTTING_DOWN, NULL);
        break;
    default:
        job_finished(s, j, API_JOB_CANCELED, API_ERR_CANCELED, NULL);
        break;
    }
    dispatch(s);
}

void srv_sched_cancel_all(srv_sched *s, srv_cancel reason)
{
    for (srv_job *j = s->jobs.head, *next; j; j = next) {
        next = j->next;
        srv_sched_cancel(s, j, reason);
    }
}

void srv_sched_drain(srv_sched *s)
{
    s->draining = 1;
    dispatch(s);
}

int srv_sched_pending(const srv_sched *s)
{
    int n = s->jobs.active;
    for (const srv_batch *b = s->inflight; b; b = b->next)
        n++;
    return n;
}

int srv_sched_position(const srv_sched *s, const srv_job *j)
{
    int best = 0;
    for (int k = 0; k < j->n; k++) {
        int p = srv_queue_position(&s->queue, &j->units[k]);
        if (p >= 0 && (best == 0 || p + 1 < best))
            best = p + 1;
    }
    return best;
}

int srv_sched_queue_len(const srv_sched *s)
{
    return s->queue.size;
}

int srv_sched_queue_capacity(const srv_sched *s)
{
    return s->queue.capacity;
}

srv_load_state srv_sched_load_state(const srv_sched *s)
{
    return s->load_state;
}

int srv_sched_ready(const srv_sched *s)
{
    return s->load_state == SRV_LOAD_READY;
}

int srv_sched_draining(const srv_sched *s)
{
    return s->draining;
}

int srv_sched_unfinished(const srv_sched *s)
{
    return s->jobs.active;
}

int srv_sched_workers(const srv_sched *s)
{
    return srv_pool_size(s->pool);
}

srv_jobs *srv_sched_jobs(srv_sched *s)
{
    return &s->jobs;
}
