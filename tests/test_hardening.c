/*
 * test_hardening.c - regression tests for the server-side findings of
 * issue 13, each with a server of its own (http_harness.h): the drain's
 * order (no crash while libmicrohttpd still serves), limits on one
 * request's work, half-closed clients, log forgery, bodies on GETs, the
 * weights' path, the global upload buffer, connection exhaustion.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "http_harness.h"
#include "server_internal.h"

/* A POST of `body` (len bytes) as raw image/png to `path`, headers only. */
static int post_headers(char *out, size_t cap, const char *path, size_t len)
{
	return snprintf(out, cap,
	                "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
	                "Content-Length: %zu\r\n\r\n",
	                path, len);
}

/* The server's log once a line mentions `needle` (within 5 s). */
static char *log_with(const struct server_proc *s, const char *needle)
{
	double t0 = now_s();
	for (;;) {
		size_t len = 0;
		char *log = read_file(s->log_path, &len);
		/* the needle, and the line holding it written to its end */
		if ((log && strstr(log, needle) && len && log[len - 1] == '\n') || now_s() - t0 > 5)
			return log;
		free(log);
		sleep_s(0.05);
	}
}

/* ================================================================ */
/* finding 1: the drain's order                                      */
/* ================================================================ */

struct poller {
	pthread_t thread;
	int port;
	pid_t pid;
	atomic_bool stop;
	int ok, refused, other;
	long other_status;
};

/* /metrics every 100 ms, as Prometheus scrapes during a rolling update. */
static void *poll_metrics(void *arg)
{
	struct poller *p = arg;
	while (!atomic_load(&p->stop)) {
		struct request q = {.path = "/metrics", .timeout_ms = 3000};
		struct reply r;
		http(p->port, &q, &r);
		if (r.status == 200)
			p->ok++;
		else if (r.status == 0)
			p->refused++; /* the daemon has stopped */
		else {
			p->other++;
			p->other_status = r.status;
		}
		reply_free(&r);
		sleep_s(0.1);
	}
	return NULL;
}

