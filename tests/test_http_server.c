/*
 * test_http_server.c - the HTTP service with a server of its own per test
 * (http_harness.h), where a test needs its own flags or stops the server:
 * full queues, predictions between an attribution's chunks, SIGTERM and
 * the drain timeout, idle workers' pages, slow clients, a model that fails
 * its self-check, serve's flags, and the default thread count under a
 * cgroup CPU quota.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "http_harness.h"

/* ================================================================ */
/* load: queues, 429, priorities, disconnects                        */
/* ================================================================ */

START_TEST(test_queue_full)
{
	/* Predictions do not run between the attribution's chunks here, so
	 * they wait in their queue. */
	static const char *const extra[] = {"--workers",
	                                    "1",
	                                    "--queue-size",
	                                    "1",
	                                    "--attribute-queue-size",
	                                    "1",
	                                    "--interleave-predictions",
	                                    "0",
	                                    NULL};
	struct server_proc s;
	server_spawn(&s, extra);
	size_t png_len;
	void *png = make_png(64, 64, 8, &png_len);
	struct request slow = {
	    .path = "/attribute?" SLOW(2000), .image = png, .image_len = png_len};
	/* (a deadline well past the first's: a queued job whose deadline
	 * passes is answered 504 at once, ahead of the waiting predict) */
	struct request slow2 = {
	    .path = "/attribute?" SLOW(6000), .image = png, .image_len = png_len};
	struct async a1, a2, p1;
	async_start(&a1, s.port, &slow);
	ck_assert(metric_wait(s.port, "igserve_running_jobs", 1, 10));
	async_start(&a2, s.port, &slow2);
	ck_assert(metric_wait(s.port, "igserve_queue_depth{queue=\"attribute\"}", 1, 10));

	/* the attribute queue is full: 429 with Retry-After */
	struct reply r;
	http(s.port, &slow, &r);
	assert_error(&r, 429, "queue_full");
	ck_assert(has_header(&r, "Retry-After: "));
	reply_free(&r);

	/* the predict queue is separate: one predict waits, the next is refused */
	struct request pq = {.path = "/predict", .image = png, .image_len = png_len};
	async_start(&p1, s.port, &pq);
	ck_assert(metric_wait(s.port, "igserve_queue_depth{queue=\"predict\"}", 1, 10));
	http(s.port, &pq, &r);
	assert_error(&r, 429, "queue_full");
	reply_free(&r);
	ck_assert(metric(s.port, "igserve_jobs_rejected_total{queue=\"attribute\"}") == 1);
	ck_assert(metric(s.port, "igserve_jobs_rejected_total{queue=\"predict\"}") == 1);

	/* The waiting predict runs before the waiting attribution, which then
	 * runs until its own deadline. */
	async_wait(&p1);
	async_wait(&a1);
	async_wait(&a2);
	ck_assert_int_eq(p1.r.status, 200);
	assert_stopped_at_deadline(&a1.r);
	assert_stopped_at_deadline(&a2.r);
	ck_assert_msg(p1.finished < a2.finished - 0.5, "predict %.3f, attribute %.3f", p1.finished,
	              a2.finished);
	reply_free(&a1.r);
	reply_free(&a2.r);
	reply_free(&p1.r);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);
	free(png);
}
END_TEST


/* One worker (the default below 4 cores): a prediction sent while an
 * explanation runs is answered between two of its chunks, not after it. */
