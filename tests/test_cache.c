/*
 * test_cache.c - the result cache's pieces without a server: the LRU
 * against a naive reference (a list scanned in full) over random
 * operations, its budget and its counters, concurrent use (bounded; run
 * under ThreadSanitizer by scripts/test), the key (the same for options
 * that resolve alike, different for anything that changes an answer), and
 * gzip (Accept-Encoding's q-values, zlib round trips).
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cache.h"
#include "gzip.h"
#include "request_options.h"

static void key_of(int id, unsigned char key[CACHE_KEY_BYTES])
{
	memset(key, 0, CACHE_KEY_BYTES);
	/* spread over the buckets like a digest would, but readable */
	uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
	memcpy(key, &h, sizeof h);
	memcpy(key + 8, &id, sizeof id);
}

static void fill(char *buf, size_t len, int id)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)('a' + (id * 7 + (int)i) % 26);
}

static bool lookup_is(struct cache *c, int id, size_t len)
{
	unsigned char key[CACHE_KEY_BYTES];
	key_of(id, key);
	char *data;
	size_t n;
	if (!cache_lookup(c, key, &data, &n))
		return false;
	char *want = malloc(len + 1);
	fill(want, len, id);
	bool same = n == len && !memcmp(data, want, len) && data[n] == 0;
	free(want);
	free(data);
	ck_assert_msg(same, "entry %d came back with other bytes", id);
	return true;
}

static bool insert(struct cache *c, int id, size_t len)
{
	unsigned char key[CACHE_KEY_BYTES];
	key_of(id, key);
	char *data = malloc(len ? len : 1);
	fill(data, len, id);
	bool ok = cache_insert(c, key, data, len);
	free(data);
	return ok;
}

START_TEST(test_lru_order)
{
	const size_t each = 1000, cost = each + CACHE_ENTRY_OVERHEAD;
	struct cache *c;
	ck_assert_int_eq(cache_open(&c, 3 * cost), 0);
	ck_assert(insert(c, 1, each));
	ck_assert(insert(c, 2, each));
	ck_assert(insert(c, 3, each));
	ck_assert(lookup_is(c, 1, each)); /* touch 1: 2 is now the oldest */
	ck_assert(insert(c, 4, each));
	ck_assert(!lookup_is(c, 2, each));
	ck_assert(lookup_is(c, 1, each));
	ck_assert(lookup_is(c, 3, each));
	ck_assert(lookup_is(c, 4, each));
	struct cache_stats st;
	cache_get_stats(c, &st);
	ck_assert_uint_eq(st.entries, 3);
	ck_assert_uint_eq(st.bytes, 3 * cost);
	ck_assert_uint_eq(st.evictions, 1);
	ck_assert_uint_eq(st.hits, 4);
	ck_assert_uint_eq(st.misses, 1);
	ck_assert_uint_eq(st.insertions, 4);
	ck_assert_uint_eq(st.budget, 3 * cost);
	cache_close(&c);
	ck_assert_ptr_null(c);
}
END_TEST

START_TEST(test_budget_edges)
{
	const size_t budget = 10000;
	struct cache *c;
	ck_assert_int_eq(cache_open(&c, budget), 0);
	ck_assert(insert(c, 1, 100));
	/* over the budget alone: refused, the others untouched */
	ck_assert(!insert(c, 2, budget - CACHE_ENTRY_OVERHEAD + 1));
	ck_assert(!insert(c, 3, budget + 5));
	ck_assert(lookup_is(c, 1, 100));
	/* exactly the budget: stored, every other entry evicted */
	ck_assert(insert(c, 4, budget - CACHE_ENTRY_OVERHEAD));
	ck_assert(!lookup_is(c, 1, 100));
	ck_assert(lookup_is(c, 4, budget - CACHE_ENTRY_OVERHEAD));
	struct cache_stats st;
	cache_get_stats(c, &st);
	ck_assert_uint_eq(st.entries, 1);
	ck_assert_uint_eq(st.bytes, budget);
	/* the same key again replaces (no second entry, no eviction counted) */
	ck_assert(insert(c, 4, 50));
	ck_assert(lookup_is(c, 4, 50));
	cache_get_stats(c, &st);
	ck_assert_uint_eq(st.entries, 1);
	ck_assert_uint_eq(st.bytes, 50 + CACHE_ENTRY_OVERHEAD);
	ck_assert_uint_eq(st.evictions, 1);
	/* an empty answer is an entry too */
	ck_assert(insert(c, 5, 0));
	ck_assert(lookup_is(c, 5, 0));
	cache_close(&c);
}
END_TEST

