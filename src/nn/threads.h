/*
 * threads.h - how many threads the engine's two thread pools use.
 *
 * Every pass splits its layers over the calling thread's OpenMP team
 * (net_workspace_set_threads sizes it per workspace); OpenBLAS, which runs
 * only the classifier's product, has a pool of its own, which should be
 * single-threaded whenever the OpenMP teams are the parallelism.
 */
#ifndef IGSERVE_THREADS_H
#define IGSERVE_THREADS_H

/* OpenBLAS's threads (1..; it clamps to what it was built for). */
void nn_threads_set_blas(int threads);

/* The calling thread's OpenMP team size for the work it starts from now
 * on (omp_set_num_threads): a thread that only loads a model and waits
 * should take 1, or its idle team counts against the cores and libgomp
 * makes every other team sleep between parallel regions.  0 leaves it. */
void nn_threads_set_caller(int threads);

#endif
