/*
 * cache.c - the result cache (cache.h): a hash table of entries by key,
 * threaded on one list from most to least recently used.
 */
#include "cache.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

struct entry {
	unsigned char key[CACHE_KEY_BYTES];
	struct entry *hnext;       /* bucket chain */
	struct entry *newer, *older; /* the LRU list */
	size_t len;
	char data[]; /* the answer */
};

struct cache {
	pthread_mutex_t lock;
	struct entry **buckets;
	size_t n_buckets; /* a power of two */
	struct entry *newest, *oldest;
	struct cache_stats stats;
};

enum { FIRST_BUCKETS = 256 };

static size_t entry_cost(size_t len)
{
	return len + CACHE_ENTRY_OVERHEAD;
}

/* The key is a SHA-256 digest: its first bytes are as good as any hash. */
static size_t bucket_of(const struct cache *c, const unsigned char *key)
{
	uint64_t h;
	memcpy(&h, key, sizeof h);
	return (size_t)h & (c->n_buckets - 1);
}

int cache_open(struct cache **out, size_t budget)
{
	*out = NULL;
	struct cache *c = calloc(1, sizeof *c);
	if (!c)
		return IGS_ERR_NOMEM;
	c->n_buckets = FIRST_BUCKETS;
	c->buckets = calloc(c->n_buckets, sizeof *c->buckets);
	if (!c->buckets) {
		free(c);
		return IGS_ERR_NOMEM;
	}
	c->stats.budget = budget;
	pthread_mutex_init(&c->lock, NULL);
	*out = c;
	return 0;
}

void cache_close(struct cache **pc)
{
	struct cache *c = *pc;
	if (!c)
		return;
	*pc = NULL;
	for (struct entry *e = c->newest, *next; e; e = next) {
		next = e->older;
		free(e);
	}
	free(c->buckets);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* ---- the key ---- */

static int digest_part(EVP_MD_CTX *ctx, const void *data, size_t len)
{
	unsigned char prefix[8];
	uint64_t n = len;
	for (int i = 0; i < 8; i++)
		prefix[i] = (unsigned char)(n >> (8 * i));
	return EVP_DigestUpdate(ctx, prefix, sizeof prefix) && EVP_DigestUpdate(ctx, data, len);
}

int cache_key(const char *route, const char *model_sha256, const struct request_options *o,
              const void *image, size_t image_len, unsigned char key[CACHE_KEY_BYTES])
{
	char options[REQUEST_OPTIONS_CANONICAL_MAX];
	int n = request_options_canonical(o, options, sizeof options);
	if (n < 0)
		return -1;
	struct request_options normalized;
	request_options_normalized(o, &normalized);
	static const char version[] = "igserve result cache v1";
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned len = 0;
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
	         digest_part(ctx, version, sizeof version - 1) &&
	         digest_part(ctx, route, strlen(route)) &&
	         digest_part(ctx, model_sha256, strlen(model_sha256)) &&
	         digest_part(ctx, options, (size_t)n) &&
	         digest_part(ctx, &normalized, sizeof normalized) &&
	         digest_part(ctx, image, image_len) &&
	         EVP_DigestFinal_ex(ctx, key, &len) && len == CACHE_KEY_BYTES;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -1;
}

/* ---- the list and the table (c->lock held) ---- */

static void list_unlink(struct cache *c, struct entry *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void list_push_newest(struct cache *c, struct entry *e)
{
	e->newer = NULL;
	e->older = c->newest;
	if (c->newest)
		c->newest->newer = e;
	c->newest = e;
	if (!c->oldest)
		c->oldest = e;
}

static struct entry **find_slot(struct cache *c, const unsigned char *key)
{
	struct entry **slot = &c->buckets[bucket_of(c, key)];
	while (*slot && memcmp((*slot)->key, key, CACHE_KEY_BYTES))
		slot = &(*slot)->hnext;
	return slot;
}

static void remove_entry(struct cache *c, struct entry **slot)
{
	struct entry *e = *slot;
	*slot = e->hnext;
	list_unlink(c, e);
	c->stats.bytes -= entry_cost(e->len);
	c->stats.entries--;
	free(e);
}

/* Twice the buckets once there are more entries than buckets; a failed
 * allocation just keeps the longer chains. */
static void maybe_grow(struct cache *c)
{
	if (c->stats.entries <= c->n_buckets)
		return;
	size_t n = c->n_buckets * 2;
	struct entry **b = calloc(n, sizeof *b);
	if (!b)
		return;
	struct entry **old = c->buckets;
	size_t old_n = c->n_buckets;
	c->buckets = b;
	c->n_buckets = n;
	for (size_t i = 0; i < old_n; i++)
		for (struct entry *e = old[i], *next; e; e = next) {
			next = e->hnext;
			size_t k = bucket_of(c, e->key);
			e->hnext = b[k];
			b[k] = e;
		}
	free(old);
}

/* ---- lookups and insertions ---- */

bool cache_lookup(struct cache *c, const unsigned char key[CACHE_KEY_BYTES], char **data,
                  size_t *len)
{
	*data = NULL;
	*len = 0;
	pthread_mutex_lock(&c->lock);
	struct entry *e = *find_slot(c, key);
	char *copy = e ? malloc(e->len + 1) : NULL;
	if (copy) {
		memcpy(copy, e->data, e->len);
		copy[e->len] = 0;
		*len = e->len;
		list_unlink(c, e);
		list_push_newest(c, e);
		c->stats.hits++;
	} else {
		c->stats.misses++;
	}
	pthread_mutex_unlock(&c->lock);
	*data = copy;
	return copy != NULL;
}

bool cache_insert(struct cache *c, const unsigned char key[CACHE_KEY_BYTES], const char *data,
                  size_t len)
{
	if (len > c->stats.budget || entry_cost(len) > c->stats.budget)
		return false;
	/* allocated and filled outside the lock: a copy of a megabyte */
	struct entry *e = malloc(sizeof *e + len);
	if (!e)
		return false;
	memcpy(e->key, key, CACHE_KEY_BYTES);
	memcpy(e->data, data, len);
	e->len = len;
	pthread_mutex_lock(&c->lock);
	struct entry **slot = find_slot(c, key);
	if (*slot)
		remove_entry(c, slot);
	while (c->oldest && c->stats.bytes + entry_cost(len) > c->stats.budget) {
		remove_entry(c, find_slot(c, c->oldest->key));
		c->stats.evictions++;
	}
	slot = &c->buckets[bucket_of(c, key)];
	e->hnext = *slot;
	*slot = e;
	list_push_newest(c, e);
	c->stats.bytes += entry_cost(len);
	c->stats.entries++;
	c->stats.insertions++;
	maybe_grow(c);
	pthread_mutex_unlock(&c->lock);
	return true;
}

void cache_get_stats(struct cache *c, struct cache_stats *out)
{
	pthread_mutex_lock(&c->lock);
	*out = c->stats;
	pthread_mutex_unlock(&c->lock);
}
