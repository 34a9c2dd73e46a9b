/*
 * test_http_cache.c - the result cache and gzip answers against a real
 * server process: a repeated /attribute is X-Cache: hit with the same
 * bytes, however its options and its upload are spelled; another option,
 * image or route is a miss; streams and answers cut by their deadline are
 * never stored; --cache-bytes 0 says X-Cache: off and never hits; a small
 * budget evicts the least recently used answer; the counters in /metrics
 * follow; gzip answers inflate to exactly the identity bytes, and q=0 is
 * respected.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "http_harness.h"

static struct server_proc main_server;

static void main_server_up(void)
{
	static const char *const extra[] = {"--workers", "1", NULL};
	server_spawn(&main_server, extra);
}

static void main_server_down(void)
{
	ck_assert_int_eq(server_terminate(&main_server, 30), 0);
	assert_clean_log(main_server.log_path);
}

static char *inflate_gzip(const char *z, size_t zlen, size_t *out_len)
{
	z_stream s;
	memset(&s, 0, sizeof s);
	ck_assert_int_eq(inflateInit2(&s, 16 + MAX_WBITS), Z_OK);
	size_t cap = zlen * 4 + 4096, len = 0;
	char *out = malloc(cap + 1);
	s.next_in = (Bytef *)z;
	s.avail_in = (uInt)zlen;
	int rc;
	do {
		if (len == cap) {
			cap *= 2;
			out = realloc(out, cap + 1);
		}
		s.next_out = (Bytef *)out + len;
		s.avail_out = (uInt)(cap - len);
		rc = inflate(&s, Z_NO_FLUSH);
		len = cap - s.avail_out;
	} while (rc == Z_OK);
	ck_assert_msg(rc == Z_STREAM_END, "the gzip body does not inflate (zlib %d)", rc);
	ck_assert_uint_eq(s.avail_in, 0);
	inflateEnd(&s);
	out[len] = 0;
	*out_len = len;
	return out;
}

/* POST `png` as the raw body to `path`, with more header lines. */
static void post(int port, const char *path, const void *png, size_t len,
                 const char *const *headers, struct reply *r)
{
	struct request q = {.path = path, .content_type = "image/png", .body = png, .len = len,
	                    .headers = headers};
	http(port, &q, r);
	ck_assert_msg(r->status == 200, "%s: status %ld: %s", path, r->status, r->body);
}

static void assert_cache(const struct reply *r, const char *state)
{
	char want[32];
	snprintf(want, sizeof want, "X-Cache: %s", state);
	ck_assert_msg(has_header(r, want), "expected %s in:\n%s", want, r->headers);
}

static void assert_same_body(const struct reply *a, const struct reply *b)
{
	ck_assert_uint_eq(a->len, b->len);
	ck_assert_msg(!memcmp(a->body, b->body, a->len), "the bodies differ");
}

