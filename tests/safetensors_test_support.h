/*
 * safetensors_test_support.h - helpers shared by the safetensors tests
 * (test_safetensors.c, test_safetensors_malformed.c): the temp dir, raw
 * files written byte by byte, naive F16/BF16 references.  Each test program
 * is one translation unit, so the helpers are static inline here.
 */
#ifndef IGSERVE_SAFETENSORS_TEST_SUPPORT_H
#define IGSERVE_SAFETENSORS_TEST_SUPPORT_H

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "safetensors_writer.h"

static char tmpdir[64];

/* Path of `name` inside the test's temp dir (static buffer per call slot). */
static inline const char *tmp_path(const char *name)
{
	static char buf[8][256];
	static int slot;
	char *p = buf[slot++ % 8];
	snprintf(p, 256, "%s/%s", tmpdir, name);
	return p;
}

static inline void write_bytes(const char *path, const void *bytes, size_t n)
{
	FILE *fp = fopen(path, "wb");
	ck_assert_ptr_nonnull(fp);
	if (n)
		ck_assert_uint_eq(fwrite(bytes, 1, n, fp), n);
	ck_assert_int_eq(fclose(fp), 0);
}

/* A file of: 8-byte little-endian `hlen`, the header text, then `dlen` data
 * bytes.  `hlen` is normally strlen(header) but may lie on purpose. */
static inline const char *write_raw_len(const char *name, uint64_t hlen, const char *header,
                                 const void *data, size_t dlen)
{
	const char *path = tmp_path(name);
	size_t tlen = strlen(header);
	unsigned char *buf = malloc(8 + tlen + dlen + 1);
	ck_assert_ptr_nonnull(buf);
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)(hlen >> (8 * i));
	memcpy(buf + 8, header, tlen);
	if (dlen)
		memcpy(buf + 8 + tlen, data, dlen);
	write_bytes(path, buf, 8 + tlen + dlen);
	free(buf);
	return path;
}

static inline const char *write_raw(const char *name, const char *header, const void *data, size_t dlen)
{
	return write_raw_len(name, strlen(header), header, data, dlen);
}

/* Open must fail with `code`; the message must name the file and contain
 * each of the given fragments. */
static inline void expect_fail(const char *path, int code, const char *frag1, const char *frag2)
{
	struct st_file *f = (struct st_file *)0x1;
	struct igs_error err = {0};
	int rc = safetensors_open(&f, path, &err);
	ck_assert_msg(rc == code, "%s: expected code %d, got %d (%s)", path, code, rc, err.message);
	ck_assert_ptr_null(f);
	ck_assert_int_eq(err.code, code);
	ck_assert_msg(strstr(err.message, path), "message does not name the file: %s", err.message);
	if (frag1)
		ck_assert_msg(strstr(err.message, frag1), "'%s' not in: %s", frag1, err.message);
	if (frag2)
		ck_assert_msg(strstr(err.message, frag2), "'%s' not in: %s", frag2, err.message);
}

static inline struct st_file *open_ok(const char *path)
{
	struct st_file *f = NULL;
	struct igs_error err = {0};
	int rc = safetensors_open(&f, path, &err);
	ck_assert_msg(rc == 0, "open %s failed: %s", path, err.message);
	ck_assert_ptr_nonnull(f);
	return f;
}

static uint32_t rng_state = 12345u;
static inline uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/* Naive half decode straight from the IEEE definition. */
static inline double naive_f16_value(unsigned h)
{
	int s = (h >> 15) & 1, e = (h >> 10) & 31, m = h & 1023;
	double v;
	if (e == 0)
		v = ldexp(m / 1024.0, -14);
	else if (e == 31)
		v = m ? NAN : INFINITY;
	else
		v = ldexp(1.0 + m / 1024.0, e - 15);
	return s ? -v : v;
}

static inline double naive_bf16_value(unsigned b)
{
	int s = (b >> 15) & 1, e = (b >> 7) & 255, m = b & 127;
	double v;
	if (e == 0)
		v = ldexp(m / 128.0, -126);
	else if (e == 255)
		v = m ? NAN : INFINITY;
	else
		v = ldexp(1.0 + m / 128.0, e - 127);
	return s ? -v : v;
}

/*
 * Round `x` to the nearest value of a 16-bit format by search: the
 * non-negative codes 0..inf_code are increasing in value, and the inf code
 * stands for 2^(emax+1) when rounding (IEEE's unbounded-exponent rule), so a
 * value at or beyond the midpoint to it becomes inf.  Ties go to the even
 * code.  Returns the decoded result as a double.
 */
