/*
 * server.c - the HTTP service's lifecycle: open (worker pool, watchdog,
 * libmicrohttpd daemon, the self-check), drain, close.  The other files of
 * this folder handle the requests (server_internal.h lists them).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "json_render.h"
#include "selfcheck.h"
#include "server_internal.h"

static int run_selfcheck(struct service_worker *w, struct pool_job *job)
{
	struct server *srv = job->ctx;
	return selfcheck_run(w, srv->service, &job->err);
}

static void selfcheck_done(struct pool_job *job)
{
	struct server *srv = job->ctx;
	cJSON *doc = access_log_begin();
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
	access_log_write(srv, doc);
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

int server_open(struct server **out, struct service *s, const struct server_config *cfg,
                struct igs_error *err)
{
	*out = NULL;
	if (cfg->port < 0 || cfg->port > 65535)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "--port: %d is not a TCP port", cfg->port);
	if (cfg->max_body_bytes == 0 || cfg->max_connections < 1 || cfg->http_threads < 1)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "server: --max-body-bytes, --max-connections and --http-threads "
		                "must be positive");
	if (cfg->max_buffered_bytes < cfg->max_body_bytes)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "server: --max-buffered-bytes (%zu) must be at least "
		                "--max-body-bytes (%zu)",
		                cfg->max_buffered_bytes, cfg->max_body_bytes);
	struct server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return igs_fail(err, IGS_ERR_NOMEM, "server: out of memory");
	srv->service = s;
	srv->cfg = *cfg;
	service_get_info(s, &srv->info);
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->changed, NULL);
	atomic_init(&srv->ready, false);
	atomic_init(&srv->draining, false);
	atomic_init(&srv->next_id, 0);
	atomic_init(&srv->buffered, 0);
	int rc = 0;

	rc = browser_policy_open(&srv->browser, cfg->cors_origins, cfg->auth_token_file, err);
	if (rc < 0)
		goto fail;
	srv->model_info_json = json_render_model(s, cfg->max_body_bytes);
	if (!srv->model_info_json || metrics_open(&srv->metrics) < 0 ||
	    (cfg->cache_bytes > 0 && cache_open(&srv->cache, cfg->cache_bytes) < 0)) {
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
	/* libmicrohttpd 0.9.75's epoll loop calls epoll_wait again, with the
	 * full timeout (up to --idle-timeout), whenever one call returned all
	 * of its 128 events: 128 clients of one thread that connect and close
	 * together stalled it, the listening socket unserved, for 30 s.  With
	 * at most CONNECTIONS_PER_HTTP_THREAD connections per thread (plus
	 * its listening and wake-up descriptors) no call returns 128. */
	enum { CONNECTIONS_PER_HTTP_THREAD = 120 };
	int http_threads = cfg->http_threads;
	const int need = (cfg->max_connections + CONNECTIONS_PER_HTTP_THREAD - 1) /
	                 CONNECTIONS_PER_HTTP_THREAD;
	if (http_threads < need)
		http_threads = need;
	struct MHD_OptionItem opts[] = {
	    {MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections, NULL},
	    {MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_connections_per_address, NULL},
	    {MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s, NULL},
	    {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)cfg->connection_memory, NULL},
	    {MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL},
	    {MHD_OPTION_SOCK_ADDR, 0, &addr},
	    {http_threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, http_threads,
	     NULL},
	    {MHD_OPTION_END, 0, NULL},
	};
	srv->daemon = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, handler_on_request,
	                               srv, MHD_OPTION_EXTERNAL_LOGGER, access_log_mhd, srv,
	                               MHD_OPTION_NOTIFY_COMPLETED, access_log_on_completed, srv,
	                               MHD_OPTION_NOTIFY_CONNECTION, watchdog_on_connection, srv,
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

	cJSON *doc = access_log_begin();
	cJSON_AddStringToObject(doc, "event", "listening");
	cJSON_AddStringToObject(doc, "model", srv->info.path);
	cJSON_AddStringToObject(doc, "arch", srv->info.arch);
	cJSON_AddStringToObject(doc, "family", srv->info.family);
	cJSON_AddNumberToObject(doc, "classes", srv->info.classes);
	cJSON_AddNumberToObject(doc, "input_size", srv->info.input_size);
	cJSON_AddStringToObject(doc, "sha256", srv->info.sha256);
	char address[300];
	snprintf(address, sizeof address, addr.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d",
	         cfg->host, srv->port);
	cJSON_AddStringToObject(doc, "address", address);
	cJSON_AddNumberToObject(doc, "port", srv->port);
	cJSON_AddNumberToObject(doc, "workers", cfg->workers);
	cJSON_AddNumberToObject(doc, "http_threads", http_threads);
	cJSON_AddStringToObject(doc, "engine", srv->info.engine);
	cJSON_AddStringToObject(doc, "precision", srv->info.precision);
	/* how many tokens, never which */
	cJSON_AddNumberToObject(doc, "auth_tokens", srv->browser.token_count);
	cJSON_AddNumberToObject(doc, "cors_origins",
	                        srv->browser.cors_any ? -1 : srv->browser.origin_count);
	cJSON_AddNumberToObject(doc, "cache_bytes", (double)cfg->cache_bytes);
	access_log_write(srv, doc);

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
	server_close(&srv);
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

