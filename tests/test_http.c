/*
 * test_http.c - the HTTP service end to end, on one shared server: the
 * real `igserve serve` binary (IGSERVE_BINARY) with a narrow 64x64 fixture
 * model and two workers, driven by libcurl (http_harness.h): every GET
 * endpoint, uploads, bad requests, limits, attributions as JSON and as
 * server-sent events, deadlines, scheduling and departing clients.
 * test_http_server.c starts a server of its own per test.
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

#include "conv.h"
#include "http_harness.h"

/* ================================================================ */
/* the shared server                                                 */
/* ================================================================ */

static struct server_proc main_server;
#define MAIN_MAX_BODY 200000
#define SLOW_STEPS "4096"

static void main_server_up(void)
{
	static const char *const extra[] = {"--workers",
	                                    "2",
	                                    "--max-body-bytes",
	                                    "200000",
	                                    "--max-pixels",
	                                    "1000000",
	                                    "--max-steps",
	                                    "4096",
	                                    NULL};
	server_spawn(&main_server, extra);
}

static void main_server_down(void)
{
	int status = server_terminate(&main_server, 30);
	if (status != 0) { /* failures of unchecked fixtures print no message */
		char *log = read_file(main_server.log_path, NULL);
		fprintf(stderr, "main server exited with %d; its log:\n%s\n", status, log);
		free(log);
	}
	ck_assert_int_eq(status, 0);
	unlink(main_server.log_path);
}

/* ================================================================ */
/* endpoints                                                         */
/* ================================================================ */

