/*
 * test_http_maps.c - the heatmap controls and raw encodings end to end:
 * heatmap_scales in /attribute answers (the magnitude's vmax recomputed
 * from the answer's own attributions, scale=fixed reporting its vmax),
 * raw=npy16 and raw=map against raw=npy, refused values as 400s naming the
 * option, and the CLI's --raw-format.
 */
#include <check.h>
#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base64.h"
#include "http_harness.h"

static struct server_proc srv;

static void up(void)
{
	static const char *const extra[] = {"--workers", "1", NULL};
	server_spawn(&srv, extra);
}

static void down(void)
{
	ck_assert_int_eq(server_terminate(&srv, 30), 0);
	unlink(srv.log_path);
}

static unsigned char *png_bytes;
static size_t png_len;

/* POST the test image to /attribute?QUERY; the parsed 200 answer. */
static cJSON *attribute(const char *query)
{
	if (!png_bytes)
		png_bytes = make_png(48, 40, 9, &png_len);
	char path[1024];
	snprintf(path, sizeof path, "/attribute?steps=4&%s", query);
	struct request q = {.path = path, .image = png_bytes, .image_len = png_len};
	struct reply r;
	http(srv.port, &q, &r);
	ck_assert_msg(r.status == 200, "%s: status %ld: %s", query, r.status, r.body);
	cJSON *doc = cJSON_Parse(r.body);
	ck_assert(doc != NULL);
	reply_free(&r);
	return doc;
}

/* The .npy in the answer: its header text and the data's offset. */
struct npy {
	unsigned char *bytes;
	size_t len, data;
	char header[256];
};

static void npy_of(cJSON *doc, struct npy *n)
{
	cJSON *v = cJSON_GetObjectItem(doc, "attributions_npy");
	ck_assert(cJSON_IsString(v));
	size_t slen = strlen(v->valuestring);
	n->bytes = malloc(slen);
	ck_assert_int_eq(base64_decode(v->valuestring, slen, n->bytes, &n->len), 0);
	ck_assert(n->len > 10 && !memcmp(n->bytes, "\x93NUMPY\x01\x00", 8));
	size_t hlen = n->bytes[8] | (size_t)n->bytes[9] << 8;
	n->data = 10 + hlen;
	ck_assert(hlen < sizeof n->header && n->data % 64 == 0);
	memcpy(n->header, n->bytes + 10, hlen);
	n->header[hlen] = 0;
}

/* IEEE binary16 to double, from the definition. */
static double half_value(uint16_t h)
{
	int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	double v = e == 0 ? ldexp(m, -24) : e == 31 ? INFINITY : ldexp(1024 + m, e - 25);
	return h & 0x8000 ? -v : v;
}

static float f32_at(const struct npy *n, size_t i)
{
	float f;
	memcpy(&f, n->bytes + n->data + 4 * i, 4); /* little-endian hosts */
	return f;
}

static cJSON *scale_of(cJSON *doc, const char *map)
{
	cJSON *s = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "heatmap_scales"), map);
	ck_assert_msg(cJSON_IsObject(s), "no heatmap_scales.%s", map);
	return s;
}

static double num(cJSON *o, const char *k)
{
	cJSON *v = cJSON_GetObjectItem(o, k);
	ck_assert_msg(cJSON_IsNumber(v), "%s is not a number", k);
	return v->valuedouble;
}

static const char *str(cJSON *o, const char *k)
{
	cJSON *v = cJSON_GetObjectItem(o, k);
	ck_assert_msg(cJSON_IsString(v), "%s is not a string", k);
	return v->valuestring;
}

