/*
 * error.cu - what every CUDA kernel file uses and nothing else provides: the thread-local
 * last-error message (k_cuda_set_error / k_cuda_last_error) and the dtype sizes. Kept apart from
 * context.cu so that the context, which frees the GEMM plans of linear.cu, and the ops, which
 * report errors, do not depend on each other in a circle.
 */
#include <string.h>

#include "kernels/cuda/k_cuda.h"

static thread_local char k_last_error[512];

extern "C" void k_cuda_set_error(const char *file, int line, const char *what, const char *msg)
{
    const char *base = strrchr(file, '/');
    snprintf(k_last_error, sizeof k_last_error, "%s:%d: %s: %s", base ? base + 1 : file, line,
             what, msg);
}

extern "C" const char *k_cuda_last_error(void)
{
    return k_last_error;
}

extern "C" size_t k_dtype_size(k_dtype dt)
{
    return dt == K_F32 ? 4 : 2;
}