START_TEST(test_repeat_is_a_hit)
{
	int port = main_server.port;
	size_t len, len2;
	void *png = make_png(64, 64, 31, &len);
	void *other = make_png(64, 64, 32, &len2);
	const double hits0 = metric(port, "igserve_cache_hits_total");
	const double misses0 = metric(port, "igserve_cache_misses_total");
	const double attributions0 = metric(port, "igserve_attributions_total");
	ck_assert(hits0 == 0 && misses0 == 0);

	struct reply first, again, r;
	post(port, "/attribute?heatmaps=normalized&raw=npy", png, len, NULL, &first);
	assert_cache(&first, "miss");
	post(port, "/attribute?heatmaps=normalized&raw=npy", png, len, NULL, &again);
	assert_cache(&again, "hit");
	assert_same_body(&first, &again);
	reply_free(&again);

	/* the defaults spelled out, options in another order, a deadline
	 * that a complete answer does not depend on: the same entry */
	post(port, "/attribute?raw=npy&steps=50&method=gausslegendre&heatmaps=normalized&deadline_ms=60000",
	     png, len, NULL, &r);
	assert_cache(&r, "hit");
	assert_same_body(&first, &r);
	reply_free(&r);
	/* multipart, the options as form fields: the image bytes are the key */
	static const char *const fields[] = {"heatmaps", "normalized", "raw", "npy", NULL};
	struct request q = {.path = "/attribute", .image = png, .image_len = len, .fields = fields};
	http(port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	assert_cache(&r, "hit");
	assert_same_body(&first, &r);
	reply_free(&r);

	/* what changes the answer is a miss: an option, the image, the route */
	post(port, "/attribute?heatmaps=normalized&raw=npy&steps=20", png, len, NULL, &r);
	assert_cache(&r, "miss");
	reply_free(&r);
	post(port, "/attribute?heatmaps=normalized&raw=npy", other, len2, NULL, &r);
	assert_cache(&r, "miss");
	reply_free(&r);
	post(port, "/predict", png, len, NULL, &r);
	assert_cache(&r, "miss");
	reply_free(&r);
	post(port, "/predict?top_k=5", png, len, NULL, &r);
	assert_cache(&r, "hit");
	reply_free(&r);

	/* three hits of the first answer and one of /predict, four misses;
	 * the hits ran no attribution */
	ck_assert(metric(port, "igserve_cache_hits_total") == hits0 + 4);
	ck_assert(metric(port, "igserve_cache_misses_total") == misses0 + 4);
	ck_assert(metric(port, "igserve_cache_entries") == 4);
	ck_assert(metric(port, "igserve_cache_insertions_total") == 4);
	ck_assert(metric(port, "igserve_cache_evictions_total") == 0);
	ck_assert(metric(port, "igserve_cache_bytes") >= (double)first.len + 3 * 100);
	ck_assert(metric(port, "igserve_cache_budget_bytes") == 256.0 * 1024 * 1024);
	ck_assert(metric(port, "igserve_attributions_total") == attributions0 + 3);
	reply_free(&first);
	free(png);
	free(other);
}
END_TEST

START_TEST(test_not_stored)
{
	int port = main_server.port;
	size_t len;
	void *png = make_png(64, 64, 33, &len);
	const double entries0 = metric(port, "igserve_cache_entries");
	const double misses0 = metric(port, "igserve_cache_misses_total");
	/* a stream is computed every time and not even looked up */
	for (int i = 0; i < 2; i++) {
		struct request q = {.path = "/attribute?steps=8", .content_type = "image/png",
		                    .body = png, .len = len, .accept = "text/event-stream"};
		struct reply r;
		http(port, &q, &r);
		ck_assert_int_eq(r.status, 200);
		ck_assert(strstr(r.body, "event: result") != NULL);
		assert_cache(&r, "miss");
		reply_free(&r);
	}
	ck_assert(metric(port, "igserve_cache_misses_total") == misses0);
	/* an answer cut by its deadline is not stored; nor is an error */
	for (int i = 0; i < 2; i++) {
		struct request q = {.path = "/attribute?" SLOW(300), .content_type = "image/png",
		                    .body = png, .len = len};
		struct reply r;
		http(port, &q, &r);
		assert_stopped_at_deadline(&r);
		assert_cache(&r, "miss");
		reply_free(&r);
		q.path = "/attribute?steps=0";
		http(port, &q, &r);
		assert_error(&r, 400, "bad_option");
		assert_cache(&r, "miss");
		reply_free(&r);
	}
	static const char not_an_image[] = "not an image";
	for (int i = 0; i < 2; i++) {
		struct request q = {.path = "/predict", .content_type = "image/png",
		                    .body = not_an_image, .len = sizeof not_an_image - 1};
		struct reply r;
		http(port, &q, &r);
		ck_assert_int_ge(r.status, 400);
		assert_cache(&r, "miss");
		reply_free(&r);
	}
	ck_assert(metric(port, "igserve_cache_entries") == entries0);
	free(png);
}
END_TEST

/* The body gzip-encoded and its identity bytes equal `identity`. */
static void assert_gzip_of(const struct reply *r, const struct reply *identity)
{
	ck_assert_msg(has_header(r, "Content-Encoding: gzip"), "%s", r->headers);
	ck_assert(has_header(r, "Vary: Accept-Encoding"));
	size_t n;
	char *plain = inflate_gzip(r->body, r->len, &n);
	ck_assert_uint_eq(n, identity->len);
	ck_assert_msg(!memcmp(plain, identity->body, n), "gzip inflates to other bytes");
	free(plain);
}

START_TEST(test_gzip)
{
	int port = main_server.port;
	size_t len;
	void *png = make_png(64, 64, 34, &len);
	static const char *const gzip[] = {"Accept-Encoding: gzip, deflate", NULL};
	static const char *const refused[] = {"Accept-Encoding: gzip;q=0, identity", NULL};
	static const char *const star[] = {"Accept-Encoding: br, *;q=0.5", NULL};
	const char *path = "/attribute?steps=12&heatmaps=all&raw=npy&path_maps=true";

	/* computed and compressed on the worker, then the cached identity */
	struct reply z, plain, r;
	post(port, path, png, len, gzip, &z);
	assert_cache(&z, "miss");
	post(port, path, png, len, NULL, &plain);
	assert_cache(&plain, "hit");
	ck_assert(!has_header(&plain, "Content-Encoding:"));
	ck_assert(has_header(&plain, "Vary: Accept-Encoding"));
	assert_gzip_of(&z, &plain);
	ck_assert_uint_lt(z.len, plain.len);
	/* a hit compressed on its way out */
	post(port, path, png, len, star, &r);
	assert_cache(&r, "hit");
	assert_gzip_of(&r, &plain);
	reply_free(&r);
	/* q=0: identity */
	post(port, path, png, len, refused, &r);
	ck_assert(!has_header(&r, "Content-Encoding:"));
	assert_same_body(&r, &plain);
	reply_free(&r);
	reply_free(&z);
	reply_free(&plain);

	/* a miss that is computed with the identity encoding: the same bytes
	 * gzip-encoded from the cache next */
	post(port, "/predict?top_k=3", png, len, NULL, &plain);
	post(port, "/predict?top_k=3", png, len, gzip, &z);
	assert_cache(&z, "hit");
	assert_gzip_of(&z, &plain);
	reply_free(&z);
	reply_free(&plain);

	/* GET /v1/model, and an error answer */
	struct request qm = {.path = "/v1/model"};
	http(port, &qm, &plain);
	ck_assert_int_eq(plain.status, 200);
	qm.headers = gzip;
	http(port, &qm, &z);
	ck_assert_int_eq(z.status, 200);
	assert_gzip_of(&z, &plain);
	reply_free(&z);
	reply_free(&plain);
	struct request qe = {.path = "/attribute?steps=0", .content_type = "image/png",
	                     .body = png, .len = len};
	http(port, &qe, &plain);
	assert_error(&plain, 400, "bad_option");
	qe.headers = gzip;
	http(port, &qe, &z);
	ck_assert_int_eq(z.status, 400);
	assert_gzip_of(&z, &plain);
	reply_free(&z);
	reply_free(&plain);
	/* the rest is not compressed */
	struct request qh = {.path = "/healthz", .headers = gzip};
	http(port, &qh, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert(!has_header(&r, "Content-Encoding:"));
	ck_assert(!has_header(&r, "X-Cache:"));
	reply_free(&r);
	free(png);
}
END_TEST

/* --cache-bytes 0, then a budget for two of three answers. */
START_TEST(test_off_and_eviction)
{
	struct server_proc s;
	static const char *const off[] = {"--cache-bytes", "0", NULL};
	server_spawn(&s, off);
	size_t len[3];
	void *png[3];
	size_t answer[3];
	for (int i = 0; i < 3; i++)
		png[i] = make_png(64, 64, 40 + i, &len[i]);
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 2; k++) {
			struct reply r;
			post(s.port, "/predict", png[i], len[i], NULL, &r);
			assert_cache(&r, "off");
			answer[i] = r.len;
			reply_free(&r);
		}
	ck_assert(metric(s.port, "igserve_cache_hits_total") == 0);
	ck_assert(metric(s.port, "igserve_cache_misses_total") == 0);
	ck_assert(metric(s.port, "igserve_cache_entries") == 0);
	ck_assert(metric(s.port, "igserve_cache_budget_bytes") == 0);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	assert_clean_log(s.log_path);

	/* Room for any two answers (with the 128 bytes each entry costs
	 * beyond its answer) but not for three: the answers' lengths vary by
	 * their timings only, far less than half of one. */
	size_t smallest = answer[0] < answer[1] ? answer[0] : answer[1];
	smallest = smallest < answer[2] ? smallest : answer[2];
	size_t budget = answer[0] + answer[1] + answer[2] + 3 * 128 - smallest / 2;
	char budget_text[32];
	snprintf(budget_text, sizeof budget_text, "%zu", budget);
	const char *const small[] = {"--cache-bytes", budget_text, NULL};
	server_spawn(&s, small);
	const char *expect[][2] = {
	    {"A", "miss"}, {"B", "miss"}, {"A", "hit"}, /* A is now the most recent */
	    {"C", "miss"},                              /* B, the least recent, goes */
	    {"A", "hit"},  {"C", "hit"},  {"B", "miss"}, /* back in, and A goes */
	    {"C", "hit"},  {"A", "miss"},
	};
	for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
		int k = expect[i][0][0] - 'A';
		struct reply r;
		post(s.port, "/predict", png[k], len[k], NULL, &r);
		char want[32];
		snprintf(want, sizeof want, "X-Cache: %s", expect[i][1]);
		ck_assert_msg(has_header(&r, want), "request %zu (%s): expected %s in\n%s", i,
		              expect[i][0], want, r.headers);
		reply_free(&r);
	}
	ck_assert(metric(s.port, "igserve_cache_hits_total") == 4);
	ck_assert(metric(s.port, "igserve_cache_misses_total") == 5);
	ck_assert(metric(s.port, "igserve_cache_evictions_total") == 3);
	ck_assert(metric(s.port, "igserve_cache_entries") == 2);
	ck_assert(metric(s.port, "igserve_cache_bytes") <= (double)budget);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	assert_clean_log(s.log_path);
	for (int i = 0; i < 3; i++)
		free(png[i]);
}
END_TEST

int main(void)
{
	setup_paths();
	Suite *s = suite_create("http-cache");
	TCase *tc = tcase_create("cache");
	tcase_add_unchecked_fixture(tc, main_server_up, main_server_down);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_repeat_is_a_hit);
	tcase_add_test(tc, test_not_stored);
	tcase_add_test(tc, test_gzip);
	tcase_add_test(tc, test_off_and_eviction);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
