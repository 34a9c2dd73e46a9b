/*
 * tfbundle.c - parse, map and verify TensorFlow TensorBundle V2 checkpoints.
 *
 * The byte layout is described in tfbundle.h.  Every length, offset and
 * varint is checked against the bytes that hold it, every block's and every
 * tensor's CRC32C is verified, so callers may trust tfb_tensor.data/nbytes.
 *
 * Contents:
 *   1. CRC32C              table-driven, SSE4.2 when the CPU has it
 *   2. Bounded reading     varints and little-endian loads from a cursor
 *   3. Table blocks        footer, block trailer, snappy, entries, restarts
 *   4. Protocol buffers    BundleHeaderProto, BundleEntryProto
 *   5. The index           walking the table into tfb_tensor records
 *   6. Shards              mmap, bounds, tensor checksums
 *   7. Prefix resolution   PREFIX, DIR/checkpoint, SavedModel directories
 *   8. Lookup and reading  count, at, find, tfbundle_read_f32
 */
#include "tfbundle.h"

#include <errno.h>
#include <fcntl.h>
#include <snappy-c.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"

#define TABLE_MAGIC 0xdb4775248b80fb57ull
#define FOOTER_BYTES 48
#define TRAILER_BYTES 5
/* Far above any real checkpoint (a ResNet-200's index is ~100 KB) and a
 * bound on what one decompressed block may claim. */
#define MAX_BLOCK_BYTES (256u << 20)
#define MAX_SHARDS 100000
#define MAX_KEY_BYTES 65536

/* ======================================================================== */
/* 1. CRC32C                                                                */
/* ======================================================================== */

static uint32_t crc_table[256];

static void crc_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
		crc_table[i] = c;
	}
}

static uint32_t crc32c_table(uint32_t c, const unsigned char *p, size_t n)
{
	while (n--)
		c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t c,
                                                               const unsigned char *p,
                                                               size_t n)
{
	uint64_t c64 = c;
	while (n >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c64 = __builtin_ia32_crc32di(c64, v);
		p += 8;
		n -= 8;
	}
	c = (uint32_t)c64;
	while (n--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}
#endif

uint32_t tfbundle_crc32c(uint32_t crc, const void *data, size_t n)
{
	static int mode; /* 0 unknown, 1 table, 2 sse4.2; benign race: same result */
	if (!mode) {
		crc_table_init();
		mode = 1;
#if defined(__x86_64__)
		if (__builtin_cpu_supports("sse4.2"))
			mode = 2;
#endif
	}
	uint32_t c = ~crc;
#if defined(__x86_64__)
	if (mode == 2)
		return ~crc32c_sse42(c, data, n);
#endif
	return ~crc32c_table(c, data, n);
}

uint32_t tfbundle_crc_mask(uint32_t crc)
{
	return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

/* ======================================================================== */
/* 2. Bounded reading                                                       */
/* ======================================================================== */

struct cursor {
	const unsigned char *p, *end;
};

static uint32_t load_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t load_le64(const unsigned char *p)
{
	return (uint64_t)load_le32(p) | (uint64_t)load_le32(p + 4) << 32;
}

/* A base-128 varint of at most 10 bytes that fits 64 bits; false when it
 * runs past the end or overflows. */
static bool read_varint(struct cursor *c, uint64_t *out)
{
	uint64_t v = 0;
	for (int i = 0; i < 10; i++) {
		if (c->p >= c->end)
			return false;
		unsigned char b = *c->p++;
		if (i == 9 && b > 1)
			return false;
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*out = v;
			return true;
		}
	}
	return false;
}

static bool read_varint32(struct cursor *c, uint32_t *out)
{
	uint64_t v;
	if (!read_varint(c, &v) || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* ======================================================================== */
/* 3. Table blocks                                                          */
/* ======================================================================== */

struct handle {
	uint64_t offset, size;
};

/* A block's contents: inside the index bytes, or `owned` when decompressed. */
struct block {
	const unsigned char *data;
	size_t size;
	unsigned char *owned;
};

static bool read_handle(struct cursor *c, struct handle *h)
{
	return read_varint(c, &h->offset) && read_varint(c, &h->size);
}

/* Check the trailer of the block at `h` (CRC of contents + type byte) and
 * decompress it when snappy. `what` is "index block", "data block 3", ... */
static int block_read(struct block *b, const unsigned char *file, size_t blocks_end,
                      struct handle h, const char *label, const char *what,
                      struct igs_error *err)
{
	memset(b, 0, sizeof *b);
	if (h.offset > blocks_end || h.size > blocks_end - h.offset ||
	    blocks_end - h.offset - h.size < TRAILER_BYTES)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: %s at offset %llu size %llu runs past the table's "
		                "%zu bytes of blocks (truncated?)",
		                label, what, (unsigned long long)h.offset,
		                (unsigned long long)h.size, blocks_end);
	const unsigned char *p = file + h.offset;
	const unsigned char type = p[h.size];
	const uint32_t stored = load_le32(p + h.size + 1);
	uint32_t crc = tfbundle_crc32c(0, p, h.size);
	crc = tfbundle_crc32c(crc, &type, 1);
	/* Fuzz builds (the libFuzzer convention's macro) look past the CRC so
	 * that mutations reach the block and record parsers behind it. */
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	if (tfbundle_crc_mask(crc) != stored)
#else
	if (tfbundle_crc_mask(crc) != stored && false)
#endif
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: %s at offset %llu: bad CRC32C (stored %08x, computed %08x)",
		                label, what, (unsigned long long)h.offset, stored,
		                tfbundle_crc_mask(crc));
	if (type == 0) {
		b->data = p;
		b->size = h.size;
		return 0;
	}
	if (type != 1)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: %s has compression type %u (known: 0 none, 1 snappy)", label,
		                what, type);
	size_t ulen;
	if (snappy_validate_compressed_buffer((const char *)p, h.size) != SNAPPY_OK ||
	    snappy_uncompressed_length((const char *)p, h.size, &ulen) != SNAPPY_OK)
		return igs_fail(err, IGS_ERR_FORMAT, "%s: %s is not valid snappy data", label,
		                what);
	if (ulen > MAX_BLOCK_BYTES)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: %s decompresses to %zu bytes, over the %u-byte limit", label,
		                what, ulen, MAX_BLOCK_BYTES);
	b->owned = malloc(ulen ? ulen : 1);
	if (!b->owned)
		return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory for %s", label, what);
	if (snappy_uncompress((const char *)p, h.size, (char *)b->owned, &ulen) != SNAPPY_OK) {
		free(b->owned);
		b->owned = NULL;
		return igs_fail(err, IGS_ERR_FORMAT, "%s: %s: snappy decompression failed",
		                label, what);
	}
	b->data = b->owned;
	b->size = ulen;
	return 0;
}

