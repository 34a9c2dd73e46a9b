/*
 * image_resize.c - fit a decoded image to the model's square input.
 *
 * Resampling is separable, one axis at a time, with float intermediates, as
 * OpenCV does it for the original notebook's letterbox:
 *   - shrinking an axis: area averaging (a box filter with exact fractional
 *     coverage of the source pixels, OpenCV's INTER_AREA);
 *   - enlarging an axis: Keys cubic convolution with a = -0.75 (OpenCV's
 *     INTER_CUBIC; PIL uses -0.5), edge pixels repeated;
 *   - same size: copied.
 * Pixel centers are aligned: destination pixel i samples the source at
 * (i + 0.5) * src/dst - 0.5.  Results are rounded to nearest and clamped.
 *
 * image_fit places the result in a size x size square (letterbox, center
 * crop or stretch) and records the mapping back to the source pixels.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

#define CUBIC_A (-0.75)
#define LETTERBOX_GRAY 127
#define MAX_SIDE 65535 /* largest output side: keeps every size far from overflow */

/* ---- mode names ----------------------------------------------------------------------------- */

static const char *const mode_names[] = {
    [RESIZE_LETTERBOX] = "letterbox",
    [RESIZE_CENTER_CROP] = "center-crop",
    [RESIZE_STRETCH] = "stretch",
};

