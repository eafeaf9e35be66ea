/*
 * worker.c - worker threads: load the models, then run batches handed over by the loop and post
 * them back (see worker.h).
 *
 * Each worker has its own mutex and condition variable for the hand-over, so the loop never
 * waits on a busy worker; the completion list has one lock shared by all. `busy` is the loop's
 * own bookkeeping (set by submit, cleared by take_done), so it needs no lock.
 */
#include "server/worker.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/metadata.h"
#include "engine/backend/backend.h"
#include "engine/core/log.h"
#include "server/errmap.h"
#include "server/image_encode.h"
#include "server/jobs.h"
#include "server/loop.h"

typedef struct worker {
    srv_pool *pool;
    int index;
    pthread_t thread;
    int started;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_batch *batch; /* handed over, not yet taken */
    int stop;

    int busy; /* loop-side */
} worker;

struct srv_pool {
    srv_pool_config cfg;
    worker *workers;
    int n;

    pthread_mutex_t mu; /* the completion list and the load states */
    srv_batch *done_head, *done_tail;
    srv_preview *pv_head, *pv_tail; /* previews posted, not yet taken (under mu) */
    atomic_int *load; /* [n] srv_load_state: written by workers, read by the loop */
    char load_msg[512];
};

static void notify(srv_pool *p)
{
    if (p->cfg.notify)
        p->cfg.notify(p->cfg.notify_user);
}

static void set_load_state(srv_pool *p, int w, srv_load_state state, const char *msg)
{
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->load[w], state);
    if (state == SRV_LOAD_FAILED && !p->load_msg[0])
        snprintf(p->load_msg, sizeof p->load_msg, "worker %d: %.480s", w, msg);
    pthread_mutex_unlock(&p->mu);
    notify(p);
}

/* ---- running a batch ---- */

static int unit_canceled(const srv_unit *u)
{
    return u->job && atomic_load_explicit(&u->job->cancel, memory_order_relaxed) != 0;
}

typedef struct step_ctx {
    srv_batch *b;
    srv_pool *p;
    uint8_t *rgb; /* [h, w, 3] scratch for one preview */
} step_ctx;

static int on_step(void *user, int step, int steps)
{
    srv_batch *b = ((step_ctx *)user)->b;
    srv_pool *p = ((step_ctx *)user)->p;
    (void)steps;
    atomic_store_explicit(&b->step, step, memory_order_release);
    notify(p);
    int canceled = 0;
    for (int k = 0; k < b->n; k++)
        canceled += unit_canceled(b->units[k]);
    return canceled == b->n; /* nonzero stops the engine: nobody wants these images */
}

/* ---- previews ---- */

void srv_preview_project(const float *latents, int C, int h, int w, uint8_t *rgb)
{
    const size_t plane = (size_t)h * (size_t)w;
    for (int k = 0; k < 3; k++) {
        int first = C >= 3 ? k : (k < C ? k : C - 1);
        int stride = C >= 3 ? 3 : C + 3; /* C < 3: one channel per colour */
        int m = 0;
        for (int c = first; c < C; c += stride)
            m++;
        /* 0.25 * sqrt(m) * mean = 0.25 * sum / sqrt(m) */
        const float scale = 0.25f / sqrtf((float)m);
        for (size_t i = 0; i < plane; i++) {
            float sum = 0.0f;
            for (int c = first; c < C; c += stride)
                sum += latents[(size_t)c * plane + i];
            float v = 0.5f + scale * sum;
            v = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; /* NaN -> 0 */
            rgb[i * 3 + (size_t)k] = (uint8_t)lrintf(v * 255.0f);
        }
    }
}

void srv_preview_free(srv_preview *pv)
{
    if (!pv)
        return;
    free(pv->png);
    free(pv);
}

srv_preview *srv_pool_take_previews(srv_pool *p)
{
    pthread_mutex_lock(&p->mu);
    srv_preview *list = p->pv_head;
    p->pv_head = p->pv_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    return list;
}

static int unit_preview_every(const srv_unit *u)
{
    return u->job ? u->job->preview_every : 0;
}

static int gcd(int a, int b)
{
    while (b) {
        int t = a % b;
        a = b, b = t;
    }
    return a;
}