static int cmpf(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

START_TEST(test_scales_and_encodings)
{
	cJSON *d32 = attribute("heatmaps=magnitude,overlay,normalized,masked_image,alpha_scaling"
	                       "&raw=npy");
	struct npy n32;
	npy_of(d32, &n32);
	ck_assert_msg(strstr(n32.header, "'<f4'"), "%s", n32.header);
	int size = atoi(strchr(n32.header, '(') + 1);
	ck_assert_int_gt(size, 0);
	size_t hw = (size_t)size * size;
	ck_assert_uint_eq(n32.len, n32.data + hw * 3 * 4);

	/* magnitude: [0, the 99th percentile of sum_c |a_c|] (NumPy's linear rule) */
	float *m = malloc(hw * sizeof *m);
	float lo = INFINITY, hi = -INFINITY;
	for (size_t p = 0; p < hw; p++) {
		m[p] = fabsf(f32_at(&n32, 3 * p)) + fabsf(f32_at(&n32, 3 * p + 1)) +
		       fabsf(f32_at(&n32, 3 * p + 2));
		for (int c = 0; c < 3; c++) {
			lo = fminf(lo, f32_at(&n32, 3 * p + c));
			hi = fmaxf(hi, f32_at(&n32, 3 * p + c));
		}
	}
	qsort(m, hw, sizeof *m, cmpf);
	double h = 0.99 * (double)(hw - 1);
	size_t k = (size_t)h;
	double p99 = m[k] + (h - (double)k) * ((double)m[k + 1] - m[k]);
	cJSON *sm = scale_of(d32, "magnitude");
	ck_assert(num(sm, "vmin") == 0);
	ck_assert_msg(fabs(num(sm, "vmax") - p99) <= 1e-6 * p99, "vmax %g, p99 %g", num(sm, "vmax"),
	              p99);
	ck_assert_str_eq(str(sm, "colormap"), "gray");
	ck_assert_str_eq(str(sm, "sign"), "absolute");
	cJSON *so = scale_of(d32, "overlay");
	ck_assert_str_eq(str(so, "colormap"), "viridis");
	ck_assert(num(so, "vmax") == num(sm, "vmax"));
	cJSON *sn = scale_of(d32, "normalized");
	ck_assert(num(sn, "vmin") == lo && num(sn, "vmax") == hi);
	ck_assert_str_eq(str(sn, "colormap"), "rgb");
	ck_assert_str_eq(str(sn, "sign"), "all");
	ck_assert_str_eq(str(scale_of(d32, "masked_image"), "colormap"), "brightness");
	ck_assert_str_eq(str(scale_of(d32, "alpha_scaling"), "colormap"), "opacity");
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(d32, "heatmap_scales")), 5);
	/* alpha_scaling is an RGBA PNG */
	cJSON *as = cJSON_GetObjectItem(cJSON_GetObjectItem(d32, "heatmaps"), "alpha_scaling");
	ck_assert(cJSON_IsString(as));
	size_t alen = strlen(as->valuestring), plen;
	unsigned char *apng = malloc(alen);
	ck_assert_int_eq(base64_decode(as->valuestring, alen, apng, &plen), 0);
	png_image img = {.version = PNG_IMAGE_VERSION};
	ck_assert(png_image_begin_read_from_memory(&img, apng, plen));
	ck_assert(img.format & PNG_FORMAT_FLAG_ALPHA);
	png_image_free(&img);
	free(apng);

	/* npy16: float16 of the same attributions */
	cJSON *d16 = attribute("heatmaps=none&raw=npy16");
	struct npy n16;
	npy_of(d16, &n16);
	ck_assert_msg(strstr(n16.header, "'<f2'") && strstr(n16.header, ", 3)"), "%s", n16.header);
	ck_assert_uint_eq(n16.len, n16.data + hw * 3 * 2);
	for (size_t i = 0; i < hw * 3; i++) {
		uint16_t u =
		    (uint16_t)(n16.bytes[n16.data + 2 * i] | n16.bytes[n16.data + 2 * i + 1] << 8);
		double want = f32_at(&n32, i), got = half_value(u);
		/* half an ulp: 2^-11 relative, 2^-25 absolute among subnormals */
		ck_assert_msg(fabs(got - want) <=
		                  fmax(ldexp(fabs(want), -11), ldexp(1, -25)) * 1.0001,
		              "value %zu: float16 %g, float32 %g", i, got, want);
	}
	/* map: [H, W], the sum over channels */
	cJSON *dm = attribute("heatmaps=none&raw=map");
	struct npy nm;
	npy_of(dm, &nm);
	char shape[64];
	snprintf(shape, sizeof shape, "(%d, %d)", size, size);
	ck_assert_msg(strstr(nm.header, "'<f4'") && strstr(nm.header, shape), "%s", nm.header);
	ck_assert_uint_eq(nm.len, nm.data + hw * 4);
	for (size_t p = 0; p < hw; p++) {
		double want =
		    (double)f32_at(&n32, 3 * p) + f32_at(&n32, 3 * p + 1) + f32_at(&n32, 3 * p + 2);
		ck_assert_msg(fabs(f32_at(&nm, p) - want) <= 1e-6 * (fabs(want) + p99),
		              "pixel %zu: map %g, sum %g", p, f32_at(&nm, p), want);
	}
	/* no heatmaps: an empty heatmap_scales */
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(dm, "heatmap_scales")), 0);
	free(m);
	free(n32.bytes);
	free(n16.bytes);
	free(nm.bytes);
	cJSON_Delete(d32);
	cJSON_Delete(d16);
	cJSON_Delete(dm);
}
END_TEST

