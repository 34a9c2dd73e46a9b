/*
 * metrics.c - counters and histograms behind GET /metrics.
 *
 * Everything sits behind one mutex: updates are a few additions per
 * request, far below the cost of the request itself.
 */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* ---- histograms ---- */

#define MAX_BUCKETS 16

struct histogram {
	const double *bounds; /* upper bounds, increasing; +Inf is implicit */
	int n_bounds;
	unsigned long long counts[MAX_BUCKETS + 1]; /* per bucket, not cumulative */
	unsigned long long count;
	double sum;
};

static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                        1,     2.5,  5,     10,   30,  60,   120};
static const double steps_bounds[] = {8, 16, 32, 50, 64, 100, 128, 256, 512, 1024, 2048, 4096};
static const double error_bounds[] = {1e-5, 1e-4, 1e-3, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1};

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void histogram_init(struct histogram *h, const double *bounds, int n)
{
	h->bounds = bounds;
	h->n_bounds = n;
}

static void histogram_observe(struct histogram *h, double v)
{
	int b = 0;
	while (b < h->n_bounds && !(v <= h->bounds[b]))
		b++;
	h->counts[b]++;
	h->count++;
	if (isfinite(v))
		h->sum += v;
}

/* ---- the registry ---- */

/* Statuses the server answers with; anything else counts as "other". */
static const int status_list[] = {200, 400, 404, 405, 413, 415, 422, 429, 499, 500, 503, 504};
#define N_STATUS N_OF(status_list)

struct metrics {
	pthread_mutex_t lock;
	unsigned long long requests[EP_COUNT][N_STATUS + 1];
	unsigned long long other_status[EP_COUNT];
	struct histogram latency[EP_COUNT];
	struct histogram steps, rel_error;
	unsigned long long ig_steps_total, attributions, not_converged, cancelled, rejected[2];
};

int metrics_open(struct metrics **out)
{
	struct metrics *m = calloc(1, sizeof *m);
	*out = m;
	if (!m)
		return IGS_ERR_NOMEM;
	pthread_mutex_init(&m->lock, NULL);
	for (int e = 0; e < EP_COUNT; e++)
		histogram_init(&m->latency[e], latency_bounds, N_OF(latency_bounds));
	histogram_init(&m->steps, steps_bounds, N_OF(steps_bounds));
	histogram_init(&m->rel_error, error_bounds, N_OF(error_bounds));
	return 0;
}

void metrics_close(struct metrics **pm)
{
	if (!*pm)
		return;
	pthread_mutex_destroy(&(*pm)->lock);
	free(*pm);
	*pm = NULL;
}

void metrics_request(struct metrics *m, enum endpoint e, int status, double seconds)
{
	if ((unsigned)e >= EP_COUNT)
		e = EP_OTHER;
	int s = 0;
	while (s < N_STATUS && status_list[s] != status)
		s++;
	pthread_mutex_lock(&m->lock);
	m->requests[e][s]++;
	histogram_observe(&m->latency[e], seconds);
	pthread_mutex_unlock(&m->lock);
}

void metrics_attribution(struct metrics *m, int steps, double relative_error, bool converged)
{
	pthread_mutex_lock(&m->lock);
	m->attributions++;
	if (steps > 0) {
		m->ig_steps_total += (unsigned long long)steps;
		histogram_observe(&m->steps, steps);
	}
	if (isfinite(relative_error))
		histogram_observe(&m->rel_error, relative_error);
	if (!converged)
		m->not_converged++;
	pthread_mutex_unlock(&m->lock);
}

void metrics_cancelled(struct metrics *m)
{
	pthread_mutex_lock(&m->lock);
	m->cancelled++;
	pthread_mutex_unlock(&m->lock);
}

void metrics_rejected(struct metrics *m, int kind)
{
	pthread_mutex_lock(&m->lock);
	m->rejected[kind ? 1 : 0]++;
	pthread_mutex_unlock(&m->lock);
}

/* ---- rendering ---- */

struct text {
	char *buf;
	size_t len, cap;
	bool failed;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct text *t, const char *fmt, ...)
{
	if (t->failed)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap * 2 + (size_t)n + 1;
		char *nb = realloc(t->buf, cap);
		if (!nb) {
			t->failed = true;
			return;
		}
		t->buf = nb;
		t->cap = cap;
	}
}

