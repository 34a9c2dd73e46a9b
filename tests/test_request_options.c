/*
 * test_request_options.c - request_options_set: every option the parser
 * knows, good values giving the expected struct fields (and no other field
 * touched), bad values refused with IGS_ERR_BAD_OPTION and a message that
 * names the option, leaving the options as they were.
 */
#include <check.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "heatmap.h"
#include "request_options.h"

/* ---- the struct's fields as numbers, so a table can name them ---- */

enum field {
	F_NONE,
	F_TOP_K,
	F_RESIZE,
	F_HEATMAPS,
	F_RAW_NPY,
	F_DEADLINE_MS,
	F_TARGET,
	F_METHOD,
	F_RULE,
	F_STEPS,
	F_BASELINE,
	F_BLUR_SIGMA,
	F_SEED,
	F_TOLERANCE,
	F_MAX_STEPS,
	F_PATH_MAPS,
	F_OUTPUT,
	F_SMOOTH,
	F_SMOOTH_SAMPLES,
	F_SMOOTH_SIGMA,
	F_COUNT
};

static const char *const field_names[F_COUNT] = {
    "none",    "top_k",    "resize",   "heatmaps",   "raw_npy",   "deadline_ms",    "target",
    "method",  "rule",     "steps",    "baseline",   "blur_sigma", "seed",          "tolerance",
    "max_steps", "path_maps", "output", "smooth",   "smooth_samples", "smooth_sigma",
};

static double field_value(const struct request_options *o, enum field f)
{
	const struct attr_params *a = &o->attr;
	switch (f) {
	case F_TOP_K: return o->top_k;
	case F_RESIZE: return o->resize;
	case F_HEATMAPS: return o->heatmaps;
	case F_RAW_NPY: return o->raw_npy;
	case F_DEADLINE_MS: return o->deadline_ms;
	case F_TARGET: return a->target;
	case F_METHOD: return a->method;
	case F_RULE: return a->rule;
	case F_STEPS: return a->steps;
	case F_BASELINE: return a->baseline;
	case F_BLUR_SIGMA: return a->blur_sigma;
	case F_SEED: return (double)a->seed;
	case F_TOLERANCE: return a->tolerance;
	case F_MAX_STEPS: return a->max_steps;
	case F_PATH_MAPS: return a->path_maps;
	case F_OUTPUT: return a->output;
	case F_SMOOTH: return a->smooth;
	case F_SMOOTH_SAMPLES: return a->smooth_samples;
	case F_SMOOTH_SIGMA: return a->smooth_sigma;
	default: return NAN;
	}
}

/* ---- the defaults the header documents ---- */

START_TEST(test_defaults)
{
	struct request_options o;
	memset(&o, 0xa5, sizeof o); /* init must set every field, not rely on zeroed memory */
	request_options_init(&o);
	ck_assert_int_eq(o.top_k, 5);
	ck_assert_int_eq(o.resize, RESIZE_LETTERBOX);
	ck_assert_uint_eq(o.heatmaps, HEATMAP_DEFAULT);
	ck_assert(!o.raw_npy);
	ck_assert_int_eq(o.deadline_ms, 0);
	ck_assert_int_eq(o.attr.target, -1);
	ck_assert_int_eq(o.attr.method, ATTR_INTEGRATED_GRADIENTS);
	ck_assert_int_eq(o.attr.rule, RULE_GAUSS_LEGENDRE);
	ck_assert_int_eq(o.attr.steps, 50);
	ck_assert_int_eq(o.attr.baseline, BASELINE_GRAY);
	ck_assert_double_eq(o.attr.blur_sigma, 10.0);
	ck_assert_uint_eq(o.attr.seed, 0);
	ck_assert_double_eq(o.attr.tolerance, 0);
	ck_assert_int_eq(o.attr.max_steps, 512);
	ck_assert(!o.attr.path_maps);
	ck_assert_int_eq(o.attr.output, OUTPUT_LOGIT);
	ck_assert_int_eq(o.attr.smooth, SMOOTH_NONE);
	ck_assert_int_eq(o.attr.smooth_samples, 0);
	ck_assert_double_eq(o.attr.smooth_sigma, 0.15);
}
END_TEST

