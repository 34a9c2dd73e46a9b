/*
 * test_blur_ig_convergence.c - Blur IG's convergence estimate (blur_ig.c:
 * the m/3-step sum inside the m-step one, subrule_difference with q = 3)
 * on the trained demo model, against a 729-step Blur IG standing in for
 * the exact integral (its own estimate is about 0.5%, a sixth of the
 * smallest error checked).  As for IG's rules (test_convergence.c): the
 * estimate is at least the true relative L2 error and at most 4 times it.
 * Slow (the reference is 729 gradient evaluations): suite `slow`.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attribution.h"
#include "conv.h"
#include "image.h"
#include "model.h"

#define BATCH 4

START_TEST(test_blur_ig_estimate)
{
	const char *fixtures = getenv("IGSERVE_FIXTURES");
	char path[4096];
	struct igs_error err = {0};
	const struct model_options arith = {.precision = CONV_PRECISION_FP32};
	struct model *model;
	struct net_workspace *ws;
	struct grad_oracle oracle;
	snprintf(path, sizeof path, "%s/../../models/demo/shapes-resnet.safetensors",
	         fixtures ? fixtures : "tests/fixtures");
	ck_assert_msg(model_open(&model, path, &arith, &err) == 0, "%s", err.message);
	ck_assert_int_eq(net_workspace_open(&ws, model, BATCH, &err), 0);
	attribution_net_oracle(&oracle, model, ws);
	snprintf(path, sizeof path, "%s/../../models/demo/examples/square.png",
	         fixtures ? fixtures : "tests/fixtures");
	struct image img = {0};
	ck_assert_msg(image_load_file(&img, path, NULL, &err) == 0, "%s", err.message);
	size_t n = (size_t)img.width * img.height * 3;
	float *x = malloc(n * sizeof *x);
	for (size_t k = 0; k < n; k++)
		x[k] = img.rgb[k];
	image_clear(&img);

	struct attr_params p;
	attr_params_init(&p);
	p.method = ATTR_BLUR_IG;
	p.steps = 729;
	struct attr_result ref;
	ck_assert_msg(attribution_run(&oracle, x, &p, BATCH, NULL, &ref, &err) == 0, "%s",
	              err.message);
	fprintf(stderr, "reference 729 steps: own estimate %.3e\n", ref.relative_l2);
	ck_assert_double_lt(ref.relative_l2, 0.01);
	const int steps[] = {27, 81};
	for (int c = 0; c < 2; c++) {
		p.steps = steps[c];
		p.target = ref.target;
		struct attr_result r;
		ck_assert_msg(attribution_run(&oracle, x, &p, BATCH, NULL, &r, &err) == 0, "%s",
		              err.message);
		double d = 0, f = 0;
		for (size_t i = 0; i < n; i++) {
			d += ((double)r.attr[i] - ref.attr[i]) * ((double)r.attr[i] - ref.attr[i]);
			f += (double)ref.attr[i] * ref.attr[i];
		}
		double truth = sqrt(d / f);
		fprintf(stderr, "blur_ig %d steps: estimate %.3e true %.3e (x%.2f)\n", steps[c],
		        r.relative_l2, truth, r.relative_l2 / truth);
		ck_assert_str_eq(r.estimator, ATTR_ESTIMATOR_SUBRULE);
		ck_assert_msg(r.relative_l2 >= truth && r.relative_l2 <= 4 * truth,
		              "%d steps: estimate %g, true error %g", steps[c], r.relative_l2,
		              truth);
		attr_result_clear(&r);
	}
	attr_result_clear(&ref);
	free(x);
	net_workspace_close(&ws);
	model_close(&model);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("blur-ig-convergence");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 1200);
	tcase_add_test(tc, test_blur_ig_estimate);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
