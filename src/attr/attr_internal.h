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

#endif
