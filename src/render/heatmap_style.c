/*
 * heatmap_style.c - the heatmaps under a request's controls (definitions
 * in heatmap_style.h).
 *
 * Contents: the controls; the colormaps; the
 * values and their scale; the maps; the full-resolution overlay.  The
 * arithmetic of the default path is heatmap.c's, operation for operation
 * (floats where it has floats), so the default bytes are the same.
 */
#include "heatmap_style.h"

#include "heatmap_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the controls ---- */

void heatmap_style_init(struct heatmap_style *st)
{
	*st = (struct heatmap_style){
	    .sign = HEATMAP_SIGN_DEFAULT, .colormap = HEATMAP_CMAP_DEFAULT, .alpha = -1};
}

int heatmap_style_check(const struct heatmap_style *st, struct igs_error *err)
{
	if (st->scale_image && (st->vmin_given || st->vmax_given))
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "vmin and vmax go with scale=fixed, not scale=image");
	if (st->vmin_given && !st->vmax_given)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "vmin needs vmax (scale=fixed)");
	if (st->fixed && !st->vmax_given)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "scale=fixed needs vmax");
	if (st->vmin_given && !(st->vmin < st->vmax))
		return igs_fail(err, IGS_ERR_BAD_OPTION, "vmin (%g) must be below vmax (%g)",
		                st->vmin, st->vmax);
	if (st->vmax_given && !st->vmin_given && !(st->vmax > 0))
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "vmax must be positive without vmin (vmin defaults to 0 or -vmax), "
		                "got %g",
		                st->vmax);
	return 0;
}

static const char *const sign_names[] = {"default", "positive", "negative", "absolute", "all"};
static const char *const cmap_names[] = {"default", "viridis", "inferno", "gray", "rdbu"};

int heatmap_sign_parse(const char *s)
{
	for (int i = 1; i < 5; i++)
		if (!strcasecmp(s, sign_names[i]))
			return i;
	return -1;
}

int heatmap_cmap_parse(const char *s)
{
	for (int i = 1; i < 5; i++)
		if (!strcasecmp(s, cmap_names[i]))
			return i;
	return -1;
}

const char *heatmap_sign_name(enum heatmap_sign s)
{
	return s >= 0 && s < 5 ? sign_names[s] : "default";
}

const char *heatmap_cmap_name(enum heatmap_cmap c)
{
	return c >= 0 && c < 5 ? cmap_names[c] : "default";
}

/* ---- the colormaps ---- */

/* inferno as a degree-6 polynomial per channel (Matt Zucker's fit to
 * matplotlib's table, public domain, like heatmap.c's viridis). */
static void inferno(double t, uint8_t rgb[3])
{
	static const double c[7][3] = {
	    {0.0002189403691192265, 0.001651004631001012, -0.01948089843709184},
	    {0.1065134194856116, 0.5639564367884091, 3.932712388889277},
	    {11.60249308247187, -3.972853965665698, -15.9423941062914},
	    {-41.70399613139459, 17.43639888205313, 44.35414519872813},
	    {77.162935699427, -33.40235894210092, -81.80730925738993},
	    {-71.31942824499214, 32.62606426397723, 73.20951985803202},
	    {25.13112622477341, -12.24266895238567, -23.07032500287172},
	};
	for (int ch = 0; ch < 3; ch++) {
		double v = c[6][ch];
		for (int k = 5; k >= 0; k--)
			v = v * t + c[k][ch];
		rgb[ch] = heatmap_to_byte(v);
	}
}

/* ColorBrewer's 11-class RdBu (matplotlib's RdBu), linear between the
 * anchors at k / 10. */
static void rdbu(double t, uint8_t rgb[3])
{
	static const uint8_t anchors[11][3] = {
	    {0x67, 0x00, 0x1f}, {0xb2, 0x18, 0x2b}, {0xd6, 0x60, 0x4d}, {0xf4, 0xa5, 0x82},
	    {0xfd, 0xdb, 0xc7}, {0xf7, 0xf7, 0xf7}, {0xd1, 0xe5, 0xf0}, {0x92, 0xc5, 0xde},
	    {0x43, 0x93, 0xc3}, {0x21, 0x66, 0xac}, {0x05, 0x30, 0x61},
	};
	double h = t * 10;
	int k = (int)floor(h);
	if (k > 9)
		k = 9;
	double f = h - k;
	for (int ch = 0; ch < 3; ch++)
		rgb[ch] =
		    heatmap_to_byte((anchors[k][ch] + f * (anchors[k + 1][ch] - anchors[k][ch])) / 255.0);
}

