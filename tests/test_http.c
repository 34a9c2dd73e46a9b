/*
 * test_http.c - the HTTP service end to end: the real `igserve serve`
 * binary (IGSERVE_BINARY) on an ephemeral loopback port with a narrow
 * 64x64 fixture model, driven by libcurl.  Plus the multipart parser on its
 * own.
 *
 * Each server is started with --port 0 and its stderr in a temporary file;
 * the port comes from the startup log line, readiness from /readyz.
 */
#include <check.h>
#include <curl/curl.h>
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
#include "conv.h"
#include "body.h"

/* ================================================================ */
/* helpers: files, images                                            */
/* ================================================================ */

static char model_path[4096];
static char fixtures[2048];

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
	nanosleep(&ts, NULL);
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	if (buf)
		buf[n] = 0;
	fclose(f);
	if (len)
		*len = (size_t)n;
	return buf;
}

/* A deterministic w x h RGB test picture. */
static unsigned char *test_pixels(int w, int h, int seed)
{
	unsigned char *rgb = malloc((size_t)w * h * 3);
	unsigned s = 12345u + (unsigned)seed;
	for (int i = 0; i < w * h * 3; i++) {
		s = s * 1103515245u + 12345u;
		int x = (i / 3) % w, y = (i / 3) / w;
		rgb[i] = (unsigned char)((x * 255 / w + y * 97 / h + (s >> 24) / 4) & 255);
	}
	return rgb;
}

static void *make_png(int w, int h, int seed, size_t *len)
{
	unsigned char *rgb = test_pixels(w, h, seed);
	png_image img = {.version = PNG_IMAGE_VERSION,
	                 .width = (png_uint_32)w,
	                 .height = (png_uint_32)h,
	                 .format = PNG_FORMAT_RGB};
	png_alloc_size_t n = 0;
	ck_assert(png_image_write_to_memory(&img, NULL, &n, 0, rgb, 0, NULL));
	void *out = malloc(n);
	ck_assert(png_image_write_to_memory(&img, out, &n, 0, rgb, 0, NULL));
	free(rgb);
	*len = n;
	return out;
}

static void *make_jpeg(int w, int h, int seed, size_t *len)
{
	unsigned char *rgb = test_pixels(w, h, seed);
	tjhandle tj = tjInitCompress();
	unsigned char *jpeg = NULL;
	unsigned long n = 0;
	ck_assert_int_eq(tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpeg, &n, TJSAMP_444, 95, 0), 0);
	void *out = malloc(n);
	memcpy(out, jpeg, n);
	tjFree(jpeg);
	tjDestroy(tj);
	free(rgb);
	*len = n;
	return out;
}

/* ================================================================ */
/* helpers: a server process                                         */
/* ================================================================ */

struct server_proc {
	pid_t pid;
	int port;
	char log_path[64];
};

static long http_status_get(int port, const char *path);

/* Start `igserve serve` with `model` and `extra` flags (NULL-terminated);
 * wait for its port, and for /readyz when `wait_ready`. */
