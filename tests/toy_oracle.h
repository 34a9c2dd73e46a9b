/*
 * toy_oracle.h - gradient oracles of models whose IG is known in closed form
 * (test_attribution.c's header lists them), shared by the attribution tests.
 */
#ifndef IGSERVE_TEST_TOY_ORACLE_H
#define IGSERVE_TEST_TOY_ORACLE_H

#include "attribution.h"

#define SIZE 8
#define N (SIZE * SIZE * 3)
#define CLASSES 3

enum toy_kind { TOY_LINEAR, TOY_QUADRATIC, TOY_CUBIC };

struct toy {
	enum toy_kind kind;
	double w[CLASSES][N], b[CLASSES];
	double a[N], c[N], e[N];
	float *last; /* copy of the last forward's rows */
	int last_n, max_n;
	int forward_calls, backward_calls, max_rows_seen;
	/* fault injection */
	int fail_forward_at; /* call number that fails (0: never) */
	struct job_control *job;
	int expire_after; /* forward calls before the deadline passes */
	int cancel_after;
};

void toy_init(struct toy *t, enum toy_kind kind);
void toy_free(struct toy *t);
/* F_j(x) and dF_j/dx_i at x_i = xi, in closed form (class 0 is the
 * nonlinear one of the quadratic and cubic toys). */
double toy_f(const struct toy *t, int j, const double *x);
double toy_grad(const struct toy *t, int j, int i, double xi);
/* The toy as an oracle (pixels only: no forward_path). */
void toy_oracle(struct grad_oracle *o, struct toy *t);
/* A fixed pseudo-random image [SIZE][SIZE][3] of 0..255. */
void test_image(float *x);
/* attr_params for IG with `rule`, `steps` and baseline `b`; target 0. */
struct attr_params opts(enum quad_rule rule, int steps, enum baseline_kind b);

#endif
