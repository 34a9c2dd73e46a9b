/*
 * test_heatmap_style.c - the heatmap controls (sign, clip, scale, vmin/vmax,
 * colormap, alpha) and the raw encodings against numpy:
 * tests/heatmap_reference.py recomputes every map from the README's
 * formulas, and igserve's PNG bytes, decoded by libpng, must match it, as
 * must the scales igserve reports.  Also: the default controls draw
 * heatmap_render's bytes exactly; float16 conversion known answers; the
 * option values refused, each naming its option.
 */
#include <check.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "heatmap.h"
#include "heatmap_style.h"
#include "npy.h"
#include "png_encode.h"
#include "request_options.h"

#define S 24
#define HW (S * S)
#define N (HW * 3)

static uint64_t rng = 777;
static double urand(void) /* [0, 1) */
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(rng >> 11) * 0x1.0p-53;
}

/* Mixed signs, a few outliers a percentile clips, and a zero patch. */
static void make_attr(float *a, float *input, int size)
{
	size_t n = (size_t)size * size * 3;
	for (size_t i = 0; i < n; i++) {
		double u = urand();
		a[i] = (float)((u - 0.45) * 2.0 * (u > 0.9 ? 4.0 : 1.0));
		input[i] = (float)(255.0 * urand());
	}
	a[5] = 30.0f;
	a[40] = -25.0f;
	for (int i = 300; i < 360 && (size_t)i < n; i++)
		a[i] = 0.0f;
}

static uint8_t *png_decode(const unsigned char *data, size_t len, int *w, int *h, int *channels)
{
	png_image img;
	memset(&img, 0, sizeof img);
	img.version = PNG_IMAGE_VERSION;
	ck_assert(png_image_begin_read_from_memory(&img, data, len));
	*channels = PNG_IMAGE_SAMPLE_CHANNELS(img.format);
	*w = (int)img.width;
	*h = (int)img.height;
	uint8_t *px = malloc(PNG_IMAGE_SIZE(img));
	ck_assert(png_image_finish_read(&img, NULL, px, 0, NULL));
	return px;
}

/* ================================================================ */
/* the default controls are heatmap_render                           */
/* ================================================================ */

static void assert_same_as_heatmap_render(int size)
{
	size_t n = (size_t)size * size * 3;
	float *a = malloc(n * sizeof *a), *in = malloc(n * sizeof *in);
	make_attr(a, in, size);
	struct heatmap_style st;
	heatmap_style_init(&st);
	int compared = 0;
	for (unsigned bit = 1; bit <= HEATMAP_ALL; bit <<= 1) {
		struct heatmap_image want, got;
		struct heatmap_scale sc;
		/* every map heatmap_render draws (not overlay_full, nor the styled-only ones) */
		if (bit == HEATMAP_OVERLAY_FULL ||
		    heatmap_render(bit, a, size, in, &want, NULL) != 0)
			continue;
		compared++;
		ck_assert_int_eq(heatmap_render_styled(bit, a, size, in, &st, &got, &sc, NULL), 0);
		ck_assert_int_eq(want.channels, got.channels);
		ck_assert_msg(!memcmp(want.pixels, got.pixels, n / 3 * want.channels),
		              "%s differs from heatmap_render at size %d", heatmap_name(bit), size);
		heatmap_image_clear(&want);
		heatmap_image_clear(&got);
	}
	ck_assert_int_ge(compared, 7);
	/* overlay_full over a 3:2 upload */
	struct image up = {.width = size * 3 / 2, .height = size};
	up.rgb = malloc((size_t)up.width * up.height * 3);
	for (size_t i = 0; i < (size_t)up.width * up.height * 3; i++)
		up.rgb[i] = (uint8_t)(urand() * 256);
	struct image_geometry geo = {up.width, up.height, size, 1.0, 1.0, -(size / 4.0), 0};
	struct heatmap_image want, got;
	ck_assert_int_eq(heatmap_render_overlay_full(a, size, &up, &geo, &want, NULL), 0);
	ck_assert_int_eq(
	    heatmap_render_overlay_full_styled(a, size, &up, &geo, &st, &got, NULL, NULL), 0);
	ck_assert(!memcmp(want.pixels, got.pixels, (size_t)up.width * up.height * 3));
	heatmap_image_clear(&want);
	heatmap_image_clear(&got);
	free(up.rgb);
	free(a);
	free(in);
}