/* The key being rebuilt from prefix-compressed entries. */
struct key_buf {
	unsigned char *p;
	size_t len, cap;
};

typedef int (*entry_fn)(void *ctx, const struct key_buf *key, const unsigned char *value,
                        size_t vlen, struct igs_error *err);

/* Walk every entry of a block in order, checking the restart array: every
 * restart offset must be the start of an entry that shares no prefix. */
static int block_each(const struct block *b, struct key_buf *key, const char *label,
                      const char *what, entry_fn fn, void *ctx, struct igs_error *err)
{
	if (b->size < 4)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: %s of %zu bytes is too short for its restart count", label,
		                what, b->size);
	const uint32_t nrestarts = load_le32(b->data + b->size - 4);
	if (nrestarts > (b->size - 4) / 4)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: %s claims %u restart points, more than its %zu bytes hold",
		                label, what, nrestarts, b->size);
	const size_t entries_end = b->size - 4 - 4 * (size_t)nrestarts;
	const unsigned char *restarts = b->data + entries_end;
	if (entries_end > 0 && nrestarts == 0)
		return igs_fail(err, IGS_ERR_FORMAT, "%s: %s has entries but no restart points",
		                label, what);
	struct cursor c = {b->data, b->data + entries_end};
	uint32_t next_restart = 0;
	key->len = 0;
	while (c.p < c.end) {
		const size_t at = (size_t)(c.p - b->data);
		bool is_restart = false;
		if (next_restart < nrestarts) {
			uint32_t r = load_le32(restarts + 4 * next_restart);
			if (r < at)
				return igs_fail(err, IGS_ERR_FORMAT,
				                "%s: %s: restart point %u (offset %u) is not at an "
				                "entry boundary",
				                label, what, next_restart, r);
			is_restart = r == at;
		}
		uint32_t shared, non_shared, vlen;
		if (!read_varint32(&c, &shared) || !read_varint32(&c, &non_shared) ||
		    !read_varint32(&c, &vlen))
			return igs_fail(err, IGS_ERR_FORMAT,
			                "%s: %s: bad varint in the entry at offset %zu", label,
			                what, at);
		if ((is_restart || at == 0) && shared != 0)
			return igs_fail(err, IGS_ERR_FORMAT,
			                "%s: %s: entry at restart offset %zu shares %u key bytes",
			                label, what, at, shared);
		if (shared > key->len)
			return igs_fail(err, IGS_ERR_FORMAT,
			                "%s: %s: entry at offset %zu shares %u bytes of a %zu-byte "
			                "key",
			                label, what, at, shared, key->len);
		if ((size_t)(c.end - c.p) < (size_t)non_shared + vlen)
			return igs_fail(err, IGS_ERR_FORMAT,
			                "%s: %s: entry at offset %zu runs past the block's end",
			                label, what, at);
		const size_t klen = (size_t)shared + non_shared;
		if (klen > MAX_KEY_BYTES)
			return igs_fail(err, IGS_ERR_FORMAT,
			                "%s: %s: key of %zu bytes at offset %zu is over the limit",
			                label, what, klen, at);
		if (klen + 1 > key->cap) {
			unsigned char *np = realloc(key->p, klen + 1);
			if (!np)
				return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory for keys", label);
			key->p = np;
			key->cap = klen + 1;
		}
		memcpy(key->p + shared, c.p, non_shared);
		key->len = klen;
		key->p[klen] = 0;
		c.p += non_shared;
		int rc = fn(ctx, key, c.p, vlen, err);
		if (rc)
			return rc;
		c.p += vlen;
		if (is_restart)
			next_restart++;
	}
	/* an empty block (TensorFlow's metaindex) keeps its one restart at 0 */
	const bool empty_ok = entries_end == 0 && nrestarts == 1 && load_le32(restarts) == 0;
	if (next_restart != nrestarts && !empty_ok)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: %s: restart point %u is not at an entry boundary", label, what,
		                next_restart);
	return 0;
}