START_TEST(test_predict_between_chunks)
{
	static const char *const extra[] = {"--workers", "1", "--max-steps", "4096", NULL};
	struct server_proc s;
	server_spawn(&s, extra);
	size_t png_len;
	void *png = make_png(64, 64, 11, &png_len);
	struct request slow = {
	    .path = "/attribute?" SLOW(3000), .image = png, .image_len = png_len};
	struct async a;
	double t_start = now_s();
	async_start(&a, s.port, &slow);
	ck_assert(metric_wait(s.port, "igserve_running_jobs", 1, 10));
	struct request pq = {.path = "/predict", .image = png, .image_len = png_len};
	for (int i = 0; i < 3; i++) {
		struct reply r;
		double t0 = now_s();
		http(s.port, &pq, &r);
		double took = now_s() - t0;
		ck_assert_int_eq(r.status, 200);
		ck_assert_msg(took < 1.5, "prediction %d took %.3f s behind the explanation", i,
		              took);
		reply_free(&r);
	}
	/* all answered while the explanation still runs, which then ends at
	 * its deadline as usual */
	ck_assert(metric(s.port, "igserve_running_jobs") == 1);
	async_wait(&a);
	assert_stopped_at_deadline(&a.r);
	ck_assert_msg(a.finished - t_start > 2.5, "the explanation ended after %.3f s",
	              a.finished - t_start);
	reply_free(&a.r);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);
	free(png);
}
END_TEST


/* ================================================================ */
/* shutdown                                                          */
/* ================================================================ */

START_TEST(test_sigterm_drain)
{
	struct server_proc s;
	static const char *const extra[] = {"--workers", "1", "--drain-timeout", "25", NULL};
	server_spawn(&s, extra);
	size_t png_len;
	void *png = make_png(64, 64, 11, &png_len);
	/* One request that runs 1.5 s (adaptive IG answers 200 at its deadline,
	 * its 4-point first rule long done) and a short one queued behind it. */
	struct request work = {.path = "/attribute?steps=4&tolerance=1e-9&max_steps=4096&"
	                               "deadline_ms=1500",
	                       .image = png,
	                       .image_len = png_len};
	struct request work2 = {.path = "/attribute?steps=64", .image = png, .image_len = png_len};
	struct async a1, a2;
	async_start(&a1, s.port, &work);
	ck_assert(metric_wait(s.port, "igserve_running_jobs", 1, 10));
	async_start(&a2, s.port, &work2);
	ck_assert(metric_wait(s.port, "igserve_queue_depth{queue=\"attribute\"}", 1, 10));

	kill(s.pid, SIGTERM);
	/* draining: not ready, and new work is refused with 503 */
	double t0 = now_s();
	struct reply r;
	struct request rq = {.path = "/readyz"};
	do {
		http(s.port, &rq, &r);
		if (r.status == 503)
			break;
		reply_free(&r);
	} while (now_s() - t0 < 5);
	assert_error(&r, 503, "not_ready");
	reply_free(&r);
	struct request pq = {.path = "/predict", .image = png, .image_len = png_len};
	http(s.port, &pq, &r);
	assert_error(&r, 503, "not_ready");
	reply_free(&r);

	/* the running and the queued request both complete */
	async_wait(&a1);
	async_wait(&a2);
	ck_assert_msg(a1.r.status == 200, "in flight: %ld %s", a1.r.status, a1.r.body);
	ck_assert_msg(a2.r.status == 200, "queued: %ld %s", a2.r.status, a2.r.body);
	reply_free(&a1.r);
	reply_free(&a2.r);

	int status = 0;
	while (waitpid(s.pid, &status, WNOHANG) == 0 && now_s() - t0 < 30)
		sleep_s(0.02);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	s.pid = 0;
	assert_clean_log(s.log_path);

	/* one JSON log line per request, with steps for attributions */
	char *log = read_file(s.log_path, NULL);
	ck_assert(strstr(log, "\"event\":\"listening\"") != NULL);
	ck_assert(strstr(log, "\"sha256\":\"") != NULL);
	ck_assert(strstr(log, "\"engine\":\"oneDNN ") != NULL);
	ck_assert(strstr(log, "\"endpoint\":\"/attribute\",\"status\":200") != NULL);
	ck_assert(strstr(log, "\"steps\":64") != NULL);
	ck_assert(strstr(log, "\"event\":\"stopped\"") != NULL);
	free(log);
	unlink(s.log_path);
	free(png);
}
END_TEST

