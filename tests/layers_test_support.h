/*
 * layers_test_support.h - comparisons and pooling shapes shared by the kernel
 * tests of layers.c (test_layers.c, test_layers_pool.c).  Each test program
 * is one translation unit, so the helpers are static inline here.
 */
#ifndef IGSERVE_LAYERS_TEST_SUPPORT_H
#define IGSERVE_LAYERS_TEST_SUPPORT_H

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "conv.h"
#include "layers.h"
#include "test_random.h"

/* ------------------------------------------------------------- helpers */

/* |got - ref| <= tol * (1 + |ref|) everywhere; the message names the first
 * element that is off. */
static inline void assert_close(const float *got, const double *ref, size_t count, double tol,
                         const char *what)
{
	for (size_t i = 0; i < count; i++) {
		double err = fabs((double)got[i] - ref[i]);
		ck_assert_msg(err <= tol * (1.0 + fabs(ref[i])),
		              "%s: element %zu is %.9g, expected %.9g", what, i, (double)got[i],
		              ref[i]);
	}
}

/* Central difference check.  fd and an hold `count` entries; entries with
 * skip[i] set are ignored, but at least `min_fraction` must be checked so
 * that skipping cannot turn a test green. */
static inline void assert_fd(const double *fd, const float *an, const int *skip, size_t count, double tol,
                      double min_fraction, const char *what)
{
	size_t checked = 0;
	for (size_t i = 0; i < count; i++) {
		if (skip[i])
			continue;
		checked++;
		double err = fabs(fd[i] - (double)an[i]);
		ck_assert_msg(err <= tol * (1.0 + fabs(fd[i])),
		              "%s: d/dx[%zu] analytic %.7g, finite difference %.7g", what, i,
		              (double)an[i], fd[i]);
	}
	ck_assert_msg((double)checked >= min_fraction * (double)count,
	              "%s: only %zu of %zu gradient entries checked", what, checked, count);
}

/* ------------------------------------------------------- pooling shapes */

#define POOL(c_, n_, h_, w_, k_, s_, p_)                                                           \
	{                                                                                          \
		.c = c_, .n = n_, .h_in = h_, .w_in = w_, .k = k_, .stride = s_, .pad = p_         \
	}
static const struct maxpool_shape pool_cases[] = {
    /*   c, n, h_in, w_in, k, stride, pad */
    POOL(3, 2, 9, 12, 3, 2, 1), /* ResNet's stem pool */
    POOL(2, 1, 8, 6, 2, 2, 0),   POOL(4, 3, 5, 7, 3, 1, 1),
    POOL(1, 2, 2, 3, 3, 2, 1),   /* windows mostly padding */
    POOL(32, 2, 9, 12, 3, 2, 1), /* two channel blocks (blocked output) */
    /* TensorFlow 'SAME' (the official ResNet v2 stem pool): even sides pad
     * 0 before and 1 after, odd sides 1 and 1 */
    {.c = 3, .n = 2, .h_in = 10, .w_in = 9, .k = 3, .stride = 2, .same = true},
    {.c = 32, .n = 1, .h_in = 12, .w_in = 12, .k = 3, .stride = 2, .same = true},
    {.c = 2, .n = 1, .h_in = 7, .w_in = 8, .k = 2, .stride = 2, .same = true},
};
#define N_POOL_CASES (sizeof pool_cases / sizeof pool_cases[0])

static inline size_t pool_in_count(const struct maxpool_shape *s)
{
	return (size_t)s->c * s->n * s->h_in * s->w_in;
}

static inline size_t pool_out_count(const struct maxpool_shape *s)
{
	return (size_t)s->c * s->n * s->h_out * s->w_out;
}

#endif
