/*
 * attr_targets.c - which classes a run explains (issue 16): the checks of
 * targets= beyond one target's, and the classes resolved from the input's
 * logits (attribution.c runs them; attribution.h has the contract).
 */
#include <stdbool.h>
#include <string.h>

#include "attr_internal.h"

/* Several targets (issue 16): the checks beyond one target's. */
int attr_check_targets(const struct grad_oracle *oracle, const struct attr_params *o,
                       struct igs_error *err)
{
	if (o->n_targets < 1 || o->n_targets > ATTR_TARGETS_MAX)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "targets must name 1 to %d classes, got %d", ATTR_TARGETS_MAX,
		                o->n_targets);
	if (o->target >= 0)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "target and targets cannot both be given (targets=%d,... lists the "
		                "class)",
		                o->target);
	if (o->method != ATTR_INTEGRATED_GRADIENTS && o->method != ATTR_SALIENCY &&
	    o->method != ATTR_INPUT_X_GRADIENT)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "targets works with integrated gradients, saliency and "
		                "input_x_gradient, not method %s",
		                attribution_method_name(o->method, o->rule));
	if (o->tolerance > 0 && o->method == ATTR_INTEGRATED_GRADIENTS)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "targets cannot be combined with tolerance (adaptive refinement "
		                "chooses its points per target); give steps instead");
	if (o->smooth != SMOOTH_NONE)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "targets cannot be combined with smoothgrad");
	if (attribution_baseline_set_size(o) > 1 || o->baseline_count > 1)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "targets cannot be combined with several baselines (a set or "
		                "baseline_samples)");
	if (o->targets_top)
		return o->n_targets <= oracle->classes - (o->first_default_target > 0 ? 1 : 0)
		           ? 0
		           : igs_fail(err, IGS_ERR_BAD_OPTION,
		                      "targets=top%d asks for more classes than the model's %d",
		                      o->n_targets, oracle->classes);
	for (int i = 0; i < o->n_targets; i++) {
		if (o->targets[i] < 0 || o->targets[i] >= oracle->classes)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "targets: class %d is out of range 0..%d", o->targets[i],
			                oracle->classes - 1);
		for (int j = 0; j < i; j++)
			if (o->targets[j] == o->targets[i])
				return igs_fail(err, IGS_ERR_BAD_OPTION,
				                "targets lists class %d twice", o->targets[i]);
	}
	return 0;
}

/* The classes to explain: o->target (the top-1 when -1) with one target;
 * targets[] or the top n_targets by logit (ties to the lower index, among
 * classes >= first_default_target) with several. */
void attr_resolve_targets(const struct attr_params *o, const float *logits, int classes, int T,
                          int *out)
{
	const int first = o->first_default_target > 0 && o->first_default_target < classes
	                      ? o->first_default_target
	                      : 0;
	if (T > 1 || o->n_targets > 0) {
		if (!o->targets_top) {
			memcpy(out, o->targets, (size_t)T * sizeof *out);
			return;
		}
		for (int k = 0; k < T; k++) {
			int best = -1;
			for (int j = first; j < classes; j++) {
				bool taken = false;
				for (int i = 0; i < k; i++)
					taken = taken || out[i] == j;
				if (!taken && (best < 0 || logits[j] > logits[best]))
					best = j;
			}
			out[k] = best;
		}
		return;
	}
	out[0] = attr_resolve_target(o, logits, classes);
}
