/*
 * queue.c - the bounded intrusive FIFO of units (see queue.h).
 */
#include "server/queue.h"

#include <errno.h>

void srv_queue_init(srv_queue *q, int capacity)
{
    q->head = q->tail = NULL;
    q->size = 0;
    q->capacity = capacity;
}

int srv_queue_space(const srv_queue *q)
{
    return q->capacity - q->size;
}

int srv_queue_push(srv_queue *q, srv_unit *u)
{
    if (q->size >= q->capacity)
        return -EAGAIN;
    u->next = NULL;
    u->prev = q->tail;
    if (q->tail)
        q->tail->next = u;
    else
        q->head = u;
    q->tail = u;
    u->in_queue = 1;
    q->size++;
    return 0;
}

void srv_queue_remove(srv_queue *q, srv_unit *u)
{
    if (!u->in_queue)
        return;
    if (u->prev)
        u->prev->next = u->next;
    else
        q->head = u->next;
    if (u->next)
        u->next->prev = u->prev;
    else
        q->tail = u->prev;
    u->prev = u->next = NULL;
    u->in_queue = 0;
    q->size--;
}

int srv_queue_position(const srv_queue *q, const srv_unit *u)
{
    if (!u->in_queue)
        return -1;
    int pos = 0;
    for (const srv_unit *p = q->head; p && p != u; p = p->next)
        pos++;
    return pos;
}
