/*
 * profile.c - the op profiler (engine/backend/profile.h): per-kind counts and times of the ops
 * that engine/backend/ops.c dispatches while a profile runs.
 *
 * A backend without timer hooks (the CPU, whose ops have finished when they return) is timed
 * with the host's monotonic clock, and each op's time is added as it returns. A backend with
 * them (CUDA) gets two events per op, 2i before and 2i + 1 after op i, and a log of each op's
 * kind; the times are read once, at stop, after one synchronize, so that nothing during the
 * profiled work waits for the device.
 */
#include "engine/backend/profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * The ops a device-timed profile gets events for when it starts. A forward dispatches about 60
 * ops per block (238 for the 4 blocks of `tttd bench`'s tiny preset), so SD3.5-Medium's 24
 * blocks fit; a longer profile (a denoising loop) doubles the pool as it goes.
 */
#define ENG_PROFILE_OPS 4096

struct eng_profiler {
    eng_profile p;    /* the host-clock backends' totals, kept as ops return */
    eng_op_kind kind; /* the op in flight */
    int in_flight;    /* 1 between a begin that timed its op and its end */
    double t0;        /* host clock at the op's start, ms */
    /* Device timing: the kind of op i, whose events are 2i and 2i + 1. */
    uint8_t *kinds;
    int64_t n, cap;
    eng_error fail; /* the first failure of the timing; once set, nothing more is timed */
};

_Static_assert(ENG_OP_KINDS <= UINT8_MAX, "a kind fits the log's byte");

static const char *const kind_names[ENG_OP_KINDS] = {
    [ENG_OP_CONVERT] = "convert",
    [ENG_OP_LINEAR] = "linear",
    [ENG_OP_LAYER_NORM] = "layer_norm",
    [ENG_OP_RMS_NORM] = "rms_norm",
    [ENG_OP_GROUP_NORM] = "group_norm",
    [ENG_OP_ACT] = "act",
    [ENG_OP_SOFTMAX] = "softmax",
    [ENG_OP_BINARY] = "binary",
    [ENG_OP_SCALE] = "scale",
    [ENG_OP_MODULATE] = "modulate",
    [ENG_OP_GATED_ADD] = "gated_add",
    [ENG_OP_CONCAT_TOKENS] = "concat_tokens",
    [ENG_OP_SPLIT_TOKENS] = "split_tokens",
    [ENG_OP_CONV2D] = "conv2d",
    [ENG_OP_UPSAMPLE_NEAREST2X] = "upsample_nearest2x",
    [ENG_OP_ATTENTION] = "attention",
    [ENG_OP_EMBEDDING] = "embedding",
    [ENG_OP_TRANSPOSE] = "transpose",
    [ENG_OP_PERMUTE] = "permute",
    [ENG_OP_TTT] = "ttt",
    [ENG_OP_TTT_LOCAL] = "ttt_local",
    [ENG_OP_LINEAR_GELU] = "linear_gelu",
    [ENG_OP_NORM_MODULATE] = "norm_modulate",
};

const char *eng_op_kind_name(eng_op_kind kind)
{
    return (unsigned)kind < ENG_OP_KINDS && kind_names[kind] ? kind_names[kind] : "?";
}

static double host_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int eng_backend_profile_start(eng_backend *be, eng_error *err)
{
    if (!be)
        return eng_error_set(err, ENG_EINVAL, "profile: no backend");
    if (be->prof)
        return eng_error_set(err, ENG_EINVAL, "profile: %s is already profiling", be->name);
    if (!be->timer_record != !be->timer_elapsed || !be->timer_record != !be->timer_reserve)
        return eng_error_set(err, ENG_EINVAL, "profile: %s has some of its timer hooks, not all",
                             be->name);
    /* Events for the first ENG_PROFILE_OPS ops, made now rather than during the profiled work. */
    if (be->timer_reserve)
        ENG_TRY(be->timer_reserve(be, 2 * (int64_t)ENG_PROFILE_OPS, err));
    eng_profiler *pr = calloc(1, sizeof *pr);
    if (!pr)
        return eng_error_set(err, ENG_ENOMEM, "profile: out of memory");
    be->prof = pr;
    return 0;
}

/* The first failure wins: it is what eng_backend_profile_stop reports. */
static void timing_failed(eng_profiler *pr, int rc, const eng_error *why)
{
    if (pr->fail.code)
        return;
    eng_error_set(&pr->fail, rc, "profile: timing op %lld (%s): %s", (long long)pr->n,
                  eng_op_kind_name(pr->kind), why->msg);
}

void eng_profiler_begin(eng_backend *be, eng_op_kind kind)
{
    eng_profiler *pr = be->prof;
    eng_error e = {0};
    int rc;
    pr->kind = kind;
    pr->in_flight = 0;
    if (pr->fail.code)
        return;
    if (!be->timer_record) {
        pr->t0 = host_ms();
        pr->in_flight = 1;
        return;
    }
    if (pr->n == pr->cap) {
        int64_t cap = pr->cap ? 2 * pr->cap : 1024;
        uint8_t *k = realloc(pr->kinds, (size_t)cap);
        if (!k) {
            e.code = ENG_ENOMEM;
            snprintf(e.msg, sizeof e.msg, "out of memory for the log of %lld ops", (long long)cap);
            timing_failed(pr, ENG_ENOMEM, &e);
            return;
        }
        pr->kinds = k, pr->cap = cap;
    }
    rc = be->timer_record(be, 2 * pr->n, &e);
    if (rc) {
        timing_failed(pr, rc, &e);
        return;
    }
    pr->in_flight = 1;
}

void eng_profiler_end(eng_backend *be)
{
    eng_profiler *pr = be->prof;
    eng_error e = {0};
    int rc;
    if (!pr->in_flight)
        return;
    pr->in_flight = 0;
    if (!be->timer_record) {
        pr->p.calls[pr->kind]++;
        pr->p.ms[pr->kind] += host_ms() - pr->t0;
        return;
    }
    rc = be->timer_record(be, 2 * pr->n + 1, &e);
    if (rc) {
        timing_failed(pr, rc, &e);
        return;
    }
    pr->kinds[pr->n++] = (uint8_t)pr->kind;
}

int eng_backend_profile_stop(eng_backend *be, eng_profile *out, eng_error *err)
{
    int rc = 0;
    if (!be || !be->prof)
        return eng_error_set(err, ENG_EINVAL, "profile: %s is not profiling",
                             be ? be->name : "no backend");
    eng_profiler *pr = be->prof;
    be->prof = NULL; /* off from here on, whatever happens below */
    memset(out, 0, sizeof *out);
    if (pr->fail.code) {
        rc = eng_error_set(err, pr->fail.code, "%s", pr->fail.msg);
        goto done;
    }
    if (be->timer_record) {
        if (be->synchronize(be)) {
            rc = eng_error_set(err, ENG_EDEVICE, "profile: synchronize of %s failed", be->name);
            goto done;
        }
        for (int64_t i = 0; i < pr->n; i++) {
            float ms = 0.0f;
            ENG_TRY_DONE(be->timer_elapsed(be, 2 * i, 2 * i + 1, &ms, err));
            pr->p.calls[pr->kinds[i]]++;
            pr->p.ms[pr->kinds[i]] += ms;
        }
    }
    for (int k = 0; k < ENG_OP_KINDS; k++) {
        pr->p.total_calls += pr->p.calls[k];
        pr->p.total_ms += pr->p.ms[k];
    }
    *out = pr->p;
done:
    free(pr->kinds);
    free(pr);
    return rc;
}

void eng_profiler_discard(eng_backend *be)
{
    if (!be || !be->prof)
        return;
    free(be->prof->kinds);
    free(be->prof);
    be->prof = NULL;
}