START_TEST(test_get_endpoints)
{
	int port = main_server.port;
	struct reply r;
	struct request q = {.path = "/healthz"};
	http(port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "{\"status\":\"ok\"}");
	reply_free(&r);

	q.path = "/readyz";
	http(port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);

	q.path = "/v1/model";
	http(port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert(has_header(&r, "Content-Type: application/json"));
	cJSON *doc = cJSON_Parse(r.body);
	ck_assert(doc != NULL);
	ck_assert_int_eq(cJSON_GetObjectItem(doc, "classes")->valueint, 10);
	ck_assert_int_eq(cJSON_GetObjectItem(doc, "input_size")->valueint, 64);
	ck_assert_str_eq(cJSON_GetObjectItem(doc, "family")->valuestring, "torchvision");
	/* --precision auto: what this process picks on the same CPU */
	enum conv_precision here;
	ck_assert_int_eq(conv_precision_resolve(CONV_PRECISION_AUTO, &here, NULL), 0);
	ck_assert_str_eq(cJSON_GetObjectItem(doc, "precision")->valuestring,
	                 conv_precision_name(here));
	char sha[65];
	snprintf(sha, sizeof sha, "%s", cJSON_GetObjectItem(doc, "sha256")->valuestring);
	cJSON_Delete(doc);
	reply_free(&r);

	/* The embedded openapi.yaml is the repository's, byte for byte. */
	q.path = "/openapi.yaml";
	http(port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	char path[4200];
	snprintf(path, sizeof path, "%s/../../openapi.yaml", fixtures);
	size_t len;
	char *yaml = read_file(path, &len);
	ck_assert_msg(yaml != NULL, "cannot read %s", path);
	ck_assert_uint_eq(r.len, len);
	ck_assert(memcmp(r.body, yaml, len) == 0);
	free(yaml);
	reply_free(&r);

	q.path = "/";
	http(port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert(has_header(&r, "Content-Type: text/html"));
	ck_assert(strstr(r.body, "<html") != NULL);
	/* every hook the contract's "The web page" names is in the page */
	static const char *const hooks[] = {"predictions", "explain", "progress", "heatmap",
	                                    "completeness", "path-slider", "path-map",
	                                    "path-plot", "error"};
	for (size_t i = 0; i < sizeof hooks / sizeof hooks[0]; i++) {
		char attr[64];
		snprintf(attr, sizeof attr, "data-testid=\"%s\"", hooks[i]);
		ck_assert_msg(strstr(r.body, attr) != NULL, "the page lacks %s", attr);
	}
	ck_assert(has_header(&r, "Content-Security-Policy: default-src 'none'"));
	reply_free(&r);

	q.path = "/metrics";
	http(port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert(has_header(&r, "Content-Type: text/plain; version=0.0.4"));
	char want[200];
	snprintf(want, sizeof want, "classes=\"10\",input_size=\"64\",sha256=\"%s\"", sha);
	ck_assert_msg(strstr(r.body, want) != NULL, "model_info lacks %s", want);
	ck_assert(strstr(r.body, "igserve_queue_depth{queue=\"predict\"} ") != NULL);
	ck_assert(strstr(r.body, "igserve_queue_depth{queue=\"attribute\"} ") != NULL);
	ck_assert(strstr(r.body, "igserve_inflight_jobs ") != NULL);
	ck_assert(strstr(r.body, "# TYPE igserve_request_duration_seconds histogram") != NULL);
	ck_assert(strstr(r.body, "# TYPE igserve_ig_steps histogram") != NULL);
	ck_assert(strstr(r.body, "# TYPE igserve_completeness_relative_error histogram") != NULL);
	reply_free(&r);

	/* Requests are counted by endpoint and status. */
	double before =
	    metric(port, "igserve_requests_total{endpoint=\"/healthz\",status=\"200\"}");
	if (isnan(before))
		before = 0;
	ck_assert_int_eq(http_status_get(port, "/healthz"), 200);
	/* (counted when the answer is complete, just after the client has it) */
	ck_assert(metric_wait(port, "igserve_requests_total{endpoint=\"/healthz\",status=\"200\"}",
	                      before + 1, 5));

	/* HEAD works on GET endpoints. */
	q.path = "/healthz";
	q.method = "HEAD";
	http(port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);
}
END_TEST

/* The page's script and style sheet: their types, no-cache with an ETag,
 * 304 when the client's copy is current, and the page loads only them. */
START_TEST(test_page_files)
{
	int port = main_server.port;
	static const struct {
		const char *path, *type, *source;
	} files[] = {
	    {"/", "Content-Type: text/html; charset=utf-8", "src/http/page/index.html"},
	    {"/index.html", "Content-Type: text/html; charset=utf-8", "src/http/page/index.html"},
	    {"/app.js", "Content-Type: text/javascript; charset=utf-8", "src/http/page/app.js"},
	    {"/app.css", "Content-Type: text/css; charset=utf-8", "src/http/page/app.css"},
	};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		struct request q = {.path = files[i].path};
		struct reply r;
		http(port, &q, &r);
		ck_assert_int_eq(r.status, 200);
		ck_assert_msg(has_header(&r, files[i].type), "%s: wrong Content-Type", files[i].path);
		ck_assert(has_header(&r, "Cache-Control: no-cache"));
		/* the bytes in the binary are the repository's */
		char src[4200];
		snprintf(src, sizeof src, "%s/../../%s", fixtures, files[i].source);
		size_t len;
		char *want = read_file(src, &len);
		ck_assert_msg(want != NULL, "cannot read %s", src);
		ck_assert_uint_eq(r.len, len);
		ck_assert(memcmp(r.body, want, len) == 0);
		free(want);

		char etag[64] = "", line[96];
		for (const char *h = r.headers; *h; h++)
			if (!strncasecmp(h, "ETag: ", 6)) {
				snprintf(etag, sizeof etag, "%.*s", (int)strcspn(h + 6, "\r\n"), h + 6);
				break;
			}
		ck_assert_msg(etag[0] == '"', "%s: no ETag", files[i].path);
		reply_free(&r);

		snprintf(line, sizeof line, "If-None-Match: %s", etag);
		const char *const current[] = {line, NULL};
		q.headers = current;
		http(port, &q, &r);
		ck_assert_int_eq(r.status, 304);
		ck_assert_uint_eq(r.len, 0);
		reply_free(&r);
		const char *const stale[] = {"If-None-Match: \"0000000000000000\"", NULL};
		q.headers = stale;
		http(port, &q, &r);
		ck_assert_int_eq(r.status, 200);
		ck_assert_uint_eq(r.len, len);
		reply_free(&r);
	}

	/* what the page builds its form from: the defaults and this server's limits */
	struct request q = {.path = "/v1/model"};
	struct reply r;
	http(port, &q, &r);
	cJSON *doc = cJSON_Parse(r.body);
	ck_assert(doc != NULL);
	cJSON *d = cJSON_GetObjectItem(doc, "request_defaults");
	cJSON *lim = cJSON_GetObjectItem(doc, "limits");
	ck_assert(d && lim);
	ck_assert_int_eq(cJSON_GetObjectItem(d, "steps")->valueint, 50);
	ck_assert_str_eq(cJSON_GetObjectItem(d, "method")->valuestring, "gausslegendre");
	ck_assert_str_eq(cJSON_GetObjectItem(d, "baseline")->valuestring, "gray");
	ck_assert(cJSON_IsNull(cJSON_GetObjectItem(d, "tolerance")));
	ck_assert_int_eq(cJSON_GetObjectItem(lim, "upload_bytes")->valueint, MAIN_MAX_BODY);
	ck_assert_int_eq(cJSON_GetObjectItem(lim, "pixels")->valueint, 1000000);
	ck_assert_int_eq(cJSON_GetObjectItem(lim, "max_steps")->valueint, 4096);
	ck_assert_int_eq(cJSON_GetObjectItem(lim, "path_maps_points")->valueint, 512);
	cJSON_Delete(doc);
	reply_free(&r);
}
END_TEST

START_TEST(test_not_found_and_method)
{
	int port = main_server.port;
	struct reply r;
	struct request q = {.path = "/nope"};
	http(port, &q, &r);
	assert_error(&r, 404, "not_found");
	reply_free(&r);

	q.path = "/predict"; /* GET */
	http(port, &q, &r);
	assert_error(&r, 405, "method_not_allowed");
	ck_assert(has_header(&r, "Allow: POST"));
	reply_free(&r);

	q.path = "/healthz";
	q.method = "POST";
	http(port, &q, &r);
	assert_error(&r, 405, "method_not_allowed");
	ck_assert(has_header(&r, "Allow: GET"));
	reply_free(&r);

	q.path = "/attribute";
	q.method = "DELETE";
	http(port, &q, &r);
	assert_error(&r, 405, "method_not_allowed");
	reply_free(&r);
}
END_TEST

START_TEST(test_predict_uploads_and_cli)
{
	int port = main_server.port;
	size_t png_len, jpg_len;
	void *png = make_png(80, 60, 1, &png_len);
	void *jpg = make_jpeg(64, 64, 2, &jpg_len);

	struct reply r1, r2, r3;
	struct request q = {.path = "/predict", .image = png, .image_len = png_len};
	http(port, &q, &r1);
	ck_assert_msg(r1.status == 200, "status %ld: %s", r1.status, r1.body);
	ck_assert(has_header(&r1, "Content-Type: application/json"));
	struct request raw = {
	    .path = "/predict", .content_type = "image/png", .body = png, .len = png_len};
	http(port, &raw, &r2);
	ck_assert_int_eq(r2.status, 200);
	char *p1 = predictions_text(r1.body), *p2 = predictions_text(r2.body);
	ck_assert_str_eq(p1, p2); /* multipart and raw: the same bytes, the same answer */

	cJSON *doc = cJSON_Parse(r1.body);
	cJSON *preds = cJSON_GetObjectItem(doc, "predictions");
	ck_assert_int_eq(cJSON_GetArraySize(preds), 5);
	ck_assert_str_eq(
	    cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "model"), "family")->valuestring,
	    "torchvision");
	double prev = INFINITY;
	for (int i = 0; i < 5; i++) {
		double logit =
		    cJSON_GetObjectItem(cJSON_GetArrayItem(preds, i), "logit")->valuedouble;
		ck_assert(logit <= prev);
		prev = logit;
	}
	cJSON_Delete(doc);

	/* The CLI on the same file prints the same predictions (to rounding). */
	char img_path[] = "/tmp/igserve-http-img-XXXXXX";
	int fd = mkstemp(img_path);
	ck_assert(write(fd, png, png_len) == (ssize_t)png_len);
	close(fd);
	char cmd[9000];
	snprintf(cmd, sizeof cmd, "'%s' predict --model '%s' --input-size 64 '%s' 2>/dev/null",
	         getenv("IGSERVE_BINARY"), model_path, img_path);
	static char line[1 << 16];
	ck_assert_int_eq(run_command(cmd, line, sizeof line), 0);
	unlink(img_path);
	assert_predictions_close(r1.body, line);
	free(p1);
	free(p2);

	/* top_k as a query parameter and as a form field; JPEG too. */
	struct request qk = {
	    .path = "/predict?top_k=3", .content_type = "image/jpeg", .body = jpg, .len = jpg_len};
	http(port, &qk, &r3);
	ck_assert_int_eq(r3.status, 200);
	doc = cJSON_Parse(r3.body);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "predictions")), 3);
	cJSON_Delete(doc);
	reply_free(&r3);
	static const char *const fields[] = {"top_k", "2", NULL};
	struct request qf = {
	    .path = "/predict", .image = jpg, .image_len = jpg_len, .fields = fields};
	http(port, &qf, &r3);
	ck_assert_int_eq(r3.status, 200);
	doc = cJSON_Parse(r3.body);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "predictions")), 2);
	cJSON_Delete(doc);
	reply_free(&r3);
	/* more classes than the model has: all 10 */
	struct request q20 = {.path = "/predict?top_k=20", .image = png, .image_len = png_len};
	http(port, &q20, &r3);
	ck_assert_int_eq(r3.status, 200);
	doc = cJSON_Parse(r3.body);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "predictions")), 10);
	cJSON_Delete(doc);
	reply_free(&r3);

	reply_free(&r1);
	reply_free(&r2);
	free(png);
	free(jpg);
}
END_TEST

