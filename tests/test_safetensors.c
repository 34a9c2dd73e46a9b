/*
 * test_safetensors.c - the .safetensors reader and writer.
 *
 * Contents:
 *   1. Helpers            temp dir, raw files written byte by byte, naive
 *                         F16/BF16 references (ldexp decode, nearest search)
 *   2. Round trips        F32 / F16 / BF16 through safetensors_write + open
 *   3. Decoding           every F16 and BF16 bit pattern, F64, I64, metadata
 *   4. SHA-256            against sha256sum and a known digest
 *   5. Malformed files    each must fail with the right code and a message
 *                         naming the file and the problem, never crash
 *   6. Writer errors
 */
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

/* ======================================================================== */
/* 1. Helpers                                                               */
/* ======================================================================== */

static char tmpdir[64];

/* Path of `name` inside the test's temp dir (static buffer per call slot). */
static const char *tmp_path(const char *name)
{
	static char buf[8][256];
	static int slot;
	char *p = buf[slot++ % 8];
	snprintf(p, 256, "%s/%s", tmpdir, name);
	return p;
}

static void write_bytes(const char *path, const void *bytes, size_t n)
{
	FILE *fp = fopen(path, "wb");
	ck_assert_ptr_nonnull(fp);
	if (n)
		ck_assert_uint_eq(fwrite(bytes, 1, n, fp), n);
	ck_assert_int_eq(fclose(fp), 0);
}

/* A file of: 8-byte little-endian `hlen`, the header text, then `dlen` data
 * bytes.  `hlen` is normally strlen(header) but may lie on purpose. */