/* ---- good values ---- */

struct good_case {
	const char *name, *value;
	enum field field;
	double expected;
	enum field field2; /* a second field the option sets (F_NONE: none) */
	double expected2;
};

/* most rows set one field: field2 and expected2 are left out (zero: F_NONE) */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct good_case good_cases[] = {
    {"top_k", "1", F_TOP_K, 1},
    {"top_k", "100000", F_TOP_K, 100000},
    {"top-k", "7", F_TOP_K, 7},
    {"top_k", "+3", F_TOP_K, 3},
    {"resize", "letterbox", F_RESIZE, RESIZE_LETTERBOX},
    {"resize", "center-crop", F_RESIZE, RESIZE_CENTER_CROP},
    {"resize", "stretch", F_RESIZE, RESIZE_STRETCH},
    {"target", "0", F_TARGET, 0},
    {"target", "281", F_TARGET, 281},
    {"target", "2147483647", F_TARGET, INT_MAX},
    {"method", "gausslegendre", F_RULE, RULE_GAUSS_LEGENDRE},
    {"method", "GaussLegendre", F_RULE, RULE_GAUSS_LEGENDRE},
    {"method", "riemann_left", F_RULE, RULE_RIEMANN_LEFT},
    {"method", "riemann_right", F_RULE, RULE_RIEMANN_RIGHT},
    {"method", "riemann_middle", F_RULE, RULE_RIEMANN_MIDDLE},
    {"method", "riemann_trapezoid", F_RULE, RULE_RIEMANN_TRAPEZOID},
    {"method", "integrated_gradients", F_NONE, 0},
    {"method", "ig", F_NONE, 0},
    {"method", "saliency", F_METHOD, ATTR_SALIENCY},
    {"method", "input_x_gradient", F_METHOD, ATTR_INPUT_X_GRADIENT},
    {"steps", "1", F_STEPS, 1},
    {"steps", "16", F_STEPS, 16},
    {"steps", "4096", F_STEPS, 4096},
    {"baseline", "gray", F_NONE, 0},
    {"baseline", "black", F_BASELINE, BASELINE_BLACK},
    {"baseline", "white", F_BASELINE, BASELINE_WHITE},
    {"baseline", "blur", F_BASELINE, BASELINE_BLUR},
    {"baseline", "noise", F_BASELINE, BASELINE_NOISE},
    {"baseline", "WHITE", F_BASELINE, BASELINE_WHITE},
    {"blur_sigma", "0.1", F_BLUR_SIGMA, 0.1},
    {"blur_sigma", "2.5", F_BLUR_SIGMA, 2.5},
    {"blur-sigma", "100", F_BLUR_SIGMA, 100},
    {"blur_sigma", "1e1", F_BLUR_SIGMA, 10},
    {"seed", "0", F_NONE, 0},
    {"seed", "42", F_SEED, 42},
    {"tolerance", "0.01", F_TOLERANCE, 0.01},
    {"tolerance", "1e-9", F_TOLERANCE, 1e-9},
    {"tolerance", "1", F_TOLERANCE, 1},
    {"tolerance", "none", F_NONE, 0},
    {"tolerance", "NULL", F_NONE, 0},
    {"tolerance", "", F_NONE, 0},
    {"max_steps", "1", F_MAX_STEPS, 1},
    {"max-steps", "4096", F_MAX_STEPS, 4096},
    {"heatmaps", "normalized", F_HEATMAPS, HEATMAP_NORMALIZED},
    {"heatmaps", "normalized,overlay", F_HEATMAPS, HEATMAP_NORMALIZED | HEATMAP_OVERLAY},
    {"heatmaps", "channel_r,channel_g,channel_b", F_HEATMAPS,
     HEATMAP_CHANNEL_R | HEATMAP_CHANNEL_G | HEATMAP_CHANNEL_B},
    {"heatmaps", "Magnitude,deviation,", F_HEATMAPS, HEATMAP_MAGNITUDE | HEATMAP_DEVIATION},
    {"heatmaps", "overlay_full", F_HEATMAPS, HEATMAP_OVERLAY_FULL},
    {"heatmaps", "overlay,overlay", F_HEATMAPS, HEATMAP_OVERLAY},
    {"heatmaps", "all", F_HEATMAPS, HEATMAP_ALL},
    {"heatmaps", "none", F_HEATMAPS, 0},
    {"heatmaps", "", F_HEATMAPS, 0},
    {"raw", "npy", F_RAW_NPY, 1},
    {"raw", "NPY", F_RAW_NPY, 1},
    {"raw", "true", F_RAW_NPY, 1},
    {"raw", "1", F_RAW_NPY, 1},
    {"raw", "none", F_NONE, 0},
    {"raw", "false", F_NONE, 0},
    {"raw", "0", F_NONE, 0},
    {"path_maps", "", F_PATH_MAPS, 1},
    {"path_maps", "1", F_PATH_MAPS, 1},
    {"path_maps", "true", F_PATH_MAPS, 1},
    {"path-maps", "YES", F_PATH_MAPS, 1},
    {"path_maps", "0", F_NONE, 0},
    {"path_maps", "false", F_NONE, 0},
    {"path_maps", "no", F_NONE, 0},
    {"output", "probability", F_OUTPUT, OUTPUT_PROBABILITY},
    {"output", "logit", F_NONE, 0},
    {"smoothgrad", "smoothgrad", F_SMOOTH, SMOOTH_GRAD, F_SMOOTH_SAMPLES, 16},
    {"smoothgrad", "smoothgrad_sq", F_SMOOTH, SMOOTH_GRAD_SQ, F_SMOOTH_SAMPLES, 16},
    {"smoothgrad", "vargrad", F_SMOOTH, SMOOTH_VARGRAD, F_SMOOTH_SAMPLES, 16},
    {"smoothgrad", "none", F_NONE, 0},
    {"smoothgrad_samples", "1", F_SMOOTH_SAMPLES, 1},
    {"smoothgrad-samples", "4096", F_SMOOTH_SAMPLES, 4096},
    {"smoothgrad_sigma", "0", F_SMOOTH_SIGMA, 0},
    {"smoothgrad_sigma", "0.3", F_SMOOTH_SIGMA, 0.3},
    {"smoothgrad_sigma", "10", F_SMOOTH_SIGMA, 10},
    {"deadline_ms", "1", F_DEADLINE_MS, 1},
    {"deadline_ms", "1500", F_DEADLINE_MS, 1500},
    {"deadline-ms", "86400000", F_DEADLINE_MS, 86400000},
};

