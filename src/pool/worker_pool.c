/*
 * worker_pool.c - worker threads and their two queues (see worker_pool.h
 * for the scheduling rules).
 */
#include "worker_pool.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"

/* Predict jobs taken in a row while attributions wait, before one
 * attribution goes first. */
#define PREDICT_STREAK_MAX 4

struct job_queue {
	struct pool_job *head, *tail;
	int depth, capacity;
	double mean_run_s; /* moving average of run times */
};

struct worker {
	struct worker_pool *pool;
	struct service_worker *sw;
	pthread_t thread;
	bool started;
	/* an attribution filled its workspace since the last service_worker_idle */
	bool holds_pages;
};

struct worker_pool {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct job_queue queue[JOB_KINDS];
	int running[JOB_KINDS];
	int attribute_limit; /* workers that may run attributions at once */
	int predict_streak;
	bool interleave_predictions;
	bool closing;
	int n_workers;
	struct worker *workers;
};

/* How long a worker keeps its workspace's pages after an attribution:
 * back-to-back requests skip re-faulting them (~1% of an IG-50), an idle
 * worker soon holds only the model. */
enum { IDLE_RELEASE_MS = 1000 };

/* Wait for p->wake (lock held); with a timeout, until `deadline`
 * (CLOCK_MONOTONIC).  Returns false when the wait timed out. */
static bool wait_wake(struct worker_pool *p, const struct timespec *deadline)
{
	if (!deadline) {
		pthread_cond_wait(&p->wake, &p->lock);
		return true;
	}
	return pthread_cond_timedwait(&p->wake, &p->lock, deadline) == 0;
}

/* ---- queues ---- */

static void queue_push(struct job_queue *q, struct pool_job *job)
{
	job->next = NULL;
	if (q->tail)
		q->tail->next = job;
	else
		q->head = job;
	q->tail = job;
	q->depth++;
}

static struct pool_job *queue_pop(struct job_queue *q)
{
	struct pool_job *job = q->head;
	if (!job)
		return NULL;
	q->head = job->next;
	if (!q->head)
		q->tail = NULL;
	q->depth--;
	job->next = NULL;
	return job;
}

/* The next job a free worker should run, or NULL; called with the lock. */
static struct pool_job *pick_job(struct worker_pool *p)
{
	struct job_queue *pq = &p->queue[JOB_PREDICT], *aq = &p->queue[JOB_ATTRIBUTE];
	bool attribute_allowed = aq->depth > 0 && p->running[JOB_ATTRIBUTE] < p->attribute_limit;
	if (attribute_allowed && (pq->depth == 0 || p->predict_streak >= PREDICT_STREAK_MAX)) {
		p->predict_streak = 0;
		return queue_pop(aq);
	}
	if (pq->depth > 0) {
		if (aq->depth > 0)
			p->predict_streak++;
		return queue_pop(pq);
	}
	return NULL;
}

/* ---- workers ---- */

static void run_job(struct worker *w, struct pool_job *job)
{
	job->started_at = igs_now();
	if (atomic_load(&job->control.cancelled))
		job->status =
		    igs_fail(&job->err, IGS_ERR_CANCELLED, "request: the client went away");
	else if (job->control.deadline > 0 && job->started_at >= job->control.deadline)
		job->status =
		    igs_fail(&job->err, IGS_ERR_DEADLINE,
		             "request: the deadline passed while the job waited in the queue");
	else
		job->status = job->run(w->sw, job);
	job->finished_at = igs_now();
}

/* Book a finished job and hand it back; called without the lock. */
static void finish_job(struct worker_pool *p, struct pool_job *job)
{
	enum job_kind kind = job->kind;
	double run_s = job->finished_at - job->started_at;
	pthread_mutex_lock(&p->lock);
	p->running[kind]--;
	struct job_queue *q = &p->queue[kind];
	q->mean_run_s = q->mean_run_s > 0 ? 0.8 * q->mean_run_s + 0.2 * run_s : run_s;
	/* A finished attribution may let another worker take one. */
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	job->done(job); /* the job is the submitter's from here on */
}

/*
 * Between two chunks of an attribution: when every worker is busy, run the
 * predictions that wait, so that one worker (the default on two cores) does
 * not make them wait for a whole explanation.
 */