void heatmap_cmap_rgb(enum heatmap_cmap c, double t, uint8_t rgb[3])
{
	t = t < 0 ? 0 : t > 1 ? 1 : t;
	switch (c) {
	case HEATMAP_CMAP_INFERNO:
		inferno(t, rgb);
		return;
	case HEATMAP_CMAP_GRAY:
		rgb[0] = rgb[1] = rgb[2] = heatmap_to_byte(t);
		return;
	case HEATMAP_CMAP_RDBU:
		rdbu(t, rgb);
		return;
	default:
		heatmap_colormap(t, rgb);
	}
}

/* ---- the values and their scale ---- */

enum family { ELEMENT, DEVIATION, PIXEL };

static enum heatmap_sign sign_of(enum family f, enum heatmap_sign s)
{
	if (s != HEATMAP_SIGN_DEFAULT)
		return s;
	return f == PIXEL ? HEATMAP_SIGN_ABSOLUTE : HEATMAP_SIGN_ALL;
}

static float g(enum heatmap_sign s, float a)
{
	switch (s) {
	case HEATMAP_SIGN_POSITIVE:
		return a > 0 ? a : 0.0f;
	case HEATMAP_SIGN_NEGATIVE:
		return a < 0 ? -a : 0.0f;
	case HEATMAP_SIGN_ABSOLUTE:
		return fabsf(a);
	default:
		return a;
	}
}

/*
 * The pixel maps' t[hw] in [0, 1] and their scale: s = sum_c g(a_c) as
 * heatmap.c's magnitude01 sums |a_c|, scaled as heatmap_style.h says.
 */
static int pixel_t(const float *attr, size_t hw, const struct heatmap_style *st, float *t,
                   struct heatmap_scale *sc, struct igs_error *err)
{
	enum heatmap_sign sign = sign_of(PIXEL, st->sign);
	bool is_signed = sign == HEATMAP_SIGN_ALL;
	float mx = 0;
	for (size_t p = 0; p < hw; p++) {
		t[p] = g(sign, attr[3 * p]) + g(sign, attr[3 * p + 1]) + g(sign, attr[3 * p + 2]);
		mx = fmaxf(mx, is_signed ? fabsf(t[p]) : t[p]);
	}
	double vmin, vmax;
	if (st->fixed) {
		vmax = st->vmax;
		vmin = st->vmin_given ? st->vmin : is_signed ? -vmax : 0;
	} else {
		float *scratch = malloc(2 * hw * sizeof *scratch);
		if (!scratch)
			return igs_fail(err, IGS_ERR_NOMEM, "heatmap: out of memory");
		const float *v = t;
		if (is_signed) {
			for (size_t p = 0; p < hw; p++)
				scratch[hw + p] = fabsf(t[p]);
			v = scratch + hw;
		}
		double q = (st->clip > 0 ? st->clip : 99.0) / 100.0;
		double pc = heatmap_quantile(v, hw, q, scratch);
		free(scratch);
		vmax = pc > 0 ? pc : mx; /* a sparse map may have its percentile at 0 */
		vmin = is_signed ? -vmax : 0;
	}
	for (size_t p = 0; p < hw; p++)
		t[p] =
		    vmax > vmin ? (float)fmax(fmin((t[p] - vmin) / (vmax - vmin), 1.0), 0.0) : 0.0f;
	*sc = (struct heatmap_scale){vmin, vmax, NULL, heatmap_sign_name(sign)};
	return 0;
}

/* ---- the maps ---- */

