/*
 * conn.c - one request's state, reference counted, and the responses that
 * answer it: text, and the contract's JSON errors (the status from the one
 * table in error.c, igs_code_http_status).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "gzip.h"
#include "json_render.h"
#include "server_internal.h"

struct conn *conn_new(struct server *srv, struct MHD_Connection *mc)
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
	c->cache_state = srv->cache ? CACHE_STATE_MISS : CACHE_STATE_OFF;
	return c;
}

void conn_ref(struct conn *c)
{
	atomic_fetch_add(&c->refs, 1);
}

void conn_unref(struct conn *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	pthread_mutex_destroy(&c->lock);
	upload_release(c);
	free(c->body);
	free(c->answer);
	free(c->answer_gz);
	free(c->events);
	free(c);
}

void conn_add_common_headers(struct conn *c, struct MHD_Response *r)
{
	char id[32];
	snprintf(id, sizeof id, "%llu", c->id);
	MHD_add_response_header(r, "X-Request-Id", id);
	if (c->cors_origin[0]) {
		MHD_add_response_header(r, "Access-Control-Allow-Origin", c->cors_origin);
		MHD_add_response_header(r, "Vary", "Origin");
		MHD_add_response_header(r, "Access-Control-Expose-Headers",
		                        "X-Request-Id, Retry-After, X-Cache");
	}
	if (routes_takes_upload(c->ep) && !c->preflight)
		MHD_add_response_header(r, "X-Cache",
		                        c->cache_state == CACHE_STATE_HIT   ? "hit"
		                        : c->cache_state == CACHE_STATE_OFF ? "off"
		                                                            : "miss");
	if (atomic_load(&c->srv->draining))
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
}

/* JSON answers of the model routes and /v1/model may be gzip-encoded
 * (and so vary with Accept-Encoding, encoded or not). */
static bool encodable(const struct conn *c, const char *content_type)
{
	return (routes_takes_upload(c->ep) || c->ep == EP_MODEL) && !c->preflight &&
	       !strcmp(content_type, "application/json");
}

static enum MHD_Result send_buffer(struct conn *c, int status, const char *content_type,
                                   const char *text, size_t len, bool owned, bool gzipped)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
	    len, (void *)text, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!r) {
		if (owned)
			free((void *)text);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	if (encodable(c, content_type))
		MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
	if (gzipped)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
	conn_add_common_headers(c, r);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW,
		                        routes_takes_upload(c->ep) ? "POST" : "GET, HEAD");
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	if (c->preflight) {
		MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS");
		MHD_add_response_header(r, "Access-Control-Allow-Headers",
		                        "Content-Type, Authorization, Accept");
		MHD_add_response_header(r, "Access-Control-Max-Age", "600");
	}
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

enum MHD_Result conn_send_text(struct conn *c, int status, const char *content_type,
                               const char *text, size_t len, bool owned)
{
	if (c->gzip && encodable(c, content_type)) {
		size_t zlen;
		char *z = gzip_compress(text, len, &zlen);
		if (z) {
			if (owned)
				free((void *)text);
			return send_buffer(c, status, content_type, z, zlen, true, true);
		}
		/* out of memory for the compressed copy: the identity bytes */
	}
	return send_buffer(c, status, content_type, text, len, owned, false);
}

enum MHD_Result conn_send_gzipped(struct conn *c, int status, const char *content_type,
                                  const char *text, size_t len)
{
	return send_buffer(c, status, content_type, text, len, true, true);
}

enum MHD_Result conn_send_error(struct conn *c, int code, const char *message)
{
	c->error_code = igs_code_name(code);
	char *text = json_render_error(code, message, NULL);
	if (!text)
		return MHD_NO;
	return conn_send_text(c, igs_code_http_status(code), "application/json", text, strlen(text),
	                      true);
}
