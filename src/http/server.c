/*
 * server.c - the HTTP service on libmicrohttpd.
 *
 * Contents:
 *   connection state   one `struct conn` per request, reference counted
 *   responses          JSON errors (one table: igs_code_http_status), text
 *   jobs               run on a worker, completion resumes the connection
 *   server-sent events /attribute with Accept: text/event-stream
 *   the access handler routing, limits, body, submission, answer
 *   completion         log line, metrics, cancellation
 *   watchdog           notices clients that leave while their job runs
 *   lifecycle          start, drain, stop
 *
 * Threads and locks.  MHD's polling thread(s) call the access handler, the
 * SSE reader and the completion callback; workers call job_done and the
 * progress callback.  A connection is resumed only by the worker that saw
 * `suspended` set under conn->lock, and only MHD's thread sets it (just
 * before MHD_suspend_connection, under the same lock), so a resume never
 * precedes its suspend and never touches a closed connection.  Workers never
 * hold conn->lock while calling into MHD.
 *
 * Why a watchdog: MHD does not watch the socket of a suspended connection,
 * so a client that disconnects while its job runs is only noticed at resume.
 * The watchdog peeks at those sockets every 100 ms and sets the job's
 * `cancelled` flag, which the attribution loop checks between chunks.
 */
#include "server.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "conv.h"
#include "http_request.h"
#include "metrics.h"
#include "worker_pool.h"

/* The embedded openapi.yaml (generated at build time by tools/embed.py). */
extern const unsigned char openapi_yaml[];
extern const size_t openapi_yaml_len;

#define WATCH_PERIOD_S 0.1
#define FIELD_VALUE_MAX 1024

static const char index_html[] =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>igserve</title>"
    "</head>\n<body><h1>igserve</h1>\n<p>ResNet image classification with Integrated "
    "Gradients explanations.</p>\n<ul>\n<li><code>POST /predict</code> and <code>POST "
    "/attribute</code>: upload an image (multipart field <code>image</code>, or raw "
    "<code>image/jpeg</code> / <code>image/png</code>)</li>\n<li><a href=\"/v1/model\">"
    "/v1/model</a>, <a href=\"/metrics\">/metrics</a>, <a href=\"/healthz\">/healthz</a>, "
    "<a href=\"/readyz\">/readyz</a></li>\n<li><a href=\"/openapi.yaml\">/openapi.yaml</a>: "
    "the full interface</li>\n</ul>\n</body></html>\n";

/* ================================================================ */
/* connection state                                                  */
/* ================================================================ */

enum conn_phase {
	PHASE_BODY,     /* receiving the upload */
	PHASE_WAITING,  /* job submitted, connection suspended */
	PHASE_ANSWERED, /* a response is queued */
};

struct server {
	struct service *service;
	struct server_config cfg;
	const struct model_info *info;
	struct worker_pool *pool;
	struct metrics *metrics;
	struct MHD_Daemon *daemon;
	int port;
	char *model_info_json; /* GET /v1/model, rendered once */
	atomic_bool ready, draining;
	atomic_ullong next_id;

	pthread_mutex_t lock;   /* guards everything below */
	pthread_cond_t changed; /* inflight dropped, or stopping set */
	int inflight;
	struct conn *watch_head;
	char selfcheck_error[IGS_ERROR_MESSAGE_MAX];
	bool stopping;
	pthread_t watchdog;
	bool watchdog_started;
	struct pool_job selfcheck;
};

struct conn {
	atomic_int refs; /* MHD's, the job's, the SSE response's */
	struct server *srv;
	struct MHD_Connection *mhd;
	unsigned long long id;
	enum endpoint ep;
	char method[16];
	char path[128];
	double t_start;
	enum conn_phase phase;
	int status;             /* HTTP status answered (for log and metrics) */
	const char *error_code; /* igs_code_name of an error answer */
	int steps;              /* path points of an attribution, for the log */
	bool inflight_counted;

	/* upload */
	enum body_kind kind;
	char boundary[80];
	char *body;
	size_t len, cap, discarded;
	bool too_large;
	const char *image;
	size_t image_len;
	struct request_options options;
	bool sse;

	/* job; result fields are written by the worker before job_done */
	struct pool_job job;
	char *answer; /* response JSON text (malloc'd) */
	size_t answer_len;

	/* shared with the worker, under lock */
	pthread_mutex_t lock;
	bool suspended, job_active, job_done, closed, stream_end;
	char *events; /* SSE bytes not yet handed to MHD */
	size_t ev_len, ev_cap, ev_sent;

	atomic_bool drain_cancelled; /* stopped by the drain timeout, not by the client */

	/* watch list, under srv->lock */
	struct conn *wnext, *wprev;
	bool watched;
	int fd;
};

static struct conn *conn_new(struct server *srv, struct MHD_Connection *mc)
{
	struct conn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	atomic_init(&c->refs, 1);
	atomic_init(&c->drain_cancelled, false);
	c->srv = srv;
	c->mhd = mc;
	c->id = atomic_fetch_add(&srv->next_id, 1) + 1;
	c->t_start = igs_now();
	c->fd = -1;
	pthread_mutex_init(&c->lock, NULL);
	request_options_init(&c->options);
	return c;
}