START_TEST(test_default_is_heatmap_render)
{
	assert_same_as_heatmap_render(S);
	assert_same_as_heatmap_render(224);
}
END_TEST

/* ================================================================ */
/* every combination against numpy                                   */
/* ================================================================ */

struct style_case {
	const char *map, *sign, *clip, *scale, *vmin, *vmax, *colormap, *alpha; /* "-": not given */
};

/* and issue 15's channel_X_deviation where this build has them */
static const char *const maps[] = {
    "normalized",    "deviation",           "magnitude",           "overlay",
    "channel_r",     "channel_g",           "channel_b",           "masked_image",
    "alpha_scaling", "channel_r_deviation", "channel_g_deviation", "channel_b_deviation"};
static const char *const signs[] = {"-", "positive", "negative", "absolute", "all"};
static const char *const cmaps[] = {"-", "viridis", "inferno", "gray", "rdbu"};
/* scale variants: {clip, scale, vmin, vmax} */
static const char *const scales[][4] = {
    {"-", "-", "-", "-"},    {"90", "image", "-", "-"}, {"-", "fixed", "-", "1.5"},
    {"-", "-", "-0.5", "2"}, {"100", "-", "-", "-"},
};

#define MAX_CASES 2000

static int make_cases(struct style_case *c)
{
	int n = 0;
	for (size_t m = 0; m < sizeof maps / sizeof *maps; m++) {
		if (!heatmap_bit(maps[m], strlen(maps[m])))
			continue;
		/* refused: no negative brightness or opacity */
		bool no_all = !strcmp(maps[m], "masked_image") || !strcmp(maps[m], "alpha_scaling");
		for (size_t s = 0; s < sizeof signs / sizeof *signs; s++)
			for (size_t k = 0; k < sizeof scales / sizeof *scales &&
			                   !(no_all && !strcmp(signs[s], "all"));
			     k++)
				for (size_t cm = 0; cm < sizeof cmaps / sizeof *cmaps; cm++)
					c[n++] = (struct style_case){
					    maps[m],      signs[s],     scales[k][0], scales[k][1],
					    scales[k][2], scales[k][3], cmaps[cm],    "-"};
	}
	/* constant opacity on the overlay */
	for (size_t s = 0; s < sizeof signs / sizeof *signs; s++)
		for (size_t cm = 0; cm < sizeof cmaps / sizeof *cmaps; cm++)
			for (int k = 0; k < 2; k++)
				c[n++] = (struct style_case){
				    "overlay", signs[s],        "-",       k ? "fixed" : "-",
				    "-",       k ? "0.8" : "-", cmaps[cm], k ? "1" : "0.35"};
	ck_assert_int_le(n, MAX_CASES);
	return n;
}

/* The style a request with these options gets (through request_options). */
static void style_of(const struct style_case *c, struct heatmap_style *st)
{
	struct request_options o;
	request_options_init(&o);
	struct igs_error err = {0};
	const char *names[] = {"sign", "clip", "scale", "vmin", "vmax", "colormap", "alpha"};
	const char *values[] = {c->sign, c->clip,     c->scale, c->vmin,
	                        c->vmax, c->colormap, c->alpha};
	for (int i = 0; i < 7; i++)
		if (strcmp(values[i], "-"))
			ck_assert_msg(request_options_set(&o, names[i], values[i], 0, &err) == 0,
			              "%s=%s: %s", names[i], values[i], err.message);
	ck_assert_msg(request_options_check_heatmaps(&o, &err) == 0, "%s", err.message);
	request_options_heatmap_style(&o, st);
}

static char *path_in(const char *dir, const char *name)
{
	static char buf[4][4096];
	static int k;
	char *p = buf[k++ % 4];
	snprintf(p, 4096, "%s/%s", dir, name);
	return p;
}

