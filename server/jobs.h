/*
 * jobs.h - the job registry: one job per generation request, its units (images), its state,
 * progress and cancellation, found by id for GET/DELETE /v1/jobs/{id}.
 *
 * Ownership: the registry owns its jobs. A job is freed only by srv_jobs_gc, once it has finished,
 * no unit is on a worker or in the queue (units_out == 0), no HTTP request waits on it, and its
 * time to live has passed; so a worker may read a job's fields and its cancel flag for as long
 * as it holds one of its units.
 *
 * Thread-safety: the loop thread owns the registry and every field, except that workers read the
 * immutable request fields and `cancel` (atomic) of jobs whose units they hold, and write the
 * result fields of those units (see queue.h).
 */
#ifndef TTTD_SERVER_JOBS_H
#define TTTD_SERVER_JOBS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "api/errors.h"
#include "api/request.h"
#include "api/response.h"
#include "server/metrics.h"
#include "server/queue.h"

#define SRV_ID_LEN 72 /* room for an id (1 to 64 of [A-Za-z0-9._-]) and its NUL */

struct srv_job {
    char id[SRV_ID_LEN]; /* the request's id (X-Request-Id), unique among its owner's held jobs */
    /* Who may see it: the API key that created it, as its index in the server's key list + 1;
     * 0 when the server has no keys. Set by the creator right after srv_jobs_create. */
    int owner;

    /* The request, fixed once submitted (workers read it). */
    int model;
    const char *model_name; /* owned by the server's model table */
    char *prompt, *negative_prompt;
    float guidance;
    int width, height, steps, n;
    api_format format;
    int quality;
    int preview_every; /* streamed requests: a preview every k steps; 0: none */
    int metadata;      /* 1: the images carry the generation parameters (api/metadata.h) */
    srv_unit *units; /* [n] */

    /* State (loop thread). */
    api_job_state state;
    api_err error; /* FAILED / CANCELED: why */
    char *error_msg;
    int units_out;   /* units queued or on a worker */
    int images_done; /* units finished with an image */
    int units_failed;
    int64_t created_unix;
    double arrival_ms, deadline_ms, first_start_ms, finished_ms;
    int *unit_step; /* [n] denoising progress of each unit */

    /* Read by the workers between steps: a srv_cancel reason, 0 while wanted. */
    atomic_int cancel;

    /* Latency accumulators (see api_metrics). */
    double text_encode_ms, denoise_ms, vae_ms, encode_ms;
    int batch_size;

    /* The HTTP request waiting on it (NULL once it is gone). */
    void *waiter;

    struct srv_job *prev, *next; /* the registry's list, oldest first */
    struct srv_job *hnext;       /* hash chain */
};

typedef struct srv_jobs {
    srv_job *head, *tail;
    srv_job **buckets;
    size_t nbuckets;
    int count;  /* jobs held */
    int active; /* jobs not yet finished */
} srv_jobs;

/* Returns 0 or -ENOMEM. */
int srv_jobs_init(srv_jobs *r);
/* Frees every job (the caller has made sure no worker holds a unit). */
void srv_jobs_free(srv_jobs *r);

/*
 * A new job of n units under id (copied; the caller has checked that no held job of the same
 * owner has it), QUEUED, owner 0, units linked to it (index k, seed unset). Returns NULL when
 * out of memory.
 */
srv_job *srv_jobs_create(srv_jobs *r, int n, const char *id);
/* Removes and frees a job that was never submitted (no unit queued or on a worker). */
void srv_jobs_discard(srv_jobs *r, srv_job *j);
/*
 * The held job of this owner with this id, or NULL. Jobs of other owners are never returned, so
 * a client cannot see, cancel or shadow another key's job, nor learn that its id is in use.
 */
srv_job *srv_jobs_find(const srv_jobs *r, const char *id, int owner);
/*
 * Marks a job finished (DONE, FAILED or CANCELED) at now_ms with an error (API_OK for DONE)
 * and an optional message (copied). A job finishes once.
 */
void srv_job_finish(srv_jobs *r, srv_job *j, api_job_state state, api_err error,
                    const char *msg, double now_ms);
int srv_job_is_finished(const srv_job *j);
/*
 * Frees finished jobs that nothing holds any more and whose ttl has passed, or, oldest first,
 * while more than max_kept jobs are held.
 */
void srv_jobs_gc(srv_jobs *r, double now_ms, double ttl_ms, int max_kept);
/* Frees the encoded images of a job's units (once they have been answered). Only for a job with
 * no unit on a worker (units_out == 0), which may still be writing one. */
void srv_job_drop_images(srv_job *j);

/* The job's latency breakdown as the API reports it, total_ms up to now_ms. */
void srv_job_metrics(const srv_job *j, double now_ms, api_metrics *m);

/*
 * nchars (< 2 * SRV_ID_LEN) random lowercase hex digits and a NUL into out (nchars + 1 bytes),
 * from the kernel's random source (getrandom). Returns 0, or -errno when that fails (out is then
 * the empty string). Thread-safe.
 */
int srv_random_hex(char *out, int nchars);
/* A random seed in [0, API_SEED_RANDOM_LIMIT) = [0, 2^52) from the kernel, into *seed: seed + k
 * of every image stays below 2^53, which JavaScript's numbers carry exactly.
 * Returns 0 or -errno as srv_random_hex. Thread-safe. */
int srv_random_seed(uint64_t *seed);

#endif