static int render_element(unsigned bit, const float *attr, int size, const struct heatmap_style *st,
                          struct heatmap_image *out, struct heatmap_scale *sc,
                          struct igs_error *err)
{
	enum heatmap_sign sign = sign_of(ELEMENT, st->sign);
	size_t hw = (size_t)size * size;
	int c0 = bit == HEATMAP_NORMALIZED  ? 0
	         : bit == HEATMAP_CHANNEL_R ? 0
	         : bit == HEATMAP_CHANNEL_G ? 1
	                                    : 2;
	size_t stride = bit == HEATMAP_NORMALIZED ? 1 : 3,
	       n = bit == HEATMAP_NORMALIZED ? hw * 3 : hw;
	float *v = malloc(2 * n * sizeof *v);
	if (!v)
		return igs_fail(err, IGS_ERR_NOMEM, "heatmap: out of memory");
	for (size_t i = 0; i < n; i++)
		v[i] = g(sign, attr[c0 + i * stride]);
	double vmin, vmax;
	if (st->fixed) {
		vmax = st->vmax;
		vmin = st->vmin_given ? st->vmin : sign == HEATMAP_SIGN_ALL ? -vmax : 0;
	} else if (st->clip > 0 && st->clip < 100) {
		vmin = heatmap_quantile(v, n, 1 - st->clip / 100, v + n);
		vmax = heatmap_quantile(v, n, st->clip / 100, v + n);
	} else {
		float lo = v[0], hi = v[0];
		for (size_t i = 1; i < n; i++) {
			lo = fminf(lo, v[i]);
			hi = fmaxf(hi, v[i]);
		}
		vmin = lo;
		vmax = hi;
	}
	bool gray = st->colormap == HEATMAP_CMAP_DEFAULT || st->colormap == HEATMAP_CMAP_GRAY;
	int channels = bit == HEATMAP_NORMALIZED || !gray ? 3 : 1;
	int rc = heatmap_alloc_image(out, size, size, channels, err);
	if (rc) {
		free(v);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		double t = vmax > vmin ? ((double)v[i] - vmin) / (vmax - vmin) : 0;
		if (channels == 3 && bit != HEATMAP_NORMALIZED)
			heatmap_cmap_rgb(st->colormap, t, out->pixels + 3 * i);
		else
			out->pixels[i] = heatmap_to_byte(t);
	}
	free(v);
	*sc = (struct heatmap_scale){vmin, vmax,
	                             bit == HEATMAP_NORMALIZED ? "rgb"
	                             : gray                    ? "gray"
	                                                       : heatmap_cmap_name(st->colormap),
	                             heatmap_sign_name(sign)};
	return 0;
}

/* deviation (channel < 0: all three, RGB) or channel_X_deviation (one
 * channel: gray, or the colormap) */
static int render_deviation(const float *attr, int size, int channel,
                            const struct heatmap_style *st, struct heatmap_image *out,
                            struct heatmap_scale *sc, struct igs_error *err)
{
	enum heatmap_sign sign = sign_of(DEVIATION, st->sign);
	size_t hw = (size_t)size * size, n = channel < 0 ? hw * 3 : hw;
	float *v = malloc(3 * n * sizeof *v), *scratch = v + n, *d = v + 2 * n;
	if (!v)
		return igs_fail(err, IGS_ERR_NOMEM, "heatmap: out of memory");
	for (size_t i = 0; i < n; i++)
		v[i] = g(sign, channel < 0 ? attr[i] : attr[3 * i + channel]);
	double med = heatmap_quantile(v, n, 0.5, scratch);
	double maxdev = 0;
	for (size_t i = 0; i < n; i++)
		maxdev = fmax(maxdev, fabs(v[i] - med));
	double vmin = 0, vmax = maxdev / 2;
	if (st->fixed) {
		vmax = st->vmax;
		vmin = st->vmin_given ? st->vmin : 0;
	} else if (st->clip > 0) {
		for (size_t i = 0; i < n; i++)
			d[i] = (float)fabs(v[i] - med);
		vmax = heatmap_quantile(d, n, st->clip / 100, scratch);
	}
	bool gray = st->colormap == HEATMAP_CMAP_DEFAULT || st->colormap == HEATMAP_CMAP_GRAY;
	int channels = channel < 0 || !gray ? 3 : 1;
	int rc = heatmap_alloc_image(out, size, size, channels, err);
	if (rc) {
		free(v);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		double t = vmax > vmin ? (fabs(v[i] - med) - vmin) / (vmax - vmin) : 0;
		if (channel >= 0 && !gray)
			heatmap_cmap_rgb(st->colormap, t, out->pixels + 3 * i);
		else
			out->pixels[i] = heatmap_to_byte(t);
	}
	free(v);
	*sc = (struct heatmap_scale){vmin, vmax,
	                             channel < 0 ? "rgb"
	                             : gray      ? "gray"
	                                         : heatmap_cmap_name(st->colormap),
	                             heatmap_sign_name(sign)};
	return 0;
}