START_TEST(test_good_value)
{
	const struct good_case *c = &good_cases[_i];
	struct request_options defaults, o;
	request_options_init(&defaults);
	request_options_init(&o);
	struct igs_error err = {0};
	int rc = request_options_set(&o, c->name, c->value, 0, &err);
	ck_assert_msg(rc == 0, "%s=%s: rc %d (%s)", c->name, c->value, rc, err.message);
	for (int f = F_NONE + 1; f < F_COUNT; f++) {
		double want = f == (int)c->field    ? c->expected
		              : f == (int)c->field2 ? c->expected2
		                                    : field_value(&defaults, f);
		double got = field_value(&o, f);
		ck_assert_msg(got == want, "%s=%s: %s is %g, expected %g", c->name, c->value,
		              field_names[f], got, want);
	}
}
END_TEST

/* Values a double cannot carry exactly. */
START_TEST(test_seed_full_range)
{
	struct request_options o;
	request_options_init(&o);
	ck_assert_int_eq(request_options_set(&o, "seed", "18446744073709551615", 0, NULL), 0);
	ck_assert(o.attr.seed == ULLONG_MAX);
	ck_assert_int_eq(request_options_set(&o, "seed", "9007199254740993", 0, NULL), 0);
	ck_assert(o.attr.seed == 9007199254740993ull);
}
END_TEST

/* ---- bad values ---- */

struct bad_case {
	const char *name, *value;
	const char *mentions; /* the message must contain this (the option's name) */
};

