/*
 * access_log.c - one log line per request on stderr (JSON, or key=value
 * text with --log-format text), the request's metrics, and the
 * cancellation of a job whose client has gone; libmicrohttpd's own
 * messages as log events.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "server_internal.h"

static void iso_time(char *out, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

cJSON *access_log_begin(void)
{
	char when[40];
	iso_time(when, sizeof when);
	cJSON *doc = cJSON_CreateObject();
	cJSON_AddStringToObject(doc, "time", when);
	return doc;
}

static bool is_control(unsigned char ch)
{
	return ch < 0x20 || ch == 0x7f;
}

void access_log_escape(char *out, size_t cap, const char *in)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p && n + 5 < cap; p++) {
		if (is_control(*p) || *p >= 0x80 || *p == '\\') {
			out[n++] = '\\';
			out[n++] = 'x';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		} else {
			out[n++] = (char)*p;
		}
	}
	out[n] = 0;
}

/* A text-format value: bare when it is one plain word, else quoted with
 * \" \\ \n \r \t \xNN escapes, so no value can end its line or fake a
 * field. */
static void write_text_value(FILE *f, const char *v)
{
	bool plain = *v != 0;
	for (const unsigned char *p = (const unsigned char *)v; *p && plain; p++)
		plain = !is_control(*p) && *p != ' ' && *p != '"' && *p != '=' && *p != '\\';
	if (plain) {
		fputs(v, f);
		return;
	}
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		default:
			if (is_control(*p))
				fprintf(f, "\\x%02x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

void access_log_write(const struct server *srv, cJSON *doc)
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
			else if (cJSON_IsString(it)) {
				fprintf(stderr, "%s%s=", sep, it->string);
				write_text_value(stderr, it->valuestring);
			}
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

void access_log_on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                             enum MHD_RequestTerminationCode toe)
{
	struct server *srv = cls;
	struct conn *c = *con_cls;
	if (!c)
		return;
	*con_cls = NULL;
	watchdog_request_finished(srv, mc);
	pthread_mutex_lock(&c->lock);
	c->closed = true;
	bool active = c->job_active;
	int status = c->status, steps = c->steps;
	const char *error_code = c->error_code;
	pthread_mutex_unlock(&c->lock);
	if (active)
		atomic_store(&c->job.control.cancelled, true);
	watchdog_remove(c);

	double seconds = igs_now() - c->t_start;
	if (!status || (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && status < 400))
		status = 499; /* the client left before the answer was complete */
	metrics_request(srv->metrics, c->ep, status, seconds);

	cJSON *doc = access_log_begin();
	cJSON_AddNumberToObject(doc, "id", (double)c->id);
	cJSON_AddStringToObject(doc, "method", c->method);
	cJSON_AddStringToObject(doc, "endpoint", c->ep == EP_OTHER ? c->path : routes_name(c->ep));
	cJSON_AddNumberToObject(doc, "status", status);
	cJSON_AddNumberToObject(doc, "ms", round(seconds * 1e4) / 10);
	if (c->ep == EP_ATTRIBUTE && steps > 0)
		cJSON_AddNumberToObject(doc, "steps", steps);
	if (c->sse)
		cJSON_AddBoolToObject(doc, "sse", true);
	if (c->cache_state == CACHE_STATE_HIT)
		cJSON_AddStringToObject(doc, "cache", "hit");
	if (error_code && status >= 400)
		cJSON_AddStringToObject(doc, "error", error_code);
	access_log_write(srv, doc);

	if (c->inflight_counted) {
		pthread_mutex_lock(&srv->lock);
		srv->inflight--;
		pthread_cond_broadcast(&srv->changed);
		pthread_mutex_unlock(&srv->lock);
	}
	conn_unref(c);
}

void access_log_mhd(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof msg, fmt, ap);
	msg[strcspn(msg, "\n")] = 0;
	cJSON *doc = access_log_begin();
	cJSON_AddStringToObject(doc, "event", "libmicrohttpd");
	cJSON_AddStringToObject(doc, "message", msg);
	access_log_write(cls, doc);
}
