/*
 * job.h - how a running computation hears from whoever asked for it: is
 * it still wanted, is its deadline past, who wants progress, and when it
 * may lend its thread to other work.  The attribution loop checks it
 * between chunks of path points; the pipelines check it between stages.
 */
#ifndef IGSERVE_JOB_H
#define IGSERVE_JOB_H

#include <stdatomic.h>
#include <stdbool.h>

#include "error.h"

/* What a progress report says (numbers that are not known are NaN). */
struct job_progress {
	int points_done, points_total; /* gradient evaluations */
	double relative_error;         /* completeness error of the estimate so far */
	double relative_l2;            /* its convergence estimate (attribution.h) */
	int round;                     /* refinement rounds completed (0: the first is running) */
	/* Right after a round completes: its attributions [size][size][3]
	 * (valid during the call only); NULL otherwise. */
	const float *attr;
	int attr_size;
};

struct job_control {
	atomic_bool cancelled; /* set by the front end when the client leaves */
	double deadline;       /* igs_now() seconds; 0: none */
	/* Called on the computing thread after each chunk of path points. */
	void (*progress)(void *ctx, const struct job_progress *p);
	void *progress_ctx;
	/* Called on the computing thread between chunks, when its network
	 * workspace is free: the worker pool runs waiting predictions there. */
	void (*yield)(void *ctx);
	void *yield_ctx;
};

/* job_init - not cancelled, no deadline, no callbacks. */
void job_init(struct job_control *job);

/*
 * job_check - IGS_ERR_CANCELLED once the job is cancelled, IGS_ERR_DEADLINE
 * once its deadline has passed (each with a message saying so, `what`
 * naming the work: "attribution"), else 0.  `job` may be NULL (never
 * stops).
 */
int job_check(const struct job_control *job, const char *what, struct igs_error *err);

#endif
