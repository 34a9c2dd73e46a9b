/*
 * heatmap_style.h - the heatmaps of heatmap.h drawn under a request's
 * controls (sign, clip, scale, colormap, alpha), and the scale each map
 * used, so a client can draw a legend and maps of different images compare.
 *
 * Every map first reduces the attributions a[y][x][c] to values, with
 * g(a) = a (sign=all), max(a, 0) (positive), max(-a, 0) (negative) or |a|
 * (absolute):
 *   element maps  normalized (RGB), channel_r/g/b:  v = g(a) per element
 *                 (default sign all)
 *   deviation     (RGB) d = |g(a) - median g(a)| per element (default all);
 *                 channel_X_deviation (issue 15's, known by name) the same
 *                 over one channel, gray or the colormap
 *   pixel maps    magnitude, overlay, overlay_full, masked_image,
 *                 alpha_scaling:  s = sum_c g(a_c) per pixel (default
 *                 absolute; sign=all gives the signed sum)
 * then maps [vmin, vmax] to t = (value - vmin) / (vmax - vmin), clamped to
 * [0, 1] (t = 0 when vmax <= vmin).  scale=image takes, with clip = C:
 *   element maps  vmin = percentile(v, 100 - C), vmax = percentile(v, C),
 *                 C = 100 by default (the min and the max)
 *   deviation     vmin = 0, vmax = percentile(d, C), or max(d) / 2 without
 *                 clip (what the notebook drew)
 *   pixel maps    sign all: vmax = percentile(|s|, C), vmin = -vmax (0 at the
 *                 middle of the scale); other signs: vmin = 0,
 *                 vmax = percentile(s, C); C = 99 by default; a percentile of
 *                 0 falls back to the maximum
 * and scale=fixed takes the request's vmin and vmax (vmin by default -vmax
 * for signed values, sign=all outside deviation, else 0).  The colors:
 *   normalized, deviation  t per channel as RGB (colormap "rgb")
 *   magnitude, channel_*   colormap(t); gray (the default) is one channel
 *   overlay, overlay_full  (1 - w) input + w colormap(t), colormap viridis by
 *                 default, w = alpha, or 0.2 + 0.6 t without alpha
 *   masked_image  input * t (Captum's masked_image; colormap "brightness")
 *   alpha_scaling the input with opacity t, RGBA (Captum's alpha_scaling;
 *                 colormap "opacity")
 *   (these two refuse sign=all, as Captum does: IGS_ERR_BAD_OPTION)
 * A value u in [0, 1] becomes the byte floor(255 u + 0.5); percentiles
 * follow NumPy's default (linear).  With every control at its default the
 * bytes are heatmap_render's.
 */
#ifndef IGSERVE_HEATMAP_STYLE_H
#define IGSERVE_HEATMAP_STYLE_H

#include <stdbool.h>

#include "heatmap.h"

enum heatmap_sign {
	HEATMAP_SIGN_DEFAULT, /* the map's own: all for element maps and deviation, else absolute */
	HEATMAP_SIGN_POSITIVE,
	HEATMAP_SIGN_NEGATIVE,
	HEATMAP_SIGN_ABSOLUTE,
	HEATMAP_SIGN_ALL,
};

enum heatmap_cmap {
	HEATMAP_CMAP_DEFAULT, /* the map's own: gray, viridis for the overlays */
	HEATMAP_CMAP_VIRIDIS,
	HEATMAP_CMAP_INFERNO,
	HEATMAP_CMAP_GRAY,
	HEATMAP_CMAP_RDBU, /* diverging: ColorBrewer RdBu, red at 0, white at 0.5, blue at 1 */
};

struct heatmap_style {
	enum heatmap_sign sign;
	double clip;      /* percentile in (0, 100]; 0: the map's default */
	bool fixed;       /* scale=fixed: vmin, vmax below */
	bool scale_image; /* scale=image was asked for by name */
	bool vmin_given;  /* else -vmax or 0 (above) */
	bool vmax_given;
	double vmin, vmax;
	enum heatmap_cmap colormap;
	double alpha; /* overlay opacity in [0, 1]; < 0: 0.2 + 0.6 t */
};

/* The scale one map used, in attribution units. */
struct heatmap_scale {
	double vmin, vmax;
	const char *colormap; /* static: viridis, inferno, gray, rdbu, rgb, brightness, opacity */
	const char *sign;     /* static: positive, negative, absolute, all */
};

/* Every control at its default. */
void heatmap_style_init(struct heatmap_style *st);

/* IGS_ERR_BAD_OPTION naming the option when the controls contradict each
 * other (scale=fixed without vmax, vmin >= vmax, ...). */
int heatmap_style_check(const struct heatmap_style *st, struct igs_error *err);

/* Parsers of the option values; -1 when unknown. */
int heatmap_sign_parse(const char *s);
int heatmap_cmap_parse(const char *s);
const char *heatmap_sign_name(enum heatmap_sign s);
const char *heatmap_cmap_name(enum heatmap_cmap c);

/* The colormap `c` (not DEFAULT) at t in [0, 1] (clamped), 8-bit RGB. */
void heatmap_cmap_rgb(enum heatmap_cmap c, double t, uint8_t rgb[3]);

/*
 * heatmap_render_styled - heatmap_render under `st`, also for
 * HEATMAP_MASKED_IMAGE and HEATMAP_ALPHA_SCALING; *scale (may be NULL)
 * gets the scale used.  `input` is needed by the overlay, masked_image and
 * alpha_scaling.  A map this file does not know is heatmap_render's, with
 * scale->colormap NULL (no scale to report).
 */
int heatmap_render_styled(unsigned bit, const float *attr, int size, const float *input,
                          const struct heatmap_style *st, struct heatmap_image *out,
                          struct heatmap_scale *scale, struct igs_error *err);

/*
 * heatmap_render_uncertainty - the map HEATMAP_UNCERTAINTY of the
 * estimate pixel by pixel, u ([size][size], >= 0: attr_result.uncertainty):
 * t = u / vmax clipped, vmax u's 99th percentile (`clip`), or vmax and vmin
 * with scale=fixed; gray (one channel) unless a colormap is named.  `sign`
 * does not apply (u is a magnitude): the scale reports "absolute".
 */
int heatmap_render_uncertainty(const float *u, int size, const struct heatmap_style *st,
                               struct heatmap_image *out, struct heatmap_scale *scale,
                               struct igs_error *err);

/* heatmap_render_overlay_full under `st` (sign, clip, scale, colormap, alpha). */
int heatmap_render_overlay_full_styled(const float *attr, int size, const struct image *original,
                                       const struct image_geometry *geom,
                                       const struct heatmap_style *st, struct heatmap_image *out,
                                       struct heatmap_scale *scale, struct igs_error *err);

#endif
