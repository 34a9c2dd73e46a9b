/*
 * test_http_targets.c - targets=, output=logprob and faithfulness= over
 * HTTP (issue 16): the answer's shape, the second of targets=top3 against
 * a request with target= that class (the same .npy bytes), the
 * refusals, and --max-evaluations counting steps x targets + faithfulness.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_harness.h"

static struct server_proc server;

static void server_up(void)
{
	static const char *const extra[] = {"--workers", "1", "--max-evaluations", "100", NULL};
	server_spawn(&server, extra);
}

static void server_down(void)
{
	ck_assert_int_eq(server_terminate(&server, 30), 0);
	unlink(server.log_path);
}

static cJSON *attribute(const char *path, const void *png, size_t len, long want_status,
                        struct reply *r)
{
	struct request q = {.path = path, .image = png, .image_len = len};
	http(server.port, &q, r);
	ck_assert_msg(r->status == want_status, "%s: status %ld: %s", path, r->status, r->body);
	return want_status == 200 ? cJSON_Parse(r->body) : NULL;
}

static double num(const cJSON *o, const char *a, const char *b)
{
	const cJSON *x = cJSON_GetObjectItem(o, a);
	if (b)
		x = cJSON_GetObjectItem(x, b);
	ck_assert_msg(cJSON_IsNumber(x), "%s.%s is not a number", a, b ? b : "");
	return x->valuedouble;
}

START_TEST(test_targets_answer)
{
	size_t len;
	void *png = make_png(64, 64, 9, &len);
	for (int maps = 0; maps < 2; maps++) {
		char path[256];
		snprintf(
		    path, sizeof path,
		    "/attribute?targets=top3&steps=16&method=riemann_trapezoid&raw=npy&heatmaps="
		    "magnitude&faithfulness=deletion,insertion&faithfulness_steps=4%s",
		    maps ? "&path_maps=true" : "");
		struct reply r;
		cJSON *doc = attribute(path, png, len, 200, &r);
		ck_assert(doc);
		cJSON *list = cJSON_GetObjectItem(doc, "attributions");
		ck_assert_int_eq(cJSON_GetArraySize(list), 3);
		/* the top-level fields are the first target's */
		cJSON *first = cJSON_GetArrayItem(list, 0);
		ck_assert_int_eq((int)num(doc, "target", "index"),
		                 (int)num(first, "target", "index"));
		ck_assert(num(doc, "completeness", "sum") == num(first, "completeness", "sum"));
		ck_assert_int_eq((int)num(doc, "faithfulness", "steps"), 4);
		/* the predictions' top 3, in order */
		cJSON *preds = cJSON_GetObjectItem(doc, "predictions");
		for (int k = 0; k < 3; k++) {
			cJSON *e = cJSON_GetArrayItem(list, k);
			ck_assert_int_eq((int)num(e, "target", "index"),
			                 (int)num(cJSON_GetArrayItem(preds, k), "index", NULL));
			ck_assert(
			    cJSON_GetObjectItem(cJSON_GetObjectItem(e, "heatmaps"), "magnitude"));
			ck_assert(cJSON_IsString(cJSON_GetObjectItem(e, "attributions_npy")));
			ck_assert(cJSON_IsObject(cJSON_GetObjectItem(e, "convergence")));
			cJSON *f = cJSON_GetObjectItem(e, "faithfulness");
			ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(f, "deletion")), 5);
			ck_assert(isfinite(num(f, "insertion_auc", NULL)));
		}
		/* the second against target= that class */
		cJSON *second = cJSON_GetArrayItem(list, 1);
		snprintf(path, sizeof path,
		         "/attribute?target=%d&steps=16&method=riemann_trapezoid&raw=npy&heatmaps="
		         "magnitude%s",
		         (int)num(second, "target", "index"), maps ? "&path_maps=true" : "");
		struct reply r1;
		cJSON *one = attribute(path, png, len, 200, &r1);
		ck_assert(one);
		const char *npy_multi =
		    cJSON_GetObjectItem(second, "attributions_npy")->valuestring;
		const char *npy_one = cJSON_GetObjectItem(one, "attributions_npy")->valuestring;
		double s_multi = num(second, "completeness", "sum"),
		       s_one = num(one, "completeness", "sum");
		ck_assert_str_eq(npy_multi, npy_one);
		ck_assert(s_multi == s_one);
		/* each entry's legend is its own map's: the single request's */
		ck_assert(num(cJSON_GetObjectItem(second, "heatmap_scales"), "magnitude", "vmax") ==
		          num(cJSON_GetObjectItem(one, "heatmap_scales"), "magnitude", "vmax"));
		ck_assert(num(second, "completeness", "f_input") ==
		          num(one, "completeness", "f_input"));
		ck_assert(num(second, "convergence", "points") ==
		          num(one, "convergence", "points"));
		cJSON_Delete(one);
		reply_free(&r1);
		cJSON_Delete(doc);
		reply_free(&r);
	}
	free(png);
}
END_TEST

