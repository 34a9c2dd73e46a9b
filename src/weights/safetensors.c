/*
 * safetensors.c - map, validate and read .safetensors files.
 *
 * The file layout is described byte by byte in safetensors.h.
 * Reading copies the whole file into memory (one version of it, however the
 * file changes meanwhile) and checks every header field against
 * the file size before a single tensor is exposed, so callers may trust
 * `st_tensor.data` / `nbytes` without further bounds checks.
 *
 * Contents:
 *   1. Dtype table          names and element sizes
 *   2. Byte and float bits  little-endian loads, F16/BF16 to float32
 *   3. The open file        struct st_file
 *   4. Header validation    JSON -> st_tensor array, every check in one place
 *   5. Open and close       read, header length, SHA-256
 *   6. Lookup               count, at, find, sha256, metadata
 *   7. Reading as float32   safetensors_read_f32
 */
#include "safetensors.h"
#include "memory.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation refuses headers of 100 MB or more; a real
 * header (resnet152: ~1000 tensors) is tens of kilobytes. */
#define ST_MAX_HEADER_BYTES 100000000ull

/* Largest integer a double (cJSON's only number type) holds exactly. */
#define ST_MAX_JSON_INT 9007199254740992.0 /* 2^53 */

/* ======================================================================== */
/* 1. Dtype table                                                           */
/* ======================================================================== */

static const struct {
	const char *name;
	size_t size;
} dtype_table[] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},           [ST_I8] = {"I8", 1},
    [ST_I16] = {"I16", 2},   [ST_U16] = {"U16", 2},         [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4},         [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},   [ST_F64] = {"F64", 8},         [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},   [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

#define DTYPE_COUNT (sizeof dtype_table / sizeof dtype_table[0])

static bool dtype_valid(enum st_dtype d)
{
	return (unsigned)d < DTYPE_COUNT;
}

/* Element size in bytes, 0 for a value outside the enum. */
size_t safetensors_dtype_size(enum st_dtype dtype)
{
	return dtype_valid(dtype) ? dtype_table[dtype].size : 0;
}

/* Static string such as "BF16"; "?" for a value outside the enum. */
const char *safetensors_dtype_name(enum st_dtype dtype)
{
	return dtype_valid(dtype) ? dtype_table[dtype].name : "?";
}

/* Dtype names are case-sensitive in the format ("F32", never "f32"). */
static int dtype_from_name(const char *name, enum st_dtype *out)
{
	for (size_t i = 0; i < DTYPE_COUNT; i++) {
		if (strcmp(dtype_table[i].name, name) == 0) {
			*out = (enum st_dtype)i;
			return 0;
		}
	}
	return -1;
}

/* ======================================================================== */
/* 2. Byte and float bits                                                   */
/* ======================================================================== */

/* The mapped data has no alignment guarantee (the header length need not be
 * a multiple of 8), so every load goes through memcpy, and the format is
 * little-endian whatever the host is. */

static uint16_t load_le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t load_le32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	return v;
}

static uint64_t load_le64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static float f32_from_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* IEEE binary16 -> binary32, exact for every input (subnormals, inf, NaN). */
static float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f;
	uint32_t man = h & 0x3ff;

	if (exp == 0) {
		/* zero or subnormal: man * 2^-24, exact in float */
		float v = (float)man * 0x1p-24f;
		return sign ? -v : v;
	}
	if (exp == 31) /* inf keeps man == 0; NaN keeps its payload */
		return f32_from_bits(sign | 0x7f800000u | (man << 13));
	/* normal: rebias the exponent from 15 to 127 */
	return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

/* bfloat16 is the top half of a binary32. */
static float bf16_to_f32(uint16_t b)
{
	return f32_from_bits((uint32_t)b << 16);
}

/* ======================================================================== */
/* 3. The open file                                                         */
/* ======================================================================== */

struct st_meta {
	const char *key;   /* in st_file.strings */
	const char *value; /* in st_file.strings */
};

