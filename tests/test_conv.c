/*
 * test_conv.c - the arithmetic of the oneDNN convolutions of conv.c (NHWC
 * activations, weights [c_out][c_in][k][k]) against independent references:
 *   - the forward against a naive direct loop (double accumulation), with
 *     and without bias, under every epilogue;
 *   - backward-data against a naive transposed loop, and against the
 *     forward through the adjoint identity <Ax, y> = <x, A^T y>;
 *   - plans for shapes other than the one the weights were reordered for,
 *     plans on two OpenMP threads against one, and caller-owned scratch.
 * All of it twice: in float32 and in split bf16 (CONV_PRECISION_BF16X3, on
 * CPUs with AMX).  Shapes, refusals and kernel choice: test_conv_shapes.c;
 * the split bf16 products against double: test_conv_bf16.c; helpers:
 * conv_test_support.h.
 */
#include "conv_test_support.h"

static const unsigned epilogues[] = {0, CONV_RELU, CONV_ADD_TO_OUT, CONV_ADD_TO_OUT | CONV_RELU};

static void forward_case(int t)
{
	struct conv_shape s = conv_case(t);
	float *in = frandom(in_count(&s), 1.0f), *w = random_weights(&s);
	float *bias = frandom((size_t)s.c_out, 0.5f), *res = frandom(out_count(&s), 1.0f);
	for (int use_bias = 0; use_bias < 2; use_bias++) {
		const float *b = use_bias ? bias : NULL;
		struct conv_weights *cw = weights_ok(w, b, &s);
		for (size_t e = 0; e < sizeof epilogues / sizeof epilogues[0]; e++) {
			struct conv_plan *p = plan_ok(cw, &s, epilogues[e]);
			char what[160], tag[64];
			snprintf(tag, sizeof tag, "forward, bias %d, add %d, relu %d", use_bias,
			         !!(epilogues[e] & CONV_ADD_TO_OUT), !!(epilogues[e] & CONV_RELU));
			describe(what, sizeof what, &s, tag);
			check_forward(p, &s, epilogues[e], in, w, b, res, NULL, what);
			conv_plan_close(&p);
			ck_assert_ptr_null(p);
		}
		conv_weights_close(&cw);
		ck_assert_ptr_null(cw);
	}
	free(in), free(w), free(bias), free(res);
}

START_TEST(test_forward_matches_direct_loop)
{
	for (int t = 0; t < N_CONV_CASES; t++)
		forward_case(t);
}
END_TEST

static void backward_case(int t)
{
	struct conv_shape s = conv_case(t);
	float *w = random_weights(&s), *bias = frandom((size_t)s.c_out, 0.5f);
	float *d_out = frandom(out_count(&s), 1.0f);
	/* The forward's bias and epilogue must not leak into backward_data: the
	 * plain plan and one with all of them give the same conv^T. */
	for (int all = 0; all < 2; all++) {
		struct conv_weights *cw = weights_ok(w, all ? bias : NULL, &s);
		struct conv_plan *p = plan_ok(cw, &s, all ? CONV_ADD_TO_OUT | CONV_RELU : 0);
		char what[160];
		describe(what, sizeof what, &s,
		         all ? "backward_data, plan with bias, add and relu" : "backward_data");
		check_backward(p, &s, d_out, w, NULL, what);
		conv_plan_close(&p);
		conv_weights_close(&cw);
	}
	free(w), free(bias), free(d_out);
}

START_TEST(test_backward_matches_transposed_loop)
{
	for (int t = 0; t < N_CONV_CASES; t++)
		backward_case(t);
}
END_TEST