START_TEST(test_logprob)
{
	size_t len;
	void *png = make_png(64, 64, 10, &len);
	struct reply r;
	cJSON *doc =
	    attribute("/attribute?output=logprob&steps=8&heatmaps=none", png, len, 200, &r);
	ck_assert(doc);
	double p = num(doc, "target", "probability");
	ck_assert_double_eq_tol(num(doc, "completeness", "f_input"), log(p), 1e-5);
	cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "path"), 0);
	ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(row, "logprob")));
	ck_assert_str_eq(
	    cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "method"), "output")->valuestring,
	    "logprob");
	cJSON_Delete(doc);
	reply_free(&r);
	free(png);
}
END_TEST

START_TEST(test_refusals_and_limits)
{
	size_t len;
	void *png = make_png(64, 64, 11, &len);
	static const struct {
		const char *path, *says;
	} bad[] = {
	    {"/attribute?targets=top3&tolerance=0.01", "tolerance"},
	    {"/attribute?targets=2,2", "twice"},
	    {"/attribute?targets=top0", "topK"},
	    {"/attribute?targets=1,x", "targets"},
	    {"/attribute?targets=1,", "targets"},
	    {"/attribute?targets=0,1&target=1", "target and targets"},
	    {"/attribute?targets=0,1&smoothgrad=smoothgrad&smoothgrad_samples=2", "smoothgrad"},
	    {"/attribute?targets=0,99", "out of range"},
	    {"/attribute?faithfulness=sideways", "sideways"},
	    {"/attribute?faithfulness=deletion&faithfulness_steps=0", "faithfulness_steps"},
	    {"/attribute?output=logodds", "logprob"},
	    /* 16 steps x 7 targets = 112 > 100 */
	    {"/attribute?targets=0,1,2,3,4,5,6&steps=16", "--max-evaluations"},
	    /* 16 + 2 x (50 + 1) = 118 > 100 */
	    {"/attribute?steps=16&faithfulness=deletion,insertion&faithfulness_steps=50",
	     "--max-evaluations"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct reply r;
		attribute(bad[i].path, png, len, 400, &r);
		assert_error(&r, 400, "bad_option");
		ck_assert_msg(strstr(r.body, bad[i].says), "%s: %s", bad[i].path, r.body);
		reply_free(&r);
	}
	/* at the limit: 16 x 6 = 96, and 16 + 2 x 17 = 50 */
	struct reply r;
	cJSON *doc =
	    attribute("/attribute?targets=0,1,2,3,4,5&steps=16&heatmaps=none", png, len, 200, &r);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "attributions")), 6);
	cJSON_Delete(doc);
	reply_free(&r);
	doc = attribute("/attribute?steps=16&faithfulness=deletion,insertion&heatmaps=none", png,
	                len, 200, &r);
	ck_assert_int_eq((int)num(doc, "faithfulness", "forward_passes"), 34);
	ck_assert(!cJSON_GetObjectItem(doc, "attributions"));
	cJSON_Delete(doc);
	reply_free(&r);
	free(png);
}
END_TEST

int main(void)
{
	setup_paths();
	Suite *s = suite_create("http-targets");
	TCase *tc = tcase_create("targets");
	tcase_add_unchecked_fixture(tc, server_up, server_down);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_targets_answer);
	tcase_add_test(tc, test_logprob);
	tcase_add_test(tc, test_refusals_and_limits);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
