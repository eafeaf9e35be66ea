/*
 * test_batcher.c - dynamic batching decisions with a made-up clock: units group by (model, size,
 * steps) up to max_batch, a partial group waits until its oldest unit has waited max_delay_ms
 * (and the wait asked for is exactly what is left), a full younger group does not wait behind a
 * partial older one, flush makes everything due, taken units leave the queue oldest first, and
 * with no delay (greedy, the default) whatever of one key has piled up leaves in one batch.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "server/batcher.h"

#define NU 32

typedef struct fixture {
    srv_queue q;
    srv_unit u[NU];
    int used;
} fixture;

static void fx_init(fixture *f, int capacity)
{
    memset(f, 0, sizeof *f);
    srv_queue_init(&f->q, capacity);
}

static srv_unit *add(fixture *f, int model, int w, int h, int steps, double t)
{
    cr_assert(f->used < NU);
    srv_unit *u = &f->u[f->used];
    u->index = f->used++;
    u->key = (srv_unit_key){model, w, h, steps};
    u->enqueued_ms = t;
    cr_assert_eq(srv_queue_push(&f->q, u), 0);
    return u;
}

Test(batcher, empty_queue_waits_forever)
{
    fixture f;
    fx_init(&f, 8);
    srv_batcher b = {.max_batch = 4, .max_delay_ms = 10};
    srv_unit *out[4];
    int n = -1;
    double wait = 0;
    cr_assert_eq(srv_batcher_take(&b, &f.q, 100, 0, out, &n, &wait), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(wait, -1);
}

Test(batcher, partial_group_waits_for_the_delay)
{
    fixture f;
    fx_init(&f, 8);
    srv_batcher b = {.max_batch = 4, .max_delay_ms = 10};
    srv_unit *out[4];
    int n;
    double wait;
    add(&f, 0, 64, 64, 28, 100.0);
    add(&f, 0, 64, 64, 28, 103.0);

    cr_assert_eq(srv_batcher_take(&b, &f.q, 104.0, 0, out, &n, &wait), 0);
    cr_assert_float_eq(wait, 6.0, 1e-9, "the oldest unit (t=100) is due at 110");
    cr_assert_eq(f.q.size, 2);

    cr_assert_eq(srv_batcher_take(&b, &f.q, 109.999, 0, out, &n, &wait), 0);
    cr_assert_eq(srv_batcher_take(&b, &f.q, 110.0, 0, out, &n, &wait), 1);
    cr_assert_eq(n, 2);
    cr_assert_eq(out[0], &f.u[0]);
    cr_assert_eq(out[1], &f.u[1]);
    cr_assert_eq(f.q.size, 0);
    cr_assert_not(f.u[0].in_queue);
}

Test(batcher, full_group_goes_at_once_and_is_capped)
{
    fixture f;
    fx_init(&f, 16);
    srv_batcher b = {.max_batch = 3, .max_delay_ms = 1000};
    srv_unit *out[3];
    int n;
    double wait;
    for (int i = 0; i < 5; i++)
        add(&f, 0, 64, 64, 28, 100.0 + i);
    cr_assert_eq(srv_batcher_take(&b, &f.q, 105.0, 0, out, &n, &wait), 1);
    cr_assert_eq(n, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(out[i], &f.u[i], "oldest first");
    cr_assert_eq(f.q.size, 2);
    cr_assert_eq(f.q.head, &f.u[3]);
    /* The two left form a partial group that waits for its own oldest (t=103). */
    cr_assert_eq(srv_batcher_take(&b, &f.q, 105.0, 0, out, &n, &wait), 0);
    cr_assert_float_eq(wait, 998.0, 1e-9);
}

Test(batcher, groups_by_model_size_and_steps)
{
    fixture f;
    fx_init(&f, 16);
    srv_batcher b = {.max_batch = 8, .max_delay_ms = 5};
    srv_unit *out[8];
    int n;
    double wait;
    add(&f, 0, 64, 64, 28, 0);  /* A */
    add(&f, 0, 64, 64, 20, 1);  /* B: other steps */
    add(&f, 0, 64, 32, 28, 2);  /* C: other height */
    add(&f, 1, 64, 64, 28, 3);  /* D: other model */
    add(&f, 0, 64, 64, 28, 4);  /* A */
    add(&f, 0, 32, 64, 28, 5);  /* E: other width */
    add(&f, 0, 64, 64, 28, 6);  /* A */

    cr_assert_eq(srv_batcher_take(&b, &f.q, 100, 0, out, &n, &wait), 1);
    cr_assert_eq(n, 3, "the oldest group takes every unit of its key, none of the others");
    cr_assert_eq(out[0], &f.u[0]);
    cr_assert_eq(out[1], &f.u[4]);
    cr_assert_eq(out[2], &f.u[6]);
    int expect_next[] = {1, 2, 3, 5};
    for (int k = 0; k < 4; k++) {
        cr_assert_eq(srv_batcher_take(&b, &f.q, 100, 0, out, &n, &wait), 1);
        cr_assert_eq(n, 1);
        cr_assert_eq(out[0], &f.u[expect_next[k]], "groups leave in order of their oldest unit");
    }
    cr_assert_eq(f.q.size, 0);
}

