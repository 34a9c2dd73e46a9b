/*
 * heatmap.c - attributions as 8-bit images (definitions in heatmap.h).
 *
 * Contents: quantization and statistics; the colormap; the maps; the
 * full-resolution overlay.
 */
#include "heatmap.h"
#include "heatmap_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- images (the quantization and statistics: heatmap_internal.h) ---- */

int heatmap_alloc_image(struct heatmap_image *out, int w, int h, int channels,
                        struct igs_error *err)
{
	out->width = w;
	out->height = h;
	out->channels = channels;
	out->pixels = malloc((size_t)w * h * channels);
	if (!out->pixels)
		return igs_fail(err, IGS_ERR_NOMEM, "heatmap: out of memory for %dx%d", w, h);
	return 0;
}

void heatmap_image_clear(struct heatmap_image *im)
{
	free(im->pixels);
	im->pixels = NULL;
}

/* Indexed by bit position, in the order answers list the maps. */
static const char *const heatmap_names[HEATMAP_KINDS] = {
    "normalized", "deviation", "magnitude", "overlay",
    "channel_r",  "channel_g", "channel_b", "overlay_full",
    /* the notebook's views (issue 15) */
    "channel_r_deviation", "channel_g_deviation", "channel_b_deviation",
    "masked_image", "alpha_scaling",
    /* the convergence estimate (issue 14) */
    "uncertainty",
};

const char *heatmap_name(unsigned bit)
{
	for (int i = 0; i < HEATMAP_KINDS; i++)
		if (bit == 1u << i)
			return heatmap_names[i];
	return NULL;
}

unsigned heatmap_bit(const char *name, size_t len)
{
	for (int i = 0; i < HEATMAP_KINDS; i++)
		if (strlen(heatmap_names[i]) == len && !strncasecmp(heatmap_names[i], name, len))
			return 1u << i;
	return 0;
}

/* ---- the colormap ---- */

/*
 * viridis as a degree-6 polynomial per channel (Matt Zucker's least-squares
 * fit to matplotlib's table, public domain): within about 1/255 of the
 * table, and like it monotonic in luminance.
 */
void heatmap_colormap(double t, uint8_t rgb[3])
{
	static const double c[7][3] = {
	    {0.2777273272234177, 0.005407344544966578, 0.3340998053353061},
	    {0.1050930431085774, 1.404613529898575, 1.384590162594685},
	    {-0.3308618287255563, 0.214847559468213, 0.09509516302823659},
	    {-4.634230498983486, -5.799100973351585, -19.33244095627987},
	    {6.228269936347081, 14.17993336680509, 56.69055260068105},
	    {4.776384997670288, -13.74514537774601, -65.35303263337234},
	    {-5.435455855934631, 4.645852612178535, 26.3124352495832},
	};
	t = t < 0 ? 0 : t > 1 ? 1 : t;
	for (int ch = 0; ch < 3; ch++) {
		double v = c[6][ch];
		for (int k = 5; k >= 0; k--)
			v = v * t + c[k][ch];
		rgb[ch] = heatmap_to_byte(v);
	}
}

/* ---- the maps ---- */

/* m[px] = sum_c |attr| scaled by the 99th percentile and clipped: [hw] */
static int magnitude01(const float *attr, size_t hw, float *m, struct igs_error *err)
{
	float *scratch = malloc(hw * sizeof *scratch);
	if (!scratch)
		return igs_fail(err, IGS_ERR_NOMEM, "heatmap: out of memory");
	float mx = 0;
	for (size_t p = 0; p < hw; p++) {
		m[p] = fabsf(attr[3 * p]) + fabsf(attr[3 * p + 1]) + fabsf(attr[3 * p + 2]);
		mx = fmaxf(mx, m[p]);
	}
	double p99 = heatmap_quantile(m, hw, 0.99, scratch);
	double scale = p99 > 0 ? p99 : mx; /* a sparse map may have p99 == 0 */
	for (size_t p = 0; p < hw; p++)
		m[p] = scale > 0 ? (float)fmin(m[p] / scale, 1.0) : 0.0f;
	free(scratch);
	return 0;
}

