/*
 * cli_serve.c - `igserve serve`: flags, model, the HTTP server, signals.
 *
 * SIGTERM / SIGINT start a drain: /readyz and new model requests answer
 * 503, requests in flight get up to --drain-timeout seconds to finish, then
 * the process exits with status 0.  A second signal, or a drain that
 * overruns --drain-timeout by EXIT_GRACE_S, exits at once with status 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "server.h"
#include "service.h"

/*
 * Signals.  SIGTERM and SIGINT are blocked in the main thread before any
 * thread of ours starts (they inherit the mask), and the main thread takes
 * them with sigtimedwait.  OpenBLAS starts its threads before main() with
 * the signals unblocked, so a handler stays installed too: should the
 * kernel hand a signal to one of them, the handler forwards it through a
 * pipe instead of the default action killing the process mid-request.
 */
static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char b = (unsigned char)sig;
	if (write(signal_pipe[1], &b, 1) < 0) {
		/* nothing to do: a pending byte already wakes the main thread */
	}
	errno = saved;
}

static int install_signals(sigset_t *set)
{
	if (pipe(signal_pipe) != 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		fcntl(signal_pipe[i], F_SETFL, O_NONBLOCK);
		fcntl(signal_pipe[i], F_SETFD, FD_CLOEXEC);
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN); /* a client gone mid-write is an error return, not death */
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	return pthread_sigmask(SIG_BLOCK, set, NULL) == 0 ? 0 : -1;
}

/* Block until SIGTERM or SIGINT arrives; returns its number. */
static int wait_signal(const sigset_t *set)
{
	for (;;) {
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
		int sig = sigtimedwait(set, NULL, &ts);
		if (sig > 0)
			return sig;
		unsigned char b;
		if (read(signal_pipe[0], &b, 1) == 1)
			return b;
	}
}

/*
 * After the first signal the drain runs on the main thread; this thread
 * bounds it.  A second SIGTERM/SIGINT exits at once, and so does a drain
 * that overruns --drain-timeout by EXIT_GRACE_S (a job that does not reach
 * its next cancellation check, a stuck write): status 1 either way, with a
 * log line saying why.
 */
enum { EXIT_GRACE_S = 5 };

struct exit_guard {
	sigset_t signals;
	double limit_s;
	bool log_text;
};

static double monotonic_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void exit_forced(const struct exit_guard *g, const char *reason)
{
	char when[40];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000);
	if (g->log_text)
		fprintf(stderr, "%s event=exit_forced reason=%s\n", when, reason);
	else
		fprintf(stderr, "{\"time\":\"%s\",\"event\":\"exit_forced\",\"reason\":\"%s\"}\n",
		        when, reason);
	fflush(stderr);
	_exit(1);
}

static void *exit_guard_main(void *arg)
{
	const struct exit_guard *g = arg;
	const double end = monotonic_s() + g->limit_s;
	for (;;) {
		double left = end - monotonic_s();
		if (left <= 0)
			exit_forced(g, "drain_timeout_overrun");
		if (left > 0.2)
			left = 0.2;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(left * 1e9)};
		unsigned char b;
		if (sigtimedwait(&g->signals, NULL, &ts) > 0 || read(signal_pipe[0], &b, 1) == 1)
			exit_forced(g, "second_signal");
	}
	return NULL;
}

static int set_log_format(void *ctx, const char *name, const char *value, struct igs_error *err)
{
	bool *log_text = ctx;
	if (!strcmp(value, "json"))
		*log_text = false;
	else if (!strcmp(value, "text"))
		*log_text = true;
	else
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "--log-format must be json or text, got '%s'", value);
	return 0;
}

