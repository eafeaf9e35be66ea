/*
 * test_queue.c - the bounded unit queue: the bound refuses the unit over capacity and frees a
 * place when one leaves, order is FIFO, removal from the head, middle and tail keeps the links
 * right, and positions count the units ahead.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include "server/queue.h"

static void check_links(const srv_queue *q)
{
    int n = 0;
    const srv_unit *prev = NULL;
    for (const srv_unit *u = q->head; u; u = u->next) {
        cr_assert_eq(u->prev, prev);
        cr_assert(u->in_queue);
        prev = u;
        n++;
    }
    cr_assert_eq(q->tail, prev);
    cr_assert_eq(n, q->size);
}

Test(queue, bound_refuses_over_capacity)
{
    srv_queue q;
    srv_unit u[5];
    memset(u, 0, sizeof u);
    srv_queue_init(&q, 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(srv_queue_space(&q), 4 - i);
        cr_assert_eq(srv_queue_push(&q, &u[i]), 0);
    }
    cr_assert_eq(srv_queue_space(&q), 0);
    cr_assert_eq(srv_queue_push(&q, &u[4]), -EAGAIN);
    cr_assert_not(u[4].in_queue, "a refused unit must not be linked");
    cr_assert_eq(q.size, 4);
    check_links(&q);

    srv_queue_remove(&q, &u[1]);
    cr_assert_eq(srv_queue_space(&q), 1);
    cr_assert_eq(srv_queue_push(&q, &u[4]), 0);
    cr_assert_eq(srv_queue_push(&q, &u[1]), -EAGAIN);
    check_links(&q);
}

Test(queue, fifo_order_and_positions)
{
    srv_queue q;
    srv_unit u[6];
    memset(u, 0, sizeof u);
    srv_queue_init(&q, 10);
    for (int i = 0; i < 6; i++) {
        u[i].index = i;
        cr_assert_eq(srv_queue_push(&q, &u[i]), 0);
    }
    int i = 0;
    for (srv_unit *p = q.head; p; p = p->next, i++)
        cr_assert_eq(p->index, i);
    for (i = 0; i < 6; i++)
        cr_assert_eq(srv_queue_position(&q, &u[i]), i);

    srv_queue_remove(&q, &u[0]); /* head */
    srv_queue_remove(&q, &u[3]); /* middle */
    srv_queue_remove(&q, &u[5]); /* tail */
    check_links(&q);
    cr_assert_eq(q.size, 3);
    cr_assert_eq(q.head, &u[1]);
    cr_assert_eq(q.tail, &u[4]);
    cr_assert_eq(srv_queue_position(&q, &u[1]), 0);
    cr_assert_eq(srv_queue_position(&q, &u[2]), 1);
    cr_assert_eq(srv_queue_position(&q, &u[4]), 2);
    cr_assert_eq(srv_queue_position(&q, &u[3]), -1, "a removed unit has no position");

    /* Removing twice is harmless. */
    srv_queue_remove(&q, &u[3]);
    cr_assert_eq(q.size, 3);
    srv_queue_remove(&q, &u[1]);
    srv_queue_remove(&q, &u[2]);
    srv_queue_remove(&q, &u[4]);
    cr_assert_eq(q.size, 0);
    cr_assert_null(q.head);
    cr_assert_null(q.tail);
}

Test(queue, key_equality)
{
    srv_unit_key a = {0, 64, 64, 28}, b = a;
    cr_assert(srv_unit_key_equal(&a, &b));
    b.steps = 27;
    cr_assert_not(srv_unit_key_equal(&a, &b));
    b = a;
    b.model = 1;
    cr_assert_not(srv_unit_key_equal(&a, &b));
    b = a;
    b.width = 32;
    cr_assert_not(srv_unit_key_equal(&a, &b));
    b = a;
    b.height = 32;
    cr_assert_not(srv_unit_key_equal(&a, &b));
}