START_TEST(test_bad_requests)
{
	int port = main_server.port;
	size_t png_len;
	void *png = make_png(64, 64, 3, &png_len);
	struct reply r;

	/* 400: unknown option, bad value, by query and by form */
	struct request q = {.path = "/predict?bogus=1", .image = png, .image_len = png_len};
	http(port, &q, &r);
	assert_error(&r, 400, "bad_option");
	ck_assert(strstr(r.body, "bogus") != NULL);
	reply_free(&r);
	static const char *const bad_steps[] = {"steps", "many", NULL};
	q = (struct request){
	    .path = "/attribute", .image = png, .image_len = png_len, .fields = bad_steps};
	http(port, &q, &r);
	assert_error(&r, 400, "bad_option");
	ck_assert(strstr(r.body, "steps") != NULL);
	reply_free(&r);
	q = (struct request){.path = "/attribute?steps=5000", .image = png, .image_len = png_len};
	http(port, &q, &r); /* over --max-steps */
	assert_error(&r, 400, "bad_option");
	reply_free(&r);
	static const char *const unknown[] = {"colour", "red", NULL};
	q = (struct request){
	    .path = "/predict", .image = png, .image_len = png_len, .fields = unknown};
	http(port, &q, &r);
	assert_error(&r, 400, "bad_option");
	reply_free(&r);

	/* 400: multipart without an image field; malformed multipart; empty body */
	q = (struct request){.path = "/predict",
	                     .content_type = "multipart/form-data; boundary=zz",
	                     .body =
	                         "--zz\r\nContent-Disposition: form-data; name=top_k\r\n\r\n3\r\n"
	                         "--zz--",
	                     .len = 62};
	http(port, &q, &r);
	assert_error(&r, 400, "bad_option");
	ck_assert(strstr(r.body, "image") != NULL);
	reply_free(&r);
	q = (struct request){.path = "/predict",
	                     .content_type = "multipart/form-data; boundary=zz",
	                     .body = "--zz\r\nContent-Disposition: form-data; name=image\r\n\r\nab",
	                     .len = 52};
	http(port, &q, &r);
	assert_error(&r, 400, "bad_option");
	reply_free(&r);
	q = (struct request){.path = "/predict", .method = "POST", .content_type = "image/png"};
	http(port, &q, &r);
	assert_error(&r, 400, "bad_option");
	reply_free(&r);

	/* 415: not an image type; an "image" that is text */
	q = (struct request){
	    .path = "/predict", .content_type = "text/plain", .body = "hello", .len = 5};
	http(port, &q, &r);
	assert_error(&r, 415, "unsupported_media_type");
	reply_free(&r);
	q = (struct request){
	    .path = "/attribute", .content_type = "application/json", .body = "{}", .len = 2};
	http(port, &q, &r);
	assert_error(&r, 415, "unsupported_media_type");
	reply_free(&r);
	q = (struct request){.path = "/predict",
	                     .content_type = "image/png",
	                     .body = "hello, not a picture",
	                     .len = 20};
	http(port, &q, &r);
	assert_error(&r, 415, "unsupported_media_type");
	reply_free(&r);

	/* 422: a PNG cut short */
	q = (struct request){
	    .path = "/predict", .content_type = "image/png", .body = png, .len = png_len / 2};
	http(port, &q, &r);
	assert_error(&r, 422, "image_decode");
	reply_free(&r);

	free(png);
}
END_TEST

