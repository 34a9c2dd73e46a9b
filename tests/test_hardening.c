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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "http_harness.h"

/* A POST of `body` (len bytes) as raw image/png to `path`, headers only. */
static int post_headers(char *out, size_t cap, const char *path, size_t len)
{
	return snprintf(out, cap,
	                "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
	                "Content-Length: %zu\r\n\r\n",
	                path, len);
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

int main(void)
{
	setup_paths();
	Suite *s = suite_create("hardening");
	TCase *t = tcase_create("own-server");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, test_drain_keeps_serving_safely);
	suite_add_tcase(s, t);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
