/*
 * test_tfbundle.c - the TensorFlow TensorBundle V2 reader (src/weights/tfbundle.h).
 *
 * Contents:
 *   1. Helpers            temp dir, file copies, byte patches, a tiny
 *                         independent table walker to find blocks to corrupt
 *   2. CRC32C             known answers, SSE4.2 and table paths agree
 *   3. TensorFlow's files ../shared/testdata/tf-checkpoints, values from its README
 *   4. Python-written     tests/fixtures/tfbundle: many blocks, restart points,
 *                         two shards, snappy, half and bfloat16
 *   5. Prefix resolution  PREFIX, PREFIX.index, DIR/checkpoint, SavedModel dirs
 *   6. Hostile files      flipped bytes, truncations, magic, shards, CRCs, varints
 */
#define _XOPEN_SOURCE 700
#include <check.h>
#include <ftw.h>
#include <math.h>
#include <snappy-c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tfbundle.h"

/* ======================================================================== */
/* 1. Helpers                                                               */
/* ======================================================================== */

static char tmpdir[64];

static const char *tmp_path(const char *name)
{
	static char buf[8][512];
	static int slot;
	char *p = buf[slot++ % 8];
	snprintf(p, 512, "%s/%s", tmpdir, name);
	return p;
}

static unsigned char *read_file(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	ck_assert_msg(fp != NULL, "cannot open %s", path);
	fseek(fp, 0, SEEK_END);
	long n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	unsigned char *buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

static void write_file(const char *path, const void *bytes, size_t n)
{
	FILE *fp = fopen(path, "wb");
	ck_assert_msg(fp != NULL, "cannot create %s", path);
	if (n)
		ck_assert_uint_eq(fwrite(bytes, 1, n, fp), n);
	ck_assert_int_eq(fclose(fp), 0);
}

static void copy_file(const char *from, const char *to)
{
	size_t n;
	unsigned char *b = read_file(from, &n);
	write_file(to, b, n);
	free(b);
}

static const char *fixtures_dir(void)
{
	const char *d = getenv("IGSERVE_FIXTURES");
	return d ? d : "tests/fixtures";
}

/* The shared TensorFlow-written folder, or NULL (with a message) when absent. */
static const char *tf_dir(void)
{
	static char buf[512];
	const char *root = getenv("IGSERVE_SHARED_TESTDATA");
	snprintf(buf, sizeof buf, "%s/tf-checkpoints", root ? root : "../shared/testdata");
	struct stat st;
	if (stat(buf, &st) != 0) {
		fprintf(stderr, "test_tfbundle: %s absent, skipping TensorFlow-written files\n",
		        buf);
		return NULL;
	}
	return buf;
}

/* Copy a bundle (index and its shards) to the temp dir under `name`. */
static const char *copy_bundle(const char *src_prefix, int shards, const char *name)
{
	char from[600], to[600];
	const char *dst = tmp_path(name);
	snprintf(from, sizeof from, "%s.index", src_prefix);
	snprintf(to, sizeof to, "%s.index", dst);
	copy_file(from, to);
	for (int s = 0; s < shards; s++) {
		snprintf(from, sizeof from, "%s.data-%05d-of-%05d", src_prefix, s, shards);
		snprintf(to, sizeof to, "%s.data-%05d-of-%05d", dst, s, shards);
		copy_file(from, to);
	}
	return dst;
}

/* Opening must fail with IGS_ERR_FORMAT/IO and a message holding `what`. */
static void expect_open_fails(const char *path, const char *what)
{
	struct tfb_file *f = (struct tfb_file *)1;
	struct igs_error err = {0};
	int rc = tfbundle_open(&f, path, &err);
	ck_assert_msg(rc < 0, "%s opened, expected an error with '%s'", path, what);
	ck_assert_ptr_null(f);
	ck_assert_msg(strstr(err.message, what) != NULL, "message '%s' lacks '%s'", err.message,
	              what);
}

static struct tfb_file *open_ok(const char *path)
{
	struct tfb_file *f = NULL;
	struct igs_error err = {0};
	int rc = tfbundle_open(&f, path, &err);
	ck_assert_msg(rc == 0, "%s: %s", path, err.message);
	return f;
}

static float read_scalar(const struct tfb_file *f, const char *name)
{
	const struct tfb_tensor *t = tfbundle_find(f, name);
	ck_assert_msg(t != NULL, "no tensor %s", name);
	ck_assert_int_eq(t->numel, 1);
	float v = NAN;
	struct igs_error err;
	ck_assert_int_eq(tfbundle_read_f32(f, t, &v, &err), 0);
	return v;
}

/* An independent varint decoder for the tests' own table walk. */
static uint64_t get_varint(const unsigned char **p)
{
	uint64_t v = 0;
	for (int s = 0;; s += 7) {
		unsigned char b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << s;
		if (!(b & 0x80))
			return v;
	}
}

/* The index block's handle from the footer, and the first data block's
 * handle from the index block's first entry (decompressed when snappy). */
static void table_handles(const unsigned char *idx, size_t len, uint64_t *index_off,
                          uint64_t *index_size, uint64_t *data_off, uint64_t *data_size)
{
	const unsigned char *p = idx + len - 48;
	get_varint(&p);
	get_varint(&p);
	*index_off = get_varint(&p);
	*index_size = get_varint(&p);
	static char plain[1 << 16];
	p = idx + *index_off;
	if (idx[*index_off + *index_size] == 1) {
		size_t n = sizeof plain;
		ck_assert_int_eq(snappy_uncompress((const char *)p, *index_size, plain, &n),
		                 SNAPPY_OK);
		p = (const unsigned char *)plain;
	}
	ck_assert_int_eq(get_varint(&p), 0); /* shared */
	uint64_t nkey = get_varint(&p);
	get_varint(&p);
	p += nkey;
	*data_off = get_varint(&p);
	*data_size = get_varint(&p);
}

static void store_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* Recompute the trailer CRC of an uncompressed block after a patch, so the
 * reader gets past the block check to the problem planted inside. */
static void fix_block_crc(unsigned char *idx, uint64_t off, uint64_t size)
{
	uint32_t crc = tfbundle_crc32c(0, idx + off, size + 1);
	store_le32(idx + off + size + 1, tfbundle_crc_mask(crc));
}

/* ======================================================================== */
/* 2. CRC32C                                                                */
/* ======================================================================== */

static uint32_t crc_bitwise(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffffu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ ((c & 1) ? 0x82f63b78u : 0);
	}
	return ~c;
}