static const char *write_raw_len(const char *name, uint64_t hlen, const char *header,
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

static const char *write_raw(const char *name, const char *header, const void *data, size_t dlen)
{
	return write_raw_len(name, strlen(header), header, data, dlen);
}

/* Open must fail with `code`; the message must name the file and contain
 * each of the given fragments. */
static void expect_fail(const char *path, int code, const char *frag1, const char *frag2)
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

static struct st_file *open_ok(const char *path)
{
	struct st_file *f = NULL;
	struct igs_error err = {0};
	int rc = safetensors_open(&f, path, &err);
	ck_assert_msg(rc == 0, "open %s failed: %s", path, err.message);
	ck_assert_ptr_nonnull(f);
	return f;
}

static uint32_t rng_state = 12345u;
static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/* Naive half decode straight from the IEEE definition. */
static double naive_f16_value(unsigned h)
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

static double naive_bf16_value(unsigned b)
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
static double naive_round16(double x, double (*value)(unsigned), unsigned inf_code, double inf_as)
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

static double naive_f16_round(double x)
{
	return naive_round16(x, naive_f16_value, 0x7c00, 65536.0);
}

static double naive_bf16_round(double x)
{
	return naive_round16(x, naive_bf16_value, 0x7f80, ldexp(1.0, 128));
}

/* Inputs for the rounding tests: every value of the format itself, the
 * midpoints between neighbours (the ties), points just off the midpoints,
 * the overflow boundary, specials, and random floats over a wide range. */
static size_t rounding_inputs(float *out, size_t cap, double (*value)(unsigned), unsigned inf_code)
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
static void assert_same_float(float got, double want, size_t i, float input)
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
static void rm_tree(const char *dir)
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
			snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
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

/* ======================================================================== */
/* 2. Round trips                                                           */
/* ======================================================================== */

START_TEST(test_roundtrip_f32)
{
	float a[2 * 3 * 4], b[5], scalar = -7.25f;
	for (size_t i = 0; i < 24; i++)
		a[i] = (float)i * 0.37f - 3.0f;
	for (size_t i = 0; i < 5; i++)
		b[i] = ldexpf(1.0f, (int)i * 30 - 60);
	struct st_write_tensor w[] = {
	    {.name = "layer1.0.conv1.weight",
	     .ndim = 3,
	     .shape = {2, 3, 4},
	     .data = a,
	     .dtype = ST_F32},
	    {.name = "bn \"quoted\"\\name", .ndim = 1, .shape = {5}, .data = b, .dtype = ST_F32},
	    {.name = "scalar", .ndim = 0, .data = &scalar, .dtype = ST_F32},
	    {.name = "empty", .ndim = 2, .shape = {0, 3}, .data = NULL, .dtype = ST_F32},
	};
	const char *path = tmp_path("rt_f32.safetensors");
	struct igs_error err = {0};
	ck_assert_int_eq(safetensors_write(path, w, 4, &err), 0);

	/* Header length is a multiple of 8, padded with spaces, and the
	 * data buffer is exactly the tensors back to back. */
	FILE *fp = fopen(path, "rb");
	ck_assert_ptr_nonnull(fp);
	unsigned char len8[8];
	ck_assert_uint_eq(fread(len8, 1, 8, fp), 8);
	uint64_t hlen = 0;
	for (int i = 0; i < 8; i++)
		hlen |= (uint64_t)len8[i] << (8 * i);
	ck_assert_uint_eq(hlen % 8, 0);
	char *hdr = calloc(1, hlen + 1);
	ck_assert_uint_eq(fread(hdr, 1, hlen, fp), hlen);
	ck_assert_int_eq(hdr[0], '{');
	size_t jend = hlen;
	while (jend > 0 && hdr[jend - 1] == ' ')
		jend--;
	ck_assert_int_eq(hdr[jend - 1], '}');
	ck_assert_uint_lt(hlen - jend, 8);
	free(hdr);
	fseek(fp, 0, SEEK_END);
	ck_assert_int_eq(ftell(fp), (long)(8 + hlen + (24 + 5 + 1) * 4));
	fclose(fp);

	struct st_file *f = open_ok(path);
	ck_assert_uint_eq(safetensors_count(f), 4);
	/* file order = write order = data-offset order (the empty tensor at
	 * the end shares its offset with nothing) */
	ck_assert_str_eq(safetensors_at(f, 0)->name, "layer1.0.conv1.weight");
	ck_assert_str_eq(safetensors_at(f, 1)->name, "bn \"quoted\"\\name");
	ck_assert_str_eq(safetensors_at(f, 2)->name, "scalar");
	ck_assert_str_eq(safetensors_at(f, 3)->name, "empty");
	ck_assert_ptr_null(safetensors_at(f, 4));

	const struct st_tensor *t = safetensors_find(f, "layer1.0.conv1.weight");
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(t->dtype, ST_F32);
	ck_assert_int_eq(t->ndim, 3);
	ck_assert_int_eq(t->shape[0], 2);
	ck_assert_int_eq(t->shape[1], 3);
	ck_assert_int_eq(t->shape[2], 4);
	ck_assert_int_eq(t->numel, 24);
	ck_assert_uint_eq(t->nbytes, 96);
	float out[24];
	ck_assert_int_eq(safetensors_read_f32(t, out, &err), 0);
	ck_assert_mem_eq(out, a, sizeof a);

	t = safetensors_find(f, "bn \"quoted\"\\name");
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(safetensors_read_f32(t, out, &err), 0);
	ck_assert_mem_eq(out, b, sizeof b);

	t = safetensors_find(f, "scalar");
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(t->ndim, 0);
	ck_assert_int_eq(t->numel, 1);
	ck_assert_int_eq(safetensors_read_f32(t, out, &err), 0);
	ck_assert_float_eq(out[0], -7.25f);

	t = safetensors_find(f, "empty");
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(t->numel, 0);
	ck_assert_uint_eq(t->nbytes, 0);
	ck_assert_int_eq(safetensors_read_f32(t, out, &err), 0);

	ck_assert_ptr_null(safetensors_find(f, "layer1.0.conv1"));
	ck_assert_ptr_null(safetensors_find(f, "LAYER1.0.CONV1.WEIGHT"));
	ck_assert_ptr_null(safetensors_metadata(f, "format"));
	safetensors_close(&f);
	ck_assert_ptr_null(f);
	safetensors_close(&f); /* NULL is fine */

	/* Atomic write: no temporary file is left beside the result. */
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	while ((de = readdir(d)))
		ck_assert_msg(strncmp(de->d_name, "rt_f32.safetensors.", 19) != 0, "leftover %s",
		              de->d_name);
	closedir(d);
}
END_TEST

/* Write `in` as `dtype`, read back, compare each value with `ref(in)`. */
static void roundtrip_16(enum st_dtype dtype, const char *name, double (*value)(unsigned),
                         unsigned inf_code, double (*ref)(double))
{
	enum { N = 40002 };
	float *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
	size_t n = rounding_inputs(in, N, value, inf_code);
	struct st_write_tensor w = {
	    .name = "x", .ndim = 2, .shape = {3, (int64_t)n / 3}, .data = in, .dtype = dtype};
	n = n / 3 * 3;
	const char *path = tmp_path(name);
	struct igs_error err = {0};
	ck_assert_int_eq(safetensors_write(path, &w, 1, &err), 0);
	struct st_file *f = open_ok(path);
	const struct st_tensor *t = safetensors_find(f, "x");
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(t->dtype, dtype);
	ck_assert_int_eq(t->numel, (int64_t)n);
	ck_assert_uint_eq(t->nbytes, n * 2);
	ck_assert_int_eq(safetensors_read_f32(t, out, &err), 0);
	for (size_t i = 0; i < n; i++)
		assert_same_float(out[i], ref(in[i]), i, in[i]);
	safetensors_close(&f);
	free(in);
	free(out);
}

START_TEST(test_roundtrip_f16_rounds_to_nearest_even)
{
	roundtrip_16(ST_F16, "rt_f16.safetensors", naive_f16_value, 0x7c00, naive_f16_round);
}
END_TEST

START_TEST(test_roundtrip_bf16_rounds_to_nearest_even)
{
	roundtrip_16(ST_BF16, "rt_bf16.safetensors", naive_bf16_value, 0x7f80, naive_bf16_round);
}
END_TEST

/* A few hand-checked cases so the naive reference is itself anchored. */
START_TEST(test_reference_rounding_cases)
{
	/* 1 + 2^-11 is the tie between 1 and 1+2^-10: even is 1. */
	ck_assert_double_eq(naive_f16_round(1.0 + ldexp(1, -11)), 1.0);
	/* 1 + 3*2^-11 ties between 1+2^-10 (odd) and 1+2^-9 (even). */
	ck_assert_double_eq(naive_f16_round(1.0 + 3 * ldexp(1, -11)), 1.0 + ldexp(1, -9));
	ck_assert_double_eq(naive_f16_round(65519.0), 65504.0);
	ck_assert(isinf(naive_f16_round(65520.0)));
	ck_assert_double_eq(naive_f16_round(ldexp(1, -25)), 0.0);             /* tie to 0 */
	ck_assert_double_eq(naive_f16_round(ldexp(1.5, -25)), ldexp(1, -24)); /* smallest */
	ck_assert_double_eq(naive_bf16_round(1.0 + ldexp(1, -8)), 1.0);
	ck_assert_double_eq(naive_bf16_round(1.0 + 3 * ldexp(1, -8)), 1.0 + ldexp(1, -6));
	ck_assert_double_eq(naive_bf16_round(1.0 + ldexp(1.01, -8)), 1.0 + ldexp(1, -7));

	/* And the writer agrees on them (F16 payload bytes checked directly). */
	float in[] = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 65519.0f, 65520.0f,
	              0x1p-25f,        0x1.8p-25f,          -0.0f,    NAN};
	const unsigned want[] = {0x3c00, 0x3c02, 0x7bff, 0x7c00, 0x0000, 0x0001, 0x8000};
	struct st_write_tensor w = {
	    .name = "h", .ndim = 1, .shape = {8}, .data = in, .dtype = ST_F16};
	const char *path = tmp_path("cases_f16.safetensors");
	struct igs_error err = {0};
	ck_assert_int_eq(safetensors_write(path, &w, 1, &err), 0);
	struct st_file *f = open_ok(path);
	const unsigned char *p = safetensors_find(f, "h")->data;
	for (int i = 0; i < 7; i++)
		ck_assert_uint_eq(p[2 * i] | (p[2 * i + 1] << 8), want[i]);
	unsigned nan16 = p[14] | (p[15] << 8);
	ck_assert_uint_eq(nan16 & 0x7c00, 0x7c00);
	ck_assert_uint_ne(nan16 & 0x3ff, 0);
	safetensors_close(&f);
}
END_TEST