START_TEST(test_fixed_scale_reported)
{
	cJSON *d = attribute("heatmaps=magnitude,deviation,channel_g&scale=fixed&vmax=0.37"
	                     "&sign=all&colormap=rdbu&alpha=0.5");
	cJSON *s = scale_of(d, "magnitude");
	ck_assert(num(s, "vmax") == 0.37 && num(s, "vmin") == -0.37);
	ck_assert_str_eq(str(s, "colormap"), "rdbu");
	ck_assert_str_eq(str(s, "sign"), "all");
	cJSON *dv = scale_of(d, "deviation"); /* deviations are >= 0: vmin 0 */
	ck_assert(num(dv, "vmax") == 0.37 && num(dv, "vmin") == 0);
	ck_assert_str_eq(str(dv, "colormap"), "rgb");
	cJSON *g = scale_of(d, "channel_g");
	ck_assert(num(g, "vmax") == 0.37 && num(g, "vmin") == -0.37);
	ck_assert_str_eq(str(g, "colormap"), "rdbu");
	cJSON_Delete(d);
	/* vmin and vmax as given; positive values only */
	d = attribute("heatmaps=overlay&vmin=0.001&vmax=2.5&sign=positive&colormap=inferno");
	s = scale_of(d, "overlay");
	ck_assert(num(s, "vmin") == 0.001 && num(s, "vmax") == 2.5);
	ck_assert_str_eq(str(s, "colormap"), "inferno");
	ck_assert_str_eq(str(s, "sign"), "positive");
	cJSON_Delete(d);
}
END_TEST

START_TEST(test_bad_values_are_400)
{
	const struct {
		const char *query, *says;
	} bad[] = {
	    {"sign=foo", "sign"},      {"vmin=1&vmax=0.5", "vmin"},
	    {"vmin=1&vmax=1", "vmin"}, {"alpha=2", "alpha"},
	    {"alpha=-0.5", "alpha"},   {"clip=0", "clip"},
	    {"clip=101", "clip"},      {"colormap=jet", "colormap"},
	    {"scale=fixed", "vmax"},   {"scale=linear", "scale"},
	    {"raw=npy32", "raw"},      {"sign=all&heatmaps=magnitude,alpha_scaling", "sign=all"},
	    /* two Gauss-Legendre points nest no coarser rule: no estimate to draw */
	    {"heatmaps=uncertainty", "heatmaps=uncertainty"},
	};
	if (!png_bytes)
		png_bytes = make_png(48, 40, 9, &png_len);
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char path[256];
		snprintf(path, sizeof path, "/attribute?steps=2&%s", bad[i].query);
		struct request q = {.path = path, .image = png_bytes, .image_len = png_len};
		struct reply r;
		http(srv.port, &q, &r);
		assert_error(&r, 400, "bad_option");
		ck_assert_msg(strstr(r.body, bad[i].says), "%s: %s", bad[i].query, r.body);
		reply_free(&r);
	}
}
END_TEST

/* heatmaps=uncertainty over HTTP (its numbers: tests/check_uncertainty.py) */
START_TEST(test_uncertainty_map)
{
	if (!png_bytes)
		png_bytes = make_png(48, 40, 9, &png_len);
	struct request q = {.path = "/attribute?method=riemann_trapezoid&steps=9&heatmaps=uncertainty",
	                    .image = png_bytes,
	                    .image_len = png_len};
	struct reply r;
	http(srv.port, &q, &r);
	ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
	cJSON *doc = cJSON_Parse(r.body);
	reply_free(&r);
	ck_assert(doc != NULL);
	cJSON *maps = cJSON_GetObjectItem(doc, "heatmaps");
	ck_assert(cJSON_IsString(cJSON_GetObjectItem(maps, "uncertainty")));
	ck_assert_int_eq(cJSON_GetArraySize(maps), 1);
	cJSON *s = scale_of(doc, "uncertainty");
	ck_assert_str_eq(str(s, "colormap"), "gray");
	ck_assert_str_eq(str(s, "sign"), "absolute");
	ck_assert(num(s, "vmin") == 0 && num(s, "vmax") > 0);
	cJSON *conv = cJSON_GetObjectItem(doc, "convergence");
	ck_assert_str_eq(str(conv, "estimator"), "subrule_cells");
	cJSON_Delete(doc);
}
END_TEST