int cli_serve(int argc, char **argv)
{
	struct cli_model_options mo;
	cli_model_options_init(&mo);
	const int cores = cli_default_threads(); /* the CPUs this process may use */
	struct server_config sc = {
	    .host = "0.0.0.0",
	    .port = 8080,
	    /* The workers' OpenMP threads add up to the cores: with one thread
	     * more, libgomp stops spinning between parallel regions and every
	     * region sleeps and wakes its threads (~15% of a forward pass).
	     * Below 4 cores one worker uses them all; predictions that arrive
	     * during an explanation run between its chunks of path points
	     * (worker_pool.c).  From 4 cores, two workers keep one free for
	     * predictions. */
	    .workers = cores >= 4 ? 2 : 1,
	    .queue_size = 32,
	    .attribute_queue_size = 8,
	    .max_body_bytes = 16u << 20,
	    .max_connections = 256,
	    .idle_timeout_s = 30,
	    .connection_memory = 64u << 10,
	    .http_threads = 2,
	    .deadline_ms = 120000,
	    .max_steps_cap = 4096,
	    .max_deadline_ms = -1, /* -1: --deadline-ms */
	    .max_evaluations = 4096,
	    .max_buffered_bytes = 256u << 20,
	    .max_connections_per_address = 64,
	    .header_timeout_s = 10,
	    .cache_bytes = 256u << 20,
	};
	double drain_timeout = 25;
	size_t memory_budget = 1u << 30;
	int blas_threads = 0;
	int worker_threads = 0; /* 0: the cores shared by the workers */
	int interleave = 1;

	struct flag flags[CLI_MODEL_FLAG_COUNT + 32];
	size_t n = cli_model_flags(flags, &mo);
	const struct flag serve_flags[] = {
	    {"host", FLAG_STRING, &sc.host, "ADDR", "address to listen on (0.0.0.0; :: for IPv6)",
	     NULL, NULL},
	    {"port", FLAG_INT, &sc.port, "PORT",
	     "TCP port (8080; 0 picks a free port, logged at startup)", NULL, NULL},
	    {"workers", FLAG_INT, &sc.workers, "N",
	     "requests computed at once (1 below 4 cores, else 2)", NULL, NULL},
	    {"interleave-predictions", FLAG_INT, &interleave, "0|1",
	     "when every worker is busy, run waiting predictions between an attribution's "
	     "chunks of path points (1)",
	     NULL, NULL},
	    {"queue-size", FLAG_INT, &sc.queue_size, "N",
	     "predict jobs waiting for a worker before 429 (32)", NULL, NULL},
	    {"attribute-queue-size", FLAG_INT, &sc.attribute_queue_size, "N",
	     "attribute jobs waiting for a worker before 429 (8)", NULL, NULL},
	    {"max-body-bytes", FLAG_SIZE, &sc.max_body_bytes, "BYTES",
	     "largest request body; larger is 413 (16M)", NULL, NULL},
	    {"max-steps", FLAG_INT, &sc.max_steps_cap, "N",
	     "ceiling for the steps and max_steps options; above is 400 (4096)", NULL, NULL},
	    {"max-connections", FLAG_INT, &sc.max_connections, "N",
	     "concurrent connections; more wait unaccepted until one closes (256)", NULL, NULL},
	    {"idle-timeout", FLAG_INT, &sc.idle_timeout_s, "SECONDS",
	     "close a connection idle this long, e.g. a slow upload (30; 0: never)", NULL, NULL},
	    {"connection-memory", FLAG_SIZE, &sc.connection_memory, "BYTES",
	     "memory per connection for headers and buffers (64K)", NULL, NULL},
	    {"http-threads", FLAG_INT, &sc.http_threads, "N",
	     "threads handling HTTP (2, raised to one per 120 --max-connections); they never run "
	     "the model",
	     NULL, NULL},
	    {"deadline-ms", FLAG_INT, &sc.deadline_ms, "MS",
	     "default request deadline, queue wait included; then 504 (120000; 0: none)", NULL,
	     NULL},
	    {"max-deadline-ms", FLAG_INT, &sc.max_deadline_ms, "MS",
	     "largest deadline_ms a request may ask for; above is 400 (default: --deadline-ms)",
	     NULL, NULL},
	    {"max-evaluations", FLAG_INT, &sc.max_evaluations, "N",
	     "forward+backward passes one attribution may ask for (steps x smoothgrad_samples; "
	     "max_steps with tolerance); above is 400 (4096)",
	     NULL, NULL},
	    {"max-buffered-bytes", FLAG_SIZE, &sc.max_buffered_bytes, "BYTES",
	     "request bodies held in memory at once, across connections and queued jobs; "
	     "an upload that does not fit is 429 (256M)",
	     NULL, NULL},
	    {"cache-bytes", FLAG_SIZE, &sc.cache_bytes, "BYTES",
	     "result cache: identical /predict and /attribute requests (image bytes, options, "
	     "model) are answered from an LRU of this many bytes, X-Cache: hit (256M; 0: off)",
	     NULL, NULL},
	    {"max-connections-per-address", FLAG_INT, &sc.max_connections_per_address, "N",
	     "concurrent connections from one client address; more are closed at once "
	     "(64; 0: no limit)",
	     NULL, NULL},
	    {"header-timeout", FLAG_INT, &sc.header_timeout_s, "SECONDS",
	     "a request's headers must arrive within this of the connection's start or its "
	     "previous answer, else the connection is closed (10; 0: never)",
	     NULL, NULL},
	    {"drain-timeout", FLAG_DOUBLE, &drain_timeout, "SECONDS",
	     "on SIGTERM/SIGINT, time given to requests in flight (25)", NULL, NULL},
	    {"memory-budget", FLAG_SIZE, &memory_budget, "BYTES",
	     "workspace per worker; bounds the path points batched per pass (1G)", NULL, NULL},
	    {"threads-per-worker", FLAG_INT, &worker_threads, "N",
	     "OpenMP threads each worker splits every layer over (default: the cores "
	     "divided among the workers); with "
	     "more than one, OpenBLAS runs single-threaded",
	     NULL, NULL},
	    {"blas-threads", FLAG_INT, &blas_threads, "N",
	     "OpenBLAS threads per request (0: 1 with several workers or threads per worker, "
	     "else the cores)",
	     NULL, NULL},
	    {"log-format", FLAG_CALLBACK, NULL, "FORMAT",
	     "request log lines on stderr: json (default) or text", set_log_format, &sc.log_text},
	    {"cors-origins", FLAG_STRING, &sc.cors_origins, "LIST",
	     "origins (scheme://host[:port], comma-separated, or *) whose pages may call the API "
	     "(default: none)",
	     NULL, NULL},
	    {"auth-token-file", FLAG_STRING, &sc.auth_token_file, "FILE",
	     "bearer tokens, one per line: /predict, /attribute, /metrics and /v1/model then need "
	     "Authorization: Bearer TOKEN (default: no authentication)",
	     NULL, NULL},
	};
	_Static_assert(sizeof serve_flags / sizeof serve_flags[0] <= 32, "flags[] is too small");
	memcpy(flags + n, serve_flags, sizeof serve_flags);
	n += sizeof serve_flags / sizeof serve_flags[0];

	const char *synopsis = "[--model FILE] [--host ADDR] [--port PORT] [--workers N] ...";
	struct igs_error err = {0};
	size_t npos = 0;
	int rc = flags_parse("serve", synopsis, flags, n, argc, argv, NULL, 0, &npos, &err);
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "igserve serve: %s\n", err.message);
		return 2;
	}
	if (interleave != 0 && interleave != 1) {
		fprintf(stderr, "igserve serve: --interleave-predictions must be 0 or 1, got %d\n",
		        interleave);
		return 2;
	}
	sc.interleave_predictions = interleave;
	if (sc.max_deadline_ms == -1)
		sc.max_deadline_ms = sc.deadline_ms;
	if (sc.max_deadline_ms < 0 || sc.max_evaluations < 1 || sc.max_buffered_bytes == 0 ||
	    sc.max_connections_per_address < 0 || sc.header_timeout_s < 0) {
		fprintf(stderr, "igserve serve: --max-evaluations and --max-buffered-bytes must be "
		                "positive; --max-deadline-ms, --max-connections-per-address and "
		                "--header-timeout not negative\n");
		return 2;
	}
	if (sc.deadline_ms > 0 && sc.max_deadline_ms > 0 && sc.deadline_ms > sc.max_deadline_ms) {
		fprintf(stderr, "igserve serve: --deadline-ms %d is over --max-deadline-ms %d\n",
		        sc.deadline_ms, sc.max_deadline_ms);
		return 2;
	}
	if (sc.workers < 1 || sc.queue_size < 1 || sc.attribute_queue_size < 1 ||
	    sc.max_connections < 1 || sc.http_threads < 1 || sc.max_steps_cap < 1 ||
	    sc.idle_timeout_s < 0 || sc.deadline_ms < 0 || !(drain_timeout >= 0) ||
	    blas_threads < 0 || sc.max_body_bytes == 0 || worker_threads < 0 || worker_threads > 64) {
		fprintf(stderr, "igserve serve: --workers, --queue-size, --attribute-queue-size, "
		                "--max-connections, --http-threads, --max-steps and "
		                "--max-body-bytes must be positive; --idle-timeout, --deadline-ms, "
		                "--drain-timeout and --blas-threads not negative; "
		                "--threads-per-worker 0..64 (0: the cores divided among the workers)\n");
		return 2;
	}

	if (worker_threads == 0)
		worker_threads = cores / sc.workers > 1 ? cores / sc.workers : 1;
	/* Parallelism comes from the workers; BLAS threads inside each
	 * request would only fight them for the cores. */
	if (blas_threads == 0)
		blas_threads = sc.workers > 1 || worker_threads > 1 ? 1 : cores;

	sigset_t signals;
	if (install_signals(&signals) != 0) {
		fprintf(stderr, "igserve serve: cannot set up signal handling\n");
		return 1;
	}

	struct service_config cfg = {0};
	rc = cli_model_config(&mo, &cfg, &err);
	cfg.max_steps_cap = sc.max_steps_cap;
	cfg.memory_budget = memory_budget;
	cfg.threads = worker_threads;
	struct service *svc = NULL;
	/* The main thread only loads the model and waits for signals.  Were it
	 * to run an OpenMP team (the weight reorders at load would), its idle
	 * thread would count against the cores, and libgomp would make every
	 * worker's threads sleep between parallel regions instead of spinning:
	 * about 15% of a forward pass in wake-ups. */
	service_threads_setup(1, blas_threads);
	if (rc == 0)
		rc = service_open(&svc, &cfg, &err);
	if (rc < 0) {
		fprintf(stderr, "igserve serve: %s\n", err.message);
		return 1;
	}

	struct server *srv = NULL;
	rc = server_open(&srv, svc, &sc, &err);
	if (rc < 0) {
		fprintf(stderr, "igserve serve: %s\n", err.message);
		service_close(&svc);
		return 1;
	}
	wait_signal(&signals);
	static struct exit_guard guard;
	guard = (struct exit_guard){
	    .signals = signals, .limit_s = drain_timeout + EXIT_GRACE_S, .log_text = sc.log_text};
	pthread_t guard_thread;
	if (pthread_create(&guard_thread, NULL, exit_guard_main, &guard) == 0)
		pthread_detach(guard_thread);
	server_drain(srv, drain_timeout);
	server_close(&srv);
	service_close(&svc);
	return 0;
}