/* ======================================================================== */
/* 3. Decoding                                                              */
/* ======================================================================== */

/* Every 16-bit pattern, behind a header of odd length so that the data is
 * not even 2-byte aligned in the mapping. */
static void decode_all_16(const char *dtype, double (*value)(unsigned), const char *name)
{
	unsigned char *data = malloc(2 * 65536);
	for (unsigned c = 0; c < 65536; c++) {
		data[2 * c] = (unsigned char)(c & 0xff);
		data[2 * c + 1] = (unsigned char)(c >> 8);
	}
	char header[160];
	snprintf(header, sizeof header,
	         "{\"all\":{\"dtype\":\"%s\",\"shape\":[256,256],\"data_offsets\":[0,131072]}}",
	         dtype);
	if (strlen(header) % 2 == 0)
		strcat(header, " ");
	const char *path = write_raw(name, header, data, 2 * 65536);
	free(data);

	struct st_file *f = open_ok(path);
	const struct st_tensor *t = safetensors_find(f, "all");
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq((uintptr_t)t->data % 2, 1);
	float *out = malloc(65536 * sizeof *out);
	struct igs_error err = {0};
	ck_assert_int_eq(safetensors_read_f32(t, out, &err), 0);
	for (unsigned c = 0; c < 65536; c++)
		assert_same_float(out[c], value(c), c, (float)c);
	free(out);
	safetensors_close(&f);
}

START_TEST(test_decode_every_f16)
{
	decode_all_16("F16", naive_f16_value, "all_f16.safetensors");
}
END_TEST

START_TEST(test_decode_every_bf16)
{
	decode_all_16("BF16", naive_bf16_value, "all_bf16.safetensors");
}
END_TEST

START_TEST(test_decode_f64_unaligned)
{
	const double v[] = {1.5, -2.25, 0.1, 1e300, -1e-50, 65504.0};
	unsigned char data[sizeof v];
	for (size_t i = 0; i < 6; i++) {
		uint64_t u;
		memcpy(&u, &v[i], 8);
		for (int k = 0; k < 8; k++)
			data[8 * i + k] = (unsigned char)(u >> (8 * k));
	}
	/* 51-byte header: data at byte 59 */
	const char *hdr = "{\"d\":{\"dtype\":\"F64\",\"shape\":[6],\"data_offsets\":[0,48]}}";
	const char *path = write_raw("f64.safetensors", hdr, data, sizeof data);
	struct st_file *f = open_ok(path);
	const struct st_tensor *t = safetensors_find(f, "d");
	ck_assert_uint_ne((uintptr_t)t->data % 8, 0);
	float out[6];
	struct igs_error err = {0};
	ck_assert_int_eq(safetensors_read_f32(t, out, &err), 0);
	ck_assert_float_eq(out[0], 1.5f);
	ck_assert_float_eq(out[1], -2.25f);
	ck_assert_float_eq(out[2], 0.1f); /* nearest float to 0.1 */
	ck_assert(isinf(out[3]) && out[3] > 0);
	ck_assert(out[4] == 0.0f && signbit(out[4]));
	ck_assert_float_eq(out[5], 65504.0f);
	safetensors_close(&f);
}
END_TEST

