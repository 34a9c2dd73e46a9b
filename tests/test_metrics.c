/*
 * test_metrics.c - metrics_render after known events: the text is parsed
 * back here (a small reader of the Prometheus text format 0.0.4) and
 * checked for form - HELP and TYPE before every family's samples, valid
 * names, label values escaped, histogram buckets increasing up to +Inf
 * equal to _count - and for content: every counter and bucket equals what
 * a naive count of the recorded events gives.
 */
#include <check.h>
#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "routes.h"

/* ---- a reader of the exposition format ---- */

#define MAX_SAMPLES 1024
#define MAX_FAMILIES 64
#define MAX_LABELS 8

struct sample {
	char name[96];
	int n_labels;
	char key[MAX_LABELS][32];
	char value_text[MAX_LABELS][256]; /* unescaped */
	double value;
	int family; /* index into families */
};

struct family {
	char name[96];
	char type[16];
	bool has_help;
};

struct exposition {
	struct sample samples[MAX_SAMPLES];
	int n_samples;
	struct family families[MAX_FAMILIES];
	int n_families;
};

static bool valid_name(const char *s, bool colon_ok)
{
	if (!*s || !(isalpha((unsigned char)*s) || *s == '_' || (colon_ok && *s == ':')))
		return false;
	for (; *s; s++)
		if (!(isalnum((unsigned char)*s) || *s == '_' || (colon_ok && *s == ':')))
			return false;
	return true;
}

static int family_find(const struct exposition *x, const char *name)
{
	for (int i = 0; i < x->n_families; i++)
		if (!strcmp(x->families[i].name, name))
			return i;
	return -1;
}

/* The family a sample belongs to: its name, or without a histogram's suffix. */
static int family_of_sample(const struct exposition *x, const char *name)
{
	int f = family_find(x, name);
	if (f >= 0)
		return f;
	static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
	for (int i = 0; i < 3; i++) {
		size_t n = strlen(name), k = strlen(suffixes[i]);
		if (n > k && !strcmp(name + n - k, suffixes[i])) {
			char base[96];
			snprintf(base, sizeof base, "%.*s", (int)(n - k), name);
			f = family_find(x, base);
			if (f >= 0 && !strcmp(x->families[f].type, "histogram"))
				return f;
		}
	}
	return -1;
}

/* Parse one sample line; fails the test with the line on any error. */
static void parse_sample(struct exposition *x, const char *line, int last_family)
{
	ck_assert_int_lt(x->n_samples, MAX_SAMPLES);
	struct sample *s = &x->samples[x->n_samples++];
	memset(s, 0, sizeof *s);
	const char *p = line;
	size_t n = strcspn(p, "{ ");
	ck_assert_msg(n > 0 && n < sizeof s->name, "bad sample line: %s", line);
	memcpy(s->name, p, n);
	ck_assert_msg(valid_name(s->name, true), "bad metric name in: %s", line);
	p += n;
	if (*p == '{') {
		p++;
		while (*p != '}') {
			ck_assert_int_lt(s->n_labels, MAX_LABELS);
			size_t k = strcspn(p, "=");
			ck_assert_msg(k > 0 && k < 32 && p[k] == '=', "bad label in: %s", line);
			memcpy(s->key[s->n_labels], p, k);
			ck_assert_msg(valid_name(s->key[s->n_labels], false), "bad label name in: %s",
			              line);
			p += k + 1;
			ck_assert_msg(*p == '"', "label value not quoted in: %s", line);
			p++;
			size_t v = 0;
			for (; *p != '"'; p++) {
				ck_assert_msg(*p && *p != '\n', "unterminated label value in: %s", line);
				char c = *p;
				if (c == '\\') {
					p++;
					ck_assert_msg(*p == '\\' || *p == '"' || *p == 'n',
					              "bad escape in: %s", line);
					c = *p == 'n' ? '\n' : *p;
				}
				ck_assert_uint_lt(v, sizeof s->value_text[0] - 1);
				s->value_text[s->n_labels][v++] = c;
			}
			p++; /* closing quote */
			s->n_labels++;
			if (*p == ',')
				p++;
			else
				ck_assert_msg(*p == '}', "expected ',' or '}' in: %s", line);
		}
		p++;
	}
	ck_assert_msg(*p == ' ', "no space before the value in: %s", line);
	p++;
	char *end;
	if (!strcmp(p, "+Inf"))
		s->value = INFINITY;
	else {
		s->value = strtod(p, &end);
		ck_assert_msg(end != p && *end == '\0', "bad value in: %s", line);
	}
	s->family = family_of_sample(x, s->name);
	ck_assert_msg(s->family >= 0, "sample before its # TYPE: %s", line);
	ck_assert_msg(s->family == last_family, "sample away from its family's block: %s", line);
	ck_assert_msg(x->families[s->family].has_help, "family without # HELP: %s", line);
}