static void server_spawn_model(struct server_proc *s, const char *model, const char *const *extra,
                               bool wait_ready)
{
	const char *bin = getenv("IGSERVE_BINARY");
	ck_assert_msg(bin != NULL, "IGSERVE_BINARY is not set");
	snprintf(s->log_path, sizeof s->log_path, "/tmp/igserve-http-XXXXXX");
	int fd = mkstemp(s->log_path);
	ck_assert_int_ge(fd, 0);
	const char *argv[64];
	int n = 0;
	argv[n++] = bin;
	argv[n++] = "serve";
	argv[n++] = "--model";
	argv[n++] = model;
	argv[n++] = "--input-size";
	argv[n++] = "64";
	argv[n++] = "--host";
	argv[n++] = "127.0.0.1";
	argv[n++] = "--port";
	argv[n++] = "0";
	for (int i = 0; extra && extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	s->pid = fork();
	ck_assert_int_ge(s->pid, 0);
	if (s->pid == 0) {
		dup2(fd, 2);
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	close(fd);
	s->port = 0;
	double t0 = now_s();
	while (!s->port && now_s() - t0 < 30) {
		char *log = read_file(s->log_path, NULL);
		const char *p = log ? strstr(log, "\"event\":\"listening\"") : NULL;
		p = p ? strstr(p, "\"port\":") : NULL;
		if (p)
			s->port = atoi(p + 7);
		free(log);
		int status;
		ck_assert_msg(waitpid(s->pid, &status, WNOHANG) == 0, "igserve serve exited early");
		if (!s->port)
			sleep_s(0.02);
	}
	ck_assert_msg(s->port > 0, "no port in the startup log");
	if (!wait_ready)
		return;
	while (http_status_get(s->port, "/readyz") != 200 && now_s() - t0 < 30)
		sleep_s(0.02);
	ck_assert_int_eq(http_status_get(s->port, "/readyz"), 200);
}

/* The usual: the 64x64 fixture model, ready. */
static void server_spawn(struct server_proc *s, const char *const *extra)
{
	server_spawn_model(s, model_path, extra, true);
}

/* Sanitizer builds report into the server's log: there must be none. */
static void assert_clean_log(const char *path)
{
	char *log = read_file(path, NULL);
	bool clean = !log || (!strstr(log, "runtime error:") && !strstr(log, "Sanitizer"));
	if (!clean)
		fprintf(stderr, "the server log has sanitizer reports:\n%s\n", log);
	free(log);
	ck_assert_msg(clean, "the server log has sanitizer reports (printed above)");
}

/* SIGTERM and wait; returns the exit status (or -1 on timeout/signal). */
static int server_terminate(struct server_proc *s, double timeout_s)
{
	if (s->pid <= 0)
		return -1;
	kill(s->pid, SIGTERM);
	double t0 = now_s();
	int status = 0;
	for (;;) {
		pid_t r = waitpid(s->pid, &status, WNOHANG);
		if (r == s->pid)
			break;
		if (now_s() - t0 > timeout_s) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &status, 0);
			s->pid = 0;
			return -1;
		}
		sleep_s(0.02);
	}
	s->pid = 0;
	assert_clean_log(s->log_path);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ================================================================ */
/* helpers: HTTP                                                     */
/* ================================================================ */

struct reply {
	long status;
	char *body;
	size_t len;
	char *headers;
	size_t hlen;
	CURLcode rc;
};

/* Response bytes accumulate here. */
struct sink {
	char *buf;
	size_t len;
};

static size_t collect(char *data, size_t size, size_t n, void *ctx)
{
	struct sink *s = ctx;
	char *nb = realloc(s->buf, s->len + size * n + 1);
	if (!nb)
		return 0;
	memcpy(nb + s->len, data, size * n);
	s->len += size * n;
	nb[s->len] = 0;
	s->buf = nb;
	return size * n;
}

static void reply_free(struct reply *r)
{
	free(r->body);
	free(r->headers);
	memset(r, 0, sizeof *r);
}

struct request {
	const char *method; /* NULL: GET, or POST when there is a body */
	const char *path;
	const char *content_type;
	const void *body;
	size_t len;
	bool chunked; /* send the body with Transfer-Encoding: chunked */
	bool expect_continue;
	const char *accept;
	/* multipart: the image and NULL-terminated name/value pairs */
	const void *image;
	size_t image_len;
	const char *const *fields;
	long timeout_ms;
};

struct chunk_src {
	const char *data;
	size_t len, pos;
};

static size_t read_chunk(char *buf, size_t size, size_t n, void *ctx)
{
	struct chunk_src *src = ctx;
	size_t k = size * n;
	if (k > 4096)
		k = 4096;
	if (k > src->len - src->pos)
		k = src->len - src->pos;
	memcpy(buf, src->data + src->pos, k);
	src->pos += k;
	return k;
}

static void http(int port, const struct request *q, struct reply *r)
{
	memset(r, 0, sizeof *r);
	CURL *c = curl_easy_init();
	char url[512];
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, q->path);
	struct sink body = {0}, head = {0};
	struct curl_slist *hdrs = NULL;
	curl_mime *mime = NULL;
	struct chunk_src src = {q->body, q->len, 0};
	char line[256];
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &head);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, q->timeout_ms ? q->timeout_ms : 60000L);
	if (q->content_type) {
		snprintf(line, sizeof line, "Content-Type: %s", q->content_type);
		hdrs = curl_slist_append(hdrs, line);
	}
	if (q->accept) {
		snprintf(line, sizeof line, "Accept: %s", q->accept);
		hdrs = curl_slist_append(hdrs, line);
	}
	hdrs = curl_slist_append(hdrs, q->expect_continue ? "Expect: 100-continue" : "Expect:");
	if (q->image) {
		mime = curl_mime_init(c);
		curl_mimepart *part = curl_mime_addpart(mime);
		curl_mime_name(part, "image");
		curl_mime_filename(part, "upload.png");
		curl_mime_data(part, q->image, q->image_len);
		for (int i = 0; q->fields && q->fields[i]; i += 2) {
			part = curl_mime_addpart(mime);
			curl_mime_name(part, q->fields[i]);
			curl_mime_data(part, q->fields[i + 1], CURL_ZERO_TERMINATED);
		}
		curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
	} else if (q->chunked) {
		hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, read_chunk);
		curl_easy_setopt(c, CURLOPT_READDATA, &src);
	} else if (q->body || (q->method && !strcmp(q->method, "POST"))) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body ? q->body : "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->len);
	}
	if (q->method && !strcmp(q->method, "HEAD"))
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	else if (q->method && strcmp(q->method, "POST") && strcmp(q->method, "GET"))
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	r->rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	r->body = body.buf ? body.buf : calloc(1, 1);
	r->len = body.len;
	r->headers = head.buf ? head.buf : calloc(1, 1);
	r->hlen = head.len;
	curl_mime_free(mime);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
}