START_TEST(test_drain_keeps_serving_safely)
{
	static const char *const extra[] = {"--workers", "1", "--input-size", "512",
	                                    "--drain-timeout", "2", NULL};
	struct server_proc s;
	server_spawn(&s, extra);
	size_t png_len;
	void *png = make_png(64, 64, 21, &png_len);
	char head[256];

	/* A client that asks for a big answer (several MB: raw attributions at
	 * 512x512) and does not read it: its request stays in flight. */
	int reader = raw_connect(s.port, NULL, 4096);
	int n = post_headers(head, sizeof head, "/attribute?steps=2&heatmaps=all&raw=npy", png_len);
	ck_assert(raw_send(reader, head, (size_t)n) && raw_send(reader, png, png_len));
	ck_assert(metric_wait(s.port, "igserve_running_jobs", 1, 20));
	double t0 = now_s();
	while (metric(s.port, "igserve_running_jobs") > 0 && now_s() - t0 < 60)
		sleep_s(0.05);
	ck_assert(metric(s.port, "igserve_running_jobs") == 0);

	/* An upload that is not complete yet. */
	int uploader = raw_connect(s.port, NULL, 0);
	n = post_headers(head, sizeof head, "/predict", png_len);
	ck_assert(raw_send(uploader, head, (size_t)n) && raw_send(uploader, png, png_len - 10));

	struct poller p = {.port = s.port, .pid = s.pid};
	atomic_init(&p.stop, false);
	ck_assert_int_eq(pthread_create(&p.thread, NULL, poll_metrics, &p), 0);
	sleep_s(0.3);
	kill(s.pid, SIGTERM);
	/* past the drain's wait: the workers are stopped, the daemon serves */
	sleep_s(1.8);
	ck_assert(raw_send(uploader, (char *)png + png_len - 10, 10));
	size_t len;
	char *answer = raw_read_all(uploader, 10, &len);

	int status = 0;
	while (waitpid(s.pid, &status, WNOHANG) == 0 && now_s() - t0 < 60)
		sleep_s(0.02);
	atomic_store(&p.stop, true);
	pthread_join(p.thread, NULL);
	s.pid = 0;
	ck_assert_msg(WIFEXITED(status), "the server died of signal %d",
	              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	assert_clean_log(s.log_path);
	ck_assert_msg(strstr(answer, "HTTP/1.1 503") == answer, "upload during the drain: %s",
	              answer);
	ck_assert(strstr(answer, "not_ready") != NULL);
	free(answer);
	/* the scrapes during the drain were answered, none failed otherwise */
	ck_assert_msg(p.ok >= 10, "%d scrapes answered", p.ok);
	ck_assert_msg(p.other == 0, "%d scrapes answered %ld", p.other, p.other_status);
	close(reader);
	close(uploader);
	unlink(s.log_path);
	free(png);
}
END_TEST

/* ================================================================ */
/* finding 3: limits on one request's work                           */
/* ================================================================ */

static void expect_bad_option(int port, const char *path, const char *mentions)
{
	size_t png_len;
	void *png = make_png(64, 64, 22, &png_len);
	struct request q = {.path = path, .image = png, .image_len = png_len};
	struct reply r;
	http(port, &q, &r);
	assert_error(&r, 400, "bad_option");
	ck_assert_msg(strstr(r.body, mentions) != NULL, "%s: %s", path, r.body);
	reply_free(&r);
	free(png);
}

static long post_status(int port, const char *path)
{
	size_t png_len;
	void *png = make_png(64, 64, 22, &png_len);
	struct request q = {.path = path, .image = png, .image_len = png_len};
	struct reply r;
	http(port, &q, &r);
	long status = r.status;
	reply_free(&r);
	free(png);
	return status;
}

START_TEST(test_request_limits)
{
	static const char *const extra[] = {"--deadline-ms", "60000", "--max-evaluations", "1000",
	                                    NULL};
	struct server_proc s;
	server_spawn(&s, extra);
	/* --max-deadline-ms defaults to --deadline-ms */
	expect_bad_option(s.port, "/attribute?steps=4&deadline_ms=60001", "--max-deadline-ms");
	expect_bad_option(s.port, "/predict?deadline_ms=86400000", "--max-deadline-ms");
	ck_assert_int_eq(post_status(s.port, "/predict?deadline_ms=60000"), 200);
	/* steps x smoothgrad_samples */
	expect_bad_option(s.port, "/attribute?steps=100&smoothgrad=smoothgrad&smoothgrad_samples=11",
	                  "--max-evaluations");
	ck_assert_int_eq(
	    post_status(s.port, "/attribute?steps=10&smoothgrad=smoothgrad&smoothgrad_samples=4"),
	    200);
	expect_bad_option(s.port, "/attribute?steps=1001", "--max-evaluations");
	/* refinement's max_steps counts only when refinement is on */
	expect_bad_option(s.port, "/attribute?steps=4&tolerance=0.001&max_steps=1024",
	                  "--max-evaluations");
	ck_assert_int_eq(post_status(s.port, "/attribute?steps=4&max_steps=1024"), 200);
	/* saliency is one pass whatever steps says */
	ck_assert_int_eq(post_status(s.port, "/attribute?method=saliency&steps=2000&heatmaps=none"),
	                 200);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);

	/* the cap can be raised above the default deadline */
	static const char *const raised[] = {"--deadline-ms", "1000", "--max-deadline-ms", "90000",
	                                     NULL};
	server_spawn(&s, raised);
	ck_assert_int_eq(post_status(s.port, "/predict?deadline_ms=90000"), 200);
	expect_bad_option(s.port, "/predict?deadline_ms=90001", "--max-deadline-ms");
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);
}
END_TEST