struct st_file {
	char *path;  /* copy, for messages */
	void *map;   /* the whole file as read (memory_alloc_large), never written */
	size_t size; /* file size in bytes (> 0) */
	size_t count;
	struct st_tensor *tensors;  /* [count], sorted by data offset */
	struct st_tensor **by_name; /* [count], sorted by strcmp of name */
	size_t nmeta;
	struct st_meta *meta; /* [nmeta], header order */
	char *strings;        /* one arena for names, keys and values */
	char sha256[65];
};

/* ======================================================================== */
/* 4. Header validation                                                     */
/* ======================================================================== */

/* A tensor during validation: its offsets, kept beside the public record
 * until the overlap check has run. */
struct st_entry {
	struct st_tensor t;
	uint64_t begin, end;
};

/* A JSON number that is a non-negative integer representable exactly. */
static bool json_uint(const cJSON *item, uint64_t *out)
{
	if (!cJSON_IsNumber(item))
		return false;
	double v = item->valuedouble;
	if (!isfinite(v) || v < 0 || v > ST_MAX_JSON_INT || v != floor(v))
		return false;
	*out = (uint64_t)v;
	return true;
}

/* Copy `s` into the arena at *cursor and return the copy. */
static const char *arena_put(char **cursor, const char *s)
{
	size_t n = strlen(s) + 1;
	char *dst = *cursor;
	memcpy(dst, s, n);
	*cursor += n;
	return dst;
}

static int cmp_entry_offset(const void *a, const void *b)
{
	const struct st_entry *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return strcmp(x->t.name, y->t.name);
}

static int cmp_tensor_name(const void *a, const void *b)
{
	const struct st_tensor *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

/*
 * parse_entry - validate one tensor's JSON object against a data buffer of
 * `data_size` bytes and fill `e` (its name must already be set).
 */
static int parse_entry(struct st_entry *e, const cJSON *obj, uint64_t data_size, const char *path,
                       struct igs_error *err)
{
	const char *name = e->t.name;

	if (!cJSON_IsObject(obj))
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: tensor '%s': header entry is not a JSON object", path, name);

	/* dtype */
	const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
	if (!dtype)
		return igs_fail(err, IGS_ERR_FORMAT, "%s: tensor '%s' has no \"dtype\"", path,
		                name);
	if (!cJSON_IsString(dtype))
		return igs_fail(err, IGS_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is not a string",
		                path, name);
	if (dtype_from_name(dtype->valuestring, &e->t.dtype) != 0)
		return igs_fail(err, IGS_ERR_FORMAT, "%s: unknown dtype '%s' for tensor '%s'", path,
		                dtype->valuestring, name);
	uint64_t esize = dtype_table[e->t.dtype].size;

	/* shape */
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(obj, "shape");
	if (!shape)
		return igs_fail(err, IGS_ERR_FORMAT, "%s: tensor '%s' has no \"shape\"", path,
		                name);
	if (!cJSON_IsArray(shape))
		return igs_fail(err, IGS_ERR_FORMAT, "%s: tensor '%s': \"shape\" is not an array",
		                path, name);
	int ndim = cJSON_GetArraySize(shape);
	if (ndim > ST_MAX_DIMS)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: tensor '%s' has %d dimensions, at most %d supported", path,
		                name, ndim, ST_MAX_DIMS);
	e->t.ndim = ndim;
	bool any_zero = false;
	int d = 0;
	const cJSON *dim;
	cJSON_ArrayForEach(dim, shape)
	{
		uint64_t v;
		if (!json_uint(dim, &v))
			return igs_fail(err, IGS_ERR_FORMAT,
			                "%s: tensor '%s': shape[%d] is not a non-negative integer",
			                path, name, d);
		e->t.shape[d++] = (int64_t)v;
		any_zero |= v == 0;
	}
	/* numel, guarded: offsets are exact only up to 2^53, so a shape whose
	 * byte count passes that cannot match them; stopping there also keeps
	 * the product from wrapping.  (A zero dimension makes numel 0 however
	 * large the others are.) */
	uint64_t numel = 1;
	if (any_zero) {
		numel = 0;
	} else {
		uint64_t limit = (uint64_t)ST_MAX_JSON_INT / esize;
		for (int i = 0; i < ndim; i++) {
			uint64_t v = (uint64_t)e->t.shape[i];
			if (numel > limit / v)
				return igs_fail(err, IGS_ERR_FORMAT,
				                "%s: tensor '%s': shape has more elements than a "
				                "safetensors file can hold",
				                path, name);
			numel *= v;
		}
	}
	e->t.numel = (int64_t)numel;
	e->t.nbytes = (size_t)(numel * esize);

	/* data_offsets */
	const cJSON *offs = cJSON_GetObjectItemCaseSensitive(obj, "data_offsets");
	if (!offs)
		return igs_fail(err, IGS_ERR_FORMAT, "%s: tensor '%s' has no \"data_offsets\"",
		                path, name);
	if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
	    !json_uint(cJSON_GetArrayItem(offs, 0), &e->begin) ||
	    !json_uint(cJSON_GetArrayItem(offs, 1), &e->end))
		return igs_fail(
		    err, IGS_ERR_FORMAT,
		    "%s: tensor '%s': \"data_offsets\" is not [begin, end] of non-negative "
		    "integers",
		    path, name);
	if (e->begin > e->end)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin",
		                path, name, (unsigned long long)e->begin,
		                (unsigned long long)e->end);
	if (e->end > data_size)
		return igs_fail(
		    err, IGS_ERR_FORMAT,
		    "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the "
		    "%llu-byte data buffer (file truncated?)",
		    path, name, (unsigned long long)e->begin, (unsigned long long)e->end,
		    (unsigned long long)data_size);
	if (e->end - e->begin != numel * esize)
		return igs_fail(
		    err, IGS_ERR_FORMAT,
		    "%s: tensor '%s': data_offsets [%llu, %llu] span %llu bytes, but %s shape "
		    "of %llu elements needs %llu",
		    path, name, (unsigned long long)e->begin, (unsigned long long)e->end,
		    (unsigned long long)(e->end - e->begin), dtype_table[e->t.dtype].name,
		    (unsigned long long)numel, (unsigned long long)(numel * esize));
	return 0;
}

