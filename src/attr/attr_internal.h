/*
 * attr_internal.h - what the attribution module's files share and nothing
 * outside it needs.
 */
#ifndef IGSERVE_ATTR_INTERNAL_H
#define IGSERVE_ATTR_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "attribution.h"

/* Uniform in [0, 1) with 53 bits from attribution_splitmix64: the noise
 * baseline's and SmoothGrad's draws. */
double attr_uniform01(uint64_t *state);

/* Whether the baseline is one value everywhere (gray, black, white), and
 * which: such a baseline's logits the oracle may keep between runs. */
bool attr_constant_baseline(enum baseline_kind kind, float *value);

/* targets= (attr_targets.c): IGS_ERR_BAD_OPTION naming what is wrong
 * with o's several targets for this oracle, or 0. */
int attr_check_targets(const struct grad_oracle *oracle, const struct attr_params *o,
                       struct igs_error *err);
/* The T classes to explain, from the input's logits: o->target (the top-1
 * when -1, among classes >= first_default_target) with one target;
 * o->targets, or the top T by logit (ties to the lower index), with
 * several. */
void attr_resolve_targets(const struct attr_params *o, const float *logits, int classes, int T,
                          int *out);

#endif