START_TEST(test_drain_timeout)
{
	/* Work that outlives --drain-timeout is stopped and answered 503. */
	static const char *const extra[] = {"--workers", "1", "--drain-timeout", "0.5", NULL};
	struct server_proc s;
	server_spawn(&s, extra);
	size_t png_len;
	void *png = make_png(64, 64, 13, &png_len);
	struct request slow = {
	    .path = "/attribute?" SLOW(20000), .image = png, .image_len = png_len};
	struct request slow_sse = slow;
	slow_sse.accept = "text/event-stream";
	struct async a1, a2;
	async_start(&a1, s.port, &slow);
	ck_assert(metric_wait(s.port, "igserve_running_jobs", 1, 10));
	async_start(&a2, s.port, &slow_sse);
	ck_assert(metric_wait(s.port, "igserve_queue_depth{queue=\"attribute\"}", 1, 10));
	double t0 = now_s();
	kill(s.pid, SIGTERM);
	async_wait(&a1);
	async_wait(&a2);
	assert_error(&a1.r, 503, "not_ready");
	ck_assert_int_eq(a2.r.status, 200);
	ck_assert_msg(strstr(a2.r.body, "event: error\n") && strstr(a2.r.body, "not_ready"),
	              "stream: %s", a2.r.body);
	ck_assert(now_s() - t0 < 5);
	int status = 0;
	while (waitpid(s.pid, &status, WNOHANG) == 0 && now_s() - t0 < 30)
		sleep_s(0.02);
	s.pid = 0;
	assert_clean_log(s.log_path);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	reply_free(&a1.r);
	reply_free(&a2.r);
	unlink(s.log_path);
	free(png);
}
END_TEST

/* A field of /proc/PID/status in kB ("VmRSS:", "VmHWM:"), or -1. */
static long status_kib(pid_t pid, const char *field)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kib = -1;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, field, strlen(field)))
			kib = strtol(line + strlen(field), NULL, 10);
	if (f)
		fclose(f);
	return kib;
}

/* An attribution fills the worker's workspace (about 50 MB at 512x512 for
 * the fixture); once the worker has been idle a moment its pages go back to
 * the system, and the next request computes the same.  (The request's own
 * buffers are freed as it answers, so the drop is measured from what the
 * process holds after the answer, or at ready if the release came first.) */
START_TEST(test_idle_worker_releases_pages)
{
	static const char *const extra[] = {"--workers", "1", "--input-size", "512", NULL};
	struct server_proc s;
	server_spawn(&s, extra);
	size_t png_len;
	void *png = make_png(64, 64, 17, &png_len);
	struct request q = {
	    .path = "/attribute?steps=8&heatmaps=none", .image = png, .image_len = png_len};
	const long ready = status_kib(s.pid, "VmRSS:");
	struct reply first, again;
	http(s.port, &q, &first);
	ck_assert_int_eq(first.status, 200);
	const long after = status_kib(s.pid, "VmRSS:");
	const long held = (after > ready ? after : ready) - 15 * 1024;
	long rss;
	const double t0 = now_s();
	while ((rss = status_kib(s.pid, "VmRSS:")) > held && now_s() - t0 < 10)
		sleep_s(0.1);
	ck_assert_msg(ready > 0 && rss <= held,
	              "VmRSS %ld kB after 10 s idle (%ld at ready, %ld after the answer)", rss,
	              ready, after);
	http(s.port, &q, &again);
	ck_assert_int_eq(again.status, 200);
	cJSON *a = cJSON_Parse(first.body), *b = cJSON_Parse(again.body);
	ck_assert(cJSON_Compare(cJSON_GetObjectItem(a, "completeness"),
	                        cJSON_GetObjectItem(b, "completeness"), true));
	cJSON_Delete(a);
	cJSON_Delete(b);
	reply_free(&first);
	reply_free(&again);
	kill(s.pid, SIGTERM);
	int status = 0;
	while (waitpid(s.pid, &status, WNOHANG) == 0 && now_s() - t0 < 30)
		sleep_s(0.02);
	s.pid = 0;
	assert_clean_log(s.log_path);
	unlink(s.log_path);
	free(png);
}
END_TEST