static void adjoint_case(int t)
{
	/* <conv(x), y> = <x, conv^T(y)>: the backward is the exact transpose of
	 * the forward, independently of any reference loop. */
	struct conv_shape s = conv_case(t);
	size_t n_in = in_count(&s), n_out = out_count(&s);
	float *w = random_weights(&s), *x = frandom(n_in, 1.0f), *y = frandom(n_out, 1.0f);
	float *ax = outalloc(n_out), *aty = outalloc(n_in);
	struct conv_weights *cw = weights_ok(w, NULL, &s);
	struct conv_plan *p = plan_ok(cw, &s, 0);
	void *scratch = scratch_alloc(p);
	run_forward(p, &s, ax, x, scratch);
	run_backward(p, &s, aty, y, scratch);
	double lhs = dot(ax, y, n_out), rhs = dot(x, aty, n_in);
	/* rounding is relative to the terms, not to their (cancelling) sum */
	double scale = 0.0, scale2 = 0.0;
	for (size_t i = 0; i < n_out; i++)
		scale += fabs((double)ax[i] * y[i]);
	for (size_t i = 0; i < n_in; i++)
		scale2 += fabs((double)x[i] * aty[i]);
	scale = fmax(scale, scale2);
	ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * scale,
	              "case %d: <Ax,y> = %.9g but <x,A^T y> = %.9g (scale %.4g)", t, lhs, rhs,
	              scale);
	assert_guard(ax, n_out, "adjoint forward");
	assert_guard(aty, n_in, "adjoint backward");
	conv_plan_close(&p);
	conv_weights_close(&cw);
	free(w), free(x), free(y), free(ax), free(aty), free(scratch);
}

START_TEST(test_adjoint_identity)
{
	for (int t = 0; t < N_CONV_CASES; t++)
		adjoint_case(t);
}
END_TEST

/* The weights are reordered for one shape (batch 1, the model's input size)
 * and a plan runs another: a batch, a tile, a smaller or larger image.  On
 * AVX-512 the first, second and fourth want other layouts than their
 * weights have. */
static const struct {
	struct conv_shape rep;
	int n, h, w;
} other_cases[] = {
    /* weights for,                      plan n, h_in, w_in */
    {CONV(1, 64, 56, 56, 64, 3, 1, 1), 3, 9, 7},    /* a small tile */
    {CONV(1, 64, 7, 7, 64, 3, 1, 1), 1, 28, 28},    /* a larger image */
    {CONV(1, 3, 224, 224, 64, 7, 2, 3), 2, 20, 18}, /* stem */
    {CONV(1, 64, 56, 56, 128, 1, 2, 0), 3, 10, 10}, /* downsample */
    {CONV(1, 24, 9, 9, 5, 3, 2, 1), 3, 31, 17},     /* odd channels, larger */
    {CONVB(1, 64, 56, 56, 64, 3, 1, 1), 3, 30, 28}, /* Winograd weights, a batch */
    {CONVB(1, 64, 56, 56, 64, 3, 1, 1), 1, 9, 7},   /* Winograd weights, a direct tile */
};
#define N_OTHER_CASES ((int)(sizeof other_cases / sizeof other_cases[0]))

static void other_shape_case(int t)
{
	struct conv_shape rep = other_cases[t].rep;
	conv_shape_finish(&rep);
	struct conv_shape s = rep;
	s.n = other_cases[t].n, s.h_in = other_cases[t].h, s.w_in = other_cases[t].w;
	conv_shape_finish(&s);
	float *in = frandom(in_count(&s), 1.0f), *w = random_weights(&s);
	float *bias = frandom((size_t)s.c_out, 0.5f), *res = frandom(out_count(&s), 1.0f);
	float *d_out = frandom(out_count(&s), 1.0f);
	struct conv_weights *cw = weights_ok(w, bias, &rep);
	for (size_t e = 0; e < sizeof epilogues / sizeof epilogues[0]; e += 3) {
		struct conv_plan *p = plan_ok(cw, &s, epilogues[e]);
		size_t private_bytes = conv_plan_other_layout_bytes(p); /* either is right */
		(void)private_bytes;
		char what[200], tag[100];
		snprintf(tag, sizeof tag, "weights for n1 %dx%d, forward epilogue %u", rep.h_in,
		         rep.w_in, epilogues[e]);
		describe(what, sizeof what, &s, tag);
		check_forward(p, &s, epilogues[e], in, w, bias, res, NULL, what);
		if (e == 0) {
			snprintf(tag, sizeof tag, "weights for n1 %dx%d, backward_data", rep.h_in,
			         rep.w_in);
			describe(what, sizeof what, &s, tag);
			check_backward(p, &s, d_out, w, NULL, what);
		}
		conv_plan_close(&p);
	}
	conv_weights_close(&cw);
	free(in), free(w), free(bias), free(res), free(d_out);
}