static const struct bad_case bad_cases[] = {
    {"top_k", "", "top_k"},
    {"top_k", "abc", "top_k"},
    {"top_k", "0", "top_k"},
    {"top_k", "-1", "top_k"},
    {"top_k", "100001", "top_k"},
    {"top_k", "5x", "top_k"},
    {"top_k", "5 ", "top_k"},
    {"top_k", "2.5", "top_k"},
    {"top_k", "1e3", "top_k"},
    {"top_k", "0x10", "top_k"},
    {"top_k", "nan", "top_k"},
    {"top-k", "99999999999999999999", "top_k"},
    {"resize", "", "resize"},
    {"resize", "crop", "resize"},
    {"resize", "fill", "resize"},
    {"target", "", "target"},
    {"target", "-1", "target"},
    {"target", "2147483648", "target"},
    {"target", "99999999999999999999", "target"},
    {"target", "cat", "target"},
    {"target", "1.0", "target"},
    {"method", "", "method"},
    {"method", "gauss", "method"},
    {"method", "riemann", "method"},
    {"method", "gausslegendre ", "method"},
    {"steps", "", "steps"},
    {"steps", "0", "steps"},
    {"steps", "-5", "steps"},
    {"steps", "4097", "steps"},
    {"steps", "99999999999999999999", "steps"},
    {"steps", "nan", "steps"},
    {"steps", "ten", "steps"},
    {"baseline", "", "baseline"},
    {"baseline", "grey", "baseline"},
    {"baseline", "zero", "baseline"},
    {"blur_sigma", "", "blur_sigma"},
    {"blur_sigma", "0", "blur_sigma"},
    {"blur_sigma", "100.5", "blur_sigma"}, /* over the cap (issue 13: a 6001-tap kernel at 1000) */
    {"blur_sigma", "0.09", "blur_sigma"},
    {"blur_sigma", "1000.5", "blur_sigma"},
    {"blur_sigma", "-1", "blur_sigma"},
    {"blur_sigma", "nan", "blur_sigma"},
    {"blur_sigma", "inf", "blur_sigma"},
    {"blur_sigma", "1e400", "blur_sigma"},
    {"blur-sigma", "2px", "blur_sigma"},
    {"seed", "", "seed"},
    {"seed", "-1", "seed"},
    {"seed", "18446744073709551616", "seed"},
    {"seed", "99999999999999999999", "seed"},
    {"seed", "1.5", "seed"},
    {"seed", "abc", "seed"},
    {"tolerance", "0", "tolerance"},
    {"tolerance", "1e-10", "tolerance"},
    {"tolerance", "-0.01", "tolerance"},
    {"tolerance", "1.5", "tolerance"},
    {"tolerance", "nan", "tolerance"},
    {"tolerance", "inf", "tolerance"},
    {"tolerance", "small", "tolerance"},
    {"max_steps", "", "max_steps"},
    {"max_steps", "0", "max_steps"},
    {"max_steps", "4097", "max_steps"},
    {"max-steps", "99999999999999999999", "max_steps"},
    {"max_steps", "nan", "max_steps"},
    {"heatmaps", "foo", "heatmaps"},
    {"heatmaps", "normalized,foo", "foo"},
    {"heatmaps", "normalized;overlay", "heatmaps"},
    {"heatmaps", "channel_x", "channel_x"},
    {"raw", "", "raw"},
    {"raw", "yes", "raw"},
    {"raw", "npy32", "raw"},
    {"path_maps", "maybe", "path_maps"},
    {"path_maps", "2", "path_maps"},
    {"output", "", "output"},
    {"output", "prob", "output"},
    {"smoothgrad", "", "smoothgrad"},
    {"smoothgrad", "sg", "smoothgrad"},
    {"smoothgrad", "true", "smoothgrad"},
    {"smoothgrad_samples", "0", "smoothgrad_samples"},
    {"smoothgrad_samples", "4097", "smoothgrad_samples"},
    {"smoothgrad_samples", "", "smoothgrad_samples"},
    {"smoothgrad_samples", "99999999999999999999", "smoothgrad_samples"},
    {"smoothgrad_sigma", "-0.1", "smoothgrad_sigma"},
    {"smoothgrad_sigma", "10.5", "smoothgrad_sigma"},
    {"smoothgrad_sigma", "nan", "smoothgrad_sigma"},
    {"smoothgrad_sigma", "", "smoothgrad_sigma"},
    {"deadline_ms", "0", "deadline_ms"},
    {"deadline_ms", "-1", "deadline_ms"},
    {"deadline_ms", "86400001", "deadline_ms"},
    {"deadline_ms", "1s", "deadline_ms"},
    {"deadline_ms", "", "deadline_ms"},
    {"deadline_ms", "99999999999999999999", "deadline_ms"},
    /* names the parser does not know: the message quotes them as given */
    {"topk", "5", "'topk'"},
    {"", "5", "unknown option ''"},
    {"STEPS", "5", "'STEPS'"},
    {"steps_", "5", "'steps_'"},
    {"step", "5", "'step'"},
    {"max steps", "5", "'max steps'"},
};

