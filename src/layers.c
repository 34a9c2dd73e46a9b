/*
 * layers.c - the network's kernels other than convolution (see
 * include/igserve/layers.h).
 *
 * Every activation is NHWC, so per-channel parameters are read along the
 * innermost, contiguous axis and the compiler vectorizes over channels.
 * Work is split over the calling thread's OpenMP team by pixels (rows), or
 * by channels where outputs of different pixels overlap (max-pool backward).
 */
#include "igserve/layers.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

void pool_shape_finish(struct pool_shape *s)
{
	s->h_out = (s->h_in + 2 * s->pad - s->k) / s->stride + 1;
	s->w_out = (s->w_in + 2 * s->pad - s->k) / s->stride + 1;
}

/* [*lo, *hi): this thread's contiguous block of [0, total). */
static void thread_range(long total, long *lo, long *hi)
{
	long t = omp_get_thread_num(), nth = omp_get_num_threads();
	*lo = total * t / nth;
	*hi = total * (t + 1) / nth;
}

/* ------------------------------------------------------------ elementwise */

void relu_mask(uint8_t *restrict mask, const float *restrict x, size_t count)
{
#pragma omp parallel for schedule(static)
	for (size_t i = 0; i < count; i++)
		mask[i] = x[i] > 0.0f;
}

void relu_backward(float *restrict d, const uint8_t *restrict mask, size_t count)
{
#pragma omp parallel for schedule(static)
	for (size_t i = 0; i < count; i++)
		d[i] = mask[i] ? d[i] : 0.0f;
}

void tensor_add(float *restrict dst, const float *restrict src, size_t count)
{
#pragma omp parallel for schedule(static)
	for (size_t i = 0; i < count; i++)
		dst[i] += src[i];
}

/* out may equal in (an in-place BatchNorm+ReLU): no restrict here. */
void affine_relu_forward(float *out, uint8_t *mask, const float *in, const float *scale,
                         const float *shift, int channels, size_t pixels)
{
#pragma omp parallel for schedule(static)
	for (size_t p = 0; p < pixels; p++) {
		const float *x = in + p * channels;
		float *y = out + p * channels;
		for (int c = 0; c < channels; c++) {
			float v = x[c] * scale[c] + shift[c];
			y[c] = v > 0.0f ? v : 0.0f;
		}
		if (mask)
			for (int c = 0; c < channels; c++)
				mask[p * channels + c] = y[c] > 0.0f;
	}
}

/* d_in may equal d_out when not accumulating: no restrict on them. */
void affine_relu_backward(float *d_in, const float *d_out, const uint8_t *mask, const float *scale,
                          int channels, size_t pixels, int accumulate)
{
#pragma omp parallel for schedule(static)
	for (size_t p = 0; p < pixels; p++) {
		const float *g = d_out + p * channels;
		const uint8_t *y = mask + p * channels;
		float *dx = d_in + p * channels;
		if (accumulate) {
			for (int c = 0; c < channels; c++)
				dx[c] += y[c] ? g[c] * scale[c] : 0.0f;
		} else {
			for (int c = 0; c < channels; c++)
				dx[c] = y[c] ? g[c] * scale[c] : 0.0f;
		}
	}
}

/* ---------------------------------------------------------------- pooling */

void maxpool_forward(float *restrict out, int32_t *restrict argmax, const float *restrict in,
                     const struct pool_shape *s)
{
	const int C = s->c, k = s->k, st = s->stride, pad = s->pad;
	const int hi = s->h_in, wi = s->w_in, ho = s->h_out, wo = s->w_out;
	const long rows = (long)s->n * ho;
#pragma omp parallel for schedule(static)
	for (long row = 0; row < rows; row++) {
		const int n = (int)(row / ho), oy = (int)(row % ho);
		int y0 = oy * st - pad, y1 = y0 + k;
		y0 = y0 < 0 ? 0 : y0;
		y1 = y1 > hi ? hi : y1;
		for (int ox = 0; ox < wo; ox++) {
			int x0 = ox * st - pad, x1 = x0 + k;
			x0 = x0 < 0 ? 0 : x0;
			x1 = x1 > wi ? wi : x1;
			const size_t o = ((size_t)row * wo + ox) * C;
			float *y = out + o;
			int32_t *am = argmax + o;
			/* Padding is skipped, so it never wins.  A window that
			 * is all padding (pad >= k, which PyTorch refuses)
			 * yields -inf and argmax -1. */
			if (y0 >= y1 || x0 >= x1) {
				for (int c = 0; c < C; c++) {
					y[c] = -INFINITY;
					am[c] = -1;
				}
				continue;
			}
			const size_t first = (((size_t)n * hi + y0) * wi + x0) * C;
			for (int c = 0; c < C; c++) {
				y[c] = in[first + c];
				am[c] = (int32_t)(first + c);
			}
			for (int iy = y0; iy < y1; iy++) {
				for (int ix = x0; ix < x1; ix++) {
					const size_t i = (((size_t)n * hi + iy) * wi + ix) * C;
					const float *x = in + i;
					/* Strict > keeps the first of equal values; a
					 * NaN wins once (propagates, as PyTorch).
					 * Branch-free, so the loop vectorizes. */
					for (int c = 0; c < C; c++) {
						float v = x[c], b = y[c];
						int take = (v > b) | ((v != v) & (b == b));
						y[c] = take ? v : b;
						am[c] = take ? (int32_t)(i + c) : am[c];
					}
				}
			}
		}
	}
}

