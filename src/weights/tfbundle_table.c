/*
 * tfbundle_table.c - the LevelDB-format table of a TensorBundle index:
 * CRC32C, bounded varints, block trailers, snappy and block entries
 * (tfbundle_table.h).
 *
 * Contents:
 *   1. CRC32C              table-driven, SSE4.2 when the CPU has it
 *   2. Bounded reading     varints and little-endian loads from a cursor
 *   3. Table blocks        trailer, snappy, entries, restarts
 */
#include "tfbundle_table.h"

#include <snappy-c.h>
#include <stdlib.h>
#include <string.h>

#include "tfbundle.h"
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
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t c, const unsigned char *p,
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

uint32_t tfb_load_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t tfb_load_le64(const unsigned char *p)
{
	return (uint64_t)tfb_load_le32(p) | (uint64_t)tfb_load_le32(p + 4) << 32;
}

/* A base-128 varint of at most 10 bytes that fits 64 bits; false when it
 * runs past the end or overflows. */
bool tfb_read_varint(struct cursor *c, uint64_t *out)
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

bool tfb_read_varint32(struct cursor *c, uint32_t *out)
{
	uint64_t v;
	if (!tfb_read_varint(c, &v) || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* ======================================================================== */
/* 3. Table blocks                                                          */
/* ======================================================================== */

bool tfb_read_handle(struct cursor *c, struct handle *h)
{
	return tfb_read_varint(c, &h->offset) && tfb_read_varint(c, &h->size);
}

/* Check the trailer of the block at `h` (CRC of contents + type byte) and
 * decompress it when snappy. `what` is "index block", "data block 3", ... */
int tfb_block_read(struct block *b, const unsigned char *file, size_t blocks_end, struct handle h,
                   const char *label, const char *what, struct igs_error *err)
{
	memset(b, 0, sizeof *b);
	if (h.offset > blocks_end || h.size > blocks_end - h.offset ||
	    blocks_end - h.offset - h.size < TFB_TRAILER_BYTES)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: %s at offset %llu size %llu runs past the table's "
		                "%zu bytes of blocks (truncated?)",
		                label, what, (unsigned long long)h.offset,
		                (unsigned long long)h.size, blocks_end);
	const unsigned char *p = file + h.offset;
	const unsigned char type = p[h.size];
	const uint32_t stored = tfb_load_le32(p + h.size + 1);
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
	if (ulen > TFB_MAX_BLOCK_BYTES)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: %s decompresses to %zu bytes, over the %u-byte limit", label,
		                what, ulen, TFB_MAX_BLOCK_BYTES);
	b->owned = malloc(ulen ? ulen : 1);
	if (!b->owned)
		return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory for %s", label, what);
	if (snappy_uncompress((const char *)p, h.size, (char *)b->owned, &ulen) != SNAPPY_OK) {
		free(b->owned);
		b->owned = NULL;
		return igs_fail(err, IGS_ERR_FORMAT, "%s: %s: snappy decompression failed", label,
		                what);
	}
	b->data = b->owned;
	b->size = ulen;
	return 0;
}

/* Walk every entry of a block in order, checking the restart array: every
 * restart offset must be the start of an entry that shares no prefix. */
int tfb_block_each(const struct block *b, struct key_buf *key, const char *label, const char *what,
                   entry_fn fn, void *ctx, struct igs_error *err)
{
	if (b->size < 4)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: %s of %zu bytes is too short for its restart count", label,
		                what, b->size);
	const uint32_t nrestarts = tfb_load_le32(b->data + b->size - 4);
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
			uint32_t r = tfb_load_le32(restarts + 4 * next_restart);
			if (r < at)
				return igs_fail(err, IGS_ERR_FORMAT,
				                "%s: %s: restart point %u (offset %u) is not at an "
				                "entry boundary",
				                label, what, next_restart, r);
			is_restart = r == at;
		}
		uint32_t shared, non_shared, vlen;
		if (!tfb_read_varint32(&c, &shared) || !tfb_read_varint32(&c, &non_shared) ||
		    !tfb_read_varint32(&c, &vlen))
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
		if (klen > TFB_MAX_KEY_BYTES)
			return igs_fail(err, IGS_ERR_FORMAT,
			                "%s: %s: key of %zu bytes at offset %zu is over the limit",
			                label, what, klen, at);
		if (klen + 1 > key->cap) {
			unsigned char *np = realloc(key->p, klen + 1);
			if (!np)
				return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory for keys",
				                label);
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
	const bool empty_ok = entries_end == 0 && nrestarts == 1 && tfb_load_le32(restarts) == 0;
	if (next_restart != nrestarts && !empty_ok)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: %s: restart point %u is not at an entry boundary", label, what,
		                next_restart);
	return 0;
}