START_TEST(test_crc32c_known_answers)
{
	ck_assert_uint_eq(tfbundle_crc32c(0, "123456789", 9), 0xe3069283u);
	ck_assert_uint_eq(tfbundle_crc32c(0, "", 0), 0);
	unsigned char zeros[32] = {0};
	ck_assert_uint_eq(tfbundle_crc32c(0, zeros, 32), 0x8a9136aau); /* RFC 3720 B.4 */
	/* every length 0..300 and an odd start, against a bitwise reference,
	 * and continued in two pieces */
	unsigned char buf[301];
	for (int i = 0; i < 301; i++)
		buf[i] = (unsigned char)(i * 131 + 7);
	for (size_t n = 0; n < 300; n++) {
		ck_assert_uint_eq(tfbundle_crc32c(0, buf + 1, n), crc_bitwise(buf + 1, n));
		uint32_t a = tfbundle_crc32c(0, buf + 1, n / 3);
		ck_assert_uint_eq(tfbundle_crc32c(a, buf + 1 + n / 3, n - n / 3),
		                  crc_bitwise(buf + 1, n));
	}
	/* TensorFlow's mask of the CRC of float 0.5, as the testdata index stores it */
	const unsigned char half[4] = {0, 0, 0, 0x3f};
	ck_assert_uint_eq(tfbundle_crc_mask(tfbundle_crc32c(0, half, 4)), 0x1f273806u);
}
END_TEST

/* ======================================================================== */
/* 3. TensorFlow's files                                                    */
/* ======================================================================== */

static struct tfb_file *open_tf(const char *folder)
{
	char path[600];
	snprintf(path, sizeof path, "%s/%s", tf_dir(), folder);
	return open_ok(path); /* a directory holding variables.index */
}