START_TEST(test_queue_expiry)
{
	static const char *const extra[] = {"--workers", "1", "--interleave-predictions", "0", NULL};
	struct server_proc s;
	server_spawn(&s, extra);
	size_t png_len;
	void *png = make_png(64, 64, 23, &png_len);
	struct request slow = {.path = "/attribute?" SLOW(6000), .image = png, .image_len = png_len};
	struct async a1, a2;
	async_start(&a1, s.port, &slow);
	ck_assert(metric_wait(s.port, "igserve_running_jobs", 1, 10));

	/* A queued job past its deadline is answered 504 while the worker is
	 * still busy, not when it gets to the job. */
	struct request expiring = {
	    .path = "/predict?deadline_ms=300", .image = png, .image_len = png_len};
	async_start(&a2, s.port, &expiring);
	async_wait(&a2);
	assert_error(&a2.r, 504, "deadline_exceeded");
	ck_assert_msg(metric(s.port, "igserve_running_jobs") == 1 && a1.finished == 0,
	              "the 504 came only after the running job (running %g, finished %g, %ld)",
	              metric(s.port, "igserve_running_jobs"), a1.finished, a1.r.status);
	reply_free(&a2.r);

	/* A queued job whose client has gone leaves the queue. */
	double cancelled = metric(s.port, "igserve_jobs_cancelled_total");
	struct request leaving = {
	    .path = "/attribute?steps=8", .image = png, .image_len = png_len, .timeout_ms = 300};
	struct reply r;
	http(s.port, &leaving, &r);
	ck_assert_int_eq(r.rc, CURLE_OPERATION_TIMEDOUT);
	reply_free(&r);
	ck_assert(metric_wait(s.port, "igserve_jobs_cancelled_total", cancelled + 1, 3));
	ck_assert(metric(s.port, "igserve_queue_depth{queue=\"attribute\"}") == 0);
	ck_assert_msg(metric(s.port, "igserve_running_jobs") == 1 && a1.finished == 0,
	              "the departed client's job left only after the running job");

	async_wait(&a1);
	assert_stopped_at_deadline(&a1.r);
	reply_free(&a1.r);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);
	free(png);
}
END_TEST

/* ================================================================ */
/* finding 10: half-closed clients                                   */
/* ================================================================ */

/* The request, then shutdown(SHUT_WR), then the whole answer. */
static char *half_closed_request(int port, const char *path, const char *accept)
{
	size_t png_len;
	void *png = make_png(64, 64, 24, &png_len);
	char head[512];
	int n = snprintf(head, sizeof head,
	                 "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
	                 "Content-Length: %zu\r\nConnection: close\r\n%s%s%s\r\n",
	                 path, png_len, accept ? "Accept: " : "", accept ? accept : "",
	                 accept ? "\r\n" : "");
	int fd = raw_connect(port, NULL, 0);
	ck_assert(raw_send(fd, head, (size_t)n) && raw_send(fd, png, png_len));
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	char *answer = raw_read_all(fd, 30, NULL);
	close(fd);
	free(png);
	return answer;
}

/* The final answer after any 1xx interim answers. */
static const char *final_answer(const char *text)
{
	while (!strncmp(text, "HTTP/1.1 1", 10) && strstr(text, "\r\n\r\n"))
		text = strstr(text, "\r\n\r\n") + 4;
	return text;
}

START_TEST(test_half_closed_client)
{
	struct server_proc s;
	server_spawn(&s, NULL);
	double cancelled = metric(s.port, "igserve_jobs_cancelled_total");
	/* runs for 1.5 s (many watchdog rounds), then answers 200 (adaptive
	 * IG at its deadline, its first rule done) */
	const char *path = "/attribute?steps=4&tolerance=1e-9&max_steps=4096&deadline_ms=1500";
	char *answer = half_closed_request(s.port, path, NULL);
	const char *final = final_answer(answer);
	ck_assert_msg(!strncmp(final, "HTTP/1.1 200", 12), "half-closed client got: %.300s",
	              answer);
	ck_assert(strstr(final, "\"completeness\"") != NULL);
	free(answer);

	answer = half_closed_request(s.port, path, "text/event-stream");
	ck_assert_msg(!strncmp(answer, "HTTP/1.1 200", 12), "stream: %.300s", answer);
	ck_assert_msg(strstr(answer, "event: result\n") != NULL, "stream: %.300s", answer);
	free(answer);

	answer = half_closed_request(s.port, "/predict", NULL);
	ck_assert(!strncmp(final_answer(answer), "HTTP/1.1 200", 12));
	free(answer);
	ck_assert(metric(s.port, "igserve_jobs_cancelled_total") == cancelled);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);
}
END_TEST

