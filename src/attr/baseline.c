/*
 * baseline.c - the PRNG and the baseline images x' of the path
 * (attribution_baseline in attribution.h).
 */
#include "attribution.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"

#include "attr_internal.h"

/* ---- PRNG and baselines ---- */

uint64_t attribution_splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* uniform in [0, 1) with 53 bits */
double attr_uniform01(uint64_t *state)
{
	return (double)(attribution_splitmix64(state) >> 11) * 0x1.0p-53;
}

/*
 * Separable Gaussian blur, edges clamped.  src, dst [size][size][3];
 * tmp [size][size][3] scratch.  Weights exp(-d^2 / 2 sigma^2) for
 * |d| <= ceil(3 sigma), normalized to sum 1.
 */
static int blur(const float *restrict src, float *restrict dst, int size, double sigma,
                struct igs_error *err)
{
	if (!(sigma > 0) || sigma > ATTR_BLUR_SIGMA_MAX)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "blur_sigma must be in (0, %g], got %g",
		                ATTR_BLUR_SIGMA_MAX, sigma);
	int radius = (int)ceil(3.0 * sigma);
	size_t n = (size_t)size * size * 3;
	double *kernel = malloc((size_t)(2 * radius + 1) * sizeof *kernel);
	float *tmp = malloc(n * sizeof *tmp);
	if (!kernel || !tmp) {
		free(kernel);
		free(tmp);
		return igs_fail(err, IGS_ERR_NOMEM, "blur baseline: out of memory");
	}
	double total = 0;
	for (int d = -radius; d <= radius; d++)
		total += kernel[d + radius] = exp(-(double)d * d / (2.0 * sigma * sigma));
	for (int d = 0; d <= 2 * radius; d++)
		kernel[d] /= total;
	/* rows: tmp[y][x] = sum_d k[d] src[y][clamp(x + d)] */
	for (int y = 0; y < size; y++)
		for (int x = 0; x < size; x++)
			for (int c = 0; c < 3; c++) {
				double s = 0;
				for (int d = -radius; d <= radius; d++) {
					int xx = x + d < 0 ? 0 : x + d >= size ? size - 1 : x + d;
					s += kernel[d + radius] *
					     src[((size_t)y * size + xx) * 3 + c];
				}
				tmp[((size_t)y * size + x) * 3 + c] = (float)s;
			}
	/* columns */
	for (int y = 0; y < size; y++)
		for (int x = 0; x < size; x++)
			for (int c = 0; c < 3; c++) {
				double s = 0;
				for (int d = -radius; d <= radius; d++) {
					int yy = y + d < 0 ? 0 : y + d >= size ? size - 1 : y + d;
					s += kernel[d + radius] *
					     tmp[((size_t)yy * size + x) * 3 + c];
				}
				dst[((size_t)y * size + x) * 3 + c] = (float)s;
			}
	free(kernel);
	free(tmp);
	return 0;
}

/*
 * The same Gaussian (weights exp(-d^2 / 2 sigma^2), |d| <= ceil(3 sigma),
 * normalized; edges clamped) as blur() above, for Blur IG's many blurs, as
 * two matrix products: the taps that fall past an edge are folded into
 * the edge pixel, giving a [size][size] matrix W, and the blur is W along
 * x (on the image with x and y swapped) then W along y, each one matrix
 * product over [size][size * 3] (nn's linear_backward).  blur() is kept for the blur baseline,
 * whose fixtures pin its rounding.
 */
static void swap_xy(const float *restrict src, float *restrict dst, int size)
{
	for (int y = 0; y < size; y++)
		for (int x = 0; x < size; x++)
			for (int c = 0; c < 3; c++)
				dst[((size_t)x * size + y) * 3 + c] =
				    src[((size_t)y * size + x) * 3 + c];
}

static int blur_gemm(const float *restrict src, float *restrict dst, int size, double sigma,
                     struct igs_error *err)
{
	int radius = (int)ceil(3.0 * sigma);
	size_t n = (size_t)size * size * 3;
	double *kernel = malloc((size_t)(2 * radius + 1) * sizeof *kernel);
	float *w = calloc((size_t)size * size, sizeof *w); /* w[out][in] */
	/* calloc: gcc cannot see that swap_xy fills it */
	float *a = calloc(n, sizeof *a), *t = malloc(n * sizeof *t);
	if (!kernel || !w || !a || !t) {
		free(kernel);
		free(w);
		free(a);
		free(t);
		return igs_fail(err, IGS_ERR_NOMEM, "blur: out of memory");
	}
	double total = 0;
	for (int d = -radius; d <= radius; d++)
		total += kernel[d + radius] = exp(-(double)d * d / (2.0 * sigma * sigma));
	for (int x = 0; x < size; x++) {
		double folded[2] = {0, 0}; /* past the left, the right edge */
		for (int d = -radius; d <= radius; d++) {
			double k = kernel[d + radius] / total;
			if (x + d < 0)
				folded[0] += k;
			else if (x + d >= size)
				folded[1] += k;
			else
				w[(size_t)x * size + x + d] += (float)k;
		}
		w[(size_t)x * size] += (float)folded[0];
		w[(size_t)x * size + size - 1] += (float)folded[1];
	}
	const int cols = size * 3;
	/* linear_backward (nn, the BLAS stage): out [n][c] = in [n][k] x m [k][c] */
	swap_xy(src, a, size);
	linear_backward(t, w, a, size, cols, size);
	swap_xy(t, a, size);
	linear_backward(dst, w, a, size, cols, size);
	free(kernel);
	free(w);
	free(a);
	free(t);
	return 0;
}

int attr_blur(const float *src, float *dst, int size, double sigma, struct igs_error *err)
{
	if (sigma == 0) {
		if (src != dst)
			memcpy(dst, src, (size_t)size * size * 3 * sizeof *dst);
		return 0;
	}
	if (!(sigma > 0) || sigma > ATTR_BLUR_SIGMA_MAX)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "blur sigma must be in [0, %g], got %g",
		                ATTR_BLUR_SIGMA_MAX, sigma);
	return blur_gemm(src, dst, size, sigma, err);
}

bool attr_constant_baseline(enum baseline_kind kind, float *value)
{
	switch (kind) {
	case BASELINE_GRAY:
		*value = 127.5f;
		return true;
	case BASELINE_BLACK:
		*value = 0.0f;
		return true;
	case BASELINE_WHITE:
		*value = 255.0f;
		return true;
	default:
		return false;
	}
}

int attribution_baseline(enum baseline_kind kind, double blur_sigma, uint64_t seed, const float *x,
                         int size, float *out, struct igs_error *err)
{
	size_t n = (size_t)size * size * 3;
	float v;
	switch (kind) {
	case BASELINE_GRAY:
	case BASELINE_BLACK:
	case BASELINE_WHITE:
		attr_constant_baseline(kind, &v);
		for (size_t i = 0; i < n; i++)
			out[i] = v;
		return 0;
	case BASELINE_BLUR:
		return blur(x, out, size, blur_sigma, err);
	case BASELINE_NOISE: {
		uint64_t state = seed;
		for (size_t i = 0; i < n; i++)
			out[i] = (float)(attr_uniform01(&state) * 255.0);
		return 0;
	}
	}
	return igs_fail(err, IGS_ERR_BAD_OPTION, "baseline %d is unknown", (int)kind);
}