/* The engine's preview hook: one PNG per unit that wants this step, posted to the loop. */
static void on_preview(void *user, int step, int steps, const float *latents, int n, int C,
                       int h, int w)
{
    step_ctx *c = user;
    srv_batch *b = c->b;
    srv_pool *p = c->p;
    const size_t per = (size_t)C * (size_t)h * (size_t)w;
    int posted = 0;
    for (int k = 0; k < n && k < b->n; k++) {
        srv_unit *u = b->units[k];
        int every = unit_preview_every(u);
        if (every <= 0 || step % every || unit_canceled(u))
            continue;
        srv_preview_project(latents + per * (size_t)k, C, h, w, c->rgb);
        srv_preview *pv = calloc(1, sizeof *pv);
        char msg[256];
        if (!pv || srv_image_encode(c->rgb, w, h, SRV_IMAGE_PNG, 90, &pv->png, &pv->png_len, msg,
                                    sizeof msg)) {
            free(pv); /* a preview is best effort: skip it */
            continue;
        }
        pv->job = u->job, pv->index = u->index;
        pv->step = step, pv->steps = steps;
        pv->width = w, pv->height = h;
        pthread_mutex_lock(&p->mu);
        if (p->pv_tail)
            p->pv_tail->next = pv;
        else
            p->pv_head = pv;
        p->pv_tail = pv;
        pthread_mutex_unlock(&p->mu);
        posted = 1;
    }
    if (posted)
        notify(p);
}

static void run_batch(worker *w, eng_pipeline *pipe, srv_batch *b)
{
    srv_pool *p = w->pool;
    const srv_unit_key *key = &b->key;
    eng_gen_item items[SRV_MAX_BATCH];
    eng_error err = {0};
    uint8_t *rgb = NULL;
    int canceled = 0;

    b->start_ms = srv_now_ms();
    b->status = 0;
    b->errmsg[0] = '\0';
    for (int k = 0; k < b->n; k++) {
        const srv_unit *u = b->units[k];
        canceled += unit_canceled(u);
        items[k] = (eng_gen_item){
            .prompt = u->job ? u->job->prompt : "",
            .negative_prompt = u->job ? u->job->negative_prompt : NULL,
            .guidance = u->job ? u->job->guidance : 1.0f,
            .seed = u->seed,
            .latents = NULL,
        };
    }
    if (canceled == b->n) {
        b->status = ENG_ECANCELED;
        goto out;
    }

    size_t img_bytes = (size_t)key->width * (size_t)key->height * 3;
    rgb = malloc(img_bytes * (size_t)b->n);
    if (!rgb) {
        b->status = ENG_ENOMEM;
        snprintf(b->errmsg, sizeof b->errmsg, "out of memory for %d images of %dx%d", b->n,
                 key->width, key->height);
        goto out;
    }
    /* Previews: the engine stops every gcd of the units' intervals; each unit picks its own. */
    int every = 0;
    for (int k = 0; k < b->n; k++)
        if (unit_preview_every(b->units[k]) > 0)
            every = gcd(every, unit_preview_every(b->units[k]));
    step_ctx ctx = {.b = b, .p = p};
    if (every > 0) {
        int f = eng_pipeline_vae_scale(pipe);
        ctx.rgb = malloc((size_t)(key->width / f) * (size_t)(key->height / f) * 3);
        if (!ctx.rgb)
            every = 0; /* no previews rather than no images */
    }
    eng_gen_request req = {.items = items, .n = b->n, .width = key->width,
                           .height = key->height, .steps = key->steps, .progress = on_step,
                           .progress_user = &ctx, .preview_every = every,
                           .preview = every > 0 ? on_preview : NULL, .preview_user = &ctx};
    int rc = eng_pipeline_generate(pipe, &req, rgb, &b->timings, &err);
    free(ctx.rgb);
    if (rc) {
        b->status = rc;
        snprintf(b->errmsg, sizeof b->errmsg, "%.500s", err.msg[0] ? err.msg : eng_strerror(rc));
        goto out;
    }
    srv_metrics_inference(p->cfg.metrics, (b->timings.text_encode_ms + b->timings.denoise_ms +
                                           b->timings.vae_ms) / 1e3);
    srv_metrics_batch(p->cfg.metrics, b->n);

    /* Encode here, not on the loop thread: PNG of a 1024^2 image takes tens of ms. */
    for (int k = 0; k < b->n; k++) {
        srv_unit *u = b->units[k];
        if (unit_canceled(u)) {
            u->status = ENG_ECANCELED;
            continue;
        }
        char msg[256];
        double t0 = srv_now_ms();
        srv_image_format fmt =
            u->job && u->job->format == API_FORMAT_JPEG ? SRV_IMAGE_JPEG : SRV_IMAGE_PNG;
        int quality = u->job ? u->job->quality : 90;
        char *info = NULL, *json = NULL;
        if (u->job && u->job->metadata) {
            const srv_job *j = u->job;
            api_image_meta im = {.prompt = j->prompt, .negative_prompt = j->negative_prompt,
                                 .seed = u->seed, .steps = j->steps, .guidance = j->guidance,
                                 .width = j->width, .height = j->height, .model = j->model_name};
            info = api_meta_infotext(&im);
            json = api_meta_json(&im);
        }
        srv_image_meta meta = {.parameters = info, .json = json};
        int e = srv_image_encode_meta(rgb + img_bytes * (size_t)k, key->width, key->height, fmt,
                                      quality, &meta, &u->image, &u->image_len, msg, sizeof msg);
        free(info);
        free(json);
        u->encode_ms = srv_now_ms() - t0;
        if (e) {
            u->status = srv_errmap_errno(e);
            snprintf(b->errmsg, sizeof b->errmsg, "image encoding: %.400s", msg);
            srv_metrics_worker_error(p->cfg.metrics);
            continue;
        }
        u->status = 0;
        srv_metrics_encode(p->cfg.metrics, u->encode_ms / 1e3);
    }
out:
    if (b->status) {
        for (int k = 0; k < b->n; k++)
            b->units[k]->status = b->status;
        if (b->status != ENG_ECANCELED) {
            srv_metrics_worker_error(p->cfg.metrics);
            LOG_ERROR("worker %d: batch of %d failed: %s", w->index, b->n, b->errmsg);
        }
    }
    free(rgb);
}

