/*
 * heatmap.h - attributions [size][size][3] drawn as 8-bit images, the
 * plots of the original notebook plus a colormap overlay.
 *
 *   normalized  (a - min) / (max - min) over all values, RGB
 *   deviation   |a - median| * 2 / max|a - median|, clipped to 1, RGB
 *   magnitude   m = sum_c |a_c| per pixel, / its 99th percentile, clipped,
 *               grayscale
 *   overlay     magnitude through viridis, blended over the input with
 *               alpha = 0.2 + 0.6 m (faint where nothing is attributed)
 *   overlay_full the overlay at the upload's own resolution (at most 4096
 *               pixels on the long side, larger uploads reduced), the magnitude
 *               sampled bilinearly through image_geometry; source pixels the
 *               model never saw (cropped away) are shown at half brightness
 *   channel_r/g/b each channel min-max scaled, grayscale
 *   channel_r/g/b_deviation each channel c alone, |a_c - median_c| * 2 /
 *               max|a_c - median_c|, clipped to 1, grayscale (not in the
 *               default set)
 * A value v in [0, 1] becomes the byte floor(255 v + 0.5).  A constant
 * input to a min-max scale draws as 0.  Percentile and median follow NumPy
 * (linear interpolation between order statistics).
 */
#ifndef IGSERVE_HEATMAP_H
#define IGSERVE_HEATMAP_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "image.h"

/* The maps, one bit each (a request's `heatmaps` is a set of them). */
#define HEATMAP_NORMALIZED (1u << 0)
#define HEATMAP_DEVIATION (1u << 1)
#define HEATMAP_MAGNITUDE (1u << 2)
#define HEATMAP_OVERLAY (1u << 3)
#define HEATMAP_CHANNEL_R (1u << 4)
#define HEATMAP_CHANNEL_G (1u << 5)
#define HEATMAP_CHANNEL_B (1u << 6)
#define HEATMAP_OVERLAY_FULL (1u << 7) /* overlay at the upload's own resolution */
/* ---- the notebook's views (issue 15): per-channel deviation ---- */
#define HEATMAP_CHANNEL_R_DEVIATION (1u << 8)
#define HEATMAP_CHANNEL_G_DEVIATION (1u << 9)
#define HEATMAP_CHANNEL_B_DEVIATION (1u << 10)
/* Captum-like maps drawn by heatmap_render_styled only (heatmap_style.h) */
#define HEATMAP_MASKED_IMAGE (1u << 11)  /* the input times the scaled map */
#define HEATMAP_ALPHA_SCALING (1u << 12) /* the input, the scaled map as its opacity (RGBA) */
/* the convergence estimate pixel by pixel (issue 14): drawn from
 * attr_result.uncertainty, not from the attributions
 * (heatmap_render_uncertainty in heatmap_style.h) */
#define HEATMAP_UNCERTAINTY (1u << 13)
#define HEATMAP_KINDS 14
#define HEATMAP_DEFAULT 0x7fu /* the seven the contract lists */
/* heatmaps=all: every map of the attributions (uncertainty is asked for by
 * name: only some methods have it) */
#define HEATMAP_ALL 0x1fffu
/* The last bit, for loops over the maps in answer order. */
#define HEATMAP_LAST (1u << (HEATMAP_KINDS - 1))

struct heatmap_image {
	int width, height, channels; /* channels: 1 (gray), 3 (RGB) or 4 (RGBA) */
	uint8_t *pixels;             /* height*width*channels, owned */
};

void heatmap_image_clear(struct heatmap_image *im);

/* The contract name of one HEATMAP_* bit ("normalized", ...); NULL if
 * `bit` is not exactly one known bit. */
const char *heatmap_name(unsigned bit);
/* The bit of the map named by name[0..len) (case-insensitive), or 0. */
unsigned heatmap_bit(const char *name, size_t len);

/*
 * heatmap_render - the map `bit` (one HEATMAP_* above, not
 * HEATMAP_OVERLAY_FULL) of attr [size][size][3].  `input` (pixels 0..255,
 * [size][size][3]) is needed by the overlay only and may be NULL
 * otherwise.  out->pixels is allocated (free with heatmap_image_clear).
 */
int heatmap_render(unsigned bit, const float *attr, int size, const float *input,
                   struct heatmap_image *out, struct igs_error *err);

/* overlay_full's longest side: a larger upload is drawn reduced to it. */
#define HEATMAP_OVERLAY_FULL_MAX_SIDE 4096

/* The size overlay_full has for an upload of width x height (the same, or
 * reduced with its aspect kept so the long side is the maximum). */
void heatmap_overlay_full_size(int width, int height, int *out_width, int *out_height);

/*
 * heatmap_render_overlay_full - the overlay drawn over `original` (the
 * decoded upload) at its resolution, through `geom` from image_fit; an
 * upload longer than HEATMAP_OVERLAY_FULL_MAX_SIDE on either side is first
 * reduced (area averaging) to heatmap_overlay_full_size.
 */
int heatmap_render_overlay_full(const float *attr, int size, const struct image *original,
                                const struct image_geometry *geom, struct heatmap_image *out,
                                struct igs_error *err);

/*
 * heatmap_render_scalar - a grayscale map of values [height][width]
 * divided by `scale` (> 0) and clipped to [0, 1] (per-path-point maps
 * share one scale so they compare).
 */
int heatmap_render_scalar(const float *values, int width, int height, double scale,
                          struct heatmap_image *out, struct igs_error *err);

/* viridis at t in [0, 1] (clamped), as 8-bit RGB. */
void heatmap_colormap(double t, uint8_t rgb[3]);

#endif