START_TEST(test_plan_for_other_shape)
{
	for (int t = 0; t < N_OTHER_CASES; t++)
		other_shape_case(t);
}
END_TEST

/* Forward (bias, residual, ReLU) and backward_data with a plan created and
 * run under omp_set_num_threads(threads). */
static void run_threads(float *out, float *d_in, const struct conv_weights *cw,
                        const struct conv_shape *s, const float *in, const float *res,
                        const float *d_out, int threads)
{
	omp_set_num_threads(threads);
	ck_assert_int_eq(omp_get_max_threads(), threads);
	struct conv_plan *p = plan_ok(cw, s, CONV_ADD_TO_OUT | CONV_RELU);
	void *scratch = scratch_alloc(p);
	memcpy(out, res, out_count(s) * sizeof(float));
	run_forward(p, s, out, in, scratch);
	run_backward(p, s, d_in, d_out, scratch);
	conv_plan_close(&p);
	free(scratch);
}

/* Big enough that oneDNN splits the work between the threads. */
static const struct conv_shape thread_cases[] = {
    CONV(2, 64, 28, 28, 64, 3, 1, 1),   CONV(2, 3, 56, 56, 64, 7, 2, 3),
    CONV(2, 64, 28, 28, 128, 1, 2, 0),  CONVB(2, 64, 28, 28, 64, 3, 1, 1), /* Winograd */
    CONVB(2, 64, 28, 28, 128, 1, 2, 0),
};
#define N_THREAD_CASES ((int)(sizeof thread_cases / sizeof thread_cases[0]))

static void threads_case(int t)
{
	struct conv_shape s = thread_cases[t];
	conv_shape_finish(&s);
	size_t n_in = in_count(&s), n_out = out_count(&s);
	float *in = frandom(n_in, 1.0f), *w = random_weights(&s);
	float *bias = frandom((size_t)s.c_out, 0.5f), *res = frandom(n_out, 1.0f);
	float *d_out = frandom(n_out, 1.0f);
	float *out1 = outalloc(n_out), *out2 = outalloc(n_out);
	float *d1 = outalloc(n_in), *d2 = outalloc(n_in);
	struct conv_weights *cw = weights_ok(w, bias, &s);
	int saved = omp_get_max_threads();
	run_threads(out1, d1, cw, &s, in, res, d_out, 1);
	run_threads(out2, d2, cw, &s, in, res, d_out, 2);
	omp_set_num_threads(saved);
	/* oneDNN may sum in another order on two threads: close, not equal */
	char what[160];
	describe(what, sizeof what, &s, "forward, 2 threads vs 1");
	assert_close_f(out2, out1, n_out, 1e-5, what);
	assert_guard(out1, n_out, what);
	assert_guard(out2, n_out, what);
	describe(what, sizeof what, &s, "backward_data, 2 threads vs 1");
	assert_close_f(d2, d1, n_in, 1e-5, what);
	assert_guard(d1, n_in, what);
	assert_guard(d2, n_in, what);
	conv_weights_close(&cw);
	free(in), free(w), free(bias), free(res), free(d_out);
	free(out1), free(out2), free(d1), free(d2);
}

START_TEST(test_two_threads_match_one)
{
	for (int t = 0; t < N_THREAD_CASES; t++)
		threads_case(t);
}
END_TEST

static const struct conv_shape scratch_cases[] = {
    CONV(2, 3, 21, 19, 64, 7, 2, 3),
    CONV(3, 5, 9, 7, 16, 3, 2, 1),
    CONV(2, 64, 12, 12, 64, 3, 1, 1),
    CONV(2, 24, 9, 8, 40, 1, 2, 0),
};
#define N_SCRATCH_CASES ((int)(sizeof scratch_cases / sizeof scratch_cases[0]))

