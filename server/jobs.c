/*
 * jobs.c - the job registry (see jobs.h): a list in creation order, for expiry, and a chained
 * hash table by id, for GET/DELETE /v1/jobs/{id}.
 */
#include "server/jobs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- random ids and seeds: a per-thread splitmix64 seeded once from the kernel ---- */

static _Thread_local uint64_t rng_state;
static _Thread_local int rng_seeded;

static uint64_t rng_next(void)
{
    if (!rng_seeded) {
        if (getrandom(&rng_state, sizeof rng_state, 0) != (ssize_t)sizeof rng_state) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            rng_state = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
                        ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&rng_state;
        }
        rng_seeded = 1;
    }
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void srv_random_hex(char *out, int nchars)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t bits = 0;
    for (int i = 0; i < nchars; i++) {
        if (i % 16 == 0)
            bits = rng_next();
        out[i] = hex[bits & 15];
        bits >>= 4;
    }
    out[nchars] = '\0';
}

uint64_t srv_random_seed(void)
{
    return rng_next() >> 1;
}

/* ---- the registry ---- */

static size_t hash_id(const char *s, size_t nbuckets)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)(h % nbuckets);
}

int srv_jobs_init(srv_jobs *r)
{
    memset(r, 0, sizeof *r);
    r->nbuckets = 1024;
    r->buckets = calloc(r->nbuckets, sizeof *r->buckets);
    return r->buckets ? 0 : -ENOMEM;
}

static void job_free(srv_job *j)
{
    if (!j)
        return;
    for (int k = 0; k < j->n; k++)
        free(j->units[k].image);
    free(j->units);
    free(j->unit_step);
    free(j->prompt);
    free(j->negative_prompt);
    free(j->error_msg);
    free(j);
}

static void unlink_job(srv_jobs *r, srv_job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        r->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        r->tail = j->prev;
    srv_job **pp = &r->buckets[hash_id(j->id, r->nbuckets)];
    while (*pp && *pp != j)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = j->hnext;
    r->count--;
    if (!srv_job_is_finished(j))
        r->active--;
}

void srv_jobs_free(srv_jobs *r)
{
    while (r->head) {
        srv_job *j = r->head;
        unlink_job(r, j);
        job_free(j);
    }
    free(r->buckets);
    r->buckets = NULL;
}

srv_job *srv_jobs_create(srv_jobs *r, int n, const char *id)
{
    srv_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->units = calloc((size_t)n, sizeof *j->units);
    j->unit_step = calloc((size_t)n, sizeof *j->unit_step);
    if (!j->units || !j->unit_step) {
        job_free(j);
        return NULL;
    }
    j->n = n;
    for (int k = 0; k < n; k++) {
        j->units[k].job = j;
        j->units[k].index = k;
    }
    snprintf(j->id, sizeof j->id, "%s", id);
    j->state = API_JOB_QUEUED;
    atomic_init(&j->cancel, 0);
    j->created_unix = (int64_t)time(NULL);

    size_t b = hash_id(j->id, r->nbuckets);
    j->hnext = r->buckets[b];
    r->buckets[b] = j;
    j->prev = r->tail;
    if (r->tail)
        r->tail->next = j;
    else
        r->head = j;
    r->tail = j;
    r->count++;
    r->active++;
    return j;
}

void srv_jobs_discard(srv_jobs *r, srv_job *j)
{
    if (!j)
        return;
    unlink_job(r, j);
    job_free(j);
}

srv_job *srv_jobs_find(const srv_jobs *r, const char *id)
{
    for (srv_job *j = r->buckets[hash_id(id, r->nbuckets)]; j; j = j->hnext)
        if (strcmp(j->id, id) == 0)
            return j;
    return NULL;
}

int srv_job_is_finished(const srv_job *j)
{
    return j->state == API_JOB_DONE || j->state == API_JOB_FAILED ||
           j->state == API_JOB_CANCELED;
}

void srv_job_finish(srv_jobs *r, srv_job *j, api_job_state state, api_err error,
                    const char *msg, double now_ms)
{
    if (srv_job_is_finished(j))
        return;
    j->state = state;
    j->error = error;
    if (msg && *msg)
        j->error_msg = strdup(msg);
    j->finished_ms = now_ms;
    r->active--;
}

void srv_jobs_gc(srv_jobs *r, double now_ms, double ttl_ms, int max_kept)
{
    srv_job *j = r->head;
    while (j) {
        srv_job *next = j->next;
        if (srv_job_is_finished(j) && j->units_out == 0 && !j->waiter &&
            (now_ms - j->finished_ms >= ttl_ms || r->count > max_kept)) {
            unlink_job(r, j);
            job_free(j);
        }
        j = next;
    }
}

void srv_job_drop_images(srv_job *j)
{
    for (int k = 0; k < j->n; k++) {
        free(j->units[k].image);
        j->units[k].image = NULL;
        j->units[k].image_len = 0;
    }
}

void srv_job_metrics(const srv_job *j, double now_ms, api_metrics *m)
{
    memset(m, 0, sizeof *m);
    m->queue_ms = j->first_start_ms > 0 ? j->first_start_ms - j->arrival_ms
                                        : now_ms - j->arrival_ms;
    if (m->queue_ms < 0)
        m->queue_ms = 0;
    m->text_encode_ms = j->text_encode_ms;
    m->denoise_ms = j->denoise_ms;
    m->vae_ms = j->vae_ms;
    m->encode_ms = j->encode_ms;
    m->total_ms = now_ms - j->arrival_ms;
    m->batch_size = j->batch_size;
    m->seed = j->n > 0 ? j->units[0].seed : 0;
}
