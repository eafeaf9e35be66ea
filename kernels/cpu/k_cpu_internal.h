/*
 * k_cpu_internal.h - private helpers of the CPU kernels: OpenMP pragmas that vanish without
 * -fopenmp, and how the loaded OpenBLAS threads.
 */
#ifndef TTTD_KERNELS_CPU_INTERNAL_H
#define TTTD_KERNELS_CPU_INTERNAL_H

#include <cblas.h>

#ifdef _OPENMP
#define K_PRAGMA(x) _Pragma(#x)
#define K_OMP_PARALLEL_FOR(cond) K_PRAGMA(omp parallel for schedule(static) if (cond))
/*
 * The per-element loops write y[i] from index i alone (safe in place); saying so spares the
 * compiler the run-time alias checks its -O2 cost model will not pay for, so the loop is
 * vectorised.
 */
#define K_OMP_SIMD K_PRAGMA(omp simd)
#define K_OMP_PARALLEL_FOR_SIMD(cond) K_PRAGMA(omp parallel for simd schedule(static) if (cond))
/* Splits a sum into vector lanes: a fixed reordering chosen at compile time, so still
 * independent of the thread count. */
#define K_OMP_SIMD_SUM(var) K_PRAGMA(omp simd reduction(+ : var))
#else /* without -fopenmp an omp pragma would be an "unknown pragma" warning */
#define K_OMP_PARALLEL_FOR(cond)
#define K_OMP_SIMD
#define K_OMP_PARALLEL_FOR_SIMD(cond)
#define K_OMP_SIMD_SUM(var)
#endif

/*
 * 1 when GEMMs may be issued from several OpenMP threads at once: OpenBLAS is single-threaded,
 * or built on OpenMP. A pthreads OpenBLAS pool instead wants the cores to itself; OpenMP
 * regions between its calls (im2col, bias, softmax) then stay serial, since the two runtimes
 * spin-waiting for the same cores measured up to 10x slower.
 */
static inline int k_blas_nests_in_openmp(void)
{
    return openblas_get_parallel() == 2 || openblas_get_num_threads() == 1;
}

#endif