START_TEST(test_too_large)
{
	int port = main_server.port;
	size_t n = MAIN_MAX_BODY + 1000;
	char *body = malloc(n);
	memset(body, 'x', n);
	struct reply r;

	/* Content-Length over the limit: refused before the body is read. */
	struct request q = {.path = "/predict",
	                    .content_type = "image/png",
	                    .body = body,
	                    .len = n,
	                    .expect_continue = true};
	http(port, &q, &r);
	assert_error(&r, 413, "payload_too_large");
	reply_free(&r);

	/* Chunked, no length: refused once the limit is passed. */
	q = (struct request){.path = "/predict",
	                     .content_type = "image/png",
	                     .body = body,
	                     .len = n,
	                     .chunked = true};
	http(port, &q, &r);
	assert_error(&r, 413, "payload_too_large");
	reply_free(&r);

	/* multipart over the limit */
	q = (struct request){
	    .path = "/attribute", .image = body, .image_len = n, .expect_continue = true};
	http(port, &q, &r);
	assert_error(&r, 413, "payload_too_large");
	reply_free(&r);
	free(body);

	/* Decoded pixels over --max-pixels 1000000: a small file, a big image.
	 * A flat image compresses to a few KB. */
	int w = 1200, h = 1000;
	unsigned char *flat = calloc((size_t)w * h, 3);
	png_image img = {.version = PNG_IMAGE_VERSION,
	                 .width = (png_uint_32)w,
	                 .height = (png_uint_32)h,
	                 .format = PNG_FORMAT_RGB};
	png_alloc_size_t plen = 0;
	ck_assert(png_image_write_to_memory(&img, NULL, &plen, 0, flat, 0, NULL));
	void *png = malloc(plen);
	ck_assert(png_image_write_to_memory(&img, png, &plen, 0, flat, 0, NULL));
	free(flat);
	ck_assert_uint_lt(plen, MAIN_MAX_BODY);
	q = (struct request){
	    .path = "/predict", .content_type = "image/png", .body = png, .len = plen};
	http(port, &q, &r);
	assert_error(&r, 413, "image_too_large");
	reply_free(&r);
	free(png);

	/* The server is still fine. */
	ck_assert_int_eq(http_status_get(port, "/healthz"), 200);
}
END_TEST