static void conn_ref(struct conn *c)
{
	atomic_fetch_add(&c->refs, 1);
}

static void conn_unref(struct conn *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	pthread_mutex_destroy(&c->lock);
	free(c->body);
	free(c->answer);
	free(c->events);
	free(c);
}

/* ================================================================ */
/* responses                                                         */
/* ================================================================ */

static void add_common_headers(struct conn *c, struct MHD_Response *r)
{
	char id[32];
	snprintf(id, sizeof id, "%llu", c->id);
	MHD_add_response_header(r, "X-Request-Id", id);
	if (atomic_load(&c->srv->draining))
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
}

/* Queue `text` (len bytes; freed by MHD when `owned`) with `status`. */
static enum MHD_Result send_text(struct conn *c, int status, const char *content_type,
                                 const char *text, size_t len, bool owned)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
	    len, (void *)text, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!r) {
		if (owned)
			free((void *)text);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	add_common_headers(c, r);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW,
		                        c->ep == EP_PREDICT || c->ep == EP_ATTRIBUTE ? "POST"
		                                                                     : "GET, HEAD");
	if (status == MHD_HTTP_TOO_MANY_REQUESTS || status == MHD_HTTP_SERVICE_UNAVAILABLE) {
		char s[16];
		int after = 1;
		if (status == MHD_HTTP_TOO_MANY_REQUESTS)
			after = pool_retry_after(c->srv->pool, c->ep == EP_ATTRIBUTE ? JOB_ATTRIBUTE
			                                                             : JOB_PREDICT);
		snprintf(s, sizeof s, "%d", after);
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, s);
	}
	enum MHD_Result ok = MHD_queue_response(c->mhd, (unsigned)status, r);
	MHD_destroy_response(r);
	c->status = status;
	c->phase = PHASE_ANSWERED;
	return ok;
}

static enum MHD_Result send_json(struct conn *c, int status, cJSON *doc)
{
	char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
	cJSON_Delete(doc);
	if (!text)
		return MHD_NO;
	return send_text(c, status, "application/json", text, strlen(text), true);
}

/* The contract's error document, {"error": {"code", "message"}}. */
static cJSON *error_json(int code, const char *message)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON *e = cJSON_AddObjectToObject(doc, "error");
	cJSON_AddStringToObject(e, "code", igs_code_name(code));
	cJSON_AddStringToObject(e, "message", message);
	return doc;
}

static enum MHD_Result send_error(struct conn *c, int code, const char *message)
{
	c->error_code = igs_code_name(code);
	return send_json(c, igs_code_http_status(code), error_json(code, message));
}

/* ================================================================ */
/* the watch list                                                    */
/* ================================================================ */

static void watch_add(struct conn *c)
{
	struct server *srv = c->srv;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
	pthread_mutex_lock(&srv->lock);
	c->fd = ci ? ci->connect_fd : -1;
	c->wprev = NULL;
	c->wnext = srv->watch_head;
	if (srv->watch_head)
		srv->watch_head->wprev = c;
	srv->watch_head = c;
	c->watched = true;
	pthread_mutex_unlock(&srv->lock);
}

static void watch_remove(struct conn *c)
{
	struct server *srv = c->srv;
	pthread_mutex_lock(&srv->lock);
	if (c->watched) {
		if (c->wprev)
			c->wprev->wnext = c->wnext;
		else
			srv->watch_head = c->wnext;
		if (c->wnext)
			c->wnext->wprev = c->wprev;
		c->watched = false;
	}
	pthread_mutex_unlock(&srv->lock);
}

/* A peer that closed or reset its end: recv sees EOF or an error. */
static bool peer_gone(int fd)
{
	char b;
	ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0)
		return false;
	if (n == 0)
		return true;
	return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

static void *watchdog_main(void *arg)
{
	struct server *srv = arg;
	pthread_mutex_lock(&srv->lock);
	while (!srv->stopping) {
		for (struct conn *c = srv->watch_head; c; c = c->wnext)
			if (c->fd >= 0 && !atomic_load(&c->job.control.cancelled) &&
			    peer_gone(c->fd))
				atomic_store(&c->job.control.cancelled, true);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)(WATCH_PERIOD_S * 1e9);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&srv->changed, &srv->lock, &ts);
	}
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}

/* ================================================================ */
/* server-sent events                                                */
/* ================================================================ */

/* Append bytes to the connection's event queue and resume it when MHD is
 * waiting for them.  Called on the worker thread. */
static void sse_push(struct conn *c, const char *event, const char *data, bool last)
{
	size_t need = strlen(event) + strlen(data) + 32;
	bool resume = false;
	pthread_mutex_lock(&c->lock);
	if (!c->closed) {
		if (c->ev_len + need > c->ev_cap) {
			size_t cap = (c->ev_len + need) * 2;
			char *nb = realloc(c->events, cap);
			if (nb) {
				c->events = nb;
				c->ev_cap = cap;
			}
		}
		if (c->ev_len + need <= c->ev_cap)
			c->ev_len += (size_t)snprintf(c->events + c->ev_len, c->ev_cap - c->ev_len,
			                              "event: %s\ndata: %s\n\n", event, data);
		if (last)
			c->stream_end = true;
		resume = c->suspended;
		c->suspended = false;
	}
	pthread_mutex_unlock(&c->lock);
	if (resume)
		MHD_resume_connection(c->mhd);
}