/* A label value with \, " and newline escaped, as the format requires. */
static void put_label_value(struct text *t, const char *v)
{
	put(t, "\"");
	for (const char *c = v ? v : ""; *c; c++) {
		if (*c == '\\' || *c == '"')
			put(t, "\\%c", *c);
		else if (*c == '\n')
			put(t, "\\n");
		else
			put(t, "%c", *c);
	}
	put(t, "\"");
}

static void put_histogram(struct text *t, const char *name, const char *labels,
                          const struct histogram *h)
{
	unsigned long long cum = 0;
	const char *sep = labels[0] ? "," : "";
	for (int b = 0; b < h->n_bounds; b++) {
		cum += h->counts[b];
		put(t, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, h->bounds[b], cum);
	}
	cum += h->counts[h->n_bounds];
	put(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, cum);
	if (labels[0]) {
		put(t, "%s_sum{%s} %.9g\n", name, labels, h->sum);
		put(t, "%s_count{%s} %llu\n", name, labels, h->count);
	} else {
		put(t, "%s_sum %.9g\n", name, h->sum);
		put(t, "%s_count %llu\n", name, h->count);
	}
}

char *metrics_render(struct metrics *m, const struct metrics_gauges *g, size_t *len)
{
	struct text t = {.cap = 8192};
	t.buf = malloc(t.cap);
	if (!t.buf)
		return NULL;
	t.buf[0] = 0;
	pthread_mutex_lock(&m->lock);

	put(&t, "# HELP igserve_requests_total HTTP requests answered, by endpoint and status.\n"
	        "# TYPE igserve_requests_total counter\n");
	for (int e = 0; e < EP_COUNT; e++)
		for (int s = 0; s <= N_STATUS; s++) {
			if (!m->requests[e][s])
				continue;
			put(&t, "igserve_requests_total{endpoint=\"%s\",status=\"",
			    routes_name((enum endpoint)e));
			if (s < N_STATUS)
				put(&t, "%d", status_list[s]);
			else
				put(&t, "other");
			put(&t, "\"} %llu\n", m->requests[e][s]);
		}

	put(&t, "# HELP igserve_request_duration_seconds Wall time from request to last byte.\n"
	        "# TYPE igserve_request_duration_seconds histogram\n");
	for (int e = 0; e < EP_COUNT; e++) {
		if (!m->latency[e].count && e != EP_PREDICT && e != EP_ATTRIBUTE)
			continue;
		char labels[64];
		snprintf(labels, sizeof labels, "endpoint=\"%s\"", routes_name((enum endpoint)e));
		put_histogram(&t, "igserve_request_duration_seconds", labels, &m->latency[e]);
	}

	put(&t,
	    "# HELP igserve_ig_steps Path points of the final quadrature rule per attribution.\n"
	    "# TYPE igserve_ig_steps histogram\n");
	put_histogram(&t, "igserve_ig_steps", "", &m->steps);
	put(&t,
	    "# HELP igserve_ig_steps_total Path points used by all attributions.\n"
	    "# TYPE igserve_ig_steps_total counter\n"
	    "igserve_ig_steps_total %llu\n",
	    m->ig_steps_total);
	put(&t, "# HELP igserve_completeness_relative_error |sum(attr) - (F(x) - F(x'))| / "
	        "|F(x) - F(x')| per attribution.\n"
	        "# TYPE igserve_completeness_relative_error histogram\n");
	put_histogram(&t, "igserve_completeness_relative_error", "", &m->rel_error);
	put(&t,
	    "# HELP igserve_attributions_total Attributions answered.\n"
	    "# TYPE igserve_attributions_total counter\n"
	    "igserve_attributions_total %llu\n",
	    m->attributions);
	put(&t,
	    "# HELP igserve_attributions_not_converged_total Adaptive attributions that stopped "
	    "above their tolerance.\n"
	    "# TYPE igserve_attributions_not_converged_total counter\n"
	    "igserve_attributions_not_converged_total %llu\n",
	    m->not_converged);
	put(&t,
	    "# HELP igserve_jobs_cancelled_total Jobs stopped because the client went away.\n"
	    "# TYPE igserve_jobs_cancelled_total counter\n"
	    "igserve_jobs_cancelled_total %llu\n",
	    m->cancelled);
	put(&t,
	    "# HELP igserve_jobs_rejected_total Jobs refused with 429 because a queue was "
	    "full.\n"
	    "# TYPE igserve_jobs_rejected_total counter\n"
	    "igserve_jobs_rejected_total{queue=\"predict\"} %llu\n"
	    "igserve_jobs_rejected_total{queue=\"attribute\"} %llu\n",
	    m->rejected[0], m->rejected[1]);
	pthread_mutex_unlock(&m->lock);

	put(&t,
	    "# HELP igserve_queue_depth Jobs waiting for a worker.\n"
	    "# TYPE igserve_queue_depth gauge\n"
	    "igserve_queue_depth{queue=\"predict\"} %d\n"
	    "igserve_queue_depth{queue=\"attribute\"} %d\n",
	    g->queue_depth[0], g->queue_depth[1]);
	put(&t,
	    "# HELP igserve_inflight_jobs Requests holding a job (queued, running or being "
	    "answered).\n"
	    "# TYPE igserve_inflight_jobs gauge\n"
	    "igserve_inflight_jobs %d\n",
	    g->inflight);
	put(&t,
	    "# HELP igserve_running_jobs Jobs on a worker now.\n"
	    "# TYPE igserve_running_jobs gauge\n"
	    "igserve_running_jobs %d\n",
	    g->running);
	put(&t,
	    "# HELP igserve_workers Worker threads.\n"
	    "# TYPE igserve_workers gauge\n"
	    "igserve_workers %d\n",
	    g->workers);
	put(&t,
	    "# HELP igserve_ready 1 once the self-check passed and while not draining.\n"
	    "# TYPE igserve_ready gauge\n"
	    "igserve_ready %d\n",
	    g->ready && !g->draining);
	put(&t,
	    "# HELP igserve_draining 1 after SIGTERM/SIGINT.\n"
	    "# TYPE igserve_draining gauge\n"
	    "igserve_draining %d\n",
	    g->draining);
	put(&t,
	    "# HELP igserve_cache_hits_total Model requests answered from the result cache.\n"
	    "# TYPE igserve_cache_hits_total counter\n"
	    "igserve_cache_hits_total %llu\n"
	    "# HELP igserve_cache_misses_total Model requests looked up in the result cache and "
	    "not found.\n"
	    "# TYPE igserve_cache_misses_total counter\n"
	    "igserve_cache_misses_total %llu\n"
	    "# HELP igserve_cache_insertions_total Answers stored in the result cache.\n"
	    "# TYPE igserve_cache_insertions_total counter\n"
	    "igserve_cache_insertions_total %llu\n"
	    "# HELP igserve_cache_evictions_total Answers dropped from the result cache to make "
	    "room (least recently used first).\n"
	    "# TYPE igserve_cache_evictions_total counter\n"
	    "igserve_cache_evictions_total %llu\n"
	    "# HELP igserve_cache_bytes Bytes the result cache holds (answers and per-entry "
	    "overhead).\n"
	    "# TYPE igserve_cache_bytes gauge\n"
	    "igserve_cache_bytes %zu\n"
	    "# HELP igserve_cache_entries Answers the result cache holds.\n"
	    "# TYPE igserve_cache_entries gauge\n"
	    "igserve_cache_entries %zu\n"
	    "# HELP igserve_cache_budget_bytes The result cache's budget (--cache-bytes; 0: "
	    "off).\n"
	    "# TYPE igserve_cache_budget_bytes gauge\n"
	    "igserve_cache_budget_bytes %zu\n",
	    g->cache.hits, g->cache.misses, g->cache.insertions, g->cache.evictions, g->cache.bytes,
	    g->cache.entries, g->cache.budget);
	put(&t, "# HELP igserve_model_info The model being served.\n"
	        "# TYPE igserve_model_info gauge\n"
	        "igserve_model_info{arch=");
	put_label_value(&t, g->arch);
	put(&t, ",family=");
	put_label_value(&t, g->family);
	put(&t, ",classes=\"%d\",input_size=\"%d\",sha256=", g->classes, g->input_size);
	put_label_value(&t, g->sha256);
	put(&t, ",path=");
	put_label_value(&t, g->path);
	put(&t, "} 1\n");

	if (t.failed) {
		free(t.buf);
		return NULL;
	}
	*len = t.len;
	return t.buf;
}