/* A raw TCP connection to the server, for clients curl would not be. */
static int tcp_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	return fd;
}

/* Seconds until the server closes `fd` (reads and drops what it sends). */
static double seconds_until_closed(int fd, double limit)
{
	double t0 = now_s();
	struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	char buf[512];
	while (now_s() - t0 < limit) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			return now_s() - t0;
	}
	return INFINITY;
}

START_TEST(test_slow_clients)
{
	static const char *const extra[] = {
	    "--idle-timeout", "1", "--max-connections", "3", "--http-threads", "1", NULL};
	struct server_proc s;
	server_spawn(&s, extra);
	/* A client that stops halfway through its upload is dropped after
	 * --idle-timeout. */
	int slow = tcp_connect(s.port);
	const char *partial = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
	                      "Content-Length: 1000\r\n\r\nabc";
	ck_assert(send(slow, partial, strlen(partial), 0) > 0);
	/* Fill the remaining connection slots with silent clients. */
	int idle1 = tcp_connect(s.port), idle2 = tcp_connect(s.port);
	sleep_s(0.2);
	/* Over --max-connections: not accepted (left in the listen backlog)
	 * until a slot frees. */
	int waiting = tcp_connect(s.port);
	const char *get = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	ck_assert(send(waiting, get, strlen(get), 0) > 0);
	struct timeval tv = {.tv_sec = 0, .tv_usec = 300000};
	setsockopt(waiting, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	char buf[512];
	double t0 = now_s();
	ssize_t n = recv(waiting, buf, sizeof buf - 1, 0);
	ck_assert_msg(n < 0, "answered over the connection limit");
	/* The silent and the slow clients go after --idle-timeout (1 s, MHD
	 * checks at 1 s granularity); then the waiting one is served. */
	double t_slow = seconds_until_closed(slow, 5);
	ck_assert_msg(t_slow < 4, "slow upload held for %.2f s", t_slow);
	ck_assert(seconds_until_closed(idle1, 5) < 5);
	ck_assert(seconds_until_closed(idle2, 5) < 5);
	tv.tv_sec = 5;
	tv.tv_usec = 0;
	setsockopt(waiting, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	n = recv(waiting, buf, sizeof buf - 1, 0);
	ck_assert_msg(n > 0, "never served after the slots freed");
	buf[n] = 0;
	ck_assert(strstr(buf, " 200 ") != NULL);
	ck_assert(now_s() - t0 < 6);
	close(waiting);
	close(slow);
	close(idle1);
	close(idle2);
	ck_assert_int_eq(http_status_get(s.port, "/healthz"), 200);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);
}
END_TEST

/* A copy of the fixture model whose classifier weights are 3e38: finite,
 * so it loads, but its logits overflow, so the self-check must fail. */
static void write_overflowing_model(const char *out_path)
{
	size_t len;
	char *bytes = read_file(model_path, &len);
	ck_assert(bytes != NULL && len > 8);
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | (unsigned char)bytes[i];
	ck_assert_uint_le(8 + hlen, len);
	cJSON *header = cJSON_ParseWithLength(bytes + 8, (size_t)hlen);
	cJSON *fc = cJSON_GetObjectItemCaseSensitive(header, "fc.weight");
	ck_assert_str_eq(cJSON_GetObjectItem(fc, "dtype")->valuestring, "F32");
	cJSON *off = cJSON_GetObjectItem(fc, "data_offsets");
	size_t a = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
	size_t b = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
	ck_assert_uint_le(8 + hlen + b, len);
	float big = 3e38f;
	for (size_t p = a; p + 4 <= b; p += 4)
		memcpy(bytes + 8 + hlen + p, &big, 4);
	cJSON_Delete(header);
	FILE *f = fopen(out_path, "wb");
	ck_assert(f != NULL);
	ck_assert_uint_eq(fwrite(bytes, 1, len, f), len);
	fclose(f);
	free(bytes);
}

START_TEST(test_not_ready)
{
	char path[] = "/tmp/igserve-http-model-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	write_overflowing_model(path);
	struct server_proc s;
	server_spawn_model(&s, path, NULL, false);
	/* until the self-check has run, and after it failed: 503 */
	double t0 = now_s();
	char *log = NULL;
	while (now_s() - t0 < 30) {
		free(log);
		log = read_file(s.log_path, NULL);
		if (strstr(log, "\"event\":\"selfcheck\""))
			break;
		sleep_s(0.02);
	}
	ck_assert(strstr(log, "\"passed\":false") != NULL);
	free(log);
	struct reply r;
	struct request q = {.path = "/readyz"};
	http(s.port, &q, &r);
	assert_error(&r, 503, "not_ready");
	ck_assert(strstr(r.body, "self-check failed") != NULL);
	reply_free(&r);
	size_t png_len;
	void *png = make_png(64, 64, 12, &png_len);
	q = (struct request){.path = "/predict", .image = png, .image_len = png_len};
	http(s.port, &q, &r);
	assert_error(&r, 503, "not_ready");
	ck_assert(has_header(&r, "Retry-After: "));
	reply_free(&r);
	ck_assert_int_eq(http_status_get(s.port, "/healthz"), 200);
	ck_assert(metric(s.port, "igserve_ready") == 0);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);
	unlink(path);
	free(png);
}
END_TEST