/* ================================================================ */
/* finding 11: log forgery                                           */
/* ================================================================ */

#define FORGED_PATH "/%0a2026-01-01T00:00:00.000Z%20event=forged%20status=200%1b[2J"

START_TEST(test_log_forgery)
{
	static const char *const text[] = {"--log-format", "text", NULL};
	struct server_proc s;
	server_spawn(&s, text);
	ck_assert_int_eq(http_status_get(s.port, FORGED_PATH), 404);
	char *log = log_with(&s, "forged");
	ck_assert_ptr_nonnull(log);
	/* every line is one record: it starts with the time, and the path is
	 * one quoted value with its control bytes escaped */
	int forged_lines = 0;
	for (char *line = log; *line; line = strchr(line, '\n') + 1) {
		ck_assert_msg(strchr(line, '\n') != NULL, "unterminated line");
		ck_assert_msg(!strncmp(line, "20", 2) && line[4] == '-' && line[10] == 'T',
		              "a line that is not a record: %.120s", line);
		ck_assert_msg(strncmp(line, "2026-01-01T00:00:00.000Z event=forged", 37),
		              "a forged line: %.120s", line);
		char *end = strchr(line, '\n');
		*end = 0;
		if (strstr(line, "forged")) {
			forged_lines++;
			ck_assert_msg(strstr(line, " status=404") != NULL, "%s", line);
			ck_assert_msg(strstr(line, "endpoint=\"/\\\\x0a2026") != NULL, "%s", line);
			ck_assert_msg(strchr(line, 0x1b) == NULL, "a raw escape byte: %s", line);
		}
		*end = '\n';
	}
	ck_assert_int_eq(forged_lines, 1);
	free(log);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);

	/* JSON lines: each parses, the path's bytes escaped */
	server_spawn(&s, NULL);
	ck_assert_int_eq(http_status_get(s.port, FORGED_PATH), 404);
	log = log_with(&s, "forged");
	forged_lines = 0;
	for (char *line = log; *line; line = strchr(line, '\n') + 1) {
		char *end = strchr(line, '\n');
		ck_assert_ptr_nonnull(end);
		*end = 0;
		cJSON *doc = cJSON_Parse(line);
		ck_assert_msg(doc != NULL, "not JSON: %s", line);
		cJSON *ep = cJSON_GetObjectItem(doc, "endpoint");
		if (cJSON_IsString(ep) && strstr(ep->valuestring, "forged")) {
			forged_lines++;
			for (const char *p = ep->valuestring; *p; p++)
				ck_assert_msg((unsigned char)*p >= 0x20 && *p != 0x7f, "%s", line);
			ck_assert(!strncmp(ep->valuestring, "/\\x0a2026", 9));
		}
		cJSON_Delete(doc);
		*end = '\n';
	}
	ck_assert_int_eq(forged_lines, 1);
	free(log);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);
}
END_TEST

/* ================================================================ */
/* finding 13: the weights' path                                     */
/* ================================================================ */