static void scratch_case(int t)
{
	/* The caller's weight and bias arrays are scribbled over and freed
	 * before any plan exists: the weights must be a copy. */
	struct conv_shape s = scratch_cases[t];
	conv_shape_finish(&s);
	size_t n_w = w_count(&s);
	float *w = random_weights(&s), *bias = frandom((size_t)s.c_out, 0.5f);
	float *w_caller = falloc(n_w), *bias_caller = falloc((size_t)s.c_out);
	memcpy(w_caller, w, n_w * sizeof(float));
	memcpy(bias_caller, bias, (size_t)s.c_out * sizeof(float));
	struct conv_weights *cw = weights_ok(w_caller, bias_caller, &s);
	for (size_t i = 0; i < n_w; i++)
		w_caller[i] = NAN;
	for (int i = 0; i < s.c_out; i++)
		bias_caller[i] = NAN;
	free(w_caller), free(bias_caller);

	/* One scratch buffer, exactly what the plan asked for (rounded to 64
	 * bytes), NaN bytes at first and then whatever forward and backward
	 * left in it for each other. */
	float *in = frandom(in_count(&s), 1.0f), *res = frandom(out_count(&s), 1.0f);
	float *d_out = frandom(out_count(&s), 1.0f);
	struct conv_plan *p = plan_ok(cw, &s, CONV_ADD_TO_OUT | CONV_RELU);
	void *scratch = scratch_alloc(p);
	char what[160];
	for (int run = 0; run < 2; run++) {
		describe(what, sizeof what, &s, run ? "forward after backward_data" : "forward");
		check_forward(p, &s, CONV_ADD_TO_OUT | CONV_RELU, in, w, bias, res, scratch, what);
		describe(what, sizeof what, &s, "backward_data after forward");
		check_backward(p, &s, d_out, w, scratch, what);
	}
	conv_plan_close(&p);
	conv_weights_close(&cw);
	free(w), free(bias), free(in), free(res), free(d_out), free(scratch);
}

START_TEST(test_scratch_and_caller_weights)
{
	for (int t = 0; t < N_SCRATCH_CASES; t++)
		scratch_case(t);
}
END_TEST

/* 1x1 stride-1 plans run their backward as a forward convolution with the
 * CONV_BACKWARD_* epilogue: d_in = mask ? conv^T(d_out) + d_in : 0, against
 * the transposed loop; other kernels refuse the epilogue. */
START_TEST(test_backward_epilogue)
{
	const struct conv_shape shapes[] = {
	    CONV(2, 24, 7, 9, 40, 1, 1, 0),
	    CONVB(3, 32, 6, 5, 64, 1, 1, 0),
	    CONVB(1, 64, 14, 14, 16, 1, 1, 0),
	};
	for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
		struct conv_shape s = shapes[t];
		conv_shape_finish(&s);
		size_t n_in = in_count(&s), n_out = out_count(&s);
		float *w = random_weights(&s), *d_out = frandom(n_out, 1.0f);
		float *prior = frandom(n_in, 1.0f), *d_in = outalloc(n_in);
		double *ref = dalloc(n_in);
		uint8_t *mask = malloc(n_in);
		for (size_t i = 0; i < n_in; i++)
			mask[i] = frand() > 0.0f;
		struct conv_weights *cw = weights_ok(w, NULL, &s);
		ck_assert(conv_weights_fuse_backward(cw));
		naive_backward(ref, d_out, w, &s);
		const unsigned epis[] = {CONV_BACKWARD_ADD, CONV_BACKWARD_MASK,
		                         CONV_BACKWARD_ADD | CONV_BACKWARD_MASK};
		for (size_t e = 0; e < 3; e++) {
			struct conv_plan *p = plan_ok(cw, &s, CONV_RELU | epis[e]);
			void *scratch = scratch_alloc(p);
			memcpy(d_in, prior, n_in * sizeof(float));
			bool add = epis[e] & CONV_BACKWARD_ADD,
			     masked = epis[e] & CONV_BACKWARD_MASK;
			run_backward_masked(p, &s, d_in, d_out, masked ? mask : NULL, scratch);
			double *want = dalloc(n_in);
			for (size_t i = 0; i < n_in; i++)
				want[i] =
				    masked && !mask[i] ? 0.0 : ref[i] + (add ? prior[i] : 0.0);
			char what[160], tag[64];
			snprintf(tag, sizeof tag, "backward epilogue add %d mask %d", add, masked);
			describe(what, sizeof what, &s, tag);
			assert_close(d_in, want, n_in, 1e-5, what);
			for (size_t i = 0; masked && i < n_in; i++)
				ck_assert_msg(mask[i] || d_in[i] == 0.0f, "%s: %zu not masked",
				              what, i);
			assert_guard(d_in, n_in, what);
			free(want), free(scratch);
			conv_plan_close(&p);
		}
		conv_weights_close(&cw);
		free(w), free(d_out), free(prior), free(d_in), free(ref), free(mask);
	}

	/* 3x3 and strided 1x1 backwards are no forward convolution */
	const struct conv_shape others[] = {CONVB(1, 16, 8, 8, 16, 3, 1, 1),
	                                    CONV(1, 16, 8, 8, 16, 3, 2, 1),
	                                    CONV(1, 16, 8, 8, 32, 1, 2, 0)};
	for (size_t t = 0; t < sizeof others / sizeof others[0]; t++) {
		struct conv_shape s = others[t];
		conv_shape_finish(&s);
		float *w = random_weights(&s);
		struct conv_weights *cw = weights_ok(w, NULL, &s);
		ck_assert(!conv_weights_fuse_backward(cw));
		struct conv_plan *p = NULL;
		struct igs_error err = {0};
		assert_refused(conv_plan_open(&p, cw, &s, CONV_BACKWARD_ADD, &err), p, &err,
		               "backward epilogue on a kernel without one");
		conv_weights_close(&cw);
		free(w);
	}
}
END_TEST

