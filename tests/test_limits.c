/*
 * test_limits.c - issue 13's findings outside the image stage, each with
 * the input that used to misbehave:
 *   9   blur_sigma is capped (the kernel has 6 sigma taps per pixel);
 *   14  --out files are created exclusively (no symlink followed, nothing
 *       overwritten), --labels refuses a FIFO without blocking, sizes refuse
 *       NaN / infinity / negatives / overflow, a weights file truncated after
 *       it was opened neither crashes (SIGBUS) nor changes what was loaded;
 *   5   top-k selection equals a naive full sort, ties included, on a model
 *       of 21843 classes;
 *   12  a failing oneDNN execution (injected) fails its request with a 500,
 *       and the worker answers the next requests as before.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attribution.h"
#include "cli.h"
#include "conv.h"
#include "file.h"
#include "labels.h"
#include "png_encode.h"
#include "request_options.h"
#include "safetensors.h"
#include "safetensors_writer.h"
#include "service.h"
#include "service_internal.h"

static char tmpdir[256];

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/igs-limits-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static const char *fixture(const char *name)
{
	static char path[512];
	const char *dir = getenv("IGSERVE_FIXTURES");
	ck_assert_ptr_nonnull(dir);
	snprintf(path, sizeof path, "%s/engine/%s", dir, name);
	return path;
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

/* The file holds exactly `want`. */
static void expect_text(const char *path, const char *want)
{
	unsigned char *buf;
	size_t len;
	struct igs_error err = {0};
	ck_assert_msg(file_read_all(path, 0, &buf, &len, &err) == 0, "%s", err.message);
	ck_assert_str_eq((char *)buf, want);
	free(buf);
}

/* ---- 9: blur_sigma -------------------------------------------------------------------------- */