START_TEST(test_no_weights_path)
{
	struct server_proc s;
	server_spawn(&s, NULL);
	/* the directory the fixture model lives in, absolute or not */
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", model_path);
	*strrchr(dir, '/') = 0;
	ck_assert(strlen(dir) > 0);
	struct request q = {.path = "/v1/model"};
	struct reply r;
	http(s.port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	cJSON *doc = cJSON_Parse(r.body);
	ck_assert_str_eq(cJSON_GetObjectItem(doc, "path")->valuestring, "tv_basic.safetensors");
	ck_assert_msg(strstr(r.body, dir) == NULL, "/v1/model shows %s: %s", dir, r.body);
	cJSON_Delete(doc);
	reply_free(&r);
	q.path = "/metrics";
	http(s.port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert(strstr(r.body, ",path=\"tv_basic.safetensors\"}") != NULL);
	ck_assert_msg(strstr(r.body, dir) == NULL, "/metrics shows %s", dir);
	reply_free(&r);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);
}
END_TEST

/* ================================================================ */
/* finding 12: bodies on GETs, a stream out of memory                */
/* ================================================================ */

START_TEST(test_get_with_body)
{
	struct server_proc s;
	server_spawn(&s, NULL);
	/* announced: refused at once */
	int fd = raw_connect(s.port, NULL, 0);
	const char *head = "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n";
	ck_assert(raw_send(fd, head, strlen(head)));
	char *answer = raw_read_all(fd, 10, NULL);
	ck_assert_msg(!strncmp(answer, "HTTP/1.1 413", 12), "%.200s", answer);
	ck_assert(strstr(answer, "too_large") != NULL);
	free(answer);
	close(fd);

	/* chunked: read up to a small limit, then the connection is closed */
	fd = raw_connect(s.port, NULL, 0);
	head = "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
	ck_assert(raw_send(fd, head, strlen(head)));
	static char chunk[8192 + 16];
	int n = snprintf(chunk, sizeof chunk, "2000\r\n");
	memset(chunk + n, 'a', 8192);
	memcpy(chunk + n + 8192, "\r\n", 2);
	size_t sent = 0;
	while (sent < (64u << 20) && raw_send(fd, chunk, (size_t)n + 8192 + 2))
		sent += 8192;
	ck_assert_msg(sent < (16u << 20), "the server took %zu body bytes of a GET", sent);
	close(fd);
	ck_assert_int_eq(http_status_get(s.port, "/healthz"), 200);
	char *log = log_with(&s, "\"endpoint\":\"/healthz\",\"status\":413");
	ck_assert(strstr(log, "\"endpoint\":\"/healthz\",\"status\":413") != NULL);
	free(log);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);
}
END_TEST

static long vm_size_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "VmSize:", 7))
			kib = strtol(line + 7, NULL, 10);
	if (f)
		fclose(f);
	return kib;
}

/* For test_sse_out_of_memory under the sanitizers' allocators: an
 * allocation that fails returns NULL, as glibc's does, instead of ending
 * the test program (the servers these tests start are other processes). */
const char *__asan_default_options(void);
const char *__tsan_default_options(void);
const char *__asan_default_options(void)
{
	return "allocator_may_return_null=1";
}
const char *__tsan_default_options(void)
{
	return "allocator_may_return_null=1";
}

/* sse_push out of memory (address space capped in this forked test): the
 * last event cannot silently vanish; the stream is marked failed (it ends
 * with an error, and the log line says 503 out_of_memory). */