START_TEST(test_serve_help_and_bad_flags)
{
	char cmd[4200];
	static char text[1 << 16];
	const char *bin = getenv("IGSERVE_BINARY");
	snprintf(cmd, sizeof cmd, "'%s' serve --help", bin);
	ck_assert_int_eq(run_command(cmd, text, sizeof text), 0);
	static const char *const documented[] = {"IGSERVE_PORT",
	                                         "IGSERVE_HOST",
	                                         "IGSERVE_WORKERS",
	                                         "IGSERVE_QUEUE_SIZE",
	                                         "IGSERVE_ATTRIBUTE_QUEUE_SIZE",
	                                         "IGSERVE_MAX_BODY_BYTES",
	                                         "IGSERVE_MAX_PIXELS",
	                                         "IGSERVE_MAX_STEPS",
	                                         "IGSERVE_MAX_CONNECTIONS",
	                                         "IGSERVE_IDLE_TIMEOUT",
	                                         "IGSERVE_CONNECTION_MEMORY",
	                                         "IGSERVE_DEADLINE_MS",
	                                         "IGSERVE_DRAIN_TIMEOUT",
	                                         "IGSERVE_MEMORY_BUDGET",
	                                         "IGSERVE_BLAS_THREADS",
	                                         "IGSERVE_INPUT_SIZE",
	                                         "IGSERVE_MEAN",
	                                         "IGSERVE_STD",
	                                         "IGSERVE_LOG_FORMAT",
	                                         "IGSERVE_MAX_DEADLINE_MS",
	                                         "IGSERVE_MAX_EVALUATIONS",
	                                         "IGSERVE_MAX_BUFFERED_BYTES",
	                                         "IGSERVE_MAX_CONNECTIONS_PER_ADDRESS",
	                                         "IGSERVE_HEADER_TIMEOUT",
	                                         "IGSERVE_MODEL",
	                                         "IGSERVE_LABELS"};
	for (size_t i = 0; i < sizeof documented / sizeof documented[0]; i++)
		ck_assert_msg(strstr(text, documented[i]) != NULL, "--help lacks %s",
		              documented[i]);

	/* A bad flag or a missing model: a message and a non-zero status. */
	snprintf(cmd, sizeof cmd, "'%s' serve --workers 0 2>&1", bin);
	ck_assert_int_ne(run_command(cmd, text, sizeof text), 0);
	ck_assert(strstr(text, "--workers") != NULL);
	snprintf(cmd, sizeof cmd, "'%s' serve --deadline-ms 5000 --max-deadline-ms 1000 2>&1", bin);
	ck_assert_int_ne(run_command(cmd, text, sizeof text), 0);
	ck_assert(strstr(text, "--max-deadline-ms") != NULL);
	snprintf(cmd, sizeof cmd, "'%s' serve --max-evaluations 0 2>&1", bin);
	ck_assert_int_ne(run_command(cmd, text, sizeof text), 0);
	ck_assert(strstr(text, "--max-evaluations") != NULL);
	snprintf(cmd, sizeof cmd, "'%s' serve --interleave-predictions 2 2>&1", bin);
	ck_assert_int_ne(run_command(cmd, text, sizeof text), 0);
	ck_assert(strstr(text, "--interleave-predictions must be 0 or 1") != NULL);
	snprintf(cmd, sizeof cmd, "IGSERVE_PORT=0 '%s' serve --model /nonexistent.safetensors 2>&1",
	         bin);
	ck_assert_int_ne(run_command(cmd, text, sizeof text), 0);
	ck_assert(strstr(text, "/nonexistent.safetensors") != NULL);
}
END_TEST

