/*
 * path_views.h - the notebook's views of the integration path: what is
 * drawn per path point with `path_maps` / `path_views`.
 *
 *   gradient         sum_c |dF_t/dx_c| per pixel, grayscale, one scale for
 *                    the whole path (attr_result.path_maps)
 *   step_normalized  the point's signed step s_k = (x - x') * dF_t/dx
 *                    (attr_result.path_steps), RGB, min-max scaled over
 *                    that point's values: heatmap.h's `normalized`
 *   step_deviation   the same step, |s - median| * 2 / max|s - median|,
 *                    clipped to 1, RGB: heatmap.h's `deviation`, per point
 *
 * The step maps scale each point alone (as the notebook plotted them), so
 * they show where a point's contribution lies, not how large it is; the
 * raw values are the CLI's path_steps.npy.
 */
#ifndef IGSERVE_PATH_VIEWS_H
#define IGSERVE_PATH_VIEWS_H

#include <stddef.h>

#include "error.h"
#include "heatmap.h"

#define PATH_VIEW_GRADIENT (1u << 0)
#define PATH_VIEW_STEP_NORMALIZED (1u << 1)
#define PATH_VIEW_STEP_DEVIATION (1u << 2)
#define PATH_VIEW_KINDS 3
#define PATH_VIEW_STEPS (PATH_VIEW_STEP_NORMALIZED | PATH_VIEW_STEP_DEVIATION)
#define PATH_VIEW_ALL 0x7u

/* The contract name of one PATH_VIEW_* bit ("gradient", ...), NULL if
 * `bit` is not exactly one known bit; and back from name[0..len)
 * (case-insensitive), 0 when unknown. */
const char *path_view_name(unsigned bit);
unsigned path_view_bit(const char *name, size_t len);

/*
 * path_view_parse - a `path_views` value: a comma list of the names above,
 * or "all".  IGS_ERR_BAD_OPTION naming the unknown entry, or an empty set
 * (a set of no views would draw nothing: path_maps=false says that).
 */
int path_view_parse(const char *value, unsigned *out, struct igs_error *err);

/*
 * path_view_render_step - the view `bit` (PATH_VIEW_STEP_NORMALIZED or
 * PATH_VIEW_STEP_DEVIATION) of one point's step [size][size][3]: RGB.
 * out->pixels is allocated (free with heatmap_image_clear).
 */
int path_view_render_step(unsigned bit, const float *step, int size, struct heatmap_image *out,
                          struct igs_error *err);

#endif
