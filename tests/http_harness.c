/*
 * http_harness.c - see http_harness.h.
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

#include "http_harness.h"


/* ================================================================ */
/* helpers: files, images                                            */
/* ================================================================ */

char model_path[4096];
char fixtures[2048];

double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
	nanosleep(&ts, NULL);
}

char *read_file(const char *path, size_t *len)
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
unsigned char *test_pixels(int w, int h, int seed)
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

void *make_png(int w, int h, int seed, size_t *len)
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

void *make_jpeg(int w, int h, int seed, size_t *len)
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


/* Start `igserve serve` with `model` and `extra` flags (NULL-terminated);
 * wait for its port, and for /readyz when `wait_ready`. */
void server_spawn_model(struct server_proc *s, const char *model, const char *const *extra,
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
void server_spawn(struct server_proc *s, const char *const *extra)
{
	server_spawn_model(s, model_path, extra, true);
}

/* Sanitizer builds report into the server's log: there must be none. */
void assert_clean_log(const char *path)
{
	char *log = read_file(path, NULL);
	bool clean = !log || (!strstr(log, "runtime error:") && !strstr(log, "Sanitizer"));
	if (!clean)
		fprintf(stderr, "the server log has sanitizer reports:\n%s\n", log);
	free(log);
	ck_assert_msg(clean, "the server log has sanitizer reports (printed above)");
}

/* SIGTERM and wait; returns the exit status (or -1 on timeout/signal). */
int server_terminate(struct server_proc *s, double timeout_s)
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

void reply_free(struct reply *r)
{
	free(r->body);
	free(r->headers);
	memset(r, 0, sizeof *r);
}


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

void http(int port, const struct request *q, struct reply *r)
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
	for (const char *const *h = q->headers; h && *h; h++)
		hdrs = curl_slist_append(hdrs, *h);
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

long http_status_get(int port, const char *path)
{
	struct request q = {.path = path, .timeout_ms = 5000};
	struct reply r;
	http(port, &q, &r);
	long s = r.status;
	reply_free(&r);
	return s;
}

/* The error code of an error document, checking its shape. */
void assert_error(const struct reply *r, long status, const char *code)
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

bool has_header(const struct reply *r, const char *name_value)
{
	size_t n = strlen(name_value);
	for (const char *h = r->headers; *h; h++)
		if (!strncasecmp(h, name_value, n))
			return true;
	return false;
}

/* A sample's value from /metrics: the first line starting with `prefix`. */
double metric(int port, const char *prefix)
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


static void *async_main(void *arg)
{
	struct async *a = arg;
	http(a->port, &a->q, &a->r);
	a->finished = now_s();
	return NULL;
}

void async_start(struct async *a, int port, const struct request *q)
{
	a->port = port;
	a->q = *q;
	ck_assert_int_eq(pthread_create(&a->thread, NULL, async_main, a), 0);
}

void async_wait(struct async *a)
{
	pthread_join(a->thread, NULL);
}

/* Wait until a metric reaches `value` (within timeout_s). */
bool metric_wait(int port, const char *prefix, double value, double timeout_s)
{
	double t0 = now_s();
	while (now_s() - t0 < timeout_s) {
		if (metric(port, prefix) >= value)
			return true;
		sleep_s(0.02);
	}
	return false;
}


/* The "predictions" array printed compactly, for exact comparison. */
char *predictions_text(const char *json)
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
int run_command(const char *cmd, char *text, size_t size)
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
void assert_predictions_close(const char *json_a, const char *json_b)
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



void setup_paths(void)
{
	const char *f = getenv("IGSERVE_FIXTURES");
	snprintf(fixtures, sizeof fixtures, "%s", f ? f : "tests/fixtures");
	snprintf(model_path, sizeof model_path, "%s/engine/tv_basic.safetensors", fixtures);
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

void assert_stopped_at_deadline(const struct reply *r)
{
	if (r->status == 504) {
		assert_error(r, 504, "deadline_exceeded");
		return;
	}
	ck_assert_msg(r->status == 200, "status %ld at the deadline", r->status);
	cJSON *doc = cJSON_Parse(r->body);
	ck_assert(doc != NULL);
	cJSON *method = cJSON_GetObjectItemCaseSensitive(doc, "method");
	cJSON *stopped = cJSON_GetObjectItemCaseSensitive(method, "stopped");
	ck_assert(cJSON_IsString(stopped));
	ck_assert_str_eq(stopped->valuestring, "deadline");
	ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(method, "converged")));
	cJSON_Delete(doc);
}