static inline double naive_round16(double x, double (*value)(unsigned), unsigned inf_code, double inf_as)
{
	if (isnan(x))
		return NAN;
	double ax = fabs(x);
	double r;
	if (ax >= inf_as) {
		r = INFINITY;
	} else {
		unsigned lo = 0, hi = inf_code; /* value(lo) <= ax < value(hi) */
		while (hi - lo > 1) {
			unsigned mid = (lo + hi) / 2;
			if (value(mid) <= ax)
				lo = mid;
			else
				hi = mid;
		}
		double vl = value(lo), vh = hi == inf_code ? inf_as : value(hi);
		double dl = ax - vl, dh = vh - ax;
		unsigned pick = dl < dh ? lo : dh < dl ? hi : (lo % 2 == 0 ? lo : hi);
		r = pick == inf_code ? INFINITY : value(pick);
	}
	return signbit(x) ? -r : r;
}

static inline double naive_f16_round(double x)
{
	return naive_round16(x, naive_f16_value, 0x7c00, 65536.0);
}

static inline double naive_bf16_round(double x)
{
	return naive_round16(x, naive_bf16_value, 0x7f80, ldexp(1.0, 128));
}

/* Inputs for the rounding tests: every value of the format itself, the
 * midpoints between neighbours (the ties), points just off the midpoints,
 * the overflow boundary, specials, and random floats over a wide range. */
static inline size_t rounding_inputs(float *out, size_t cap, double (*value)(unsigned), unsigned inf_code)
{
	size_t n = 0;
	/* an odd stride visits codes of both parities, so ties round both up
	 * and down */
	unsigned stride = (inf_code / 3000) | 1;
	for (unsigned c = 0; c + 1 < inf_code && n + 6 < cap / 2; c += stride) {
		double a = value(c), b = value(c + 1);
		float mid = (float)((a + b) / 2);
		out[n++] = (float)a;
		out[n++] = -(float)a;
		out[n++] = mid;
		out[n++] = -mid;
		out[n++] = nextafterf(mid, INFINITY);
		out[n++] = nextafterf(mid, 0);
	}
	/* the overflow boundary: the tie between the largest finite value
	 * and 2^(emax+1) rounds to inf (the largest finite code is odd):
	 * 65520 for F16, 0x1.ffp+127 for BF16 */
	double top = value(inf_code - 1);
	const float special[] = {0.0f,
	                         -0.0f,
	                         INFINITY,
	                         -INFINITY,
	                         NAN,
	                         (float)top,
	                         -(float)top,
	                         65504.0f,
	                         65519.99f,
	                         65520.0f,
	                         65536.0f,
	                         1e30f,
	                         -1e30f,
	                         3.4028235e38f,
	                         -3.4028235e38f,
	                         0x1.ffp+127f,
	                         0x1.fefffep+127f,
	                         5.96e-8f,
	                         2.98e-8f,
	                         2.9802322e-8f,
	                         1e-45f,
	                         1.1754942e-38f,
	                         1.0f / 3.0f};
	for (size_t i = 0; i < sizeof special / sizeof special[0] && n < cap; i++)
		out[n++] = special[i];
	while (n < cap) {
		/* random sign and mantissa; exponents alternately in the half
		 * range neighbourhood and over all of float's */
		double m = 1.0 + (rng() & 0xffffff) / 16777216.0;
		int e = (n & 1) ? (int)(rng() % 81) - 40 : (int)(rng() % 280) - 152;
		float v = (float)ldexp(m, e);
		out[n++] = (rng() & 1) ? -v : v;
	}
	return n;
}

/* Compare floats bit for bit, treating any NaN as equal to any NaN. */
static inline void assert_same_float(float got, double want, size_t i, float input)
{
	if (isnan(want)) {
		ck_assert_msg(isnan(got), "[%zu] input %a: got %a, want NaN", i, input, got);
		return;
	}
	ck_assert_msg(got == (float)want && !signbit(got) == !signbit(want),
	              "[%zu] input %a: got %a, want %a", i, input, got, want);
}

/* Remove the test's temp dir.  Deleting while readdir() iterates may skip
 * entries on some file systems, so sweep until a pass removes nothing. */
static inline void rm_tree(const char *dir)
{
	for (int removed = 1; removed;) {
		removed = 0;
		DIR *d = opendir(dir);
		if (!d)
			return;
		struct dirent *de;
		char p[512];
		while ((de = readdir(d))) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= (int)sizeof p)
				continue; /* not one of ours */
			struct stat st;
			if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
				rm_tree(p);
			else if (unlink(p) == 0)
				removed = 1;
		}
		closedir(d);
	}
	rmdir(dir);
}


/* Run `s` with a fresh temp dir (removed afterwards); the exit status. */
static inline int safetensors_test_run(Suite *s, const char *tmp_template)
{
	snprintf(tmpdir, sizeof tmpdir, "%s", tmp_template);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	rm_tree(tmpdir);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