/* byte = heatmap_to_byte((v - lo) / (hi - lo)), 0 when hi == lo */
static uint8_t minmax_byte(float v, float lo, float hi)
{
	return hi > lo ? heatmap_to_byte(((double)v - lo) / ((double)hi - lo)) : 0;
}

/* ---- the notebook's views (issue 15): per-channel deviation ---- */

/* channel c of attr alone: |a_c - median_c| * 2 / max|a_c - median_c|,
 * clipped, grayscale (0 everywhere when the channel is constant). */
static int channel_deviation(const float *attr, int size, int c, struct heatmap_image *out,
                             struct igs_error *err)
{
	size_t hw = (size_t)size * size;
	float *v = malloc(2 * hw * sizeof *v);
	if (!v)
		return igs_fail(err, IGS_ERR_NOMEM, "heatmap: out of memory");
	for (size_t p = 0; p < hw; p++)
		v[p] = attr[3 * p + c];
	double med = heatmap_quantile(v, hw, 0.5, v + hw);
	double maxdev = 0;
	for (size_t p = 0; p < hw; p++)
		maxdev = fmax(maxdev, fabs(v[p] - med));
	int rc = heatmap_alloc_image(out, size, size, 1, err);
	for (size_t p = 0; rc == 0 && p < hw; p++)
		out->pixels[p] = maxdev > 0 ? heatmap_to_byte(fabs(v[p] - med) * 2.0 / maxdev) : 0;
	free(v);
	return rc;
}

int heatmap_render(unsigned bit, const float *attr, int size, const float *input,
                   struct heatmap_image *out, struct igs_error *err)
{
	memset(out, 0, sizeof *out);
	size_t hw = (size_t)size * size, n = hw * 3;
	int rc;
	switch (bit) {
	case HEATMAP_NORMALIZED: {
		if ((rc = heatmap_alloc_image(out, size, size, 3, err)))
			return rc;
		float lo = attr[0], hi = attr[0];
		for (size_t i = 1; i < n; i++) {
			lo = fminf(lo, attr[i]);
			hi = fmaxf(hi, attr[i]);
		}
		for (size_t i = 0; i < n; i++)
			out->pixels[i] = minmax_byte(attr[i], lo, hi);
		return 0;
	}
	case HEATMAP_DEVIATION: {
		float *scratch = malloc(n * sizeof *scratch);
		if (!scratch)
			return igs_fail(err, IGS_ERR_NOMEM, "heatmap: out of memory");
		double med = heatmap_quantile(attr, n, 0.5, scratch);
		free(scratch);
		double maxdev = 0;
		for (size_t i = 0; i < n; i++)
			maxdev = fmax(maxdev, fabs(attr[i] - med));
		if ((rc = heatmap_alloc_image(out, size, size, 3, err)))
			return rc;
		for (size_t i = 0; i < n; i++)
			out->pixels[i] =
			    maxdev > 0 ? heatmap_to_byte(fabs(attr[i] - med) * 2.0 / maxdev) : 0;
		return 0;
	}
	case HEATMAP_CHANNEL_R:
	case HEATMAP_CHANNEL_G:
	case HEATMAP_CHANNEL_B: {
		int c = bit == HEATMAP_CHANNEL_R ? 0 : bit == HEATMAP_CHANNEL_G ? 1 : 2;
		if ((rc = heatmap_alloc_image(out, size, size, 1, err)))
			return rc;
		float lo = attr[c], hi = attr[c];
		for (size_t p = 1; p < hw; p++) {
			lo = fminf(lo, attr[3 * p + c]);
			hi = fmaxf(hi, attr[3 * p + c]);
		}
		for (size_t p = 0; p < hw; p++)
			out->pixels[p] = minmax_byte(attr[3 * p + c], lo, hi);
		return 0;
	}
	case HEATMAP_CHANNEL_R_DEVIATION:
	case HEATMAP_CHANNEL_G_DEVIATION:
	case HEATMAP_CHANNEL_B_DEVIATION:
		return channel_deviation(attr, size,
		                         bit == HEATMAP_CHANNEL_R_DEVIATION   ? 0
		                         : bit == HEATMAP_CHANNEL_G_DEVIATION ? 1
		                                                              : 2,
		                         out, err);
	case HEATMAP_MAGNITUDE:
	case HEATMAP_OVERLAY: {
		if (bit == HEATMAP_OVERLAY && !input)
			return igs_fail(err, IGS_ERR_INTERNAL, "heatmap: overlay needs the input");
		float *m = malloc(hw * sizeof *m);
		if (!m)
			return igs_fail(err, IGS_ERR_NOMEM, "heatmap: out of memory");
		if ((rc = magnitude01(attr, hw, m, err)) ||
		    (rc = heatmap_alloc_image(out, size, size, bit == HEATMAP_OVERLAY ? 3 : 1, err))) {
			free(m);
			return rc;
		}
		for (size_t p = 0; p < hw; p++) {
			if (bit == HEATMAP_MAGNITUDE) {
				out->pixels[p] = heatmap_to_byte(m[p]);
				continue;
			}
			uint8_t col[3];
			heatmap_colormap(m[p], col);
			double a = 0.2 + 0.6 * m[p];
			for (int c = 0; c < 3; c++)
				out->pixels[3 * p + c] =
				    heatmap_to_byte(((1 - a) * input[3 * p + c] + a * col[c]) / 255.0);
		}
		free(m);
		return 0;
	}
	}
	return igs_fail(err, IGS_ERR_BAD_OPTION, "heatmap: unknown map %#x", bit);
}