static void check_float(const struct tfb_file *f, const char *name, int ndim, const int64_t *shape,
                        float value, int64_t offset)
{
	const struct tfb_tensor *t = tfbundle_find(f, name);
	ck_assert_msg(t != NULL, "no tensor %s", name);
	ck_assert_int_eq(t->dtype, TFB_DT_FLOAT);
	ck_assert_int_eq(t->ndim, ndim);
	for (int d = 0; d < ndim; d++)
		ck_assert_int_eq(t->shape[d], shape[d]);
	ck_assert_int_eq(t->shard, 0);
	ck_assert_uint_eq(t->nbytes, 4);
	if (offset >= 0)
		ck_assert_uint_eq(t->offset, (uint64_t)offset);
	ck_assert_float_eq(read_scalar(f, name), value);
}

START_TEST(test_tf_half_plus_three)
{
	if (!tf_dir())
		return;
	struct tfb_file *f = open_tf("saved_model_half_plus_three");
	ck_assert_int_eq(tfbundle_num_shards(f), 1);
	ck_assert_uint_eq(tfbundle_count(f), 3);
	ck_assert_str_eq(tfbundle_at(f, 0)->name, "a");
	ck_assert_str_eq(tfbundle_at(f, 2)->name, "c");
	check_float(f, "a", 0, NULL, 0.5f, 0);
	check_float(f, "b", 0, NULL, 3.0f, 4);
	check_float(f, "c", 0, NULL, 3.0f, 8);
	ck_assert_ptr_null(tfbundle_find(f, "d"));
	ck_assert_ptr_null(tfbundle_find(f, ""));
	tfbundle_close(&f);
	ck_assert_ptr_null(f);
}
END_TEST

START_TEST(test_tf_half_plus_two_mkl)
{
	if (!tf_dir())
		return;
	struct tfb_file *f = open_tf("saved_model_half_plus_two_mkl");
	ck_assert_uint_eq(tfbundle_count(f), 9);
	const int64_t one[1] = {1}, k[4] = {1, 1, 1, 1};
	check_float(f, "a", 0, NULL, 0.5f, -1);
	check_float(f, "b", 0, NULL, 2.0f, -1);
	check_float(f, "c", 0, NULL, 3.0f, -1);
	check_float(f, "conv2d/bias", 1, one, 0.0f, -1);
	check_float(f, "conv2d/kernel", 4, k, -0.5223959684371948f, -1);
	check_float(f, "conv2d_1/bias", 1, one, 0.0f, -1);
	check_float(f, "conv2d_1/kernel", 4, k, -1.0451120138168335f, -1);
	check_float(f, "conv2d_2/bias", 1, one, 0.0f, -1);
	check_float(f, "conv2d_2/kernel", 4, k, 1.577943205833435f, -1);
	tfbundle_close(&f);
}
END_TEST

START_TEST(test_tf_half_plus_two_cpu_snappy)
{
	if (!tf_dir())
		return;
	struct tfb_file *f = open_tf("saved_model_half_plus_two_cpu");
	ck_assert_uint_eq(tfbundle_count(f), 5);
	check_float(f, "a", 0, NULL, 0.5f, 0);
	check_float(f, "a2", 0, NULL, 0.5f, 4);
	check_float(f, "b", 0, NULL, 2.0f, 8);
	check_float(f, "c", 0, NULL, 3.0f, 12);
	check_float(f, "c2", 0, NULL, 3.0f, 16);
	tfbundle_close(&f);
}
END_TEST

START_TEST(test_tf_tf2_object_graph_string)
{
	if (!tf_dir())
		return;
	struct tfb_file *f = open_tf("saved_model_half_plus_two_tf2_cpu");
	ck_assert_uint_eq(tfbundle_count(f), 4);
	const struct tfb_tensor *g = tfbundle_find(f, "_CHECKPOINTABLE_OBJECT_GRAPH");
	ck_assert_ptr_nonnull(g);
	ck_assert_int_eq(g->dtype, TFB_DT_STRING);
	ck_assert_int_eq(g->ndim, 0);
	ck_assert_uint_eq(g->offset, 12);
	ck_assert_uint_eq(g->nbytes, 619);
	float v;
	struct igs_error err = {0};
	ck_assert_int_eq(tfbundle_read_f32(f, g, &v, &err), IGS_ERR_FORMAT);
	ck_assert_ptr_nonnull(strstr(err.message, "_CHECKPOINTABLE_OBJECT_GRAPH"));
	ck_assert_ptr_nonnull(strstr(err.message, "string"));
	check_float(f, "a/.ATTRIBUTES/VARIABLE_VALUE", 0, NULL, 0.5f, -1);
	check_float(f, "b/.ATTRIBUTES/VARIABLE_VALUE", 0, NULL, 2.0f, -1);
	check_float(f, "c/.ATTRIBUTES/VARIABLE_VALUE", 0, NULL, 3.0f, -1);
	tfbundle_close(&f);
}
END_TEST

