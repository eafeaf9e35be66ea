/*
 * test_profile.c - the op profiler (engine/backend/profile.c) on the CPU backend: it counts
 * exactly the ops a known sequence dispatches, by kind, with positive times that sum to no more
 * than the wall time around them; ops rejected by the checks, or run while profiling is off,
 * leave the counters alone; start and stop refuse to nest or to stop what never started. The
 * device-timed path (the CUDA backend's) is driven here through fake timer hooks on a CPU
 * backend: one event before and one after each op, read back at stop, and a failure of the
 * timing reported by stop without changing an op's result.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <time.h>

#include "engine/backend/backend.h"
#include "engine/backend/profile.h"
#include "tests/common/test_util.h"

static eng_backend *cpu;
static uint64_t rng = 99;
static eng_tensor x, w, b, y, q, k, v, o;

static eng_tensor rnd(int ndim, const int64_t *shape)
{
    eng_tensor t;
    eng_error err = {0};
    cr_assert_eq(eng_tensor_init(&t, cpu, ENG_DTYPE_F32, ndim, shape, &err), 0, "%s", err.msg);
    tu_rand_fill(t.data, eng_tensor_numel(&t), &rng, -1.0f, 1.0f);
    return t;
}

static void setup(void)
{
    eng_error err = {0};
    cpu = eng_backend_cpu_create(&err);
    cr_assert_not_null(cpu, "%s", err.msg);
    x = rnd(ENG_SHAPE(2, 64, 96)), w = rnd(ENG_SHAPE(96, 96)), b = rnd(ENG_SHAPE(96));
    y = rnd(ENG_SHAPE(2, 64, 96));
    q = rnd(ENG_SHAPE(2, 64, 96)), k = rnd(ENG_SHAPE(2, 64, 96)), v = rnd(ENG_SHAPE(2, 64, 96));
    o = rnd(ENG_SHAPE(2, 64, 96));
}

static void teardown(void)
{
    eng_tensor *all[] = {&x, &w, &b, &y, &q, &k, &v, &o};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        eng_tensor_free(all[i]);
    eng_backend_destroy(cpu);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* call (which reports into the caller's err) succeeds. */
#define OK(call) cr_assert_eq((call), 0, "%s: %s", #call, err.msg)

/*
 * The known sequence: 3 linear, 2 add + 1 mul (one kind: binary), 1 attention, 2 layer_norm,
 * 1 act; and one linear that the checks reject, which never reaches the backend.
 */
static void known_sequence(void)
{
    eng_attention_params ap = {.heads = 4, .scale = 0.2f, .causal = 0};
    eng_error err = {0};
    for (int i = 0; i < 3; i++)
        OK(eng_op_linear(&y, &x, &w, &b, &err));
    OK(eng_op_add(&y, &y, &x, &err));
    OK(eng_op_add(&y, &y, &b, &err));
    OK(eng_op_mul(&y, &y, &x, &err));
    OK(eng_op_attention(&o, &q, &k, &v, NULL, &ap, &err));
    OK(eng_op_layer_norm(&y, &x, &b, &b, 1e-6f, &err));
    OK(eng_op_layer_norm(&y, &x, NULL, NULL, 1e-6f, &err));
    OK(eng_op_act(&y, &y, ENG_ACT_SILU, &err));
    cr_assert_eq(eng_op_linear(&y, &x, &w, &y, &err), ENG_EINVAL, "a bad bias must be refused");
}

