/*
 * tfbundle.h - read TensorFlow checkpoints (TensorBundle V2), as written by
 * tf.train.Saver / tf.train.Checkpoint (tests/fixtures/tfbundle.py writes them).
 *
 * A checkpoint is a prefix P with P.index and P.data-00000-of-0000N beside it.
 *
 * P.index is a LevelDB-format table (sorted string keys -> values):
 *   blocks          each block's bytes, then a 5-byte trailer:
 *                     1 byte compression type (0 none, 1 snappy),
 *                     4 bytes masked CRC32C (little-endian) of block + type byte
 *   metaindex block (empty in TensorFlow's files)
 *   index block     key: a separator >= every key in the data block it names,
 *                   value: that data block's handle
 *   footer          the last 48 bytes: metaindex handle, index handle (each a
 *                   varint64 offset and varint64 size of the block without its
 *                   trailer), zero padding to 40 bytes, then the 8-byte magic
 *                   0xdb4775248b80fb57 little-endian
 * A block (after decompression) is a run of entries, then an array of
 * uint32 LE restart offsets, then their count (uint32 LE).  An entry is
 *   varint32 shared, varint32 non_shared, varint32 value_length,
 *   key[shared..shared+non_shared) (the first `shared` bytes come from the
 *   previous key; 0 at every restart offset), value[value_length]
 * Keys are strictly increasing over the table.
 *
 * Values are protocol buffers (varint tags: field << 3 | wire type):
 *   key ""          BundleHeaderProto: 1 num_shards (int32), 2 endianness
 *                   (0 little, 1 big), 3 version (VersionDef message)
 *   key NAME        BundleEntryProto: 1 dtype (DataType enum), 2 shape
 *                   (TensorShapeProto: repeated 2 dim {1 size int64}),
 *                   3 shard_id, 4 offset, 5 size (int64), 6 crc32c (fixed32),
 *                   7 slices (partitioned variables: not supported)
 * P.data-SSSSS-of-NNNNN (N = num_shards) holds each tensor's raw bytes at
 * [offset, offset + size) in shard shard_id: little-endian, C order.  The
 * entry's crc32c is the masked CRC32C of those bytes:
 *   mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8   (32-bit)
 *
 * Opening parses the whole index, maps every shard read-only and verifies
 * every tensor's bounds and checksum before any tensor is exposed; errors
 * name the file and the problem.
 */
#ifndef IGSERVE_TFBUNDLE_H
#define IGSERVE_TFBUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define TFB_MAX_DIMS 8

/* TensorFlow's DataType numbers (types.proto) that a reader may meet. */
enum tfb_dtype {
	TFB_DT_FLOAT = 1,
	TFB_DT_DOUBLE = 2,
	TFB_DT_INT32 = 3,
	TFB_DT_UINT8 = 4,
	TFB_DT_INT16 = 5,
	TFB_DT_INT8 = 6,
	TFB_DT_STRING = 7,
	TFB_DT_COMPLEX64 = 8,
	TFB_DT_INT64 = 9,
	TFB_DT_BOOL = 10,
	TFB_DT_BFLOAT16 = 14,
	TFB_DT_UINT16 = 17,
	TFB_DT_COMPLEX128 = 18,
	TFB_DT_HALF = 19,
	TFB_DT_UINT32 = 22,
	TFB_DT_UINT64 = 23,
};

struct tfb_tensor {
	const char *name; /* owned by the tfb_file */
	int dtype;        /* enum tfb_dtype value (others kept as numbers) */
	int ndim;
	int64_t shape[TFB_MAX_DIMS];
	int64_t numel; /* product of shape (1 for a scalar) */
	int shard;
	uint64_t offset, size;  /* in the shard */
	uint32_t crc32c_masked; /* as recorded in the index */
	int partitioned;        /* a sliced (partitioned) variable: listed, not readable */
	const void *data;       /* inside the shard mapping; NULL for a parsed-only index */
	size_t nbytes;
};

struct tfb_file;

/*
 * tfbundle_resolve_prefix - the checkpoint prefix `path` names: PATH itself
 * when PATH.index exists (a trailing ".index" is dropped), or for a
 * directory: the prefix named by DIR/checkpoint's model_checkpoint_path
 * (relative to DIR unless absolute, as tf.train.latest_checkpoint does),
 * else DIR/variables/variables (a SavedModel), else DIR/variables (a
 * SavedModel's variables directory).  `out` gets at most `cap` bytes.
 * IGS_ERR_IO / IGS_ERR_FORMAT with a message when none applies.
 */
int tfbundle_resolve_prefix(const char *path, char *out, size_t cap, struct igs_error *err);

/* True when `path` looks like a TensorBundle: PATH.index exists, PATH ends
 * in ".index", or PATH is a directory that tfbundle_resolve_prefix accepts. */
int tfbundle_is_checkpoint(const char *path);

/*
 * tfbundle_open - resolve `path` (above), parse the index, map the shards and
 * verify every tensor.  On success *out owns everything and 0 is returned;
 * on failure a negative code (IGS_ERR_IO, IGS_ERR_FORMAT, IGS_ERR_NOMEM) and
 * a message naming the file and the problem.
 */
int tfbundle_open(struct tfb_file **out, const char *path, struct igs_error *err);

/*
 * tfbundle_parse_index_memory - parse an index from `len` bytes (copied), no
 * shards: tensors get data = NULL.  `label` names the bytes in messages.
 * For tests and the fuzz target.
 */
int tfbundle_parse_index_memory(struct tfb_file **out, const void *bytes, size_t len,
                                const char *label, struct igs_error *err);

/* tfbundle_close - unmap and free; sets *f to NULL.  NULL is fine. */
void tfbundle_close(struct tfb_file **f);

/* SHA-256 of the index and then every shard, as 64 lowercase hex digits
 * ("" for a parsed-only index): the checkpoint's identity for /v1/model. */
const char *tfbundle_sha256(const struct tfb_file *f);
/* The resolved prefix (or the label of a parsed-only index). */
const char *tfbundle_prefix(const struct tfb_file *f);
int tfbundle_num_shards(const struct tfb_file *f);
size_t tfbundle_count(const struct tfb_file *f);
/* Tensors in key order. */
const struct tfb_tensor *tfbundle_at(const struct tfb_file *f, size_t i);
/* NULL when there is no tensor of that name. */
const struct tfb_tensor *tfbundle_find(const struct tfb_file *f, const char *name);

/* "float", "half", "bfloat16", ... or "dtype N". The returned string is
 * static for known types; unknown ones share one buffer per thread. */
const char *tfbundle_dtype_name(int dtype);

/*
 * tfbundle_read_f32 - convert a DT_FLOAT, DT_HALF, DT_BFLOAT16 or DT_DOUBLE
 * tensor to float32 into `dst` (numel floats, caller-owned).  IGS_ERR_FORMAT
 * naming the tensor and its dtype for every other type.
 */
int tfbundle_read_f32(const struct tfb_file *f, const struct tfb_tensor *t, float *dst,
                      struct igs_error *err);

/* CRC32C (Castagnoli) of `n` bytes continuing from `crc` (0 to start), and
 * TensorFlow's / LevelDB's mask of it. */
uint32_t tfbundle_crc32c(uint32_t crc, const void *data, size_t n);
uint32_t tfbundle_crc_mask(uint32_t crc);

#endif
