/*
 * test_image_orient.c - EXIF orientation: every value 1-8 in both TIFF byte
 * orders turns a stored image upright, checked against the EXIF table
 * itself (where the stored 0th row and column are seen), not against the
 * code's own formulas; malformed Exif leaves the image as stored; and a
 * photo stored sideways with orientation 6 predicts exactly as its upright
 * copy does.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "image.h"
#include "png_encode.h"

#define UW 7 /* upright width and height: odd and unequal, so every turn shows */
#define UH 4

/* An upright image whose every pixel is distinct. */
static void upright(uint8_t *u)
{
	for (int y = 0; y < UH; y++)
		for (int x = 0; x < UW; x++) {
			uint8_t *p = u + ((size_t)y * UW + x) * 3;
			p[0] = (uint8_t)(x * 30);
			p[1] = (uint8_t)(y * 60);
			p[2] = (uint8_t)(7 * x + 11 * y);
		}
}

/*
 * The stored image of orientation o, from the EXIF table: the stored pixel
 * at (row r, column c) is seen at the visual position below.  Stored size
 * is UW x UH, or UH x UW for 5-8.
 */
static void stored(const uint8_t *u, int o, uint8_t *s, int *sw, int *sh)
{
	bool swap = o >= 5;
	*sw = swap ? UH : UW;
	*sh = swap ? UW : UH;
	for (int r = 0; r < *sh; r++)
		for (int c = 0; c < *sw; c++) {
			int vr, vc;
			switch (o) {
			case 1: vr = r; vc = c; break;                     /* top, left */
			case 2: vr = r; vc = UW - 1 - c; break;            /* top, right */
			case 3: vr = UH - 1 - r; vc = UW - 1 - c; break;   /* bottom, right */
			case 4: vr = UH - 1 - r; vc = c; break;            /* bottom, left */
			case 5: vr = c; vc = r; break;                     /* left, top */
			case 6: vr = c; vc = UW - 1 - r; break;            /* right, top */
			case 7: vr = UH - 1 - c; vc = UW - 1 - r; break;   /* right, bottom */
			default: vr = UH - 1 - c; vc = r; break;           /* 8: left, bottom */
			}
			memcpy(s + ((size_t)r * *sw + c) * 3, u + ((size_t)vr * UW + vc) * 3, 3);
		}
}

START_TEST(test_every_orientation_against_the_table)
{
	uint8_t u[UW * UH * 3], s[UW * UH * 3];
	upright(u);
	for (int o = 1; o <= 8; o++) {
		int sw, sh;
		stored(u, o, s, &sw, &sh);
		struct image img = {.width = sw, .height = sh, .rgb = malloc(sizeof s)};
		memcpy(img.rgb, s, sizeof s);
		ck_assert_int_eq(image_orient(&img, o, NULL), 0);
		ck_assert_int_eq(img.width, UW);
		ck_assert_int_eq(img.height, UH);
		ck_assert_msg(!memcmp(img.rgb, u, sizeof u), "orientation %d not upright", o);
		image_clear(&img);
	}
}
END_TEST

/* A JPEG of `px` (w x h) at quality 100, with an APP1 Exif segment holding
 * Orientation `o` in the byte order `big` (o = 0: no Exif), and filler
 * tags around it. */
static unsigned char *jpeg_with_exif(const uint8_t *px, int w, int h, int o, bool big,
                                     size_t *len)
{
	tjhandle tj = tjInitCompress();
	unsigned char *jpg = NULL;
	unsigned long n = 0;
	ck_assert_int_eq(tjCompress2(tj, px, w, 0, h, TJPF_RGB, &jpg, &n, TJSAMP_444, 100, 0), 0);
	tjDestroy(tj);
	if (!o) {
		unsigned char *copy = malloc(n);
		memcpy(copy, jpg, n);
		tjFree(jpg);
		*len = n;
		return copy;
	}
	/* TIFF: header, IFD0 with 3 entries (ImageWidth, Orientation, Software), next 0 */
	unsigned char t[8 + 2 + 3 * 12 + 4];
	size_t k = 0;
#define P16(v) (big ? (t[k++] = (unsigned char)((v) >> 8), t[k++] = (unsigned char)(v)) \
                    : (t[k++] = (unsigned char)(v), t[k++] = (unsigned char)((v) >> 8)))