/*
 * parse_header - parse and validate the `hlen` header bytes of `f` (whose
 * map and size are set) and fill f->tensors, by_name, meta and strings.
 * On failure whatever was allocated is left in `f` for safetensors_close.
 */
static int parse_header(struct st_file *f, const char *hdr, size_t hlen, uint64_t data_size,
                        struct igs_error *err)
{
	const char *path = f->path;
	int rc = 0;
	struct st_entry *entries = NULL;

	/* cJSON wants a NUL-terminated string; the mapping has none. */
	char *text = malloc(hlen + 1);
	if (!text)
		return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory for a %zu-byte header", path,
		                hlen);
	memcpy(text, hdr, hlen);
	text[hlen] = '\0';

	const char *end = NULL;
	cJSON *root = cJSON_ParseWithOpts(text, &end, 0);
	if (!root) {
		size_t at = end && end >= text ? (size_t)(end - text) : 0;
		rc = igs_fail(err, IGS_ERR_FORMAT,
		              "%s: header is not valid JSON (error near byte %zu of %zu)", path, at,
		              hlen);
		goto out;
	}
	/* After the value only the writer's space padding may follow; an
	 * embedded NUL or trailing garbage means a corrupt header. */
	for (const char *p = end; p < text + hlen; p++) {
		if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
			rc = igs_fail(err, IGS_ERR_FORMAT,
			              "%s: header has unexpected bytes after the JSON value (at "
			              "byte %zu of %zu)",
			              path, (size_t)(p - text), hlen);
			goto out;
		}
	}
	if (!cJSON_IsObject(root)) {
		rc = igs_fail(err, IGS_ERR_FORMAT, "%s: header JSON is not an object", path);
		goto out;
	}

	/* Count tensors and metadata, and size the string arena. */
	size_t ntensors = 0, nmeta = 0, nstrings = 0;
	const cJSON *metadata = NULL;
	const cJSON *item;
	cJSON_ArrayForEach(item, root)
	{
		if (strcmp(item->string, "__metadata__") == 0) {
			if (metadata) {
				rc = igs_fail(err, IGS_ERR_FORMAT,
				              "%s: header has \"__metadata__\" twice", path);
				goto out;
			}
			if (!cJSON_IsObject(item)) {
				rc = igs_fail(err, IGS_ERR_FORMAT,
				              "%s: \"__metadata__\" is not a JSON object", path);
				goto out;
			}
			metadata = item;
			const cJSON *kv;
			cJSON_ArrayForEach(kv, item)
			{
				if (!cJSON_IsString(kv)) {
					rc = igs_fail(
					    err, IGS_ERR_FORMAT,
					    "%s: \"__metadata__\" value of '%s' is not a string",
					    path, kv->string);
					goto out;
				}
				nstrings += strlen(kv->string) + strlen(kv->valuestring) + 2;
				nmeta++;
			}
		} else {
			nstrings += strlen(item->string) + 1;
			ntensors++;
		}
	}

	f->strings = malloc(nstrings ? nstrings : 1);
	entries = calloc(ntensors ? ntensors : 1, sizeof *entries);
	f->tensors = calloc(ntensors ? ntensors : 1, sizeof *f->tensors);
	f->by_name = calloc(ntensors ? ntensors : 1, sizeof *f->by_name);
	f->meta = calloc(nmeta ? nmeta : 1, sizeof *f->meta);
	if (!f->strings || !entries || !f->tensors || !f->by_name || !f->meta) {
		rc = igs_fail(err, IGS_ERR_NOMEM, "%s: no memory for the index of %zu tensors",
		              path, ntensors);
		goto out;
	}

	char *cursor = f->strings;
	size_t i = 0;
	cJSON_ArrayForEach(item, root)
	{
		if (item == metadata)
			continue;
		entries[i].t.name = arena_put(&cursor, item->string);
		rc = parse_entry(&entries[i], item, data_size, path, err);
		if (rc)
			goto out;
		i++;
	}
	if (metadata) {
		size_t m = 0;
		const cJSON *kv;
		cJSON_ArrayForEach(kv, metadata)
		{
			f->meta[m].key = arena_put(&cursor, kv->string);
			f->meta[m].value = arena_put(&cursor, kv->valuestring);
			m++;
		}
	}

	/* Overlaps: in offset order each non-empty tensor must start at or
	 * after the furthest end seen so far.  Empty tensors own no bytes. */
	qsort(entries, ntensors, sizeof *entries, cmp_entry_offset);
	uint64_t reach = 0;
	const char *reach_name = NULL;
	for (i = 0; i < ntensors; i++) {
		if (entries[i].begin == entries[i].end)
			continue;
		if (reach_name && entries[i].begin < reach) {
			rc = igs_fail(err, IGS_ERR_FORMAT,
			              "%s: tensor '%s' (bytes %llu..%llu) overlaps tensor '%s' "
			              "(ends at %llu)",
			              path, entries[i].t.name, (unsigned long long)entries[i].begin,
			              (unsigned long long)entries[i].end, reach_name,
			              (unsigned long long)reach);
			goto out;
		}
		if (entries[i].end > reach) {
			reach = entries[i].end;
			reach_name = entries[i].t.name;
		}
	}

	/* Only now, with every offset checked, point tensors into the map. */
	const unsigned char *data = (const unsigned char *)f->map + 8 + hlen;
	for (i = 0; i < ntensors; i++) {
		f->tensors[i] = entries[i].t;
		f->tensors[i].data = data + entries[i].begin;
		f->by_name[i] = &f->tensors[i];
	}
	qsort(f->by_name, ntensors, sizeof *f->by_name, cmp_tensor_name);
	for (i = 1; i < ntensors; i++) {
		if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0) {
			rc = igs_fail(err, IGS_ERR_FORMAT,
			              "%s: tensor '%s' appears twice in the header", path,
			              f->by_name[i]->name);
			goto out;
		}
	}
	f->count = ntensors;
	f->nmeta = nmeta;

