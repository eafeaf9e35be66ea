/*
 * test_pool.c - the daemon's cross-thread path run under ThreadSanitizer (`make tsan`): real jobs
 * of the tiny model on three CPU worker threads, driven through the scheduler on a libuv loop as
 * `tttd serve` drives it.
 *
 * The loop thread submits jobs (srv_sched_submit), cancels queued and running ones
 * (srv_sched_cancel, as DELETE /v1/jobs/{id} and the request timeout do), drains with work in
 * flight and cancels what is left (srv_sched_drain, srv_sched_cancel_all, as SIGTERM and the
 * drain timeout do); the workers run the engine, post progress, previews and finished batches on
 * the completion queue and wake the loop with uv_async_send. Every job's events are counted on
 * the loop thread, and each job must finish exactly once, in the state its story calls for.
 *
 * A plain program (Criterion cannot start under TSan, Snaipe/Criterion#274) that ends with
 * "N passed, N failed". Run it from the repository root: it serves tests/fixtures/tiny_model.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cmd/cmd_serve.h"
#include "engine/core/log.h"
#include "server/loop.h"
#include "server/metrics.h"
#include "server/models.h"
#include "server/sched.h"

#define WORKERS 3
#define MAX_JOBS 64
#define POLL_MS 5
/* Each phase must finish within this; a wedge fails the run instead of hanging it. */
#define PHASE_LIMIT_MS 60000.0
/* "Slow" jobs run until they are canceled (tens of seconds of steps even uninstrumented). */
#define SLOW_STEPS 10000 /* the engine's bound */

static int passed, failed;

static void check(int ok, const char *what)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    fflush(stdout);
    if (ok)
        passed++;
    else
        failed++;
}

/* What the harness saw of one job (the job's waiter), and how it must end. */
typedef struct rec {
    srv_job *job;
    char name[SRV_ID_LEN];
    int finished, images, progress, previews, max_step;
    api_job_state state; /* when finished */
    api_err error;
    int images_present; /* units holding encoded bytes when it finished */
    api_job_state want_state;
    api_err want_error;
} rec;

enum {
    PH_LOAD,
    PH_MANY,       /* many concurrent jobs of three shapes, some with previews */
    PH_CANCEL,     /* slow jobs fill the workers; queued ones and a shared batch are canceled */
    PH_CANCEL_RUN, /* the running slow jobs are canceled; a running job times out */
    PH_DRAIN,      /* drain with work in flight, then cancel what is left (the drain timeout) */
    PH_CLOSE,
    PH_DONE
};

typedef struct harness {
    uv_loop_t loop;
    uv_timer_t poll;
    srv_options opts;
    srv_models models;
    srv_metrics *metrics;
    srv_sched sched;
    int phase, step;
    double phase_start;
    rec recs[MAX_JOBS];
    int nrec;
    int ids;
    /* Jobs of the cancel phases, by role. */
    rec *slow[3], *queued[4], *x, *y, *timeout_job;
    int drain_first, drain_slow; /* first rec index of the drain phase's two groups */
} harness;

/* ---- events from the scheduler (loop thread) ---- */

static void ev_progress(void *waiter, srv_job *j, int index, int step, int steps)
{
    rec *r = waiter;
    (void)j, (void)index, (void)steps;
    r->progress++;
    if (step > r->max_step)
        r->max_step = step;
}

static void ev_preview(void *waiter, srv_job *j, int index, int step, int steps,
                       const uint8_t *png, size_t len, int w, int h)
{
    rec *r = waiter;
    (void)j, (void)index, (void)step, (void)steps, (void)w, (void)h;
    /* A PNG starts with its 8-byte signature. */
    if (len > 8 && png[1] == 'P' && png[2] == 'N' && png[3] == 'G')
        r->previews++;
}

static void ev_image(void *waiter, srv_job *j, int index)
{
    rec *r = waiter;
    if (j->units[index].image && j->units[index].image_len > 0)
        r->images++;
}

static void ev_finished(void *waiter, srv_job *j)
{
    rec *r = waiter;
    r->finished++;
    r->state = j->state;
    r->error = j->error;
    r->images_present = 0;
    for (int k = 0; k < j->n; k++)
        r->images_present += j->units[k].image != NULL;
}

/* ---- jobs ---- */