/* ======================================================================== */
/* 4. Python-written bundles                                                */
/* ======================================================================== */

static const char *fixture_prefix(const char *name)
{
	static char buf[4][600];
	static int slot;
	char *p = buf[slot++ % 4];
	snprintf(p, 600, "%s/tfbundle/%s", fixtures_dir(), name);
	return p;
}

/* The contents make_tfbundle_fixtures.py documents. */
static void check_fixture_contents(const struct tfb_file *f, int shards)
{
	ck_assert_int_eq(tfbundle_num_shards(f), shards);
	ck_assert_uint_eq(tfbundle_count(f), 43);
	struct igs_error err = {0};
	int k = 0, in_shard[2] = {0, 0};
	for (size_t i = 0; i < tfbundle_count(f); i++) {
		const struct tfb_tensor *t = tfbundle_at(f, i);
		if (i > 0)
			ck_assert_int_lt(strcmp(tfbundle_at(f, i - 1)->name, t->name), 0);
		ck_assert_ptr_eq(tfbundle_find(f, t->name), t);
		ck_assert_int_lt(t->shard, shards);
		in_shard[t->shard]++;
		if (strncmp(t->name, "group_", 6))
			continue;
		char want[64];
		snprintf(want, sizeof want, "group_%d/layer_%02d/kernel", k / 10, k % 10);
		ck_assert_str_eq(t->name, want);
		ck_assert_int_eq(t->ndim, 2);
		ck_assert_int_eq(t->shape[0], 2);
		ck_assert_int_eq(t->shape[1], 3);
		float v[6];
		ck_assert_int_eq(tfbundle_read_f32(f, t, v, &err), 0);
		for (int j = 0; j < 6; j++) /* k: its rank among the group tensors */
			ck_assert_float_eq(v[j], 100.0f * (float)k + 0.5f * (float)j);
		k++;
	}
	ck_assert_int_eq(k, 40);
	for (int s = 0; s < shards; s++)
		ck_assert_int_gt(in_shard[s], 0);

	const struct tfb_tensor *h = tfbundle_find(f, "half");
	ck_assert_int_eq(h->dtype, TFB_DT_HALF);
	float hv[4];
	ck_assert_int_eq(tfbundle_read_f32(f, h, hv, &err), 0);
	ck_assert_float_eq(hv[0], 1.0f);
	ck_assert_float_eq(hv[1], -2.0f);
	ck_assert_float_eq(hv[2], 0.5f);
	ck_assert_float_eq(hv[3], 65504.0f);
	const struct tfb_tensor *b = tfbundle_find(f, "bf16");
	ck_assert_int_eq(b->dtype, TFB_DT_BFLOAT16);
	float bv[3];
	ck_assert_int_eq(tfbundle_read_f32(f, b, bv, &err), 0);
	ck_assert_float_eq(bv[0], 1.0f);
	ck_assert_float_eq(bv[1], -3.5f);
	ck_assert_float_eq(bv[2], 0.15625f);
	const struct tfb_tensor *n = tfbundle_find(f, "ints");
	ck_assert_int_eq(n->dtype, TFB_DT_INT32);
	ck_assert_int_eq(tfbundle_read_f32(f, n, bv, &err), IGS_ERR_FORMAT);
	ck_assert_ptr_nonnull(strstr(err.message, "int32"));
}

START_TEST(test_fixture_multiblock_two_shards)
{
	const char *prefix = fixture_prefix("multiblock");
	/* the fixture really has many data blocks and restarts inside them */
	char path[700];
	snprintf(path, sizeof path, "%s.index", prefix);
	size_t len;
	unsigned char *idx = read_file(path, &len);
	uint64_t io, is, dof, ds;
	table_handles(idx, len, &io, &is, &dof, &ds);
	const unsigned char *ib = idx + io;
	uint32_t index_entries = ib[is - 4] | ib[is - 3] << 8;
	ck_assert_uint_ge(index_entries, 8);
	const unsigned char *db = idx + dof;
	ck_assert_uint_ge(db[ds - 4], 2); /* restart points in the first data block */
	free(idx);

	struct tfb_file *f = open_ok(prefix);
	check_fixture_contents(f, 2);
	tfbundle_close(&f);
}
END_TEST

