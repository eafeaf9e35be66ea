/*
 * worker.h - the worker pool: one pthread per GPU (or N CPU threads), each owning its own backend
 * and one eng_pipeline per model, running one batch at a time.
 *
 * The loop thread hands a batch to an idle worker (srv_pool_submit); the worker denoises it,
 * encodes the images (PNG/JPEG) itself, and appends the batch to a locked completion list, then
 * calls the notify hook (uv_async_send in the server, which coalesces: the loop takes the whole
 * list with srv_pool_take_done). Between denoising steps the worker publishes its progress in
 * the batch (an atomic step) and reads its units' cancel flags: when every unit of the batch is
 * canceled it stops the engine; otherwise the canceled units' images are dropped. Units whose job
 * asks for previews (preview_every > 0) get one every k steps: the worker projects the latents to
 * a small PNG and posts it on a locked preview list, then notifies, as for progress.
 *
 * Thread-safety: srv_pool_start, srv_pool_stop, srv_pool_idle_worker and srv_pool_submit are for
 * the loop thread; srv_pool_take_done and srv_pool_load_state lock; notify runs on any thread.
 */
#ifndef TTTD_SERVER_WORKER_H
#define TTTD_SERVER_WORKER_H

#include <stdatomic.h>

#include "engine/pipeline.h"
#include "server/metrics.h"
#include "server/models.h"
#include "server/queue.h"

#define SRV_MAX_BATCH 64

/* Where the workers are with loading their models (srv_pool_load_state, srv_sched_load_state). */
typedef enum srv_load_state {
    SRV_LOAD_FAILED = -1, /* a worker could not load a model */
    SRV_LOAD_PENDING = 0, /* still loading */
    SRV_LOAD_READY = 1,   /* every worker has every model */
} srv_load_state;

typedef struct srv_batch {
    srv_unit *units[SRV_MAX_BATCH];
    int n;
    srv_unit_key key;
    int worker;

    /* Progress: the worker stores the last finished step; the loop reads it. */
    atomic_int step;
    int emitted_step; /* loop: progress reported up to this step */

    /* Results (worker, read by the loop after completion). */
    double start_ms;          /* when the worker began (srv_now_ms) */
    eng_gen_timings timings;
    int status;               /* 0, ENG_ECANCELED, or the engine's error */
    char errmsg[512];

    struct srv_batch *next;      /* the loop's in-flight list (loop thread only) */
    struct srv_batch *done_next; /* the pool's completion list (under its lock) */
} srv_batch;

/*
 * A preview of one unit after a denoising step: a PNG at latent resolution (width / 8 by
 * height / 8), from the worker's preview hook to the loop (srv_pool_take_previews).
 *
 * The projection from latents to RGB is tttd's own cheap, fixed, linear one (no model involved,
 * nothing learned): the latent channels are dealt round-robin to R, G, B (channel c feeds colour
 * c mod 3), and with s_k the mean of the channels that feed colour k,
 *     rgb_k = clamp(0.5 + 0.25 * sqrt(m_k) * s_k, 0, 1)     (m_k: how many channels feed k)
 * so that +-2 standard deviations of unit-variance noise span [0, 1] in every colour, whatever C. A latent with
 * fewer than 3 channels gives colour k its channel min(k, C - 1). Rounded to 8 bits.
 */
typedef struct srv_preview {
    srv_job *job; /* alive: the batch holding the unit is still in flight when it is posted */
    int index;    /* the unit among the job's images */
    int step, steps;
    int width, height; /* of the PNG */
    uint8_t *png;      /* malloc'ed */
    size_t png_len;
    struct srv_preview *next;
} srv_preview;

/* Writes the fixed projection above of latents [C, h, w] into rgb [h, w, 3]. */
void srv_preview_project(const float *latents, int C, int h, int w, uint8_t *rgb);

typedef struct srv_pool srv_pool;

typedef struct srv_pool_config {
    const srv_model *models;
    int n_models;
    int n_workers;
    int cuda; /* 1: worker i uses CUDA device i; 0: the CPU backend */
    eng_dtype dtype;
    srv_metrics *metrics;
    void (*notify)(void *user); /* from any thread: progress, a finished batch, a model loaded */
    void *notify_user;
} srv_pool_config;

/*
 * Starts the workers; each loads every model in its own thread (see srv_pool_load_state).
 * Returns 0, or a negative errno when a thread cannot be started (nothing is left running).
 */
int srv_pool_start(srv_pool **out, const srv_pool_config *cfg);
/*
 * Signals every worker to stop after its current batch, joins them and frees everything.
 * The caller cancels the work first (the engine stops between steps). NULL is a no-op.
 */
void srv_pool_stop(srv_pool *p);

/* READY when every worker has loaded every model, PENDING while loading, FAILED (with a message)
 * when one could not. */
srv_load_state srv_pool_load_state(srv_pool *p, char *msg, size_t len);
int srv_pool_size(const srv_pool *p);
/* A loaded worker with no batch, or -1. */
int srv_pool_idle_worker(const srv_pool *p);
int srv_pool_busy(const srv_pool *p);
/* Gives b to idle worker w. */
void srv_pool_submit(srv_pool *p, int w, srv_batch *b);
/*
 * The finished batches, oldest first (linked by done_next), or NULL; their workers count as idle
 * again from here on.
 */
srv_batch *srv_pool_take_done(srv_pool *p);
/*
 * The previews posted so far, oldest first (linked by next), or NULL; the caller frees each
 * (srv_preview_free). Take them after srv_pool_take_done and handle them before completing the
 * batches taken: every preview of a batch is posted before the batch is, so the job is alive.
 */
srv_preview *srv_pool_take_previews(srv_pool *p);
void srv_preview_free(srv_preview *pv);

#endif