/* Submits a job as the HTTP layer does; returns its record or NULL (the job discarded). */
static rec *submit(harness *h, const char *name, int n, int w, int ht, int steps,
                   int preview_every, double timeout_ms, api_job_state want, api_err want_err,
                   int *rc_out)
{
    char id[SRV_ID_LEN];
    snprintf(id, sizeof id, "%s-%d", name, h->ids++);
    srv_job *j = srv_jobs_create(&h->sched.jobs, n, id);
    if (!j || h->nrec == MAX_JOBS) {
        fprintf(stderr, "test_pool: out of memory or records\n");
        exit(1);
    }
    j->model = 0;
    j->model_name = h->models.v[0].name;
    j->prompt = strdup(name);
    j->guidance = 1.0f + (float)(h->ids % 3);
    j->width = w, j->height = ht, j->steps = steps, j->n = n;
    j->format = h->ids % 4 == 0 ? API_FORMAT_JPEG : API_FORMAT_PNG;
    j->quality = 90;
    j->preview_every = preview_every;
    for (int k = 0; k < n; k++)
        j->units[k].seed = (uint64_t)(h->ids * 7 + k);
    int rc = srv_sched_submit(&h->sched, j, timeout_ms);
    if (rc_out)
        *rc_out = rc;
    if (rc) {
        srv_jobs_discard(&h->sched.jobs, j);
        return NULL;
    }
    rec *r = &h->recs[h->nrec++];
    memset(r, 0, sizeof *r);
    r->job = j;
    snprintf(r->name, sizeof r->name, "%s", id);
    r->want_state = want;
    r->want_error = want_err;
    j->waiter = r;
    return r;
}

/* The loop-side cancel, as DELETE /v1/jobs/{id} does it. */
static void cancel(harness *h, rec *r, srv_cancel why)
{
    srv_sched_cancel(&h->sched, r->job, why);
}

static int queued(const rec *r)
{
    for (int k = 0; k < r->job->n; k++)
        if (r->job->units[k].in_queue)
            return 1;
    return 0;
}

static void next_phase(harness *h)
{
    static const char *names[] = {"load", "many", "cancel", "cancel running", "drain"};
    printf("     (%s: %.1f s)\n", names[h->phase], (srv_now_ms() - h->phase_start) / 1e3);
    h->phase++;
    h->step = 0;
    h->phase_start = srv_now_ms();
}

/* ---- the phases, one poll at a time on the loop thread ---- */

static void phase_many(harness *h)
{
    if (h->step == 0) {
        static const int shapes[3][3] = {{32, 48, 2}, {64, 32, 3}, {32, 32, 2}};
        for (int i = 0; i < 16; i++) {
            const int *s = shapes[i % 3];
            submit(h, "many", 1 + i % 3, s[0], s[1], s[2], i % 5 == 0 ? 1 : 0, 0, API_JOB_DONE,
                   API_OK, NULL);
        }
        h->step = 1;
        return;
    }
    if (srv_sched_pending(&h->sched) == 0)
        next_phase(h);
}

static void phase_cancel(harness *h)
{
    switch (h->step) {
    case 0:
        /* Three slow jobs, one per worker; then four more that must wait in the queue, and two
         * short ones of one shape (x, y) behind them that will share a batch. */
        for (int i = 0; i < 3; i++)
            h->slow[i] = submit(h, "slow", 1, 32, 32, SLOW_STEPS, 0, 0, API_JOB_CANCELED,
                                API_ERR_CANCELED, NULL);
        for (int i = 0; i < 4; i++)
            h->queued[i] = submit(h, "queued", 1 + i % 2, 32, 48, SLOW_STEPS, 0, 0,
                                  API_JOB_CANCELED, API_ERR_CANCELED, NULL);
        h->x = submit(h, "x", 1, 64, 32, 30, 0, 0, API_JOB_DONE, API_OK, NULL);
        h->y = submit(h, "y", 1, 64, 32, 30, 0, 0, API_JOB_CANCELED, API_ERR_CANCELED, NULL);
        h->step = 1;
        break;
    case 1: {
        /* Every worker is denoising a slow job. */
        for (int i = 0; i < 3; i++)
            if (h->slow[i]->max_step < 1)
                return;
        int all_queued = 1;
        for (int i = 0; i < 4; i++)
            all_queued &= queued(h->queued[i]);
        check(all_queued && queued(h->x) && queued(h->y),
              "jobs beyond the workers wait in the queue while slow jobs run");
        int at_once = 1;
        for (int i = 0; i < 4; i++) {
            cancel(h, h->queued[i], SRV_CANCEL_DELETE);
            at_once &= h->queued[i]->finished == 1 && !queued(h->queued[i]);
        }
        check(at_once, "a canceled queued job leaves the queue and finishes at once");
        /* Free one worker: x and y leave the queue together. */
        cancel(h, h->slow[0], SRV_CANCEL_DELETE);
        check(h->slow[0]->finished == 1, "a canceled running job finishes at once");
        h->step = 2;
        break;
    }
    case 2:
        /* y is denoising beside x: drop y between steps; x must still get its image. */
        if (h->y->max_step < 1)
            return;
        cancel(h, h->y, SRV_CANCEL_DISCONNECT);
        h->step = 3;
        break;
    case 3:
        if (!h->x->finished)
            return;
        check(h->x->job->batch_size == 2 && h->x->state == API_JOB_DONE,
              "the job sharing a batch with a canceled one finishes with its image");
        /* A running job whose request timeout passes (the 100 ms tick cancels it). */
        h->timeout_job = submit(h, "timeout", 1, 32, 32, SLOW_STEPS, 0, 2500, API_JOB_FAILED,
                                API_ERR_TIMEOUT, NULL);
        h->step = 4;
        break;
    case 4:
        if (!h->timeout_job->finished)
            return;
        check(h->timeout_job->max_step >= 1,
              "the timed-out job was running (progress seen) when its deadline passed");
        next_phase(h);
        break;
    }
}

