/*
 * jobs.c - the job registry (see jobs.h): a list in creation order, for expiry, and a chained
 * hash table by id, for GET/DELETE /v1/jobs/{id}.
 */
#include "server/jobs.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/*
 * ---- random ids and seeds: straight from the kernel (getrandom) ----
 *
 * Job ids are capabilities (whoever knows one may read or cancel the job where there are no
 * API keys) and every answer shows one, so they must not be predictable from earlier ones: a
 * seeded PRNG such as splitmix64 can be inverted from a single output. Every id and every
 * server-chosen seed is therefore kernel randomness. A small per-thread buffer makes that one
 * getrandom call per POOL_BYTES bytes (some 25 ids); a failure is reported to the caller, never
 * replaced by a clock or a counter.
 */

#define POOL_BYTES 256 /* getrandom returns up to 256 bytes whole, uninterrupted */

static _Thread_local unsigned char pool[POOL_BYTES];
static _Thread_local size_t pool_left; /* unread bytes at the end of pool */

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* A forked child must not hand out the bytes its parent will also hand out. */
static void pool_forget(void)
{
    pool_left = 0;
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, pool_forget);
}

static int random_bytes(void *out, size_t n)
{
    pthread_once(&atfork_once, register_atfork);
    unsigned char *o = out;
    while (n > 0) {
        if (pool_left == 0) {
            size_t got = 0;
            while (got < sizeof pool) {
                ssize_t k = getrandom(pool + got, sizeof pool - got, 0);
                if (k < 0 && errno == EINTR)
                    continue;
                if (k < 0)
                    return -errno;
                got += (size_t)k;
            }
            pool_left = sizeof pool;
        }
        size_t take = n < pool_left ? n : pool_left;
        unsigned char *src = pool + sizeof pool - pool_left;
        memcpy(o, src, take);
        memset(src, 0, take); /* a byte handed out is not kept */
        pool_left -= take;
        o += take;
        n -= take;
    }
    return 0;
}

int srv_random_hex(char *out, int nchars)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char bytes[SRV_ID_LEN];
    out[0] = '\0';
    if (nchars < 0 || nchars >= 2 * (int)sizeof bytes)
        return -EINVAL;
    int rc = random_bytes(bytes, (size_t)(nchars + 1) / 2);
    if (rc)
        return rc;
    for (int i = 0; i < nchars; i++)
        out[i] = hex[(bytes[i / 2] >> (i % 2 ? 4 : 0)) & 15];
    out[nchars] = '\0';
    return 0;
}

int srv_random_seed(uint64_t *seed)
{
    uint64_t v;
    int rc = random_bytes(&v, sizeof v);
    if (rc)
        return rc;
    *seed = v % API_SEED_RANDOM_LIMIT;
    return 0;
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

srv_job *srv_jobs_find(const srv_jobs *r, const char *id, int owner)
{
    for (srv_job *j = r->buckets[hash_id(id, r->nbuckets)]; j; j = j->hnext)
        if (j->owner == owner && strcmp(j->id, id) == 0)
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