#define P32(v) (big ? (P16((v) >> 16), P16((v) & 0xFFFF)) : (P16((v) & 0xFFFF), P16((v) >> 16)))
	t[k++] = big ? 'M' : 'I';
	t[k++] = big ? 'M' : 'I';
	P16(42);
	P32(8u);
	P16(3);
	P16(0x0100); P16(4); P32(1u); P32((unsigned)w);  /* ImageWidth LONG */
	P16(0x0112); P16(3); P32(1u); P16((unsigned)o); P16(0); /* Orientation SHORT */
	P16(0x0131); P16(2); P32(4u); P32(0x61626300u);  /* Software "abc" */
	P32(0u);
#undef P16
#undef P32
	size_t seg = 2 + 6 + k;
	*len = n + 2 + seg;
	unsigned char *out = malloc(*len);
	memcpy(out, jpg, 2); /* SOI */
	unsigned char *p = out + 2;
	*p++ = 0xFF;
	*p++ = 0xE1;
	*p++ = (unsigned char)(seg >> 8);
	*p++ = (unsigned char)seg;
	memcpy(p, "Exif\0\0", 6);
	memcpy(p + 6, t, k);
	memcpy(out + 4 + seg, jpg + 2, n - 2);
	tjFree(jpg);
	return out;
}

START_TEST(test_jpeg_exif_in_both_byte_orders)
{
	uint8_t u[UW * UH * 3], s[UW * UH * 3];
	upright(u);
	for (int big = 0; big < 2; big++)
		for (int o = 1; o <= 8; o++) {
			int sw, sh;
			stored(u, o, s, &sw, &sh);
			size_t len, plain_len;
			unsigned char *jpg = jpeg_with_exif(s, sw, sh, o, big, &len);
			unsigned char *plain = jpeg_with_exif(s, sw, sh, 0, big, &plain_len);
			ck_assert_int_eq(image_jpeg_orientation(jpg, len), o);
			ck_assert_int_eq(image_jpeg_orientation(plain, plain_len), 1);
			struct image with = {0}, without = {0};
			ck_assert_int_eq(image_decode(&with, jpg, len, NULL, NULL), 0);
			ck_assert_int_eq(image_decode(&without, plain, plain_len, NULL, NULL), 0);
			/* the decoder turned the stored pixels upright: the same bytes
			 * as the table's turn of the file decoded without Exif */
			ck_assert_int_eq(with.width, UW);
			ck_assert_int_eq(with.height, UH);
			ck_assert_int_eq(without.width, sw);
			ck_assert_int_eq(image_orient(&without, o, NULL), 0);
			ck_assert_msg(!memcmp(with.rgb, without.rgb, sizeof u), "orientation %d (%s)", o,
			              big ? "MM" : "II");
			image_clear(&with);
			image_clear(&without);
			free(jpg);
			free(plain);
		}
}
END_TEST

START_TEST(test_malformed_exif_is_ignored)
{
	uint8_t u[UW * UH * 3];
	upright(u);
	size_t len;
	unsigned char *jpg = jpeg_with_exif(u, UW, UH, 6, false, &len);
	/* the TIFF starts at 4 (marker, length) + 6 ("Exif\0\0") = 10 after SOI */
	const size_t tiff = 2 + 4 + 6;
	unsigned char *bad = malloc(len);
	struct {
		size_t at;
		unsigned char value;
	} corruptions[] = {
	    {tiff + 0, 'X'},      /* byte order */
	    {tiff + 2, 0},        /* magic 42 */
	    {tiff + 4, 0xF0},     /* IFD0 offset far past the segment */
	    {tiff + 8, 0},        /* no entries */
	    {tiff + 10 + 12 + 2, 4}, /* Orientation's type no longer SHORT */
	    {tiff + 10 + 12 + 8, 9}, /* Orientation 9 */
	    {4, 0xFF},            /* segment length past the file */
	};
	for (size_t i = 0; i < sizeof corruptions / sizeof corruptions[0]; i++) {
		memcpy(bad, jpg, len);
		bad[corruptions[i].at] = corruptions[i].value;
		ck_assert_msg(image_jpeg_orientation(bad, len) == 1, "corruption %zu", i);
	}
	/* every truncation of the header region: never past the bytes given */
	for (size_t n = 0; n < 80 && n < len; n++)
		ck_assert_int_le(image_jpeg_orientation(jpg, n), 8);
	free(bad);
	free(jpg);
}
END_TEST