static void parse_exposition(struct exposition *x, char *text, size_t len)
{
	memset(x, 0, sizeof *x);
	ck_assert_uint_eq(strlen(text), len);
	ck_assert_msg(len > 0 && text[len - 1] == '\n', "the text must end with a newline");
	int last_family = -1;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7)) {
			bool help = line[2] == 'H';
			char name[96];
			const char *rest = line + 7;
			size_t n = strcspn(rest, " ");
			ck_assert_msg(n > 0 && n < sizeof name && rest[n] == ' ', "bad comment: %s", line);
			snprintf(name, sizeof name, "%.*s", (int)n, rest);
			ck_assert_msg(valid_name(name, true), "bad family name: %s", line);
			int f = family_find(x, name);
			if (f < 0) {
				ck_assert_int_lt(x->n_families, MAX_FAMILIES);
				f = x->n_families++;
				snprintf(x->families[f].name, sizeof x->families[f].name, "%s", name);
			} else {
				ck_assert_msg(f == last_family, "family %s described twice", name);
			}
			last_family = f;
			if (help) {
				ck_assert_msg(!x->families[f].has_help, "two HELP lines for %s", name);
				ck_assert_msg(rest[n + 1] != '\0', "empty HELP for %s", name);
				x->families[f].has_help = true;
			} else {
				ck_assert_msg(!x->families[f].type[0], "two TYPE lines for %s", name);
				const char *type = rest + n + 1;
				ck_assert_msg(!strcmp(type, "counter") || !strcmp(type, "gauge") ||
				                  !strcmp(type, "histogram"),
				              "bad TYPE: %s", line);
				snprintf(x->families[f].type, sizeof x->families[f].type, "%s", type);
			}
			continue;
		}
		ck_assert_msg(line[0] != '#', "unknown comment: %s", line);
		ck_assert_msg(line[0] != '\0', "empty line");
		parse_sample(x, line, last_family);
	}
	for (int f = 0; f < x->n_families; f++)
		ck_assert_msg(x->families[f].type[0], "family %s without TYPE", x->families[f].name);
}

static const char *label(const struct sample *s, const char *key)
{
	for (int i = 0; i < s->n_labels; i++)
		if (!strcmp(s->key[i], key))
			return s->value_text[i];
	return NULL;
}

/* Whether s carries exactly the given label pairs (besides "le"); NULL-terminated. */
static bool labels_are(const struct sample *s, const char *const *pairs)
{
	int want = 0;
	for (; pairs && pairs[2 * want]; want++) {
		const char *v = label(s, pairs[2 * want]);
		if (!v || strcmp(v, pairs[2 * want + 1]))
			return false;
	}
	int have = s->n_labels - (label(s, "le") ? 1 : 0);
	return have == want;
}

/* The value of the one sample named `name` with these labels; fails if absent or repeated. */
static double value_of(const struct exposition *x, const char *name, const char *const *pairs)
{
	int found = -1;
	for (int i = 0; i < x->n_samples; i++)
		if (!strcmp(x->samples[i].name, name) && labels_are(&x->samples[i], pairs) &&
		    !label(&x->samples[i], "le")) {
			ck_assert_msg(found < 0, "%s repeated", name);
			found = i;
		}
	ck_assert_msg(found >= 0, "no sample %s", name);
	return x->samples[found].value;
}