START_TEST(test_fixture_snappy_blocks)
{
	struct tfb_file *f = open_ok(fixture_prefix("multiblock_snappy"));
	check_fixture_contents(f, 1);
	tfbundle_close(&f);
}
END_TEST

START_TEST(test_parse_index_memory)
{
	char path[700];
	snprintf(path, sizeof path, "%s.index", fixture_prefix("multiblock"));
	size_t len;
	unsigned char *idx = read_file(path, &len);
	struct tfb_file *f = NULL;
	struct igs_error err = {0};
	ck_assert_int_eq(tfbundle_parse_index_memory(&f, idx, len, "mem", &err), 0);
	ck_assert_uint_eq(tfbundle_count(f), 43);
	ck_assert_int_eq(tfbundle_num_shards(f), 2);
	ck_assert_ptr_null(tfbundle_at(f, 0)->data);
	float v[6];
	ck_assert_int_ne(tfbundle_read_f32(f, tfbundle_at(f, 5), v, &err), 0);
	tfbundle_close(&f);
	free(idx);
}
END_TEST

/* ======================================================================== */
/* 5. Prefix resolution                                                     */
/* ======================================================================== */

static void expect_prefix(const char *path, const char *want)
{
	char out[4200];
	struct igs_error err = {0};
	int rc = tfbundle_resolve_prefix(path, out, sizeof out, &err);
	ck_assert_msg(rc == 0, "%s: %s", path, err.message);
	ck_assert_str_eq(out, want);
	ck_assert(tfbundle_is_checkpoint(path));
}

START_TEST(test_resolve_prefix_and_index)
{
	const char *prefix = fixture_prefix("multiblock");
	expect_prefix(prefix, prefix);
	char with_index[700];
	snprintf(with_index, sizeof with_index, "%s.index", prefix);
	expect_prefix(with_index, prefix);
	struct tfb_file *f = open_ok(with_index);
	ck_assert_str_eq(tfbundle_prefix(f), prefix);
	tfbundle_close(&f);
}
END_TEST

START_TEST(test_resolve_checkpoint_file)
{
	ck_assert_int_eq(mkdir(tmp_path("ckdir"), 0755), 0);
	copy_bundle(fixture_prefix("multiblock"), 2, "ckdir/model.ckpt-225207");
	copy_bundle(fixture_prefix("multiblock_snappy"), 1, "ckdir/model.ckpt-100");
	/* the format tf.train.Saver writes; the first line names the latest */
	const char *text = "model_checkpoint_path: \"model.ckpt-225207\"\n"
	                   "all_model_checkpoint_paths: \"model.ckpt-100\"\n"
	                   "all_model_checkpoint_paths: \"model.ckpt-225207\"\n";
	write_file(tmp_path("ckdir/checkpoint"), text, strlen(text));
	expect_prefix(tmp_path("ckdir"), tmp_path("ckdir/model.ckpt-225207"));
	struct tfb_file *f = open_ok(tmp_path("ckdir"));
	ck_assert_int_eq(tfbundle_num_shards(f), 2);
	tfbundle_close(&f);

	/* an absolute path in the checkpoint file is taken as it is */
	char abs[1200];
	snprintf(abs, sizeof abs, "model_checkpoint_path: \"%s\"\n",
	         tmp_path("ckdir/model.ckpt-100"));
	write_file(tmp_path("ckdir/checkpoint"), abs, strlen(abs));
	expect_prefix(tmp_path("ckdir"), tmp_path("ckdir/model.ckpt-100"));

	/* naming a prefix that is not there, or nothing */
	const char *gone = "model_checkpoint_path: \"model.ckpt-9\"\n";
	write_file(tmp_path("ckdir/checkpoint"), gone, strlen(gone));
	expect_open_fails(tmp_path("ckdir"), "model.ckpt-9.index does not exist");
	const char *none = "all_model_checkpoint_paths: \"model.ckpt-100\"\n";
	write_file(tmp_path("ckdir/checkpoint"), none, strlen(none));
	expect_open_fails(tmp_path("ckdir"), "no model_checkpoint_path");
}
END_TEST