static void on_progress(void *ctx, int points_done, int points_total, double relative_error)
{
	struct conn *c = ctx;
	char data[160];
	if (isfinite(relative_error))
		snprintf(data, sizeof data,
		         "{\"points_done\":%d,\"points_total\":%d,\"relative_error\":%.9g}",
		         points_done, points_total, relative_error);
	else
		snprintf(data, sizeof data,
		         "{\"points_done\":%d,\"points_total\":%d,\"relative_error\":null}",
		         points_done, points_total);
	sse_push(c, "progress", data, false);
}

/* MHD asks for more of the stream; with nothing queued the connection is
 * suspended until sse_push resumes it. */
static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct conn *c = cls;
	ssize_t n;
	pthread_mutex_lock(&c->lock);
	if (c->ev_sent < c->ev_len) {
		size_t k = c->ev_len - c->ev_sent;
		if (k > max)
			k = max;
		memcpy(buf, c->events + c->ev_sent, k);
		c->ev_sent += k;
		if (c->ev_sent == c->ev_len)
			c->ev_sent = c->ev_len = 0;
		n = (ssize_t)k;
	} else if (c->stream_end) {
		n = MHD_CONTENT_READER_END_OF_STREAM;
	} else {
		c->suspended = true;
		MHD_suspend_connection(c->mhd);
		n = 0;
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}

static void sse_free(void *cls)
{
	conn_unref(cls);
}

static enum MHD_Result send_event_stream(struct conn *c)
{
	struct MHD_Response *r =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, c, sse_free);
	if (!r)
		return MHD_NO;
	conn_ref(c); /* the response's */
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	MHD_add_response_header(r, "X-Accel-Buffering", "no"); /* nginx: pass events on */
	add_common_headers(c, r);
	enum MHD_Result ok = MHD_queue_response(c->mhd, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	c->phase = PHASE_ANSWERED;
	c->status = MHD_HTTP_OK; /* until the result says otherwise */
	return ok;
}

/* ================================================================ */
/* jobs                                                              */
/* ================================================================ */

static int run_predict(struct service_worker *w, struct pool_job *job)
{
	struct conn *c = job->ctx;
	cJSON *out = NULL;
	int rc =
	    service_predict(w, c->image, c->image_len, &c->options, &job->control, &out, &job->err);
	if (rc == 0) {
		c->answer = cJSON_PrintUnformatted(out);
		if (!c->answer)
			rc = igs_fail(&job->err, IGS_ERR_NOMEM, "response: out of memory");
	}
	cJSON_Delete(out);
	return rc;
}