static void run_waiting_predictions(void *arg)
{
	struct worker *w = arg;
	struct worker_pool *p = w->pool;
	for (;;) {
		pthread_mutex_lock(&p->lock);
		struct pool_job *job = NULL;
		int busy = p->running[JOB_PREDICT] + p->running[JOB_ATTRIBUTE];
		if (!p->closing && busy >= p->n_workers)
			job = queue_pop(&p->queue[JOB_PREDICT]);
		if (job)
			p->running[JOB_PREDICT]++;
		pthread_mutex_unlock(&p->lock);
		if (!job)
			return;
		run_job(w, job);
		finish_job(p, job);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct worker_pool *p = w->pool;
	/* A failure here (out of memory) comes back with the first job. */
	service_worker_warm_up(w->sw, NULL);
	struct timespec release_at;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct pool_job *job = pick_job(p);
		if (!job) {
			if (p->closing)
				break;
			if (!wait_wake(p, w->holds_pages ? &release_at : NULL)) {
				pthread_mutex_unlock(&p->lock);
				service_worker_idle(w->sw);
				w->holds_pages = false;
				pthread_mutex_lock(&p->lock);
			}
			continue;
		}
		p->running[job->kind]++;
		pthread_mutex_unlock(&p->lock);

		if (job->kind == JOB_ATTRIBUTE && p->interleave_predictions) {
			job->control.yield = run_waiting_predictions;
			job->control.yield_ctx = w;
		}
		const bool attribution = job->kind == JOB_ATTRIBUTE;
		run_job(w, job);
		finish_job(p, job);
		if (attribution) {
			w->holds_pages = true;
			clock_gettime(CLOCK_MONOTONIC, &release_at);
			release_at.tv_sec += IDLE_RELEASE_MS / 1000;
			release_at.tv_nsec += (long)(IDLE_RELEASE_MS % 1000) * 1000000L;
			if (release_at.tv_nsec >= 1000000000L) {
				release_at.tv_sec++;
				release_at.tv_nsec -= 1000000000L;
			}
		}
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* ---- the pool ---- */

int pool_open(struct worker_pool **out, struct service *s, const struct worker_pool_config *cfg,
              struct igs_error *err)
{
	*out = NULL;
	if (cfg->workers < 1 || cfg->queue_size[JOB_PREDICT] < 1 ||
	    cfg->queue_size[JOB_ATTRIBUTE] < 1)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "worker pool: workers and queue sizes must be at least 1");
	struct worker_pool *p = calloc(1, sizeof *p);
	if (!p)
		return igs_fail(err, IGS_ERR_NOMEM, "worker pool: out of memory");
	pthread_mutex_init(&p->lock, NULL);
	/* timed waits (IDLE_RELEASE_MS) on the monotonic clock */
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&p->wake, &attr);
	pthread_condattr_destroy(&attr);
	for (int k = 0; k < JOB_KINDS; k++)
		p->queue[k].capacity = cfg->queue_size[k];
	p->attribute_limit = cfg->workers > 1 ? cfg->workers - 1 : 1;
	p->interleave_predictions = cfg->interleave_predictions;
	p->workers = calloc((size_t)cfg->workers, sizeof *p->workers);
	if (!p->workers) {
		pool_close(&p);
		return igs_fail(err, IGS_ERR_NOMEM, "worker pool: out of memory");
	}
	p->n_workers = cfg->workers;
	for (int i = 0; i < cfg->workers; i++) {
		struct worker *w = &p->workers[i];
		w->pool = p;
		int rc = service_worker_open(&w->sw, s, err);
		if (rc < 0) {
			pool_close(&p);
			return rc;
		}
	}
	for (int i = 0; i < cfg->workers; i++) {
		struct worker *w = &p->workers[i];
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			pool_close(&p);
			return igs_fail(err, IGS_ERR_NOMEM, "worker pool: cannot start thread %d",
			                i);
		}
		w->started = true;
	}
	*out = p;
	return 0;
}