static long http_status_get(int port, const char *path)
{
	struct request q = {.path = path, .timeout_ms = 5000};
	struct reply r;
	http(port, &q, &r);
	long s = r.status;
	reply_free(&r);
	return s;
}

/* The error code of an error document, checking its shape. */
static void assert_error(const struct reply *r, long status, const char *code)
{
	ck_assert_msg(r->status == status, "status %ld, expected %ld; body %s", r->status, status,
	              r->body);
	cJSON *doc = cJSON_Parse(r->body);
	ck_assert_msg(doc != NULL, "error body is not JSON: %s", r->body);
	cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
	cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
	cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
	ck_assert(cJSON_IsString(c) && cJSON_IsString(m) && m->valuestring[0]);
	ck_assert_str_eq(c->valuestring, code);
	ck_assert_int_eq(cJSON_GetArraySize(doc), 1);
	cJSON_Delete(doc);
}

static bool has_header(const struct reply *r, const char *name_value)
{
	size_t n = strlen(name_value);
	for (const char *h = r->headers; *h; h++)
		if (!strncasecmp(h, name_value, n))
			return true;
	return false;
}

/* A sample's value from /metrics: the first line starting with `prefix`. */
static double metric(int port, const char *prefix)
{
	struct request q = {.path = "/metrics"};
	struct reply r;
	http(port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	double v = NAN;
	size_t n = strlen(prefix);
	for (char *line = r.body; line && *line;
	     line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (!strncmp(line, prefix, n) && line[n] == ' ') {
			v = strtod(line + n + 1, NULL);
			break;
		}
	reply_free(&r);
	return v;
}

/* Requests on a thread, to have several in flight. */
struct async {
	pthread_t thread;
	int port;
	struct request q;
	struct reply r;
	double finished; /* now_s() when the answer was complete */
};

static void *async_main(void *arg)
{
	struct async *a = arg;
	http(a->port, &a->q, &a->r);
	a->finished = now_s();
	return NULL;
}

static void async_start(struct async *a, int port, const struct request *q)
{
	a->port = port;
	a->q = *q;
	ck_assert_int_eq(pthread_create(&a->thread, NULL, async_main, a), 0);
}

static void async_wait(struct async *a)
{
	pthread_join(a->thread, NULL);
}

/* Wait until a metric reaches `value` (within timeout_s). */
static bool metric_wait(int port, const char *prefix, double value, double timeout_s)
{
	double t0 = now_s();
	while (now_s() - t0 < timeout_s) {
		if (metric(port, prefix) >= value)
			return true;
		sleep_s(0.02);
	}
	return false;
}

/* ================================================================ */
/* the shared server                                                 */
/* ================================================================ */

static struct server_proc main_server;
#define MAIN_MAX_BODY 200000
#define SLOW_STEPS "4096"
/* An attribution that would take minutes, cut by its deadline: it holds a
 * worker for exactly `ms` milliseconds on any machine, then answers 504. */
#define SLOW(ms) "steps=4096&smoothgrad=smoothgrad&smoothgrad_samples=64&deadline_ms=" #ms

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

static void setup_paths(void)
{
	const char *f = getenv("IGSERVE_FIXTURES");
	snprintf(fixtures, sizeof fixtures, "%s", f ? f : "tests/fixtures");
	snprintf(model_path, sizeof model_path, "%s/engine/tv_basic.safetensors", fixtures);
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ================================================================ */
/* the multipart parser on its own                                   */
/* ================================================================ */

struct parts_seen {
	int count;
	char names[8][64];
	char values[8][64];
	bool has_filename[8];
};

static int record_part(void *ctx, const struct form_part *p, struct igs_error *err)
{
	struct parts_seen *s = ctx;
	if (s->count >= 8)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "too many");
	snprintf(s->names[s->count], 64, "%s", p->name);
	snprintf(s->values[s->count], 64, "%.*s", (int)p->len, p->data);
	s->has_filename[s->count] = p->filename != NULL;
	s->count++;
	return 0;
}

START_TEST(test_content_type)
{
	enum body_kind k;
	char b[80];
	ck_assert_int_eq(body_kind_from_content_type("image/png", &k, b, sizeof b, NULL), 0);
	ck_assert_int_eq(k, BODY_RAW_IMAGE);
	ck_assert_int_eq(body_kind_from_content_type("IMAGE/JPEG; q=1", &k, b, sizeof b, NULL), 0);
	ck_assert_int_eq(k, BODY_RAW_IMAGE);
	ck_assert_int_eq(body_kind_from_content_type("multipart/form-data; boundary=\"a b\"", &k, b,
	                                             sizeof b, NULL),
	                 0);
	ck_assert_int_eq(k, BODY_MULTIPART);
	ck_assert_str_eq(b, "a b");
	ck_assert_int_eq(body_kind_from_content_type("multipart/form-data;charset=x;BOUNDARY=xyz",
	                                             &k, b, sizeof b, NULL),
	                 0);
	ck_assert_str_eq(b, "xyz");
	struct igs_error err;
	ck_assert_int_eq(body_kind_from_content_type("text/plain", &k, b, sizeof b, &err),
	                 IGS_ERR_UNSUPPORTED_MEDIA);
	ck_assert(strstr(err.message, "text/plain") != NULL);
	ck_assert_int_eq(body_kind_from_content_type(NULL, &k, b, sizeof b, &err),
	                 IGS_ERR_UNSUPPORTED_MEDIA);
	ck_assert_int_eq(body_kind_from_content_type("image/pngx", &k, b, sizeof b, &err),
	                 IGS_ERR_UNSUPPORTED_MEDIA);
	ck_assert_int_eq(body_kind_from_content_type("multipart/form-data", &k, b, sizeof b, &err),
	                 IGS_ERR_BAD_OPTION);
}
END_TEST

START_TEST(test_multipart_parse)
{
	/* Preamble, a part whose data contains a near-delimiter, a field,
	 * transport padding after a delimiter, an epilogue. */
	static const char body[] =
	    "preamble\r\n--XyZ\r\n"
	    "Content-Disposition: form-data; name=\"image\"; filename=\"a;b.png\"\r\n"
	    "Content-Type: image/png\r\n\r\n"
	    "ab--XyZ\r\n--Xy\r\n"
	    "--XyZ  \r\n"
	    "content-disposition: form-data; name=steps\r\n\r\n"
	    "12\r\n--XyZ--\r\nepilogue";
	struct parts_seen s = {0};
	ck_assert_int_eq(body_multipart_parse(body, sizeof body - 1, "XyZ", record_part, &s, NULL), 0);
	ck_assert_int_eq(s.count, 2);
	ck_assert_str_eq(s.names[0], "image");
	ck_assert(s.has_filename[0]);
	/* Only CRLF + "--" + boundary delimits: "--XyZ" inside a line and
	 * "\r\n--Xy" are content. */
	ck_assert_str_eq(s.values[0], "ab--XyZ\r\n--Xy");
	ck_assert_str_eq(s.names[1], "steps");
	ck_assert(!s.has_filename[1]);
	ck_assert_str_eq(s.values[1], "12");

	/* Delimiter at the very start, empty value. */
	static const char body2[] = "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n"
	                            "\r\n--b--";
	memset(&s, 0, sizeof s);
	ck_assert_int_eq(body_multipart_parse(body2, sizeof body2 - 1, "b", record_part, &s, NULL), 0);
	ck_assert_int_eq(s.count, 1);
	ck_assert_str_eq(s.values[0], "");

	/* Errors: truncated, no name, no boundary at all. */
	struct igs_error err;
	static const char trunc[] = "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nabc";
	ck_assert_int_eq(body_multipart_parse(trunc, sizeof trunc - 1, "b", record_part, &s, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert(strstr(err.message, "closing boundary") != NULL);
	static const char noname[] = "--b\r\nContent-Type: text/plain\r\n\r\nabc\r\n--b--";
	ck_assert_int_eq(body_multipart_parse(noname, sizeof noname - 1, "b", record_part, &s, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(body_multipart_parse("hello", 5, "b", record_part, &s, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(body_multipart_parse("", 0, "b", record_part, &s, &err), IGS_ERR_BAD_OPTION);
}
END_TEST

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

/* The "predictions" array printed compactly, for exact comparison. */
static char *predictions_text(const char *json)
{
	cJSON *doc = cJSON_Parse(json);
	ck_assert_msg(doc != NULL, "not JSON: %s", json);
	cJSON *p = cJSON_GetObjectItemCaseSensitive(doc, "predictions");
	ck_assert(cJSON_IsArray(p));
	char *text = cJSON_PrintUnformatted(p);
	cJSON_Delete(doc);
	return text;
}

/* Run `cmd` through the shell; its output (stdout, plus stderr when the
 * command redirects it) into text; returns pclose's status. */
static int run_command(const char *cmd, char *text, size_t size)
{
	FILE *f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(text, 1, size - 1, f);
	text[n] = 0;
	return pclose(f);
}

/*
 * Two answers name the same classes in the same order, with logits and
 * probabilities equal to float rounding: different batch sizes and thread
 * counts run different oneDNN kernels, which sum in different orders.
 */
static void assert_predictions_close(const char *json_a, const char *json_b)
{
	cJSON *a = cJSON_Parse(json_a), *b = cJSON_Parse(json_b);
	ck_assert(a != NULL && b != NULL);
	cJSON *pa = cJSON_GetObjectItemCaseSensitive(a, "predictions");
	cJSON *pb = cJSON_GetObjectItemCaseSensitive(b, "predictions");
	ck_assert(cJSON_IsArray(pa) && cJSON_IsArray(pb));
	ck_assert_int_eq(cJSON_GetArraySize(pa), cJSON_GetArraySize(pb));
	for (int i = 0; i < cJSON_GetArraySize(pa); i++) {
		cJSON *x = cJSON_GetArrayItem(pa, i), *y = cJSON_GetArrayItem(pb, i);
		ck_assert_int_eq(cJSON_GetObjectItem(x, "index")->valueint,
		                 cJSON_GetObjectItem(y, "index")->valueint);
		ck_assert_str_eq(cJSON_GetObjectItem(x, "label")->valuestring,
		                 cJSON_GetObjectItem(y, "label")->valuestring);
		const char *fields[] = {"logit", "probability"};
		for (int f = 0; f < 2; f++) {
			double u = cJSON_GetObjectItem(x, fields[f])->valuedouble;
			double v = cJSON_GetObjectItem(y, fields[f])->valuedouble;
			ck_assert_msg(fabs(u - v) <= 1e-5 * (1 + fabs(u)), "%s %d: %.9g vs %.9g",
			              fields[f], i, u, v);
		}
	}
	cJSON_Delete(a);
	cJSON_Delete(b);
}

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
	static const char *const fields[] = {"steps", "64", NULL};
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
	int progress = 0, last_done = 0;
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
	                 64);
	ck_assert(cJSON_GetObjectItem(doc, "completeness") != NULL);
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
	struct request slow2 = {
	    .path = "/attribute?" SLOW(3000), .image = png, .image_len = png_len};
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
	assert_error(&a1.r, 504, "deadline_exceeded");
	assert_error(&a2.r, 504, "deadline_exceeded");
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
	assert_error(&a1.r, 504, "deadline_exceeded");
	assert_error(&a2.r, 504, "deadline_exceeded");
	reply_free(&a1.r);
	reply_free(&a2.r);
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
	assert_error(&a.r, 504, "deadline_exceeded");
	ck_assert_msg(a.finished - t_start > 2.5, "the explanation ended after %.3f s",
	              a.finished - t_start);
	reply_free(&a.r);
	ck_assert_int_eq(server_terminate(&s, 30), 0);
	unlink(s.log_path);
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
	                                         "IGSERVE_MODEL",
	                                         "IGSERVE_LABELS"};
	for (size_t i = 0; i < sizeof documented / sizeof documented[0]; i++)
		ck_assert_msg(strstr(text, documented[i]) != NULL, "--help lacks %s",
		              documented[i]);

	/* A bad flag or a missing model: a message and a non-zero status. */
	snprintf(cmd, sizeof cmd, "'%s' serve --workers 0 2>&1", bin);
	ck_assert_int_ne(run_command(cmd, text, sizeof text), 0);
	ck_assert(strstr(text, "--workers") != NULL);
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

static Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *unit = tcase_create("multipart");
	tcase_add_test(unit, test_content_type);
	tcase_add_test(unit, test_multipart_parse);
	tcase_add_test(unit, test_cgroup_cpu_limit);
	suite_add_tcase(s, unit);

	TCase *e2e = tcase_create("end-to-end");
	tcase_add_unchecked_fixture(e2e, main_server_up, main_server_down);
	tcase_set_timeout(e2e, 120);
	tcase_add_test(e2e, test_get_endpoints);
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
	suite_add_tcase(s, own);
	return s;
}

int main(void)
{
	setup_paths();
	SRunner *sr = srunner_create(http_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	curl_global_cleanup();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