START_TEST(test_blur_sigma_capped)
{
	struct request_options o;
	struct igs_error err = {0};
	request_options_init(&o);
	ck_assert_int_eq(request_options_set(&o, "blur_sigma", "100", 0, &err), 0);
	ck_assert_double_eq(o.attr.blur_sigma, 100.0);
	ck_assert_int_eq(request_options_set(&o, "blur_sigma", "100.5", 0, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_msg(strstr(err.message, "blur_sigma") && strstr(err.message, "100"),
	              "message '%s' names neither the option nor its limit", err.message);
	ck_assert_int_eq(request_options_set(&o, "blur_sigma", "1000", 0, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_double_eq(o.attr.blur_sigma, 100.0); /* unchanged by the refusals */

	/* The baseline itself refuses past the cap, and at it blurs a constant
	 * image to the same constant (the kernel is normalized). */
	enum { SIZE = 12 };
	float x[SIZE * SIZE * 3], out[SIZE * SIZE * 3];
	for (int i = 0; i < SIZE * SIZE * 3; i++)
		x[i] = 77.0f;
	ck_assert_int_eq(attribution_baseline(BASELINE_BLUR, ATTR_BLUR_SIGMA_MAX + 1, 0, x, SIZE,
	                                      out, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_str_eq(err.message, "blur_sigma must be in (0, 100], got 101");
	ck_assert_int_eq(attribution_baseline(BASELINE_BLUR, ATTR_BLUR_SIGMA_MAX, 0, x, SIZE, out,
	                                      &err),
	                 0);
	for (int i = 0; i < SIZE * SIZE * 3; i++)
		ck_assert_float_eq_tol(out[i], 77.0f, 1e-3f);
}
END_TEST

/* ---- 14: sizes ------------------------------------------------------------------------------ */

static int parse_size_flag(const char *value, size_t *out, char *message, size_t mlen)
{
	struct flag f = {.name = "cache-bytes", .type = FLAG_SIZE, .target = out, .metavar = "N",
	                 .help = "test"};
	char arg[128];
	snprintf(arg, sizeof arg, "--cache-bytes=%s", value);
	char *argv[] = {"igserve", arg, NULL};
	const char *positional[1];
	size_t npos;
	struct igs_error err = {0};
	int rc = flags_parse("test", "", &f, 1, 2, argv, positional, 1, &npos, &err);
	snprintf(message, mlen, "%s", err.message);
	return rc;
}

START_TEST(test_sizes_refuse_nan_inf_negative_overflow)
{
	char msg[IGS_ERROR_MESSAGE_MAX];
	size_t v = 0;
	ck_assert_int_eq(parse_size_flag("16M", &v, msg, sizeof msg), 0);
	ck_assert_uint_eq(v, 16u << 20);
	ck_assert_int_eq(parse_size_flag("1.5K", &v, msg, sizeof msg), 0);
	ck_assert_uint_eq(v, 1536);
	ck_assert_int_eq(parse_size_flag("0", &v, msg, sizeof msg), 0);
	ck_assert_uint_eq(v, 0);
	static const char *bad[] = {"nan", "NaN", "-nan", "nanK", "inf", "infinity", "-1",
	                            "-0.5M", "1e300", "1e400", "20000000T", "", "12Q", "0x"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		v = 12345;
		ck_assert_msg(parse_size_flag(bad[i], &v, msg, sizeof msg) == IGS_ERR_BAD_OPTION,
		              "'%s' was taken as a size", bad[i]);
		ck_assert_uint_eq(v, 12345);
		ck_assert_msg(strstr(msg, "--cache-bytes") && strstr(msg, "a size in bytes"),
		              "'%s': message '%s'", bad[i], msg);
	}
}
END_TEST

/* ---- 14: exclusive output files ------------------------------------------------------------- */

START_TEST(test_write_new_never_overwrites_or_follows)
{
	make_tmpdir();
	char path[400], victim[400], link[400], dangling[400];
	struct igs_error err = {0};
	snprintf(path, sizeof path, "%s/a.png", tmpdir);
	snprintf(victim, sizeof victim, "%s/victim", tmpdir);
	snprintf(link, sizeof link, "%s/link.png", tmpdir);
	snprintf(dangling, sizeof dangling, "%s/dangling.png", tmpdir);

	ck_assert_int_eq(file_write_new(path, "one", 3, &err), 0);
	expect_text(path, "one");
	ck_assert_int_eq(file_write_new(path, "two", 3, &err), IGS_ERR_IO);
	ck_assert_msg(strstr(err.message, path) && strstr(err.message, "already exists"), "%s",
	              err.message);
	expect_text(path, "one");

	/* A symbolic link to a file: refused, the target untouched. */
	write_text(victim, "precious");
	ck_assert_int_eq(symlink(victim, link), 0);
	ck_assert_int_eq(file_write_new(link, "evil", 4, &err), IGS_ERR_IO);
	expect_text(victim, "precious");
	/* A dangling one: refused, nothing created where it points. */
	char nowhere[400];
	snprintf(nowhere, sizeof nowhere, "%s/created-through-link", tmpdir);
	ck_assert_int_eq(symlink(nowhere, dangling), 0);
	ck_assert_int_eq(file_write_new(dangling, "evil", 4, &err), IGS_ERR_IO);
	struct stat st;
	ck_assert_int_ne(lstat(nowhere, &st), 0);
	remove_tmpdir();
}
END_TEST

/* Run the binary with argv (NULL-terminated); stderr into `text`; the exit
 * status. */
static int run_igserve(const char *const *argv, char *text, size_t size)
{
	const char *bin = getenv("IGSERVE_BINARY");
	ck_assert_ptr_nonnull(bin);
	char log[400];
	snprintf(log, sizeof log, "%s/stderr.txt", tmpdir);
	pid_t pid = fork();
	if (pid == 0) {
		if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout))
			_exit(99);
		execv(bin, (char *const *)argv);
		_exit(98);
	}
	int status = 0;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status), "igserve died of signal %d", WTERMSIG(status));
	FILE *f = fopen(log, "r");
	size_t len = fread(text, 1, size - 1, f);
	fclose(f);
	text[len] = '\0';
	return WEXITSTATUS(status);
}

/* A 64x64 gray PNG is enough for the 64-pixel fixture model. */
static void write_png_64(const char *path)
{
	uint8_t *pix = calloc(64 * 64, 3);
	memset(pix, 90, 64 * 64 * 3);
	unsigned char *png;
	size_t len;
	ck_assert_int_eq(png_encode(pix, 64, 64, 3, &png, &len, NULL), 0);
	FILE *f = fopen(path, "wb");
	ck_assert_uint_eq(fwrite(png, 1, len, f), len);
	fclose(f);
	free(png);
	free(pix);
}

START_TEST(test_cli_out_refuses_existing_files_before_the_work)
{
	make_tmpdir();
	char image[400], out[400], png[400], victim[400], text[4096];
	snprintf(image, sizeof image, "%s/in.png", tmpdir);
	snprintf(out, sizeof out, "%s/out", tmpdir);
	snprintf(png, sizeof png, "%s/out/overlay.png", tmpdir);
	snprintf(victim, sizeof victim, "%s/victim", tmpdir);
	write_png_64(image);
	const char *bin = getenv("IGSERVE_BINARY");
	const char *argv[] = {bin,   "attribute", "--model", fixture("tv_basic.safetensors"),
	                      "--steps", "2", "--heatmaps", "overlay,magnitude", "--out", out,
	                      image, NULL};

	ck_assert_msg(run_igserve(argv, text, sizeof text) == 0, "first run: %s", text);
	struct stat st;
	ck_assert_int_eq(stat(png, &st), 0);
	ck_assert_int_gt(st.st_size, 0);
	/* Again into the same directory: refused, naming the file. */
	ck_assert_int_eq(run_igserve(argv, text, sizeof text), 1);
	ck_assert_msg(strstr(text, "/out/magnitude.png") && strstr(text, "already exists"), "%s", text);

	/* A symbolic link planted where a heatmap will go is not followed. */
	char cmd[900];
	snprintf(cmd, sizeof cmd, "rm -f '%s'/out/*.png", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
	write_text(victim, "precious");
	ck_assert_int_eq(symlink(victim, png), 0);
	ck_assert_int_eq(run_igserve(argv, text, sizeof text), 1);
	expect_text(victim, "precious");
	remove_tmpdir();
}
END_TEST

/* ---- 14: --labels on a FIFO ----------------------------------------------------------------- */

START_TEST(test_labels_fifo_refused_without_blocking)
{
	make_tmpdir();
	char fifo[400];
	snprintf(fifo, sizeof fifo, "%s/labels.fifo", tmpdir);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	struct labels *l = NULL;
	struct igs_error err = {0};
	/* With no writer, a blocking open would never return (the test would
	 * time out rather than pass). */
	ck_assert_int_eq(labels_open(&l, fifo, 10, &err), IGS_ERR_IO);
	ck_assert_ptr_null(l);
	ck_assert_msg(strstr(err.message, fifo) && strstr(err.message, "not a regular file"),
	              "%s", err.message);
	/* and the CLI says so and exits 1 */
	char text[4096], image[400];
	snprintf(image, sizeof image, "%s/in.png", tmpdir);
	write_png_64(image);
	const char *argv[] = {getenv("IGSERVE_BINARY"), "predict", "--model",
	                      fixture("tv_basic.safetensors"), "--labels", fifo, image, NULL};
	ck_assert_int_eq(run_igserve(argv, text, sizeof text), 1);
	ck_assert_msg(strstr(text, "not a regular file"), "%s", text);
	remove_tmpdir();
}
END_TEST

/* ---- 14: a weights file truncated after opening --------------------------------------------- */

START_TEST(test_weights_truncated_after_open)
{
	make_tmpdir();
	char path[400], cmd[1000];
	snprintf(path, sizeof path, "%s/w.safetensors", tmpdir);
	snprintf(cmd, sizeof cmd, "cp '%s' '%s'", fixture("tv_basic.safetensors"), path);
	ck_assert_int_eq(system(cmd), 0);

	struct st_file *ref = NULL, *f = NULL;
	struct igs_error err = {0};
	ck_assert_int_eq(safetensors_open(&ref, fixture("tv_basic.safetensors"), &err), 0);
	ck_assert_int_eq(safetensors_open(&f, path, &err), 0);
	/* Cut to 8 bytes: a mapping's pages would now raise SIGBUS. */
	ck_assert_int_eq(truncate(path, 8), 0);
	ck_assert_str_eq(safetensors_sha256(f), safetensors_sha256(ref));
	ck_assert_uint_eq(safetensors_count(f), safetensors_count(ref));
	for (size_t i = 0; i < safetensors_count(f); i++) {
		const struct st_tensor *a = safetensors_at(f, i), *b = safetensors_at(ref, i);
		ck_assert_str_eq(a->name, b->name);
		ck_assert_uint_eq(a->nbytes, b->nbytes);
		ck_assert_int_eq(memcmp(a->data, b->data, a->nbytes), 0);
	}
	safetensors_close(&f);
	safetensors_close(&ref);
	/* Opened now, the cut file is refused with a message. */
	ck_assert_int_eq(safetensors_open(&f, path, &err), IGS_ERR_FORMAT);
	ck_assert_ptr_nonnull(strstr(err.message, path));
	remove_tmpdir();
}
END_TEST

/* ---- 5: top-k ------------------------------------------------------------------------------- */

/* tv_basic with its classifier widened to `classes` outputs (random
 * weights), written to `path`. */
static void write_wide_model(const char *path, int classes)
{
	struct st_file *src = NULL;
	struct igs_error err = {0};
	ck_assert_int_eq(safetensors_open(&src, fixture("tv_basic.safetensors"), &err), 0);
	size_t n = safetensors_count(src);
	struct st_write_tensor *out = calloc(n, sizeof *out);
	float **bufs = calloc(n, sizeof *bufs);
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		const struct st_tensor *t = safetensors_at(src, i);
		if (t->dtype != ST_F32)
			continue; /* num_batches_tracked */
		struct st_write_tensor *w = &out[m];
		w->name = t->name;
		w->ndim = t->ndim;
		w->dtype = ST_F32;
		size_t numel = 1;
		for (int d = 0; d < t->ndim; d++)
			numel *= (size_t)(w->shape[d] = t->shape[d]);
		if (!strcmp(t->name, "fc.weight") || !strcmp(t->name, "fc.bias")) {
			w->shape[0] = classes;
			numel = numel / (size_t)t->shape[0] * (size_t)classes;
			bufs[m] = malloc(numel * sizeof(float));
			for (size_t k = 0; k < numel; k++)
				bufs[m][k] = (float)((k * 2654435761u) % 1000) / 1000.0f - 0.5f;
		} else {
			bufs[m] = malloc(numel * sizeof(float));
			ck_assert_int_eq(safetensors_read_f32(t, bufs[m], &err), 0);
		}
		w->data = bufs[m];
		m++;
	}
	ck_assert_msg(safetensors_write(path, out, m, &err) == 0, "%s", err.message);
	for (size_t i = 0; i < m; i++)
		free(bufs[i]);
	free(bufs);
	free(out);
	safetensors_close(&src);
}

static const float *sort_logits;

static int by_rank(const void *a, const void *b)
{
	int i = *(const int *)a, j = *(const int *)b;
	if (sort_logits[i] != sort_logits[j])
		return sort_logits[i] > sort_logits[j] ? -1 : 1;
	return (i > j) - (i < j);
}

START_TEST(test_top_k_matches_full_sort)
{
	enum { CLASSES = 21843 };
	make_tmpdir();
	char path[400];
	snprintf(path, sizeof path, "%s/wide.safetensors", tmpdir);
	write_wide_model(path, CLASSES);
	struct service_config cfg = {.model_path = path};
	struct service *s = NULL;
	struct igs_error err = {0};
	ck_assert_msg(service_open(&s, &cfg, &err) == 0, "%s", err.message);

	float *logits = malloc(CLASSES * sizeof *logits);
	int *order = malloc(CLASSES * sizeof *order);
	uint32_t state = 99;
	for (int trial = 0; trial < 3; trial++) {
		/* trial 0: few distinct values (ties everywhere); 1: continuous;
		 * 2: all equal */
		for (int c = 0; c < CLASSES; c++) {
			state = state * 1664525u + 1013904223u;
			logits[c] = trial == 0   ? (float)(state >> 28)
			            : trial == 1 ? (float)(state >> 8) / (1u << 24) * 20.0f - 10.0f
			                         : 3.0f;
			order[c] = c;
		}
		sort_logits = logits;
		qsort(order, CLASSES, sizeof *order, by_rank);
		static const int ks[] = {1, 2, 5, 17, 1000, CLASSES - 1, CLASSES, CLASSES + 7, 0};
		for (size_t q = 0; q < sizeof ks / sizeof *ks; q++) {
			struct prediction *top = NULL;
			int count = 0;
			ck_assert_int_eq(service_top_k(s, logits, 0, ks[q], &top, &count, &err), 0);
			int want = ks[q] < 1 ? 1 : ks[q] > CLASSES ? CLASSES : ks[q];
			ck_assert_int_eq(count, want);
			double psum = 0;
			for (int i = 0; i < count; i++) {
				ck_assert_msg(top[i].index == order[i],
				              "trial %d k %d: rank %d is class %d, the sort says %d", trial,
				              ks[q], i, top[i].index, order[i]);
				ck_assert_double_eq(top[i].logit, logits[order[i]]);
				psum += top[i].probability;
			}
			if (count == CLASSES)
				ck_assert_double_eq_tol(psum, 1.0, 1e-4);
			free(top);
		}
	}
	free(logits);
	free(order);
	service_close(&s);
	remove_tmpdir();
}
END_TEST

/* ---- 12: a oneDNN execution failure fails the request, not the process -------------------- */

static unsigned char *png_bytes_64(size_t *len)
{
	uint8_t *pix = malloc(64 * 64 * 3);
	for (int i = 0; i < 64 * 64 * 3; i++)
		pix[i] = (uint8_t)(i * 37 % 251);
	unsigned char *png;
	ck_assert_int_eq(png_encode(pix, 64, 64, 3, &png, len, NULL), 0);
	free(pix);
	return png;
}

START_TEST(test_engine_failure_is_the_requests_error)
{
	struct service_config cfg = {.model_path = fixture("tv_basic.safetensors")};
	struct service *s = NULL;
	struct service_worker *w = NULL;
	struct igs_error err = {0};
	ck_assert_msg(service_open(&s, &cfg, &err) == 0, "%s", err.message);
	ck_assert_msg(service_worker_open(&w, s, &err) == 0, "%s", err.message);
	size_t len;
	unsigned char *png = png_bytes_64(&len);
	struct request_options o;
	request_options_init(&o);
	o.attr.steps = 8;

	struct predict_result good, again;
	ck_assert_msg(service_predict(w, png, len, &o, NULL, &good, &err) == 0, "%s", err.message);
	conv_inject_failure(2); /* the second convolution of the pass */
	struct predict_result bad = {0};
	ck_assert_int_eq(service_predict(w, png, len, &o, NULL, &bad, &err), IGS_ERR_INTERNAL);
	ck_assert_int_eq(igs_code_http_status(err.code), 500);
	/* The worker is still good: the same answer as before. */
	ck_assert_msg(service_predict(w, png, len, &o, NULL, &again, &err) == 0, "%s", err.message);
	ck_assert_int_eq(again.count, good.count);
	for (int i = 0; i < good.count; i++) {
		ck_assert_int_eq(again.top[i].index, good.top[i].index);
		ck_assert_double_eq(again.top[i].logit, good.top[i].logit);
	}
	predict_result_clear(&good);
	predict_result_clear(&again);

	/* The same in an attribution, in the forward and in the backward passes. */
	struct attribute_result ref, res;
	ck_assert_msg(service_attribute(w, png, len, &o, NULL, &ref, &err) == 0, "%s",
	              err.message);
	for (int n = 1; n <= 40; n += 13) {
		conv_inject_failure(n);
		ck_assert_int_eq(service_attribute(w, png, len, &o, NULL, &res, &err),
		                 IGS_ERR_INTERNAL);
		ck_assert_msg(strstr(err.message, "network"), "%s", err.message);
		conv_inject_failure(0);
		ck_assert_msg(service_attribute(w, png, len, &o, NULL, &res, &err) == 0, "%s",
		              err.message);
		size_t values = (size_t)res.attr.size * res.attr.size * 3;
		ck_assert_int_eq(memcmp(res.attr.attr, ref.attr.attr, values * sizeof(float)), 0);
		attribute_result_clear(&res);
	}
	attribute_result_clear(&ref);
	free(png);
	service_worker_close(&w);
	service_close(&s);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("limits");
	TCase *tc = tcase_create("limits");
	tcase_add_test(tc, test_blur_sigma_capped);
	tcase_add_test(tc, test_sizes_refuse_nan_inf_negative_overflow);
	tcase_add_test(tc, test_write_new_never_overwrites_or_follows);
	tcase_add_test(tc, test_cli_out_refuses_existing_files_before_the_work);
	tcase_add_test(tc, test_labels_fifo_refused_without_blocking);
	tcase_add_test(tc, test_weights_truncated_after_open);
	tcase_add_test(tc, test_top_k_matches_full_sort);
	tcase_add_test(tc, test_engine_failure_is_the_requests_error);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