/*
 * Plans that want the weights in another layout (another epilogue, another
 * batch) share one copy, kept with the weights: however many plans, the
 * weights grow by one copy per layout; weights packed for the epilogue need
 * none for it.
 */
START_TEST(test_other_layouts_shared)
{
	struct conv_shape s = CONV(4, 48, 14, 14, 192, 1, 1, 0);
	conv_shape_finish(&s);
	const unsigned entry = CONV_BACKWARD_ADD | CONV_BACKWARD_MASK;
	float *w = random_weights(&s);
	struct conv_weights *cw = weights_ok(w, NULL, &s);
	const size_t before = conv_weights_bytes(cw);
	struct conv_plan *plans[3];
	for (int i = 0; i < 3; i++) {
		struct conv_shape t = s;
		t.n = i == 1 ? 1 : 4;
		plans[i] = plan_ok(cw, &t, entry);
	}
	const size_t other = conv_plan_other_layout_bytes(plans[0]);
	ck_assert_uint_eq(conv_plan_other_layout_bytes(plans[2]), other);
	const size_t grown = conv_weights_bytes(cw) - before;
	ck_assert_msg(grown == other + conv_plan_other_layout_bytes(plans[1]) || grown == other,
	              "weights grew by %zu for copies of %zu and %zu bytes", grown, other,
	              conv_plan_other_layout_bytes(plans[1]));
	for (int i = 0; i < 3; i++)
		conv_plan_close(&plans[i]);
	conv_weights_close(&cw);

	cw = weights_for_epilogue(w, NULL, &s, entry);
	struct conv_plan *p = plan_ok(cw, &s, entry);
	ck_assert_uint_eq(conv_plan_other_layout_bytes(p), 0);
	conv_plan_close(&p);
	conv_weights_close(&cw);
	free(w);
}
END_TEST

static void queries_case(int t)
{
	struct conv_shape s = conv_case(t);
	float *w = random_weights(&s);
	struct conv_weights *cw = weights_ok(w, NULL, &s);
	/* both layouts hold every weight */
	ck_assert_uint_ge(conv_weights_bytes(cw), w_count(&s) * sizeof(float));
	struct conv_plan *p = plan_ok(cw, &s, CONV_RELU);
	const char *fwd = conv_plan_forward_impl(p), *bwd = conv_plan_backward_impl(p);
	ck_assert_ptr_nonnull(fwd);
	ck_assert_ptr_nonnull(bwd);
	ck_assert_msg(fwd[0] != '\0', "case %d: empty forward impl name", t);
	ck_assert_msg(bwd[0] != '\0', "case %d: empty backward impl name", t);
	conv_plan_close(&p);
	conv_weights_close(&cw);
	free(w);
}

START_TEST(test_queries)
{
	for (int t = 0; t < N_CONV_CASES; t++)
		queries_case(t);
}
END_TEST

/*
 * The ReLU masks a plan takes as it reads its source (conv_plan_forward_mask,
 * conv_plan_backward_data_masked) against the separate passes: the same
 * bits, and bit for bit the same outputs as the plan on the masked input.
 * Channels on and off the 16 grid (the split's vector and scalar paths), a
 * subsampled convolution (whose source is gathered first), NHWC shapes.
 */
