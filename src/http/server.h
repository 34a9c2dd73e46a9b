/*
 * server.h - the HTTP service: libmicrohttpd in front, a worker pool behind.
 *
 * HTTP threads only parse requests and write answers: a request that needs
 * the model becomes a job on the worker pool (worker_pool.h) and its
 * connection is suspended until a worker has finished the job and resumed
 * it.  The HTTP layer never sees a tensor; it hands image bytes and
 * request_options to service_predict / service_attribute and renders the
 * typed results with json_render.h.
 *
 * Lifecycle:  server_open -> (serving) -> server_drain -> server_close.
 */
#ifndef IGSERVE_SERVER_H
#define IGSERVE_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

struct service;

struct server_config {
	const char *host;            /* address to bind ("0.0.0.0", "::", "127.0.0.1") */
	int port;                    /* 0: any free port (see server_port) */
	int workers;                 /* model threads, >= 1 */
	int queue_size;              /* waiting predict jobs */
	int attribute_queue_size;    /* waiting attribute jobs */
	bool interleave_predictions; /* predictions between an attribution's chunks */
	size_t max_body_bytes;       /* upload limit (413) */
	int max_connections;         /* MHD_OPTION_CONNECTION_LIMIT */
	int idle_timeout_s;          /* MHD_OPTION_CONNECTION_TIMEOUT; 0: none */
	size_t connection_memory;    /* MHD_OPTION_CONNECTION_MEMORY_LIMIT */
	int http_threads;            /* MHD polling threads */
	int deadline_ms;             /* default request deadline; 0: none */
	int max_steps_cap;           /* ceiling for steps and max_steps (request_options_set) */
	int max_deadline_ms;         /* ceiling for a request's deadline_ms; 0: none */
	int max_evaluations;         /* passes one attribution may ask for; 0: none */
	size_t max_buffered_bytes;   /* upload bytes buffered across connections (429) */
	int max_connections_per_address; /* MHD_OPTION_PER_IP_CONNECTION_LIMIT; 0: none */
	int header_timeout_s;        /* a request's headers must arrive within this; 0: none */
	bool log_text;               /* plain text log lines instead of JSON */
	const char *cors_origins;    /* --cors-origins (browser.h); NULL: none */
	const char *auth_token_file; /* --auth-token-file; NULL: no authentication */
	size_t cache_bytes;          /* --cache-bytes: result cache budget (cache.h); 0: off */
};

struct server;

/*
 * server_open - start the worker pool and the HTTP daemon, log the
 * startup line (model path, arch, sha256, address) and queue the self-check
 * (readyz answers 503 until it passes).  `s` is borrowed and must outlive
 * the server.  Errors: IGS_ERR_IO when the address cannot be bound,
 * IGS_ERR_BAD_OPTION for a bad config, IGS_ERR_NOMEM.
 */
int server_open(struct server **out, struct service *s, const struct server_config *cfg,
                struct igs_error *err);

/* The bound TCP port (the real one when cfg->port was 0). */
int server_port(const struct server *srv);

/* True once the self-check passed and until draining starts. */
bool server_ready(const struct server *srv);

/*
 * server_drain - stop taking work: readyz and new model requests (and
 * uploads that complete from now on) answer 503.  Waits for requests in
 * flight to be answered, then cancels what is left (answered 503) and
 * stops the workers, all within `timeout_s`.  Returns the number of
 * requests that were still in flight when the wait ended.
 */
int server_drain(struct server *srv, double timeout_s);

/* server_close - join the workers, wait for answers being written (until
 * the drain's end, or 2 s without a drain), stop the daemon, free; *srv
 * becomes NULL. */
void server_close(struct server **srv);

#endif