int image_resize_mode_parse(const char *name)
{
	if (name == NULL)
		return -1;
	for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (strcmp(name, mode_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *image_resize_mode_name(enum resize_mode mode)
{
	if ((unsigned)mode < sizeof(mode_names) / sizeof(mode_names[0]))
		return mode_names[mode];
	return "unknown";
}

/* ---- filter tables -------------------------------------------------------------------------- */

/*
 * One axis: destination pixel i is
 *   sum_{t < count[i]} wt[off[i] + t] * src[start[i] + t],
 * a contiguous run of source pixels (edge taps of the cubic are merged into
 * the edge pixel).  Shrinking 40 megapixels to 224 keeps the table at about
 * src + 2*dst weights, not dst * (src/dst + 1) padded taps.
 */
struct axis {
	int *start, *count;
	size_t *off;
	float *wt;
};

static void axis_free(struct axis *ax)
{
	free(ax->start);
	free(ax->count);
	free(ax->off);
	free(ax->wt);
}

/* Keys (1981) cubic convolution kernel, a = CUBIC_A. */
static double cubic(double x)
{
	const double a = CUBIC_A;
	x = fabs(x);
	if (x <= 1.0)
		return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
	if (x < 2.0)
		return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
	return 0.0;
}

static int clampi(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/*
 * axis_init - weights mapping `src` pixels to destination pixels
 * [first, first + n) of an axis resized to `full` pixels.  Fills `ax`
 * (free with axis_free); 0 or IGS_ERR_NOMEM.
 */
static int axis_init(struct axis *ax, int src, int full, int first, int n, struct igs_error *err)
{
	double inv = (double)src / full; /* source pixels per destination pixel */
	/* Area: the windows cover n*inv source pixels, plus one partial pixel at
	 * each end of each window. */
	size_t cap = full < src ? (size_t)ceil(n * inv) + 2 * (size_t)n + 2 : 4 * (size_t)n;

	ax->start = malloc((size_t)n * sizeof(*ax->start));
	ax->count = malloc((size_t)n * sizeof(*ax->count));
	ax->off = malloc((size_t)n * sizeof(*ax->off));
	ax->wt = calloc(cap, sizeof(*ax->wt));
	if (!ax->start || !ax->count || !ax->off || !ax->wt) {
		axis_free(ax);
		memset(ax, 0, sizeof(*ax));
		return igs_fail(err, IGS_ERR_NOMEM, "resize: no memory for a %d->%d filter", src,
		                full);
	}
	size_t used = 0;
	for (int k = 0; k < n; k++) {
		int i = first + k;
		float *wt = ax->wt + used;
		double sum = 0.0;
		int cnt;

		if (full == src) {
			ax->start[k] = clampi(i, 0, src - 1);
			wt[0] = 1.0f;
			cnt = 1;
			sum = 1.0;
		} else if (full < src) {
			/* Box [i*inv, (i+1)*inv) in source pixel units; source pixel s
			 * covers [s, s+1) and weighs its overlap. */
			double lo = i * inv, hi = (i + 1) * inv;
			int s0 = clampi((int)floor(lo), 0, src - 1);
			cnt = 0;
			for (int s = s0; s < src && s < hi && used + cnt < cap; s++, cnt++) {
				double ov = fmin(hi, s + 1.0) - fmax(lo, (double)s);
				wt[cnt] = (float)(ov > 0.0 ? ov : 0.0);
				sum += wt[cnt];
			}
			ax->start[k] = s0;
		} else {
			/* Pixel centers aligned: dst center i+0.5 is src center x+0.5. */
			double x = (i + 0.5) * inv - 0.5;
			int x0 = (int)floor(x);
			double f = x - x0;
			int lo = clampi(x0 - 1, 0, src - 1);
			cnt = clampi(x0 + 2, 0, src - 1) - lo + 1;
			for (int t = 0; t < 4; t++) {
				double w = cubic(f - (t - 1));
				wt[clampi(x0 - 1 + t, 0, src - 1) - lo] += (float)w;
				sum += w;
			}
			ax->start[k] = lo;
		}
		/* Normalize so that a constant row stays exactly constant. */
		for (int t = 0; t < cnt; t++)
			wt[t] = (float)(wt[t] / sum);
		ax->count[k] = cnt;
		ax->off[k] = used;
		used += (size_t)cnt;
	}
	return 0;
}

/* ---- resampling ----------------------------------------------------------------------------- */

/*
 * resample_row - horizontal pass of one source row: sw RGB bytes to dw RGB
 * floats.
 */
static void resample_row(float *restrict out, const uint8_t *restrict row, int dw,
                         const struct axis *ax)
{
	for (int x = 0; x < dw; x++) {
		const uint8_t *p = row + (size_t)ax->start[x] * 3;
		const float *wt = ax->wt + ax->off[x];
		float r = 0.0f, g = 0.0f, b = 0.0f;
		for (int t = 0; t < ax->count[x]; t++) {
			r += wt[t] * p[3 * t + 0];
			g += wt[t] * p[3 * t + 1];
			b += wt[t] * p[3 * t + 2];
		}
		out[3 * x + 0] = r;
		out[3 * x + 1] = g;
		out[3 * x + 2] = b;
	}
}

static uint8_t to_byte(float v)
{
	v = floorf(v + 0.5f);
	return (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
}

size_t image_resize_scratch_bytes(int w, int h)
{
	return ((size_t)h + 1) * (size_t)w * 3 * sizeof(float);
}

/*
 * resize_region - the w x h window at (x0, y0) of `in` resized to
 * full_w x full_h, into out->rgb (allocated here, owned by the caller).
 *
 * Source rows are streamed: each row the window needs is resampled
 * horizontally once into `row`, then added, with its vertical weight, to the
 * float accumulator of every output row it contributes to.  The output rows'
 * source runs are contiguous and move forward with the row (both ends
 * nondecreasing), so the rows a source row feeds are a contiguous range
 * starting at the first unfinished one.  Each accumulator sums its terms in
 * the order of its source rows, exactly as a vertical pass over a full
 * (source height x w) float intermediate would, so the bytes are the same;
 * but the scratch memory is (h + 1) x w floats (image_resize_scratch_bytes),
 * whatever the source height: a 40 x 1,000,000 image no longer needs 2.7 GB.
 */
static int resize_region(struct image *out, const struct image *in, int full_w, int full_h, int x0,
                         int y0, int w, int h, struct igs_error *err)
{
	struct axis ax = {0}, ay = {0};
	float *acc = NULL, *row = NULL;
	size_t stride = (size_t)w * 3;
	int rc;

	out->width = out->height = 0;
	out->rgb = NULL;
	rc = axis_init(&ax, in->width, full_w, x0, w, err);
	if (rc < 0)
		return rc;
	rc = axis_init(&ay, in->height, full_h, y0, h, err);
	if (rc < 0)
		goto done;
	acc = calloc((size_t)h * stride, sizeof(*acc));
	row = malloc(stride * sizeof(*row));
	out->rgb = malloc(stride * h);
	if (acc == NULL || row == NULL || out->rgb == NULL) {
		free(out->rgb);
		out->rgb = NULL;
		rc = igs_fail(err, IGS_ERR_NOMEM, "resize: no memory for %dx%d", w, h);
		goto done;
	}
	int first = ay.start[0], last = ay.start[h - 1] + ay.count[h - 1]; /* source rows used */
	int done_rows = 0; /* output rows [0, done_rows) are finished */
	for (int s = first; s < last; s++) {
		/* Output rows whose run ended before s are complete. */
		for (; done_rows < h && ay.start[done_rows] + ay.count[done_rows] <= s; done_rows++)
			for (size_t c = 0; c < stride; c++)
				out->rgb[(size_t)done_rows * stride + c] =
				    to_byte(acc[(size_t)done_rows * stride + c]);
		resample_row(row, in->rgb + (size_t)s * in->width * 3, w, &ax);
		for (int y = done_rows; y < h && ay.start[y] <= s; y++) {
			float wt = ay.wt[ay.off[y] + (size_t)(s - ay.start[y])];
			float *a = acc + (size_t)y * stride;
			for (size_t c = 0; c < stride; c++)
				a[c] += wt * row[c];
		}
	}
	for (; done_rows < h; done_rows++)
		for (size_t c = 0; c < stride; c++)
			out->rgb[(size_t)done_rows * stride + c] =
			    to_byte(acc[(size_t)done_rows * stride + c]);
	out->width = w;
	out->height = h;
	rc = 0;
done:
	free(acc);
	free(row);
	axis_free(&ax);
	axis_free(&ay);
	return rc;
}

static int valid_image(const struct image *in)
{
	return in != NULL && in->rgb != NULL && in->width > 0 && in->height > 0;
}

int image_resize(struct image *out, const struct image *in, int w, int h, struct igs_error *err)
{
	out->width = out->height = 0;
	out->rgb = NULL;
	if (!valid_image(in))
		return igs_fail(err, IGS_ERR_INTERNAL, "resize: invalid source image");
	if (w <= 0 || h <= 0 || w > MAX_SIDE || h > MAX_SIDE)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "resize: target size %dx%d must be 1..%d",
		                w, h, MAX_SIDE);
	return resize_region(out, in, w, h, 0, 0, w, h, err);
}

/* ---- fitting to the model input ------------------------------------------------------------- */

static int round_side(double v, int max)
{
	long r = lround(v);
	return r < 1 ? 1 : r > max ? max : (int)r;
}

int image_fit(struct image *out, const struct image *in, int size, enum resize_mode mode,
              struct image_geometry *geom, struct igs_error *err)
{
	struct image_geometry g;
	int rc;

	out->width = out->height = 0;
	out->rgb = NULL;
	if (!valid_image(in))
		return igs_fail(err, IGS_ERR_INTERNAL, "fit: invalid source image");
	if (size <= 0 || size > 4096)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "fit: input size %d must be 1..4096",
		                size);
	if ((unsigned)mode > RESIZE_STRETCH)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "fit: unknown resize mode %d", (int)mode);

	g.src_width = in->width;
	g.src_height = in->height;
	g.size = size;
	if (in->width == size && in->height == size) {
		/* The contract: an image of the input size is used pixel for pixel. */
		out->rgb = malloc((size_t)size * size * 3);
		if (out->rgb == NULL)
			return igs_fail(err, IGS_ERR_NOMEM, "fit: no memory for %dx%d", size, size);
		memcpy(out->rgb, in->rgb, (size_t)size * size * 3);
		out->width = out->height = size;
		g.scale_x = g.scale_y = 1.0;
		g.offset_x = g.offset_y = 0.0;
	} else if (mode == RESIZE_LETTERBOX) {
		struct image tmp;
		double s = (double)size / (in->width > in->height ? in->width : in->height);
		int nw = round_side(in->width * s, size), nh = round_side(in->height * s, size);
		int ox = (size - nw) / 2, oy = (size - nh) / 2;

		rc = image_resize(&tmp, in, nw, nh, err);
		if (rc < 0)
			return rc;
		out->rgb = malloc((size_t)size * size * 3);
		if (out->rgb == NULL) {
			image_clear(&tmp);
			return igs_fail(err, IGS_ERR_NOMEM, "fit: no memory for %dx%d", size, size);
		}
		out->width = out->height = size;
		memset(out->rgb, LETTERBOX_GRAY, (size_t)size * size * 3);
		for (int y = 0; y < nh; y++)
			memcpy(out->rgb + ((size_t)(oy + y) * size + ox) * 3,
			       tmp.rgb + (size_t)y * nw * 3, (size_t)nw * 3);
		image_clear(&tmp);
		/* The scale actually applied per axis, after rounding the sides. */
		g.scale_x = (double)nw / in->width;
		g.scale_y = (double)nh / in->height;
		g.offset_x = ox;
		g.offset_y = oy;
	} else if (mode == RESIZE_CENTER_CROP) {
		/*
		 * torchvision Resize(size*256/224) + CenterCrop(size): the shorter side
		 * becomes `target`, the longer int(target * long / short), and the crop
		 * starts at round((side - size) / 2), Python's round (half to even, as
		 * rint).  Only the cropped window is computed.
		 */
		int target = (int)lround(size * 256.0 / 224.0);
		double nw = target, nh = target;
		if (in->width <= in->height)
			nh = floor((double)target * in->height / in->width);
		else
			nw = floor((double)target * in->width / in->height);
		if (nw > (1 << 28) || nh > (1 << 28))
			return igs_fail(err, IGS_ERR_IMAGE_TOO_LARGE,
			                "fit: a %dx%d image is too elongated to center-crop",
			                in->width, in->height);
		int cx = (int)rint((nw - size) / 2.0), cy = (int)rint((nh - size) / 2.0);
		rc = resize_region(out, in, (int)nw, (int)nh, cx, cy, size, size, err);
		if (rc < 0)
			return rc;
		g.scale_x = nw / in->width;
		g.scale_y = nh / in->height;
		g.offset_x = -cx;
		g.offset_y = -cy;
	} else {
		rc = image_resize(out, in, size, size, err);
		if (rc < 0)
			return rc;
		g.scale_x = (double)size / in->width;
		g.scale_y = (double)size / in->height;
		g.offset_x = g.offset_y = 0.0;
	}
	if (geom != NULL)
		*geom = g;
	return 0;
}
