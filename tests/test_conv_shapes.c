/*
 * test_conv_shapes.c - conv.c's shapes and choices: output sizes by the
 * formula, the refusal of shapes that are not a convolution, and the
 * kernels oneDNN is asked for (Winograd where it has it).  The arithmetic:
 * test_conv.c; helpers: conv_test_support.h.
 */
#include "conv_test_support.h"

START_TEST(test_shape_finish)
{
	/* against the formula evaluated here, not against constants */
	for (int t = 0; t < N_CONV_CASES; t++) {
		struct conv_shape s = conv_cases[t];
		s.h_out = s.w_out = -7;
		conv_shape_finish(&s);
		ck_assert_int_eq(s.h_out, (s.h_in + 2 * s.pad - s.k) / s.stride + 1);
		ck_assert_int_eq(s.w_out, (s.w_in + 2 * s.pad - s.k) / s.stride + 1);
		ck_assert_int_eq(s.n, conv_cases[t].n); /* only the outputs change */
		ck_assert_int_eq(s.c_out, conv_cases[t].c_out);
	}
}
END_TEST

START_TEST(test_bad_shapes_refused)
{
	static const struct {
		struct conv_shape s;
		const char *what;
	} bad_weights[] = {
	    {CONV(1, 0, 8, 8, 4, 3, 1, 1), "c_in 0"},
	    {CONV(1, 4, 8, 8, 0, 3, 1, 1), "c_out 0"},
	    {CONV(1, 4, 8, 8, 4, 0, 1, 1), "k 0"},
	    {CONV(1, 4, 8, 8, 4, 3, 0, 1), "stride 0"},
	    {CONV(1, 4, 8, 8, 4, 3, 1, -1), "pad -1"},
	    {CONV(1, 4, 5, 8, 4, 7, 1, 0), "kernel taller than the input"},
	    {CONV(1, 4, 8, 4, 4, 7, 1, 1), "kernel wider than the padded input"},
	    /* (6 - 7) / 2 + 1 is 1 in C's truncating division, but no window
	     * fits: h_out is 0 */
	    {CONV(1, 4, 6, 8, 4, 7, 2, 0), "kernel taller than the input, stride 2"},
	    {CONV(0, 4, 8, 8, 4, 3, 1, 1), "batch 0"},
	    {CONV(1, 4, 0, 8, 4, 3, 1, 1), "h_in 0"},
	    {CONVB(1, 16, 8, 8, 4, 3, 1, 1), "blocked with 4 output channels"},
	    {CONVB(1, 8, 8, 8, 16, 3, 1, 1), "blocked with 8 input channels"},
	};
	/* enough for every shape above even if it is not checked first */
	float *w = frandom(4096, 0.1f), *bias = frandom(64, 0.1f);
	for (size_t t = 0; t < sizeof bad_weights / sizeof bad_weights[0]; t++) {
		struct conv_shape s = bad_shape(bad_weights[t].s);
		struct conv_weights *cw = NULL;
		struct igs_error err = {0};
		char what[120];
		snprintf(what, sizeof what, "conv_weights_open, %s", bad_weights[t].what);
		assert_refused(conv_weights_open(&cw, w, bias, &s, 0, arith, &err), cw, &err, what);
		/* and without an error to fill */
		ck_assert_int_lt(conv_weights_open(&cw, w, bias, &s, 0, arith, NULL), 0);
		ck_assert_ptr_null(cw);
	}
	/* a backward epilogue for a kernel that takes none, or unknown flags */
	const struct {
		struct conv_shape s;
		unsigned backward;
	} bad_epilogues[] = {
	    {CONV(1, 16, 8, 8, 16, 3, 1, 1), CONV_BACKWARD_ADD},
	    {CONV(1, 16, 8, 8, 32, 1, 2, 0), CONV_BACKWARD_MASK},
	    {CONV(1, 16, 8, 8, 32, 1, 1, 0), CONV_RELU},
	};
	for (size_t t = 0; t < sizeof bad_epilogues / sizeof bad_epilogues[0]; t++) {
		struct conv_shape s = bad_epilogues[t].s;
		conv_shape_finish(&s);
		struct conv_weights *cw = NULL;
		struct igs_error err = {0};
		assert_refused(
		    conv_weights_open(&cw, w, bias, &s, bad_epilogues[t].backward, arith, &err), cw,
		    &err, "conv_weights_open with a backward epilogue it cannot take");
	}

	/* Plans: good weights, then shapes that are no convolution or not
	 * this one's. */
	struct conv_shape good = CONV(1, 4, 8, 8, 6, 3, 2, 1);
	conv_shape_finish(&good);
	struct conv_weights *cw = weights_ok(w, bias, &good);
	struct {
		struct conv_shape s;
		const char *what;
	} bad_plans[] = {
	    {good, "batch 0"},
	    {good, "h_in 0"},
	    {good, "w_in 0"},
	    {good, "c_in 5 against weights of 4"},
	    {good, "c_out 7 against 6"},
	    {good, "k 5 against 3"},
	    {good, "stride 1 against 2"},
	    {good, "pad 0 against 1"},
	};
	bad_plans[0].s.n = 0;
	bad_plans[1].s.h_in = 0;
	bad_plans[2].s.w_in = 0;
	bad_plans[3].s.c_in = 5;
	bad_plans[4].s.c_out = 7;
	bad_plans[5].s.k = 5;
	bad_plans[6].s.stride = 1;
	bad_plans[7].s.pad = 0;
	for (size_t t = 0; t < sizeof bad_plans / sizeof bad_plans[0]; t++) {
		struct conv_shape s = bad_shape(bad_plans[t].s);
		struct conv_plan *p = NULL;
		struct igs_error err = {0};
		char what[120];
		snprintf(what, sizeof what, "conv_plan_open, %s", bad_plans[t].what);
		assert_refused(conv_plan_open(&p, cw, &s, 0, &err), p, &err, what);
		ck_assert_int_lt(conv_plan_open(&p, cw, &s, 0, NULL), 0);
		ck_assert_ptr_null(p);
	}

	/* unpadded 5x5 weights, then a plan on an image smaller than the kernel
	 * (h_out -1, then w_out 0) */
	struct conv_shape k5 = CONV(1, 4, 8, 8, 6, 5, 1, 0);
	conv_shape_finish(&k5);
	struct conv_weights *cw5 = weights_ok(w, bias, &k5);
	for (int t = 0; t < 2; t++) {
		struct conv_shape s = k5;
		if (t)
			s.w_in = 4;
		else
			s.h_in = 3;
		conv_shape_finish(&s);
		struct conv_plan *p = NULL;
		struct igs_error err = {0};
		assert_refused(conv_plan_open(&p, cw5, &s, 0, &err), p, &err,
		               t ? "conv_plan_open, k 5 on 8 x 4"
		                 : "conv_plan_open, k 5 on 3 x 8");
	}
	conv_weights_close(&cw5);

	/* freeing nothing is fine */
	struct conv_plan *p = NULL;
	conv_weights_close(&cw);
	ck_assert_ptr_null(cw);
	conv_weights_close(&cw);
	conv_plan_close(&p);
	ck_assert_ptr_null(p);
	free(w), free(bias);
}
END_TEST