/* The reference: entries in an array, most recent last, scanned whole. */
struct naive {
	int id[4096];
	size_t len[4096];
	int n;
	size_t bytes, budget;
	unsigned long long evictions;
};

static int naive_find(const struct naive *m, int id)
{
	for (int i = 0; i < m->n; i++)
		if (m->id[i] == id)
			return i;
	return -1;
}

static void naive_remove(struct naive *m, int i)
{
	m->bytes -= m->len[i] + CACHE_ENTRY_OVERHEAD;
	memmove(&m->id[i], &m->id[i + 1], (size_t)(m->n - i - 1) * sizeof m->id[0]);
	memmove(&m->len[i], &m->len[i + 1], (size_t)(m->n - i - 1) * sizeof m->len[0]);
	m->n--;
}

static void naive_append(struct naive *m, int id, size_t len)
{
	m->id[m->n] = id;
	m->len[m->n] = len;
	m->n++;
	m->bytes += len + CACHE_ENTRY_OVERHEAD;
}

static bool naive_lookup(struct naive *m, int id, size_t *len)
{
	int i = naive_find(m, id);
	if (i < 0)
		return false;
	*len = m->len[i];
	naive_remove(m, i);
	naive_append(m, id, *len);
	return true;
}

static bool naive_insert(struct naive *m, int id, size_t len)
{
	if (len + CACHE_ENTRY_OVERHEAD > m->budget)
		return false;
	int i = naive_find(m, id);
	if (i >= 0)
		naive_remove(m, i);
	while (m->n && m->bytes + len + CACHE_ENTRY_OVERHEAD > m->budget) {
		naive_remove(m, 0);
		m->evictions++;
	}
	naive_append(m, id, len);
	return true;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

START_TEST(test_against_naive_lru)
{
	/* a budget of a few dozen entries over 300 keys: hits, misses and
	 * evictions all happen; enough entries to grow the table */
	static struct naive m;
	memset(&m, 0, sizeof m);
	m.budget = 40000;
	struct cache *c;
	ck_assert_int_eq(cache_open(&c, m.budget), 0);
	/* each key always has the same length, as an answer has */
	size_t key_len[300];
	for (int i = 0; i < 300; i++)
		key_len[i] = next_random() % 2000;
	key_len[7] = 50000; /* one answer over the budget */
	unsigned long long hits = 0, misses = 0;
	for (int op = 0; op < 20000; op++) {
		int id = (int)(next_random() % 300);
		if (next_random() % 2) {
			size_t want;
			bool expect = naive_lookup(&m, id, &want);
			ck_assert_int_eq(lookup_is(c, id, key_len[id]), expect);
			if (expect)
				hits++;
			else
				misses++;
		} else {
			ck_assert_int_eq(insert(c, id, key_len[id]), naive_insert(&m, id, key_len[id]));
		}
		struct cache_stats st;
		cache_get_stats(c, &st);
		ck_assert_uint_eq(st.bytes, m.bytes);
		ck_assert_uint_eq(st.entries, (size_t)m.n);
		ck_assert_uint_eq(st.evictions, m.evictions);
		ck_assert_uint_le(st.bytes, m.budget);
	}
	struct cache_stats st;
	cache_get_stats(c, &st);
	ck_assert_uint_eq(st.hits, hits);
	ck_assert_uint_eq(st.misses, misses);
	ck_assert_uint_gt(hits, 100);
	ck_assert_uint_gt(m.evictions, 100);
	/* many small entries: the table grows past its first buckets */
	struct cache *big;
	ck_assert_int_eq(cache_open(&big, 1u << 24), 0);
	for (int i = 0; i < 5000; i++)
		ck_assert(insert(big, 100000 + i, 10));
	for (int i = 0; i < 5000; i++)
		ck_assert(lookup_is(big, 100000 + i, 10));
	cache_close(&big);
	cache_close(&c);
}
END_TEST

struct worker_arg {
	struct cache *c;
	int seed;
	unsigned long long lookups;
};

static void *hammer(void *p)
{
	struct worker_arg *w = p;
	uint64_t s = 0x1234567ull + (uint64_t)w->seed * 977;
	for (int op = 0; op < 20000; op++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		int id = (int)(s % 64);
		size_t len = 100 + (size_t)id * 10;
		if (s & 1024) {
			insert(w->c, id, len);
		} else {
			lookup_is(w->c, id, len); /* checks the bytes on a hit */
			w->lookups++;
		}
	}
	return NULL;
}

START_TEST(test_threads)
{
	struct cache *c;
	ck_assert_int_eq(cache_open(&c, 20000), 0);
	pthread_t t[4];
	struct worker_arg w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker_arg){.c = c, .seed = i};
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
	}
	unsigned long long lookups = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		lookups += w[i].lookups;
	}
	struct cache_stats st;
	cache_get_stats(c, &st);
	ck_assert_uint_eq(st.hits + st.misses, lookups);
	ck_assert_uint_le(st.bytes, 20000);
	ck_assert_uint_gt(st.hits, 0);
	ck_assert_uint_gt(st.evictions, 0);
	cache_close(&c);
}
END_TEST

