/*
 * server_internal.h - the state the HTTP layer's files share: the server,
 * one connection's request, and the functions each file offers the others.
 *
 *   server.c      lifecycle: open (daemon, pool, watchdog, self-check), drain, close
 *   handler.c     the access handler: routing, GET answers
 *   upload.c      a model request's body: limits, options, multipart
 *   jobs.c        the job a request becomes, its run on a worker, the answer
 *   sse.c         server-sent events for /attribute with Accept: text/event-stream
 *   conn.c        connection state and the responses (JSON errors, text)
 *   watchdog.c    notices clients that leave while their job runs
 *   access_log.c  the request log line, metrics, libmicrohttpd's messages
 *   cache.c       the result cache (cache.h), looked up in upload.c, filled in jobs.c
 *   gzip.c        Accept-Encoding and gzip (gzip.h), applied in conn.c and jobs.c
 *
 * Threads and locks.  MHD's polling thread(s) call the access handler, the
 * SSE reader and the completion callback; workers call the job's done and
 * progress callbacks.  A connection is resumed only by the worker that saw
 * `suspended` set under conn->lock, and only MHD's thread sets it (just
 * before MHD_suspend_connection, under the same lock), so a resume never
 * precedes its suspend and never touches a closed connection.  Workers never
 * hold conn->lock while calling into MHD.
 */
#ifndef IGSERVE_SERVER_INTERNAL_H
#define IGSERVE_SERVER_INTERNAL_H

#include <microhttpd.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "body.h"
#include "browser.h"
#include "cache.h"
#include "metrics.h"
#include "request_options.h"
#include "routes.h"
#include "server.h"
#include "service.h"
#include "worker_pool.h"

struct server {
	struct service *service;
	struct server_config cfg;
	struct service_info info;
	struct worker_pool *pool;
	struct metrics *metrics;
	struct MHD_Daemon *daemon;
	int port;
	char *model_info_json; /* GET /v1/model, rendered once */
	struct browser_policy browser; /* CORS origins, bearer tokens */
	struct cache *cache;           /* --cache-bytes; NULL: off */
	atomic_bool ready, draining;
	atomic_ullong next_id;
	atomic_size_t buffered; /* upload buffer bytes of all connections (upload.c) */

	pthread_mutex_t lock;   /* guards everything below */
	pthread_cond_t changed; /* inflight dropped, or stopping set */
	int inflight;
	struct conn *watch_head;
	struct conn_link *links; /* every open connection (watchdog.c) */
	char selfcheck_error[IGS_ERROR_MESSAGE_MAX];
	bool stopping;
	double close_by; /* igs_now() by which server_close stops waiting (0: unset) */
	pthread_t watchdog;
	bool watchdog_started;
	struct pool_job selfcheck;
};

/* One TCP connection, from accept to close, for the header timeout. */
struct conn_link {
	struct conn_link *next, *prev;
	int fd;
	double since;    /* igs_now() of the connection's start or its last answer */
	bool in_request; /* headers are in; a request is being served */
	bool cut;        /* shut down for being too slow with its headers */
};

/* What X-Cache says about a model request's answer. */
enum cache_state {
	CACHE_STATE_MISS, /* computed (or refused) rather than read from the cache */
	CACHE_STATE_HIT,  /* read from the cache */
	CACHE_STATE_OFF,  /* --cache-bytes 0 */
};

enum conn_phase {
	PHASE_BODY,     /* receiving the upload */
	PHASE_WAITING,  /* job submitted, connection suspended (or a GET to answer) */
	PHASE_ANSWERED, /* a response is queued */
};

/* One request on a connection, from its first header to its completion. */
struct conn {
	atomic_int refs; /* MHD's, the job's, the SSE response's */
	struct server *srv;
	struct MHD_Connection *mhd;
	unsigned long long id;
	enum endpoint ep;
	char method[16];
	char path[128];
	char cors_origin[BROWSER_ORIGIN_MAX]; /* the allowed Origin to echo, or "" */
	bool preflight;                       /* an allowed CORS preflight: 204 */
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
	bool over_budget;  /* --max-buffered-bytes reached: discard, then 429 */
	size_t reserved;   /* bytes of srv->buffered held for `body` */
	const char *image;
	size_t image_len;
	struct request_options options;
	bool sse;
	bool http10; /* an HTTP/1.0 request: no 1xx answers */

	/* job; `answer` is written by the worker before the job's done call */
	struct pool_job job;
	char *answer; /* response JSON text (malloc'd) */

	/* result cache and gzip (the worker writes answer_gz with answer) */
	bool gzip;                   /* Accept-Encoding takes gzip */
	enum cache_state cache_state;
	bool cache_keyed;            /* cache_key is set: a complete answer is stored */
	unsigned char cache_key[CACHE_KEY_BYTES];
	char *answer_gz;             /* `answer` gzip-compressed, or NULL */
	size_t answer_gz_len;

