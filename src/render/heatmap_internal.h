/*
 * heatmap_internal.h - the quantization and statistics heatmap.c and
 * heatmap_style.c share, so the default maps and the styled ones round
 * alike (nothing outside src/render needs them).
 */
#ifndef IGSERVE_HEATMAP_INTERNAL_H
#define IGSERVE_HEATMAP_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "heatmap.h"

/* v in [0, 1] as the byte floor(255 v + 0.5); <= 0 and NaN give 0. */
static inline uint8_t heatmap_to_byte(double v)
{
	if (!(v > 0))
		return 0; /* also NaN */
	if (v >= 1)
		return 255;
	return (uint8_t)floor(255.0 * v + 0.5);
}

static inline int heatmap_cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* NumPy's default quantile: sorted[h] interpolated at h = q (n - 1).
 * `sorted` is scratch of n floats; v[n] is copied into it.  (Inline, so
 * the compiler sees the scratch written before it is read.) */
static inline double heatmap_quantile(const float *v, size_t n, double q, float *sorted)
{
	memcpy(sorted, v, n * sizeof *sorted);
	qsort(sorted, n, sizeof *sorted, heatmap_cmp_float);
	double h = q * (double)(n - 1);
	size_t lo = (size_t)floor(h);
	size_t hi = lo + 1 < n ? lo + 1 : lo;
	return sorted[lo] + (h - (double)lo) * ((double)sorted[hi] - sorted[lo]);
}

/* Draws t in [0, 1] as RGB; ctx is the caller's. */
typedef void (*heatmap_color_fn)(const void *ctx, double t, uint8_t rgb[3]);

/* The overlay at the upload's resolution (heatmap.h, overlay_full) of
 * t[size][size] in [0, 1] (bilinear between input pixels): the upload,
 * reduced to heatmap_overlay_full_size, blended with color(t) at opacity
 * alpha (< 0: 0.2 + 0.6 t); outside the input, the upload at half
 * brightness.  The default and the styled overlay both draw with it. */
int heatmap_overlay_full_draw(const float *t, int size, const struct image *original,
                              const struct image_geometry *geom, heatmap_color_fn color,
                              const void *color_ctx, double alpha, struct heatmap_image *out,
                              struct igs_error *err);

/* out->pixels allocated for w x h x channels (IGS_ERR_NOMEM naming the size). */
int heatmap_alloc_image(struct heatmap_image *out, int w, int h, int channels,
                        struct igs_error *err);

#endif