/* ---- the key ---- */

static void options_from(struct request_options *o, const char *const *pairs)
{
	request_options_init(o);
	struct igs_error err = {0};
	for (int i = 0; pairs && pairs[i]; i += 2)
		ck_assert_msg(request_options_set(o, pairs[i], pairs[i + 1], 0, &err) == 0, "%s",
		              err.message);
}

static void key_for(const char *route, const char *sha, const char *const *pairs,
                    const char *image, unsigned char key[CACHE_KEY_BYTES])
{
	struct request_options o;
	options_from(&o, pairs);
	ck_assert_int_eq(cache_key(route, sha, &o, image, strlen(image), key), 0);
}

#define SHA "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"

START_TEST(test_key)
{
	unsigned char base[32], k[32];
	key_for("attribute", SHA, NULL, "image bytes", base);
	/* the same answer however the options say it */
	static const char *const same[][7] = {
	    {"steps", "50", NULL},
	    {"method", "ig", NULL},
	    {"method", "gausslegendre", "steps", "50", NULL},
	    {"deadline_ms", "1000", NULL}, /* a complete answer does not depend on it */
	    {"preview", "32", NULL},       /* SSE only */
	    /* the default seven, in another order */
	    {"heatmaps", "channel_b,normalized,deviation,magnitude,overlay,channel_r,channel_g",
	     "steps", "50", NULL},
	    {"top_k", "5", "resize", "letterbox", NULL},
	};
	for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
		key_for("attribute", SHA, same[i], "image bytes", k);
		ck_assert_msg(!memcmp(k, base, 32), "options set %zu gave another key", i);
	}
	/* adaptive IG: no steps means ATTR_ADAPTIVE_START_POINTS, resolved */
	static const char *const adaptive[] = {"tolerance", "0.01", NULL};
#define DIGITS(x) #x
#define NUMBER(x) DIGITS(x)
	static const char *const adaptive_steps[] = {"tolerance", "0.01", "steps",
	                                             NUMBER(ATTR_ADAPTIVE_START_POINTS), NULL};
	unsigned char a1[32], a2[32];
	key_for("attribute", SHA, adaptive, "image bytes", a1);
	key_for("attribute", SHA, adaptive_steps, "image bytes", a2);
	ck_assert(!memcmp(a1, a2, 32));
	ck_assert(memcmp(a1, base, 32));
	/* anything that changes an answer changes the key */
	static const char *const differ[][3] = {
	    {"steps", "51"},           {"top_k", "6"},          {"resize", "stretch"},
	    {"heatmaps", "all"},       {"raw", "npy"},          {"target", "3"},
	    {"method", "saliency"},    {"method", "riemann_left"}, {"baseline", "black"},
	    {"blur_sigma", "11"},      {"seed", "1"},           {"max_steps", "64"},
	    {"path_maps", "true"},     {"output", "probability"}, {"smoothgrad", "vargrad"},
	    {"smoothgrad_samples", "3"}, {"smoothgrad_sigma", "0.2"}, {"include_background", "1"},
	};
	for (size_t i = 0; i < sizeof differ / sizeof differ[0]; i++) {
		const char *const pairs[] = {differ[i][0], differ[i][1], NULL};
		key_for("attribute", SHA, pairs, "image bytes", k);
		ck_assert_msg(memcmp(k, base, 32), "%s=%s gave the default's key", differ[i][0],
		              differ[i][1]);
	}
	key_for("predict", SHA, NULL, "image bytes", k);
	ck_assert(memcmp(k, base, 32));
	key_for("attribute", SHA, NULL, "image bytez", k);
	ck_assert(memcmp(k, base, 32));
	key_for("attribute", "0" SHA, NULL, "image bytes", k);
	ck_assert(memcmp(k, base, 32));
	/* the parts are length-prefixed: moving bytes between them changes the key */
	unsigned char s1[32], s2[32];
	struct request_options o;
	request_options_init(&o);
	ck_assert_int_eq(cache_key("attribute", "ab", &o, "c", 1, s1), 0);
	ck_assert_int_eq(cache_key("attribute", "a", &o, "bc", 2, s2), 0);
	ck_assert(memcmp(s1, s2, 32));
	/* the canonical text is plain and names the options */
	char text[REQUEST_OPTIONS_CANONICAL_MAX];
	ck_assert_int_gt(request_options_canonical(&o, text, sizeof text), 0);
	ck_assert_ptr_nonnull(strstr(text, "steps=50;"));
	ck_assert_int_eq(request_options_canonical(&o, text, 10), -1);
}
END_TEST