out:
	free(entries);
	cJSON_Delete(root);
	free(text);
	return rc;
}

/* ======================================================================== */
/* 5. Open and close                                                        */
/* ======================================================================== */

/* SHA-256 of `len` bytes as lowercase hex into out[65]. */
static int sha256_hex(char out[65], const void *data, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		return -1;
	static const char hex[] = "0123456789abcdef";
	for (unsigned i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
	return 0;
}

/* Same file, same size, same modification time: nothing wrote it meanwhile. */
static bool same_version(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* f->size bytes of fd into f->map (allocated here), refusing a file that
 * grew, shrank or was modified while it was read. */
static int read_whole(int fd, const char *path, const struct stat *before, struct st_file *f,
                      struct igs_error *err)
{
	unsigned char *buf = memory_alloc_large(f->size);
	if (!buf)
		return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory to read %zu bytes", path,
		                f->size);
	f->map = buf;
	size_t done = 0;
	while (done < f->size) {
		ssize_t n = pread(fd, buf + done, f->size - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return igs_fail(err, IGS_ERR_IO, "%s: cannot read: %s", path,
			                strerror(errno));
		if (n == 0)
			return igs_fail(err, IGS_ERR_IO,
			                "%s: the file shrank from %zu to %zu bytes while it was read "
			                "(being replaced? load it again)",
			                path, f->size, done);
		done += (size_t)n;
	}
	struct stat after;
	char extra;
	if (fstat(fd, &after) != 0 || !same_version(before, &after) ||
	    pread(fd, &extra, 1, (off_t)f->size) != 0)
		return igs_fail(err, IGS_ERR_IO,
		                "%s: the file changed while it was read (being replaced? load it "
		                "again)",
		                path);
	return 0;
}

/*
 * safetensors_open - see safetensors.h.  On success the caller owns *out
 * and releases it with safetensors_close; every pointer it hands out
 * (names, data, metadata, sha256) lives until then.  On failure *out is
 * NULL.
 */
int safetensors_open(struct st_file **out, const char *path, struct igs_error *err)
{
	*out = NULL;
	struct st_file *f = calloc(1, sizeof *f);
	if (!f || !(f->path = strdup(path))) {
		free(f);
		return igs_fail(err, IGS_ERR_NOMEM, "%s: no memory to open", path);
	}
	int rc = 0;

	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = igs_fail(err, IGS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
		goto fail;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		rc = igs_fail(err, IGS_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
		close(fd);
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = igs_fail(err, IGS_ERR_IO, "%s: not a regular file", path);
		close(fd);
		goto fail;
	}
	/* mmap of length 0 fails with EINVAL: name the real problem instead. */
	if (st.st_size == 0) {
		rc = igs_fail(err, IGS_ERR_FORMAT,
		              "%s: file is empty (0 bytes), not a safetensors file", path);
		close(fd);
		goto fail;
	}
	if ((uint64_t)st.st_size > SIZE_MAX) {
		rc = igs_fail(err, IGS_ERR_IO, "%s: file of %lld bytes is too large to map", path,
		              (long long)st.st_size);
		close(fd);
		goto fail;
	}
	f->size = (size_t)st.st_size;
	/*
	 * Read, not mapped: the bytes hashed, validated and loaded are then one
	 * copy, whatever happens to the file meanwhile.  A mapping would see a
	 * concurrent rewrite in pages not yet touched (a hash of one version,
	 * weights of another) and die of SIGBUS when the file is truncated.
	 */
	rc = read_whole(fd, path, &st, f, err);
	close(fd);
	if (rc)
		goto fail;

	if (f->size < 8) {
		rc = igs_fail(err, IGS_ERR_FORMAT,
		              "%s: file of %zu bytes is too short for the 8-byte header length",
		              path, f->size);
		goto fail;
	}
	uint64_t hlen = load_le64(f->map);
	if (hlen >= ST_MAX_HEADER_BYTES) {
		rc = igs_fail(
		    err, IGS_ERR_FORMAT,
		    "%s: header length %llu is over the %llu-byte limit (not a safetensors file?)",
		    path, (unsigned long long)hlen, ST_MAX_HEADER_BYTES);
		goto fail;
	}
	if (hlen > f->size - 8) {
		rc = igs_fail(
		    err, IGS_ERR_FORMAT,
		    "%s: header length %llu runs past the end of the %zu-byte file (truncated?)",
		    path, (unsigned long long)hlen, f->size);
		goto fail;
	}
	rc = parse_header(f, (const char *)f->map + 8, (size_t)hlen, f->size - 8 - hlen, err);
	if (rc)
		goto fail;

	/* The weights' identity for /v1/model; the file is mapped anyway. */
	if (sha256_hex(f->sha256, f->map, f->size) != 0) {
		/* EVP_Digest with the built-in SHA-256 fails only when it
		 * cannot allocate its context. */
		rc = igs_fail(err, IGS_ERR_NOMEM, "%s: SHA-256 computation failed", path);
		goto fail;
	}
	*out = f;
	return 0;

fail:
	safetensors_close(&f);
	return rc;
}

/* safetensors_close - unmap, free everything, set *f to NULL.  Every pointer
 * obtained from the file (tensors, names, data) becomes invalid. */
void safetensors_close(struct st_file **f)
{
	if (!f || !*f)
		return;
	struct st_file *s = *f;
	free(s->map);
	free(s->tensors);
	free(s->by_name);
	free(s->meta);
	free(s->strings);
	free(s->path);
	free(s);
	*f = NULL;
}

/* ======================================================================== */
/* 6. Lookup                                                                */
/* ======================================================================== */

size_t safetensors_count(const struct st_file *f)
{
	return f ? f->count : 0;
}

/* The i-th tensor in data-offset order, NULL past the end; owned by `f`. */
const struct st_tensor *safetensors_at(const struct st_file *f, size_t i)
{
	return f && i < f->count ? &f->tensors[i] : NULL;
}

/* Binary search over the name-sorted index; owned by `f`. */
const struct st_tensor *safetensors_find(const struct st_file *f, const char *name)
{
	if (!f || !name || f->count == 0)
		return NULL;
	struct st_tensor key = {.name = name};
	const struct st_tensor *kp = &key;
	struct st_tensor **hit =
	    bsearch(&kp, f->by_name, f->count, sizeof *f->by_name, cmp_tensor_name);
	return hit ? *hit : NULL;
}

/* 64 lowercase hex digits, owned by `f`. */
const char *safetensors_sha256(const struct st_file *f)
{
	return f ? f->sha256 : NULL;
}

/* First value stored under `key` in __metadata__, owned by `f`; NULL when
 * absent. */
const char *safetensors_metadata(const struct st_file *f, const char *key)
{
	if (!f || !key)
		return NULL;
	for (size_t i = 0; i < f->nmeta; i++)
		if (strcmp(f->meta[i].key, key) == 0)
			return f->meta[i].value;
	return NULL;
}

/* ======================================================================== */
/* 7. Reading as float32                                                    */
/* ======================================================================== */

/*
 * safetensors_read_f32 - see safetensors.h.  `t` belongs to an open file;
 * `dst` (t->numel floats) is caller-owned.  The source may be unaligned.
 */
int safetensors_read_f32(const struct st_tensor *t, float *dst, struct igs_error *err)
{
	if (!t)
		return igs_fail(err, IGS_ERR_INTERNAL, "safetensors_read_f32: no tensor given");
	const unsigned char *src = t->data;
	size_t n = (size_t)t->numel;

	switch (t->dtype) {
	case ST_F32:
		for (size_t i = 0; i < n; i++)
			dst[i] = f32_from_bits(load_le32(src + 4 * i));
		break;
	case ST_F16:
		for (size_t i = 0; i < n; i++)
			dst[i] = f16_to_f32(load_le16(src + 2 * i));
		break;
	case ST_BF16:
		for (size_t i = 0; i < n; i++)
			dst[i] = bf16_to_f32(load_le16(src + 2 * i));
		break;
	case ST_F64:
		for (size_t i = 0; i < n; i++) {
			uint64_t u = load_le64(src + 8 * i);
			double v;
			memcpy(&v, &u, 8);
			dst[i] = (float)v;
		}
		break;
	default:
		return igs_fail(
		    err, IGS_ERR_FORMAT,
		    "tensor '%s' has dtype %s, which cannot be read as float32 (only F32, "
		    "F16, BF16, F64)",
		    t->name, safetensors_dtype_name(t->dtype));
	}
	return 0;
}
