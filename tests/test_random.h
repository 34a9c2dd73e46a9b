/*
 * test_random.h - seeded data and small numeric and layout helpers shared
 * by the kernel tests (test_layers.c, test_conv.c).  Each test program is one
 * translation unit, so the generator's state is per program.
 */
#ifndef IGSERVE_TEST_RANDOM_H
#define IGSERVE_TEST_RANDOM_H

#include <check.h>
#include <stdint.h>
#include <stdlib.h>

static uint32_t rng_state = 12345u;

/* Every test starts from the same seed, forked or not (CK_FORK=no). */
static inline void reseed(void)
{
	rng_state = 12345u;
}

/* xorshift32: uniform in [-1, 1) */
static inline float frand(void)
{
	uint32_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	rng_state = x;
	return (float)((double)(x >> 8) / (double)(1u << 23) - 1.0);
}

static inline float *falloc(size_t count)
{
	float *p = malloc((count ? count : 1) * sizeof(float));
	ck_assert_ptr_nonnull(p);
	return p;
}

static inline double *dalloc(size_t count)
{
	double *p = calloc(count ? count : 1, sizeof(double));
	ck_assert_ptr_nonnull(p);
	return p;
}

static inline float *frandom(size_t count, float scale)
{
	float *p = falloc(count);
	for (size_t i = 0; i < count; i++)
		p[i] = frand() * scale;
	return p;
}

static inline double dot(const float *a, const float *b, size_t count)
{
	double s = 0.0;
	for (size_t i = 0; i < count; i++)
		s += (double)a[i] * b[i];
	return s;
}

/* Where channel ch of pixel p of image i lies in the blocked layout
 * [n][c/B][hw][B] (conv.h's and layers.h's), c a multiple of B. */
static inline size_t blocked_index(int c, int hw, int B, int i, int p, int ch)
{
	return (((size_t)i * (c / B) + ch / B) * hw + p) * B + ch % B;
}

/* NHWC [n][hw][c] into the blocked layout, and back. */
static inline void to_blocked(float *dst, const float *nhwc, int n, int c, int hw, int B)
{
	for (int i = 0; i < n; i++)
		for (int p = 0; p < hw; p++)
			for (int ch = 0; ch < c; ch++)
				dst[blocked_index(c, hw, B, i, p, ch)] =
				    nhwc[((size_t)i * hw + p) * c + ch];
}

static inline void from_blocked(float *nhwc, const float *src, int n, int c, int hw, int B)
{
	for (int i = 0; i < n; i++)
		for (int p = 0; p < hw; p++)
			for (int ch = 0; ch < c; ch++)
				nhwc[((size_t)i * hw + p) * c + ch] =
				    src[blocked_index(c, hw, B, i, p, ch)];
}

#endif
