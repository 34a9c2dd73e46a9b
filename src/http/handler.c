/*
 * handler.c - libmicrohttpd's access handler: each request is routed on
 * its first call; GETs are answered here (the web page by page.c), model
 * requests go through upload.c and jobs.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gzip.h"
#include "server_internal.h"

/* The embedded openapi.yaml (generated at build time by tools/embed.py). */
extern const unsigned char openapi_yaml[];
extern const size_t openapi_yaml_len;

/* The most body bytes a GET may carry (and have ignored). */
#define GET_BODY_MAX (64 * 1024)

static enum MHD_Result answer_readyz(struct conn *c)
{
	struct server *srv = c->srv;
	if (atomic_load(&srv->draining))
		return conn_send_error(c, IGS_ERR_NOT_READY, "server: shutting down");
	if (!atomic_load(&srv->ready)) {
		char msg[IGS_ERROR_MESSAGE_MAX + 64];
		pthread_mutex_lock(&srv->lock);
		if (srv->selfcheck_error[0])
			snprintf(msg, sizeof msg, "server: self-check failed: %s",
			         srv->selfcheck_error);
		else
			snprintf(msg, sizeof msg, "server: self-check has not finished yet");
		pthread_mutex_unlock(&srv->lock);
		return conn_send_error(c, IGS_ERR_NOT_READY, msg);
	}
	return conn_send_text(c, 200, "application/json", "{\"status\":\"ready\"}", 18, false);
}

static enum MHD_Result answer_metrics(struct conn *c)
{
	struct server *srv = c->srv;
	struct metrics_gauges g = {
	    .queue_depth = {pool_queue_depth(srv->pool, JOB_PREDICT),
	                    pool_queue_depth(srv->pool, JOB_ATTRIBUTE)},
	    .running = pool_running(srv->pool),
	    .workers = pool_workers(srv->pool),
	    .ready = atomic_load(&srv->ready),
	    .draining = atomic_load(&srv->draining),
	    .arch = srv->info.arch,
	    .family = srv->info.family,
	    .sha256 = srv->info.sha256,
	    .path = strrchr(srv->info.path, '/') ? strrchr(srv->info.path, '/') + 1 : srv->info.path,
	    .classes = srv->info.classes,
	    .input_size = srv->info.input_size,
	};
	if (srv->cache)
		cache_get_stats(srv->cache, &g.cache);
	pthread_mutex_lock(&srv->lock);
	g.inflight = srv->inflight;
	pthread_mutex_unlock(&srv->lock);
	size_t len;
	char *text = metrics_render(srv->metrics, &g, &len);
	if (!text)
		return conn_send_error(c, IGS_ERR_NOMEM, "metrics: out of memory");
	return conn_send_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, true);
}

static enum MHD_Result answer_get(struct conn *c)
{
	struct server *srv = c->srv;
	switch (c->ep) {
	case EP_HEALTHZ:
		return conn_send_text(c, 200, "application/json", "{\"status\":\"ok\"}", 15, false);
	case EP_READYZ:
		return answer_readyz(c);
	case EP_METRICS:
		return answer_metrics(c);
	case EP_MODEL:
		return conn_send_text(c, 200, "application/json", srv->model_info_json,
		                      strlen(srv->model_info_json), false);
	case EP_OPENAPI:
		return conn_send_text(c, 200, "application/yaml", (const char *)openapi_yaml,
		                      openapi_yaml_len, false);
	case EP_INDEX:
	case EP_APP_JS:
	case EP_APP_CSS:
		return page_answer(c);
	default:
		return conn_send_error(c, IGS_ERR_NOT_FOUND, "no such endpoint");
	}
}

/* The first call for a request: route it and refuse what is refused by
 * its method or path alone. */
static enum MHD_Result begin(struct conn *c, const char *url, const char *method)
{
	c->ep = routes_find(url);
	snprintf(c->method, sizeof c->method, "%s", method);
	access_log_escape(c->path, sizeof c->path, url);
	c->gzip = gzip_accepted(
	    MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING));
	const bool post = routes_takes_upload(c->ep);
	const struct browser_policy *bp = &c->srv->browser;
	const char *origin =
	    MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_ORIGIN);
	bool origin_ok = browser_origin_allowed(bp, origin);
	if (origin_ok)
		snprintf(c->cors_origin, sizeof c->cors_origin, "%s", origin);
	if (!strcmp(method, MHD_HTTP_METHOD_OPTIONS) &&
	    MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND,
	                                MHD_HTTP_HEADER_ACCESS_CONTROL_REQUEST_METHOD)) {
		if (!origin_ok)
			return conn_send_error(c, IGS_ERR_ORIGIN,
			                       "this origin may not call the API (--cors-origins)");
		c->preflight = true;
		return conn_send_text(c, MHD_HTTP_NO_CONTENT, "text/plain", "", 0, false);
	}
	if (c->ep == EP_OTHER)
		return conn_send_error(c, IGS_ERR_NOT_FOUND, "no such endpoint");
	/* tokens guard the model and what it tells; the page, health and the
	 * API description stay open */
	if ((post || c->ep == EP_METRICS || c->ep == EP_MODEL) &&
	    !browser_authorized(bp, MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND,
	                                                        MHD_HTTP_HEADER_AUTHORIZATION)))
		return conn_send_error(c, IGS_ERR_UNAUTHORIZED,
		                       "this endpoint needs Authorization: Bearer TOKEN");
	if (post && strcmp(method, MHD_HTTP_METHOD_POST))
		return conn_send_error(c, IGS_ERR_METHOD, "use POST with an image");
	if (!post && strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return conn_send_error(c, IGS_ERR_METHOD, "use GET");
	if (!post) {
		const char *len_text = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND,
		                                                   MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (len_text && strtoull(len_text, NULL, 10) > GET_BODY_MAX)
			return conn_send_error(c, IGS_ERR_TOO_LARGE,
			                       "request: a GET has no use for a body");
		/* Answered on the next call, once MHD knows there is no body, so
		 * the connection can be kept alive. */
		c->phase = PHASE_WAITING;
		return MHD_YES;
	}
	return upload_begin(c);
}

enum MHD_Result handler_on_request(void *cls, struct MHD_Connection *mc, const char *url,
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
		watchdog_request_started(srv, mc);
		c->http10 = version && !strcmp(version, MHD_HTTP_VERSION_1_0);
		return begin(c, url, method);
	}
	if (!routes_takes_upload(c->ep) && c->phase == PHASE_WAITING) {
		if (*upload_data_size) {
			/* A GET with a body: ignored up to GET_BODY_MAX (it can only
			 * be chunked here), then the connection is closed. */
			c->discarded += *upload_data_size;
			*upload_data_size = 0;
			if (c->discarded > GET_BODY_MAX) {
				c->status = MHD_HTTP_CONTENT_TOO_LARGE;
				c->error_code = igs_code_name(IGS_ERR_TOO_LARGE);
				c->phase = PHASE_ANSWERED;
				return MHD_NO;
			}
			return MHD_YES;
		}
		return answer_get(c);
	}
	switch (c->phase) {
	case PHASE_BODY:
		if (*upload_data_size) {
			size_t n = *upload_data_size;
			*upload_data_size = 0;
			return upload_take(c, upload_data, n);
		}
		return upload_finish(c);
	case PHASE_WAITING:
		return jobs_answer(c);
	case PHASE_ANSWERED:
	default:
		*upload_data_size = 0;
		return MHD_YES;
	}
}