START_TEST(test_resolve_saved_model_dirs)
{
	ck_assert_int_eq(mkdir(tmp_path("sm"), 0755), 0);
	ck_assert_int_eq(mkdir(tmp_path("sm/variables"), 0755), 0);
	copy_bundle(fixture_prefix("multiblock_snappy"), 1, "sm/variables/variables");
	expect_prefix(tmp_path("sm"), tmp_path("sm/variables/variables"));
	expect_prefix(tmp_path("sm/variables"), tmp_path("sm/variables/variables"));
	struct tfb_file *f = open_ok(tmp_path("sm"));
	ck_assert_uint_eq(tfbundle_count(f), 43);
	tfbundle_close(&f);

	ck_assert_int_eq(mkdir(tmp_path("empty"), 0755), 0);
	expect_open_fails(tmp_path("empty"), "not a TensorFlow checkpoint");
	ck_assert(!tfbundle_is_checkpoint(tmp_path("empty")));
	expect_open_fails(tmp_path("no-such-prefix"), "no-such-prefix.index does not exist");
	ck_assert(!tfbundle_is_checkpoint(tmp_path("no-such-prefix")));
	write_file(tmp_path("model.safetensors"), "x", 1);
	ck_assert(!tfbundle_is_checkpoint(tmp_path("model.safetensors")));
}
END_TEST

/* ======================================================================== */
/* 6. Hostile files                                                         */
/* ======================================================================== */

/* A writable copy of a TensorFlow-written bundle (or the Python fixture when
 * the shared folder is absent) and its index bytes. */
static const char *hostile_copy(const char *name, unsigned char **idx, size_t *len)
{
	char src[700];
	if (tf_dir())
		snprintf(src, sizeof src, "%s/saved_model_half_plus_three/variables", tf_dir());
	else
		snprintf(src, sizeof src, "%s", fixture_prefix("multiblock_snappy"));
	const char *p = copy_bundle(src, 1, name);
	char path[700];
	snprintf(path, sizeof path, "%s.index", p);
	*idx = read_file(path, len);
	return p;
}

static void write_index(const char *prefix, const unsigned char *idx, size_t len)
{
	char path[700];
	snprintf(path, sizeof path, "%s.index", prefix);
	write_file(path, idx, len);
}

START_TEST(test_every_flipped_index_byte)
{
	size_t len;
	unsigned char *idx;
	const char *prefix = hostile_copy("flip", &idx, &len);
	struct tfb_file *good = open_ok(prefix);
	for (size_t i = 0; i < len; i++) {
		idx[i] ^= 0x20;
		write_index(prefix, idx, len);
		struct tfb_file *f = NULL;
		struct igs_error err = {0};
		int rc = tfbundle_open(&f, prefix, &err);
		if (i < len - 48) { /* blocks and their trailers: the block CRC catches it */
			ck_assert_msg(rc == IGS_ERR_FORMAT && strstr(err.message, "bad CRC32C") &&
			                  strstr(err.message, ".index"),
			              "byte %zu: rc %d '%s'", i, rc, err.message);
		} else if (i >= len - 8) {
			ck_assert_msg(rc == IGS_ERR_FORMAT && strstr(err.message, "bad magic"),
			              "byte %zu: '%s'", i, err.message);
		} else if (rc == 0) { /* footer padding: harmless, same contents */
			ck_assert_uint_eq(tfbundle_count(f), tfbundle_count(good));
			for (size_t t = 0; t < tfbundle_count(f); t++)
				ck_assert_uint_eq(tfbundle_at(f, t)->crc32c_masked,
				                  tfbundle_at(good, t)->crc32c_masked);
		} else {
			ck_assert_msg(err.message[0] != 0, "byte %zu: no message", i);
		}
		tfbundle_close(&f);
		idx[i] ^= 0x20;
	}
	tfbundle_close(&good);
	free(idx);
}
END_TEST

START_TEST(test_every_truncated_index)
{
	size_t len;
	unsigned char *idx;
	const char *prefix = hostile_copy("trunc", &idx, &len);
	for (size_t n = 0; n < len; n++) {
		write_index(prefix, idx, n);
		struct tfb_file *f = NULL;
		struct igs_error err = {0};
		int rc = tfbundle_open(&f, prefix, &err);
		ck_assert_msg(rc == IGS_ERR_FORMAT, "length %zu: rc %d", n, rc);
		ck_assert_msg(strstr(err.message, n < 48 ? "too short for the 48-byte table footer"
		                                         : "bad magic"),
		              "length %zu: '%s'", n, err.message);
	}
	free(idx);
}
END_TEST

