/*
 * tfbundle_table.h - the LevelDB-format table under a TensorBundle's .index
 * (tfbundle.h gives the byte layout): bounded varint reading, blocks with
 * their CRC trailer and snappy, entries with prefix-compressed keys and
 * restart points.  Internal to src/weights.
 */
#ifndef IGSERVE_TFBUNDLE_TABLE_H
#define IGSERVE_TFBUNDLE_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define TFB_TRAILER_BYTES 5
/* Far above any real checkpoint (a ResNet-200's index is ~100 KB) and a
 * bound on what one decompressed block may claim. */
#define TFB_MAX_BLOCK_BYTES (256u << 20)
#define TFB_MAX_KEY_BYTES 65536

/* Bytes still to read: [p, end). */
struct cursor {
	const unsigned char *p, *end;
};

struct handle {
	uint64_t offset, size;
};

/* A block's contents: inside the index bytes, or `owned` when decompressed. */
struct block {
	const unsigned char *data;
	size_t size;
	unsigned char *owned;
};

/* The key being rebuilt from prefix-compressed entries. */
struct key_buf {
	unsigned char *p;
	size_t len, cap;
};

typedef int (*entry_fn)(void *ctx, const struct key_buf *key, const unsigned char *value,
                        size_t vlen, struct igs_error *err);

uint32_t tfb_load_le32(const unsigned char *p);
uint64_t tfb_load_le64(const unsigned char *p);

/* A base-128 varint of at most 10 bytes that fits 64 (32) bits; false when
 * it runs past the end or overflows. */
bool tfb_read_varint(struct cursor *c, uint64_t *out);
bool tfb_read_varint32(struct cursor *c, uint32_t *out);
/* A BlockHandle: varint64 offset, varint64 size. */
bool tfb_read_handle(struct cursor *c, struct handle *h);

/*
 * tfb_block_read - the block at `h` inside file[0, blocks_end): its trailer
 * CRC checked (over contents + type byte), decompressed when snappy (then
 * b->owned is to be freed).  Messages start with `label` and name `what`.
 */
int tfb_block_read(struct block *b, const unsigned char *file, size_t blocks_end, struct handle h,
                   const char *label, const char *what, struct igs_error *err);

/*
 * tfb_block_each - call `fn` for every entry of a block in order, with the
 * full key rebuilt in `key` (NUL-terminated, caller frees key->p); checks
 * the restart array: every restart offset starts an entry sharing no prefix.
 */
int tfb_block_each(const struct block *b, struct key_buf *key, const char *label, const char *what,
                   entry_fn fn, void *ctx, struct igs_error *err);

#endif
