/*
 * attr_internal.h - what the attribution module's files share and nothing
 * outside it needs.
 */
#ifndef IGSERVE_ATTR_INTERNAL_H
#define IGSERVE_ATTR_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attribution.h"

/* Uniform in [0, 1) with 53 bits from attribution_splitmix64: the noise
 * baseline's and SmoothGrad's draws. */
double attr_uniform01(uint64_t *state);

/* Whether the baseline is one value everywhere (gray, black, white), and
 * which: such a baseline's logits the oracle may keep between runs. */
bool attr_constant_baseline(enum baseline_kind kind, float *value);

/* ---- the calibrated estimate (estimate.c) ---- */

/* Buckets of a point's sketch: the row length path_sketch_add fills. */
int path_sketch_buckets(void);
/* Each value's bucket and sign, for images of n values (malloc'd). */
uint32_t *path_sketch_codes(size_t n);
/* row[path_sketch_buckets()] += scale * sketch of the step (x - base) * g
 * (x NULL: of g itself). */
void path_sketch_add(const uint32_t *code, size_t n, const float *x, const float *base,
                     const float *g, double scale, float *row);
/* The factor that turns ||fine - coarse|| / ||fine|| into the estimate,
 * from the sketches rows[points][buckets] of a trapezoid rule that
 * refined a coarser one by q (cells of q + 1 points, in path order). */
double path_cells_factor(const float *rows, int points, int q);

#endif