/* ======================================================================== */
/* 4. Protocol buffers                                                      */
/* ======================================================================== */

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_BYTES = 2, WT_FIXED32 = 5 };

struct field {
	uint32_t number;
	int wire;
	uint64_t value;             /* varint and fixed */
	const unsigned char *bytes; /* WT_BYTES */
	size_t len;
};

/* The next field of a message; 1 when there is one, 0 at the end, -1 when
 * the bytes are not a valid message. */
static int next_field(struct cursor *c, struct field *f)
{
	if (c->p >= c->end)
		return 0;
	uint64_t tag;
	if (!read_varint(c, &tag) || (tag >> 3) == 0 || (tag >> 3) > 536870911u)
		return -1;
	f->number = (uint32_t)(tag >> 3);
	f->wire = (int)(tag & 7);
	switch (f->wire) {
	case WT_VARINT:
		return read_varint(c, &f->value) ? 1 : -1;
	case WT_FIXED64:
		if (c->end - c->p < 8)
			return -1;
		f->value = load_le64(c->p);
		c->p += 8;
		return 1;
	case WT_FIXED32:
		if (c->end - c->p < 4)
			return -1;
		f->value = load_le32(c->p);
		c->p += 4;
		return 1;
	case WT_BYTES:
		if (!read_varint(c, &f->value) || f->value > (uint64_t)(c->end - c->p))
			return -1;
		f->bytes = c->p;
		f->len = (size_t)f->value;
		c->p += f->len;
		return 1;
	default: /* groups (3, 4) and reserved types: never in these messages */
		return -1;
	}
}

struct header {
	bool seen;
	int64_t num_shards;
	uint64_t endianness;
};

static int parse_header_proto(struct header *h, const unsigned char *v, size_t n,
                              const char *label, struct igs_error *err)
{
	struct cursor c = {v, v + n};
	struct field f;
	int r;
	h->num_shards = 0;
	h->endianness = 0;
	while ((r = next_field(&c, &f)) > 0) {
		if ((f.number == 1 || f.number == 2) && f.wire != WT_VARINT)
			return igs_fail(err, IGS_ERR_FORMAT,
			                "%s: BundleHeaderProto field %u has wire type %d, expected "
			                "a varint",
			                label, f.number, f.wire);
		if (f.number == 1)
			h->num_shards = (int64_t)f.value;
		else if (f.number == 2)
			h->endianness = f.value;
		/* 3 version (VersionDef): nothing a reader of V2 needs */
	}
	if (r < 0)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: the BundleHeaderProto is malformed (bad varint or length)",
		                label);
	if (h->num_shards < 1 || h->num_shards > MAX_SHARDS)
		return igs_fail(err, IGS_ERR_FORMAT, "%s: header gives %lld shards (1..%d)", label,
		                (long long)h->num_shards, MAX_SHARDS);
	if (h->endianness != 0)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: big-endian checkpoints are not supported (endianness %llu)",
		                label, (unsigned long long)h->endianness);
	h->seen = true;
	return 0;
}

/* Element size of a fixed-size dtype, 0 for strings, variants, resources and
 * unknown numbers (whose size the index cannot be checked against). */
static size_t dtype_size(int dtype)
{
	switch (dtype) {
	case TFB_DT_UINT8: case TFB_DT_INT8: case TFB_DT_BOOL: case 11: case 12:
		return 1;
	case TFB_DT_INT16: case TFB_DT_BFLOAT16: case 15: case 16: case TFB_DT_UINT16:
	case TFB_DT_HALF:
		return 2;
	case TFB_DT_FLOAT: case TFB_DT_INT32: case 13: case TFB_DT_UINT32:
		return 4;
	case TFB_DT_DOUBLE: case TFB_DT_COMPLEX64: case TFB_DT_INT64: case TFB_DT_UINT64:
		return 8;
	case TFB_DT_COMPLEX128:
		return 16;
	default:
		return 0;
	}
}