/* ---- the thread ---- */

static void *worker_main(void *arg)
{
    worker *w = arg;
    srv_pool *p = w->pool;
    const srv_pool_config *cfg = &p->cfg;
    eng_error err = {0};
    eng_pipeline **pipes = calloc((size_t)cfg->n_models, sizeof *pipes);
    eng_backend *be = NULL;

    if (!pipes) {
        set_load_state(p, w->index, SRV_LOAD_FAILED, "out of memory");
        goto wait_stop;
    }
    be = cfg->cuda ? eng_backend_cuda_create(w->index, &err) : eng_backend_cpu_create(&err);
    if (!be) {
        set_load_state(p, w->index, SRV_LOAD_FAILED, err.msg);
        goto wait_stop;
    }
    for (int m = 0; m < cfg->n_models; m++) {
        double t0 = srv_now_ms();
        if (eng_pipeline_load(&pipes[m], cfg->models[m].dir, be, cfg->dtype, &err)) {
            char msg[600];
            snprintf(msg, sizeof msg, "model %s (%s): %s", cfg->models[m].name,
                     cfg->models[m].dir, err.msg);
            set_load_state(p, w->index, SRV_LOAD_FAILED, msg);
            goto wait_stop;
        }
        LOG_INFO("worker %d (%s): loaded model %s from %s in %.0f ms", w->index, be->name,
                 cfg->models[m].name, cfg->models[m].dir, srv_now_ms() - t0);
    }
    set_load_state(p, w->index, SRV_LOAD_READY, NULL);

    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->batch && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        srv_batch *b = w->batch;
        w->batch = NULL;
        int stop = w->stop && !b;
        pthread_mutex_unlock(&w->mu);
        if (stop)
            break;

        srv_metrics_worker_busy(cfg->metrics, 1);
        run_batch(w, pipes[b->key.model], b);
        srv_metrics_worker_busy(cfg->metrics, -1);

        pthread_mutex_lock(&p->mu);
        b->done_next = NULL;
        if (p->done_tail)
            p->done_tail->done_next = b;
        else
            p->done_head = b;
        p->done_tail = b;
        pthread_mutex_unlock(&p->mu);
        notify(p);
    }
    goto cleanup;