static void write_raw_encodings(const char *dir, const float *a)
{
	const char *names[] = {"f32.npy", "f16.npy", "map.npy"};
	enum npy_format f[] = {NPY_FORMAT_F32, NPY_FORMAT_F16, NPY_FORMAT_MAP};
	for (int i = 0; i < 3; i++) {
		unsigned char *bytes;
		size_t len;
		ck_assert_int_eq(npy_encode_attributions(a, S, f[i], &bytes, &len, NULL), 0);
		FILE *fp = fopen(path_in(dir, names[i]), "wb");
		ck_assert(fp && fwrite(bytes, 1, len, fp) == len);
		fclose(fp);
		free(bytes);
	}
}

START_TEST(test_against_numpy)
{
	const char *script = getenv("IGSERVE_HEATMAP_REFERENCE");
	ck_assert_msg(script != NULL, "IGSERVE_HEATMAP_REFERENCE (tests/meson.build) is not set");
	char dir[] = "/tmp/igs-heatmap-style-XXXXXX";
	ck_assert(mkdtemp(dir) != NULL);
	float a[N], in[N];
	make_attr(a, in, S);
	const size_t shape[3] = {S, S, 3};
	ck_assert_int_eq(npy_write_f32(path_in(dir, "attr.npy"), a, shape, 3, NULL), 0);
	ck_assert_int_eq(npy_write_f32(path_in(dir, "input.npy"), in, shape, 3, NULL), 0);
	write_raw_encodings(dir, a);

	static struct style_case cases[MAX_CASES];
	int n = make_cases(cases);
	FILE *fp = fopen(path_in(dir, "cases.txt"), "w");
	ck_assert(fp != NULL);
	for (int i = 0; i < n; i++)
		fprintf(fp, "%d %s %s %s %s %s %s %s %s\n", i, cases[i].map, cases[i].sign,
		        cases[i].clip, cases[i].scale, cases[i].vmin, cases[i].vmax,
		        cases[i].colormap, cases[i].alpha);
	fclose(fp);
	char cmd[8192];
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", script, dir);
	ck_assert_msg(system(cmd) == 0,
	              "%s failed (needs /usr/bin/python3 with numpy: "
	              "scripts/install-deps)",
	              cmd);

	FILE *sf = fopen(path_in(dir, "scales.txt"), "r");
	ck_assert(sf != NULL);
	long total_bytes = 0, off_by_one = 0;
	for (int i = 0; i < n; i++) {
		int id, channels;
		double vmin, vmax;
		char cmap[32], sign[32];
		ck_assert_int_eq(
		    fscanf(sf, "%d %d %lf %lf %31s %31s", &id, &channels, &vmin, &vmax, cmap, sign),
		    6);
		ck_assert_int_eq(id, i);
		const struct style_case *c = &cases[i];
		struct heatmap_style st;
		style_of(c, &st);
		struct heatmap_image im;
		struct heatmap_scale sc;
		unsigned bit = heatmap_bit(c->map, strlen(c->map));
		ck_assert_int_eq(heatmap_render_styled(bit, a, S, in, &st, &im, &sc, NULL), 0);
		/* the PNG igserve answers, read back by libpng */
		unsigned char *png;
		size_t len;
		ck_assert_int_eq(
		    png_encode(im.pixels, im.width, im.height, im.channels, &png, &len, NULL), 0);
		int w, h, ch;
		uint8_t *got = png_decode(png, len, &w, &h, &ch);
		char what[256];
		snprintf(what, sizeof what,
		         "case %d: %s sign=%s clip=%s scale=%s vmin=%s vmax=%s "
		         "colormap=%s alpha=%s",
		         i, c->map, c->sign, c->clip, c->scale, c->vmin, c->vmax, c->colormap,
		         c->alpha);
		ck_assert_msg(w == S && h == S && ch == channels,
		              "%s: %dx%dx%d, numpy has %d channels", what, w, h, ch, channels);
		size_t nb = (size_t)HW * ch;
		uint8_t *want = malloc(nb);
		char name[64];
		snprintf(name, sizeof name, "expected_%d.bin", i);
		FILE *ef = fopen(path_in(dir, name), "rb");
		ck_assert(ef && fread(want, 1, nb, ef) == nb);
		fclose(ef);
		for (size_t k = 0; k < nb; k++) {
			int d = abs((int)got[k] - (int)want[k]);
			/* float32 sums and percentiles against float64 may round a
			 * value on a byte boundary the other way, never further */
			ck_assert_msg(d <= 1, "%s: byte %zu is %d, numpy %d", what, k, got[k],
			              want[k]);
			off_by_one += d;
		}
		total_bytes += (long)nb;
		/* the scale reported, in attribution units */
		double tol = 1e-5 * (1 + fabs(vmax) + fabs(vmin));
		ck_assert_msg(fabs(sc.vmin - vmin) <= tol && fabs(sc.vmax - vmax) <= tol,
		              "%s: scale [%g, %g], numpy [%g, %g]", what, sc.vmin, sc.vmax, vmin,
		              vmax);
		ck_assert_msg(!strcmp(sc.colormap, cmap) && !strcmp(sc.sign, sign),
		              "%s: %s/%s, numpy %s/%s", what, sc.colormap, sc.sign, cmap, sign);
		if (strcmp(c->vmax, "-"))
			ck_assert_msg(sc.vmax == atof(c->vmax), "%s: vmax %.17g reported", what,
			              sc.vmax);
		free(want);
		free(got);
		free(png);
		heatmap_image_clear(&im);
	}
	fclose(sf);
	fprintf(stderr, "%d cases, %ld bytes, %ld off by one\n", n, total_bytes, off_by_one);
	/* off-by-one bytes are rare, not the rule */
	ck_assert_msg(off_by_one * 1000 <= total_bytes, "%ld of %ld bytes off by one", off_by_one,
	              total_bytes);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* ================================================================ */
/* scales that must hold whatever the data                           */
/* ================================================================ */

START_TEST(test_scale_properties)
{
	float a[N], in[N];
	make_attr(a, in, S);
	struct heatmap_style st;
	heatmap_style_init(&st);
	struct heatmap_image im;
	struct heatmap_scale sc;
	/* signed sums: the scale is centered at 0, rdbu's white */
	st.sign = HEATMAP_SIGN_ALL;
	st.colormap = HEATMAP_CMAP_RDBU;
	ck_assert_int_eq(heatmap_render_styled(HEATMAP_MAGNITUDE, a, S, in, &st, &im, &sc, NULL),
	                 0);
	ck_assert(sc.vmax > 0 && sc.vmin == -sc.vmax);
	ck_assert_int_eq(im.channels, 3);
	for (int p = 0; p < HW; p++)
		if (a[3 * p] + a[3 * p + 1] + a[3 * p + 2] == 0.0f) /* the zero patch is white */
			ck_assert(im.pixels[3 * p] == 0xf7 && im.pixels[3 * p + 1] == 0xf7 &&
			          im.pixels[3 * p + 2] == 0xf7);
	heatmap_image_clear(&im);
	/* the same vmax on two images: the same value draws the same byte */
	heatmap_style_init(&st);
	st.fixed = st.vmax_given = true;
	st.vmax = 2.0;
	float b[N];
	for (int i = 0; i < N; i++)
		b[i] = a[i] * (i % 7 == 0 ? 3.0f : 1.0f);
	struct heatmap_image ia, ib;
	ck_assert_int_eq(heatmap_render_styled(HEATMAP_MAGNITUDE, a, S, in, &st, &ia, &sc, NULL),
	                 0);
	ck_assert(sc.vmin == 0 && sc.vmax == 2.0);
	ck_assert_int_eq(heatmap_render_styled(HEATMAP_MAGNITUDE, b, S, in, &st, &ib, &sc, NULL),
	                 0);
	int same = 0;
	for (int p = 0; p < HW; p++)
		if (fabsf(a[3 * p]) + fabsf(a[3 * p + 1]) + fabsf(a[3 * p + 2]) ==
		    fabsf(b[3 * p]) + fabsf(b[3 * p + 1]) + fabsf(b[3 * p + 2])) {
			ck_assert_int_eq(ia.pixels[p], ib.pixels[p]);
			same++;
		}
	ck_assert_int_gt(same, 10);
	heatmap_image_clear(&ia);
	heatmap_image_clear(&ib);
	/* masked_image at sign=negative is black where nothing is negative */
	st = (struct heatmap_style){.sign = HEATMAP_SIGN_NEGATIVE, .alpha = -1};
	ck_assert_int_eq(heatmap_render_styled(HEATMAP_MASKED_IMAGE, a, S, in, &st, &im, &sc, NULL),
	                 0);
	for (int p = 0; p < HW; p++)
		if (a[3 * p] >= 0 && a[3 * p + 1] >= 0 && a[3 * p + 2] >= 0)
			ck_assert(!im.pixels[3 * p] && !im.pixels[3 * p + 1] &&
			          !im.pixels[3 * p + 2]);
	heatmap_image_clear(&im);
	/* the overlays need the input */
	ck_assert_int_ne(
	    heatmap_render_styled(HEATMAP_ALPHA_SCALING, a, S, NULL, &st, &im, &sc, NULL), 0);
	/* no negative brightness or opacity (as Captum) */
	st.sign = HEATMAP_SIGN_ALL;
	ck_assert_int_eq(heatmap_render_styled(HEATMAP_MASKED_IMAGE, a, S, in, &st, &im, &sc, NULL),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(
	    heatmap_render_styled(HEATMAP_ALPHA_SCALING, a, S, in, &st, &im, &sc, NULL),
	    IGS_ERR_BAD_OPTION);
}
END_TEST

/* ================================================================ */
/* float16                                                           */
/* ================================================================ */

START_TEST(test_half_known_answers)
{
	const struct {
		float f;
		uint16_t h;
	} known[] = {
	    {0.0f, 0x0000},
	    {-0.0f, 0x8000},
	    {1.0f, 0x3c00},
	    {-2.0f, 0xc000},
	    {65504.0f, 0x7bff}, /* the largest half */
	    {65519.0f, 0x7bff}, /* below the midpoint to infinity */
	    {65520.0f, 0x7c00}, /* the midpoint: to even, infinity */
	    {1e10f, 0x7c00},
	    {0x1.0p-14f, 0x0400},        /* the smallest normal */
	    {0x1.0p-24f, 0x0001},        /* the smallest subnormal */
	    {0x1.0p-25f, 0x0000},        /* half of it: to even, zero */
	    {0x1.8p-25f, 0x0001},        /* above half: up */
	    {0x1.8p-24f, 0x0002},        /* 1.5 units: to even, 2 */
	    {1.0f + 0x1.0p-11f, 0x3c00}, /* tie: to even (down) */
	    {1.0f + 0x1.8p-10f, 0x3c02}, /* tie: to even (up) */
	    {1.0f + 0x1.0p-10f, 0x3c01},
	    {0x1.ffcp-15f, 0x0400}, /* the largest subnormal rounds up to normal */
	    {0.333333343f, 0x3555},
	};
	for (size_t i = 0; i < sizeof known / sizeof *known; i++)
		ck_assert_msg(npy_half_from_float(known[i].f) == known[i].h, "%a -> %#x, want %#x",
		              known[i].f, npy_half_from_float(known[i].f), known[i].h);
	uint16_t nan = npy_half_from_float(NAN);
	ck_assert((nan & 0x7c00) == 0x7c00 && (nan & 0x3ff) != 0);
	ck_assert_int_eq(npy_half_from_float(-INFINITY), 0xfc00);

	/* the .npy: header says <f2 and [H, W, 3]; the map is [H, W] */
	float a[12] = {1, 2, 3, -1, 0.5f, 0.25f, 4, 5, 6, 7, 8, 9};
	unsigned char *b;
	size_t len;
	ck_assert_int_eq(npy_encode_attributions(a, 2, NPY_FORMAT_F16, &b, &len, NULL), 0);
	ck_assert_uint_eq(len, 128 + 12 * 2);
	ck_assert(strstr((char *)b + 10, "'descr': '<f2'") && strstr((char *)b + 10, "(2, 2, 3)"));
	ck_assert(b[128] == 0x00 && b[129] == 0x3c); /* 1.0 little-endian */
	free(b);
	ck_assert_int_eq(npy_encode_attributions(a, 2, NPY_FORMAT_MAP, &b, &len, NULL), 0);
	ck_assert_uint_eq(len, 128 + 4 * 4);
	ck_assert(strstr((char *)b + 10, "'descr': '<f4'") && strstr((char *)b + 10, "(2, 2)"));
	float m[4];
	memcpy(m, b + 128, sizeof m); /* (the test hosts are little-endian) */
	ck_assert(m[0] == 6.0f && m[1] == -0.25f && m[2] == 15.0f && m[3] == 24.0f);
	free(b);
}
END_TEST

/* ================================================================ */
/* values refused                                                    */
/* ================================================================ */

START_TEST(test_bad_values)
{
	const struct {
		const char *name, *value, *says;
	} bad[] = {
	    {"sign", "foo", "sign"},    {"sign", "", "sign"},      {"colormap", "jet", "colormap"},
	    {"scale", "log", "scale"},  {"clip", "0", "clip"},     {"clip", "100.5", "clip"},
	    {"clip", "-3", "clip"},     {"clip", "x", "clip"},     {"alpha", "1.5", "alpha"},
	    {"alpha", "-0.1", "alpha"}, {"alpha", "nan", "alpha"}, {"vmax", "inf", "vmax"},
	    {"vmin", "abc", "vmin"},    {"raw", "npy32", "raw"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct request_options o;
		request_options_init(&o);
		struct igs_error err = {0};
		ck_assert_int_eq(request_options_set(&o, bad[i].name, bad[i].value, 0, &err),
		                 IGS_ERR_BAD_OPTION);
		ck_assert_msg(strstr(err.message, bad[i].says), "%s=%s: '%s'", bad[i].name,
		              bad[i].value, err.message);
	}
	/* contradictions: seen once every option is set */
	const struct {
		const char *opts[6];
		const char *says;
	} contra[] = {
	    {{"vmin", "1", "vmax", "0.5"}, "vmin"},
	    {{"vmin", "1", "vmax", "1"}, "vmin"},
	    {{"scale", "fixed"}, "vmax"},
	    {{"vmin", "-1"}, "vmin"},
	    {{"vmax", "-1"}, "vmax"},
	    {{"scale", "image", "vmax", "2"}, "scale"},
	    {{"sign", "all", "heatmaps", "masked_image"}, "sign=all"},
	    {{"heatmaps", "all", "sign", "all"}, "alpha_scaling"},
	};
	for (size_t i = 0; i < sizeof contra / sizeof *contra; i++) {
		struct request_options o;
		request_options_init(&o);
		struct igs_error err = {0};
		for (int k = 0; k < 6 && contra[i].opts[k]; k += 2)
			ck_assert_int_eq(request_options_set(&o, contra[i].opts[k],
			                                     contra[i].opts[k + 1], 0, &err),
			                 0);
		ck_assert_int_eq(request_options_check_heatmaps(&o, &err), IGS_ERR_BAD_OPTION);
		ck_assert_msg(strstr(err.message, contra[i].says), "case %zu: '%s'", i,
		              err.message);
	}
	/* and the good ones pass */
	struct request_options o;
	request_options_init(&o);
	struct igs_error err = {0};
	ck_assert_int_eq(request_options_check_heatmaps(&o, &err), 0);
	ck_assert_int_eq(request_options_set(&o, "vmax", "0.25", 0, &err), 0);
	ck_assert_int_eq(request_options_check_heatmaps(&o, &err), 0);
	ck_assert_int_eq(request_options_set(&o, "raw", "npy16", 0, &err), 0);
	ck_assert(o.raw_npy && o.raw_format == NPY_FORMAT_F16);
	ck_assert_int_eq(request_options_set(&o, "raw", "map", 0, &err), 0);
	ck_assert(o.raw_npy && o.raw_format == NPY_FORMAT_MAP);
	ck_assert_int_eq(request_options_set(&o, "raw", "none", 0, &err), 0);
	ck_assert(!o.raw_npy);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("heatmap_style");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_default_is_heatmap_render);
	tcase_add_test(tc, test_against_numpy);
	tcase_add_test(tc, test_scale_properties);
	tcase_add_test(tc, test_half_known_answers);
	tcase_add_test(tc, test_bad_values);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