/* Every kind of the sequence, with its count; every other kind must stay at zero. */
static void expect_known_counts(const eng_profile *p, int64_t times)
{
    int64_t want[ENG_OP_KINDS] = {0};
    want[ENG_OP_LINEAR] = 3, want[ENG_OP_BINARY] = 3, want[ENG_OP_ATTENTION] = 1;
    want[ENG_OP_LAYER_NORM] = 2, want[ENG_OP_ACT] = 1;
    int64_t total = 0;
    double sum = 0.0;
    for (int kd = 0; kd < ENG_OP_KINDS; kd++) {
        cr_expect_eq(p->calls[kd], times * want[kd], "%s: %lld calls, expected %lld",
                     eng_op_kind_name((eng_op_kind)kd), (long long)p->calls[kd],
                     (long long)(times * want[kd]));
        if (want[kd])
            cr_expect_gt(p->ms[kd], 0.0, "%s: time %g ms", eng_op_kind_name((eng_op_kind)kd),
                         p->ms[kd]);
        else
            cr_expect_eq(p->ms[kd], 0.0, "%s: time %g ms without a call",
                         eng_op_kind_name((eng_op_kind)kd), p->ms[kd]);
        total += p->calls[kd], sum += p->ms[kd];
    }
    cr_expect_eq(p->total_calls, total);
    cr_expect_float_eq(p->total_ms, sum, 1e-9);
}

TestSuite(profile, .init = setup, .fini = teardown);

Test(profile, counts_exactly_the_ops_of_a_known_sequence)
{
    eng_error err = {0};
    eng_profile p;
    cr_assert_eq(eng_backend_profile_start(cpu, &err), 0, "%s", err.msg);
    double t0 = now_ms();
    known_sequence();
    known_sequence();
    double wall = now_ms() - t0;
    cr_assert_eq(eng_backend_profile_stop(cpu, &p, &err), 0, "%s", err.msg);
    expect_known_counts(&p, 2);
    cr_expect_eq(p.total_calls, 20);
    cr_expect_gt(p.total_ms, 0.0);
    cr_expect_leq(p.total_ms, wall, "the ops' %g ms exceed the %g ms around them", p.total_ms,
                  wall);
    cr_expect_null(cpu->prof, "profiling is off after stop");
}