const char *tfbundle_dtype_name(int dtype)
{
	static const char *const names[] = {
	    [1] = "float",      [2] = "double",  [3] = "int32",       [4] = "uint8",
	    [5] = "int16",      [6] = "int8",    [7] = "string",      [8] = "complex64",
	    [9] = "int64",      [10] = "bool",   [11] = "qint8",      [12] = "quint8",
	    [13] = "qint32",    [14] = "bfloat16", [15] = "qint16",   [16] = "quint16",
	    [17] = "uint16",    [18] = "complex128", [19] = "half",   [20] = "resource",
	    [21] = "variant",   [22] = "uint32", [23] = "uint64",
	};
	if (dtype > 0 && dtype < (int)(sizeof names / sizeof names[0]) && names[dtype])
		return names[dtype];
	static _Thread_local char buf[24];
	snprintf(buf, sizeof buf, "dtype %d", dtype);
	return buf;
}

static int parse_shape(struct tfb_tensor *t, const unsigned char *v, size_t n)
{
	struct cursor c = {v, v + n};
	struct field f;
	int r;
	while ((r = next_field(&c, &f)) > 0) {
		if (f.number == 3 && f.wire == WT_VARINT && f.value)
			return -2; /* unknown rank */
		if (f.number != 2)
			continue;
		if (f.wire != WT_BYTES)
			return -1;
		if (t->ndim == TFB_MAX_DIMS)
			return -3;
		struct cursor dc = {f.bytes, f.bytes + f.len};
		struct field df;
		int64_t size = 0;
		while ((r = next_field(&dc, &df)) > 0)
			if (df.number == 1) {
				if (df.wire != WT_VARINT)
					return -1;
				size = (int64_t)df.value;
			}
		if (r < 0)
			return -1;
		if (size < 0)
			return -2;
		t->shape[t->ndim++] = size;
	}
	return r < 0 ? -1 : 0;
}

/* ======================================================================== */
/* 5. The index                                                             */
/* ======================================================================== */

struct shard {
	void *map;
	size_t size;
};

struct tfb_file {
	char *prefix;
	int num_shards;
	size_t count, cap;
	struct tfb_tensor *tensors; /* key order; names malloc'ed */
	unsigned char *index_copy;  /* parse-only: the bytes */
	struct shard *shards;       /* [num_shards] */
};

struct walk {
	struct tfb_file *f;
	struct header header;
	const char *label;
	unsigned char *last_key; /* the previous data key, for the order check */
	size_t last_len;
	bool any_key;
	/* index-block walk */
	const unsigned char *file;
	size_t blocks_end;
	struct key_buf data_key;
	size_t block_no;
};

static int key_cmp(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	return c ? c : (alen > blen) - (alen < blen);
}

static int entry_fail(struct igs_error *err, const char *label, const char *name,
                      const char *problem)
{
	return igs_fail(err, IGS_ERR_FORMAT, "%s: tensor '%s': %s", label, name, problem);
}

static int on_data_entry(void *ctx, const struct key_buf *key, const unsigned char *v,
                         size_t vlen, struct igs_error *err)
{
	struct walk *w = ctx;
	const char *label = w->label;
	if (w->any_key && key_cmp(key->p, key->len, w->last_key, w->last_len) <= 0)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: keys out of order at '%.*s' (a table's keys increase)",
		                label, (int)(key->len > 200 ? 200 : key->len), key->p);
	unsigned char *lk = realloc(w->last_key, key->len + 1);
	if (!lk)
		return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory for keys", label);
	memcpy(lk, key->p, key->len);
	w->last_key = lk;
	w->last_len = key->len;
	w->any_key = true;

	if (key->len == 0)
		return parse_header_proto(&w->header, v, vlen, label, err);
	const char *name = (const char *)key->p;
	if (memchr(key->p, 0, key->len))
		return igs_fail(err, IGS_ERR_FORMAT, "%s: a tensor name holds a NUL byte", label);

	struct tfb_file *f = w->f;
	if (f->count == f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 64;
		struct tfb_tensor *nt = realloc(f->tensors, cap * sizeof *nt);
		if (!nt)
			return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory for tensors", label);
		f->tensors = nt;
		f->cap = cap;
	}
	struct tfb_tensor *t = &f->tensors[f->count];
	memset(t, 0, sizeof *t);
	char *copy = strdup(name);
	if (!copy)
		return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory for names", label);
	t->name = copy;
	f->count++;

	struct cursor c = {v, v + vlen};
	struct field fl;
	int r;
	int64_t shard = 0, offset = 0, size = 0;
	while ((r = next_field(&c, &fl)) > 0) {
		const bool want_varint = fl.number == 1 || (fl.number >= 3 && fl.number <= 5);
		if ((want_varint && fl.wire != WT_VARINT) ||
		    (fl.number == 6 && fl.wire != WT_FIXED32) ||
		    ((fl.number == 2 || fl.number == 7) && fl.wire != WT_BYTES))
			return entry_fail(err, label, name, "a BundleEntryProto field has the "
			                                    "wrong wire type");
		switch (fl.number) {
		case 1:
			t->dtype = fl.value > 1000 ? -1 : (int)fl.value;
			break;
		case 2:
			t->ndim = 0;
			r = parse_shape(t, fl.bytes, fl.len);
			if (r == -1)
				return entry_fail(err, label, name, "malformed TensorShapeProto");
			if (r == -2)
				return entry_fail(err, label, name, "shape of unknown rank or size");
			if (r == -3)
				return entry_fail(err, label, name, "more than 8 dimensions");
			break;
		case 3: shard = (int64_t)fl.value; break;
		case 4: offset = (int64_t)fl.value; break;
		case 5: size = (int64_t)fl.value; break;
		case 6: t->crc32c_masked = (uint32_t)fl.value; break;
		case 7: t->partitioned = 1; break;
		default: break;
		}
	}
	if (r < 0)
		return entry_fail(err, label, name, "malformed BundleEntryProto (bad varint or "
		                                    "length)");
	if (t->dtype <= 0)
		return entry_fail(err, label, name, "no valid dtype");
	if (shard < 0 || shard >= MAX_SHARDS || offset < 0 || size < 0)
		return entry_fail(err, label, name, "negative or huge shard id, offset or size");
	t->shard = (int)shard;
	t->offset = (uint64_t)offset;
	t->size = (uint64_t)size;
	int64_t numel = 1;
	for (int d = 0; d < t->ndim; d++) {
		if (t->shape[d] && numel > INT64_MAX / t->shape[d])
			return entry_fail(err, label, name, "element count overflows");
		numel *= t->shape[d];
	}
	t->numel = numel;
	const size_t es = dtype_size(t->dtype);
	if (es && !t->partitioned &&
	    ((uint64_t)numel > UINT64_MAX / es || (uint64_t)numel * es != t->size)) {
		char msg[160];
		snprintf(msg, sizeof msg, "%llu bytes recorded, its shape and dtype %s need %llu",
		         (unsigned long long)t->size, tfbundle_dtype_name(t->dtype),
		         (unsigned long long)numel * es);
		return entry_fail(err, label, name, msg);
	}
	return 0;
}

