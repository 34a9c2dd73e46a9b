/*
 * test_random.h - seeded data and small numeric helpers shared by the
 * kernel tests (test_layers.c, test_conv.c).  Each test program is one
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

#endif
