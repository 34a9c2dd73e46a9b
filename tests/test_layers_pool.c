/*
 * test_layers_pool.c - the pooling kernels of layers.c (max-pool forward and
 * backward, NHWC and blocked, after a ReLU, summed over a batch; average
 * pool) against naive loops, finite differences and the adjoint identity
 * (the other kernels: test_layers.c).  Buffers are malloc'ed at their exact
 * size so AddressSanitizer sees any overrun of a workspace.
 */
#include "layers_test_support.h"

/* ---------------------------------------------------------------- pooling */

/* Direct max pool over NHWC: padding is -inf, strict > so the first
 * maximum in row-major window order wins.  gap (or NULL) receives each
 * window's margin between its maximum and the runner-up. */
static void naive_maxpool(double *out, int32_t *argmax, double *gap, const float *in,
                          const struct maxpool_shape *s)
{
	const int C = s->c;
	int py = s->pad, px = s->pad;
	if (s->same) { /* TensorFlow's rule, as tf.nn.max_pool documents it */
		const int oh = (int)ceil((double)s->h_in / s->stride);
		const int ow = (int)ceil((double)s->w_in / s->stride);
		ck_assert_int_eq(s->h_out, oh);
		ck_assert_int_eq(s->w_out, ow);
		py = (oh - 1) * s->stride + s->k - s->h_in;
		px = (ow - 1) * s->stride + s->k - s->w_in;
		py = py > 0 ? py / 2 : 0;
		px = px > 0 ? px / 2 : 0;
	}
	for (int b = 0; b < s->n; b++)
		for (int oy = 0; oy < s->h_out; oy++)
			for (int ox = 0; ox < s->w_out; ox++)
				for (int c = 0; c < C; c++) {
					double best = -INFINITY, second = -INFINITY;
					int32_t best_i = -1;
					for (int ky = 0; ky < s->k; ky++)
						for (int kx = 0; kx < s->k; kx++) {
							int iy = oy * s->stride - py + ky;
							int ix = ox * s->stride - px + kx;
							double v = -INFINITY;
							int32_t idx = -1;
							if (iy >= 0 && iy < s->h_in && ix >= 0 &&
							    ix < s->w_in) {
								idx =
								    ((b * s->h_in + iy) * s->w_in +
								     ix) *
								        C +
								    c;
								v = in[idx];
							}
							if (v > best) {
								second = best;
								best = v;
								best_i = idx;
							} else if (idx >= 0 && v > second) {
								second = v;
							}
						}
					size_t o =
					    (((size_t)b * s->h_out + oy) * s->w_out + ox) * C + c;
					out[o] = best;
					argmax[o] = best_i;
					if (gap)
						gap[o] = best - second;
				}
}

static void check_maxpool_forward(const float *in, const struct maxpool_shape *s, const char *what)
{
	size_t n_out = pool_out_count(s);
	float *out = falloc(n_out);
	int32_t *am = malloc(n_out * sizeof(int32_t)), *ref_am = malloc(n_out * sizeof(int32_t));
	double *ref = dalloc(n_out);
	naive_maxpool(ref, ref_am, NULL, in, s);
	maxpool_forward(out, am, in, s);
	for (size_t i = 0; i < n_out; i++) {
		ck_assert_msg(out[i] == ref[i], "%s: out[%zu] = %g, expected %g", what, i,
		              (double)out[i], ref[i]);
		ck_assert_msg(am[i] == ref_am[i], "%s: argmax[%zu] = %d, expected %d", what, i,
		              (int)am[i], (int)ref_am[i]);
		ck_assert_float_eq(in[am[i]], out[i]);
	}
	free(out), free(am), free(ref_am), free(ref);
}