START_TEST(test_cli_raw_format)
{
	const char *bin = getenv("IGSERVE_BINARY");
	bin = bin ? bin : "build/igserve";
	char dir[] = "/tmp/igs-maps-cli-XXXXXX";
	ck_assert(mkdtemp(dir) != NULL);
	static char out[1 << 21];
	char img[4200], cmd[16384];
	snprintf(img, sizeof img, "%s/in.png", dir);
	FILE *f = fopen(img, "wb");
	if (!png_bytes)
		png_bytes = make_png(48, 40, 9, &png_len);
	ck_assert(f && fwrite(png_bytes, 1, png_len, f) == png_len);
	fclose(f);
	const char *formats[] = {"npy16", "map"};
	const char *descr[] = {"'<f2'", "'<f4'"};
	for (int i = 0; i < 2; i++) {
		snprintf(
		    cmd, sizeof cmd,
		    "'%s' attribute --model '%s' --steps 2 --heatmaps magnitude --sign positive "
		    "--colormap inferno --clip 95 --raw '%s/a.npy' --raw-format %s '%s' "
		    "2>/dev/null",
		    bin, model_path, dir, formats[i], img);
		ck_assert_int_eq(run_command(cmd, out, sizeof out), 0);
		ck_assert_msg(strstr(out, "\"heatmap_scales\"") && strstr(out, "\"inferno\"") &&
		                  strstr(out, "\"positive\""),
		              "%s", out);
		size_t len;
		snprintf(cmd, sizeof cmd, "%s/a.npy", dir);
		char *npy = read_file(cmd, &len);
		ck_assert(npy && len > 128 && strstr(npy + 10, descr[i]));
		ck_assert(i == 0 ? strstr(npy + 10, ", 3)") != NULL
		                 : strstr(npy + 10, ", 3)") == NULL);
		free(npy);
		unlink(cmd);
	}
	/* --raw-format needs --raw and a known name */
	snprintf(cmd, sizeof cmd, "'%s' attribute --model '%s' --raw-format npy16 '%s' 2>&1", bin,
	         model_path, img);
	ck_assert_int_eq(WEXITSTATUS(run_command(cmd, out, sizeof out)), 2);
	ck_assert(strstr(out, "--raw-format"));
	snprintf(cmd, sizeof cmd, "'%s' attribute --model '%s' --sign foo '%s' 2>&1 >/dev/null",
	         bin, model_path, img);
	ck_assert_int_ne(run_command(cmd, out, sizeof out), 0);
	ck_assert_msg(strstr(out, "sign"), "%s", out);
	/* with targets= and --out, every target's maps are files: the first
	 * under the plain names, the others as target_CLASS.NAME.png, and the
	 * JSON names each file */
	snprintf(cmd, sizeof cmd,
	         "'%s' attribute --model '%s' --steps 2 --heatmaps magnitude --targets top2 "
	         "--out '%s/out' '%s' 2>/dev/null",
	         bin, model_path, dir, img);
	snprintf(out, sizeof out, "%s/out", dir);
	ck_assert_int_eq(mkdir(out, 0700), 0);
	ck_assert_int_eq(run_command(cmd, out, sizeof out), 0);
	cJSON *doc = cJSON_Parse(out);
	ck_assert(doc);
	cJSON *list = cJSON_GetObjectItem(doc, "attributions");
	ck_assert_int_eq(cJSON_GetArraySize(list), 2);
	for (int k = 0; k < 2; k++) {
		cJSON *e = cJSON_GetArrayItem(list, k);
		int index = cJSON_GetObjectItem(cJSON_GetObjectItem(e, "target"), "index")->valueint;
		const char *file =
		    cJSON_GetObjectItem(cJSON_GetObjectItem(e, "heatmaps"), "magnitude")->valuestring;
		char want[4300];
		if (k == 0)
			snprintf(want, sizeof want, "%s/out/magnitude.png", dir);
		else
			snprintf(want, sizeof want, "%s/out/target_%d.magnitude.png", dir, index);
		ck_assert_str_eq(file, want);
		size_t len;
		char *bytes = read_file(want, &len);
		ck_assert_msg(bytes && len > 8 && memcmp(bytes, "\x89PNG", 4) == 0, "%s", want);
		free(bytes);
	}
	cJSON_Delete(doc);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("http_maps");
	TCase *tc = tcase_create("core");
	tcase_add_unchecked_fixture(tc, up, down);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_scales_and_encodings);
	tcase_add_test(tc, test_fixed_scale_reported);
	tcase_add_test(tc, test_bad_values_are_400);
	tcase_add_test(tc, test_uncertainty_map);
	tcase_add_test(tc, test_cli_raw_format);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	setup_paths();
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
