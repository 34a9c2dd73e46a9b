/*
 * cache.h - the result cache: whole answers of POST /predict and
 * /attribute, least recently used first out, within a byte budget
 * (--cache-bytes).
 *
 * An entry is keyed by a SHA-256 digest (cache_key: the route, the model's
 * sha256, the options' canonical text and the image bytes) and holds the
 * answer's identity JSON bytes.  Its cost against the budget is its bytes
 * plus CACHE_ENTRY_OVERHEAD; an answer that alone costs more than the
 * budget is not stored.  Inserting evicts from the least recently used end
 * until the new entry fits; a lookup that hits makes its entry the most
 * recently used.
 *
 * Every function is thread-safe (one mutex; a lookup copies the bytes out
 * under it, so an entry is never read after its eviction).
 */
#ifndef IGSERVE_CACHE_H
#define IGSERVE_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "request_options.h"

#define CACHE_KEY_BYTES 32

/* What an entry costs beyond its answer's bytes: its node, key and
 * bucket link, counted so a budget of tiny answers still bounds memory. */
#define CACHE_ENTRY_OVERHEAD 128

struct cache;

struct cache_stats {
	unsigned long long hits, misses, insertions, evictions;
	size_t bytes;   /* answers' bytes + overhead held now */
	size_t entries; /* answers held now */
	size_t budget;  /* --cache-bytes */
};

/* cache_open - an empty cache of `budget` bytes (> 0).  Returns 0 or
 * IGS_ERR_NOMEM. */
int cache_open(struct cache **out, size_t budget);
void cache_close(struct cache **c);

/*
 * cache_key - the digest of one request: `route` ("predict",
 * "attribute"), the model's sha256 (hex text), the options' canonical text
 * (request_options_canonical) and their normalized bytes
 * (request_options_normalized), and the image bytes, each length-prefixed
 * so no two different requests write the same bytes.  Returns 0, or -1 when
 * the options do not fit their text or SHA-256 is unavailable.
 */
int cache_key(const char *route, const char *model_sha256, const struct request_options *o,
              const void *image, size_t image_len, unsigned char key[CACHE_KEY_BYTES]);

/*
 * cache_lookup - on a hit, a malloc'd copy of the answer (*data, *len; the
 * caller frees) and true; counts a hit or a miss.  Out of memory for the
 * copy counts as a miss.
 */
bool cache_lookup(struct cache *c, const unsigned char key[CACHE_KEY_BYTES], char **data,
                  size_t *len);

/*
 * cache_insert - store a copy of `data` under `key` (replacing an entry of
 * the same key: two identical requests computed at once), evicting least
 * recently used entries to make room.  Returns true when stored; false
 * when it costs more than the budget or memory ran out.
 */
bool cache_insert(struct cache *c, const unsigned char key[CACHE_KEY_BYTES], const char *data,
                  size_t len);

void cache_get_stats(struct cache *c, struct cache_stats *out);

#endif