static int run_attribute(struct service_worker *w, struct pool_job *job)
{
	struct conn *c = job->ctx;
	struct server *srv = c->srv;
	cJSON *out = NULL;
	int rc = service_attribute(w, c->image, c->image_len, &c->options, &job->control, NULL,
	                           NULL, &out, &job->err);
	if (rc == 0) {
		/* Read back what the result reports, for the log and /metrics. */
		cJSON *method = cJSON_GetObjectItemCaseSensitive(out, "method");
		cJSON *steps = cJSON_GetObjectItemCaseSensitive(method, "steps");
		cJSON *conv = cJSON_GetObjectItemCaseSensitive(method, "converged");
		cJSON *compl = cJSON_GetObjectItemCaseSensitive(out, "completeness");
		cJSON *rel = cJSON_GetObjectItemCaseSensitive(compl, "relative_error");
		int n = cJSON_IsNumber(steps) ? steps->valueint : 0;
		pthread_mutex_lock(&c->lock);
		c->steps = n;
		pthread_mutex_unlock(&c->lock);
		metrics_attribution(srv->metrics, n, cJSON_IsNumber(rel) ? rel->valuedouble : NAN,
		                    !cJSON_IsFalse(conv));
		c->answer = cJSON_PrintUnformatted(out);
		if (!c->answer)
			rc = igs_fail(&job->err, IGS_ERR_NOMEM, "response: out of memory");
	}
	cJSON_Delete(out);
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
	watch_remove(c);
	if (c->sse) {
		/* The stream is already 200; an error becomes the last event. */
		if (job->status == 0) {
			sse_push(c, "result", c->answer, true);
		} else {
			pthread_mutex_lock(&c->lock); /* on_completed may read them */
			c->status = igs_code_http_status(job->status);
			c->error_code = igs_code_name(job->status);
			pthread_mutex_unlock(&c->lock);
			cJSON *e = error_json(job->status, job->err.message);
			char *text = cJSON_PrintUnformatted(e);
			cJSON_Delete(e);
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

/* After resume: answer with the job's outcome. */
static enum MHD_Result answer_job(struct conn *c)
{
	if (c->job.status == IGS_ERR_CANCELLED) {
		c->status = 499; /* nobody to answer: close */
		c->error_code = igs_code_name(IGS_ERR_CANCELLED);
		c->phase = PHASE_ANSWERED;
		return MHD_NO;
	}
	if (c->job.status < 0)
		return send_error(c, c->job.status, c->job.err.message);
	char *text = c->answer;
	c->answer = NULL;
	return send_text(c, MHD_HTTP_OK, "application/json", text, strlen(text), true);
}

/* ================================================================ */
/* the access handler                                                */
/* ================================================================ */

static enum endpoint route(const char *url)
{
	static const struct {
		const char *path;
		enum endpoint ep;
	} routes[] = {
	    {"/predict", EP_PREDICT},      {"/attribute", EP_ATTRIBUTE},
	    {"/healthz", EP_HEALTHZ},      {"/readyz", EP_READYZ},
	    {"/metrics", EP_METRICS},      {"/v1/model", EP_MODEL},
	    {"/openapi.yaml", EP_OPENAPI}, {"/", EP_INDEX},
	    {"/index.html", EP_INDEX},
	};
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
		if (!strcmp(url, routes[i].path))
			return routes[i].ep;
	return EP_OTHER;
}

static enum MHD_Result answer_get(struct conn *c)
{
	struct server *srv = c->srv;
	switch (c->ep) {
	case EP_HEALTHZ:
		return send_text(c, 200, "application/json", "{\"status\":\"ok\"}", 15, false);
	case EP_READYZ:
		if (atomic_load(&srv->draining))
			return send_error(c, IGS_ERR_NOT_READY, "server: shutting down");
		if (!atomic_load(&srv->ready)) {
			char msg[IGS_ERROR_MESSAGE_MAX + 64];
			pthread_mutex_lock(&srv->lock);
			if (srv->selfcheck_error[0])
				snprintf(msg, sizeof msg, "server: self-check failed: %s",
				         srv->selfcheck_error);
			else
				snprintf(msg, sizeof msg,
				         "server: self-check has not finished yet");
			pthread_mutex_unlock(&srv->lock);
			return send_error(c, IGS_ERR_NOT_READY, msg);
		}
		return send_text(c, 200, "application/json", "{\"status\":\"ready\"}", 18, false);
	case EP_METRICS: {
		struct metrics_gauges g = {
		    .queue_depth = {pool_queue_depth(srv->pool, JOB_PREDICT),
		                    pool_queue_depth(srv->pool, JOB_ATTRIBUTE)},
		    .running = pool_running(srv->pool),
		    .workers = pool_workers(srv->pool),
		    .ready = atomic_load(&srv->ready),
		    .draining = atomic_load(&srv->draining),
		    .arch = srv->info->arch,
		    .family = srv->info->family_name,
		    .sha256 = srv->info->sha256,
		    .path = srv->info->path,
		    .classes = srv->info->classes,
		    .input_size = srv->info->input_size,
		};
		pthread_mutex_lock(&srv->lock);
		g.inflight = srv->inflight;
		pthread_mutex_unlock(&srv->lock);
		size_t len;
		char *text = metrics_render(srv->metrics, &g, &len);
		if (!text)
			return send_error(c, IGS_ERR_NOMEM, "metrics: out of memory");
		return send_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len,
		                 true);
	}
	case EP_MODEL:
		return send_text(c, 200, "application/json", srv->model_info_json,
		                 strlen(srv->model_info_json), false);
	case EP_OPENAPI:
		return send_text(c, 200, "application/yaml", (const char *)openapi_yaml,
		                 openapi_yaml_len, false);
	case EP_INDEX:
		return send_text(c, 200, "text/html; charset=utf-8", index_html,
		                 sizeof index_html - 1, false);
	default:
		return send_error(c, IGS_ERR_NOT_FOUND, "no such endpoint");
	}
}

/* Query parameters: each one is an option; the first bad one stops. */
static enum MHD_Result apply_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
	struct conn *c = cls;
	int rc = request_options_set(&c->options, key, value ? value : "",
	                             c->srv->cfg.max_steps_cap, &c->job.err);
	if (rc < 0) {
		c->job.status = rc;
		return MHD_NO;
	}
	return MHD_YES;
}

/* Multipart fields: `image` is the upload, every other field an option. */
static int apply_form_part(void *ctx, const struct form_part *part, struct igs_error *err)
{
	struct conn *c = ctx;
	if (!strcmp(part->name, "image")) {
		if (c->image)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "multipart: more than one 'image' field");
		c->image = part->data;
		c->image_len = part->len;
		return 0;
	}
	char value[FIELD_VALUE_MAX];
	if (part->len >= sizeof value)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "multipart: field '%s' is too long",
		                part->name);
	memcpy(value, part->data, part->len);
	value[part->len] = 0;
	return request_options_set(&c->options, part->name, value, c->srv->cfg.max_steps_cap, err);
}

/* First call of a model request: everything that can be refused before
 * the body is read is refused here, so a client that sent
 * `Expect: 100-continue` never uploads it. */
