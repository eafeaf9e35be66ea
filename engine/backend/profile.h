/*
 * profile.h - the op profiler of a backend: how much time each kind of op takes, without an
 * external profiler.
 *
 * Between eng_backend_profile_start and eng_backend_profile_stop, the checked front end
 * (engine/backend/ops.c) times every op it dispatches to the backend, by op kind (one kind per
 * eng_op_* function that reaches a backend; eng_op_add and eng_op_mul count as "binary").
 * A backend whose ops have finished when they return (the CPU) is timed with the host's
 * monotonic clock around each call; a backend that queues its work (CUDA) records a pair of
 * device events around each op on its queue, and eng_backend_profile_stop synchronizes once and
 * reads the times between them. Only ops are timed: copies, allocations and the host's own work
 * between ops are not, so the sum of the kinds is at most the wall time of what was profiled,
 * and the difference is host overhead and gaps between ops.
 *
 * While profiling is off, an op pays one branch on a pointer of its backend for it.
 *
 * Thread-safety: as the backend's (one thread at a time).
 */
#ifndef TTTD_ENGINE_PROFILE_H
#define TTTD_ENGINE_PROFILE_H

#include <stdint.h>

#include "engine/backend/backend.h"

typedef enum eng_op_kind {
    ENG_OP_CONVERT = 0,
    ENG_OP_LINEAR,
    ENG_OP_LAYER_NORM,
    ENG_OP_RMS_NORM,
    ENG_OP_GROUP_NORM,
    ENG_OP_ACT,
    ENG_OP_SOFTMAX,
    ENG_OP_BINARY,
    ENG_OP_SCALE,
    ENG_OP_MODULATE,
    ENG_OP_GATED_ADD,
    ENG_OP_CONCAT_TOKENS,
    ENG_OP_SPLIT_TOKENS,
    ENG_OP_CONV2D,
    ENG_OP_UPSAMPLE_NEAREST2X,
    ENG_OP_ATTENTION,
    ENG_OP_EMBEDDING,
    ENG_OP_TRANSPOSE,
    ENG_OP_PERMUTE,
    ENG_OP_TTT,
    ENG_OP_TTT_LOCAL,
    ENG_OP_LINEAR_GELU,
    ENG_OP_NORM_MODULATE,
    ENG_OP_KINDS /* the number of kinds */
} eng_op_kind;

/* What one profile measured, per op kind. Plain struct: the caller allocates it. */
typedef struct eng_profile {
    int64_t calls[ENG_OP_KINDS];
    double ms[ENG_OP_KINDS]; /* total milliseconds of the kind's calls */
    int64_t total_calls;
    double total_ms; /* the sum over the kinds */
} eng_profile;

/* The running profile of a backend (be->prof): opaque, profile.c's. */
typedef struct eng_profiler eng_profiler;

/* The kind's name as the table prints it ("linear", "attention", ...); "?" outside the enum. */
const char *eng_op_kind_name(eng_op_kind kind);

/*
 * Starts profiling be's ops with every counter at zero. Returns 0, ENG_EINVAL when be is already
 * profiling, or ENG_ENOMEM. On success the caller must end it with eng_backend_profile_stop
 * (eng_backend_destroy also ends it, dropping the result).
 */
int eng_backend_profile_start(eng_backend *be, eng_error *err);

/*
 * Stops profiling be and writes what it measured into *out (zeroed first). On a queueing backend
 * this waits for all of be's queued work. Profiling is off afterwards even on failure. Returns 0,
 * ENG_EINVAL when be is not profiling, or the first failure of the device's timing (ENG_EDEVICE,
 * ENG_ENOMEM), with a message.
 */
int eng_backend_profile_stop(eng_backend *be, eng_profile *out, eng_error *err);

/*
 * For engine/backend/ops.c only: the bracket around one dispatched op, called only while
 * be->prof is set. Ops do not nest. A failure of the timing itself is kept for
 * eng_backend_profile_stop; the op's own result is never changed.
 */
void eng_profiler_begin(eng_backend *be, eng_op_kind kind);
void eng_profiler_end(eng_backend *be);
/* For eng_backend_destroy: drops a profile still running; NULL or not profiling is a no-op. */
void eng_profiler_discard(eng_backend *be);

#endif