/* A sideways phone photo (stored turned, orientation 6) and its upright
 * copy as a PNG: `igserve predict` gives the same answer for both. */
START_TEST(test_sideways_photo_predicts_as_upright)
{
	const char *bin = getenv("IGSERVE_BINARY"), *fx = getenv("IGSERVE_FIXTURES");
	char model[4096], shape[4096];
	snprintf(model, sizeof model, "%s/../../models/demo/shapes-resnet.safetensors",
	         fx ? fx : "tests/fixtures");
	snprintf(shape, sizeof shape, "%s/../../models/demo/examples/triangle.png",
	         fx ? fx : "tests/fixtures");
	struct image up = {0};
	ck_assert_int_eq(image_load_file(&up, shape, NULL, NULL), 0);
	/* stored as a camera held sideways would: the inverse of a clockwise
	 * turn (orientation 6 turns it clockwise to show it) */
	struct image side = {.width = up.height, .height = up.width,
	                     .rgb = malloc((size_t)up.width * up.height * 3)};
	for (int r = 0; r < side.height; r++)
		for (int c = 0; c < side.width; c++)
			memcpy(side.rgb + ((size_t)r * side.width + c) * 3,
			       up.rgb + ((size_t)c * up.width + (up.width - 1 - r)) * 3, 3);
	size_t len;
	unsigned char *jpg = jpeg_with_exif(side.rgb, side.width, side.height, 6, true, &len);
	/* the upright copy: the same JPEG decoded (so the same compression)
	 * and turned, stored losslessly */
	struct image turned = {0};
	ck_assert_int_eq(image_decode(&turned, jpg, len, NULL, NULL), 0);
	unsigned char *png = NULL;
	size_t png_len = 0;
	ck_assert_int_eq(png_encode(turned.rgb, turned.width, turned.height, 3, &png, &png_len, NULL),
	                 0);
	char dir[] = "/tmp/igserve-orient-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char jpg_path[128], png_path[128], cmd[12000];
	snprintf(jpg_path, sizeof jpg_path, "%s/sideways.jpg", dir);
	snprintf(png_path, sizeof png_path, "%s/upright.png", dir);
	FILE *f = fopen(jpg_path, "wb");
	fwrite(jpg, 1, len, f);
	fclose(f);
	f = fopen(png_path, "wb");
	fwrite(png, 1, png_len, f);
	fclose(f);
	char out[2][4096];
	for (int i = 0; i < 2; i++) {
		snprintf(cmd, sizeof cmd,
		         "'%s' predict --model '%s' '%s' 2>/dev/null | sed 's/\"timing_ms\".*//'",
		         bin ? bin : "build/igserve", model, i ? png_path : jpg_path);
		FILE *p = popen(cmd, "r");
		size_t n = fread(out[i], 1, sizeof out[i] - 1, p);
		out[i][n] = 0;
		ck_assert_int_eq(pclose(p), 0);
	}
	ck_assert_msg(strstr(out[0], "\"predictions\"") != NULL, "%s", out[0]);
	ck_assert_str_eq(out[0], out[1]);
	/* and the top class is the one the upright example shows */
	ck_assert_msg(strstr(out[0], "\"predictions\":[{\"index\":2,\"label\":\"triangle\""),
	              "%s", out[0]);
	unlink(jpg_path);
	unlink(png_path);
	rmdir(dir);
	free(png);
	free(jpg);
	image_clear(&turned);
	image_clear(&side);
	image_clear(&up);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("image-orient");
	TCase *tc = tcase_create("exif");
	tcase_add_test(tc, test_every_orientation_against_the_table);
	tcase_add_test(tc, test_jpeg_exif_in_both_byte_orders);
	tcase_add_test(tc, test_malformed_exif_is_ignored);
	tcase_add_test(tc, test_sideways_photo_predicts_as_upright);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
