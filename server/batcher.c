/*
 * batcher.c - groups queued units by key and decides when a group is due (see batcher.h).
 *
 * One pass over the queue collects the distinct keys in order of their oldest unit, with a count
 * capped at max_batch. Only the first MAX_GROUPS keys are looked at: units of later keys wait
 * until an older group leaves, which bounds the work per decision however long the queue is.
 */
#include "server/batcher.h"

#define MAX_GROUPS 32

typedef struct group {
    srv_unit_key key;
    double oldest_ms;
    int count;
} group;

int srv_batcher_take(const srv_batcher *b, srv_queue *q, double now_ms, int flush,
                     srv_unit **units, int *n, double *wait_ms)
{
    group g[MAX_GROUPS];
    int ng = 0;
    int max_batch = b->max_batch > 0 ? b->max_batch : 1;

    *n = 0;
    for (srv_unit *u = q->head; u; u = u->next) {
        int i = 0;
        while (i < ng && !srv_unit_key_equal(&g[i].key, &u->key))
            i++;
        if (i == ng) {
            if (ng == MAX_GROUPS)
                continue;
            g[ng].key = u->key;
            g[ng].oldest_ms = u->enqueued_ms;
            g[ng].count = 0;
            ng++;
        }
        if (g[i].count < max_batch)
            g[i].count++;
    }
    if (ng == 0) {
        *wait_ms = -1;
        return 0;
    }

    int due = -1;
    double wait = -1;
    for (int i = 0; i < ng && due < 0; i++) {
        double left = g[i].oldest_ms + b->max_delay_ms - now_ms;
        if (flush || g[i].count >= max_batch || left <= 0)
            due = i;
        else if (wait < 0 || left < wait)
            wait = left;
    }
    if (due < 0) {
        *wait_ms = wait;
        return 0;
    }

    srv_unit *u = q->head;
    while (u && *n < max_batch) {
        srv_unit *next = u->next;
        if (srv_unit_key_equal(&u->key, &g[due].key)) {
            srv_queue_remove(q, u);
            units[(*n)++] = u;
        }
        u = next;
    }
    *wait_ms = 0;
    return 1;
}