START_TEST(test_maxpool_forward)
{
	for (size_t t = 0; t < N_POOL_CASES; t++) {
		struct maxpool_shape s = pool_cases[t];
		maxpool_shape_finish(&s);
		size_t n_in = pool_in_count(&s);
		float *in = falloc(n_in);
		char what[80];

		for (size_t i = 0; i < n_in; i++)
			in[i] = frand();
		snprintf(what, sizeof what, "maxpool case %zu random", t);
		check_maxpool_forward(in, &s, what);

		/* many ties: the first maximum must win */
		for (size_t i = 0; i < n_in; i++)
			in[i] = floorf(frand() * 1.5f);
		snprintf(what, sizeof what, "maxpool case %zu ties", t);
		check_maxpool_forward(in, &s, what);

		/* all negative: a zero padding would win, -inf padding must not */
		for (size_t i = 0; i < n_in; i++)
			in[i] = -1.0f - fabsf(frand());
		snprintf(what, sizeof what, "maxpool case %zu negative", t);
		check_maxpool_forward(in, &s, what);

		/* a NaN propagates (as in PyTorch) instead of hiding */
		int32_t *am = malloc(pool_out_count(&s) * sizeof(int32_t));
		float *out = falloc(pool_out_count(&s));
		in[n_in - 1] = NAN;
		maxpool_forward(out, am, in, &s);
		size_t last = pool_out_count(&s) - 1; /* its window holds the last pixel */
		ck_assert_msg(isnan(out[last]), "maxpool case %zu: NaN did not propagate", t);
		ck_assert_int_eq(am[last], (int32_t)(n_in - 1));
		free(in), free(am), free(out);
	}
}
END_TEST

START_TEST(test_maxpool_backward)
{
	const float eps = 1e-2f;
	for (size_t t = 0; t < N_POOL_CASES; t++) {
		struct maxpool_shape s = pool_cases[t];
		maxpool_shape_finish(&s);
		size_t n_in = pool_in_count(&s), n_out = pool_out_count(&s);
		float *in = frandom(n_in, 1.0f), *out = falloc(n_out),
		      *d_out = frandom(n_out, 1.0f);
		float *d_in = falloc(n_in);
		int32_t *am = malloc(n_out * sizeof(int32_t)),
		        *am2 = malloc(n_out * sizeof(int32_t));
		double *ref = dalloc(n_in), *ref_out = dalloc(n_out), *gap = dalloc(n_out);

		/* A step of eps changes no window's winner when its margin
		 * exceeds 2 eps; near-tied windows get no gradient, so finite
		 * differences need not skip the inputs they read. */
		size_t zeroed = n_out;
		for (int draw = 0; draw < 100 && zeroed == n_out; draw++) {
			/* tiny cases may need another draw to leave a margin */
			for (size_t i = 0; i < n_in; i++)
				in[i] = frand();
			naive_maxpool(ref_out, am2, gap, in, &s);
			zeroed = 0;
			for (size_t o = 0; o < n_out; o++)
				zeroed += gap[o] <= 2.5 * eps;
		}
		ck_assert_uint_lt(zeroed, n_out); /* some gradient is left to check */
		for (size_t o = 0; o < n_out; o++)
			if (gap[o] <= 2.5 * eps)
				d_out[o] = 0.0f;

		maxpool_forward(out, am, in, &s);
		for (size_t i = 0; i < n_in; i++)
			d_in[i] = NAN; /* overwritten, never accumulated into */
		maxpool_backward(d_in, d_out, am, &s);

		/* transposed loop: each output gradient goes to the maximum the
		 * naive pool found */
		for (size_t o = 0; o < n_out; o++)
			ref[am2[o]] += d_out[o];
		assert_close(d_in, ref, n_in, 1e-6, "maxpool_backward scatter");

		/* finite differences at every input */
		double *fd = dalloc(n_in);
		int *skip = calloc(n_in, sizeof(int));
		for (size_t i = 0; i < n_in; i++) {
			float x0 = in[i];
			in[i] = x0 + eps;
			maxpool_forward(out, am2, in, &s);
			double lp = dot(out, d_out, n_out);
			in[i] = x0 - eps;
			maxpool_forward(out, am2, in, &s);
			double lm = dot(out, d_out, n_out);
			in[i] = x0;
			fd[i] = (lp - lm) / (2.0 * eps);
		}
		char what[80];
		snprintf(what, sizeof what, "maxpool case %zu finite differences", t);
		assert_fd(fd, d_in, skip, n_in, 1e-3, 1.0, what);
		free(in), free(out), free(d_out), free(d_in), free(am), free(am2), free(ref);
		free(ref_out), free(gap), free(fd), free(skip);
	}
}
END_TEST