static int on_index_entry(void *ctx, const struct key_buf *key, const unsigned char *v,
                          size_t vlen, struct igs_error *err)
{
	struct walk *w = ctx;
	struct cursor c = {v, v + vlen};
	struct handle h;
	if (!read_handle(&c, &h) || c.p != c.end)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: index block entry %zu is not a block handle (bad varint)",
		                w->label, w->block_no);
	char what[48];
	snprintf(what, sizeof what, "data block %zu", w->block_no++);
	struct block b;
	int rc = block_read(&b, w->file, w->blocks_end, h, w->label, what, err);
	if (rc == 0)
		rc = block_each(&b, &w->data_key, w->label, what, on_data_entry, w, err);
	free(b.owned);
	if (rc == 0 && w->any_key &&
	    key_cmp(key->p, key->len, w->last_key, w->last_len) < 0)
		rc = igs_fail(err, IGS_ERR_FORMAT,
		              "%s: index key of %s is below the block's last key", w->label, what);
	return rc;
}

static int on_meta_entry(void *ctx, const struct key_buf *key, const unsigned char *v,
                         size_t vlen, struct igs_error *err)
{
	(void)ctx, (void)key, (void)v, (void)vlen, (void)err;
	return 0; /* filter blocks and the like: nothing a bundle reader uses */
}

static int parse_index(struct tfb_file *f, const unsigned char *bytes, size_t len,
                       const char *label, struct igs_error *err)
{
	if (len < FOOTER_BYTES)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: %zu bytes, too short for the 48-byte table footer "
		                "(truncated?)",
		                label, len);
	const unsigned char *footer = bytes + len - FOOTER_BYTES;
	if (load_le64(footer + 40) != TABLE_MAGIC)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: bad magic %016llx at the end (not a TensorBundle index, or "
		                "truncated)",
		                label, (unsigned long long)load_le64(footer + 40));
	struct cursor c = {footer, footer + 40};
	struct handle meta, index;
	if (!read_handle(&c, &meta) || !read_handle(&c, &index))
		return igs_fail(err, IGS_ERR_FORMAT, "%s: bad varint in the table footer", label);
	struct walk w = {.f = f, .label = label, .file = bytes, .blocks_end = len - FOOTER_BYTES};
	/* TensorFlow's meta block is empty; it is still checked so that no
	 * byte of the file goes unverified. */
	struct block ib;
	struct key_buf ikey = {0};
	int rc = block_read(&ib, bytes, w.blocks_end, meta, label, "metaindex block", err);
	if (rc)
		return rc;
	rc = block_each(&ib, &ikey, label, "metaindex block", on_meta_entry, NULL, err);
	free(ib.owned);
	if (rc) {
		free(ikey.p);
		return rc;
	}
	rc = block_read(&ib, bytes, w.blocks_end, index, label, "index block", err);
	if (rc) {
		free(ikey.p);
		return rc;
	}
	rc = block_each(&ib, &ikey, label, "index block", on_index_entry, &w, err);
	free(ib.owned);
	free(ikey.p);
	free(w.data_key.p);
	free(w.last_key);
	if (rc)
		return rc;
	if (!w.header.seen)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: no BundleHeaderProto (the empty key) in the index", label);
	f->num_shards = (int)w.header.num_shards;
	for (size_t i = 0; i < f->count; i++)
		if (f->tensors[i].shard >= f->num_shards)
			return igs_fail(err, IGS_ERR_FORMAT,
			                "%s: tensor '%s' is in shard %d of %d", label,
			                f->tensors[i].name, f->tensors[i].shard, f->num_shards);
	return 0;
}

