/*
 * net_oracle.c - the network as a gradient oracle (attribution_net_oracle):
 * each callback is one call into nn's network passes.
 */
#include "attribution.h"

#include "model.h"

/* ---- the network as an oracle ---- */

struct net_oracle_ctx {
	struct net_workspace *ws;
};

static int net_oracle_forward(void *ctx, const float *pixels, int n, float *logits,
                              struct igs_error *err)
{
	int rc = net_forward(ctx, pixels, n, logits);
	return rc ? igs_fail(err, rc, "network forward pass failed (%s)", igs_code_name(rc)) : 0;
}

static int net_oracle_infer(void *ctx, const float *pixels, int n, float *logits,
                            struct igs_error *err)
{
	int rc = net_infer(ctx, pixels, n, logits);
	return rc ? igs_fail(err, rc, "network forward pass failed (%s)", igs_code_name(rc)) : 0;
}

static int net_oracle_backward(void *ctx, const float *d_logits, int n, float *grad,
                               struct igs_error *err)
{
	int rc = net_backward(ctx, d_logits, grad);
	return rc ? igs_fail(err, rc, "network backward pass failed (%s)", igs_code_name(rc)) : 0;
}

static int net_oracle_path_start(void *ctx, const float *x, const float *baseline,
                                 struct igs_error *err)
{
	int rc = net_path_start(ctx, x, baseline);
	return rc ? igs_fail(err, rc, "network path setup failed (%s)", igs_code_name(rc)) : 0;
}

static int net_oracle_forward_path(void *ctx, const float *alpha, int n, float *logits,
                                   struct igs_error *err)
{
	int rc = net_forward_path(ctx, alpha, n, logits);
	return rc ? igs_fail(err, rc, "network forward pass failed (%s)", igs_code_name(rc)) : 0;
}

static int net_oracle_constant_logits(void *ctx, float value, float *logits, struct igs_error *err)
{
	int rc = net_constant_logits(ctx, value, logits);
	return rc ? igs_fail(err, rc, "network forward pass failed (%s)", igs_code_name(rc)) : 0;
}

static int net_oracle_backward_path(void *ctx, const float *d_logits, int n, const float *weight,
                                    double *sums, struct igs_error *err)
{
	(void)n; /* the batch of the last forward_path */
	int rc = net_backward_path(ctx, d_logits, weight, sums);
	return rc ? igs_fail(err, rc, "network backward pass failed (%s)", igs_code_name(rc)) : 0;
}

static int net_oracle_path_gradient(void *ctx, float *grad, struct igs_error *err)
{
	int rc = net_path_gradient(ctx, grad);
	return rc ? igs_fail(err, rc, "network backward pass failed (%s)", igs_code_name(rc)) : 0;
}

static size_t net_oracle_path_sum_count(void *ctx)
{
	return net_path_sum_count(ctx);
}

static void net_oracle_path_use_sum(void *ctx, float *sum)
{
	net_path_use_sum(ctx, sum);
}

void attribution_net_oracle(struct grad_oracle *o, const struct model *m, struct net_workspace *ws)
{
	const struct model_info *info = model_get_info(m);
	*o = (struct grad_oracle){.ctx = ws,
	                          .size = info->input_size,
	                          .classes = info->classes,
	                          .forward = net_oracle_forward,
	                          .backward = net_oracle_backward,
	                          .path_start = net_oracle_path_start,
	                          .forward_path = net_oracle_forward_path,
	                          .backward_path = net_oracle_backward_path,
	                          .path_gradient = net_oracle_path_gradient,
	                          .constant_logits = net_oracle_constant_logits,
	                          .infer = net_oracle_infer,
	                          .path_sum_count = net_oracle_path_sum_count,
	                          .path_use_sum = net_oracle_path_use_sum};
}