START_TEST(test_avgpool)
{
	const int c = 7, n = 3, hw = 49;
	const size_t n_in = (size_t)c * n * hw, n_out = (size_t)n * c;
	float *in = frandom(n_in, 1.0f), *out = falloc(n_out), *d_out = frandom(n_out, 1.0f);
	float *d_in = falloc(n_in);
	double *ref = dalloc(n_in);

	const struct act_shape as = {.n = n, .c = c, .hw = hw};
	avgpool_forward(out, in, &as);
	for (int ci = 0; ci < c; ci++)
		for (int b = 0; b < n; b++) {
			double sum = 0.0;
			for (int i = 0; i < hw; i++)
				sum += in[((size_t)b * hw + i) * c + ci];
			ref[(size_t)b * c + ci] = sum / hw;
		}
	assert_close(out, ref, n_out, 1e-6, "avgpool_forward");

	for (size_t i = 0; i < n_in; i++)
		d_in[i] = NAN;
	avgpool_backward(d_in, d_out, &as);
	for (int ci = 0; ci < c; ci++)
		for (int b = 0; b < n; b++)
			for (int i = 0; i < hw; i++)
				ref[((size_t)b * hw + i) * c + ci] =
				    (double)d_out[(size_t)b * c + ci] / hw;
	assert_close(d_in, ref, n_in, 1e-6, "avgpool_backward");

	/* adjoint: <avg(x), y> = <x, avg^T(y)> */
	double lhs = dot(out, d_out, n_out), rhs = dot(in, d_in, n_in);
	ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * (1.0 + fabs(lhs)), "avgpool adjoint %g vs %g", lhs,
	              rhs);
	free(in), free(out), free(d_out), free(d_in), free(ref);
}
END_TEST

/* The max-pool reads NHWC and may write blocked: the same maxima and
 * argmax values, and a backward that scatters the same gradient. */
START_TEST(test_blocked_maxpool)
{
	enum { B = 16 };
	for (int threads = 1; threads <= 3; threads += 2) {
		omp_set_num_threads(threads);
		for (size_t t = 0; t < N_POOL_CASES; t++) {
			struct maxpool_shape s = pool_cases[t];
			if (s.c % B)
				continue;
			maxpool_shape_finish(&s);
			struct maxpool_shape sb = s;
			sb.out_block = B;
			const int hw = s.h_out * s.w_out;
			size_t n_in = pool_in_count(&s), n_out = pool_out_count(&s);
			float *in = frandom(n_in, 1.0f), *out = falloc(n_out),
			      *out_b = falloc(n_out);
			float *conv = falloc(n_out), *d_out = frandom(n_out, 1.0f);
			float *d_out_b = falloc(n_out), *d_in = falloc(n_in),
			      *d_in_b = falloc(n_in);
			int32_t *am = malloc(n_out * sizeof(int32_t)),
			        *am_b = malloc(n_out * sizeof(int32_t));
			maxpool_forward(out, am, in, &s);
			maxpool_forward(out_b, am_b, in, &sb);
			to_blocked(conv, out, s.n, s.c, hw, B);
			ck_assert_mem_eq(out_b, conv, n_out * sizeof(float));
			for (int i = 0; i < s.n; i++)
				for (int p = 0; p < hw; p++)
					for (int ch = 0; ch < s.c; ch++)
						ck_assert_int_eq(
						    am_b[blocked_index(s.c, hw, B, i, p, ch)],
						    am[((size_t)i * hw + p) * s.c + ch]);
			to_blocked(d_out_b, d_out, s.n, s.c, hw, B);
			maxpool_backward(d_in, d_out, am, &s);
			maxpool_backward(d_in_b, d_out_b, am_b, &sb);
			ck_assert_mem_eq(d_in_b, d_in, n_in * sizeof(float));
			free(in), free(out), free(out_b), free(conv), free(d_out), free(d_out_b);
			free(d_in), free(d_in_b), free(am), free(am_b);
		}
	}
	omp_set_num_threads(1);
}
END_TEST

