/* toy_oracle.c - see toy_oracle.h. */
#include "toy_oracle.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t toy_state;
static double toy_rand(void) /* [-1, 1) */
{
	return attribution_splitmix64(&toy_state) * 0x1.0p-64 * 2.0 - 1.0;
}

void toy_init(struct toy *t, enum toy_kind kind)
{
	memset(t, 0, sizeof *t);
	t->kind = kind;
	toy_state = 42;
	for (int j = 0; j < CLASSES; j++) {
		for (int i = 0; i < N; i++)
			t->w[j][i] = toy_rand() * 0.01;
		t->b[j] = toy_rand();
	}
	for (int i = 0; i < N; i++) {
		t->a[i] = toy_rand() * 1e-4;
		t->c[i] = toy_rand() * 1e-2;
		t->e[i] = toy_rand() * 1e-6;
	}
	t->max_n = 64;
	t->last = malloc(sizeof(float) * N * t->max_n);
}

void toy_free(struct toy *t)
{
	free(t->last);
}

/* class 0 is the nonlinear one for the quadratic and cubic toys */
double toy_f(const struct toy *t, int j, const double *x)
{
	double s = t->b[j];
	for (int i = 0; i < N; i++) {
		if (j == 0 && t->kind == TOY_QUADRATIC)
			s += 0.5 * t->a[i] * x[i] * x[i] + t->c[i] * x[i];
		else if (j == 0 && t->kind == TOY_CUBIC)
			s += t->e[i] * x[i] * x[i] * x[i];
		else
			s += t->w[j][i] * x[i];
	}
	return s;
}

double toy_grad(const struct toy *t, int j, int i, double xi)
{
	if (j == 0 && t->kind == TOY_QUADRATIC)
		return t->a[i] * xi + t->c[i];
	if (j == 0 && t->kind == TOY_CUBIC)
		return 3.0 * t->e[i] * xi * xi;
	return t->w[j][i];
}

static int toy_forward(void *ctx, const float *pixels, int n, float *logits, struct igs_error *err)
{
	struct toy *t = ctx;
	t->forward_calls++;
	if (t->fail_forward_at && t->forward_calls == t->fail_forward_at)
		return igs_fail(err, IGS_ERR_INTERNAL, "toy forward failed on purpose");
	if (t->job && t->expire_after && t->forward_calls == t->expire_after)
		t->job->deadline = 1e-9; /* long past */
	if (t->job && t->cancel_after && t->forward_calls == t->cancel_after)
		atomic_store(&t->job->cancelled, true);
	ck_assert_int_le(n, t->max_n);
	if (n > t->max_rows_seen)
		t->max_rows_seen = n;
	memcpy(t->last, pixels, sizeof(float) * N * n);
	t->last_n = n;
	double x[N];
	for (int r = 0; r < n; r++) {
		for (int i = 0; i < N; i++)
			x[i] = pixels[r * N + i];
		for (int j = 0; j < CLASSES; j++)
			logits[r * CLASSES + j] = (float)toy_f(t, j, x);
	}
	return 0;
}

static int toy_backward(void *ctx, const float *d_logits, int n, float *grad, struct igs_error *err)
{
	struct toy *t = ctx;
	t->backward_calls++;
	ck_assert_int_eq(n, t->last_n);
	for (int r = 0; r < n; r++)
		for (int i = 0; i < N; i++) {
			double g = 0;
			for (int j = 0; j < CLASSES; j++)
				g += d_logits[r * CLASSES + j] *
				     toy_grad(t, j, i, t->last[r * N + i]);
			grad[r * N + i] = (float)g;
		}
	return 0;
}

void toy_oracle(struct grad_oracle *o, struct toy *t)
{
	/* no forward_path: the toys take their points as pixels */
	*o = (struct grad_oracle){.ctx = t,
	                          .size = SIZE,
	                          .classes = CLASSES,
	                          .forward = toy_forward,
	                          .backward = toy_backward};
}

void test_image(float *x)
{
	uint64_t s = 7;
	for (int i = 0; i < N; i++)
		x[i] = (float)(attribution_splitmix64(&s) % 256);
}

struct attr_params opts(enum quad_rule rule, int steps, enum baseline_kind b)
{
	struct attr_params o;
	attr_params_init(&o);
	o.rule = rule;
	o.steps = steps;
	o.baseline = b;
	o.blur_sigma = 1.5;
	o.seed = 3;
	o.target = 0;
	return o;
}
