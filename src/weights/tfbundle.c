/*
 * tfbundle.c - parse, map and verify TensorFlow TensorBundle V2 checkpoints.
 *
 * The byte layout is described in tfbundle.h.  Every length, offset and
 * varint is checked against the bytes that hold it, every block's and every
 * tensor's CRC32C is verified, so callers may trust tfb_tensor.data/nbytes.
 *
 * The table's blocks are read by tfbundle_table.c, the --model path is
 * resolved to a prefix by tfbundle_path.c.
 *
 * Contents:
 *   1. Protocol buffers    BundleHeaderProto, BundleEntryProto
 *   2. The index           footer, walking the table into tfb_tensor records
 *   3. Shards              mmap, bounds, tensor checksums, open and close
 *   4. Lookup and reading  count, at, find, tfbundle_read_f32
 */
#include "tfbundle.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "file.h"
#include "memory.h"
#include "tfbundle_table.h"

#define TABLE_MAGIC 0xdb4775248b80fb57ull
#define FOOTER_BYTES 48
#define MAX_SHARDS 100000

/* ======================================================================== */
/* 1. Protocol buffers                                                      */
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
	if (!tfb_read_varint(c, &tag) || (tag >> 3) == 0 || (tag >> 3) > 536870911u)
		return -1;
	f->number = (uint32_t)(tag >> 3);
	f->wire = (int)(tag & 7);
	switch (f->wire) {
	case WT_VARINT:
		return tfb_read_varint(c, &f->value) ? 1 : -1;
	case WT_FIXED64:
		if (c->end - c->p < 8)
			return -1;
		f->value = tfb_load_le64(c->p);
		c->p += 8;
		return 1;
	case WT_FIXED32:
		if (c->end - c->p < 4)
			return -1;
		f->value = tfb_load_le32(c->p);
		c->p += 4;
		return 1;
	case WT_BYTES:
		if (!tfb_read_varint(c, &f->value) || f->value > (uint64_t)(c->end - c->p))
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

static int parse_header_proto(struct header *h, const unsigned char *v, size_t n, const char *label,
                              struct igs_error *err)
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
	case TFB_DT_UINT8:
	case TFB_DT_INT8:
	case TFB_DT_BOOL:
	case 11:
	case 12:
		return 1;
	case TFB_DT_INT16:
	case TFB_DT_BFLOAT16:
	case 15:
	case 16:
	case TFB_DT_UINT16:
	case TFB_DT_HALF:
		return 2;
	case TFB_DT_FLOAT:
	case TFB_DT_INT32:
	case 13:
	case TFB_DT_UINT32:
		return 4;
	case TFB_DT_DOUBLE:
	case TFB_DT_COMPLEX64:
	case TFB_DT_INT64:
	case TFB_DT_UINT64:
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
	    [1] = "float",    [2] = "double",      [3] = "int32",   [4] = "uint8",
	    [5] = "int16",    [6] = "int8",        [7] = "string",  [8] = "complex64",
	    [9] = "int64",    [10] = "bool",       [11] = "qint8",  [12] = "quint8",
	    [13] = "qint32",  [14] = "bfloat16",   [15] = "qint16", [16] = "quint16",
	    [17] = "uint16",  [18] = "complex128", [19] = "half",   [20] = "resource",
	    [21] = "variant", [22] = "uint32",     [23] = "uint64",
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
/* 2. The index                                                             */
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
	char sha256[65];
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

static int on_data_entry(void *ctx, const struct key_buf *key, const unsigned char *v, size_t vlen,
                         struct igs_error *err)
{
	struct walk *w = ctx;
	const char *label = w->label;
	if (w->any_key && key_cmp(key->p, key->len, w->last_key, w->last_len) <= 0)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: keys out of order at '%.*s' (a table's keys increase)", label,
		                (int)(key->len > 200 ? 200 : key->len), key->p);
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
			return entry_fail(err, label, name,
			                  "a BundleEntryProto field has the "
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
				return entry_fail(err, label, name,
				                  "shape of unknown rank or size");
			if (r == -3)
				return entry_fail(err, label, name, "more than 8 dimensions");
			break;
		case 3:
			shard = (int64_t)fl.value;
			break;
		case 4:
			offset = (int64_t)fl.value;
			break;
		case 5:
			size = (int64_t)fl.value;
			break;
		case 6:
			t->crc32c_masked = (uint32_t)fl.value;
			break;
		case 7:
			t->partitioned = 1;
			break;
		default:
			break;
		}
	}
	if (r < 0)
		return entry_fail(err, label, name,
		                  "malformed BundleEntryProto (bad varint or "
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

static int on_index_entry(void *ctx, const struct key_buf *key, const unsigned char *v, size_t vlen,
                          struct igs_error *err)
{
	struct walk *w = ctx;
	struct cursor c = {v, v + vlen};
	struct handle h;
	if (!tfb_read_handle(&c, &h) || c.p != c.end)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: index block entry %zu is not a block handle (bad varint)",
		                w->label, w->block_no);
	char what[48];
	snprintf(what, sizeof what, "data block %zu", w->block_no++);
	struct block b;
	int rc = tfb_block_read(&b, w->file, w->blocks_end, h, w->label, what, err);
	if (rc == 0)
		rc = tfb_block_each(&b, &w->data_key, w->label, what, on_data_entry, w, err);
	free(b.owned);
	if (rc == 0 && w->any_key && key_cmp(key->p, key->len, w->last_key, w->last_len) < 0)
		rc = igs_fail(err, IGS_ERR_FORMAT,
		              "%s: index key of %s is below the block's last key", w->label, what);
	return rc;
}

static int on_meta_entry(void *ctx, const struct key_buf *key, const unsigned char *v, size_t vlen,
                         struct igs_error *err)
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
	if (tfb_load_le64(footer + 40) != TABLE_MAGIC)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: bad magic %016llx at the end (not a TensorBundle index, or "
		                "truncated)",
		                label, (unsigned long long)tfb_load_le64(footer + 40));
	struct cursor c = {footer, footer + 40};
	struct handle meta, index;
	if (!tfb_read_handle(&c, &meta) || !tfb_read_handle(&c, &index))
		return igs_fail(err, IGS_ERR_FORMAT, "%s: bad varint in the table footer", label);
	struct walk w = {.f = f, .label = label, .file = bytes, .blocks_end = len - FOOTER_BYTES};
	/* TensorFlow's meta block is empty; it is still checked so that no
	 * byte of the file goes unverified. */
	struct block ib;
	struct key_buf ikey = {0};
	int rc = tfb_block_read(&ib, bytes, w.blocks_end, meta, label, "metaindex block", err);
	if (rc)
		return rc;
	rc = tfb_block_each(&ib, &ikey, label, "metaindex block", on_meta_entry, NULL, err);
	free(ib.owned);
	if (rc) {
		free(ikey.p);
		return rc;
	}
	rc = tfb_block_read(&ib, bytes, w.blocks_end, index, label, "index block", err);
	if (rc) {
		free(ikey.p);
		return rc;
	}
	rc = tfb_block_each(&ib, &ikey, label, "index block", on_index_entry, &w, err);
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
			return igs_fail(err, IGS_ERR_FORMAT, "%s: tensor '%s' is in shard %d of %d",
			                label, f->tensors[i].name, f->tensors[i].shard,
			                f->num_shards);
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
/* 3. Shards                                                                */
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
		if (!tfb_read_varint(&c, &n))
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

/* SHA-256 over the index bytes, then each shard in order. */
static int checkpoint_sha256(struct tfb_file *f, const unsigned char *index, size_t len,
                             const char *index_path, struct igs_error *err)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char md[32];
	unsigned int md_len = 0;
	int ok =
	    ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, index, len);
	for (int i = 0; ok && i < f->num_shards; i++)
		if (f->shards[i].size)
			ok = EVP_DigestUpdate(ctx, f->shards[i].map, f->shards[i].size);
	ok = ok && EVP_DigestFinal_ex(ctx, md, &md_len) && md_len == 32;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return igs_fail(err, IGS_ERR_NOMEM, "%s: SHA-256 computation failed", index_path);
	for (int i = 0; i < 32; i++)
		snprintf(f->sha256 + 2 * i, 3, "%02x", md[i]);
	/* hashing and checksums touched every page; readers copy what they need */
	for (int i = 0; i < f->num_shards; i++)
		memory_release_pages(f->shards[i].map, f->shards[i].size);
	return 0;
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
	if (rc == 0)
		rc = map_and_verify(f, err);
	if (rc == 0)
		rc = checkpoint_sha256(f, bytes, len, index_path, err);
	free(bytes);
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
/* 4. Lookup and reading                                                    */
/* ======================================================================== */

const char *tfbundle_sha256(const struct tfb_file *f)
{
	return f->sha256;
}

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
		int c =
		    key_cmp((const unsigned char *)k, strlen(k), (const unsigned char *)name, nlen);
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
			dst[i] = f32_from_bits(tfb_load_le32(p + 4 * i));
		return 0;
	case TFB_DT_DOUBLE:
		for (size_t i = 0; i < n; i++) {
			uint64_t u = tfb_load_le64(p + 8 * i);
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
