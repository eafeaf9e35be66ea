/*
 * batcher.h - dynamic batching: which queued units run together, and when.
 *
 * Units with the same (model, width, height, steps) may share a batch (guidance, seed and
 * prompts may differ). A group is due when it holds max_batch units, when its oldest unit has
 * waited max_delay_ms, or when the server is draining (flush). With max_delay_ms 0 (the default,
 * "greedy") every group is due at once: the scheduler asks only when a worker is idle, so a lone
 * unit leaves alone at once, and units that piled up while every worker was busy leave together,
 * all of one key (up to max_batch) in one decision. Groups are considered in the
 * order of their oldest unit, so the oldest due group goes first and a full group of a younger
 * key need not wait behind an unfilled older one.
 *
 * The decision takes the clock as an argument (no hidden time source), so tests drive it with
 * made-up times. Thread-safety: none; the loop thread calls it.
 */
#ifndef TTTD_SERVER_BATCHER_H
#define TTTD_SERVER_BATCHER_H

#include "server/queue.h"

typedef struct srv_batcher {
    int max_batch;
    double max_delay_ms;
} srv_batcher;

/*
 * If a group is due at now_ms, moves up to max_batch of its units (oldest first) from q into
 * units[] (room for max_batch), sets *n and returns 1. Otherwise returns 0 and sets *wait_ms to
 * the time until the first group falls due (-1 when q is empty). flush: every group is due.
 */
int srv_batcher_take(const srv_batcher *b, srv_queue *q, double now_ms, int flush,
                     srv_unit **units, int *n, double *wait_ms);

#endif
