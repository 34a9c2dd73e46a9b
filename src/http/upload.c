/*
 * upload.c - a model request's body: refused early where it can be (size,
 * type, options), buffered up to --max-body-bytes, then split into the
 * image and the options (raw body, or multipart fields) and submitted.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"

#define FIELD_VALUE_MAX 1024

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

/*
 * --max-buffered-bytes: every connection reserves its buffer's capacity
 * from one budget before allocating it, and gives it back when the body is
 * freed (with the request's state, after the answer, so bodies waiting in
 * a queue count too).  256 connections x --max-body-bytes could otherwise
 * hold gigabytes.
 */
static bool budget_reserve(struct conn *c, size_t n)
{
	struct server *srv = c->srv;
	size_t cur = atomic_load(&srv->buffered);
	do {
		if (n > srv->cfg.max_buffered_bytes || cur > srv->cfg.max_buffered_bytes - n)
			return false;
	} while (!atomic_compare_exchange_weak(&srv->buffered, &cur, cur + n));
	c->reserved += n;
	return true;
}

void upload_release(struct conn *c)
{
	if (c->reserved) {
		atomic_fetch_sub(&c->srv->buffered, c->reserved);
		c->reserved = 0;
	}
}

static enum MHD_Result send_over_budget(struct conn *c)
{
	char msg[200];
	snprintf(msg, sizeof msg,
	         "server: uploads in progress fill the buffer of %zu bytes "
	         "(--max-buffered-bytes); retry later",
	         c->srv->cfg.max_buffered_bytes);
	return conn_send_error(c, IGS_ERR_BUSY, msg);
}

/* Drop the body buffered so far (the rest will be discarded). */
static void drop_body(struct conn *c)
{
	free(c->body);
	c->body = NULL;
	c->len = c->cap = 0;
	upload_release(c);
}

enum MHD_Result upload_begin(struct conn *c)
{
	struct server *srv = c->srv;
	struct MHD_Connection *mc = c->mhd;
	if (atomic_load(&srv->draining))
		return conn_send_error(c, IGS_ERR_NOT_READY, "server: shutting down");
	if (!atomic_load(&srv->ready))
		return conn_send_error(c, IGS_ERR_NOT_READY,
		                       "server: not ready (self-check pending)");

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
			return conn_send_error(c, IGS_ERR_TOO_LARGE, msg);
		}
		/* What was announced must fit in the buffer budget now. */
		if (errno == 0 && end != len_text &&
		    n > srv->cfg.max_buffered_bytes - atomic_load(&srv->buffered))
			return send_over_budget(c);
		/* Preallocate what was announced, up to 1 MiB: memory follows
		 * the bytes that actually arrive, not what a client claims. */
		if (errno == 0 && end != len_text && n > 0) {
			size_t cap = n < (1u << 20) ? (size_t)n : (1u << 20);
			if (!budget_reserve(c, cap))
				return send_over_budget(c);
			c->body = malloc(cap);
			c->cap = c->body ? cap : 0;
			if (!c->body)
				upload_release(c);
		}
	}

	const char *ct =
	    MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	int rc =
	    body_kind_from_content_type(ct, &c->kind, c->boundary, sizeof c->boundary, &c->job.err);
	if (rc < 0)
		return conn_send_error(c, rc, c->job.err.message);

	MHD_get_connection_values(mc, MHD_GET_ARGUMENT_KIND, apply_query_arg, c);
	if (c->job.status < 0)
		return conn_send_error(c, c->job.status, c->job.err.message);

	const char *accept =
	    MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
	c->sse = c->ep == EP_ATTRIBUTE && accept && strstr(accept, "text/event-stream");
	c->phase = PHASE_BODY;
	return MHD_YES;
}

/* Over the limit the body is dropped and the rest discarded, 413 at its
 * end: libmicrohttpd 0.9.75 cannot queue a response in the middle of an
 * upload.  A client sending more than twice the limit is disconnected.
 * (Only chunked uploads get here: a Content-Length over the limit is
 * refused before the body, in upload_begin.) */
enum MHD_Result upload_take(struct conn *c, const char *data, size_t n)
{
	size_t max = c->srv->cfg.max_body_bytes;
	if (c->too_large || c->over_budget) {
		c->discarded += n;
		return c->discarded > 2 * max ? MHD_NO : MHD_YES;
	}
	if (c->len + n > max) {
		c->too_large = true;
		c->discarded = c->len + n;
		drop_body(c);
		return MHD_YES;
	}
	if (c->len + n > c->cap) {
		size_t cap = c->cap ? c->cap : 64 * 1024;
		while (cap < c->len + n)
			cap *= 2;
		if (cap > max)
			cap = max;
		if (!budget_reserve(c, cap - c->cap) && !budget_reserve(c, c->len + n - c->cap)) {
			c->over_budget = true;
			c->discarded = c->len + n;
			drop_body(c);
			return MHD_YES;
		}
		size_t want = c->reserved; /* what was reserved: cap, or just enough */
		char *nb = realloc(c->body, want);
		if (!nb)
			return MHD_NO;
		c->body = nb;
		c->cap = want;
	}
	memcpy(c->body + c->len, data, n);
	c->len += n;
	return MHD_YES;
}

enum MHD_Result upload_finish(struct conn *c)
{
	struct server *srv = c->srv;
	struct igs_error *err = &c->job.err;
	if (c->too_large) {
		char msg[128];
		snprintf(msg, sizeof msg, "request: body is over the limit of %zu bytes",
		         srv->cfg.max_body_bytes);
		return conn_send_error(c, IGS_ERR_TOO_LARGE, msg);
	}
	if (c->over_budget)
		return send_over_budget(c);
	if (c->kind == BODY_MULTIPART) {
		int rc = body_multipart_parse(c->body ? c->body : "", c->len, c->boundary,
		                              apply_form_part, c, err);
		if (rc < 0)
			return conn_send_error(c, rc, err->message);
		if (!c->image)
			return conn_send_error(c, IGS_ERR_BAD_OPTION,
			                       "multipart: no 'image' field with the file");
	} else {
		c->image = c->body;
		c->image_len = c->len;
	}
	if (!c->image || c->image_len == 0)
		return conn_send_error(c, IGS_ERR_BAD_OPTION, "request: the image is empty");
	struct request_limits limits = {.max_deadline_ms = srv->cfg.max_deadline_ms,
	                                .max_evaluations = srv->cfg.max_evaluations};
	int rc = request_options_check_limits(&c->options, c->ep == EP_ATTRIBUTE, &limits, err);
	if (rc < 0)
		return conn_send_error(c, rc, err->message);
	/* An upload that began before the drain and ends during it. */
	if (atomic_load(&srv->draining))
		return conn_send_error(c, IGS_ERR_NOT_READY, "server: shutting down");
	/* A cached answer is sent from here, on the HTTP thread: it takes no
	 * queue slot and no worker.  Streams are never cached. */
	if (srv->cache && !c->sse &&
	    cache_key(c->ep == EP_ATTRIBUTE ? "attribute" : "predict", srv->info.sha256, &c->options,
	              c->image, c->image_len, c->cache_key) == 0) {
		char *text;
		size_t len;
		if (cache_lookup(srv->cache, c->cache_key, &text, &len)) {
			c->cache_state = CACHE_STATE_HIT;
			return conn_send_text(c, MHD_HTTP_OK, "application/json", text, len, true);
		}
		c->cache_keyed = true;
	}
	return jobs_submit(c);
}
