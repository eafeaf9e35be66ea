/*
 * backend_cuda.h - what the CUDA backend offers beyond engine/backend/backend.h: its stream, for
 * callers that time or order their own CUDA work against the backend's, and its kernel context,
 * whose tuning overrides let tests and benchmarks reach every kernel path (benchmarks, tests).
 * The constructor itself is declared in engine/backend.h.
 */
#ifndef TTTD_ENGINE_BACKEND_CUDA_H
#define TTTD_ENGINE_BACKEND_CUDA_H

#include "engine/backend/backend.h"

/*
 * The cudaStream_t (as void *) on which backend be queues all its work, or NULL when be is
 * not a CUDA backend or the binary was built without CUDA. Owned by be; valid until
 * eng_backend_destroy.
 */
void *eng_backend_cuda_stream(eng_backend *be);
/*
 * The k_cuda_ctx (kernels/cuda/k_cuda.h, as void *) behind backend be, or NULL as above. Owned
 * by be; for setting its tuning overrides between ops on the thread that uses be.
 */
void *eng_backend_cuda_kernels(eng_backend *be);

#endif