START_TEST(test_sse_out_of_memory)
{
	struct conn *c = calloc(1, sizeof *c);
	pthread_mutex_init(&c->lock, NULL);
	sse_push(c, "progress", "{\"points_done\":1}", false);
	ck_assert(c->ev_len > 0 && !c->stream_end && !c->stream_failed);
	size_t big = 64u << 20;
	char *data = malloc(big + 1);
	ck_assert_ptr_nonnull(data);
	memset(data, 'x', big);
	data[big] = 0;
	long vm = vm_size_kib();
	ck_assert(vm > 0);
	struct rlimit rl = {.rlim_cur = (rlim_t)(vm + 32 * 1024) * 1024,
	                    .rlim_max = (rlim_t)(vm + 32 * 1024) * 1024};
	ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
	sse_push(c, "result", data, true);
	ck_assert(c->stream_failed && c->stream_end);
	ck_assert_int_eq(c->status, 503); /* out_of_memory's status (error.c) */
	ck_assert_str_eq(c->error_code, "out_of_memory");
	free(data);
	free(c->events);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
END_TEST

/* A second signal during the drain exits at once (status 1, logged). */
START_TEST(test_second_signal_forces_exit)
{
	static const char *const extra[] = {"--workers", "1", "--drain-timeout", "30", NULL};
	struct server_proc s;
	server_spawn(&s, extra);
	size_t png_len;
	void *png = make_png(64, 64, 25, &png_len);
	struct request slow = {.path = "/attribute?" SLOW(20000), .image = png, .image_len = png_len};
	struct async a;
	async_start(&a, s.port, &slow);
	ck_assert(metric_wait(s.port, "igserve_running_jobs", 1, 10));
	kill(s.pid, SIGTERM);
	sleep_s(0.5);
	int status = 0;
	ck_assert_int_eq(waitpid(s.pid, &status, WNOHANG), 0); /* still draining */
	kill(s.pid, SIGINT);
	double t0 = now_s();
	pid_t r;
	while ((r = waitpid(s.pid, &status, WNOHANG)) == 0 && now_s() - t0 < 10)
		sleep_s(0.02);
	ck_assert_msg(r == s.pid, "still running 10 s after the second signal");
	s.pid = 0;
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 1);
	char *log = read_file(s.log_path, NULL);
	ck_assert(strstr(log, "\"event\":\"exit_forced\",\"reason\":\"second_signal\"") != NULL);
	free(log);
	async_wait(&a);
	reply_free(&a.r);
	unlink(s.log_path);
	free(png);
}
END_TEST

/* ================================================================ */
/* finding 7: one budget for buffered uploads                        */
/* ================================================================ */

/* A raw upload of `announced` bytes to /predict with `sent` sent so far. */
static int partial_upload(int port, size_t announced, size_t sent)
{
	char head[256];
	int n = post_headers(head, sizeof head, "/predict", announced);
	int fd = raw_connect(port, NULL, 0);
	char *junk = calloc(1, sent + 1);
	ck_assert(raw_send(fd, head, (size_t)n) && raw_send(fd, junk, sent));
	free(junk);
	return fd;
}

START_TEST(test_upload_budget)
{
	static const char *const extra[] = {"--max-body-bytes", "800K", "--max-buffered-bytes", "1M",
	                                    NULL};
	struct server_proc s;
	server_spawn(&s, extra);
	/* one upload holds 700 KB of the 1 MiB */
	int holder = partial_upload(s.port, 700000, 1000);
	sleep_s(0.2);
	/* another 700 KB does not fit: 429 with Retry-After, before its body */
	int refused = partial_upload(s.port, 700000, 0);
	char *answer = raw_read_all(refused, 10, NULL);
	ck_assert_msg(!strncmp(answer, "HTTP/1.1 429", 12), "%.300s", answer);
	ck_assert(strstr(answer, "queue_full") && strstr(answer, "--max-buffered-bytes"));
	ck_assert(strstr(answer, "Retry-After: ") != NULL);
	free(answer);
	close(refused);
	/* nor does a chunked one that grows past the budget (429 at its end) */
	size_t big = 500000;
	char *body = calloc(1, big);
	struct request q = {.path = "/predict", .content_type = "image/png", .body = body,
	                    .len = big, .chunked = true};
	struct reply r;
	http(s.port, &q, &r);
	assert_error(&r, 429, "queue_full");
	reply_free(&r);
	/* small requests still fit */
	size_t png_len;
	void *png = make_png(64, 64, 26, &png_len);
	struct request small = {.path = "/predict", .image = png, .image_len = png_len};
	http(s.port, &small, &r);
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);
	/* the holder finishes (zeros are no image: 415) and its share comes back */
	char *rest = calloc(1, 699000);
	ck_assert(raw_send(holder, rest, 699000));
	free(rest);
	answer = raw_read_all(holder, 10, NULL);
	ck_assert_msg(!strncmp(answer, "HTTP/1.1 415", 12), "%.300s", answer);
	free(answer);
	close(holder);
	sleep_s(0.2);
	http(s.port, &q, &r);
	ck_assert_msg(r.status == 415, "after the holder left: %ld %s", r.status, r.body);
	reply_free(&r);
	free(body);
	free(png);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);
}
END_TEST