START_TEST(test_bad_footer_varint)
{
	size_t len;
	unsigned char *idx;
	const char *prefix = hostile_copy("footer", &idx, &len);
	memset(idx + len - 48, 0xff, 10);
	write_index(prefix, idx, len);
	expect_open_fails(prefix, "bad varint in the table footer");
	free(idx);
}
END_TEST

START_TEST(test_data_shard_problems)
{
	const char *prefix = copy_bundle(fixture_prefix("multiblock"), 2, "shards");
	char shard[700];
	snprintf(shard, sizeof shard, "%s.data-00001-of-00002", prefix);
	size_t n;
	unsigned char *data = read_file(shard, &n);

	data[n / 2] ^= 1; /* a flipped byte in a tensor */
	write_file(shard, data, n);
	expect_open_fails(prefix, "bad CRC32C");
	expect_open_fails(prefix, "corrupt data");
	expect_open_fails(prefix, "data-00001-of-00002");
	data[n / 2] ^= 1;

	write_file(shard, data, n - 1); /* truncated shard */
	expect_open_fails(prefix, "runs past the shard's");
	write_file(shard, data, n);
	struct tfb_file *f = open_ok(prefix);
	tfbundle_close(&f);

	ck_assert_int_eq(unlink(shard), 0); /* missing shard */
	expect_open_fails(prefix, "shard missing");
	expect_open_fails(prefix, "data-00001-of-00002");
	free(data);
}
END_TEST

/* Find `pat` inside [from, from + n). */
static unsigned char *find_bytes(unsigned char *from, size_t n, const void *pat, size_t m)
{
	for (size_t i = 0; i + m <= n; i++)
		if (!memcmp(from + i, pat, m))
			return from + i;
	return NULL;
}

START_TEST(test_planted_entry_problems)
{
	if (!tf_dir())
		return; /* patches the uncompressed TensorFlow-written index */
	size_t len;
	unsigned char *idx;
	const char *prefix = hostile_copy("planted", &idx, &len);
	uint64_t io, is, dof, ds;
	table_handles(idx, len, &io, &is, &dof, &ds);
	unsigned char *orig = malloc(len);
	memcpy(orig, idx, len);

	/* entry "a": size 4 (28 04), crc32c fixed32 (35 06 38 27 1f) */
	const unsigned char crc_a[] = {0x35, 0x06, 0x38, 0x27, 0x1f};
	unsigned char *p = find_bytes(idx + dof, ds, crc_a, sizeof crc_a);
	ck_assert_ptr_nonnull(p);
	p[1] ^= 0x40; /* the index's tensor CRC no longer matches the data */
	fix_block_crc(idx, dof, ds);
	write_index(prefix, idx, len);
	expect_open_fails(prefix, "tensor 'a': bad CRC32C");
	memcpy(idx, orig, len);

	p = find_bytes(idx + dof, ds, crc_a, sizeof crc_a);
	ck_assert_int_eq(p[-1], 4);
	p[-1] = 8; /* size 8 for a float scalar */
	fix_block_crc(idx, dof, ds);
	write_index(prefix, idx, len);
	expect_open_fails(prefix, "8 bytes recorded");
	memcpy(idx, orig, len);

	/* the header value 08 01 ...: a group wire type instead of a varint */
	ck_assert_int_eq(idx[dof + 3], 0x08);
	idx[dof + 3] = 0x0b;
	fix_block_crc(idx, dof, ds);
	write_index(prefix, idx, len);
	expect_open_fails(prefix, "BundleHeaderProto is malformed");
	memcpy(idx, orig, len);

	/* a restart count larger than the block */
	store_le32(idx + dof + ds - 4, 1000);
	fix_block_crc(idx, dof, ds);
	write_index(prefix, idx, len);
	expect_open_fails(prefix, "restart points");
	memcpy(idx, orig, len);

	/* a restart point inside an entry */
	ck_assert_int_ge(idx[dof + ds - 4], 1);
	store_le32(idx + dof + ds - 8, 1);
	fix_block_crc(idx, dof, ds);
	write_index(prefix, idx, len);
	expect_open_fails(prefix, "not at an entry boundary");
	memcpy(idx, orig, len);

	/* an entry value running past the block: the first entry's value length */
	ck_assert_int_eq(idx[dof + 2], 6);
	idx[dof + 2] = 0x7f;
	fix_block_crc(idx, dof, ds);
	write_index(prefix, idx, len);
	expect_open_fails(prefix, "runs past the block's end");
	memcpy(idx, orig, len);

	/* a varint that never ends */
	memset(idx + dof, 0xff, 12 < ds ? 12 : ds);
	fix_block_crc(idx, dof, ds);
	write_index(prefix, idx, len);
	expect_open_fails(prefix, "bad varint");
	memcpy(idx, orig, len);

	/* unknown compression type with a matching CRC */
	idx[dof + ds] = 7;
	fix_block_crc(idx, dof, ds);
	write_index(prefix, idx, len);
	expect_open_fails(prefix, "compression type 7");

	free(orig);
	free(idx);
}
END_TEST