static int render_pixel(unsigned bit, const float *attr, int size, const float *input,
                        const struct heatmap_style *st, struct heatmap_image *out,
                        struct heatmap_scale *sc, struct igs_error *err)
{
	if (bit != HEATMAP_MAGNITUDE && !input)
		return igs_fail(err, IGS_ERR_INTERNAL, "heatmap: %s needs the input",
		                heatmap_name(bit));
	if ((bit == HEATMAP_MASKED_IMAGE || bit == HEATMAP_ALPHA_SCALING) &&
	    st->sign == HEATMAP_SIGN_ALL) /* as Captum: no negative brightness or opacity */
		return igs_fail(err, IGS_ERR_BAD_OPTION, "heatmap: sign=all cannot draw %s",
		                heatmap_name(bit));
	size_t hw = (size_t)size * size;
	float *t = malloc(hw * sizeof *t);
	if (!t)
		return igs_fail(err, IGS_ERR_NOMEM, "heatmap: out of memory");
	int rc = pixel_t(attr, hw, st, t, sc, err);
	enum heatmap_cmap cmap = st->colormap;
	if (cmap == HEATMAP_CMAP_DEFAULT)
		cmap = bit == HEATMAP_OVERLAY ? HEATMAP_CMAP_VIRIDIS : HEATMAP_CMAP_GRAY;
	int channels = bit == HEATMAP_ALPHA_SCALING                            ? 4
	               : bit == HEATMAP_MAGNITUDE && cmap == HEATMAP_CMAP_GRAY ? 1
	                                                                       : 3;
	if (!rc)
		rc = heatmap_alloc_image(out, size, size, channels, err);
	if (rc) {
		free(t);
		return rc;
	}
	sc->colormap = bit == HEATMAP_MASKED_IMAGE    ? "brightness"
	               : bit == HEATMAP_ALPHA_SCALING ? "opacity"
	                                              : heatmap_cmap_name(cmap);
	for (size_t p = 0; p < hw; p++) {
		uint8_t *dst = out->pixels + channels * p;
		const float *in = input ? input + 3 * p : NULL;
		if (bit == HEATMAP_MAGNITUDE) {
			if (channels == 1)
				dst[0] = heatmap_to_byte(t[p]);
			else
				heatmap_cmap_rgb(cmap, t[p], dst);
		} else if (bit == HEATMAP_OVERLAY) {
			uint8_t col[3];
			heatmap_cmap_rgb(cmap, t[p], col);
			double a = st->alpha >= 0 ? st->alpha : 0.2 + 0.6 * t[p];
			for (int c = 0; c < 3; c++)
				dst[c] = heatmap_to_byte(((1 - a) * in[c] + a * col[c]) / 255.0);
		} else if (bit == HEATMAP_MASKED_IMAGE) {
			for (int c = 0; c < 3; c++)
				dst[c] = heatmap_to_byte(in[c] * (double)t[p] / 255.0);
		} else {
			for (int c = 0; c < 3; c++)
				dst[c] = heatmap_to_byte(in[c] / 255.0);
			dst[3] = heatmap_to_byte(t[p]);
		}
	}
	free(t);
	return 0;
}

