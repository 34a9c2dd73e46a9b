/*
 * test_tf_model.c - TensorFlow checkpoints of the official ResNet v2 layout
 * (src/nn/model_tfbundle.c) against float64 PyTorch.
 *
 * tests/fixtures/tf/ (tests/fixtures/tf_resnet.py): narrow random ResNets
 * written as TensorBundles by an independent Python writer, with Momentum
 * slots and global_step, and the reference's logits and input gradients on
 * three 48x48 images (the stem's SAME max-pool sees an even side there).
 * Logits within 1e-4 of the largest, gradients and Integrated Gradients
 * (attribution_run, 16-point Gauss-Legendre, gray baseline) within 1e-2
 * relative L2, the same default target.
 * Then loading by directory, and corrupt checkpoints refused at model_open
 * and by the CLI with a message and exit status 1.
 */
#define _XOPEN_SOURCE 700
#include <check.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attribution.h"
#include "model.h"
#include "safetensors.h"

static char tmpdir[64];

static const char *fixture(const char *name)
{
	static char buf[4][1024];
	static int slot;
	char *p = buf[slot++ % 4];
	const char *dir = getenv("IGSERVE_FIXTURES");
	snprintf(p, 1024, "%s/tf/%s", dir ? dir : "tests/fixtures", name);
	return p;
}

static float *case_tensor(struct st_file *f, const char *name, int64_t *numel)
{
	const struct st_tensor *t = safetensors_find(f, name);
	ck_assert_msg(t != NULL, "case file lacks '%s'", name);
	float *data = malloc((size_t)t->numel * sizeof(float));
	ck_assert_int_eq(safetensors_read_f32(t, data, NULL), 0);
	if (numel)
		*numel = t->numel;
	return data;
}

static const struct {
	const char *name;
	enum block_kind block;
	int blocks[4];
	int widths[4];
	int classes;
	const char *arch;
} variants[] = {
    {"tf_bottleneck",
     BLOCK_BOTTLENECK,
     {1, 2, 1, 1},
     {16, 32, 48, 64},
     1001,
     "resnet_v2_17-custom"},
    {"tf_basic", BLOCK_BASIC, {2, 1, 1, 1}, {8, 12, 16, 24}, 10, "resnet_v2_12-custom"},
};