/* torchvision state dicts carry num_batches_tracked as I64: the header
 * parses, only conversion to float refuses it. */
START_TEST(test_i64_parses_but_does_not_read_as_float)
{
	unsigned char data[8 + 16] = {0};
	data[0] = 42; /* I64 scalar 42 */
	memcpy(data + 8, (float[]){1.0f, 2.0f, 3.0f, 4.0f}, 16);
	const char *hdr =
	    "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"},"
	    "\"bn1.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],"
	    "\"data_offsets\":[0,8]},"
	    "\"bn1.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}";
	const char *path = write_raw("i64.safetensors", hdr, data, sizeof data);
	struct st_file *f = open_ok(path);
	ck_assert_uint_eq(safetensors_count(f), 2);
	ck_assert_str_eq(safetensors_metadata(f, "format"), "pt");
	ck_assert_str_eq(safetensors_metadata(f, "note"), "x");
	ck_assert_ptr_null(safetensors_metadata(f, "missing"));
	ck_assert_ptr_null(safetensors_find(f, "__metadata__"));

	const struct st_tensor *t = safetensors_find(f, "bn1.num_batches_tracked");
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(t->dtype, ST_I64);
	ck_assert_int_eq(t->ndim, 0);
	ck_assert_int_eq(t->numel, 1);
	ck_assert_uint_eq(t->nbytes, 8);
	ck_assert_int_eq(((const unsigned char *)t->data)[0], 42);
	float out[4];
	struct igs_error err = {0};
	ck_assert_int_eq(safetensors_read_f32(t, out, &err), IGS_ERR_FORMAT);
	ck_assert_int_eq(err.code, IGS_ERR_FORMAT);
	ck_assert_ptr_nonnull(strstr(err.message, "bn1.num_batches_tracked"));
	ck_assert_ptr_nonnull(strstr(err.message, "I64"));

	t = safetensors_find(f, "bn1.weight");
	ck_assert_int_eq(safetensors_read_f32(t, out, &err), 0);
	ck_assert_float_eq(out[3], 4.0f);
	safetensors_close(&f);
}
END_TEST

START_TEST(test_dtype_table)
{
	/* Sizes from the safetensors spec, one per enum value. */
	const struct {
		enum st_dtype d;
		const char *name;
		size_t size;
	} want[] = {
	    {ST_BOOL, "BOOL", 1}, {ST_U8, "U8", 1},           {ST_I8, "I8", 1},
	    {ST_I16, "I16", 2},   {ST_U16, "U16", 2},         {ST_F16, "F16", 2},
	    {ST_BF16, "BF16", 2}, {ST_I32, "I32", 4},         {ST_U32, "U32", 4},
	    {ST_F32, "F32", 4},   {ST_F64, "F64", 8},         {ST_I64, "I64", 8},
	    {ST_U64, "U64", 8},   {ST_F8_E4M3, "F8_E4M3", 1}, {ST_F8_E5M2, "F8_E5M2", 1},
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		ck_assert_str_eq(safetensors_dtype_name(want[i].d), want[i].name);
		ck_assert_uint_eq(safetensors_dtype_size(want[i].d), want[i].size);
	}
	ck_assert_uint_eq(safetensors_dtype_size((enum st_dtype)99), 0);

	/* Each dtype name is accepted in a header with its element size. */
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		char hdr[128], name[64];
		snprintf(hdr, sizeof hdr,
		         "{\"t\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[0,%zu]}}",
		         want[i].name, 3 * want[i].size);
		snprintf(name, sizeof name, "dtype_%s.safetensors", want[i].name);
		unsigned char data[24] = {0};
		struct st_file *f = open_ok(write_raw(name, hdr, data, 3 * want[i].size));
		ck_assert_int_eq(safetensors_find(f, "t")->dtype, want[i].d);
		safetensors_close(&f);
	}
}
END_TEST

START_TEST(test_many_tensors_find)
{
	/* resnet-sized name set, written in reverse-alphabetical order so
	 * that file order and name order differ */
	enum { N = 320 };
	struct st_write_tensor w[N];
	char names[N][32];
	float vals[N];
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof names[i], "layer.%03d.weight", N - 1 - i);
		vals[i] = (float)i;
		w[i] = (struct st_write_tensor){
		    .name = names[i], .ndim = 1, .shape = {1}, .data = &vals[i], .dtype = ST_F32};
	}
	const char *path = tmp_path("many.safetensors");
	struct igs_error err = {0};
	ck_assert_int_eq(safetensors_write(path, w, N, &err), 0);
	struct st_file *f = open_ok(path);
	ck_assert_uint_eq(safetensors_count(f), N);
	for (int i = 0; i < N; i++) {
		ck_assert_str_eq(safetensors_at(f, (size_t)i)->name, names[i]);
		const struct st_tensor *t = safetensors_find(f, names[i]);
		ck_assert_ptr_nonnull(t);
		float v;
		ck_assert_int_eq(safetensors_read_f32(t, &v, &err), 0);
		ck_assert_float_eq(v, (float)i);
	}
	safetensors_close(&f);
}
END_TEST