START_TEST(test_bad_value)
{
	const struct bad_case *c = &bad_cases[_i];
	struct request_options before, o;
	request_options_init(&before);
	request_options_init(&o);
	struct igs_error err = {0};
	int rc = request_options_set(&o, c->name, c->value, 0, &err);
	ck_assert_msg(rc == IGS_ERR_BAD_OPTION, "%s=%s: rc %d", c->name, c->value, rc);
	ck_assert_int_eq(err.code, IGS_ERR_BAD_OPTION);
	ck_assert_msg(strstr(err.message, c->mentions) != NULL, "%s=%s: message '%s' lacks '%s'",
	              c->name, c->value, err.message, c->mentions);
	/* the value is quoted back so the client sees what was refused */
	if (*c->value && strncmp(err.message, "unknown option", 14) != 0)
		ck_assert_msg(strstr(err.message, c->value) != NULL || !strcmp(c->name, "heatmaps"),
		              "%s=%s: message '%s' lacks the value", c->name, c->value, err.message);
	/* nothing was changed by a refused value */
	for (int f = F_NONE + 1; f < F_COUNT; f++)
		ck_assert_msg(field_value(&o, f) == field_value(&before, f), "%s=%s changed %s", c->name,
		              c->value, field_names[f]);
}
END_TEST

/* ---- rules across options ---- */

