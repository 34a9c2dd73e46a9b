/*
 * team.h - a fixed group of threads that run one pass of the network
 * together, each on its share of every layer (ggml's scheme: all threads
 * walk the same layers, split each layer's channels, and meet at a barrier
 * before the next layer reads what they wrote).
 *
 * A team of 1 runs everything on the calling thread.  With a team of T,
 * OpenBLAS must run single-threaded (openblas_set_num_threads(1)): the
 * team is the parallelism, and two thread pools spinning on the same cores
 * would only fight.
 */
#ifndef IGSERVE_TEAM_H
#define IGSERVE_TEAM_H

#include "igserve/error.h"

/* This thread's place in a team pass.  NULL means "alone, whole range". */
struct par {
	int tid, nth;
	struct team *team;
};

/* [*lo, *hi): this thread's part of [0, total), in contiguous blocks. */
void par_range(const struct par *p, int total, int *lo, int *hi);
void par_range_size(const struct par *p, size_t total, size_t *lo, size_t *hi);

/* Wait until every thread of the pass reaches this point (no-op alone). */
void par_sync(const struct par *p);

struct team;

/* team_create - `threads` >= 1 (the caller counts as one). */
int team_create(struct team **out, int threads, struct igs_error *err);
/* Stop and join the helper threads; NULL is fine. */
void team_free(struct team **t);
int team_size(const struct team *t);

/*
 * team_run - fn(arg, p) on every thread of the team, the caller being
 * tid 0; returns when all are done.  One pass at a time per team.
 */
void team_run(struct team *t, void (*fn)(void *arg, const struct par *p), void *arg);

#endif