void maxpool_backward(float *restrict d_in, const float *restrict d_out,
                      const int32_t *restrict argmax, const struct pool_shape *s)
{
	/* Windows overlap, so two output pixels may send gradient to one input;
	 * channel c only ever reaches channel c, so threads split channels. */
	const int C = s->c;
	const size_t in_pixels = (size_t)s->n * s->h_in * s->w_in;
	const size_t out_pixels = (size_t)s->n * s->h_out * s->w_out;
#pragma omp parallel
	{
		long c_lo, c_hi;
		thread_range(C, &c_lo, &c_hi);
		for (size_t p = 0; p < in_pixels; p++)
			memset(d_in + p * C + c_lo, 0, (size_t)(c_hi - c_lo) * sizeof(float));
		for (size_t p = 0; p < out_pixels; p++)
			for (long c = c_lo; c < c_hi; c++) {
				int32_t a = argmax[p * C + c];
				if (a >= 0)
					d_in[a] += d_out[p * C + c];
			}
	}
}

void avgpool_forward(float *restrict out, const float *restrict in, int c, int n, int hw)
{
	const float inv = 1.0f / (float)hw;
#pragma omp parallel
	{
		long lo, hi;
		thread_range(c, &lo, &hi);
		for (int b = 0; b < n; b++) {
			float *y = out + (size_t)b * c;
			for (long ch = lo; ch < hi; ch++)
				y[ch] = 0.0f;
			for (int p = 0; p < hw; p++) {
				const float *x = in + ((size_t)b * hw + p) * c;
				for (long ch = lo; ch < hi; ch++)
					y[ch] += x[ch];
			}
			for (long ch = lo; ch < hi; ch++)
				y[ch] *= inv;
		}
	}
}

void avgpool_backward(float *restrict d_in, const float *restrict d_out, int c, int n, int hw)
{
	const float inv = 1.0f / (float)hw;
	const long pixels = (long)n * hw;
#pragma omp parallel for schedule(static)
	for (long p = 0; p < pixels; p++) {
		const float *g = d_out + (size_t)(p / hw) * c;
		float *dx = d_in + (size_t)p * c;
		for (int ch = 0; ch < c; ch++)
			dx[ch] = g[ch] * inv;
	}
}

/* ----------------------------------------------------------------- linear */

/*
 * The classifier's weights (8 MB for ResNet-50) are read once per call, so
 * the product is memory-bound: the OpenMP threads each take a slice of the
 * classes (forward) or of the features (backward), and a single image uses
 * sgemv, which reads the weights without packing them as sgemm would.
 */
void linear_forward(float *restrict out, const float *restrict in, const float *restrict weight,
                    const float *restrict bias, int n, int c, int classes)
{
	// in is (N, C), weight is (classes, C), out is (N, classes)
#pragma omp parallel
	{
		long lo, hi;
		thread_range(classes, &lo, &hi);
		const int rows = (int)(hi - lo);
		const float *w = weight + (size_t)lo * c;
		float beta = 0.0f;
		if (bias && rows > 0) {
			for (int b = 0; b < n; b++)
				memcpy(out + (size_t)b * classes + lo, bias + lo,
				       (size_t)rows * sizeof(float));
			beta = 1.0f;
		}
		if (rows > 0 && n == 1)
			cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, c, 1.0f, w, c, in, 1, beta,
			            out + lo, 1);
		else if (rows > 0)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, c, 1.0f, in,
			            c, w, c, beta, out + lo, classes);
	}
}

void linear_backward(float *restrict d_in, const float *restrict d_out,
                     const float *restrict weight, int n, int c, int classes)
{
	// d_out is (N, classes), weight is (classes, C), d_in is (N, C)
#pragma omp parallel
	{
		long lo, hi;
		thread_range(c, &lo, &hi);
		const int cols = (int)(hi - lo);
		if (cols > 0 && n == 1)
			cblas_sgemv(CblasRowMajor, CblasTrans, classes, cols, 1.0f, weight + lo, c,
			            d_out, 1, 0.0f, d_in + lo, 1);
		else if (cols > 0)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, cols, classes,
			            1.0f, d_out, classes, weight + lo, c, 0.0f, d_in + lo, c);
	}
}

/* ---------------------------------------------------------- preprocessing */

void normalize_forward(float *restrict out, const float *restrict pixels, int n, int h, int w,
                       const float mean[3], const float std[3])
{
	const long count = (long)n * h * w * 3;
#pragma omp parallel for schedule(static)
	for (long i = 0; i < count; i++)
		out[i] = (pixels[i] / 255.0f - mean[i % 3]) / std[i % 3];
}

void normalize_backward(float *restrict d_pixels, const float *restrict d_out, int n, int h, int w,
                        const float std[3])
{
	const long count = (long)n * h * w;
	const float g[3] = {1.0f / (255.0f * std[0]), 1.0f / (255.0f * std[1]),
	                    1.0f / (255.0f * std[2])};
#pragma omp parallel for schedule(static)
	for (long p = 0; p < count; p++)
		for (int c = 0; c < 3; c++)
			d_pixels[p * 3 + c] = d_out[p * 3 + c] * g[c];
}