/* A max-pool after a ReLU marks windows whose maximum is not positive with
 * argmax -1, so its backward is the plain one followed by the ReLU's. */
START_TEST(test_maxpool_after_relu)
{
	for (size_t t = 0; t < N_POOL_CASES; t++) {
		struct maxpool_shape s = pool_cases[t];
		maxpool_shape_finish(&s);
		struct maxpool_shape sr = s;
		sr.after_relu = true;
		size_t n_in = pool_in_count(&s), n_out = pool_out_count(&s);
		float *in = frandom(n_in, 1.0f), *out = falloc(n_out), *out_r = falloc(n_out);
		float *d_out = frandom(n_out, 1.0f), *d_in = falloc(n_in), *d_in_r = falloc(n_in);
		int32_t *am = malloc(n_out * sizeof(int32_t)),
		        *am_r = malloc(n_out * sizeof(int32_t));
		uint8_t *mask = malloc(n_in);
		for (size_t i = 0; i < n_in; i++)
			in[i] = in[i] > 0.0f ? in[i] : 0.0f; /* a ReLU's output: many zeros */
		/* and the first window (rows and columns 0-1 with padding) all zero */
		for (int y = 0; y < 2; y++)
			for (int x = 0; x < 2; x++)
				for (int c = 0; c < s.c; c++)
					in[((size_t)y * s.w_in + x) * s.c + c] = 0.0f;
		relu_mask_bits(mask, in, n_in);
		maxpool_forward(out, am, in, &s);
		maxpool_forward(out_r, am_r, in, &sr);
		ck_assert_mem_eq(out_r, out, n_out * sizeof(float));
		size_t shut = 0;
		for (size_t o = 0; o < n_out; o++) {
			ck_assert_int_eq(am_r[o], out[o] > 0.0f ? am[o] : -1);
			shut += am_r[o] < 0;
		}
		maxpool_backward(d_in, d_out, am, &s);
		relu_backward_bits(d_in, mask, n_in);
		maxpool_backward(d_in_r, d_out, am_r, &sr);
		ck_assert_mem_eq(d_in_r, d_in, n_in * sizeof(float));
		ck_assert_uint_gt(shut, 0);
		free(in), free(out), free(out_r), free(d_out), free(d_in), free(d_in_r);
		free(am), free(am_r), free(mask);
	}
}
END_TEST

/*
 * maxpool_backward_sum against the naive pool's argmax and a transposed
 * loop: the weighted sum of the images' input gradients (added onto what
 * acc held) and each image's inner products with a probe and with to -
 * from.  Cases: the pool shapes, NHWC and blocked, after a ReLU or not, 18
 * images (more than one group of partial sums), 1 to 3 threads, and the
 * same sums on every run.
 */