static bool has_sample(const struct exposition *x, const char *name, const char *const *pairs)
{
	for (int i = 0; i < x->n_samples; i++)
		if (!strcmp(x->samples[i].name, name) && labels_are(&x->samples[i], pairs))
			return true;
	return false;
}

#define LABELS(...) ((const char *const[]){__VA_ARGS__, NULL})

/*
 * Check the histogram `name` with these labels: buckets in increasing le,
 * counts not decreasing, the last +Inf and equal to _count, each bucket
 * equal to the number of `observed` values <= le, _sum their finite sum.
 */
static void check_histogram(const struct exposition *x, const char *name,
                            const char *const *pairs, const double *observed, int n_observed)
{
	char bucket[128], sum[128], count[128];
	snprintf(bucket, sizeof bucket, "%s_bucket", name);
	snprintf(sum, sizeof sum, "%s_sum", name);
	snprintf(count, sizeof count, "%s_count", name);
	double last_le = -INFINITY, last_count = 0;
	int buckets = 0;
	bool saw_inf = false;
	for (int i = 0; i < x->n_samples; i++) {
		const struct sample *s = &x->samples[i];
		if (strcmp(s->name, bucket) || !labels_are(s, pairs))
			continue;
		const char *le_text = label(s, "le");
		ck_assert_msg(le_text != NULL, "%s without le", bucket);
		ck_assert_msg(!saw_inf, "%s: a bucket after +Inf", bucket);
		double le;
		if (!strcmp(le_text, "+Inf")) {
			le = INFINITY;
			saw_inf = true;
		} else {
			char *end;
			le = strtod(le_text, &end);
			ck_assert_msg(*end == '\0' && isfinite(le), "%s: bad le '%s'", bucket, le_text);
		}
		ck_assert_msg(le > last_le, "%s: le %s not increasing", bucket, le_text);
		ck_assert_msg(s->value >= last_count, "%s: count falls at le %s", bucket, le_text);
		ck_assert_msg(s->value == floor(s->value), "%s: count not whole", bucket);
		int want = 0;
		for (int k = 0; k < n_observed; k++)
			want += observed[k] <= le || isinf(le);
		ck_assert_msg(s->value == want, "%s{le=%s} is %g, %d observed values are <= it", bucket,
		              le_text, s->value, want);
		last_le = le;
		last_count = s->value;
		buckets++;
	}
	ck_assert_msg(saw_inf, "%s: no +Inf bucket", bucket);
	ck_assert_int_ge(buckets, 2);
	ck_assert_msg(value_of(x, count, pairs) == last_count, "%s != +Inf bucket", count);
	ck_assert_msg(last_count == n_observed, "%s: %g, expected %d", count, last_count, n_observed);
	double want_sum = 0;
	for (int k = 0; k < n_observed; k++)
		if (isfinite(observed[k]))
			want_sum += observed[k];
	double got_sum = value_of(x, sum, pairs);
	ck_assert_msg(fabs(got_sum - want_sum) <= 1e-8 * (1 + fabs(want_sum)), "%s %g, expected %g",
	              sum, got_sum, want_sum);
}

static char *render(struct metrics *m, const struct metrics_gauges *g, struct exposition *x)
{
	size_t len = 0;
	char *text = metrics_render(m, g, &len);
	ck_assert_ptr_nonnull(text);
	char *copy = strdup(text); /* parsing cuts the text into lines */
	parse_exposition(x, copy, len);
	free(copy);
	return text;
}

static struct exposition expo; /* large: not on the stack */

/* ---- tests ---- */