START_TEST(test_matches_pytorch)
{
	const int v = _i;
	struct igs_error err = {0};
	struct model *m = NULL;
	int rc = model_open(&m, fixture(variants[v].name), NULL, &err);
	ck_assert_msg(rc == 0, "load %s: %s", variants[v].name, err.message);
	const struct model_info *info = model_get_info(m);
	ck_assert_int_eq(info->family, FAMILY_TENSORFLOW);
	ck_assert_str_eq(info->family_name, "tensorflow");
	ck_assert_int_eq(info->block, variants[v].block);
	ck_assert_int_eq(info->stages, 4);
	ck_assert_int_eq(memcmp(info->blocks, variants[v].blocks, sizeof variants[v].blocks), 0);
	ck_assert_int_eq(memcmp(info->widths, variants[v].widths, sizeof variants[v].widths), 0);
	ck_assert_int_eq(info->stem_width, 8);
	ck_assert_int_eq(info->classes, variants[v].classes);
	ck_assert_str_eq(info->arch, variants[v].arch);
	for (int c = 0; c < 3; c++) { /* x/255 - 0.5 */
		ck_assert_float_eq(info->mean[c], 0.5f);
		ck_assert_float_eq(info->std[c], 1.0f);
	}
	ck_assert_str_eq(info->path, fixture(variants[v].name));
	ck_assert_uint_eq(strlen(info->sha256), 64);
	ck_assert_int_eq(model_set_input_size(m, 48, &err), 0);

	char cases[128];
	snprintf(cases, sizeof cases, "%s.case.safetensors", variants[v].name);
	struct st_file *cf = NULL;
	ck_assert_int_eq(safetensors_open(&cf, fixture(cases), &err), 0);
	int64_t npix, nlog;
	float *pixels = case_tensor(cf, "pixels", &npix);
	float *ref_logits = case_tensor(cf, "logits", &nlog);
	float *ref_grad = case_tensor(cf, "grad", NULL);
	float *targets = case_tensor(cf, "targets", NULL);
	const int n = 3, classes = variants[v].classes;
	const size_t per_image = 48 * 48 * 3;
	ck_assert_int_eq(npix, n * (int64_t)per_image);
	ck_assert_int_eq(nlog, n * (int64_t)classes);

	struct net_workspace *ws = NULL;
	ck_assert_int_eq(net_workspace_open(&ws, m, n, &err), 0);
	float *logits = calloc((size_t)n * classes, sizeof(float));
	float *d_logits = calloc((size_t)n * classes, sizeof(float));
	ck_assert_int_eq(net_forward(ws, pixels, n, logits), 0);
	float max_ref = 0, max_diff = 0;
	for (int i = 0; i < n * classes; i++) {
		max_ref = fmaxf(max_ref, fabsf(ref_logits[i]));
		max_diff = fmaxf(max_diff, fabsf(logits[i] - ref_logits[i]));
	}
	ck_assert_msg(max_diff <= 1e-4f * max_ref, "%s: logits off by %g (largest logit %g)",
	              variants[v].name, max_diff, max_ref);
	fprintf(stderr, "%s: logits max |diff| %.3g of largest %.3g\n", variants[v].name,
	        (double)max_diff, (double)max_ref);

	for (int i = 0; i < n; i++)
		d_logits[i * classes + (int)targets[i]] = 1.0f;
	float *grad = malloc((size_t)npix * sizeof(float));
	ck_assert_int_eq(net_backward(ws, d_logits, grad), 0);
	for (int i = 0; i < n; i++) {
		double num = 0, den = 0;
		for (size_t j = 0; j < per_image; j++) {
			double d = (double)grad[i * per_image + j] - ref_grad[i * per_image + j];
			num += d * d;
			den += (double)ref_grad[i * per_image + j] * ref_grad[i * per_image + j];
		}
		double rel = sqrt(num / den);
		ck_assert_msg(den > 0 && rel <= 1e-2, "%s image %d: gradient relative L2 error %g",
		              variants[v].name, i, rel);
		fprintf(stderr, "%s image %d: gradient relative L2 %.3g\n", variants[v].name, i,
		        rel);
	}
	/* Integrated Gradients of image 0 (16-point Gauss-Legendre, gray
	 * baseline, the top-1 target) through the attribution module */
	float *ref_ig = case_tensor(cf, "ig", NULL);
	float *ig_target = case_tensor(cf, "ig_target", NULL);
	struct grad_oracle oracle;
	attribution_net_oracle(&oracle, m, ws);
	struct attr_params p;
	attr_params_init(&p);
	p.steps = 16;
	p.rule = RULE_GAUSS_LEGENDRE;
	p.baseline = BASELINE_GRAY;
	p.target = -1;
	struct attr_result res = {0};
	rc = attribution_run(&oracle, pixels, &p, n, NULL, &res, &err);
	ck_assert_msg(rc == 0, "%s: attribution: %s", variants[v].name, err.message);
	ck_assert_int_eq(res.target, (int)ig_target[0]);
	double num = 0, den = 0;
	for (size_t j = 0; j < per_image; j++) {
		double d = (double)res.attr[j] - ref_ig[j];
		num += d * d;
		den += (double)ref_ig[j] * ref_ig[j];
	}
	const double ig_rel = sqrt(num / den);
	ck_assert_msg(den > 0 && ig_rel <= 1e-2, "%s: IG relative L2 error %g", variants[v].name,
	              ig_rel);
	fprintf(stderr, "%s: IG (target %d) relative L2 %.3g\n", variants[v].name, res.target,
	        ig_rel);
	attr_result_clear(&res);
	free(ref_ig);
	free(ig_target);

	net_workspace_close(&ws);
	free(grad);
	free(logits);
	free(d_logits);
	free(pixels);
	free(ref_logits);
	free(ref_grad);
	free(targets);
	safetensors_close(&cf);
	model_close(&m);
}
END_TEST

static void copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	ck_assert_msg(in && out, "copy %s -> %s", from, to);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
	fclose(in);
	ck_assert_int_eq(fclose(out), 0);
}

/* tf_basic copied to DIR/model.ckpt-225207 with a checkpoint file; returns DIR. */
static const char *checkpoint_dir(const char *name)
{
	static char dir[256];
	snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	char to[512];
	snprintf(to, sizeof to, "%s/model.ckpt-225207.index", dir);
	copy_file(fixture("tf_basic.index"), to);
	snprintf(to, sizeof to, "%s/model.ckpt-225207.data-00000-of-00001", dir);
	copy_file(fixture("tf_basic.data-00000-of-00001"), to);
	snprintf(to, sizeof to, "%s/checkpoint", dir);
	FILE *f = fopen(to, "w");
	fputs("model_checkpoint_path: \"model.ckpt-225207\"\n"
	      "all_model_checkpoint_paths: \"model.ckpt-225207\"\n",
	      f);
	fclose(f);
	return dir;
}