int heatmap_render_styled(unsigned bit, const float *attr, int size, const float *input,
                          const struct heatmap_style *st, struct heatmap_image *out,
                          struct heatmap_scale *scale, struct igs_error *err)
{
	memset(out, 0, sizeof *out);
	struct heatmap_scale sc_local, *sc = scale ? scale : &sc_local;
	struct heatmap_style def;
	if (!st) {
		heatmap_style_init(&def);
		st = &def;
	}
	switch (bit) {
	case HEATMAP_NORMALIZED:
	case HEATMAP_CHANNEL_R:
	case HEATMAP_CHANNEL_G:
	case HEATMAP_CHANNEL_B:
		return render_element(bit, attr, size, st, out, sc, err);
	case HEATMAP_DEVIATION:
		return render_deviation(attr, size, -1, st, out, sc, err);
	case HEATMAP_MAGNITUDE:
	case HEATMAP_OVERLAY:
	case HEATMAP_MASKED_IMAGE:
	case HEATMAP_ALPHA_SCALING:
		return render_pixel(bit, attr, size, input, st, out, sc, err);
	}
	/* The per-channel deviation maps of issue 15 are known by their
	 * contract names, channel_X_deviation, whatever their bits. */
	const char *name = heatmap_name(bit);
	if (name && !strncmp(name, "channel_", 8) && name[8] && strchr("rgb", name[8]) &&
	    !strcmp(name + 9, "_deviation"))
		return render_deviation(attr, size,
		                        name[8] == 'r'   ? 0
		                        : name[8] == 'g' ? 1
		                                         : 2,
		                        st, out, sc, err);
	/* any other map: drawn as heatmap_render draws it, without a scale */
	*sc = (struct heatmap_scale){0};
	return heatmap_render(bit, attr, size, input, out, err);
}

int heatmap_render_uncertainty(const float *u, int size, const struct heatmap_style *st,
                               struct heatmap_image *out, struct heatmap_scale *scale,
                               struct igs_error *err)
{
	memset(out, 0, sizeof *out);
	size_t hw = (size_t)size * size;
	double vmin = 0, vmax;
	if (st->fixed) {
		vmax = st->vmax;
		vmin = st->vmin_given ? st->vmin : 0;
	} else {
		float *scratch = malloc(hw * sizeof *scratch);
		if (!scratch)
			return igs_fail(err, IGS_ERR_NOMEM, "heatmap: out of memory");
		float mx = 0;
		for (size_t p = 0; p < hw; p++)
			mx = fmaxf(mx, u[p]);
		double pc = heatmap_quantile(u, hw, (st->clip > 0 ? st->clip : 99.0) / 100.0, scratch);
		free(scratch);
		vmax = pc > 0 ? pc : mx;
	}
	bool gray = st->colormap == HEATMAP_CMAP_DEFAULT || st->colormap == HEATMAP_CMAP_GRAY;
	int rc = heatmap_alloc_image(out, size, size, gray ? 1 : 3, err);
	if (rc)
		return rc;
	for (size_t p = 0; p < hw; p++) {
		double t = vmax > vmin ? ((double)u[p] - vmin) / (vmax - vmin) : 0;
		if (gray)
			out->pixels[p] = heatmap_to_byte(t);
		else
			heatmap_cmap_rgb(st->colormap, t, out->pixels + 3 * p);
	}
	if (scale)
		*scale = (struct heatmap_scale){vmin, vmax, gray ? "gray" : heatmap_cmap_name(st->colormap),
		                                "absolute"};
	return 0;
}

/* ---- the overlay at the upload's resolution (heatmap.c draws it) ---- */

static void styled_color(const void *ctx, double t, uint8_t rgb[3])
{
	heatmap_cmap_rgb(*(const enum heatmap_cmap *)ctx, t, rgb);
}

int heatmap_render_overlay_full_styled(const float *attr, int size, const struct image *original,
                                       const struct image_geometry *geom,
                                       const struct heatmap_style *st, struct heatmap_image *out,
                                       struct heatmap_scale *scale, struct igs_error *err)
{
	memset(out, 0, sizeof *out);
	struct heatmap_scale sc_local, *sc = scale ? scale : &sc_local;
	struct heatmap_style def;
	if (!st) {
		heatmap_style_init(&def);
		st = &def;
	}
	size_t hw = (size_t)size * size;
	float *m = malloc(hw * sizeof *m);
	int rc = m ? pixel_t(attr, hw, st, m, sc, err)
	           : igs_fail(err, IGS_ERR_NOMEM, "heatmap: out of memory");
	enum heatmap_cmap cmap =
	    st->colormap == HEATMAP_CMAP_DEFAULT ? HEATMAP_CMAP_VIRIDIS : st->colormap;
	if (!rc)
		rc = heatmap_overlay_full_draw(m, size, original, geom, styled_color, &cmap, st->alpha,
		                               out, err);
	free(m);
	sc->colormap = heatmap_cmap_name(cmap);
	return rc;
}