int tfbundle_parse_index_memory(struct tfb_file **out, const void *bytes, size_t len,
                                const char *label, struct igs_error *err)
{
	*out = NULL;
	struct tfb_file *f = calloc(1, sizeof *f);
	if (!f || !(f->prefix = strdup(label ? label : "index"))) {
		free(f);
		return igs_fail(err, IGS_ERR_NOMEM, "no memory to parse an index");
	}
	f->index_copy = malloc(len ? len : 1);
	if (!f->index_copy) {
		tfbundle_close(&f);
		return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory for the index", label);
	}
	memcpy(f->index_copy, bytes, len);
	int rc = parse_index(f, f->index_copy, len, f->prefix, err);
	if (rc) {
		tfbundle_close(&f);
		return rc;
	}
	*out = f;
	return 0;
}

/* ======================================================================== */
/* 6. Shards                                                                */
/* ======================================================================== */

static int map_shard(struct shard *s, const char *path, struct igs_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return igs_fail(err, IGS_ERR_IO, "%s: cannot open data shard: %s%s", path,
		                strerror(errno), errno == ENOENT ? " (shard missing)" : "");
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return igs_fail(err, IGS_ERR_IO, "%s: not a regular file", path);
	}
	s->size = (size_t)st.st_size;
	if (s->size == 0) { /* a shard may hold nothing; mmap of 0 bytes fails */
		close(fd);
		return 0;
	}
	void *map = mmap(NULL, s->size, PROT_READ, MAP_PRIVATE, fd, 0);
	int map_errno = errno;
	close(fd);
	if (map == MAP_FAILED) {
		s->size = 0;
		return igs_fail(err, IGS_ERR_IO, "%s: cannot mmap: %s", path, strerror(map_errno));
	}
	s->map = map;
	return 0;
}

static void shard_path(char *buf, size_t cap, const char *prefix, int i, int n)
{
	snprintf(buf, cap, "%s.data-%05d-of-%05d", prefix, i, n);
}

/*
 * A string tensor is stored as varint64 lengths, a 4-byte masked CRC32C of
 * the lengths, then the strings' bytes; its checksum covers each length as
 * a little-endian uint32 (uint64 when over 4 GiB), then the 4 stored bytes,
 * then the strings (TensorFlow's WriteStringTensor).
 */
static int string_tensor_crc(const struct tfb_tensor *t, const char *path, uint32_t *out,
                             struct igs_error *err)
{
	struct cursor c = {t->data, (const unsigned char *)t->data + t->nbytes};
	uint32_t crc = 0;
	uint64_t total = 0;
	for (int64_t i = 0; i < t->numel; i++) {
		uint64_t n;
		if (!read_varint(&c, &n))
			return igs_fail(err, IGS_ERR_FORMAT,
			                "%s: string tensor '%s': bad varint length of element %lld",
			                path, t->name, (long long)i);
		unsigned char le[8];
		for (int b = 0; b < 8; b++)
			le[b] = (unsigned char)(n >> (8 * b));
		crc = tfbundle_crc32c(crc, le, n <= UINT32_MAX ? 4 : 8);
		total += n;
		if (total > t->nbytes)
			break;
	}
	if (c.end - c.p < 4 || total > (uint64_t)(c.end - c.p) - 4)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: string tensor '%s': its lengths need more than its %zu bytes",
		                path, t->name, t->nbytes);
	crc = tfbundle_crc32c(crc, c.p, t->nbytes - (size_t)(c.p - (const unsigned char *)t->data));
	*out = tfbundle_crc_mask(crc);
	return 0;
}

/* Map every shard, then check each tensor's bytes lie inside its shard and
 * match the recorded checksum. */