START_TEST(test_fresh_metrics)
{
	struct metrics *m = NULL;
	ck_assert_int_eq(metrics_open(&m), 0);
	struct metrics_gauges g = {.workers = 2, .arch = "resnet18", .family = "torchvision",
	                           .sha256 = "abc", .path = "m.safetensors"};
	char *text = render(m, &g, &expo);
	/* no request counted yet: no requests_total samples, but the family is described */
	int f = family_find(&expo, "igserve_requests_total");
	ck_assert_int_ge(f, 0);
	ck_assert_str_eq(expo.families[f].type, "counter");
	ck_assert(!has_sample(&expo, "igserve_requests_total", NULL));
	/* predict and attribute latency are always there, empty */
	check_histogram(&expo, "igserve_request_duration_seconds", LABELS("endpoint", "/predict"),
	                NULL, 0);
	check_histogram(&expo, "igserve_request_duration_seconds", LABELS("endpoint", "/attribute"),
	                NULL, 0);
	ck_assert(!has_sample(&expo, "igserve_request_duration_seconds_count",
	                      LABELS("endpoint", "/healthz")));
	check_histogram(&expo, "igserve_ig_steps", NULL, NULL, 0);
	ck_assert_double_eq(value_of(&expo, "igserve_attributions_total", NULL), 0);
	ck_assert_double_eq(value_of(&expo, "igserve_workers", NULL), 2);
	ck_assert_double_eq(value_of(&expo, "igserve_ready", NULL), 0);
	free(text);
	metrics_close(&m);
	ck_assert_ptr_null(m);
	metrics_close(&m); /* twice is harmless */
}
END_TEST