/* ======================================================================== */
/* 4. SHA-256                                                               */
/* ======================================================================== */

START_TEST(test_sha256_matches_sha256sum)
{
	float a[1000];
	for (int i = 0; i < 1000; i++)
		a[i] = sinf((float)i);
	struct st_write_tensor w = {
	    .name = "a", .ndim = 1, .shape = {1000}, .data = a, .dtype = ST_BF16};
	const char *path = tmp_path("sha.safetensors");
	struct igs_error err = {0};
	ck_assert_int_eq(safetensors_write(path, &w, 1, &err), 0);

	char cmd[512], want[65] = {0};
	snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(fscanf(p, "%64s", want), 1);
	ck_assert_int_eq(pclose(p), 0);

	struct st_file *f = open_ok(path);
	ck_assert_str_eq(safetensors_sha256(f), want);
	safetensors_close(&f);
}
END_TEST

START_TEST(test_sha256_known_answer)
{
	/* Fixed 69-byte file; digest verified once with sha256sum. */
	const char *hdr = "{\"k\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}";
	const char *path = write_raw("kat.safetensors", hdr, "ABCDEFGH", 8);
	struct st_file *f = open_ok(path);
	const char *got = safetensors_sha256(f);
	ck_assert_uint_eq(strlen(got), 64);
	ck_assert_str_eq(got, "eb5bd83de3f4ed794d471cb2f90b9caace068369de157d9b122527b317c1c8dd");
	safetensors_close(&f);
}
END_TEST

/* ======================================================================== */
/* 5. Malformed files                                                       */
/* ======================================================================== */

static const char f32x2_entry[] = "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

START_TEST(test_missing_file_and_directory)
{
	expect_fail(tmp_path("does-not-exist.safetensors"), IGS_ERR_IO, "cannot open",
	            "No such file");
	expect_fail(tmpdir, IGS_ERR_IO, "not a regular file", NULL);
}
END_TEST

START_TEST(test_empty_and_short_files)
{
	const char *p = tmp_path("empty.safetensors");
	write_bytes(p, "", 0);
	expect_fail(p, IGS_ERR_FORMAT, "empty", NULL);

	p = tmp_path("short.safetensors");
	write_bytes(p, "\x05\0\0", 3);
	expect_fail(p, IGS_ERR_FORMAT, "too short", NULL);
}
END_TEST

START_TEST(test_header_length_past_end)
{
	/* claims 100 header bytes, has 2 */
	expect_fail(write_raw_len("hlen_past.safetensors", 100, "{}", NULL, 0), IGS_ERR_FORMAT,
	            "header length 100", "past the end");
	/* off by one: claims 3, has 2 */
	expect_fail(write_raw_len("hlen_past1.safetensors", 3, "{}", NULL, 0), IGS_ERR_FORMAT,
	            "past the end", NULL);
	/* absurd: 2^63 (would overflow 8 + N) */
	expect_fail(write_raw_len("hlen_huge.safetensors", UINT64_C(1) << 63, "{}", NULL, 0),
	            IGS_ERR_FORMAT, "header length", "limit");
	expect_fail(write_raw_len("hlen_max.safetensors", UINT64_MAX, "{}", NULL, 0),
	            IGS_ERR_FORMAT, "header length", NULL);
}
END_TEST

START_TEST(test_header_not_json)
{
	expect_fail(write_raw("bad_json.safetensors", "{\"a\": {\"dtype\":", NULL, 0),
	            IGS_ERR_FORMAT, "not valid JSON", NULL);
	expect_fail(write_raw("zero_hlen.safetensors", "", NULL, 0), IGS_ERR_FORMAT,
	            "not valid JSON", NULL);
	expect_fail(write_raw("garbage.safetensors", "{} xyz", NULL, 0), IGS_ERR_FORMAT,
	            "after the JSON", NULL);
	/* an embedded NUL inside the header */
	expect_fail(write_raw_len("nul.safetensors", 4, "{}", "\0 ", 2), IGS_ERR_FORMAT,
	            "after the JSON", NULL);
	/* deep nesting is refused by cJSON's nesting limit, not a stack overflow */
	char deep[4200];
	size_t n = 0;
	deep[n++] = '{';
	deep[n++] = '"';
	deep[n++] = 'a';
	deep[n++] = '"';
	deep[n++] = ':';
	for (int i = 0; i < 2000; i++)
		deep[n++] = '[';
	deep[n] = '\0';
	expect_fail(write_raw("deep.safetensors", deep, NULL, 0), IGS_ERR_FORMAT, "not valid JSON",
	            NULL);
}
END_TEST