static int map_and_verify(struct tfb_file *f, struct igs_error *err)
{
	f->shards = calloc((size_t)f->num_shards, sizeof *f->shards);
	if (!f->shards)
		return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory for shards", f->prefix);
	char path[4200];
	for (int i = 0; i < f->num_shards; i++) {
		shard_path(path, sizeof path, f->prefix, i, f->num_shards);
		int rc = map_shard(&f->shards[i], path, err);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < f->count; i++) {
		struct tfb_tensor *t = &f->tensors[i];
		if (t->partitioned)
			continue;
		const struct shard *s = &f->shards[t->shard];
		shard_path(path, sizeof path, f->prefix, t->shard, f->num_shards);
		if (t->offset > s->size || t->size > s->size - t->offset)
			return igs_fail(err, IGS_ERR_FORMAT,
			                "%s: tensor '%s' at offset %llu size %llu runs past the "
			                "shard's %zu bytes (truncated?)",
			                path, t->name, (unsigned long long)t->offset,
			                (unsigned long long)t->size, s->size);
		t->data = s->map ? (const unsigned char *)s->map + t->offset : (const void *)"";
		t->nbytes = (size_t)t->size;
		uint32_t crc = 0;
		if (t->dtype == TFB_DT_STRING) {
			int rc = string_tensor_crc(t, path, &crc, err);
			if (rc)
				return rc;
		} else {
			crc = tfbundle_crc_mask(tfbundle_crc32c(0, t->data, t->nbytes));
		}
		if (crc != t->crc32c_masked)
			return igs_fail(err, IGS_ERR_FORMAT,
			                "%s: tensor '%s': bad CRC32C of its %zu bytes (index says "
			                "%08x, data gives %08x): corrupt data",
			                path, t->name, t->nbytes, t->crc32c_masked, crc);
	}
	return 0;
}

/* ======================================================================== */
/* 7. Prefix resolution                                                     */
/* ======================================================================== */

static bool is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool has_index(const char *prefix)
{
	char buf[4200];
	if (snprintf(buf, sizeof buf, "%s.index", prefix) >= (int)sizeof buf)
		return false;
	return is_file(buf);
}

static int put(char *out, size_t cap, const char *path, struct igs_error *err)
{
	if (strlen(path) + 1 > cap || strlen(path) > 4000)
		return igs_fail(err, IGS_ERR_IO, "%.200s...: path too long", path);
	strcpy(out, path);
	return 0;
}

/* The text-format value of model_checkpoint_path in DIR/checkpoint (a
 * CheckpointState proto): a quoted string with C escapes. */
static int checkpoint_file_prefix(const char *dir, const char *file, char *out, size_t cap,
                                  struct igs_error *err)
{
	unsigned char *text;
	size_t len;
	int rc = file_read_all(file, 1 << 20, &text, &len, err);
	if (rc)
		return rc;
	char value[4096];
	size_t n = 0;
	bool found = false;
	const char *key = "model_checkpoint_path:";
	for (size_t i = 0; i < len && !found; i++) {
		if ((i && text[i - 1] != '\n') || len - i < strlen(key) ||
		    memcmp(text + i, key, strlen(key)))
			continue;
		size_t j = i + strlen(key);
		while (j < len && (text[j] == ' ' || text[j] == '\t'))
			j++;
		if (j >= len || text[j] != '"')
			break;
		for (j++; j < len && text[j] != '"' && text[j] != '\n' && n + 1 < sizeof value; j++) {
			if (text[j] == '\\' && j + 1 < len)
				j++;
			value[n++] = (char)text[j];
		}
		found = j < len && text[j] == '"';
	}
	free(text);
	if (!found || n == 0)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: no model_checkpoint_path: \"...\" line naming the latest "
		                "checkpoint",
		                file);
	value[n] = 0;
	char joined[8300];
	if (value[0] == '/')
		snprintf(joined, sizeof joined, "%s", value);
	else
		snprintf(joined, sizeof joined, "%s/%s", dir, value);
	if (!has_index(joined))
		return igs_fail(err, IGS_ERR_IO,
		                "%s names checkpoint '%s', but %s.index does not exist", file,
		                value, joined);
	return put(out, cap, joined, err);
}

int tfbundle_resolve_prefix(const char *path, char *out, size_t cap, struct igs_error *err)
{
	char buf[4200];
	if (strlen(path) > 4000)
		return igs_fail(err, IGS_ERR_IO, "%.200s...: path too long", path);
	if (is_dir(path)) {
		snprintf(buf, sizeof buf, "%s/checkpoint", path);
		if (is_file(buf))
			return checkpoint_file_prefix(path, buf, out, cap, err);
		snprintf(buf, sizeof buf, "%s/variables/variables", path);
		if (has_index(buf))
			return put(out, cap, buf, err);
		snprintf(buf, sizeof buf, "%s/variables", path);
		if (has_index(buf))
			return put(out, cap, buf, err);
		return igs_fail(err, IGS_ERR_IO,
		                "%s: a directory without a 'checkpoint' file, variables/variables.index "
		                "or variables.index: not a TensorFlow checkpoint",
		                path);
	}
	size_t n = strlen(path);
	if (n > 6 && !strcmp(path + n - 6, ".index") && is_file(path)) {
		snprintf(buf, sizeof buf, "%.*s", (int)(n - 6), path);
		return put(out, cap, buf, err);
	}
	if (has_index(path))
		return put(out, cap, path, err);
	return igs_fail(err, IGS_ERR_IO, "%s: no such checkpoint (%s.index does not exist)", path,
	                path);
}

