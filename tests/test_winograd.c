/*
 * test_winograd.c - F(2x2,3x3) against a direct loop: forward with bias,
 * residual (aliased) and ReLU; backward-data with and without accumulation,
 * on odd and even sizes (partial edge tiles) and batches.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "igserve/team.h"
#include "igserve/winograd.h"

static float frand(unsigned *state)
{
	*state = *state * 1664525u + 1013904223u;
	return (float)((*state >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* Direct 3x3 pad-1 cross-correlation, CNHW, in double. */
static void naive_conv(double *out, const float *in, const float *w, int n, int ci, int co, int h,
                       int wd)
{
	for (int o = 0; o < co; o++)
		for (int b = 0; b < n; b++)
			for (int y = 0; y < h; y++)
				for (int x = 0; x < wd; x++) {
					double acc = 0;
					for (int i = 0; i < ci; i++)
						for (int ky = 0; ky < 3; ky++)
							for (int kx = 0; kx < 3; kx++) {
								int yy = y + ky - 1, xx = x + kx - 1;
								if (yy < 0 || yy >= h || xx < 0 || xx >= wd)
									continue;
								acc += (double)w[((o * ci + i) * 3 + ky) * 3 + kx] *
								       in[(((size_t)i * n + b) * h + yy) * wd + xx];
							}
					out[(((size_t)o * n + b) * h + y) * wd + x] = acc;
				}
}

/* Naive transpose: d_in[i] = sum_o W[o][i] (*) d_out[o], scattering. */
static void naive_backward(double *d_in, const float *d_out, const float *w, int n, int ci, int co,
                           int h, int wd)
{
	memset(d_in, 0, (size_t)ci * n * h * wd * sizeof(double));
	for (int o = 0; o < co; o++)
		for (int b = 0; b < n; b++)
			for (int y = 0; y < h; y++)
				for (int x = 0; x < wd; x++) {
					double g = d_out[(((size_t)o * n + b) * h + y) * wd + x];
					for (int i = 0; i < ci; i++)
						for (int ky = 0; ky < 3; ky++)
							for (int kx = 0; kx < 3; kx++) {
								int yy = y + ky - 1, xx = x + kx - 1;
								if (yy < 0 || yy >= h || xx < 0 || xx >= wd)
									continue;
								d_in[(((size_t)i * n + b) * h + yy) * wd + xx] +=
								        g * w[((o * ci + i) * 3 + ky) * 3 + kx];
							}
				}
}

static const int shapes[][5] = {
	/* n, c_in, c_out, h, w */
	{1, 3, 5, 8, 8}, {2, 4, 3, 7, 9}, {3, 8, 16, 5, 4}, {1, 16, 8, 1, 1}, {2, 5, 7, 14, 14},
	{1, 2, 2, 3, 2},
};