int heatmap_render_scalar(const float *values, int width, int height, double scale,
                          struct heatmap_image *out, struct igs_error *err)
{
	memset(out, 0, sizeof *out);
	int rc = heatmap_alloc_image(out, width, height, 1, err);
	if (rc)
		return rc;
	for (size_t p = 0; p < (size_t)width * height; p++)
		out->pixels[p] = scale > 0 ? heatmap_to_byte(values[p] / scale) : 0;
	return 0;
}

/* ---- the overlay at the upload's resolution ---- */

/* m[size][size] at continuous input coordinates (u, v), pixel centers at
 * integers, edges clamped. */
static double bilinear(const float *m, int size, double u, double v)
{
	u = u < 0 ? 0 : u > size - 1 ? size - 1 : u;
	v = v < 0 ? 0 : v > size - 1 ? size - 1 : v;
	int x0 = (int)u, y0 = (int)v;
	int x1 = x0 + 1 < size ? x0 + 1 : x0, y1 = y0 + 1 < size ? y0 + 1 : y0;
	double fx = u - x0, fy = v - y0;
	double top = m[y0 * size + x0] * (1 - fx) + m[y0 * size + x1] * fx;
	double bot = m[y1 * size + x0] * (1 - fx) + m[y1 * size + x1] * fx;
	return top * (1 - fy) + bot * fy;
}

void heatmap_overlay_full_size(int width, int height, int *out_width, int *out_height)
{
	int longest = width > height ? width : height;
	if (longest <= HEATMAP_OVERLAY_FULL_MAX_SIDE) {
		*out_width = width;
		*out_height = height;
		return;
	}
	double f = (double)HEATMAP_OVERLAY_FULL_MAX_SIDE / longest;
	long w = lround(width * f), h = lround(height * f);
	*out_width = w < 1 ? 1 : w > HEATMAP_OVERLAY_FULL_MAX_SIDE ? HEATMAP_OVERLAY_FULL_MAX_SIDE
	                                                            : (int)w;
	*out_height = h < 1 ? 1 : h > HEATMAP_OVERLAY_FULL_MAX_SIDE ? HEATMAP_OVERLAY_FULL_MAX_SIDE
	                                                             : (int)h;
}