START_TEST(test_counts_match_events)
{
	struct metrics *m = NULL;
	ck_assert_int_eq(metrics_open(&m), 0);

	/* requests: endpoint, status, seconds */
	static const double predict_s[] = {0.004, 0.005, 0.2, 0.2, 1.0, 70, 500};
	for (int i = 0; i < 7; i++)
		metrics_request(m, EP_PREDICT, 200, predict_s[i]);
	metrics_request(m, EP_PREDICT, 429, 0.001);
	metrics_request(m, EP_PREDICT, 302, 0.002); /* not in the status list: "other" */
	static const double attribute_s[] = {3.0, 40, 0.7};
	metrics_request(m, EP_ATTRIBUTE, 200, attribute_s[0]);
	metrics_request(m, EP_ATTRIBUTE, 200, attribute_s[1]);
	metrics_request(m, EP_ATTRIBUTE, 504, attribute_s[2]);
	metrics_request(m, EP_HEALTHZ, 200, 0.0001);
	metrics_request(m, (enum endpoint)(EP_COUNT + 3), 404, 0.0002); /* out of range: other */
	metrics_request(m, EP_OTHER, 404, 0.0003);

	/* attributions: steps, relative error, converged */
	metrics_attribution(m, 16, 1e-6, true);
	metrics_attribution(m, 50, 0.03, true);
	metrics_attribution(m, 50, NAN, false);  /* no error known: not in the histogram */
	metrics_attribution(m, 600, 2.0, false); /* above every bound: +Inf only */
	metrics_attribution(m, 0, 0.001, true);  /* saliency: no steps */
	metrics_cancelled(m);
	metrics_cancelled(m);
	metrics_rejected(m, 0);
	metrics_rejected(m, 0);
	metrics_rejected(m, 0);
	metrics_rejected(m, 1);
	metrics_rejected(m, 7); /* any non-zero kind is the attribute queue */

	struct metrics_gauges g = {.queue_depth = {3, 1}, .inflight = 5, .running = 2,
	                           .workers = 2, .ready = true, .classes = 10, .input_size = 64,
	                           .arch = "resnet18", .family = "torchvision",
	                           .sha256 = "0123abcd", .path = "/models/m.safetensors"};
	char *text = render(m, &g, &expo);

	const char *req = "igserve_requests_total";
	ck_assert_double_eq(value_of(&expo, req, LABELS("endpoint", "/predict", "status", "200")), 7);
	ck_assert_double_eq(value_of(&expo, req, LABELS("endpoint", "/predict", "status", "429")), 1);
	ck_assert_double_eq(value_of(&expo, req, LABELS("endpoint", "/predict", "status", "other")),
	                    1);
	ck_assert_double_eq(value_of(&expo, req, LABELS("endpoint", "/attribute", "status", "200")),
	                    2);
	ck_assert_double_eq(value_of(&expo, req, LABELS("endpoint", "/attribute", "status", "504")),
	                    1);
	ck_assert_double_eq(value_of(&expo, req, LABELS("endpoint", "/healthz", "status", "200")), 1);
	ck_assert_double_eq(value_of(&expo, req, LABELS("endpoint", "other", "status", "404")), 2);
	ck_assert(!has_sample(&expo, req, LABELS("endpoint", "/readyz", "status", "200")));
	/* every requests_total sample is one of those seven */
	int n_req = 0;
	for (int i = 0; i < expo.n_samples; i++)
		n_req += !strcmp(expo.samples[i].name, req);
	ck_assert_int_eq(n_req, 7);

	const char *dur = "igserve_request_duration_seconds";
	const double predict_all[] = {0.004, 0.005, 0.2, 0.2, 1.0, 70, 500, 0.001, 0.002};
	check_histogram(&expo, dur, LABELS("endpoint", "/predict"), predict_all, 9);
	check_histogram(&expo, dur, LABELS("endpoint", "/attribute"), attribute_s, 3);
	const double healthz[] = {0.0001};
	check_histogram(&expo, dur, LABELS("endpoint", "/healthz"), healthz, 1);
	const double other[] = {0.0002, 0.0003};
	check_histogram(&expo, dur, LABELS("endpoint", "other"), other, 2);

	const double steps[] = {16, 50, 50, 600};
	check_histogram(&expo, "igserve_ig_steps", NULL, steps, 4);
	ck_assert_double_eq(value_of(&expo, "igserve_ig_steps_total", NULL), 16 + 50 + 50 + 600);
	const double errors[] = {1e-6, 0.03, 2.0, 0.001};
	check_histogram(&expo, "igserve_completeness_relative_error", NULL, errors, 4);
	ck_assert_double_eq(value_of(&expo, "igserve_attributions_total", NULL), 5);
	ck_assert_double_eq(value_of(&expo, "igserve_attributions_not_converged_total", NULL), 2);
	ck_assert_double_eq(value_of(&expo, "igserve_jobs_cancelled_total", NULL), 2);
	ck_assert_double_eq(
	    value_of(&expo, "igserve_jobs_rejected_total", LABELS("queue", "predict")), 3);
	ck_assert_double_eq(
	    value_of(&expo, "igserve_jobs_rejected_total", LABELS("queue", "attribute")), 2);

	ck_assert_double_eq(value_of(&expo, "igserve_queue_depth", LABELS("queue", "predict")), 3);
	ck_assert_double_eq(value_of(&expo, "igserve_queue_depth", LABELS("queue", "attribute")), 1);
	ck_assert_double_eq(value_of(&expo, "igserve_inflight_jobs", NULL), 5);
	ck_assert_double_eq(value_of(&expo, "igserve_running_jobs", NULL), 2);
	ck_assert_double_eq(value_of(&expo, "igserve_workers", NULL), 2);
	ck_assert_double_eq(value_of(&expo, "igserve_ready", NULL), 1);
	ck_assert_double_eq(value_of(&expo, "igserve_draining", NULL), 0);
	ck_assert_double_eq(value_of(&expo, "igserve_model_info",
	                             LABELS("arch", "resnet18", "family", "torchvision", "classes",
	                                    "10", "input_size", "64", "sha256", "0123abcd", "path",
	                                    "/models/m.safetensors")),
	                    1);

	/* types as the names promise: counters end in _total */
	for (int f = 0; f < expo.n_families; f++) {
		const struct family *fam = &expo.families[f];
		size_t n = strlen(fam->name);
		bool total = n > 6 && !strcmp(fam->name + n - 6, "_total");
		ck_assert_msg(total == !strcmp(fam->type, "counter"), "%s is a %s", fam->name,
		              fam->type);
		ck_assert_msg(!strncmp(fam->name, "igserve_", 8), "%s lacks the prefix", fam->name);
	}
	/* counters are never negative */
	for (int i = 0; i < expo.n_samples; i++)
		ck_assert_msg(expo.samples[i].value >= 0, "%s is negative", expo.samples[i].name);
	free(text);
	metrics_close(&m);
}
END_TEST