START_TEST(test_forward_matches_direct)
{
	const int n = shapes[_i][0], ci = shapes[_i][1], co = shapes[_i][2], h = shapes[_i][3],
	          w = shapes[_i][4];
	struct conv_shape s = {.n = n, .c_in = ci, .h_in = h, .w_in = w, .c_out = co, .k = 3,
	                       .stride = 1, .pad = 1};
	conv_shape_finish(&s);
	ck_assert(winograd_applies(&s));
	unsigned st = 7u + (unsigned)_i;
	size_t in_n = (size_t)ci * n * h * w, out_n = (size_t)co * n * h * w;
	float *in = malloc(in_n * sizeof(float)), *wt = malloc((size_t)co * ci * 9 * sizeof(float));
	float *bias = malloc(co * sizeof(float)), *out = malloc(out_n * sizeof(float));
	float *res = malloc(out_n * sizeof(float));
	float *U = malloc(winograd_filter_floats(co, ci) * sizeof(float));
	float *work = malloc(winograd_workspace_floats(&s) * sizeof(float));
	double *ref = malloc(out_n * sizeof(double));
	for (size_t j = 0; j < in_n; j++)
		in[j] = frand(&st);
	for (int j = 0; j < co * ci * 9; j++)
		wt[j] = frand(&st);
	for (int j = 0; j < co; j++)
		bias[j] = frand(&st);
	for (size_t j = 0; j < out_n; j++)
		res[j] = out[j] = frand(&st);
	winograd_filter_transform(U, wt, co, ci);
	naive_conv(ref, in, wt, n, ci, co, h, w);

	/* Residual aliasing the output, then ReLU. */
	winograd_conv3x3_forward(out, in, U, bias, out, 1, &s, work);
	double scale = sqrt((double)ci * 9);
	for (size_t j = 0; j < out_n; j++) {
		int o = (int)(j / ((size_t)n * h * w));
		double want = fmax(0.0, ref[j] + bias[o] + res[j]);
		ck_assert_msg(fabs(out[j] - want) <= 1e-5 * scale, "at %zu: %g vs %g", j, out[j], want);
	}
	/* Plain. */
	winograd_conv3x3_forward(out, in, U, NULL, NULL, 0, &s, work);
	for (size_t j = 0; j < out_n; j++)
		ck_assert_msg(fabs(out[j] - ref[j]) <= 1e-5 * scale, "at %zu: %g vs %g", j, out[j],
		              ref[j]);
	free(in);
	free(wt);
	free(bias);
	free(out);
	free(res);
	free(U);
	free(work);
	free(ref);
}
END_TEST

START_TEST(test_backward_matches_direct)
{
	const int n = shapes[_i][0], ci = shapes[_i][1], co = shapes[_i][2], h = shapes[_i][3],
	          w = shapes[_i][4];
	struct conv_shape s = {.n = n, .c_in = ci, .h_in = h, .w_in = w, .c_out = co, .k = 3,
	                       .stride = 1, .pad = 1};
	conv_shape_finish(&s);
	unsigned st = 99u + (unsigned)_i;
	size_t in_n = (size_t)ci * n * h * w, out_n = (size_t)co * n * h * w;
	float *d_out = malloc(out_n * sizeof(float)), *wt = malloc((size_t)co * ci * 9 * sizeof(float));
	float *d_in = malloc(in_n * sizeof(float)), *prev = malloc(in_n * sizeof(float));
	float *U = malloc(winograd_filter_floats(co, ci) * sizeof(float));
	float *work = malloc(winograd_workspace_floats(&s) * sizeof(float));
	double *ref = malloc(in_n * sizeof(double));
	for (size_t j = 0; j < out_n; j++)
		d_out[j] = frand(&st);
	for (int j = 0; j < co * ci * 9; j++)
		wt[j] = frand(&st);
	for (size_t j = 0; j < in_n; j++)
		prev[j] = d_in[j] = frand(&st);
	winograd_filter_transform(U, wt, co, ci);
	naive_backward(ref, d_out, wt, n, ci, co, h, w);
	double scale = sqrt((double)co * 9);

	winograd_conv3x3_backward_data(d_in, d_out, U, &s, 1, work);
	for (size_t j = 0; j < in_n; j++)
		ck_assert_msg(fabs(d_in[j] - (ref[j] + prev[j])) <= 1e-5 * scale, "acc at %zu", j);
	winograd_conv3x3_backward_data(d_in, d_out, U, &s, 0, work);
	for (size_t j = 0; j < in_n; j++)
		ck_assert_msg(fabs(d_in[j] - ref[j]) <= 1e-5 * scale, "at %zu: %g vs %g", j, d_in[j],
		              ref[j]);
	free(d_out);
	free(wt);
	free(d_in);
	free(prev);
	free(U);
	free(work);
	free(ref);
}
END_TEST

/* A team splits either by tiles or by channels; both must equal one thread. */
struct team_job {
	const struct conv_shape *s;
	float *out, *d_in, *work;
	const float *in, *d_out, *U, *bias;
};

static void team_pass(void *arg, const struct par *p)
{
	struct team_job *j = arg;
	winograd_conv3x3_forward_par(j->out, j->in, j->U, j->bias, NULL, 1, j->s, j->work, p);
	par_sync(p);
	winograd_conv3x3_backward_data_par(j->d_in, j->d_out, j->U, j->s, 0, j->work, p);
}