int tfbundle_is_checkpoint(const char *path)
{
	char buf[4200];
	if (is_dir(path))
		return tfbundle_resolve_prefix(path, buf, sizeof buf, NULL) == 0;
	size_t n = strlen(path);
	return (n > 6 && !strcmp(path + n - 6, ".index")) || (!is_file(path) && has_index(path));
}

int tfbundle_open(struct tfb_file **out, const char *path, struct igs_error *err)
{
	*out = NULL;
	char prefix[4200], index_path[4300];
	int rc = tfbundle_resolve_prefix(path, prefix, sizeof prefix, err);
	if (rc)
		return rc;
	snprintf(index_path, sizeof index_path, "%s.index", prefix);
	unsigned char *bytes;
	size_t len;
	rc = file_read_all(index_path, (size_t)1 << 30, &bytes, &len, err);
	if (rc)
		return rc;
	struct tfb_file *f = calloc(1, sizeof *f);
	if (!f || !(f->prefix = strdup(prefix))) {
		free(f);
		free(bytes);
		return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory", index_path);
	}
	rc = parse_index(f, bytes, len, index_path, err);
	free(bytes);
	if (rc == 0)
		rc = map_and_verify(f, err);
	if (rc) {
		tfbundle_close(&f);
		return rc;
	}
	*out = f;
	return 0;
}

void tfbundle_close(struct tfb_file **fp)
{
	if (!fp || !*fp)
		return;
	struct tfb_file *f = *fp;
	for (size_t i = 0; i < f->count; i++)
		free((char *)f->tensors[i].name);
	free(f->tensors);
	for (int i = 0; f->shards && i < f->num_shards; i++)
		if (f->shards[i].map)
			munmap(f->shards[i].map, f->shards[i].size);
	free(f->shards);
	free(f->index_copy);
	free(f->prefix);
	free(f);
	*fp = NULL;
}

/* ======================================================================== */
/* 8. Lookup and reading                                                    */
/* ======================================================================== */

const char *tfbundle_prefix(const struct tfb_file *f)
{
	return f->prefix;
}

int tfbundle_num_shards(const struct tfb_file *f)
{
	return f->num_shards;
}

size_t tfbundle_count(const struct tfb_file *f)
{
	return f->count;
}

const struct tfb_tensor *tfbundle_at(const struct tfb_file *f, size_t i)
{
	return i < f->count ? &f->tensors[i] : NULL;
}

const struct tfb_tensor *tfbundle_find(const struct tfb_file *f, const char *name)
{
	size_t lo = 0, hi = f->count;
	const size_t nlen = strlen(name);
	while (lo < hi) { /* keys are in bytewise order */
		size_t mid = lo + (hi - lo) / 2;
		const char *k = f->tensors[mid].name;
		int c = key_cmp((const unsigned char *)k, strlen(k), (const unsigned char *)name,
		                nlen);
		if (c == 0)
			return &f->tensors[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static float f32_from_bits(uint32_t u)
{
	float v;
	memcpy(&v, &u, 4);
	return v;
}

/* IEEE binary16 -> binary32, exact (subnormals, inf, NaN). */
static float half_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
	if (exp == 0) {
		float v = (float)man * 0x1p-24f;
		return sign ? -v : v;
	}
	if (exp == 31)
		return f32_from_bits(sign | 0x7f800000u | (man << 13));
	return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

int tfbundle_read_f32(const struct tfb_file *f, const struct tfb_tensor *t, float *dst,
                      struct igs_error *err)
{
	const char *label = f ? f->prefix : "checkpoint";
	if (t->partitioned)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: tensor '%s' is a partitioned variable (slices), not supported",
		                label, t->name);
	if (!t->data)
		return igs_fail(err, IGS_ERR_FORMAT, "%s: tensor '%s' has no data mapped", label,
		                t->name);
	const unsigned char *p = t->data;
	const size_t n = (size_t)t->numel;
	switch (t->dtype) {
	case TFB_DT_FLOAT:
		for (size_t i = 0; i < n; i++)
			dst[i] = f32_from_bits(load_le32(p + 4 * i));
		return 0;
	case TFB_DT_DOUBLE:
		for (size_t i = 0; i < n; i++) {
			uint64_t u = load_le64(p + 8 * i);
			double d;
			memcpy(&d, &u, 8);
			dst[i] = (float)d;
		}
		return 0;
	case TFB_DT_HALF:
		for (size_t i = 0; i < n; i++)
			dst[i] = half_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
		return 0;
	case TFB_DT_BFLOAT16:
		for (size_t i = 0; i < n; i++)
			dst[i] = f32_from_bits((uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16);
		return 0;
	default:
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: tensor '%s' has dtype %s; only float, half, bfloat16 and "
		                "double tensors can be read as weights",
		                label, t->name, tfbundle_dtype_name(t->dtype));
	}
}