static void check_maxpool_sum(struct maxpool_shape s, int threads, const char *what)
{
	maxpool_shape_finish(&s);
	omp_set_num_threads(threads);
	const int hw_out = s.h_out * s.w_out;
	const size_t n_in = pool_in_count(&s), n_out = pool_out_count(&s);
	const size_t image = n_in / (size_t)s.n;
	float *in = frandom(n_in, 1.0f), *out = falloc(n_out), *d_out = frandom(n_out, 1.0f);
	float *d_out_layout = falloc(n_out), *weight = frandom((size_t)s.n, 1.0f);
	float *probe = frandom(image, 1.0f), *from = frandom(image, 2.0f),
	      *to = frandom(image, 2.0f);
	float *acc = frandom(image, 1.0f), *acc2 = falloc(image);
	int32_t *am = malloc(n_out * sizeof(int32_t)), *am_ref = malloc(n_out * sizeof(int32_t));
	double *ref_out = dalloc(n_out), *ref_acc = dalloc(image);
	double *dots = dalloc(2 * (size_t)s.n), *dots2 = dalloc(2 * (size_t)s.n);
	double *ref_dots = dalloc(2 * (size_t)s.n), *scale = dalloc(2 * (size_t)s.n);

	naive_maxpool(ref_out, am_ref, NULL, in, &s);
	for (size_t j = 0; j < image; j++)
		ref_acc[j] = acc[j];
	memcpy(acc2, acc, image * sizeof(float));
	for (size_t o = 0; o < n_out; o++) {
		const int i = (int)(o / (n_out / (size_t)s.n));
		if (am_ref[o] < 0 || (s.after_relu && ref_out[o] <= 0.0))
			continue; /* padding only, or a ReLU that passed nothing */
		const size_t j = (size_t)am_ref[o] - (size_t)i * image;
		const double g = d_out[o];
		ref_acc[j] += (double)weight[i] * g;
		ref_dots[2 * i] += g * probe[j];
		ref_dots[2 * i + 1] += g * ((double)to[j] - from[j]);
		scale[2 * i] += fabs(g * probe[j]);
		scale[2 * i + 1] += fabs(g * ((double)to[j] - from[j]));
	}

	maxpool_forward(out, am, in, &s);
	if (s.out_block)
		to_blocked(d_out_layout, d_out, s.n, s.c, hw_out, s.out_block);
	else
		memcpy(d_out_layout, d_out, n_out * sizeof(float));
	maxpool_backward_sum(acc, dots, d_out_layout, am, weight, probe, from, to, &s);
	assert_close(acc, ref_acc, image, 1e-5, what);
	for (int k = 0; k < 2 * s.n; k++)
		ck_assert_msg(fabs(dots[k] - ref_dots[k]) <= 1e-6 * (1.0 + scale[k]),
		              "%s: image %d, sum %d: %.9g, expected %.9g", what, k / 2, k % 2,
		              dots[k], ref_dots[k]);
	maxpool_backward_sum(acc2, dots2, d_out_layout, am, weight, probe, from, to, &s);
	ck_assert_mem_eq(dots2, dots, 2 * (size_t)s.n * sizeof(double));

	free(in), free(out), free(d_out), free(d_out_layout), free(weight), free(probe);
	free(from), free(to), free(acc), free(acc2), free(am), free(am_ref), free(ref_out);
	free(ref_acc), free(dots), free(dots2), free(ref_dots), free(scale);
}

START_TEST(test_maxpool_backward_sum)
{
	char what[120];
	for (size_t t = 0; t < N_POOL_CASES; t++)
		for (int relu = 0; relu < 2; relu++)
			for (int threads = 1; threads <= 3; threads++) {
				struct maxpool_shape s = pool_cases[t];
				s.after_relu = relu;
				snprintf(what, sizeof what, "pool case %zu, relu %d, %d threads", t,
				         relu, threads);
				check_maxpool_sum(s, threads, what);
				if (s.c % 16 == 0) {
					s.out_block = 16;
					strcat(what, ", blocked");
					check_maxpool_sum(s, threads, what);
				}
			}
	/* more images than one group of partial sums */
	struct maxpool_shape many = pool_cases[4];
	many.n = 18;
	many.out_block = 16;
	check_maxpool_sum(many, 2, "18 images, blocked");
	many.out_block = 0;
	many.after_relu = true;
	check_maxpool_sum(many, 3, "18 images, NHWC, relu");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("layers-pool");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, reseed, NULL);
	tcase_add_test(tc, test_maxpool_forward);
	tcase_add_test(tc, test_maxpool_backward);
	tcase_add_test(tc, test_avgpool);
	tcase_add_test(tc, test_blocked_maxpool);
	tcase_add_test(tc, test_maxpool_after_relu);
	tcase_add_test(tc, test_maxpool_backward_sum);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