/* A smaller server ceiling bounds steps, max_steps and smoothgrad_samples. */
START_TEST(test_max_steps_cap)
{
	struct request_options o;
	request_options_init(&o);
	struct igs_error err = {0};
	ck_assert_int_eq(request_options_set(&o, "steps", "100", 100, &err), 0);
	ck_assert_int_eq(o.attr.steps, 100);
	ck_assert_int_eq(request_options_set(&o, "steps", "101", 100, &err), IGS_ERR_BAD_OPTION);
	ck_assert_ptr_nonnull(strstr(err.message, "1 to 100"));
	ck_assert_int_eq(o.attr.steps, 100);
	ck_assert_int_eq(request_options_set(&o, "max_steps", "101", 100, &err), IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(request_options_set(&o, "smoothgrad_samples", "101", 100, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(request_options_set(&o, "max_steps", "100", 100, &err), 0);
	ck_assert_int_eq(o.attr.max_steps, 100);
	/* cap <= 0 is the 4096 default */
	ck_assert_int_eq(request_options_set(&o, "steps", "4096", -1, &err), 0);
	ck_assert_int_eq(request_options_set(&o, "steps", "4097", -1, &err), IGS_ERR_BAD_OPTION);
	/* top_k and target are not steps: the cap does not apply */
	ck_assert_int_eq(request_options_set(&o, "top_k", "1000", 100, &err), 0);
	ck_assert_int_eq(o.top_k, 1000);
}
END_TEST

/* A repeated option: the last value wins (front ends pass pairs in order). */
START_TEST(test_repeated_option_last_wins)
{
	struct request_options o;
	request_options_init(&o);
	ck_assert_int_eq(request_options_set(&o, "steps", "10", 0, NULL), 0);
	ck_assert_int_eq(request_options_set(&o, "steps", "20", 0, NULL), 0);
	ck_assert_int_eq(o.attr.steps, 20);
	ck_assert_int_eq(request_options_set(&o, "heatmaps", "normalized", 0, NULL), 0);
	ck_assert_int_eq(request_options_set(&o, "heatmaps", "overlay", 0, NULL), 0);
	ck_assert_uint_eq(o.heatmaps, HEATMAP_OVERLAY); /* replaced, not merged */
	/* a bad repeat keeps the good value before it */
	ck_assert_int_eq(request_options_set(&o, "steps", "0", 0, NULL), IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(o.attr.steps, 20);
}
END_TEST

/* method=ig keeps a rule chosen before it; a rule name after saliency is IG again. */
START_TEST(test_method_and_rule_interplay)
{
	struct request_options o;
	request_options_init(&o);
	ck_assert_int_eq(request_options_set(&o, "method", "riemann_left", 0, NULL), 0);
	ck_assert_int_eq(request_options_set(&o, "method", "saliency", 0, NULL), 0);
	ck_assert_int_eq(o.attr.method, ATTR_SALIENCY);
	ck_assert_int_eq(request_options_set(&o, "method", "ig", 0, NULL), 0);
	ck_assert_int_eq(o.attr.method, ATTR_INTEGRATED_GRADIENTS);
	ck_assert_int_eq(o.attr.rule, RULE_RIEMANN_LEFT);
	ck_assert_int_eq(request_options_set(&o, "method", "input_x_gradient", 0, NULL), 0);
	ck_assert_int_eq(request_options_set(&o, "method", "riemann_trapezoid", 0, NULL), 0);
	ck_assert_int_eq(o.attr.method, ATTR_INTEGRATED_GRADIENTS);
	ck_assert_int_eq(o.attr.rule, RULE_RIEMANN_TRAPEZOID);
}
END_TEST

/* smoothgrad defaults its samples to 16 only when none were asked for. */
START_TEST(test_smoothgrad_keeps_given_samples)
{
	struct request_options o;
	request_options_init(&o);
	ck_assert_int_eq(request_options_set(&o, "smoothgrad_samples", "4", 0, NULL), 0);
	ck_assert_int_eq(request_options_set(&o, "smoothgrad", "vargrad", 0, NULL), 0);
	ck_assert_int_eq(o.attr.smooth, SMOOTH_VARGRAD);
	ck_assert_int_eq(o.attr.smooth_samples, 4);
	ck_assert_int_eq(request_options_set(&o, "smoothgrad", "none", 0, NULL), 0);
	ck_assert_int_eq(o.attr.smooth, SMOOTH_NONE);
	ck_assert_int_eq(o.attr.smooth_samples, 4);
}
END_TEST

/* Names longer than the parser's buffer are unknown, not truncated into a known one. */
START_TEST(test_long_name_is_unknown)
{
	char name[200];
	memset(name, 'a', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	memcpy(name, "steps", 5);
	struct request_options o;
	request_options_init(&o);
	struct igs_error err = {0};
	ck_assert_int_eq(request_options_set(&o, name, "5", 0, &err), IGS_ERR_BAD_OPTION);
	ck_assert_ptr_nonnull(strstr(err.message, "unknown option 'stepsaaa"));
	ck_assert_int_eq(o.attr.steps, 50);
	/* a NULL error is allowed */
	ck_assert_int_eq(request_options_set(&o, "steps", "x", 0, NULL), IGS_ERR_BAD_OPTION);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("request_options");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_defaults);
	tcase_add_loop_test(tc, test_good_value, 0, (int)(sizeof good_cases / sizeof good_cases[0]));
	tcase_add_test(tc, test_seed_full_range);
	tcase_add_loop_test(tc, test_bad_value, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
	tcase_add_test(tc, test_max_steps_cap);
	tcase_add_test(tc, test_repeated_option_last_wins);
	tcase_add_test(tc, test_method_and_rule_interplay);
	tcase_add_test(tc, test_smoothgrad_keeps_given_samples);
	tcase_add_test(tc, test_long_name_is_unknown);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
