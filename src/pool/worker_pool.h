/*
 * worker_pool.h - a fixed set of threads, each owning a service_worker, fed
 * by two bounded queues: one for predictions, one for attributions.
 *
 * Scheduling (why: an explanation costs 50-500 forward+backward passes, a
 * prediction one forward; neither may starve the other):
 *   - a free worker takes a predict job first;
 *   - at most max(1, workers - 1) workers run attribute jobs at once, so with
 *     two or more workers one is always free for predictions;
 *   - after 4 predict jobs in a row were taken while attribute jobs waited,
 *     the next free worker allowed to run an attribution takes one, so a
 *     flood of predictions cannot starve the explanations either.
 * A full queue refuses the job at once (IGS_ERR_BUSY -> 429); the HTTP layer
 * never waits for a queue slot.
 *
 * A job is checked before it runs, and while it waits (pool_sweep):
 * cancelled (client gone) or past its deadline, it completes with
 * IGS_ERR_CANCELLED / IGS_ERR_DEADLINE without touching the model.
 */
#ifndef IGSERVE_WORKER_POOL_H
#define IGSERVE_WORKER_POOL_H

#include <stdbool.h>

#include "error.h"
#include "service.h"

enum job_kind { JOB_PREDICT, JOB_ATTRIBUTE, JOB_KINDS };

struct pool_job;

/* Runs on a worker thread with that worker's service_worker; returns 0 or a
 * negative igs_code (filling job->err). */
typedef int (*pool_run_fn)(struct service_worker *w, struct pool_job *job);
/* Called on the worker thread once the job is finished (run or skipped);
 * the job belongs to its submitter again from this call on. */
typedef void (*pool_done_fn)(struct pool_job *job);

struct pool_job {
	enum job_kind kind;
	struct job_control control; /* deadline, cancellation, progress */
	pool_run_fn run;
	pool_done_fn done;
	void *ctx; /* the submitter's */
	/* Filled by the pool: */
	int status; /* what run returned, or CANCELLED / DEADLINE */
	struct igs_error err;
	double queued_at, started_at, finished_at; /* igs_now() */
	struct pool_job *next;                     /* queue link, the pool's */
};

struct worker_pool_config {
	int workers;               /* >= 1 */
	int queue_size[JOB_KINDS]; /* waiting jobs per queue, >= 1 */
	/* When every worker is busy, attributions run the waiting predictions
	 * between their chunks of path points. */
	bool interleave_predictions;
};

struct worker_pool;

/*
 * pool_open - create the workers (one service_worker each; `s` must outlive
 * the pool) and start their threads.  Errors: IGS_ERR_BAD_OPTION for a bad
 * config, IGS_ERR_NOMEM, or what service_worker_create returned.
 */
int pool_open(struct worker_pool **out, struct service *s, const struct worker_pool_config *cfg,
              struct igs_error *err);

/*
 * pool_stop - stop taking jobs (pool_submit answers IGS_ERR_NOT_READY),
 * complete the queued ones with IGS_ERR_NOT_READY (their done callbacks
 * run), let running jobs finish and join the threads.  The pool stays
 * valid: the queries below keep answering (zeros) until pool_close, so a
 * server can stop its workers while its HTTP threads still serve.
 */
void pool_stop(struct worker_pool *p);

/* pool_close - pool_stop (if not done yet), then free everything; *p
 * becomes NULL. */
void pool_close(struct worker_pool **p);

/*
 * pool_submit - queue `job` (borrowed until its done callback).  job->kind,
 * run and done must be set.  IGS_ERR_BUSY when that queue is full,
 * IGS_ERR_NOT_READY once the pool is closing; the job is then not queued
 * and done is not called.
 */
int pool_submit(struct worker_pool *p, struct pool_job *job, struct igs_error *err);

/*
 * pool_sweep - take out of their queues the jobs that are cancelled (their
 * client has gone) or past their deadline, and complete them at once with
 * IGS_ERR_CANCELLED / IGS_ERR_DEADLINE (done callbacks run on the calling
 * thread, which must hold none of the submitter's locks).  The server calls
 * it periodically, so such jobs neither hold queue slots nor wait for a
 * worker to be answered.  Returns how many jobs left.
 */
int pool_sweep(struct worker_pool *p);

/* Jobs waiting in a queue; jobs being run now. */
int pool_queue_depth(struct worker_pool *p, enum job_kind kind);
int pool_running(struct worker_pool *p);
int pool_workers(const struct worker_pool *p);

/* A Retry-After hint in whole seconds (>= 1) for a refused job of `kind`,
 * from the queue length and recent run times. */
int pool_retry_after(struct worker_pool *p, enum job_kind kind);

#endif