static enum MHD_Result begin_upload(struct conn *c, struct MHD_Connection *mc)
{
	struct server *srv = c->srv;
	if (atomic_load(&srv->draining))
		return send_error(c, IGS_ERR_NOT_READY, "server: shutting down");
	if (!atomic_load(&srv->ready))
		return send_error(c, IGS_ERR_NOT_READY, "server: not ready (self-check pending)");

	const char *len_text =
	    MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (len_text) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(len_text, &end, 10);
		if (errno == 0 && end != len_text && n > srv->cfg.max_body_bytes) {
			char msg[128];
			snprintf(msg, sizeof msg,
			         "request: body of %llu bytes is over the limit of "
			         "%zu bytes",
			         n, srv->cfg.max_body_bytes);
			return send_error(c, IGS_ERR_TOO_LARGE, msg);
		}
		/* Preallocate what was announced, up to 1 MiB: memory follows
		 * the bytes that actually arrive, not what a client claims. */
		if (errno == 0 && end != len_text && n > 0) {
			size_t cap = n < (1u << 20) ? (size_t)n : (1u << 20);
			c->body = malloc(cap);
			c->cap = c->body ? cap : 0;
		}
	}

	const char *ct =
	    MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	int rc =
	    body_kind_from_content_type(ct, &c->kind, c->boundary, sizeof c->boundary, &c->job.err);
	if (rc < 0)
		return send_error(c, rc, c->job.err.message);

	MHD_get_connection_values(mc, MHD_GET_ARGUMENT_KIND, apply_query_arg, c);
	if (c->job.status < 0)
		return send_error(c, c->job.status, c->job.err.message);

	const char *accept =
	    MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
	c->sse = c->ep == EP_ATTRIBUTE && accept && strstr(accept, "text/event-stream");
	c->phase = PHASE_BODY;
	return MHD_YES;
}

/* More body bytes.  Over the limit the body is dropped and the rest
 * discarded, 413 at its end: libmicrohttpd 0.9.75 cannot queue a response
 * in the middle of an upload.  A client sending more than twice the limit
 * is disconnected.  (Only chunked uploads get here: a Content-Length over
 * the limit is refused before the body, in begin_upload.) */
static enum MHD_Result take_body(struct conn *c, const char *data, size_t n)
{
	size_t max = c->srv->cfg.max_body_bytes;
	if (c->too_large) {
		c->discarded += n;
		return c->discarded > 2 * max ? MHD_NO : MHD_YES;
	}
	if (c->len + n > max) {
		c->too_large = true;
		c->discarded = c->len + n;
		free(c->body);
		c->body = NULL;
		c->len = c->cap = 0;
		return MHD_YES;
	}
	if (c->len + n > c->cap) {
		size_t cap = c->cap ? c->cap : 64 * 1024;
		while (cap < c->len + n)
			cap *= 2;
		if (cap > max)
			cap = max;
		char *nb = realloc(c->body, cap);
		if (!nb)
			return MHD_NO;
		c->body = nb;
		c->cap = cap;
	}
	memcpy(c->body + c->len, data, n);
	c->len += n;
	return MHD_YES;
}

/* The whole body is in: find the image and the options, submit the job. */
static enum MHD_Result finish_upload(struct conn *c)
{
	struct server *srv = c->srv;
	struct igs_error *err = &c->job.err;
	if (c->too_large) {
		char msg[128];
		snprintf(msg, sizeof msg, "request: body is over the limit of %zu bytes",
		         srv->cfg.max_body_bytes);
		return send_error(c, IGS_ERR_TOO_LARGE, msg);
	}
	if (c->kind == BODY_MULTIPART) {
		int rc = multipart_parse(c->body ? c->body : "", c->len, c->boundary,
		                         apply_form_part, c, err);
		if (rc < 0)
			return send_error(c, rc, err->message);
		if (!c->image)
			return send_error(c, IGS_ERR_BAD_OPTION,
			                  "multipart: no 'image' field with the file");
	} else {
		c->image = c->body;
		c->image_len = c->len;
	}
	if (!c->image || c->image_len == 0)
		return send_error(c, IGS_ERR_BAD_OPTION, "request: the image is empty");

	struct pool_job *job = &c->job;
	job->kind = c->ep == EP_ATTRIBUTE ? JOB_ATTRIBUTE : JOB_PREDICT;
	job->run = c->ep == EP_ATTRIBUTE ? run_attribute : run_predict;
	job->done = job_done;
	job->ctx = c;
	atomic_init(&job->control.cancelled, false);
	int deadline_ms =
	    c->options.deadline_ms > 0 ? c->options.deadline_ms : srv->cfg.deadline_ms;
	job->control.deadline = deadline_ms > 0 ? c->t_start + deadline_ms / 1000.0 : 0;
	if (c->sse) {
		job->control.progress = on_progress;
		job->control.progress_ctx = c;
	}