/* Mark every job still in flight as stopped by the drain (answered 503). */
static void cancel_inflight(struct server *srv)
{
	pthread_mutex_lock(&srv->lock);
	for (struct conn *c = srv->watch_head; c; c = c->wnext) {
		atomic_store(&c->drain_cancelled, true);
		atomic_store(&c->job.control.cancelled, true);
	}
	pthread_mutex_unlock(&srv->lock);
}

int server_drain(struct server *srv, double timeout_s)
{
	const double t0 = igs_now();
	atomic_store(&srv->draining, true);
	pthread_mutex_lock(&srv->lock);
	int before = srv->inflight;
	srv->close_by = t0 + timeout_s;
	pthread_mutex_unlock(&srv->lock);
	cJSON *doc = access_log_begin();
	cJSON_AddStringToObject(doc, "event", "draining");
	cJSON_AddNumberToObject(doc, "inflight", before);
	cJSON_AddNumberToObject(doc, "timeout_s", timeout_s);
	access_log_write(srv, doc);

	/* The whole drain fits in timeout_s: requests get all of it but a
	 * reserve, in which what is left is stopped and its answers sent. */
	const double reserve = timeout_s * 0.2 < 1.0 ? timeout_s * 0.2 : 1.0;
	pthread_mutex_lock(&srv->lock);
	wait_idle(srv, t0 + timeout_s - reserve);
	int left = srv->inflight;
	pthread_mutex_unlock(&srv->lock);
	if (left > 0) {
		cancel_inflight(srv);
		pool_stop(srv->pool); /* running jobs stop at their next check */
		pthread_mutex_lock(&srv->lock);
		wait_idle(srv, t0 + timeout_s);
		pthread_mutex_unlock(&srv->lock);
	}
	return left;
}

/*
 * The order matters: libmicrohttpd serves until MHD_stop_daemon returns
 * (a /metrics scrape, an upload finishing), so the pool stays allocated
 * until then; it only stops taking jobs (pool_submit answers 503).  The
 * workers are joined first because their done callbacks resume
 * connections, which needs the daemon.
 */
void server_close(struct server **psrv)
{
	struct server *srv = *psrv;
	if (!srv)
		return;
	*psrv = NULL;
	atomic_store(&srv->draining, true);
	/* Workers finish (cancelled jobs stop at their next check); queued
	 * jobs are answered 503; every suspended connection gets resumed. */
	pool_stop(srv->pool);
	if (srv->daemon) {
		/* answers still being written: until the drain's end, or 2 s */
		pthread_mutex_lock(&srv->lock);
		double until = srv->close_by > 0 ? srv->close_by : igs_now() + 2.0;
		wait_idle(srv, until);
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
		cJSON *doc = access_log_begin();
		cJSON_AddStringToObject(doc, "event", "stopped");
		access_log_write(srv, doc);
	}
	pool_close(&srv->pool);
	metrics_close(&srv->metrics);
	cache_close(&srv->cache);
	browser_policy_close(&srv->browser);
	free(srv->model_info_json);
	pthread_cond_destroy(&srv->changed);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
}
