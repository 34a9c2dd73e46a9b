/*
 * test_conv_bf16.c - split bf16 (CONV_PRECISION_BF16X3, on CPUs with AMX):
 * the convolutions against a loop that takes the same three bfloat16
 * products in double.  The rest of the arithmetic in that precision:
 * test_conv.c's "bf16x3" case; helpers: conv_test_support.h.
 */
#include "conv_test_support.h"

/* ------------------------------------------------------------ split bf16 */

/* x rounded to bfloat16's 8 significant bits, ties to even: written apart
 * from conv.c's bit manipulation, by frexp and nearbyint. */
static double to_bf16(double x)
{
	if (x == 0.0)
		return 0.0;
	int e;
	const double m = frexp(x, &e); /* x = m 2^e, 0.5 <= |m| < 1 */
	return ldexp(nearbyint(ldexp(m, 8)), e - 8);
}

/* hi and lo parts of every value: v = hi + lo + (what bf16x3 drops) */
static void split_parts(const float *v, size_t count, float *hi, float *lo)
{
	for (size_t i = 0; i < count; i++) {
		hi[i] = (float)to_bf16(v[i]);
		lo[i] = (float)to_bf16((double)v[i] - hi[i]);
	}
}

/*
 * A split bf16 plan computes exactly hi(x) hi(w) + lo(x) hi(w) + hi(x) lo(w)
 * summed in float32: against that sum taken in double (three naive loops),
 * within float32 summation; against the float32 convolution it differs by
 * the dropped terms (nonzero, below 1e-5 of the largest output).  Its
 * kernels are AMX ones.  Forward and backward, 1x1, 3x3, strided.
 */
START_TEST(test_split_bf16_products)
{
	const struct conv_shape shapes[] = {
	    CONV(2, 24, 7, 9, 40, 1, 1, 0),
	    CONV(3, 64, 9, 7, 32, 3, 1, 1),
	    CONV(1, 64, 10, 9, 64, 3, 2, 1),
	    CONV(3, 16, 7, 10, 32, 1, 2, 0),
	};
	ck_assert_str_eq(conv_precision_name(arith), "bf16x3");
	for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
		struct conv_shape s = shapes[t];
		conv_shape_finish(&s);
		const size_t n_in = in_count(&s), n_out = out_count(&s), n_w = w_count(&s);
		float *w = random_weights(&s), *x = frandom(n_in, 1.0f), *g = frandom(n_out, 1.0f);
		float *x_hi = malloc(n_in * sizeof(float)), *x_lo = malloc(n_in * sizeof(float));
		float *w_hi = malloc(n_w * sizeof(float)), *w_lo = malloc(n_w * sizeof(float));
		float *g_hi = malloc(n_out * sizeof(float)), *g_lo = malloc(n_out * sizeof(float));
		split_parts(x, n_in, x_hi, x_lo);
		split_parts(w, n_w, w_hi, w_lo);
		split_parts(g, n_out, g_hi, g_lo);
		struct conv_weights *cw = weights_ok(w, NULL, &s);
		struct conv_plan *p = plan_ok(cw, &s, 0);
		char what[160];
		describe(what, sizeof what, &s, "split bf16");
		ck_assert_msg(strstr(conv_plan_forward_impl(p), "amx"), "%s: forward on %s", what,
		              conv_plan_forward_impl(p));
		void *scratch = scratch_alloc(p);

		/* forward */
		double *want = dalloc(n_out), *part = dalloc(n_out), *exact = dalloc(n_out);
		naive_forward(want, x_hi, w_hi, NULL, NULL, false, &s);
		naive_forward(part, x_lo, w_hi, NULL, NULL, false, &s);
		for (size_t i = 0; i < n_out; i++)
			want[i] += part[i];
		naive_forward(part, x_hi, w_lo, NULL, NULL, false, &s);
		for (size_t i = 0; i < n_out; i++)
			want[i] += part[i];
		naive_forward(exact, x, w, NULL, NULL, false, &s);
		float *out = outalloc(n_out);
		run_forward(p, &s, out, x, scratch);
		assert_close(out, want, n_out, 1e-6, what);
		double dropped = 0, scale = 0;
		for (size_t i = 0; i < n_out; i++) {
			dropped = fmax(dropped, fabs(out[i] - exact[i]));
			scale = fmax(scale, fabs(exact[i]));
		}
		ck_assert_msg(dropped > 0 && dropped <= 1e-5 * scale,
		              "%s: forward %g from float32's (largest %g)", what, dropped, scale);
		assert_guard(out, n_out, what);

		/* backward: the transposed products, the same three */
		double *want_b = dalloc(n_in), *part_b = dalloc(n_in);
		const bool same_size = s.stride == 1;
		naive_backward(want_b, g_hi, w_hi, &s);
		naive_backward(part_b, g_lo, w_hi, &s);
		for (size_t i = 0; i < n_in; i++)
			want_b[i] += part_b[i];
		naive_backward(part_b, g_hi, w_lo, &s);
		for (size_t i = 0; i < n_in; i++)
			want_b[i] += part_b[i];
		float *d_in = outalloc(n_in);
		run_backward(p, &s, d_in, g, scratch);
		if (same_size || s.k == 1) {
			ck_assert_msg(strstr(conv_plan_backward_impl(p), "amx"),
			              "%s: backward on %s", what, conv_plan_backward_impl(p));
			assert_close(d_in, want_b, n_in, 1e-6, what);
		} else {
			/* a strided 3x3's backward is oneDNN's float32 backward_data */
			naive_backward(want_b, g, w, &s);
			assert_close(d_in, want_b, n_in, 1e-6, what);
		}
		assert_guard(d_in, n_in, what);
		conv_plan_close(&p);
		conv_weights_close(&cw);
		free(w), free(x), free(g), free(x_hi), free(x_lo), free(w_hi), free(w_lo);
		free(g_hi), free(g_lo), free(want), free(part), free(exact), free(out);
		free(want_b), free(part_b), free(d_in), free(scratch);
	}
}
END_TEST

int main(void)
{
	struct igs_error err = {0};
	enum conv_precision resolved;
	if (conv_precision_resolve(CONV_PRECISION_BF16X3, &resolved, &err) != 0) {
		printf("test_conv_bf16: split bf16 not tested here: %s\n", err.message);
		return 77; /* meson's "skipped": nothing here can run on this CPU */
	}
	Suite *s = suite_create("conv-bf16");
	TCase *split = tcase_create("bf16x3");
	tcase_add_checked_fixture(split, reseed_bf16x3, NULL);
	tcase_add_test(split, test_split_bf16_products);
	suite_add_tcase(s, split);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