static void phase_cancel_run(harness *h)
{
    if (h->step == 0) {
        cancel(h, h->slow[1], SRV_CANCEL_DELETE);
        cancel(h, h->slow[2], SRV_CANCEL_DISCONNECT);
        h->step = 1;
        return;
    }
    /* The canceled batches come back from the workers between two steps. */
    if (srv_sched_pending(&h->sched) == 0) {
        check(srv_pool_busy(h->sched.pool) == 0, "every worker is idle after the cancels");
        next_phase(h);
    }
}

static void phase_drain(harness *h)
{
    switch (h->step) {
    case 0: {
        h->drain_first = h->nrec;
        for (int i = 0; i < 6; i++)
            submit(h, "drain", 1 + i % 2, i % 2 ? 32 : 64, 32, 4, i == 3 ? 2 : 0, 0,
                   API_JOB_DONE, API_OK, NULL);
        h->drain_slow = h->nrec;
        for (int i = 0; i < 2; i++)
            submit(h, "drain-slow", 1, 32, 48, SLOW_STEPS, 0, 0, API_JOB_CANCELED,
                   API_ERR_SHUTTING_DOWN, NULL);
        srv_sched_drain(&h->sched);
        int rc = 0;
        rec *late = submit(h, "late", 1, 32, 32, 2, 0, 0, API_JOB_DONE, API_OK, &rc);
        check(!late && rc == -ESHUTDOWN && srv_sched_can_accept(&h->sched, 1) == -ESHUTDOWN,
              "a draining scheduler refuses new jobs (-ESHUTDOWN)");
        h->step = 1;
        break;
    }
    case 1: {
        /* Queued and running work goes on while draining. */
        for (int i = h->drain_first; i < h->drain_slow; i++)
            if (!h->recs[i].finished)
                return;
        int slow_running = 1;
        for (int i = h->drain_slow; i < h->nrec; i++)
            slow_running &= !h->recs[i].finished;
        check(slow_running, "the drain let short jobs finish while slow ones still run");
        /* The drain timeout: cancel everything left, as serve does. */
        srv_sched_cancel_all(&h->sched, SRV_CANCEL_SHUTDOWN);
        h->step = 2;
        break;
    }
    case 2:
        if (srv_sched_pending(&h->sched) == 0)
            next_phase(h);
        break;
    }
}

static void on_closed(uv_handle_t *hd)
{
    (void)hd;
}

static void on_poll(uv_timer_t *t)
{
    harness *h = t->data;
    if (h->phase != PH_CLOSE && srv_now_ms() - h->phase_start > PHASE_LIMIT_MS) {
        char what[96];
        snprintf(what, sizeof what, "phase %d (step %d) finished within %.0f s", h->phase, h->step,
                 PHASE_LIMIT_MS / 1e3);
        check(0, what);
        srv_sched_cancel_all(&h->sched, SRV_CANCEL_SHUTDOWN);
        h->phase = PH_CLOSE;
    }
    switch (h->phase) {
    case PH_LOAD:
        if (srv_sched_ready(&h->sched)) {
            check(1, "three CPU workers loaded the tiny model");
            next_phase(h);
        } else if (srv_sched_load_state(&h->sched) == SRV_LOAD_FAILED) {
            check(0, "three CPU workers loaded the tiny model");
            h->phase = PH_CLOSE;
        }
        break;
    case PH_MANY:
        phase_many(h);
        break;
    case PH_CANCEL:
        phase_cancel(h);
        break;
    case PH_CANCEL_RUN:
        phase_cancel_run(h);
        break;
    case PH_DRAIN:
        phase_drain(h);
        break;
    case PH_CLOSE:
        /* Only once nothing is on a worker: srv_sched_close frees the jobs the batches point to. */
        if (srv_sched_pending(&h->sched) && srv_now_ms() - h->phase_start < 2 * PHASE_LIMIT_MS)
            break;
        h->phase = PH_DONE;
        break;
    default:
        break;
    }
    if (h->phase == PH_DONE) {
        uv_timer_stop(&h->poll);
        uv_close((uv_handle_t *)&h->poll, on_closed);
        uv_stop(&h->loop); /* the scheduler's handles stay open until srv_sched_close */
    }
}