	conn_ref(c); /* the job's */
	c->job_active = true;
	watch_add(c);
	int rc = pool_submit(srv->pool, job, err);
	if (rc < 0) {
		watch_remove(c);
		c->job_active = false;
		conn_unref(c);
		if (rc == IGS_ERR_BUSY)
			metrics_rejected(srv->metrics, job->kind);
		return send_error(c, rc, err->message);
	}
	pthread_mutex_lock(&srv->lock);
	srv->inflight++;
	pthread_mutex_unlock(&srv->lock);
	c->inflight_counted = true;

	if (c->sse)
		return send_event_stream(c);
	bool done;
	pthread_mutex_lock(&c->lock);
	done = c->job_done;
	if (!done) {
		c->suspended = true;
		MHD_suspend_connection(c->mhd);
	}
	pthread_mutex_unlock(&c->lock);
	c->phase = PHASE_WAITING;
	return done ? answer_job(c) : MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
	struct server *srv = cls;
	struct conn *c = *con_cls;
	if (!c) {
		c = conn_new(srv, mc);
		if (!c)
			return MHD_NO;
		*con_cls = c;
		c->ep = route(url);
		snprintf(c->method, sizeof c->method, "%s", method);
		snprintf(c->path, sizeof c->path, "%s", url);
		bool post = c->ep == EP_PREDICT || c->ep == EP_ATTRIBUTE;
		if (c->ep == EP_OTHER)
			return send_error(c, IGS_ERR_NOT_FOUND, "no such endpoint");
		if (post && strcmp(method, MHD_HTTP_METHOD_POST))
			return send_error(c, IGS_ERR_METHOD, "use POST with an image");
		if (!post && strcmp(method, MHD_HTTP_METHOD_GET) &&
		    strcmp(method, MHD_HTTP_METHOD_HEAD))
			return send_error(c, IGS_ERR_METHOD, "use GET");
		if (!post) {
			/* Answered on the next call, once MHD knows there is no
			 * body, so the connection can be kept alive. */
			c->phase = PHASE_WAITING;
			return MHD_YES;
		}
		return begin_upload(c, mc);
	}
	if (c->ep != EP_PREDICT && c->ep != EP_ATTRIBUTE && c->phase == PHASE_WAITING) {
		if (*upload_data_size) {
			*upload_data_size = 0; /* a GET with a body: ignore it */
			return MHD_YES;
		}
		return answer_get(c);
	}
	switch (c->phase) {
	case PHASE_BODY:
		if (*upload_data_size) {
			size_t n = *upload_data_size;
			*upload_data_size = 0;
			return take_body(c, upload_data, n);
		}
		return finish_upload(c);
	case PHASE_WAITING:
		return answer_job(c);
	case PHASE_ANSWERED:
	default:
		*upload_data_size = 0;
		return MHD_YES;
	}
}

/* ================================================================ */
/* completion: log line, metrics, cancellation                       */
/* ================================================================ */

static void iso_time(char *out, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* A log record with its "time" first; fill it and pass it to log_line. */
static cJSON *log_begin(void)
{
	char when[40];
	iso_time(when, sizeof when);
	cJSON *doc = cJSON_CreateObject();
	cJSON_AddStringToObject(doc, "time", when);
	return doc;
}

/* One line on stderr, JSON (default) or key=value text; `doc` is consumed. */
static void log_line(const struct server *srv, cJSON *doc)
{
	if (!srv || !srv->cfg.log_text) {
		char *text = cJSON_PrintUnformatted(doc);
		if (text) {
			fprintf(stderr, "%s\n", text);
			free(text);
		}
	} else {
		flockfile(stderr);
		for (cJSON *it = doc->child; it; it = it->next) {
			const char *sep = it == doc->child ? "" : " ";
			if (!strcmp(it->string, "time") && cJSON_IsString(it))
				fprintf(stderr, "%s", it->valuestring);
			else if (cJSON_IsString(it))
				fprintf(stderr, "%s%s=%s", sep, it->string, it->valuestring);
			else if (cJSON_IsNumber(it))
				fprintf(stderr, "%s%s=%.15g", sep, it->string, it->valuedouble);
			else if (cJSON_IsBool(it))
				fprintf(stderr, "%s%s=%s", sep, it->string,
				        cJSON_IsTrue(it) ? "true" : "false");
		}
		fputc('\n', stderr);
		funlockfile(stderr);
	}
	fflush(stderr);
	cJSON_Delete(doc);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct server *srv = cls;
	struct conn *c = *con_cls;
	if (!c)
		return;
	*con_cls = NULL;
	pthread_mutex_lock(&c->lock);
	c->closed = true;
	bool active = c->job_active;
	int status = c->status, steps = c->steps;
	const char *error_code = c->error_code;
	pthread_mutex_unlock(&c->lock);
	if (active)
		atomic_store(&c->job.control.cancelled, true);
	watch_remove(c);

	double seconds = igs_now() - c->t_start;
	if (!status || (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && status < 400))
		status = 499; /* the client left before the answer was complete */
	metrics_request(srv->metrics, c->ep, status, seconds);

	cJSON *doc = log_begin();
	cJSON_AddNumberToObject(doc, "id", (double)c->id);
	cJSON_AddStringToObject(doc, "method", c->method);
	cJSON_AddStringToObject(doc, "endpoint",
	                        c->ep == EP_OTHER ? c->path : endpoint_name(c->ep));
	cJSON_AddNumberToObject(doc, "status", status);
	cJSON_AddNumberToObject(doc, "ms", round(seconds * 1e4) / 10);
	if (c->ep == EP_ATTRIBUTE && steps > 0)
		cJSON_AddNumberToObject(doc, "steps", steps);
	if (c->sse)
		cJSON_AddBoolToObject(doc, "sse", true);
	if (error_code && status >= 400)
		cJSON_AddStringToObject(doc, "error", error_code);
	log_line(srv, doc);

	if (c->inflight_counted) {
		pthread_mutex_lock(&srv->lock);
		srv->inflight--;
		pthread_cond_broadcast(&srv->changed);
		pthread_mutex_unlock(&srv->lock);
	}
	conn_unref(c);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof msg, fmt, ap);
	msg[strcspn(msg, "\n")] = 0;
	cJSON *doc = log_begin();
	cJSON_AddStringToObject(doc, "event", "libmicrohttpd");
	cJSON_AddStringToObject(doc, "message", msg);
	log_line(cls, doc);
}

