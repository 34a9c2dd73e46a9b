/*
 * threads.c - see threads.h.
 */
#include "threads.h"

#include <omp.h>

/* OpenBLAS's own control (openblas-pthread's cblas.h declares it). */
void openblas_set_num_threads(int num_threads);

void nn_threads_set_blas(int threads)
{
	openblas_set_num_threads(threads > 0 ? threads : 1);
}

void nn_threads_set_caller(int threads)
{
	if (threads > 0)
		omp_set_num_threads(threads);
}
