/*
 * backend_cuda.h - what the CUDA backend offers beyond engine/backend/backend.h: its stream, for
 * callers that time or order their own CUDA work against the backend's (benchmarks, tests).
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

#endif