wait_stop:
    /* A worker that could not load stays until the pool is stopped (the server exits). */
    pthread_mutex_lock(&w->mu);
    while (!w->stop)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
cleanup:
    for (int m = 0; pipes && m < cfg->n_models; m++)
        eng_pipeline_free(pipes[m]);
    free(pipes);
    eng_backend_destroy(be);
    return NULL;
}

/* ---- the pool ---- */

int srv_pool_start(srv_pool **out, const srv_pool_config *cfg)
{
    *out = NULL;
    srv_pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->cfg = *cfg;
    p->workers = calloc((size_t)cfg->n_workers, sizeof *p->workers);
    p->load = calloc((size_t)cfg->n_workers, sizeof *p->load);
    if (!p->workers || !p->load || pthread_mutex_init(&p->mu, NULL)) {
        free(p->workers);
        free(p->load);
        free(p);
        return -ENOMEM;
    }
    for (int i = 0; i < cfg->n_workers; i++) {
        worker *w = &p->workers[i];
        w->pool = p;
        w->index = i;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        p->n = i + 1;
        int e = pthread_create(&w->thread, NULL, worker_main, w);
        if (e) {
            p->n = i; /* this one has no thread; its mutex and cv are destroyed below */
            pthread_mutex_destroy(&w->mu);
            pthread_cond_destroy(&w->cv);
            srv_pool_stop(p);
            return -e;
        }
        w->started = 1;
    }
    srv_metrics_set_workers(cfg->metrics, p->n);
    *out = p;
    return 0;
}

void srv_pool_stop(srv_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        worker *w = &p->workers[i];
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    for (int i = 0; i < p->n; i++) {
        worker *w = &p->workers[i];
        if (w->started)
            pthread_join(w->thread, NULL);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
    }
    while (p->pv_head) { /* previews the loop never took */
        srv_preview *pv = p->pv_head;
        p->pv_head = pv->next;
        srv_preview_free(pv);
    }
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p->load);
    free(p);
}

srv_load_state srv_pool_load_state(srv_pool *p, char *msg, size_t len)
{
    srv_load_state state = SRV_LOAD_READY;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->n; i++) {
        if (atomic_load(&p->load[i]) == SRV_LOAD_FAILED) {
            state = SRV_LOAD_FAILED;
            break;
        }
        if (atomic_load(&p->load[i]) == SRV_LOAD_PENDING)
            state = SRV_LOAD_PENDING;
    }
    if (state == SRV_LOAD_FAILED && msg && len)
        snprintf(msg, len, "%s", p->load_msg);
    pthread_mutex_unlock(&p->mu);
    return state;
}

int srv_pool_size(const srv_pool *p)
{
    return p->n;
}

int srv_pool_idle_worker(const srv_pool *p)
{
    for (int i = 0; i < p->n; i++)
        if (!p->workers[i].busy && atomic_load(&p->load[i]) == SRV_LOAD_READY)
            return i;
    return -1;
}

int srv_pool_busy(const srv_pool *p)
{
    int n = 0;
    for (int i = 0; i < p->n; i++)
        n += p->workers[i].busy;
    return n;
}

void srv_pool_submit(srv_pool *p, int w, srv_batch *b)
{
    worker *wk = &p->workers[w];
    b->worker = w;
    atomic_store(&b->step, 0);
    b->emitted_step = 0;
    wk->busy = 1;
    pthread_mutex_lock(&wk->mu);
    wk->batch = b;
    pthread_cond_signal(&wk->cv);
    pthread_mutex_unlock(&wk->mu);
}

srv_batch *srv_pool_take_done(srv_pool *p)
{
    pthread_mutex_lock(&p->mu);
    srv_batch *list = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    for (srv_batch *b = list; b; b = b->done_next)
        p->workers[b->worker].busy = 0;
    return list;
}