START_TEST(test_team_matches_one_thread)
{
	/* many tiles, few channels (split by tiles); few tiles, many channels */
	static const int team_shapes[][5] = {{3, 5, 7, 9, 11}, {1, 40, 48, 3, 4}};
	const int n = team_shapes[_i][0], ci = team_shapes[_i][1], co = team_shapes[_i][2],
	          h = team_shapes[_i][3], w = team_shapes[_i][4];
	struct conv_shape s = {.n = n, .c_in = ci, .h_in = h, .w_in = w, .c_out = co, .k = 3,
	                       .stride = 1, .pad = 1};
	conv_shape_finish(&s);
	unsigned st = 5u;
	size_t in_n = (size_t)ci * n * h * w, out_n = (size_t)co * n * h * w;
	float *in = malloc(in_n * sizeof(float)), *wt = malloc((size_t)co * ci * 9 * sizeof(float));
	float *bias = malloc(co * sizeof(float)), *d_out = malloc(out_n * sizeof(float));
	float *out1 = malloc(out_n * sizeof(float)), *out3 = malloc(out_n * sizeof(float));
	float *d1 = malloc(in_n * sizeof(float)), *d3 = malloc(in_n * sizeof(float));
	float *U = malloc(winograd_filter_floats(co, ci) * sizeof(float));
	float *work = malloc(winograd_workspace_floats(&s) * sizeof(float));
	for (size_t j = 0; j < in_n; j++)
		in[j] = frand(&st);
	for (size_t j = 0; j < out_n; j++)
		d_out[j] = frand(&st);
	for (int j = 0; j < co * ci * 9; j++)
		wt[j] = frand(&st);
	for (int j = 0; j < co; j++)
		bias[j] = frand(&st);
	winograd_filter_transform(U, wt, co, ci);
	winograd_conv3x3_forward(out1, in, U, bias, NULL, 1, &s, work);
	winograd_conv3x3_backward_data(d1, d_out, U, &s, 0, work);

	struct team *t = NULL;
	ck_assert_int_eq(team_create(&t, 3, NULL), 0);
	struct team_job job = {.s = &s, .out = out3, .d_in = d3, .work = work, .in = in,
	                       .d_out = d_out, .U = U, .bias = bias};
	team_run(t, team_pass, &job);
	team_free(&t);
	/* The same sums; only BLAS blocking may reorder them. */
	for (size_t j = 0; j < out_n; j++)
		ck_assert_msg(fabsf(out1[j] - out3[j]) <= 1e-5f * (1 + fabsf(out1[j])), "out %zu", j);
	for (size_t j = 0; j < in_n; j++)
		ck_assert_msg(fabsf(d1[j] - d3[j]) <= 1e-5f * (1 + fabsf(d1[j])), "d_in %zu", j);
	free(in);
	free(wt);
	free(bias);
	free(d_out);
	free(out1);
	free(out3);
	free(d1);
	free(d3);
	free(U);
	free(work);
}
END_TEST

START_TEST(test_only_3x3_stride1_pad1)
{
	struct conv_shape s = {.n = 1, .c_in = 1, .h_in = 8, .w_in = 8, .c_out = 1, .k = 3,
	                       .stride = 2, .pad = 1};
	ck_assert(!winograd_applies(&s));
	s.stride = 1;
	s.k = 1;
	s.pad = 0;
	ck_assert(!winograd_applies(&s));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("winograd");
	TCase *tc = tcase_create("core");
	int count = (int)(sizeof shapes / sizeof shapes[0]);
	tcase_add_loop_test(tc, test_forward_matches_direct, 0, count);
	tcase_add_loop_test(tc, test_backward_matches_direct, 0, count);
	tcase_add_test(tc, test_only_3x3_stride1_pad1);
	tcase_add_loop_test(tc, test_team_matches_one_thread, 0, 2);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
