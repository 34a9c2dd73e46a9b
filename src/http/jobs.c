/*
 * jobs.c - the job a model request becomes: submitted to the worker pool,
 * run on a worker (the service's pipeline, its result rendered as JSON
 * there, off the HTTP threads), handed back by resuming the connection,
 * and answered.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gzip.h"
#include "json_render.h"
#include "server_internal.h"

static int render_failed(struct pool_job *job)
{
	return igs_fail(&job->err, IGS_ERR_NOMEM, "response: out of memory");
}

/*
 * The worker has rendered c->answer: store it in the cache when it is
 * complete (not cut short by a deadline) and the request was keyed, and
 * compress it here, off the HTTP threads, when the client takes gzip.
 * The cache keeps the identity bytes; a hit is compressed per answer.
 */
static void answer_rendered(struct conn *c, bool complete)
{
	size_t len = strlen(c->answer);
	if (complete && c->cache_keyed)
		cache_insert(c->srv->cache, c->cache_key, c->answer, len);
	if (c->gzip && !c->sse)
		c->answer_gz = gzip_compress(c->answer, len, &c->answer_gz_len);
}

static int run_predict(struct service_worker *w, struct pool_job *job)
{
	struct conn *c = job->ctx;
	struct predict_result res;
	int rc =
	    service_predict(w, c->image, c->image_len, &c->options, &job->control, &res, &job->err);
	if (rc == 0 && !(c->answer = json_render_predict(c->srv->service, &res)))
		rc = render_failed(job);
	if (rc == 0)
		answer_rendered(c, true);
	predict_result_clear(&res);
	return rc;
}

static int run_attribute(struct service_worker *w, struct pool_job *job)
{
	struct conn *c = job->ctx;
	struct server *srv = c->srv;
	struct attribute_result res;
	int rc = service_attribute(w, c->image, c->image_len, &c->options, &job->control, &res,
	                           &job->err);
	if (rc == 0) {
		pthread_mutex_lock(&c->lock);
		c->steps = res.attr.steps;
		pthread_mutex_unlock(&c->lock);
		metrics_attribution(srv->metrics, res.attr.steps, res.attr.relative_error,
		                    res.attr.converged);
		if (!(c->answer = json_render_attribute(srv->service, &res)))
			rc = render_failed(job);
		else
			answer_rendered(c, !res.attr.deadline_hit);
	}
	attribute_result_clear(&res);
	return rc;
}

/* The worker has finished (or skipped) the job: hand it back. */
static void job_done(struct pool_job *job)
{
	struct conn *c = job->ctx;
	if (job->status == IGS_ERR_CANCELLED && atomic_load(&c->drain_cancelled))
		job->status = igs_fail(&job->err, IGS_ERR_NOT_READY,
		                       "server: shutting down; the request did not finish within "
		                       "the drain timeout");
	if (job->status == IGS_ERR_CANCELLED)
		metrics_cancelled(c->srv->metrics);
	watchdog_remove(c);
	if (c->sse) {
		/* The stream is already 200; an error becomes the last event. */
		if (job->status == 0) {
			sse_push(c, "result", c->answer, true);
		} else {
			pthread_mutex_lock(&c->lock); /* the completion callback may read them */
			c->status = igs_code_http_status(job->status);
			c->error_code = igs_code_name(job->status);
			pthread_mutex_unlock(&c->lock);
			char *text = json_render_error(job->status, job->err.message, NULL);
			sse_push(c, "error", text ? text : "{}", true);
			free(text);
		}
	}
	bool resume;
	pthread_mutex_lock(&c->lock);
	c->job_done = true;
	c->job_active = false;
	resume = c->suspended;
	c->suspended = false;
	pthread_mutex_unlock(&c->lock);
	if (resume)
		MHD_resume_connection(c->mhd);
	conn_unref(c);
}

enum MHD_Result jobs_answer(struct conn *c)
{
	if (c->job.status == IGS_ERR_CANCELLED) {
		c->status = 499; /* nobody to answer: close */
		c->error_code = igs_code_name(IGS_ERR_CANCELLED);
		c->phase = PHASE_ANSWERED;
		return MHD_NO;
	}
	if (c->job.status < 0)
		return conn_send_error(c, c->job.status, c->job.err.message);
	if (c->answer_gz) {
		char *z = c->answer_gz;
		c->answer_gz = NULL;
		return conn_send_gzipped(c, MHD_HTTP_OK, "application/json", z, c->answer_gz_len);
	}
	char *text = c->answer;
	c->answer = NULL;
	return conn_send_text(c, MHD_HTTP_OK, "application/json", text, strlen(text), true);
}

enum MHD_Result jobs_submit(struct conn *c)
{
	struct server *srv = c->srv;
	struct igs_error *err = &c->job.err;
	struct pool_job *job = &c->job;
	job->kind = c->ep == EP_ATTRIBUTE ? JOB_ATTRIBUTE : JOB_PREDICT;
	job->run = c->ep == EP_ATTRIBUTE ? run_attribute : run_predict;
	job->done = job_done;
	job->ctx = c;
	job_init(&job->control);
	int deadline_ms =
	    c->options.deadline_ms > 0 ? c->options.deadline_ms : srv->cfg.deadline_ms;
	job->control.deadline = deadline_ms > 0 ? c->t_start + deadline_ms / 1000.0 : 0;
	if (c->sse) {
		job->control.progress = sse_on_progress;
		job->control.progress_ctx = c;
	}

	conn_ref(c); /* the job's */
	c->job_active = true;
	watchdog_add(c);
	int rc = pool_submit(srv->pool, job, err);
	if (rc < 0) {
		watchdog_remove(c);
		c->job_active = false;
		conn_unref(c);
		if (rc == IGS_ERR_BUSY)
			metrics_rejected(srv->metrics, job->kind);
		return conn_send_error(c, rc, err->message);
	}
	pthread_mutex_lock(&srv->lock);
	srv->inflight++;
	pthread_mutex_unlock(&srv->lock);
	c->inflight_counted = true;

	if (c->sse)
		return sse_send_stream(c);
	bool done;
	pthread_mutex_lock(&c->lock);
	done = c->job_done;
	if (!done) {
		c->suspended = true;
		MHD_suspend_connection(c->mhd);
	}
	pthread_mutex_unlock(&c->lock);
	c->phase = PHASE_WAITING;
	return done ? jobs_answer(c) : MHD_YES;
}