/* ================================================================ */
/* lifecycle                                                         */
/* ================================================================ */

static int run_selfcheck(struct service_worker *w, struct pool_job *job)
{
	struct server *srv = job->ctx;
	return selfcheck_run(w, srv->service, &job->err);
}

static void selfcheck_done(struct pool_job *job)
{
	struct server *srv = job->ctx;
	cJSON *doc = log_begin();
	cJSON_AddStringToObject(doc, "event", "selfcheck");
	cJSON_AddBoolToObject(doc, "passed", job->status == 0);
	cJSON_AddNumberToObject(doc, "ms", round((job->finished_at - job->queued_at) * 1e4) / 10);
	if (job->status == 0) {
		atomic_store(&srv->ready, true);
	} else {
		cJSON_AddStringToObject(doc, "error", job->err.message);
		pthread_mutex_lock(&srv->lock);
		snprintf(srv->selfcheck_error, sizeof srv->selfcheck_error, "%s", job->err.message);
		pthread_mutex_unlock(&srv->lock);
	}
	log_line(srv, doc);
}

static int resolve_address(const char *host, int port, struct sockaddr_storage *addr,
                           socklen_t *addr_len, struct igs_error *err)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *res = NULL;
	char service[16];
	snprintf(service, sizeof service, "%d", port);
	int rc = getaddrinfo(host && host[0] ? host : NULL, service, &hints, &res);
	if (rc != 0 || !res)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "--host: cannot resolve '%s': %s",
		                host ? host : "", gai_strerror(rc));
	memcpy(addr, res->ai_addr, res->ai_addrlen);
	*addr_len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int server_start(struct server **out, struct service *s, const struct server_config *cfg,
                 struct igs_error *err)
{
	*out = NULL;
	if (cfg->port < 0 || cfg->port > 65535)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "--port: %d is not a TCP port", cfg->port);
	if (cfg->max_body_bytes == 0 || cfg->max_connections < 1 || cfg->http_threads < 1)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "server: --max-body-bytes, --max-connections and --http-threads "
		                "must be positive");
	struct server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return igs_fail(err, IGS_ERR_NOMEM, "server: out of memory");
	srv->service = s;
	srv->cfg = *cfg;
	srv->info = model_get_info(service_model(s));
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->changed, NULL);
	atomic_init(&srv->ready, false);
	atomic_init(&srv->draining, false);
	atomic_init(&srv->next_id, 0);
	int rc = 0;

	cJSON *info = service_model_info_json(s);
	srv->model_info_json = info ? cJSON_PrintUnformatted(info) : NULL;
	cJSON_Delete(info);
	if (!srv->model_info_json || metrics_create(&srv->metrics) < 0) {
		rc = igs_fail(err, IGS_ERR_NOMEM, "server: out of memory");
		goto fail;
	}
	struct worker_pool_config pc = {
	    .workers = cfg->workers,
	    .queue_size = {cfg->queue_size, cfg->attribute_queue_size},
	    .interleave_predictions = cfg->interleave_predictions,
	};
	rc = pool_open(&srv->pool, s, &pc, err);
	if (rc < 0)
		goto fail;
	if (pthread_create(&srv->watchdog, NULL, watchdog_main, srv) != 0) {
		rc = igs_fail(err, IGS_ERR_NOMEM, "server: cannot start the watchdog thread");
		goto fail;
	}
	srv->watchdog_started = true;

	struct sockaddr_storage addr;
	socklen_t addr_len;
	rc = resolve_address(cfg->host, cfg->port, &addr, &addr_len, err);
	if (rc < 0)
		goto fail;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	                 MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	if (addr.ss_family == AF_INET6)
		flags |= MHD_USE_DUAL_STACK; /* "::" serves IPv4 too */
	struct MHD_OptionItem opts[] = {
	    {MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections, NULL},
	    {MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s, NULL},
	    {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)cfg->connection_memory, NULL},
	    {MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL},
	    {MHD_OPTION_SOCK_ADDR, 0, &addr},
	    {cfg->http_threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
	     cfg->http_threads, NULL},
	    {MHD_OPTION_END, 0, NULL},
	};
	srv->daemon = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, srv,
	                               MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, srv,
	                               MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
	                               MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	if (!srv->daemon) {
		rc = igs_fail(err, IGS_ERR_IO,
		              "server: cannot listen on %s:%d (address in use, "
		              "or not a local address?)",
		              cfg->host, cfg->port);
		goto fail;
	}
	const union MHD_DaemonInfo *di =
	    MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
	srv->port = di ? di->port : cfg->port;

	cJSON *doc = log_begin();
	cJSON_AddStringToObject(doc, "event", "listening");
	cJSON_AddStringToObject(doc, "model", srv->info->path);
	cJSON_AddStringToObject(doc, "arch", srv->info->arch);
	cJSON_AddStringToObject(doc, "family", srv->info->family_name);
	cJSON_AddNumberToObject(doc, "classes", srv->info->classes);
	cJSON_AddNumberToObject(doc, "input_size", srv->info->input_size);
	cJSON_AddStringToObject(doc, "sha256", srv->info->sha256);
	char address[300];
	snprintf(address, sizeof address, addr.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d",
	         cfg->host, srv->port);
	cJSON_AddStringToObject(doc, "address", address);
	cJSON_AddNumberToObject(doc, "port", srv->port);
	cJSON_AddNumberToObject(doc, "workers", cfg->workers);
	cJSON_AddStringToObject(doc, "engine", conv_backend());
	cJSON_AddStringToObject(doc, "precision", conv_precision_name());
	log_line(srv, doc);

	/* Readiness: the self-check runs on a worker like any job. */
	srv->selfcheck.kind = JOB_PREDICT;
	srv->selfcheck.run = run_selfcheck;
	srv->selfcheck.done = selfcheck_done;
	srv->selfcheck.ctx = srv;
	rc = pool_submit(srv->pool, &srv->selfcheck, err);
	if (rc < 0)
		goto fail;
	*out = srv;
	return 0;