START_TEST(test_loads_by_directory)
{
	const char *dir = checkpoint_dir("bydir");
	struct igs_error err = {0};
	struct model *a = NULL, *b = NULL;
	ck_assert_msg(model_open(&a, dir, NULL, &err) == 0, "%s", err.message);
	ck_assert_int_eq(model_open(&b, fixture("tf_basic"), NULL, &err), 0);
	char want[512];
	snprintf(want, sizeof want, "%s/model.ckpt-225207", dir);
	ck_assert_str_eq(model_get_info(a)->path, want);
	ck_assert_str_eq(model_get_info(a)->sha256, model_get_info(b)->sha256);
	ck_assert_uint_eq(model_get_info(a)->parameters, model_get_info(b)->parameters);
	model_close(&a);
	model_close(&b);
}
END_TEST

/* `igserve predict --model PATH x.png` must exit 1 naming `what`. */
static void expect_cli_failure(const char *model, const char *what)
{
	const char *bin = getenv("IGSERVE_BINARY");
	ck_assert_ptr_nonnull(bin);
	char log[300], image[300];
	snprintf(log, sizeof log, "%s/stderr.txt", tmpdir);
	snprintf(image, sizeof image, "%s/x.png", tmpdir);
	FILE *img = fopen(image, "wb");
	fputs("\x89PNG", img);
	fclose(img);
	pid_t pid = fork();
	if (pid == 0) {
		if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout))
			_exit(99);
		execl(bin, bin, "predict", "--model", model, image, (char *)NULL);
		_exit(98);
	}
	int status = 0;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 1);
	char text[2048] = "";
	FILE *f = fopen(log, "r");
	size_t len = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[len] = 0;
	ck_assert_msg(strstr(text, what), "stderr '%s' lacks '%s'", text, what);
}

START_TEST(test_corrupt_checkpoints_refused)
{
	const char *dir = checkpoint_dir("corrupt");
	char data[512], index[512];
	snprintf(data, sizeof data, "%s/model.ckpt-225207.data-00000-of-00001", dir);
	snprintf(index, sizeof index, "%s/model.ckpt-225207.index", dir);
	struct stat st;
	ck_assert_int_eq(stat(data, &st), 0);

	/* a flipped byte in the data shard */
	FILE *f = fopen(data, "r+b");
	fseek(f, st.st_size / 3, SEEK_SET);
	int c = fgetc(f);
	fseek(f, st.st_size / 3, SEEK_SET);
	fputc(c ^ 0x10, f);
	fclose(f);
	struct model *m = NULL;
	struct igs_error err = {0};
	ck_assert_int_eq(model_open(&m, dir, NULL, &err), IGS_ERR_FORMAT);
	ck_assert_msg(strstr(err.message, "bad CRC32C"), "%s", err.message);
	expect_cli_failure(dir, "bad CRC32C");

	/* a truncated index */
	ck_assert_int_eq(truncate(index, 100), 0);
	ck_assert_int_eq(model_open(&m, dir, NULL, &err), IGS_ERR_FORMAT);
	expect_cli_failure(dir, "model.ckpt-225207.index");

	/* a missing shard */
	copy_file(fixture("tf_basic.index"), index);
	ck_assert_int_eq(unlink(data), 0);
	ck_assert_int_eq(model_open(&m, dir, NULL, &err), IGS_ERR_IO);
	ck_assert_msg(strstr(err.message, "shard missing"), "%s", err.message);
	expect_cli_failure(dir, "shard missing");
	ck_assert_ptr_null(m);
}
END_TEST

/* Run igserve with `args` (NULL-terminated, at most 10), expect exit 0, and
 * read its stdout into text. */
static void run_cli(const char *const *args, char *text, size_t size)
{
	const char *bin = getenv("IGSERVE_BINARY");
	ck_assert_ptr_nonnull(bin);
	char out[300];
	snprintf(out, sizeof out, "%s/stdout.txt", tmpdir);
	const char *argv[12] = {bin};
	for (int i = 0; args[i]; i++) {
		ck_assert_int_lt(i, 10);
		argv[1 + i] = args[i];
	}
	pid_t pid = fork();
	if (pid == 0) {
		if (!freopen(out, "w", stdout) || !freopen("/dev/null", "w", stderr))
			_exit(99);
		execv(bin, (char *const *)argv);
		_exit(98);
	}
	int status = 0;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	FILE *f = fopen(out, "r");
	size_t len = fread(text, 1, size - 1, f);
	fclose(f);
	text[len] = 0;
}