/* ================================================================ */
/* attribution: JSON, SSE, deadline                                  */
/* ================================================================ */

START_TEST(test_attribute_json)
{
	int port = main_server.port;
	size_t png_len;
	void *png = make_png(64, 64, 5, &png_len);
	static const char *const fields[] = {"steps", "16", "method", "riemann_middle", NULL};
	struct request q = {.path = "/attribute?baseline=black&heatmaps=magnitude",
	                    .image = png,
	                    .image_len = png_len,
	                    .fields = fields};
	double steps_before = metric(port, "igserve_ig_steps_total");
	struct reply r;
	http(port, &q, &r);
	ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
	cJSON *doc = cJSON_Parse(r.body);
	ck_assert(doc != NULL);
	cJSON *method = cJSON_GetObjectItem(doc, "method");
	ck_assert_int_eq(cJSON_GetObjectItem(method, "steps")->valueint, 16);
	ck_assert_str_eq(cJSON_GetObjectItem(method, "baseline")->valuestring, "black");
	cJSON *c = cJSON_GetObjectItem(doc, "completeness");
	double sum = cJSON_GetObjectItem(c, "sum")->valuedouble;
	double fi = cJSON_GetObjectItem(c, "f_input")->valuedouble;
	double fb = cJSON_GetObjectItem(c, "f_baseline")->valuedouble;
	double delta = cJSON_GetObjectItem(c, "delta")->valuedouble;
	ck_assert(isfinite(sum) && isfinite(fi) && isfinite(fb));
	ck_assert(fabs(delta - (sum - (fi - fb))) <= 1e-4 * (1 + fabs(sum)));
	cJSON *maps = cJSON_GetObjectItem(doc, "heatmaps");
	ck_assert(cJSON_GetObjectItem(maps, "magnitude") != NULL);
	ck_assert(cJSON_GetObjectItem(maps, "normalized") == NULL);
	/* The same image's predictions as /predict. */
	struct request qp = {.path = "/predict", .image = png, .image_len = png_len};
	struct reply rp;
	http(port, &qp, &rp);
	assert_predictions_close(r.body, rp.body);
	cJSON_Delete(doc);
	reply_free(&r);
	reply_free(&rp);
	/* Steps are counted in /metrics. */
	ck_assert(metric(port, "igserve_ig_steps_total") == steps_before + 16);
	free(png);
}
END_TEST