/* Draining reads as not ready, and label values with quotes, backslashes and newlines survive. */
START_TEST(test_gauges_and_label_escaping)
{
	struct metrics *m = NULL;
	ck_assert_int_eq(metrics_open(&m), 0);
	const char *arch = "res\"net\\18";
	const char *path = "C:\\models\\a \"b\"\nnext line.safetensors";
	struct metrics_gauges g = {.ready = true, .draining = true, .arch = arch, .family = NULL,
	                           .sha256 = "", .path = path};
	char *text = render(m, &g, &expo);
	ck_assert_double_eq(value_of(&expo, "igserve_ready", NULL), 0);
	ck_assert_double_eq(value_of(&expo, "igserve_draining", NULL), 1);
	/* the raw text escapes; the parsed value is the original */
	ck_assert_ptr_nonnull(strstr(text, "arch=\"res\\\"net\\\\18\""));
	ck_assert_ptr_nonnull(strstr(text, "path=\"C:\\\\models\\\\a \\\"b\\\"\\nnext line.safetensors\""));
	ck_assert_double_eq(value_of(&expo, "igserve_model_info",
	                             LABELS("arch", arch, "family", "", "classes", "0", "input_size",
	                                    "0", "sha256", "", "path", path)),
	                    1);
	free(text);
	metrics_close(&m);
}
END_TEST

/* Many events: counts stay exact, and the text grows past its first buffer. */
START_TEST(test_many_events)
{
	struct metrics *m = NULL;
	ck_assert_int_eq(metrics_open(&m), 0);
	enum { N = 2000 };
	static double seconds[N];
	for (int i = 0; i < N; i++) {
		seconds[i] = (i % 97) * 0.37; /* 0 .. 35.5 s, every bucket edge region */
		metrics_request(m, EP_ATTRIBUTE, i % 3 ? 200 : 503, seconds[i]);
	}
	/* a value on a bucket's bound counts in that bucket (le is <=) */
	static double exact[] = {0.005, 0.01, 1, 120};
	for (int i = 0; i < 4; i++)
		metrics_request(m, EP_MODEL, 200, exact[i]);
	/* one request on each other endpoint: every latency histogram is drawn */
	for (int e = 0; e < EP_COUNT; e++)
		if (e != EP_ATTRIBUTE && e != EP_MODEL)
			metrics_request(m, (enum endpoint)e, 200, 0.5);
	struct metrics_gauges g = {.arch = "a", .family = "f", .sha256 = "s", .path = "p"};
	size_t len = 0;
	char *text = render(m, &g, &expo);
	free(text);
	text = metrics_render(m, &g, &len);
	ck_assert_uint_gt(len, 8192); /* longer than the first buffer */
	free(text);
	const double half[] = {0.5};
	check_histogram(&expo, "igserve_request_duration_seconds", LABELS("endpoint", "/"), half, 1);
	check_histogram(&expo, "igserve_request_duration_seconds", LABELS("endpoint", "/attribute"),
	                seconds, N);
	check_histogram(&expo, "igserve_request_duration_seconds", LABELS("endpoint", "/v1/model"),
	                exact, 4);
	int ok = 0, unavailable = 0;
	for (int i = 0; i < N; i++) {
		if (i % 3)
			ok++;
		else
			unavailable++;
	}
	ck_assert_double_eq(value_of(&expo, "igserve_requests_total",
	                             LABELS("endpoint", "/attribute", "status", "200")),
	                    ok);
	ck_assert_double_eq(value_of(&expo, "igserve_requests_total",
	                             LABELS("endpoint", "/attribute", "status", "503")),
	                    unavailable);
	metrics_close(&m);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_fresh_metrics);
	tcase_add_test(tc, test_counts_match_events);
	tcase_add_test(tc, test_gauges_and_label_escaping);
	tcase_add_test(tc, test_many_events);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