/* ---- gzip ---- */

START_TEST(test_accept_encoding)
{
	static const struct {
		const char *value;
		bool gzip;
	} cases[] = {
	    {NULL, false},
	    {"", false},
	    {"gzip", true},
	    {"GZip", true},
	    {"x-gzip", true},
	    {"deflate, gzip, br", true},
	    {"gzip;q=0", false},
	    {"gzip; q=0", false},
	    {"gzip;q=0.000", false},
	    {"gzip;Q=0.", false},
	    {"gzip;q=0.001", true},
	    {"gzip;q=0.5", true},
	    {"gzip;q=1.0", true},
	    {"deflate, br", false},
	    {"identity", false},
	    {"gzipped", false},
	    {"*", true},
	    {"*;q=0", false},
	    {"br, *;q=0.1", true},
	    {"gzip;q=0, *", false}, /* named and refused: * does not bring it back */
	    {"*;q=0, gzip", true},
	    {" gzip ; q=0.8 , identity;q=0", true},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		ck_assert_msg(gzip_accepted(cases[i].value) == cases[i].gzip, "'%s': expected %s",
		              cases[i].value ? cases[i].value : "(none)",
		              cases[i].gzip ? "gzip" : "identity");
}
END_TEST

static char *inflate_all(const char *z, size_t zlen, size_t *out_len)
{
	z_stream s;
	memset(&s, 0, sizeof s);
	ck_assert_int_eq(inflateInit2(&s, 16 + MAX_WBITS), Z_OK);
	size_t cap = zlen * 4 + 1024, len = 0;
	char *out = malloc(cap);
	s.next_in = (Bytef *)z;
	s.avail_in = (uInt)zlen;
	int rc;
	do {
		if (len == cap) {
			cap *= 2;
			out = realloc(out, cap);
		}
		s.next_out = (Bytef *)out + len;
		s.avail_out = (uInt)(cap - len);
		rc = inflate(&s, Z_NO_FLUSH);
		len = cap - s.avail_out;
	} while (rc == Z_OK);
	ck_assert_int_eq(rc, Z_STREAM_END);
	ck_assert_uint_eq(s.avail_in, 0); /* one member, nothing after it */
	inflateEnd(&s);
	*out_len = len;
	return out;
}

START_TEST(test_gzip_round_trip)
{
	const size_t sizes[] = {0, 1, 1000, 3u << 20};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t n = sizes[i];
		char *text = malloc(n + 1);
		for (size_t j = 0; j < n; j++) /* JSON-ish, with some entropy */
			text[j] = j % 13 == 0 ? '"' : (char)('A' + (next_random() % 64) / 2);
		size_t zlen, back_len;
		char *z = gzip_compress(text, n, &zlen);
		ck_assert_ptr_nonnull(z);
		ck_assert_uint_ge(zlen, 18); /* header and trailer at least */
		ck_assert_int_eq((unsigned char)z[0], 0x1f);
		ck_assert_int_eq((unsigned char)z[1], 0x8b);
		char *back = inflate_all(z, zlen, &back_len);
		ck_assert_uint_eq(back_len, n);
		ck_assert(n == 0 || !memcmp(back, text, n));
		if (n > 1000)
			ck_assert_uint_lt(zlen, n); /* 32 letters in 8 bits compress */
		free(back);
		free(z);
		free(text);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cache");
	TCase *lru = tcase_create("lru");
	tcase_set_timeout(lru, 120);
	tcase_add_test(lru, test_lru_order);
	tcase_add_test(lru, test_budget_edges);
	tcase_add_test(lru, test_against_naive_lru);
	tcase_add_test(lru, test_threads);
	suite_add_tcase(s, lru);
	TCase *key = tcase_create("key");
	tcase_add_test(key, test_key);
	suite_add_tcase(s, key);
	TCase *gz = tcase_create("gzip");
	tcase_add_test(gz, test_accept_encoding);
	tcase_add_test(gz, test_gzip_round_trip);
	suite_add_tcase(s, gz);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