/* ---- the verdict, from the records (before the scheduler frees the jobs) ---- */

static void check_records(harness *h)
{
    int once = 1, right = 1, whole = 1, progressed = 1, previews = 1, n_prev = 0;
    for (int i = 0; i < h->nrec; i++) {
        rec *r = &h->recs[i];
        if (r->finished != 1) {
            once = 0;
            printf("     %s finished %d times\n", r->name, r->finished);
        }
        if (r->state != r->want_state || r->error != r->want_error) {
            right = 0;
            printf("     %s ended in state %d error %d, expected %d / %d\n", r->name, r->state,
                   r->error, r->want_state, r->want_error);
        }
        if (r->want_state == API_JOB_DONE) {
            if (r->images != r->job->n || r->images_present != r->job->n) {
                whole = 0;
                printf("     %s: %d image events, %d images held, of %d\n", r->name, r->images,
                       r->images_present, r->job->n);
            }
            progressed &= r->progress > 0 && r->max_step == r->job->steps;
            if (r->job->preview_every > 0) {
                previews &= r->previews > 0;
                n_prev++;
            }
        }
        if (r->job->units_out != 0) {
            once = 0;
            printf("     %s still has %d units out\n", r->name, r->job->units_out);
        }
    }
    char what[128];
    snprintf(what, sizeof what, "each of %d jobs finished exactly once, no unit left out", h->nrec);
    check(once && h->nrec > 30, what);
    check(right, "every job ended in its expected state (done, canceled, timed out, shut down)");
    check(whole, "every finished job has all of its images, each told once");
    check(progressed, "every finished job reported progress up to its last step");
    check(previews && n_prev > 0, "jobs that asked for previews got PNG previews");
    check(h->sched.jobs.active == 0 && srv_pool_busy(h->sched.pool) == 0,
          "no job active and no worker busy at the end");
}

int main(void)
{
    static harness h;
    char err[512] = "bad options";
    char *argv[] = {"serve", "--model", "default=tests/fixtures/tiny_model", "--workers", "3",
                    "--max-batch", "2", "--max-queue", "256", "--job-ttl", "3600", NULL};
    char *envp[] = {NULL};
    srv_pool_config pc = {.n_workers = WORKERS, .cuda = 0, .dtype = ENG_DTYPE_F32};
    srv_sched_events ev = {.progress = ev_progress, .preview = ev_preview, .image = ev_image,
                           .finished = ev_finished};

    eng_log_set_level(ENG_LOG_WARN);
    if (cmd_serve_options(&h.opts, (int)(sizeof argv / sizeof *argv) - 1, argv, envp, stdout,
                          stderr) >= 0 ||
        srv_models_init(&h.models, h.opts.models, h.opts.n_models, err, sizeof err)) {
        fprintf(stderr, "test_pool: %s (run from the repository root)\n", err);
        return 1;
    }
    pc.models = h.models.v;
    pc.n_models = h.models.n;
    if (!(h.metrics = srv_metrics_new()) || uv_loop_init(&h.loop) ||
        srv_sched_init(&h.sched, &h.loop, &h.opts, h.metrics, &pc, &ev, &h)) {
        fprintf(stderr, "test_pool: could not start the scheduler\n");
        return 1;
    }
    uv_timer_init(&h.loop, &h.poll);
    h.poll.data = &h;
    h.phase_start = srv_now_ms();
    uv_timer_start(&h.poll, on_poll, POLL_MS, POLL_MS);
    double t0 = srv_now_ms();
    uv_run(&h.loop, UV_RUN_DEFAULT); /* until the last phase stops it */

    check_records(&h);
    srv_sched_close(&h.sched); /* joins the workers */
    uv_run(&h.loop, UV_RUN_DEFAULT);
    check(uv_loop_close(&h.loop) == 0, "the loop closes with no handle left");
    srv_metrics_free(h.metrics);
    srv_models_free(&h.models);
    srv_options_free(&h.opts);
    printf("(%.1f s)\n%d passed, %d failed\n", (srv_now_ms() - t0) / 1e3, passed, failed);
    return failed ? 1 : 0;
}