START_TEST(test_attribute_sse)
{
	int port = main_server.port;
	size_t png_len;
	void *png = make_png(64, 64, 6, &png_len);
	/* 65 trapezoid points run as rounds of 17, 33 and 65 (each nested in
	 * the next): progress after the second carries an estimate */
	static const char *const fields[] = {"method", "riemann_trapezoid", "steps", "65",
	                                     "preview", "24", NULL};
	struct request q = {.path = "/attribute",
	                    .image = png,
	                    .image_len = png_len,
	                    .fields = fields,
	                    .accept = "text/event-stream"};
	struct reply r;
	http(port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert(has_header(&r, "Content-Type: text/event-stream"));
	/* progress events with growing points_done, then one result event last */
	int progress = 0, last_done = 0, estimates = 0, previews = 0;
	char *result = NULL;
	for (char *ev = r.body; ev && *ev;) {
		char *end = strstr(ev, "\n\n");
		ck_assert_msg(end != NULL, "unterminated event: %s", ev);
		*end = 0;
		ck_assert_msg(result == NULL, "an event after the result");
		char *data = strstr(ev, "\ndata: ");
		ck_assert(data != NULL);
		data += 7;
		if (!strncmp(ev, "event: progress\n", 16)) {
			cJSON *d = cJSON_Parse(data);
			ck_assert(d != NULL);
			int done = cJSON_GetObjectItem(d, "points_done")->valueint;
			int total = cJSON_GetObjectItem(d, "points_total")->valueint;
			ck_assert(cJSON_GetObjectItem(d, "relative_error") != NULL);
			const cJSON *l2 = cJSON_GetObjectItem(d, "relative_l2");
			ck_assert(cJSON_IsNull(l2) || cJSON_IsNumber(l2));
			estimates += cJSON_IsNumber(l2);
			/* a preview after each of the three rounds: a PNG, base64 */
			const cJSON *pv = cJSON_GetObjectItem(d, "preview");
			if (pv) {
				ck_assert(cJSON_IsString(pv));
				ck_assert(!strncmp(pv->valuestring, "iVBORw0KGgo", 11));
				previews++;
			}
			ck_assert_int_eq(total, 65);
			ck_assert_int_ge(done, last_done);
			ck_assert_int_le(done, total);
			last_done = done;
			progress++;
			cJSON_Delete(d);
		} else {
			ck_assert_msg(!strncmp(ev, "event: result\n", 14), "unexpected event %s",
			              ev);
			result = data;
		}
		ev = end + 2;
	}
	ck_assert_int_ge(progress, 1);
	ck_assert(result != NULL);
	cJSON *doc = cJSON_Parse(result);
	ck_assert(doc != NULL);
	ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "method"), "steps")->valueint,
	                 65);
	ck_assert(cJSON_GetObjectItem(doc, "completeness") != NULL);
	ck_assert_int_ge(estimates, 1);
	ck_assert_int_eq(previews, 3);
	const cJSON *conv = cJSON_GetObjectItem(doc, "convergence");
	ck_assert_str_eq(cJSON_GetObjectItem(conv, "estimator")->valuestring, "subrule_cells");
	ck_assert(cJSON_GetObjectItem(conv, "relative_l2")->valuedouble > 0);
	ck_assert_int_eq(cJSON_GetObjectItem(conv, "points")->valueint, 65);
	cJSON_Delete(doc);
	reply_free(&r);
	free(png);
}
END_TEST

START_TEST(test_deadline)
{
	int port = main_server.port;
	size_t png_len;
	void *png = make_png(64, 64, 7, &png_len);
	struct reply r;
	struct request q = {.path = "/attribute?steps=" SLOW_STEPS "&deadline_ms=30",
	                    .image = png,
	                    .image_len = png_len};
	double t0 = now_s();
	http(port, &q, &r);
	assert_error(&r, 504, "deadline_exceeded");
	ck_assert(now_s() - t0 < 5);
	reply_free(&r);

	/* Adaptive IG answers at the deadline with its best result (once its
	 * first rule is complete), or at max_steps: not converged either way. */
	/* (a 4-point first rule, complete long before the deadline even on a
	 * loaded machine) */
	q.path = "/attribute?steps=4&tolerance=1e-9&max_steps=" SLOW_STEPS "&deadline_ms=1500";
	http(port, &q, &r);
	ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
	cJSON *doc = cJSON_Parse(r.body);
	ck_assert(
	    cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "method"), "converged")));
	cJSON_Delete(doc);
	reply_free(&r);

	/* Through SSE the deadline arrives as the last event. */
	q.path = "/attribute?steps=" SLOW_STEPS "&deadline_ms=30";
	q.accept = "text/event-stream";
	http(port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	char *last = strstr(r.body, "event: error\n");
	ck_assert_msg(last != NULL, "no error event in %s", r.body);
	ck_assert(strstr(last, "deadline_exceeded") != NULL);
	reply_free(&r);
	free(png);
}
END_TEST