/* On AVX-512 (where oneDNN has it) a blocked 3x3 stride-1 layer runs both
 * directions by Winograd from 14x14 outputs up; 7x7 ones and NHWC ones run
 * directly.  The weights packed for a batch of 4
 * serve a batch of 1 unless oneDNN has no kernel for their layout there. */
START_TEST(test_winograd_chosen)
{
	if (!strstr(conv_backend(), "avx512"))
		return; /* oneDNN's Winograd is AVX-512 only: direct is right here */
	const struct {
		struct conv_shape s;
		bool fwd, bwd;
	} cases[] = {
	    {CONVB(4, 16, 28, 28, 16, 3, 1, 1), true, true},
	    {CONVB(4, 32, 14, 14, 16, 3, 1, 1), true, true},
	    {CONVB(4, 16, 7, 7, 16, 3, 1, 1), false, false},
	    {CONV(4, 16, 28, 28, 16, 3, 1, 1), false, false},
	};
	for (int t = 0; t < 4; t++) {
		struct conv_shape s = cases[t].s;
		conv_shape_finish(&s);
		float *w = random_weights(&s);
		struct conv_weights *cw = weights_ok(w, NULL, &s);
		for (int n = 4; n >= 1; n -= 3) {
			s.n = n;
			struct conv_plan *p = plan_ok(cw, &s, CONV_RELU);
			bool fwd = strstr(conv_plan_forward_impl(p), "wino") != NULL;
			bool bwd = strstr(conv_plan_backward_impl(p), "wino") != NULL;
			ck_assert_msg(fwd == cases[t].fwd && bwd == cases[t].bwd,
			              "case %d batch %d: forward %s, backward %s", t, n,
			              conv_plan_forward_impl(p), conv_plan_backward_impl(p));
			if (n == 4)
				ck_assert_uint_eq(conv_plan_other_layout_bytes(p), 0);
			conv_plan_close(&p);
		}
		conv_weights_close(&cw);
		free(w);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("conv-shapes");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, reseed_fp32, NULL);
	tcase_add_test(tc, test_shape_finish);
	tcase_add_test(tc, test_bad_shapes_refused);
	tcase_add_test(tc, test_winograd_chosen);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
