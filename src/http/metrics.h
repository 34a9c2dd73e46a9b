/*
 * metrics.h - the server's counters and histograms, rendered in the
 * Prometheus text exposition format (version 0.0.4) for GET /metrics.
 *
 * Every function is thread-safe: HTTP threads count requests, worker
 * completions count attributions, a scrape renders a snapshot.
 */
#ifndef IGSERVE_METRICS_H
#define IGSERVE_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "cache.h"
#include "routes.h"

/* Values that are read at scrape time rather than counted. */
struct metrics_gauges {
	int queue_depth[2]; /* predict, attribute */
	int inflight;       /* requests holding a job (queued, running or answering) */
	int running;        /* jobs on a worker now */
	int workers;
	bool ready, draining;
	const char *arch, *family, *sha256, *path;
	int classes, input_size;
	struct cache_stats cache; /* the result cache (all zero when it is off) */
};

struct metrics;

/* metrics_open - all zero.  Returns 0 or IGS_ERR_NOMEM. */
int metrics_open(struct metrics **out);
void metrics_close(struct metrics **m);

/* One answered request: its endpoint, status and wall time. */
void metrics_request(struct metrics *m, enum endpoint e, int status, double seconds);
/* One finished attribution: path points used and completeness error. */
void metrics_attribution(struct metrics *m, int steps, double relative_error, bool converged);
/* A job stopped because its client went away. */
void metrics_cancelled(struct metrics *m);
/* A job refused because its queue was full (kind 0 predict, 1 attribute). */
void metrics_rejected(struct metrics *m, int kind);

/*
 * metrics_render - the exposition text; *len gets its length.  Returns a
 * malloc'd string (caller frees) or NULL when out of memory.
 */
char *metrics_render(struct metrics *m, const struct metrics_gauges *g, size_t *len);

#endif
