/*
 * queue.h - the bounded FIFO of units (one unit = one image of a request) waiting for a batch.
 *
 * The queue is intrusive: units carry their own links, so pushing, removing a canceled unit and
 * popping a batch allocate nothing. The bound counts units, not requests: a request of n images
 * needs n free places or is refused whole (429).
 *
 * Thread-safety: none; the queue lives on the loop thread (DESIGN.md 5).
 */
#ifndef TTTD_SERVER_QUEUE_H
#define TTTD_SERVER_QUEUE_H

#include <stddef.h>
#include <stdint.h>

typedef struct srv_job srv_job;

/* What must be equal for two units to share a batch. */
typedef struct srv_unit_key {
    int model; /* index into the server's model list */
    int width, height, steps;
} srv_unit_key;

typedef struct srv_unit {
    srv_job *job; /* the request it belongs to (NULL in unit tests) */
    int index;    /* k among the job's n images */
    srv_unit_key key;
    uint64_t seed;
    float guidance;
    double enqueued_ms; /* loop clock when it was queued */

    /* Results, written by the worker that ran it, read by the loop after completion. */
    uint8_t *image; /* encoded PNG/JPEG (malloc'ed), NULL if none */
    size_t image_len;
    double encode_ms;
    int status; /* 0, or an ENG_E* code (ENG_ECANCELED for a dropped unit) */

    /* Queue links; in_queue is 1 while linked. */
    struct srv_unit *prev, *next;
    int in_queue;
} srv_unit;

typedef struct srv_queue {
    srv_unit *head, *tail; /* head: the oldest */
    int size, capacity;
} srv_queue;

void srv_queue_init(srv_queue *q, int capacity);
/* Free places (capacity - size). */
int srv_queue_space(const srv_queue *q);
/* Appends u; returns 0, or -EAGAIN when the queue is full (u untouched). */
int srv_queue_push(srv_queue *q, srv_unit *u);
/* Unlinks u if it is queued (canceled units leave the queue at once); no-op otherwise. */
void srv_queue_remove(srv_queue *q, srv_unit *u);
/* Units ahead of u (0 = next to run), or -1 if u is not queued. O(position). */
int srv_queue_position(const srv_queue *q, const srv_unit *u);

static inline int srv_unit_key_equal(const srv_unit_key *a, const srv_unit_key *b)
{
    return a->model == b->model && a->width == b->width && a->height == b->height &&
           a->steps == b->steps;
}

#endif