/* ================================================================ */

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert(f != NULL);
	fputs(text, f);
	fclose(f);
}

/* The default thread count follows a container's CPU quota, v2 or v1. */
START_TEST(test_cgroup_cpu_limit)
{
	char root[] = "/tmp/igserve-cgroup-XXXXXX", path[256];
	ck_assert_ptr_nonnull(mkdtemp(root));
	ck_assert_int_eq(cli_cgroup_cpu_limit(root), 0); /* nothing there: no limit */
	snprintf(path, sizeof path, "%s/cpu.max", root);
	write_text(path, "max 100000\n");
	ck_assert_int_eq(cli_cgroup_cpu_limit(root), 0);
	write_text(path, "200000 100000\n");
	ck_assert_int_eq(cli_cgroup_cpu_limit(root), 2);
	write_text(path, "150000 100000\n"); /* 1.5 CPUs: two threads */
	ck_assert_int_eq(cli_cgroup_cpu_limit(root), 2);
	unlink(path);

	char dir[300], quota[320], period[320];
	snprintf(dir, sizeof dir, "%s/cpu", root);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	snprintf(quota, sizeof quota, "%s/cpu.cfs_quota_us", dir);
	snprintf(period, sizeof period, "%s/cpu.cfs_period_us", dir);
	write_text(quota, "-1\n");
	write_text(period, "100000\n");
	ck_assert_int_eq(cli_cgroup_cpu_limit(root), 0);
	write_text(quota, "300000\n");
	ck_assert_int_eq(cli_cgroup_cpu_limit(root), 3);
	unlink(quota);
	unlink(period);
	rmdir(dir);
	rmdir(root);
	ck_assert_int_ge(cli_default_threads(), 1);
}
END_TEST
int main(void)
{
	setup_paths();
	Suite *s = suite_create("http-server");
	TCase *own = tcase_create("own-server");
	tcase_set_timeout(own, 120);
	tcase_add_test(own, test_queue_full);
	tcase_add_test(own, test_predict_between_chunks);
	tcase_add_test(own, test_sigterm_drain);
	tcase_add_test(own, test_drain_timeout);
	tcase_add_test(own, test_idle_worker_releases_pages);
	tcase_add_test(own, test_slow_clients);
	tcase_add_test(own, test_not_ready);
	tcase_add_test(own, test_serve_help_and_bad_flags);
	tcase_add_test(own, test_cgroup_cpu_limit);
	suite_add_tcase(s, own);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
