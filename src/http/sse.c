/*
 * sse.c - server-sent events: /attribute with Accept: text/event-stream
 * answers 200 at once and streams `progress` events, then one `result` (or
 * `error`) event, fed by the worker through sse_push.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"
#include "service.h"

void sse_push(struct conn *c, const char *event, const char *data, bool last)
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
		if (c->ev_len + need <= c->ev_cap) {
			c->ev_len += (size_t)snprintf(c->events + c->ev_len, c->ev_cap - c->ev_len,
			                              "event: %s\ndata: %s\n\n", event, data);
		} else if (!c->stream_failed) {
			/* Out of memory: a lost progress event would be harmless, a
			 * lost last one would look like a complete stream without
			 * an answer.  End the stream as failed: the client sees it
			 * cut short, the log says 503 out_of_memory. */
			c->stream_failed = true;
			c->status = igs_code_http_status(IGS_ERR_NOMEM);
			c->error_code = igs_code_name(IGS_ERR_NOMEM);
		}
		if (last || c->stream_failed)
			c->stream_end = true;
		resume = c->suspended;
		c->suspended = false;
	}
	pthread_mutex_unlock(&c->lock);
	if (resume)
		MHD_resume_connection(c->mhd);
}

/* A number, or null when it is not known (NaN). */
static void put_number(char *buf, size_t size, double v)
{
	if (isfinite(v))
		snprintf(buf, size, "%.6g", v);
	else
		snprintf(buf, size, "null");
}

void sse_on_progress(void *ctx, const struct job_progress *p)
{
	struct conn *c = ctx;
	char data[200], rel[32], l2[32];
	put_number(rel, sizeof rel, p->relative_error);
	put_number(l2, sizeof l2, p->relative_l2);
	snprintf(data, sizeof data,
	         "{\"points_done\":%d,\"points_total\":%d,\"relative_error\":%s,"
	         "\"relative_l2\":%s,\"round\":%d",
	         p->points_done, p->points_total, rel, l2, p->round);
	/* with preview=N, each completed round's map; a failed preview is
	 * left out rather than failing the request */
	char *preview = c->options.preview_px > 0 && p->attr
	                    ? service_attribution_preview(p->attr, p->attr_size, c->options.preview_px)
	                    : NULL;
	if (preview) {
		size_t len = strlen(data) + strlen(preview) + 32;
		char *full = malloc(len);
		if (full) {
			snprintf(full, len, "%s,\"preview\":\"%s\"}", data, preview);
			sse_push(c, "progress", full, false);
			free(full);
			free(preview);
			return;
		}
		free(preview);
	}
	strcat(data, "}");
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
		n = c->stream_failed ? MHD_CONTENT_READER_END_WITH_ERROR
		                     : MHD_CONTENT_READER_END_OF_STREAM;
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

enum MHD_Result sse_send_stream(struct conn *c)
{
	struct MHD_Response *r =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, c, sse_free);
	if (!r)
		return MHD_NO;
	conn_ref(c); /* the response's */
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	MHD_add_response_header(r, "X-Accel-Buffering", "no"); /* nginx: pass events on */
	conn_add_common_headers(c, r);
	enum MHD_Result ok = MHD_queue_response(c->mhd, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	c->phase = PHASE_ANSWERED;
	c->status = MHD_HTTP_OK; /* until the result says otherwise */
	return ok;
}