START_TEST(test_header_not_object)
{
	expect_fail(write_raw("array.safetensors", "[1, 2]", NULL, 0), IGS_ERR_FORMAT,
	            "not an object", NULL);
	expect_fail(write_raw("string.safetensors", "\"F32\"   ", NULL, 0), IGS_ERR_FORMAT,
	            "not an object", NULL);
	expect_fail(write_raw("entry_num.safetensors", "{\"w\": 5}", NULL, 0), IGS_ERR_FORMAT,
	            "'w'", "not a JSON object");
}
END_TEST

START_TEST(test_offsets_out_of_range)
{
	const char *hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
	expect_fail(write_raw("oob.safetensors", hdr, "12345678", 8), IGS_ERR_FORMAT, "'w'",
	            "past the end");
	hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[9,9]}}";
	expect_fail(write_raw("oob_empty.safetensors", hdr, "12345678", 8), IGS_ERR_FORMAT, "'w'",
	            "past the end");
	hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}";
	expect_fail(write_raw("reversed.safetensors", hdr, "12345678", 8), IGS_ERR_FORMAT, "'w'",
	            "end before");
	hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}";
	expect_fail(write_raw("one_off.safetensors", hdr, "12345678", 8), IGS_ERR_FORMAT, "'w'",
	            "[begin, end]");
	hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}";
	expect_fail(write_raw("neg_off.safetensors", hdr, "12345678", 8), IGS_ERR_FORMAT, "'w'",
	            "data_offsets");
	hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1e300]}}";
	expect_fail(write_raw("huge_off.safetensors", hdr, "12345678", 8), IGS_ERR_FORMAT, "'w'",
	            "data_offsets");
}
END_TEST

START_TEST(test_overlapping_offsets)
{
	const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
	expect_fail(write_raw("overlap.safetensors", hdr, "0123456789ab", 12), IGS_ERR_FORMAT,
	            "'b'", "overlaps tensor 'a'");
	/* one tensor inside another, listed first in the header */
	hdr = "{\"inner\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]},"
	      "\"outer\":{\"dtype\":\"U8\",\"shape\":[12],\"data_offsets\":[0,12]}}";
	expect_fail(write_raw("inside.safetensors", hdr, "0123456789ab", 12), IGS_ERR_FORMAT,
	            "'inner'", "'outer'");
	/* identical ranges */
	hdr = "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
	      "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
	expect_fail(write_raw("same.safetensors", hdr, "0123", 4), IGS_ERR_FORMAT, "overlaps",
	            NULL);
	/* adjacent ranges are fine, and so are empty tensors, which own no
	 * bytes: between two tensors or even inside one */
	hdr = "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
	      "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[4,4]},"
	      "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]},"
	      "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}";
	struct st_file *f = open_ok(write_raw("adjacent.safetensors", hdr, "01234567", 8));
	ck_assert_uint_eq(safetensors_count(f), 4);
	/* file order is data-offset order, not header order */
	ck_assert_str_eq(safetensors_at(f, 0)->name, "a");
	ck_assert_str_eq(safetensors_at(f, 1)->name, "z");
	ck_assert_str_eq(safetensors_at(f, 2)->name, "e");
	ck_assert_str_eq(safetensors_at(f, 3)->name, "b");
	ck_assert_int_eq(((const char *)safetensors_find(f, "b")->data)[0], '4');
	safetensors_close(&f);
}
END_TEST

START_TEST(test_offsets_do_not_match_shape)
{
	const char *hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
	expect_fail(write_raw("mismatch.safetensors", hdr, "0123456789ab", 12), IGS_ERR_FORMAT,
	            "'w'", "needs 12");
	hdr = "{\"w\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,12]}}";
	expect_fail(write_raw("mismatch16.safetensors", hdr, "0123456789ab", 12), IGS_ERR_FORMAT,
	            "'w'", "needs 8");
	/* shape far larger than the file, and a shape whose product overflows
	 * 64 bits: both rejected without wrapping */
	hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1000000,1000000],\"data_offsets\":[0,8]}}";
	expect_fail(write_raw("toobig.safetensors", hdr, "01234567", 8), IGS_ERR_FORMAT, "'w'",
	            "needs 4000000000000");
	hdr = "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,"
	      "0]}}";
	expect_fail(write_raw("overflow.safetensors", hdr, "", 0), IGS_ERR_FORMAT, "'w'",
	            "more elements");
	/* ...but a zero dimension makes any other dimension harmless */
	hdr = "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,0,4294967296],\"data_offsets\":[0,0]"
	      "}}";
	struct st_file *f = open_ok(write_raw("zero_dim.safetensors", hdr, "", 0));
	ck_assert_int_eq(safetensors_find(f, "w")->numel, 0);
	safetensors_close(&f);
}
END_TEST