/* ================================================================ */
/* finding 4: connection exhaustion                                  */
/* ================================================================ */

/* 1 when the server has closed fd (EOF or reset), without blocking. */
static int peer_closed(int fd)
{
	char b[256];
	ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

START_TEST(test_connection_exhaustion)
{
	static const char *const extra[] = {"--header-timeout", "2", NULL};
	struct server_proc s;
	server_spawn(&s, extra);
	enum { N_SLOW = 256 };
	static int fds[N_SLOW];
	bool closed[N_SLOW] = {false};
	/* 256 connections from one address sending their headers slowly */
	for (int i = 0; i < N_SLOW; i++) {
		fds[i] = raw_connect(s.port, "127.0.0.2", 0);
		const char *start = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
		raw_send(fds[i], start, strlen(start));
	}
	sleep_s(0.5);
	int open_now = 0;
	for (int i = 0; i < N_SLOW; i++)
		if (!(closed[i] = peer_closed(fds[i])))
			open_now++;
	ck_assert_msg(open_now <= 64, "%d connections from one address kept (limit 64)", open_now);
	/* other clients are served meanwhile */
	ck_assert_int_eq(http_status_get(s.port, "/healthz"), 200);
	/* a byte every 200 ms never looks idle; the header timeout cuts them */
	double t0 = now_s();
	while (open_now > 0 && now_s() - t0 < 10) {
		for (int i = 0; i < N_SLOW; i++)
			if (!closed[i] && (!raw_send(fds[i], "a", 1) || peer_closed(fds[i]))) {
				closed[i] = true;
				open_now--;
			}
		sleep_s(0.2);
	}
	ck_assert_msg(open_now == 0, "%d slow-header connections still open after 10 s",
	              open_now);
	for (int i = 0; i < N_SLOW; i++)
		close(fds[i]);

	/* 600 connections that close one after the other */
	for (int i = 0; i < 600; i++)
		close(raw_connect(s.port, NULL, 0));
	ck_assert_int_eq(http_status_get(s.port, "/healthz"), 200);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);

	/* 600 connections open at once (over --max-connections: the rest wait
	 * in the backlog), then all closed: with libmicrohttpd's epoll loop
	 * 128 of them stayed in CLOSE-WAIT and nothing was accepted for
	 * --idle-timeout (30 s); /healthz must answer within 5 s. */
	static const char *const no_per_address[] = {"--max-connections-per-address", "0", NULL};
	server_spawn(&s, no_per_address);
	static int many[600];
	for (int i = 0; i < 600; i++)
		many[i] = raw_connect(s.port, NULL, 0);
	sleep_s(0.5);
	for (int i = 0; i < 600; i++)
		close(many[i]);
	sleep_s(0.5);
	ck_assert_int_eq(http_status_get(s.port, "/healthz"), 200);
	/* (the line is written once the answer is out: wait for it) */
	char *log = log_with(&s, "\"endpoint\":\"/healthz\",\"status\":200");
	ck_assert(strstr(log, "\"endpoint\":\"/healthz\",\"status\":200") != NULL);
	free(log);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);
}
END_TEST

int main(void)
{
	setup_paths();
	Suite *s = suite_create("hardening");
	TCase *t = tcase_create("own-server");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, test_drain_keeps_serving_safely);
	tcase_add_test(t, test_request_limits);
	tcase_add_test(t, test_queue_expiry);
	tcase_add_test(t, test_half_closed_client);
	tcase_add_test(t, test_log_forgery);
	tcase_add_test(t, test_no_weights_path);
	tcase_add_test(t, test_get_with_body);
	tcase_add_test(t, test_sse_out_of_memory);
	tcase_add_test(t, test_second_signal_forces_exit);
	tcase_add_test(t, test_upload_budget);
	tcase_add_test(t, test_connection_exhaustion);
	suite_add_tcase(s, t);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