void pool_stop(struct worker_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	const bool already = p->closing;
	p->closing = true;
	/* Queued jobs will not run: hand them back as refused. */
	struct pool_job *orphans = NULL, *job;
	for (int k = 0; k < JOB_KINDS; k++)
		while ((job = queue_pop(&p->queue[k]))) {
			job->next = orphans;
			orphans = job;
		}
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	while ((job = orphans)) {
		orphans = job->next;
		job->status = igs_fail(&job->err, IGS_ERR_NOT_READY,
		                       "server: shutting down before the job could run");
		job->finished_at = igs_now();
		job->done(job);
	}
	if (already)
		return;
	for (int i = 0; i < p->n_workers; i++)
		if (p->workers[i].started) {
			pthread_join(p->workers[i].thread, NULL);
			p->workers[i].started = false;
		}
}

void pool_close(struct worker_pool **pp)
{
	struct worker_pool *p = *pp;
	if (!p)
		return;
	*pp = NULL;
	pool_stop(p);
	for (int i = 0; i < p->n_workers; i++)
		service_worker_close(&p->workers[i].sw);
	free(p->workers);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

int pool_submit(struct worker_pool *p, struct pool_job *job, struct igs_error *err)
{
	if ((unsigned)job->kind >= JOB_KINDS || !job->run || !job->done)
		return igs_fail(err, IGS_ERR_INTERNAL, "worker pool: incomplete job");
	int rc = 0;
	pthread_mutex_lock(&p->lock);
	struct job_queue *q = &p->queue[job->kind];
	if (p->closing) {
		rc = igs_fail(err, IGS_ERR_NOT_READY, "server: shutting down");
	} else if (q->depth >= q->capacity) {
		rc = igs_fail(err, IGS_ERR_BUSY, "server: the %s queue is full (%d waiting)",
		              job->kind == JOB_PREDICT ? "predict" : "attribute", q->depth);
	} else {
		job->status = 0;
		job->queued_at = igs_now();
		queue_push(q, job);
		pthread_cond_signal(&p->wake);
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

/* Why a queued job should leave its queue without running, or 0. */
static int job_expired(struct pool_job *job, double now)
{
	if (atomic_load(&job->control.cancelled))
		return igs_fail(&job->err, IGS_ERR_CANCELLED, "request: the client went away");
	if (job->control.deadline > 0 && now >= job->control.deadline)
		return igs_fail(&job->err, IGS_ERR_DEADLINE,
		                "request: the deadline passed while the job waited in the queue");
	return 0;
}

int pool_sweep(struct worker_pool *p)
{
	const double now = igs_now();
	struct pool_job *gone = NULL;
	int count = 0;
	pthread_mutex_lock(&p->lock);
	for (int k = 0; k < JOB_KINDS; k++) {
		struct job_queue *q = &p->queue[k];
		struct pool_job *prev = NULL, *job = q->head;
		while (job) {
			struct pool_job *next = job->next;
			int status = job_expired(job, now);
			if (status < 0) {
				if (prev)
					prev->next = next;
				else
					q->head = next;
				if (q->tail == job)
					q->tail = prev;
				q->depth--;
				job->status = status;
				job->next = gone;
				gone = job;
				count++;
			} else {
				prev = job;
			}
			job = next;
		}
	}
	pthread_mutex_unlock(&p->lock);
	while (gone) {
		struct pool_job *job = gone;
		gone = job->next;
		job->next = NULL;
		job->started_at = job->finished_at = now;
		job->done(job);
	}
	return count;
}

int pool_queue_depth(struct worker_pool *p, enum job_kind kind)
{
	pthread_mutex_lock(&p->lock);
	int d = p->queue[kind].depth;
	pthread_mutex_unlock(&p->lock);
	return d;
}

int pool_running(struct worker_pool *p)
{
	pthread_mutex_lock(&p->lock);
	int n = p->running[JOB_PREDICT] + p->running[JOB_ATTRIBUTE];
	pthread_mutex_unlock(&p->lock);
	return n;
}

int pool_workers(const struct worker_pool *p)
{
	return p->n_workers;
}

int pool_retry_after(struct worker_pool *p, enum job_kind kind)
{
	pthread_mutex_lock(&p->lock);
	const struct job_queue *q = &p->queue[kind];
	int lanes = kind == JOB_ATTRIBUTE ? p->attribute_limit : p->n_workers;
	double s = (q->depth + 1) * (q->mean_run_s > 0 ? q->mean_run_s : 1.0) / lanes;
	pthread_mutex_unlock(&p->lock);
	if (!(s >= 1))
		return 1;
	return s > 3600 ? 3600 : (int)ceil(s);
}