START_TEST(test_masks_in_the_read)
{
	const struct conv_shape shapes[] = {
	    CONV(2, 32, 7, 9, 48, 1, 1, 0),
	    CONV(3, 24, 9, 7, 40, 3, 1, 1),
	    CONV(2, 16, 7, 10, 32, 1, 2, 0),
	};
	for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
		struct conv_shape s = shapes[t];
		conv_shape_finish(&s);
		const size_t n_in = in_count(&s), n_out = out_count(&s);
		float *w = random_weights(&s), *x = frandom(n_in, 1.0f), *g = frandom(n_out, 1.0f);
		struct conv_weights *cw = weights_ok(w, NULL, &s);
		struct conv_plan *p = plan_ok(cw, &s, 0);
		void *scratch = scratch_alloc(p);
		char what[160];
		describe(what, sizeof what, &s, "masks in the read");

		/* forward: in's bits, and the plain forward's output */
		uint8_t *bits = malloc((n_in + 7) / 8), *want_bits = malloc((n_in + 7) / 8);
		float *out = outalloc(n_out), *want = outalloc(n_out);
		relu_mask_bits(want_bits, x, n_in);
		conv_plan_forward(p, want, x, scratch);
		conv_plan_forward_mask(p, out, x, bits, scratch);
		ck_assert_msg(!memcmp(bits, want_bits, (n_in + 7) / 8), "%s: forward bits", what);
		ck_assert_msg(!memcmp(out, want, n_out * sizeof(float)), "%s: forward", what);
		assert_guard(out, n_out, what);

		/* backward: the gradient through the mask first */
		uint8_t *g_bits = malloc((n_out + 7) / 8);
		float *y = frandom(n_out, 1.0f);
		relu_mask_bits(g_bits, y, n_out);
		float *masked = malloc(n_out * sizeof(float)),
		      *g_copy = malloc(n_out * sizeof(float));
		memcpy(masked, g, n_out * sizeof(float));
		relu_backward_bits(masked, g_bits, n_out);
		memcpy(g_copy, g, n_out * sizeof(float));
		float *d_in = outalloc(n_in), *want_in = outalloc(n_in);
		conv_plan_backward_data(p, want_in, masked, NULL, scratch);
		conv_plan_backward_data_masked(p, d_in, g_copy, g_bits, NULL, scratch);
		ck_assert_msg(!memcmp(d_in, want_in, n_in * sizeof(float)), "%s: backward", what);
		assert_guard(d_in, n_in, what);

		conv_plan_close(&p);
		conv_weights_close(&cw);
		free(w), free(x), free(g), free(y), free(bits), free(want_bits), free(out),
		    free(want);
		free(g_bits), free(masked), free(g_copy), free(d_in), free(want_in), free(scratch);
	}
}
END_TEST

/* The tests that take whichever arithmetic the case sets. */
static void add_arithmetic_tests(TCase *tc)
{
	tcase_add_test(tc, test_forward_matches_direct_loop);
	tcase_add_test(tc, test_backward_matches_transposed_loop);
	tcase_add_test(tc, test_adjoint_identity);
	tcase_add_test(tc, test_plan_for_other_shape);
	tcase_add_test(tc, test_two_threads_match_one);
	tcase_add_test(tc, test_scratch_and_caller_weights);
	tcase_add_test(tc, test_queries);
	tcase_add_test(tc, test_backward_epilogue);
	tcase_add_test(tc, test_other_layouts_shared);
	tcase_add_test(tc, test_masks_in_the_read);
}

int main(void)
{
	Suite *s = suite_create("conv");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, reseed_fp32, NULL);
	add_arithmetic_tests(tc);
	suite_add_tcase(s, tc);
	struct igs_error err = {0};
	enum conv_precision resolved;
	if (conv_precision_resolve(CONV_PRECISION_BF16X3, &resolved, &err) == 0) {
		TCase *split = tcase_create("bf16x3");
		tcase_add_checked_fixture(split, reseed_bf16x3, NULL);
		add_arithmetic_tests(split);
		suite_add_tcase(s, split);
	} else {
		printf("test_conv: split bf16 not tested here: %s\n", err.message);
	}
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