Test(batcher, full_younger_group_does_not_wait_behind_partial_older)
{
    fixture f;
    fx_init(&f, 16);
    srv_batcher b = {.max_batch = 2, .max_delay_ms = 50};
    srv_unit *out[2];
    int n;
    double wait;
    add(&f, 0, 64, 64, 28, 0);  /* partial, not due until 50 */
    add(&f, 0, 128, 64, 28, 1); /* full pair */
    add(&f, 0, 128, 64, 28, 2);
    cr_assert_eq(srv_batcher_take(&b, &f.q, 10, 0, out, &n, &wait), 1);
    cr_assert_eq(n, 2);
    cr_assert_eq(out[0], &f.u[1]);
    cr_assert_eq(out[1], &f.u[2]);
    cr_assert_eq(srv_batcher_take(&b, &f.q, 10, 0, out, &n, &wait), 0);
    cr_assert_float_eq(wait, 40.0, 1e-9);
    cr_assert_eq(srv_batcher_take(&b, &f.q, 50, 0, out, &n, &wait), 1);
    cr_assert_eq(out[0], &f.u[0]);
}

Test(batcher, flush_makes_every_group_due)
{
    fixture f;
    fx_init(&f, 8);
    srv_batcher b = {.max_batch = 4, .max_delay_ms = 1e9};
    srv_unit *out[4];
    int n;
    double wait;
    add(&f, 0, 64, 64, 28, 0);
    add(&f, 0, 64, 64, 10, 0);
    cr_assert_eq(srv_batcher_take(&b, &f.q, 1, 0, out, &n, &wait), 0);
    cr_assert_eq(srv_batcher_take(&b, &f.q, 1, 1, out, &n, &wait), 1);
    cr_assert_eq(out[0], &f.u[0]);
    cr_assert_eq(srv_batcher_take(&b, &f.q, 1, 1, out, &n, &wait), 1);
    cr_assert_eq(out[0], &f.u[1]);
    cr_assert_eq(srv_batcher_take(&b, &f.q, 1, 1, out, &n, &wait), 0);
    cr_assert_eq(wait, -1);
}

Test(batcher, zero_delay_dispatches_a_single_unit_at_once)
{
    fixture f;
    fx_init(&f, 8);
    srv_batcher b = {.max_batch = 4, .max_delay_ms = 0};
    srv_unit *out[4];
    int n;
    double wait;
    add(&f, 0, 64, 64, 28, 7.0);
    cr_assert_eq(srv_batcher_take(&b, &f.q, 7.0, 0, out, &n, &wait), 1);
    cr_assert_eq(n, 1);
}

/*
 * Greedy batching (the default, max_delay_ms 0): a group is due as soon as it is looked at, and
 * everything of its key that piled up while the workers were busy leaves together, up to
 * max_batch, not one unit per decision. A younger key's units wait for their own turn.
 */
Test(batcher, zero_delay_takes_every_queued_unit_of_the_key_together)
{
    fixture f;
    fx_init(&f, 16);
    srv_batcher b = {.max_batch = 4, .max_delay_ms = 0};
    srv_unit *out[4];
    int n;
    double wait;
    add(&f, 0, 64, 64, 28, 0.0);  /* A */
    add(&f, 0, 64, 64, 28, 1.0);  /* A */
    add(&f, 0, 32, 32, 28, 1.5);  /* B */
    add(&f, 0, 64, 64, 28, 2.0);  /* A */
    add(&f, 0, 64, 64, 28, 3.0);  /* A */
    add(&f, 0, 64, 64, 28, 4.0);  /* A: a fifth, over max_batch */

    /* The worker frees up at t=50: one decision takes four A's, oldest first. */
    cr_assert_eq(srv_batcher_take(&b, &f.q, 50.0, 0, out, &n, &wait), 1);
    cr_assert_eq(n, 4, "the piled-up units of one key leave as one batch");
    cr_assert_eq(out[0], &f.u[0]);
    cr_assert_eq(out[1], &f.u[1]);
    cr_assert_eq(out[2], &f.u[3]);
    cr_assert_eq(out[3], &f.u[4]);
    cr_assert_eq(wait, 0);
    /* Next: B (its oldest, t=1.5, is older than the A left over, t=4), then that A. */
    cr_assert_eq(srv_batcher_take(&b, &f.q, 50.0, 0, out, &n, &wait), 1);
    cr_assert_eq(n, 1);
    cr_assert_eq(out[0], &f.u[2]);
    cr_assert_eq(srv_batcher_take(&b, &f.q, 50.0, 0, out, &n, &wait), 1);
    cr_assert_eq(n, 1);
    cr_assert_eq(out[0], &f.u[5]);
    cr_assert_eq(srv_batcher_take(&b, &f.q, 50.0, 0, out, &n, &wait), 0);
    cr_assert_eq(wait, -1, "an empty queue sets no timer");
}
