/*
 * test_safetensors.c - the .safetensors reader and writer: round trips and
 * decoding (malformed files and writer errors: test_safetensors_malformed.c).
 *
 * Contents:
 *   1. Round trips        F32 / F16 / BF16 through safetensors_write + open
 *   2. Decoding           every F16 and BF16 bit pattern, F64, I64, metadata
 *   3. SHA-256            against sha256sum and a known digest
 * Helpers (temp dir, raw files, naive F16/BF16 references):
 * safetensors_test_support.h.
 */
#include "safetensors_test_support.h"

/* ======================================================================== */
/* 1. Round trips                                                           */
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
/* 2. Decoding                                                              */
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
/* 3. SHA-256                                                               */
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

int main(void)
{
	Suite *s = suite_create("safetensors");
	TCase *tc;
	tc = tcase_create("roundtrip");
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
	return safetensors_test_run(s, "/tmp/igs-safetensors-XXXXXX");
}