START_TEST(test_unknown_dtype)
{
	const char *hdr =
	    "{\"fc.weight\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}";
	expect_fail(write_raw("dtype.safetensors", hdr, "0123456789abcdef", 16), IGS_ERR_FORMAT,
	            "unknown dtype 'F128' for tensor 'fc.weight'", NULL);
	hdr = "{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
	expect_fail(write_raw("dtype_lc.safetensors", hdr, "0123", 4), IGS_ERR_FORMAT,
	            "unknown dtype 'f32' for tensor 'w'", NULL);
	hdr = "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}";
	expect_fail(write_raw("dtype_num.safetensors", hdr, "0123", 4), IGS_ERR_FORMAT, "'w'",
	            "dtype");
}
END_TEST

START_TEST(test_bad_shapes)
{
	const char *cases[][2] = {
	    {"shape_neg.safetensors", "[-1]"},     {"shape_frac.safetensors", "[1.5]"},
	    {"shape_str.safetensors", "[\"2\"]"},  {"shape_null.safetensors", "[null]"},
	    {"shape_nested.safetensors", "[[2]]"}, {"shape_huge.safetensors", "[1e30]"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char hdr[160];
		snprintf(
		    hdr, sizeof hdr,
		    "{\"conv1.weight\":{\"dtype\":\"U8\",\"shape\":%s,\"data_offsets\":[0,2]}}",
		    cases[i][1]);
		expect_fail(write_raw(cases[i][0], hdr, "01", 2), IGS_ERR_FORMAT, "'conv1.weight'",
		            "shape[0] is not a non-negative integer");
	}
	expect_fail(write_raw("shape_obj.safetensors",
	                      "{\"w\":{\"dtype\":\"U8\",\"shape\":{},\"data_offsets\":[0,0]}}", "",
	                      0),
	            IGS_ERR_FORMAT, "'w'", "not an array");
	expect_fail(write_raw("shape_9d.safetensors",
	                      "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
	                      "\"data_offsets\":[0,1]}}",
	                      "0", 1),
	            IGS_ERR_FORMAT, "'w'", "9 dimensions");
}
END_TEST

START_TEST(test_missing_fields)
{
	expect_fail(write_raw("no_dtype.safetensors",
	                      "{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", "0", 1),
	            IGS_ERR_FORMAT, "'w'", "no \"dtype\"");
	expect_fail(write_raw("no_shape.safetensors",
	                      "{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", "0", 1),
	            IGS_ERR_FORMAT, "'w'", "no \"shape\"");
	expect_fail(
	    write_raw("no_offs.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", "0", 1),
	    IGS_ERR_FORMAT, "'w'", "no \"data_offsets\"");
}
END_TEST

START_TEST(test_duplicate_tensor)
{
	char hdr[256];
	snprintf(hdr, sizeof hdr,
	         "{\"fc.bias\":%s,\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2],"
	         "\"data_offsets\":[8,16]}}",
	         f32x2_entry);
	expect_fail(write_raw("dup.safetensors", hdr, "0123456789abcdef", 16), IGS_ERR_FORMAT,
	            "'fc.bias'", "twice");
}
END_TEST

START_TEST(test_bad_metadata)
{
	char hdr[256];
	snprintf(hdr, sizeof hdr, "{\"__metadata__\":[1],\"w\":%s}", f32x2_entry);
	expect_fail(write_raw("meta_arr.safetensors", hdr, "01234567", 8), IGS_ERR_FORMAT,
	            "__metadata__", "not a JSON object");
	snprintf(hdr, sizeof hdr, "{\"__metadata__\":{\"epoch\":3},\"w\":%s}", f32x2_entry);
	expect_fail(write_raw("meta_num.safetensors", hdr, "01234567", 8), IGS_ERR_FORMAT,
	            "'epoch'", "not a string");
	snprintf(hdr, sizeof hdr, "{\"__metadata__\":{},\"w\":%s,\"__metadata__\":{}}",
	         f32x2_entry);
	expect_fail(write_raw("meta_twice.safetensors", hdr, "01234567", 8), IGS_ERR_FORMAT,
	            "__metadata__", "twice");
}
END_TEST

START_TEST(test_header_only_file)
{
	/* A valid file with no tensors at all (8 bytes of length + "{}"). */
	struct st_file *f = open_ok(write_raw("none.safetensors", "{}      ", NULL, 0));
	ck_assert_uint_eq(safetensors_count(f), 0);
	ck_assert_ptr_null(safetensors_at(f, 0));
	ck_assert_ptr_null(safetensors_find(f, "x"));
	ck_assert_uint_eq(strlen(safetensors_sha256(f)), 64);
	safetensors_close(&f);
}
END_TEST

/* Every truncation of a valid file fails cleanly (never crashes). */
START_TEST(test_every_truncation_fails_cleanly)
{
	float a[6] = {1, 2, 3, 4, 5, 6};
	struct st_write_tensor w[] = {
	    {.name = "a", .ndim = 2, .shape = {2, 3}, .data = a, .dtype = ST_F32},
	    {.name = "b", .ndim = 1, .shape = {6}, .data = a, .dtype = ST_F16},
	};
	const char *path = tmp_path("full.safetensors");
	struct igs_error err = {0};
	ck_assert_int_eq(safetensors_write(path, w, 2, &err), 0);
	FILE *fp = fopen(path, "rb");
	unsigned char buf[512];
	size_t n = fread(buf, 1, sizeof buf, fp);
	fclose(fp);
	ck_assert_uint_lt(n, sizeof buf);
	const char *cut = tmp_path("cut.safetensors");
	for (size_t len = 0; len < n; len++) {
		write_bytes(cut, buf, len);
		expect_fail(cut, IGS_ERR_FORMAT, NULL, NULL);
	}
	write_bytes(cut, buf, n);
	struct st_file *f = open_ok(cut);
	safetensors_close(&f);
}
END_TEST

/* ======================================================================== */
/* 6. Writer errors                                                         */
/* ======================================================================== */

START_TEST(test_write_errors)
{
	float x[2] = {1, 2};
	struct igs_error err = {0};
	struct st_write_tensor w[2] = {
	    {.name = "x", .ndim = 1, .shape = {2}, .data = x, .dtype = ST_I64},
	    {.name = "x", .ndim = 1, .shape = {2}, .data = x, .dtype = ST_F32},
	};
	const char *path = tmp_path("werr.safetensors");
	ck_assert_int_eq(safetensors_write(path, w, 1, &err), IGS_ERR_FORMAT);
	ck_assert_ptr_nonnull(strstr(err.message, "'x'"));

	w[0].dtype = ST_F16;
	ck_assert_int_eq(safetensors_write(path, w, 2, &err), IGS_ERR_FORMAT);
	ck_assert_ptr_nonnull(strstr(err.message, "twice"));

	w[0].shape[0] = -2;
	ck_assert_int_eq(safetensors_write(path, w, 1, &err), IGS_ERR_FORMAT);
	ck_assert_ptr_nonnull(strstr(err.message, "shape"));
	w[0].shape[0] = 2;
	w[0].name = "__metadata__";
	ck_assert_int_eq(safetensors_write(path, w, 1, &err), IGS_ERR_FORMAT);
	ck_assert(access(path, F_OK) != 0); /* nothing written on failure */

	w[0].name = "x";
	const char *nodir = tmp_path("no/such/dir/out.safetensors");
	ck_assert_int_eq(safetensors_write(nodir, w, 1, &err), IGS_ERR_IO);
	ck_assert_ptr_nonnull(strstr(err.message, nodir));
}
END_TEST

START_TEST(test_write_replaces_existing_file)
{
	const char *path = tmp_path("replace.safetensors");
	write_bytes(path, "old contents", 12);
	float x[3] = {1, 2, 3};
	struct st_write_tensor w = {
	    .name = "x", .ndim = 1, .shape = {3}, .data = x, .dtype = ST_F32};
	struct igs_error err = {0};
	ck_assert_int_eq(safetensors_write(path, &w, 1, &err), 0);
	struct st_file *f = open_ok(path);
	float out[3];
	ck_assert_int_eq(safetensors_read_f32(safetensors_find(f, "x"), out, &err), 0);
	ck_assert_mem_eq(out, x, sizeof x);
	safetensors_close(&f);
}
END_TEST

int main(void)
{
	strcpy(tmpdir, "/tmp/igs-safetensors-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	Suite *s = suite_create("safetensors");
	TCase *tc = tcase_create("roundtrip");
	tcase_add_test(tc, test_roundtrip_f32);
	tcase_add_test(tc, test_roundtrip_f16_rounds_to_nearest_even);
	tcase_add_test(tc, test_roundtrip_bf16_rounds_to_nearest_even);
	tcase_add_test(tc, test_reference_rounding_cases);
	tcase_add_test(tc, test_many_tensors_find);
	suite_add_tcase(s, tc);

	tc = tcase_create("decode");
	tcase_add_test(tc, test_decode_every_f16);
	tcase_add_test(tc, test_decode_every_bf16);
	tcase_add_test(tc, test_decode_f64_unaligned);
	tcase_add_test(tc, test_i64_parses_but_does_not_read_as_float);
	tcase_add_test(tc, test_dtype_table);
	tcase_add_test(tc, test_sha256_matches_sha256sum);
	tcase_add_test(tc, test_sha256_known_answer);
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_add_test(tc, test_missing_file_and_directory);
	tcase_add_test(tc, test_empty_and_short_files);
	tcase_add_test(tc, test_header_length_past_end);
	tcase_add_test(tc, test_header_not_json);
	tcase_add_test(tc, test_header_not_object);
	tcase_add_test(tc, test_offsets_out_of_range);
	tcase_add_test(tc, test_overlapping_offsets);
	tcase_add_test(tc, test_offsets_do_not_match_shape);
	tcase_add_test(tc, test_unknown_dtype);
	tcase_add_test(tc, test_bad_shapes);
	tcase_add_test(tc, test_missing_fields);
	tcase_add_test(tc, test_duplicate_tensor);
	tcase_add_test(tc, test_bad_metadata);
	tcase_add_test(tc, test_header_only_file);
	tcase_add_test(tc, test_every_truncation_fails_cleanly);
	tcase_add_test(tc, test_write_errors);
	tcase_add_test(tc, test_write_replaces_existing_file);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	rm_tree(tmpdir);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
