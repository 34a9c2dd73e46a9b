/*
 * test_browser_access.c - CORS and bearer tokens (contract: Browser
 * clients), against a real server process: preflights from an allowed
 * origin succeed and from another get 403 without
 * Access-Control-Allow-Origin; answers to an allowed origin carry the CORS
 * headers; with tokens, no token or a wrong one is 401 with
 * WWW-Authenticate, the right one 200; /, /healthz, /readyz and
 * /openapi.yaml stay open; the token appears in no log line.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_harness.h"

#define ALLOWED "https://app.example.com"
#define TOKEN "s3cret-Token_42"

static char token_file[] = "/tmp/igserve-tokens-XXXXXX";

static void write_tokens(void)
{
	int fd = mkstemp(token_file);
	ck_assert_int_ge(fd, 0);
	const char text[] = "# igserve tokens\n\nother-token\n  " TOKEN "  \n";
	ck_assert_int_eq(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
	close(fd);
}

static void server_with(struct server_proc *s, bool tokens)
{
	static const char *const cors[] = {"--cors-origins", "http://other.example:8000, " ALLOWED,
	                                   NULL};
	const char *const with_tokens[] = {"--cors-origins", ALLOWED, "--auth-token-file",
	                                   token_file, NULL};
	server_spawn(s, tokens ? with_tokens : cors);
}

static bool has_acao(const struct reply *r)
{
	return r->headers && strstr(r->headers, "Access-Control-Allow-Origin") != NULL;
}

START_TEST(test_preflight_and_cors_headers)
{
	struct server_proc s;
	server_with(&s, false);
	static const char *const pre_ok[] = {"Origin: " ALLOWED,
	                                     "Access-Control-Request-Method: POST",
	                                     "Access-Control-Request-Headers: content-type", NULL};
	struct request q = {.method = "OPTIONS", .path = "/predict", .headers = pre_ok};
	struct reply r;
	http(s.port, &q, &r);
	ck_assert_int_eq(r.status, 204);
	ck_assert(has_header(&r, "Access-Control-Allow-Origin: " ALLOWED));
	ck_assert(has_header(&r, "Vary: Origin"));
	ck_assert_msg(strstr(r.headers, "Access-Control-Allow-Methods: ") &&
	                  strstr(strstr(r.headers, "Access-Control-Allow-Methods: "), "POST"),
	              "%s", r.headers);
	const char *ah = strstr(r.headers, "Access-Control-Allow-Headers: ");
	ck_assert(ah && strstr(ah, "Content-Type") && strstr(ah, "Authorization") &&
	          strstr(ah, "Accept"));
	ck_assert(strstr(r.headers, "Access-Control-Max-Age: ") != NULL);
	reply_free(&r);

	/* another origin: 403, and nothing that lets its page read answers */
	static const char *const pre_bad[] = {"Origin: https://evil.example",
	                                      "Access-Control-Request-Method: POST", NULL};
	q.headers = pre_bad;
	http(s.port, &q, &r);
	assert_error(&r, 403, "cors_origin_not_allowed");
	ck_assert(!has_acao(&r));
	reply_free(&r);

	/* a real request from the allowed origin: the headers a page needs */
	static const char *const from_ok[] = {"Origin: " ALLOWED, NULL};
	size_t png_len;
	void *png = make_png(64, 64, 21, &png_len);
	struct request pq = {.path = "/predict", .image = png, .image_len = png_len,
	                     .headers = from_ok};
	http(s.port, &pq, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert(has_header(&r, "Access-Control-Allow-Origin: " ALLOWED));
	ck_assert(has_header(&r, "Access-Control-Expose-Headers: X-Request-Id, Retry-After, X-Cache"));
	reply_free(&r);
	/* ... the second configured origin too; an unlisted one gets no CORS header */
	static const char *const from_other[] = {"Origin: http://other.example:8000", NULL};
	struct request mq = {.path = "/v1/model", .headers = from_other};
	http(s.port, &mq, &r);
	ck_assert(has_header(&r, "Access-Control-Allow-Origin: http://other.example:8000"));
	reply_free(&r);
	static const char *const from_bad[] = {"Origin: https://evil.example", NULL};
	mq.headers = from_bad;
	http(s.port, &mq, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert(!has_acao(&r));
	reply_free(&r);
	free(png);
	ck_assert_int_eq(server_terminate(&s, 10), 0);
}
END_TEST

START_TEST(test_cors_off_by_default)
{
	struct server_proc s;
	server_spawn(&s, NULL);
	static const char *const pre[] = {"Origin: " ALLOWED, "Access-Control-Request-Method: POST",
	                                  NULL};
	struct request q = {.method = "OPTIONS", .path = "/predict", .headers = pre};
	struct reply r;
	http(s.port, &q, &r);
	assert_error(&r, 403, "cors_origin_not_allowed");
	ck_assert(!has_acao(&r));
	reply_free(&r);
	static const char *const from[] = {"Origin: " ALLOWED, NULL};
	struct request mq = {.path = "/v1/model", .headers = from};
	http(s.port, &mq, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert(!has_acao(&r));
	reply_free(&r);
	ck_assert_int_eq(server_terminate(&s, 10), 0);
}
END_TEST

START_TEST(test_bearer_tokens)
{
	write_tokens();
	struct server_proc s;
	server_with(&s, true);
	size_t png_len;
	void *png = make_png(64, 64, 22, &png_len);
	static const char *const none[] = {NULL};
	static const char *const wrong[] = {"Authorization: Bearer s3cret-Token_4", NULL};
	static const char *const basic[] = {"Authorization: Basic czNjcmV0", NULL};
	static const char *const right[] = {"Authorization: Bearer " TOKEN, NULL};
	static const char *const other[] = {"Authorization: Bearer other-token", NULL};
	const char *const *cases[] = {none, wrong, basic, right, other};
	const long want[] = {401, 401, 401, 200, 200};
	static const char *const guarded[] = {"/predict", "/attribute?steps=2&heatmaps=none",
	                                      "/metrics", "/v1/model"};
	for (int g = 0; g < 4; g++)
		for (int k = 0; k < 5; k++) {
			bool post = g < 2;
			struct request q = {.path = guarded[g], .headers = cases[k]};
			if (post) {
				q.image = png;
				q.image_len = png_len;
			}
			struct reply r;
			http(s.port, &q, &r);
			ck_assert_msg(r.status == want[k], "%s, case %d: %ld", guarded[g], k, r.status);
			if (want[k] == 401) {
				assert_error(&r, 401, "unauthorized");
				ck_assert(has_header(&r, "WWW-Authenticate: Bearer"));
			}
			reply_free(&r);
		}
	/* open without a token */
	static const char *const open_paths[] = {"/", "/app.js", "/app.css", "/healthz", "/readyz",
	                                         "/openapi.yaml"};
	for (int i = 0; i < 6; i++)
		ck_assert_msg(http_status_get(s.port, open_paths[i]) == 200, "%s", open_paths[i]);
	free(png);
	ck_assert_int_eq(server_terminate(&s, 10), 0);
	/* the token is in no log line (startup says how many, not which) */
	size_t len;
	char *log = read_file(s.log_path, &len);
	ck_assert_ptr_nonnull(log);
	ck_assert_msg(strstr(log, TOKEN) == NULL && strstr(log, "other-token") == NULL,
	              "a token in the log");
	ck_assert(strstr(log, "\"auth_tokens\":2") != NULL);
	free(log);
	unlink(token_file);
}
END_TEST

START_TEST(test_bad_configuration_refused)
{
	char out[4096];
	char cmd[8192];
	/* a token file without tokens, a FIFO-free missing file, a bad origin */
	char empty[] = "/tmp/igserve-empty-XXXXXX";
	int fd = mkstemp(empty);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "# nothing\n\n", 11), 11);
	close(fd);
	char empty_args[64];
	snprintf(empty_args, sizeof empty_args, "--auth-token-file %s", empty);
	const struct {
		const char *args, *message;
	} cases[] = {{empty_args, "no tokens"},
	             {"--auth-token-file /nonexistent/tokens", "/nonexistent/tokens: cannot open"},
	             {"--cors-origins app.example.com", "not an origin"},
	             {"--cors-origins https://a.example/path", "not an origin"}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *args = cases[i].args;
		snprintf(cmd, sizeof cmd, "%.2000s serve --model %.2000s --port 0 %.100s 2>&1",
		         getenv("IGSERVE_BINARY"), model_path, args);
		int status = run_command(cmd, out, sizeof out);
		ck_assert_msg(status != 0, "%s: started", args);
		ck_assert_msg(strstr(out, cases[i].message), "%s: %s", args, out);
	}
	unlink(empty);
}
END_TEST

int main(void)
{
	setup_paths();
	Suite *s = suite_create("browser-access");
	TCase *tc = tcase_create("cors-and-tokens");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_preflight_and_cors_headers);
	tcase_add_test(tc, test_cors_off_by_default);
	tcase_add_test(tc, test_bearer_tokens);
	tcase_add_test(tc, test_bad_configuration_refused);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