int heatmap_overlay_full_draw(const float *t, int size, const struct image *original,
                              const struct image_geometry *geom, heatmap_color_fn color,
                              const void *color_ctx, double alpha, struct heatmap_image *out,
                              struct igs_error *err)
{
	memset(out, 0, sizeof *out);
	if (!original || !original->rgb || !geom || !(geom->scale_x > 0) || !(geom->scale_y > 0))
		return igs_fail(err, IGS_ERR_INTERNAL, "heatmap: overlay_full needs the upload");
	/*
	 * A large upload is drawn on its area-averaged reduction to
	 * HEATMAP_OVERLAY_FULL_MAX_SIDE on the long side: a 40-megapixel overlay
	 * would be ~120 MB of PNG and base64 for detail the 224-pixel attribution
	 * does not have.  Reduced pixel centre d + 0.5 is source (d + 0.5) W / w,
	 * so the mapping to the input scales by W / w.
	 */
	struct image scaled = {0};
	const struct image *base = original;
	struct image_geometry g = *geom;
	int ow, oh;
	heatmap_overlay_full_size(original->width, original->height, &ow, &oh);
	if (ow != original->width || oh != original->height) {
		int rc = image_resize(&scaled, original, ow, oh, err);
		if (rc)
			return rc;
		g.scale_x *= (double)original->width / ow;
		g.scale_y *= (double)original->height / oh;
		base = &scaled;
	}
	int rc = heatmap_alloc_image(out, base->width, base->height, 3, err);
	if (rc) {
		image_clear(&scaled);
		return rc;
	}
	for (int sy = 0; sy < base->height; sy++) {
		/* input y + 0.5 = (sy + 0.5) scale_y + offset_y (image.h) */
		double v = (sy + 0.5) * g.scale_y + g.offset_y - 0.5;
		for (int sx = 0; sx < base->width; sx++) {
			double u = (sx + 0.5) * g.scale_x + g.offset_x - 0.5;
			const uint8_t *src = base->rgb + ((size_t)sy * base->width + sx) * 3;
			uint8_t *dst = out->pixels + ((size_t)sy * base->width + sx) * 3;
			if (u < -0.5 || v < -0.5 || u > size - 0.5 || v > size - 0.5) {
				for (int c = 0; c < 3; c++)
					dst[c] = (uint8_t)(src[c] / 2); /* cropped away */
				continue;
			}
			double tv = bilinear(t, size, u, v);
			uint8_t col[3];
			color(color_ctx, tv, col);
			double a = alpha >= 0 ? alpha : 0.2 + 0.6 * tv;
			for (int c = 0; c < 3; c++)
				dst[c] = heatmap_to_byte(((1 - a) * src[c] + a * col[c]) / 255.0);
		}
	}
	image_clear(&scaled);
	return 0;
}

static void viridis(const void *ctx, double t, uint8_t rgb[3])
{
	(void)ctx;
	heatmap_colormap(t, rgb);
}

int heatmap_render_overlay_full(const float *attr, int size, const struct image *original,
                                const struct image_geometry *geom, struct heatmap_image *out,
                                struct igs_error *err)
{
	memset(out, 0, sizeof *out);
	size_t hw = (size_t)size * size;
	float *m = malloc(hw * sizeof *m);
	int rc = m ? magnitude01(attr, hw, m, err)
	           : igs_fail(err, IGS_ERR_NOMEM, "heatmap: out of memory");
	if (!rc)
		rc = heatmap_overlay_full_draw(m, size, original, geom, viridis, NULL, -1, out, err);
	free(m);
	return rc;
}