START_TEST(test_predict_not_starved)
{
	/* Two workers: explanations may occupy only one of them. */
	int port = main_server.port;
	size_t png_len;
	void *png = make_png(64, 64, 9, &png_len);
	struct request slow = {
	    .path = "/attribute?" SLOW(2500), .image = png, .image_len = png_len};
	struct async a1, a2;
	async_start(&a1, port, &slow);
	ck_assert(metric_wait(port, "igserve_running_jobs", 1, 10));
	async_start(&a2, port, &slow);
	ck_assert(metric_wait(port, "igserve_queue_depth{queue=\"attribute\"}", 1, 10));
	/* the second explanation waits although a worker is free */
	sleep_s(0.2);
	ck_assert(metric(port, "igserve_running_jobs") == 1);
	ck_assert(metric(port, "igserve_queue_depth{queue=\"attribute\"}") == 1);
	struct request pq = {.path = "/predict", .image = png, .image_len = png_len};
	struct reply r;
	double t0 = now_s();
	http(port, &pq, &r);
	double took = now_s() - t0;
	ck_assert_int_eq(r.status, 200);
	/* answered while the first explanation still runs */
	ck_assert(metric(port, "igserve_running_jobs") >= 1);
	ck_assert(took < 2);
	reply_free(&r);
	async_wait(&a1);
	async_wait(&a2);
	assert_stopped_at_deadline(&a1.r);
	assert_stopped_at_deadline(&a2.r);
	reply_free(&a1.r);
	reply_free(&a2.r);
	free(png);
}
END_TEST

START_TEST(test_client_disconnect)
{
	int port = main_server.port;
	size_t png_len;
	void *png = make_png(64, 64, 10, &png_len);
	double cancelled = metric(port, "igserve_jobs_cancelled_total");
	struct request slow = {.path = "/attribute?" SLOW(60000),
	                       .image = png,
	                       .image_len = png_len,
	                       .timeout_ms = 300};
	struct reply r;
	http(port, &slow, &r); /* curl gives up after 300 ms and closes */
	ck_assert_int_eq(r.rc, CURLE_OPERATION_TIMEDOUT);
	reply_free(&r);
	ck_assert(metric_wait(port, "igserve_jobs_cancelled_total", cancelled + 1, 5));
	ck_assert(metric_wait(port, "igserve_running_jobs", 0, 0.01) ||
	          metric(port, "igserve_running_jobs") == 0);

	/* The same with a streaming client. */
	slow.accept = "text/event-stream";
	http(port, &slow, &r);
	reply_free(&r);
	ck_assert(metric_wait(port, "igserve_jobs_cancelled_total", cancelled + 2, 5));

	/* A 499 is logged for the first one. */
	ck_assert(metric_wait(
	    port, "igserve_requests_total{endpoint=\"/attribute\",status=\"499\"}", 1, 5));
	free(png);
}
END_TEST

int main(void)
{
	setup_paths();
	Suite *s = suite_create("http");
	TCase *e2e = tcase_create("end-to-end");
	tcase_add_unchecked_fixture(e2e, main_server_up, main_server_down);
	tcase_set_timeout(e2e, 120);
	tcase_add_test(e2e, test_get_endpoints);
	tcase_add_test(e2e, test_page_files);
	tcase_add_test(e2e, test_not_found_and_method);
	tcase_add_test(e2e, test_predict_uploads_and_cli);
	tcase_add_test(e2e, test_bad_requests);
	tcase_add_test(e2e, test_too_large);
	tcase_add_test(e2e, test_attribute_json);
	tcase_add_test(e2e, test_attribute_sse);
	tcase_add_test(e2e, test_deadline);
	tcase_add_test(e2e, test_predict_not_starved);
	tcase_add_test(e2e, test_client_disconnect);
	suite_add_tcase(s, e2e);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