fail:
	server_stop(&srv);
	return rc;
}

int server_port(const struct server *srv)
{
	return srv->port;
}

bool server_ready(const struct server *srv)
{
	return atomic_load(&srv->ready) && !atomic_load(&srv->draining);
}

/* Wait (with srv->lock held) until inflight is 0 or `deadline` passes. */
static void wait_idle(struct server *srv, double deadline)
{
	while (srv->inflight > 0) {
		double left = deadline - igs_now();
		if (left <= 0)
			break;
		if (left > 0.2)
			left = 0.2;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		long ns = ts.tv_nsec + (long)(left * 1e9);
		ts.tv_sec += ns / 1000000000L;
		ts.tv_nsec = ns % 1000000000L;
		pthread_cond_timedwait(&srv->changed, &srv->lock, &ts);
	}
}

int server_drain(struct server *srv, double timeout_s)
{
	atomic_store(&srv->draining, true);
	pthread_mutex_lock(&srv->lock);
	int before = srv->inflight;
	pthread_mutex_unlock(&srv->lock);
	cJSON *doc = log_begin();
	cJSON_AddStringToObject(doc, "event", "draining");
	cJSON_AddNumberToObject(doc, "inflight", before);
	cJSON_AddNumberToObject(doc, "timeout_s", timeout_s);
	log_line(srv, doc);

	pthread_mutex_lock(&srv->lock);
	wait_idle(srv, igs_now() + timeout_s);
	int left = srv->inflight;
	if (left > 0) /* out of time: stop what still runs (answered 503) */
		for (struct conn *c = srv->watch_head; c; c = c->wnext) {
			atomic_store(&c->drain_cancelled, true);
			atomic_store(&c->job.control.cancelled, true);
		}
	pthread_mutex_unlock(&srv->lock);
	return left;
}

void server_stop(struct server **psrv)
{
	struct server *srv = *psrv;
	if (!srv)
		return;
	*psrv = NULL;
	atomic_store(&srv->draining, true);
	/* Workers finish (cancelled jobs stop at their next check); queued
	 * jobs are answered 503; every suspended connection gets resumed. */
	pool_close(&srv->pool);
	if (srv->daemon) {
		pthread_mutex_lock(&srv->lock);
		wait_idle(srv, igs_now() + 2.0);
		pthread_mutex_unlock(&srv->lock);
	}
	if (srv->watchdog_started) {
		pthread_mutex_lock(&srv->lock);
		srv->stopping = true;
		pthread_cond_broadcast(&srv->changed);
		pthread_mutex_unlock(&srv->lock);
		pthread_join(srv->watchdog, NULL);
	}
	if (srv->daemon) {
		MHD_stop_daemon(srv->daemon);
		cJSON *doc = log_begin();
		cJSON_AddStringToObject(doc, "event", "stopped");
		log_line(srv, doc);
	}
	metrics_free(&srv->metrics);
	free(srv->model_info_json);
	pthread_cond_destroy(&srv->changed);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
}