Test(profile, off_leaves_the_counters_untouched)
{
    eng_error err = {0};
    eng_profile p, before;
    known_sequence(); /* before any profile */
    cr_assert_eq(eng_backend_profile_start(cpu, &err), 0, "%s", err.msg);
    known_sequence();
    cr_assert_eq(eng_backend_profile_stop(cpu, &p, &err), 0, "%s", err.msg);
    expect_known_counts(&p, 1);
    before = p;
    known_sequence(); /* after it: counted nowhere */
    cr_expect_eq(memcmp(&p, &before, sizeof p), 0, "a stopped profile changed");
    cr_assert_eq(eng_backend_profile_start(cpu, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_backend_profile_stop(cpu, &p, &err), 0, "%s", err.msg);
    for (int kd = 0; kd < ENG_OP_KINDS; kd++)
        cr_expect_eq(p.calls[kd], 0, "%s counted %lld calls made while profiling was off",
                     eng_op_kind_name((eng_op_kind)kd), (long long)p.calls[kd]);
    cr_expect_eq(p.total_calls, 0);
    cr_expect_eq(p.total_ms, 0.0);
}

Test(profile, start_and_stop_do_not_nest)
{
    eng_error err = {0};
    eng_profile p;
    cr_expect_eq(eng_backend_profile_stop(cpu, &p, &err), ENG_EINVAL);
    cr_expect(strstr(err.msg, "cpu is not profiling"), "%s", err.msg);
    cr_assert_eq(eng_backend_profile_start(cpu, &err), 0, "%s", err.msg);
    cr_expect_eq(eng_backend_profile_start(cpu, &err), ENG_EINVAL);
    cr_expect(strstr(err.msg, "already profiling"), "%s", err.msg);
    cr_assert_eq(eng_backend_profile_stop(cpu, &p, &err), 0, "%s", err.msg);
    /* A profile still running when the backend goes is dropped with it (teardown). */
    cr_assert_eq(eng_backend_profile_start(cpu, &err), 0, "%s", err.msg);
    known_sequence();
}

Test(profile, kind_names)
{
    cr_expect_str_eq(eng_op_kind_name(ENG_OP_LINEAR), "linear");
    cr_expect_str_eq(eng_op_kind_name(ENG_OP_TTT), "ttt");
    cr_expect_str_eq(eng_op_kind_name(ENG_OP_KINDS), "?");
    for (int kd = 0; kd < ENG_OP_KINDS; kd++)
        cr_expect_str_neq(eng_op_kind_name((eng_op_kind)kd), "?", "kind %d has no name", kd);
}

/* ---- the device-timed path, through fake timer hooks ---- */

#define FAKE_EVENTS 256
static double fake_at[FAKE_EVENTS]; /* the host time each event was recorded at */
static int64_t fake_next, fake_fail_at, fake_elapsed_calls;

static int64_t fake_reserved;

static int fake_reserve(eng_backend *be, int64_t n, eng_error *err)
{
    (void)be, (void)err;
    fake_reserved = n;
    return 0;
}

static int fake_record(eng_backend *be, int64_t i, eng_error *err)
{
    (void)be;
    cr_assert_eq(i, fake_next, "event %lld recorded, %lld expected next", (long long)i,
                 (long long)fake_next);
    if (i == fake_fail_at)
        return eng_error_set(err, ENG_EDEVICE, "fake event %lld failed", (long long)i);
    cr_assert_lt(i, FAKE_EVENTS);
    fake_at[fake_next++] = now_ms();
    return 0;
}

static int fake_elapsed(eng_backend *be, int64_t a, int64_t bb, float *ms, eng_error *err)
{
    (void)be, (void)err;
    cr_assert_eq(bb, a + 1, "events %lld and %lld are not one op's pair", (long long)a,
                 (long long)bb);
    cr_assert_lt(bb, fake_next);
    fake_elapsed_calls++;
    *ms = (float)(fake_at[bb] - fake_at[a]);
    return 0;
}

static void fake_hooks(int64_t fail_at)
{
    fake_next = 0, fake_fail_at = fail_at, fake_elapsed_calls = 0, fake_reserved = 0;
    cpu->timer_reserve = fake_reserve;
    cpu->timer_record = fake_record;
    cpu->timer_elapsed = fake_elapsed;
}

Test(profile, device_timing_records_a_pair_per_op_and_reads_them_at_stop)
{
    eng_error err = {0};
    eng_profile p;
    fake_hooks(-1);
    cr_assert_eq(eng_backend_profile_start(cpu, &err), 0, "%s", err.msg);
    cr_expect_geq(fake_reserved, 2 * 10, "start reserves events beforehand");
    known_sequence();
    cr_expect_eq(fake_next, 2 * 10, "two events per dispatched op");
    cr_expect_eq(fake_elapsed_calls, 0, "no event is read before stop");
    cr_assert_eq(eng_backend_profile_stop(cpu, &p, &err), 0, "%s", err.msg);
    cr_expect_eq(fake_elapsed_calls, 10);
    expect_known_counts(&p, 1);
}

Test(profile, device_timing_failure_is_reported_by_stop)
{
    eng_error err = {0};
    eng_profile p;
    eng_attention_params ap = {.heads = 4, .scale = 0.2f, .causal = 0};
    fake_hooks(3); /* the second op's closing event */
    cr_assert_eq(eng_backend_profile_start(cpu, &err), 0, "%s", err.msg);
    OK(eng_op_linear(&y, &x, &w, &b, &err));
    OK(eng_op_attention(&o, &q, &k, &v, NULL, &ap, &err)); /* its result is not changed */
    OK(eng_op_linear(&y, &x, &w, &b, &err));               /* nothing more is timed */
    cr_expect_eq(fake_next, 3);
    cr_expect_eq(eng_backend_profile_stop(cpu, &p, &err), ENG_EDEVICE);
    cr_expect(strstr(err.msg, "timing op 1 (attention): fake event 3 failed"), "%s", err.msg);
    cr_expect_eq(p.total_calls, 0, "a failed profile reports nothing");
    cr_expect_null(cpu->prof, "profiling is off after a failed stop");
}

Test(profile, a_backend_with_some_timer_hooks_is_refused)
{
    eng_error err = {0};
    fake_hooks(-1);
    cpu->timer_reserve = NULL;
    cr_expect_eq(eng_backend_profile_start(cpu, &err), ENG_EINVAL);
    cr_expect(strstr(err.msg, "some of its timer hooks"), "%s", err.msg);
    cr_expect_null(cpu->prof);
}