	/* shared with the worker, under lock */
	pthread_mutex_t lock;
	bool suspended, job_active, job_done, closed, stream_end;
	bool stream_failed; /* an event could not be queued (out of memory) */
	char *events; /* SSE bytes not yet handed to MHD */
	size_t ev_len, ev_cap, ev_sent;

	atomic_bool drain_cancelled; /* stopped by the drain timeout, not by the client */

	/* watch list, under srv->lock */
	struct conn *wnext, *wprev;
	bool watched;
	bool probed; /* the watchdog sent its 100 Continue probe (watchdog.c) */
	int fd;
};

/* ---- conn.c ---- */

/* A new request's state with one reference (MHD's); NULL when out of memory. */
struct conn *conn_new(struct server *srv, struct MHD_Connection *mc);
void conn_ref(struct conn *c);
/* Drop a reference; the last one frees the state. */
void conn_unref(struct conn *c);
/* X-Request-Id, and Connection: close while draining. */
void conn_add_common_headers(struct conn *c, struct MHD_Response *r);
/* Queue `text` (len bytes; freed by MHD when `owned`) with `status`. */
enum MHD_Result conn_send_text(struct conn *c, int status, const char *content_type,
                               const char *text, size_t len, bool owned);
/* The same for `text` that is already gzip-compressed (Content-Encoding). */
enum MHD_Result conn_send_gzipped(struct conn *c, int status, const char *content_type,
                                  const char *text, size_t len);
/* The contract's JSON error document for igs_code `code`, with its status. */
enum MHD_Result conn_send_error(struct conn *c, int code, const char *message);

/* ---- page.c ---- */

/* GET /, /app.js, /app.css: the embedded web page (304 on a matching
 * If-None-Match). */
enum MHD_Result page_answer(struct conn *c);

/* ---- watchdog.c ---- */

/* Watch (or stop watching) the socket of a connection whose job runs. */
void watchdog_add(struct conn *c);
void watchdog_remove(struct conn *c);
/* The thread: every 100 ms, cancel the jobs of peers that have left, sweep
 * the queues, cut connections over --header-timeout. */
void *watchdog_main(void *srv);
/* MHD_OPTION_NOTIFY_CONNECTION: keep srv->links. */
void watchdog_on_connection(void *srv, struct MHD_Connection *mc, void **socket_context,
                            enum MHD_ConnectionNotificationCode toe);
/* A request's headers are in / its answer is done (keep-alive: the next
 * request's headers are timed from here). */
void watchdog_request_started(struct server *srv, struct MHD_Connection *mc);
void watchdog_request_finished(struct server *srv, struct MHD_Connection *mc);

/* ---- sse.c ---- */

/* Queue one event and resume the connection if MHD waits for it (worker
 * thread); `last` ends the stream.  Out of memory, the stream ends cut
 * short (stream_failed; 503 out_of_memory in the log). */
void sse_push(struct conn *c, const char *event, const char *data, bool last);
/* The job_control progress callback of a streaming request. */
void sse_on_progress(void *conn, const struct job_progress *p);
/* Answer 200 with an event stream that sse_push feeds. */
enum MHD_Result sse_send_stream(struct conn *c);

/* ---- jobs.c ---- */

/* The whole body is in and valid: submit the job and suspend (or stream). */
enum MHD_Result jobs_submit(struct conn *c);
/* After resume: answer with the job's outcome. */
enum MHD_Result jobs_answer(struct conn *c);

/* ---- upload.c ---- */

/* Give back a connection's share of --max-buffered-bytes (its body freed). */
void upload_release(struct conn *c);
/* First call of a model request: refuse what can be refused before the
 * body (so `Expect: 100-continue` clients never send it), read options. */
enum MHD_Result upload_begin(struct conn *c);
/* More body bytes. */
enum MHD_Result upload_take(struct conn *c, const char *data, size_t n);
/* The body is complete: find the image and options, submit. */
enum MHD_Result upload_finish(struct conn *c);

/* ---- handler.c ---- */

/* libmicrohttpd's access handler (MHD_AccessHandlerCallback). */
enum MHD_Result handler_on_request(void *srv, struct MHD_Connection *mc, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls);

/* ---- access_log.c ---- */

struct cJSON;
/* A log record with "time" first; add fields and pass it to access_log_write. */
struct cJSON *access_log_begin(void);
/* One line on stderr, JSON or key=value text per --log-format; consumes doc. */
void access_log_write(const struct server *srv, struct cJSON *doc);
/* MHD_OPTION_NOTIFY_COMPLETED: the request's log line, metrics, cancellation. */
void access_log_on_completed(void *srv, struct MHD_Connection *mc, void **con_cls,
                             enum MHD_RequestTerminationCode toe);
/* `in` for a log field: control bytes, non-ASCII bytes and '\' as \xNN
 * (clients choose paths; a decoded %0a must not start a log line). */
void access_log_escape(char *out, size_t cap, const char *in);
/* MHD_OPTION_EXTERNAL_LOGGER: libmicrohttpd's messages as log events. */
void access_log_mhd(void *srv, const char *fmt, va_list ap);

#endif
