/*
 * http_harness.h - what the HTTP tests share: a real `igserve serve`
 * process on an ephemeral loopback port (its stderr in a temporary file,
 * the port from the startup log line, readiness from /readyz), requests
 * through libcurl, test images, and the Prometheus metrics it reports.
 */
#ifndef IGSERVE_HTTP_HARNESS_H
#define IGSERVE_HTTP_HARNESS_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The fixture folder and its narrow 64x64 model (setup_paths fills them). */
extern char model_path[4096];
extern char fixtures[2048];

/* An attribution that would take minutes, cut by its deadline: it holds a
 * worker for exactly `ms` milliseconds on any machine, then answers 504. */
#define SLOW(ms) "steps=4096&smoothgrad=smoothgrad&smoothgrad_samples=64&deadline_ms=" #ms

/* Fill model_path and fixtures from IGSERVE_FIXTURES; start libcurl. */
void setup_paths(void);

struct server_proc {
	pid_t pid;
	int port;
	char log_path[64];
};

struct reply {
	long status;
	char *body;
	size_t len;
	char *headers;
	size_t hlen;
	CURLcode rc;
};

struct request {
	const char *method; /* NULL: GET, or POST when there is a body */
	const char *path;
	const char *content_type;
	const void *body;
	size_t len;
	bool chunked; /* send the body with Transfer-Encoding: chunked */
	bool expect_continue;
	const char *accept;
	const char *const *headers; /* more "Name: value" lines, NULL-terminated */
	/* multipart: the image and NULL-terminated name/value pairs */
	const void *image;
	size_t image_len;
	const char *const *fields;
	long timeout_ms;
};

/* Requests on a thread, to have several in flight. */
struct async {
	pthread_t thread;
	int port;
	struct request q;
	struct reply r;
	double finished; /* now_s() when the answer was complete */
};

double now_s(void);

void sleep_s(double s);

char *read_file(const char *path, size_t *len);

unsigned char *test_pixels(int w, int h, int seed);

void *make_png(int w, int h, int seed, size_t *len);

void *make_jpeg(int w, int h, int seed, size_t *len);

void server_spawn_model(struct server_proc *s, const char *model, const char *const *extra,
                               bool wait_ready);

void server_spawn(struct server_proc *s, const char *const *extra);

void assert_clean_log(const char *path);

int server_terminate(struct server_proc *s, double timeout_s);

void reply_free(struct reply *r);

void http(int port, const struct request *q, struct reply *r);

long http_status_get(int port, const char *path);

void assert_error(const struct reply *r, long status, const char *code);
/* A SLOW request that ran into its deadline: either nothing was complete
 * (504 deadline_exceeded) or its best answer so far (200, method.stopped
 * "deadline", converged false): the contract's two outcomes. */
void assert_stopped_at_deadline(const struct reply *r);

bool has_header(const struct reply *r, const char *name_value);

double metric(int port, const char *prefix);

void async_start(struct async *a, int port, const struct request *q);

void async_wait(struct async *a);

bool metric_wait(int port, const char *prefix, double value, double timeout_s);

char *predictions_text(const char *json);

int run_command(const char *cmd, char *text, size_t size);

void assert_predictions_close(const char *json_a, const char *json_b);

#endif