/* tf_background: class 0's bias makes it every image's top-1, class 7 is
 * the best real class.  Background is left out of the predictions and of
 * the default target unless include_background; an explicit target 0 stays. */
START_TEST(test_background_class)
{
	const char *model = fixture("tf_background");
	char pic[1024]; /* any decodable picture: the demo's */
	const char *dir = getenv("IGSERVE_FIXTURES");
	snprintf(pic, sizeof pic, "%s/../../models/demo/examples/circle.png",
	         dir ? dir : "tests/fixtures");
	char text[1 << 16];

	const char *predict[] = {"predict", "--model", model, "--top-k", "3", pic, NULL};
	run_cli(predict, text, sizeof text);
	ck_assert_msg(strstr(text, "\"predictions\":[{\"index\":7,\"label\":\"stingray\""), "%s",
	              text);
	ck_assert_msg(!strstr(text, "\"index\":0,"), "%s", text);
	const char *predict_bg[] = {
	    "predict", "--model", model, "--top-k", "3", "--include-background", pic, NULL};
	run_cli(predict_bg, text, sizeof text);
	ck_assert_msg(strstr(text, "\"predictions\":[{\"index\":0,\"label\":\"background\""), "%s",
	              text);
	ck_assert_msg(strstr(text, "{\"index\":7,"), "%s", text);

	const char *attribute[] = {"attribute",  "--model", model, "--steps", "2",
	                           "--heatmaps", "none",    pic,   NULL};
	run_cli(attribute, text, sizeof text);
	ck_assert_msg(strstr(text, "\"target\":{\"index\":7,"), "%s", text);
	const char *attribute_bg[] = {"attribute", "--model",    model,  "--steps",
	                              "2",         "--heatmaps", "none", "--include-background",
	                              pic,         NULL};
	run_cli(attribute_bg, text, sizeof text);
	ck_assert_msg(strstr(text, "\"target\":{\"index\":0,"), "%s", text);
	const char *attribute_0[] = {"attribute", "--model",  model, "--steps", "2", "--heatmaps",
	                             "none",      "--target", "0",   pic,       NULL};
	run_cli(attribute_0, text, sizeof text);
	ck_assert_msg(strstr(text, "\"target\":{\"index\":0,"), "%s", text);
}
END_TEST

/* TensorFlow-written checkpoints that are not an official ResNet: refused
 * by name (skipped when ../shared/testdata is absent). */
START_TEST(test_other_tf_models_refused)
{
	const char *root = getenv("IGSERVE_SHARED_TESTDATA");
	char dir[1024];
	snprintf(dir, sizeof dir, "%s/tf-checkpoints", root ? root : "../shared/testdata");
	struct stat st;
	if (stat(dir, &st) != 0) {
		fprintf(stderr, "test_tf_model: %s absent, skipping\n", dir);
		return;
	}
	struct model *m = NULL;
	struct igs_error err = {0};
	char path[1100];
	snprintf(path, sizeof path, "%s/saved_model_half_plus_three", dir);
	ck_assert_int_eq(model_open(&m, path, NULL, &err), IGS_ERR_MODEL);
	ck_assert_msg(strstr(err.message, "not TensorFlow's official ResNet v2 layout"), "%s",
	              err.message);
	snprintf(path, sizeof path, "%s/saved_model_half_plus_two_mkl", dir);
	ck_assert_int_eq(model_open(&m, path, NULL, &err), IGS_ERR_MODEL);
	ck_assert_msg(strstr(err.message, "conv2d/bias") && strstr(err.message, "no bias"), "%s",
	              err.message);
	ck_assert_ptr_null(m);
}
END_TEST

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw);

int main(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_tf_model.XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	Suite *s = suite_create("tf-model");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 600);
	tcase_add_loop_test(tc, test_matches_pytorch, 0,
	                    (int)(sizeof variants / sizeof variants[0]));
	tcase_add_test(tc, test_loads_by_directory);
	tcase_add_test(tc, test_corrupt_checkpoints_refused);
	tcase_add_test(tc, test_background_class);
	tcase_add_test(tc, test_other_tf_models_refused);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	remove(path);
	return 0;
}