START_TEST(test_bad_snappy_block)
{
	const char *prefix = copy_bundle(fixture_prefix("multiblock_snappy"), 1, "snappy");
	char path[700];
	snprintf(path, sizeof path, "%s.index", prefix);
	size_t len;
	unsigned char *idx = read_file(path, &len);
	uint64_t io, is, dof, ds;
	table_handles(idx, len, &io, &is, &dof, &ds);
	ck_assert_int_eq(idx[dof + ds], 1); /* snappy */
	idx[dof] += 1;                      /* the uncompressed length, now a lie */
	fix_block_crc(idx, dof, ds);
	write_file(path, idx, len);
	expect_open_fails(prefix, "not valid snappy data");
	free(idx);
}
END_TEST

/* Mutated indexes from memory: never a crash, every failure explained. */
START_TEST(test_random_mutations_from_memory)
{
	char path[700];
	snprintf(path, sizeof path, "%s.index", fixture_prefix("multiblock_snappy"));
	size_t len;
	unsigned char *idx = read_file(path, &len);
	unsigned char *buf = malloc(len);
	uint64_t state = 0x9e3779b97f4a7c15ull;
	int failed = 0;
	for (int round = 0; round < 3000; round++) {
		memcpy(buf, idx, len);
		int flips = 1 + round % 4;
		for (int k = 0; k < flips; k++) {
			state = state * 6364136223846793005ull + 1442695040888963407ull;
			buf[(state >> 33) % len] = (unsigned char)(state >> 13);
		}
		size_t n = round % 5 == 0 ? (size_t)((state >> 20) % len) : len;
		struct tfb_file *f = NULL;
		struct igs_error err = {0};
		int rc = tfbundle_parse_index_memory(&f, buf, n, "mutant", &err);
		if (rc) {
			ck_assert_msg(err.message[0], "round %d: no message", round);
			ck_assert_ptr_null(f);
			failed++;
		}
		tfbundle_close(&f);
	}
	ck_assert_int_gt(failed, 2500);
	free(buf);
	free(idx);
}
END_TEST

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) ? 0 : 0;
}

int main(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_tfbundle.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	Suite *s = suite_create("tfbundle");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_crc32c_known_answers);
	tcase_add_test(tc, test_tf_half_plus_three);
	tcase_add_test(tc, test_tf_half_plus_two_mkl);
	tcase_add_test(tc, test_tf_half_plus_two_cpu_snappy);
	tcase_add_test(tc, test_tf_tf2_object_graph_string);
	tcase_add_test(tc, test_fixture_multiblock_two_shards);
	tcase_add_test(tc, test_fixture_snappy_blocks);
	tcase_add_test(tc, test_parse_index_memory);
	tcase_add_test(tc, test_resolve_prefix_and_index);
	tcase_add_test(tc, test_resolve_checkpoint_file);
	tcase_add_test(tc, test_resolve_saved_model_dirs);
	tcase_add_test(tc, test_every_flipped_index_byte);
	tcase_add_test(tc, test_every_truncated_index);
	tcase_add_test(tc, test_bad_footer_varint);
	tcase_add_test(tc, test_data_shard_problems);
	tcase_add_test(tc, test_planted_entry_problems);
	tcase_add_test(tc, test_bad_snappy_block);
	tcase_add_test(tc, test_random_mutations_from_memory);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
