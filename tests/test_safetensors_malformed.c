/*
 * test_safetensors_malformed.c - the .safetensors reader on malformed files
 * (each must fail with the right code and a message naming the file and the
 * problem, never crash) and the test writer's errors.  Round trips and
 * decoding: test_safetensors.c; helpers: safetensors_test_support.h.
 */
#include "safetensors_test_support.h"

/* ======================================================================== */
/* 1. Malformed files                                                       */
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
/* 2. Writer errors                                                         */
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
	Suite *s = suite_create("safetensors-malformed");
	TCase *tc;
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
	return safetensors_test_run(s, "/tmp/igs-safetensors-malformed-XXXXXX");
}
