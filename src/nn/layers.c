/*
 * layers.c - the network's kernels other than convolution (see
 * layers.h).
 *
 * Activations are NHWC or blocked ([n][c/B][h][w][B]); either way channels
 * are the innermost axis of a run of B (or c) values, so per-channel
 * parameters are read contiguously and the compiler vectorizes over them.
 * Work is split over the calling thread's OpenMP team by pixels (rows), or
 * by channels where outputs of different pixels overlap (max-pool backward).
 */
#include "layers.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* TensorFlow's SAME: out = ceil(in / stride), total padding split low half first. */
static void same_padding(int in, int k, int stride, int *out, int *before)
{
	*out = (in + stride - 1) / stride;
	int total = (*out - 1) * stride + k - in;
	*before = total > 0 ? total / 2 : 0;
}

void maxpool_shape_finish(struct maxpool_shape *s)
{
	if (s->same) {
		same_padding(s->h_in, s->k, s->stride, &s->h_out, &s->pad_top);
		same_padding(s->w_in, s->k, s->stride, &s->w_out, &s->pad_left);
		return;
	}
	s->h_out = (s->h_in + 2 * s->pad - s->k) / s->stride + 1;
	s->w_out = (s->w_in + 2 * s->pad - s->k) / s->stride + 1;
	s->pad_top = s->pad_left = s->pad;
}

/* [*lo, *hi): this thread's contiguous block of [0, total). */
static void thread_range(long total, long *lo, long *hi)
{
	long t = omp_get_thread_num(), nth = omp_get_num_threads();
	*lo = total * t / nth;
	*hi = total * (t + 1) / nth;
}

/* ------------------------------------------------------------ elementwise */

/* `simd`: OpenMP's outlining drops `restrict`, and without it GCC's -O2 cost
 * model leaves three-array loops scalar; these passes are memory-bound and
 * run over every activation. */

/* Bit masks: GCC does not vectorize the packing of 8 compares into a byte,
 * so SSE2 (every x86-64) does it with movemask; other CPUs take the loop. */

/* One byte of mask bits from 8 values. */
static inline uint8_t positive_bits(const float *x)
{
#ifdef __SSE2__
	const __m128 zero = _mm_setzero_ps();
	const int lo = _mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(x), zero));
	const int hi = _mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(x + 4), zero));
	return (uint8_t)(lo | hi << 4);
#else
	unsigned m = 0;
	for (int k = 0; k < 8; k++)
		m |= (unsigned)(x[k] > 0.0f) << k;
	return (uint8_t)m;
#endif
}

/* 8 values kept where their bit is set, zeroed elsewhere. */
static inline void keep_bits(float *d, uint8_t bits)
{
#ifdef __SSE2__
	const __m128i lo = _mm_set_epi32(8, 4, 2, 1), hi = _mm_set_epi32(128, 64, 32, 16);
	const __m128i m = _mm_set1_epi32(bits);
	const __m128 keep_lo = _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(m, lo), lo));
	const __m128 keep_hi = _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(m, hi), hi));
	_mm_storeu_ps(d, _mm_and_ps(_mm_loadu_ps(d), keep_lo));
	_mm_storeu_ps(d + 4, _mm_and_ps(_mm_loadu_ps(d + 4), keep_hi));
#else
	for (int k = 0; k < 8; k++)
		d[k] = bits >> k & 1 ? d[k] : 0.0f;
#endif
}

void relu_mask_bits(uint8_t *restrict bits, const float *restrict x, size_t count)
{
	const size_t whole = count / 8;
#pragma omp parallel for schedule(static)
	for (size_t b = 0; b < whole; b++)
		bits[b] = positive_bits(x + 8 * b);
	if (count % 8) {
		float last[8] = {0};
		memcpy(last, x + 8 * whole, count % 8 * sizeof(float));
		bits[whole] = positive_bits(last);
	}
}

void relu_backward_bits(float *restrict d, const uint8_t *restrict bits, size_t count)
{
	const size_t whole = count / 8;
#pragma omp parallel for schedule(static)
	for (size_t b = 0; b < whole; b++)
		keep_bits(d + 8 * b, bits[b]);
	for (size_t i = 8 * whole; i < count; i++)
		d[i] = bits[whole] >> (i % 8) & 1 ? d[i] : 0.0f;
}

/* bits_to_bytes[b][k] is bit k of b. */
static uint8_t bits_to_bytes[256][8];
static pthread_once_t bits_to_bytes_once = PTHREAD_ONCE_INIT;

static void bits_to_bytes_init(void)
{
	for (unsigned b = 0; b < 256; b++)
		for (int k = 0; k < 8; k++)
			bits_to_bytes[b][k] = (uint8_t)(b >> k & 1);
}

void relu_mask_bits_expand(uint8_t *restrict bytes, const uint8_t *restrict bits, size_t count)
{
	pthread_once(&bits_to_bytes_once, bits_to_bytes_init);
	const size_t whole = count / 8;
#pragma omp parallel for schedule(static)
	for (size_t b = 0; b < whole; b++)
		memcpy(bytes + 8 * b, bits_to_bytes[bits[b]], 8);
	for (size_t i = 8 * whole; i < count; i++)
		bytes[i] = bits[whole] >> (i % 8) & 1;
}

void tensor_add_masked_bits(float *restrict dst, const float *restrict src,
                            const uint8_t *restrict bits, size_t count)
{
	const size_t whole = count / 8;
#pragma omp parallel for schedule(static)
	for (size_t b = 0; b < whole; b++) {
		float *d = dst + 8 * b;
		for (int k = 0; k < 8; k++)
			d[k] += src[8 * b + k];
		keep_bits(d, bits[b]);
	}
	for (size_t i = 8 * whole; i < count; i++)
		dst[i] = bits[whole] >> (i % 8) & 1 ? dst[i] + src[i] : 0.0f;
}

void tensor_add(float *restrict dst, const float *restrict src, size_t count)
{
#pragma omp parallel for simd schedule(static)
	for (size_t i = 0; i < count; i++)
		dst[i] += src[i];
}

/* Values of one contiguous channel run and how many runs s has. */
static int run_length(const struct act_shape *s)
{
	return s->block ? s->block : s->c;
}

static size_t runs_of(const struct act_shape *s)
{
	return (size_t)s->n * s->hw * (s->c / run_length(s));
}

/* The first channel of run r: runs go pixel by pixel within a block. */
static int run_channel(const struct act_shape *s, size_t r)
{
	if (!s->block)
		return 0;
	return (int)((r / (size_t)s->hw) % (size_t)(s->c / s->block)) * s->block;
}

/* Where channel ch of pixel p of image i lies. */
static size_t act_index(const struct act_shape *s, int i, int p, int ch)
{
	if (!s->block)
		return ((size_t)i * s->hw + p) * s->c + ch;
	return (((size_t)i * (s->c / s->block) + ch / s->block) * s->hw + p) * s->block +
	       ch % s->block;
}

/* out may equal in (an in-place BatchNorm+ReLU): no restrict here. */
void affine_relu_forward(float *out, uint8_t *mask, const float *in, const float *scale,
                         const float *shift, const struct act_shape *s)
{
	const int L = run_length(s);
	const size_t runs = runs_of(s);
#pragma omp parallel for schedule(static)
	for (size_t r = 0; r < runs; r++) {
		const float *x = in + r * L;
		float *y = out + r * L;
		const float *sc = scale + run_channel(s, r), *sh = shift + run_channel(s, r);
		for (int c = 0; c < L; c++) {
			float v = x[c] * sc[c] + sh[c];
			y[c] = v > 0.0f ? v : 0.0f;
		}
		if (mask)
			for (int c = 0; c < L; c++)
				mask[r * L + c] = y[c] > 0.0f;
	}
}

/* d_in may equal d_out when not accumulating: no restrict on them. */
void affine_relu_backward(float *d_in, const float *d_out, const uint8_t *mask, const float *scale,
                          const struct act_shape *s, int accumulate)
{
	const int L = run_length(s);
	const size_t runs = runs_of(s);
#pragma omp parallel for schedule(static)
	for (size_t r = 0; r < runs; r++) {
		const float *g = d_out + r * L;
		const uint8_t *y = mask + r * L;
		const float *sc = scale + run_channel(s, r);
		float *dx = d_in + r * L;
		if (accumulate) {
			for (int c = 0; c < L; c++)
				dx[c] += y[c] ? g[c] * sc[c] : 0.0f;
		} else {
			for (int c = 0; c < L; c++)
				dx[c] = y[c] ? g[c] * sc[c] : 0.0f;
		}
	}
}

/* ---------------------------------------------------------------- pooling */

/* The output's layout as an act_shape (pool outputs are in.c channels). */
static struct act_shape pool_out(const struct maxpool_shape *s)
{
	return (struct act_shape){
	    .n = s->n, .c = s->c, .hw = s->h_out * s->w_out, .block = s->out_block};
}

void maxpool_forward(float *restrict out, int32_t *restrict argmax, const float *restrict in,
                     const struct maxpool_shape *s)
{
	const int C = s->c, k = s->k, st = s->stride, pad_y = s->pad_top, pad_x = s->pad_left;
	const int hi = s->h_in, wi = s->w_in, ho = s->h_out, wo = s->w_out;
	const struct act_shape os = pool_out(s);
	const int L = run_length(&os); /* channels written contiguously */
	const long rows = (long)s->n * ho;
#pragma omp parallel for schedule(static)
	for (long row = 0; row < rows; row++) {
		const int n = (int)(row / ho), oy = (int)(row % ho);
		int y0 = oy * st - pad_y, y1 = y0 + k;
		y0 = y0 < 0 ? 0 : y0;
		y1 = y1 > hi ? hi : y1;
		for (int ox = 0; ox < wo; ox++) {
			int x0 = ox * st - pad_x, x1 = x0 + k;
			x0 = x0 < 0 ? 0 : x0;
			x1 = x1 > wi ? wi : x1;
			for (int c0 = 0; c0 < C; c0 += L) {
				const size_t o = act_index(&os, n, oy * wo + ox, c0);
				float *y = out + o;
				int32_t *am = argmax + o;
				/* Padding is skipped, so it never wins.  A window
				 * that is all padding (pad >= k, which PyTorch
				 * refuses) yields -inf and argmax -1. */
				if (y0 >= y1 || x0 >= x1) {
					for (int c = 0; c < L; c++) {
						y[c] = -INFINITY;
						am[c] = -1;
					}
					continue;
				}
				const size_t first = (((size_t)n * hi + y0) * wi + x0) * C + c0;
				for (int c = 0; c < L; c++) {
					y[c] = in[first + c];
					am[c] = (int32_t)(first + c);
				}
				for (int iy = y0; iy < y1; iy++) {
					for (int ix = x0; ix < x1; ix++) {
						const size_t i =
						    (((size_t)n * hi + iy) * wi + ix) * C + c0;
						const float *x = in + i;
						/* Strict > keeps the first of equal
						 * values; a NaN wins once (propagates,
						 * as PyTorch).  Branch-free, so the
						 * loop vectorizes. */
						for (int c = 0; c < L; c++) {
							float v = x[c], b = y[c];
							int take = (v > b) | ((v != v) & (b == b));
							y[c] = take ? v : b;
							am[c] = take ? (int32_t)(i + c) : am[c];
						}
					}
				}
				if (s->after_relu)
					for (int c = 0; c < L; c++)
						am[c] = y[c] > 0.0f ? am[c] : -1;
			}
		}
	}
}

void maxpool_backward(float *restrict d_in, const float *restrict d_out,
                      const int32_t *restrict argmax, const struct maxpool_shape *s)
{
	/* Windows overlap, so two output pixels may send gradient to one input;
	 * channel c only ever reaches channel c, so threads split channels. */
	const int C = s->c;
	const struct act_shape os = pool_out(s);
	const size_t in_pixels = (size_t)s->n * s->h_in * s->w_in;
#pragma omp parallel
	{
		long c_lo, c_hi;
		thread_range(C, &c_lo, &c_hi);
		for (size_t p = 0; p < in_pixels; p++)
			memset(d_in + p * C + c_lo, 0, (size_t)(c_hi - c_lo) * sizeof(float));
		/* this thread's channels, one contiguous run at a time */
		const int L = run_length(&os), step = os.block ? L : C;
		for (int n = 0; n < os.n; n++)
			for (int c0 = (int)(c_lo / L) * L; c0 < c_hi; c0 += L) {
				const int lo = c_lo > c0 ? (int)(c_lo - c0) : 0;
				const int hi = c_hi < c0 + L ? (int)(c_hi - c0) : L;
				const size_t base = act_index(&os, n, 0, c0);
				for (int p = 0; p < os.hw; p++)
					for (int c = lo; c < hi; c++) {
						size_t o = base + (size_t)p * step + c;
						int32_t a = argmax[o];
						if (a >= 0)
							d_in[a] += d_out[o];
					}
			}
	}
}

/* images whose partial inner products a thread keeps at once */
enum { SUM_GROUP = 16 };

void maxpool_backward_sum(float *restrict acc, double *restrict dots, const float *restrict d_out,
                          const int32_t *restrict argmax, const float *restrict weight,
                          const float *restrict probe, const float *restrict from,
                          const float *restrict to, const struct maxpool_shape *s)
{
	const int C = s->c;
	const struct act_shape os = pool_out(s);
	const size_t image_in = (size_t)s->h_in * s->w_in * C;
	for (int i = 0; i < 2 * s->n; i++)
		dots[i] = 0.0;
#pragma omp parallel
	{
		long c_lo, c_hi;
		thread_range(C, &c_lo, &c_hi);
		const int L = run_length(&os), step = os.block ? L : C;
		const int nth = omp_get_num_threads();
		/* images in groups, so this thread's partial sums fit its stack */
		for (int n0 = 0; n0 < os.n; n0 += SUM_GROUP) {
			const int n1 = os.n - n0 < SUM_GROUP ? os.n : n0 + SUM_GROUP;
			double mine[2 * SUM_GROUP] = {0};
			/* Pixel by pixel, all images at once: the images' maxima
			 * mostly fall on the same inputs, so acc, probe, from and
			 * to are read once from memory for all of them. */
			for (int c0 = (int)(c_lo / L) * L; c0 < c_hi; c0 += L) {
				const int lo = c_lo > c0 ? (int)(c_lo - c0) : 0;
				const int hi = c_hi < c0 + L ? (int)(c_hi - c0) : L;
				/* where each image's run starts; pixels are `step` apart */
				size_t base[SUM_GROUP];
				for (int n = n0; n < n1; n++)
					base[n - n0] = act_index(&os, n, 0, c0);
				for (int p = 0; p < os.hw; p++)
					for (int n = n0; n < n1; n++) {
						const float w = weight[n];
						const size_t first = (size_t)n * image_in;
						const size_t o0 = base[n - n0] + (size_t)p * step;
						float unit = 0.0f, along = 0.0f;
						for (int c = lo; c < hi; c++) {
							int32_t a = argmax[o0 + c];
							if (a < 0)
								continue;
							size_t j = (size_t)a - first;
							float g = d_out[o0 + c];
							acc[j] += w * g;
							unit += g * probe[j];
							along += g * (to[j] - from[j]);
						}
						/* float within a pixel's run, double across */
						mine[2 * (n - n0)] += unit;
						mine[2 * (n - n0) + 1] += along;
					}
			}
			/* Threads add their parts in thread order (ordered, one
			 * iteration each), so the sums do not vary between runs. */
#pragma omp for ordered schedule(static, 1)
			for (int t = 0; t < nth; t++) {
#pragma omp ordered
				for (int i = 2 * n0; i < 2 * n1; i++)
					dots[i] += mine[i - 2 * n0];
			}
		}
	}
}

void avgpool_forward(float *restrict out, const float *restrict in, const struct act_shape *s)
{
	const int c = s->c, hw = s->hw;
	const float inv = 1.0f / (float)hw;
#pragma omp parallel
	{
		long lo, hi;
		thread_range(c, &lo, &hi);
		for (int b = 0; b < s->n; b++) {
			float *y = out + (size_t)b * c;
			for (long ch = lo; ch < hi; ch++) {
				float sum = 0.0f;
				for (int p = 0; p < hw; p++)
					sum += in[act_index(s, b, p, (int)ch)];
				y[ch] = sum * inv;
			}
		}
	}
}

void avgpool_backward(float *restrict d_in, const float *restrict d_out, const struct act_shape *s)
{
	const float inv = 1.0f / (float)s->hw;
	const int L = run_length(s);
	const size_t runs = runs_of(s), runs_per_image = runs / (size_t)s->n;
#pragma omp parallel for schedule(static)
	for (size_t r = 0; r < runs; r++) {
		const float *g = d_out + (r / runs_per_image) * s->c + run_channel(s, r);
		float *dx = d_in + r * L;
		for (int ch = 0; ch < L; ch++)
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
/* Rows of `in` a classifier pass takes at once: each weight row is read
 * once for all of them. */
enum { LINEAR_ROWS = 4 };

void linear_forward(float *restrict out, const float *restrict in, const float *restrict weight,
                    const float *restrict bias, int n, int c, int classes)
{
	// in is (N, C), weight is (classes, C), out is (N, classes)
	if (n == 1) {
#pragma omp parallel
		{
			long lo, hi;
			thread_range(classes, &lo, &hi);
			const int rows = (int)(hi - lo);
			if (bias && rows > 0)
				memcpy(out + lo, bias + lo, (size_t)rows * sizeof(float));
			if (rows > 0)
				cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, c, 1.0f,
				            weight + (size_t)lo * c, c, in, 1, bias ? 1.0f : 0.0f,
				            out + lo, 1);
		}
		return;
	}
	/* A few images (path points): BLAS would pack the whole 8 MB weight
	 * matrix on every call; dot products read it once, in half the time. */
#pragma omp parallel for schedule(static)
	for (int j = 0; j < classes; j++) {
		const float *w = weight + (size_t)j * c;
		for (int i0 = 0; i0 < n; i0 += LINEAR_ROWS) {
			const int m = n - i0 < LINEAR_ROWS ? n - i0 : LINEAR_ROWS;
			/* rows past the last repeat it; their sums are dropped */
			const float *x[LINEAR_ROWS];
			for (int i = 0; i < LINEAR_ROWS; i++)
				x[i] = in + (size_t)(i0 + (i < m ? i : 0)) * c;
			float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
			for (int k = 0; k < c; k++) {
				a0 += x[0][k] * w[k];
				a1 += x[1][k] * w[k];
				a2 += x[2][k] * w[k];
				a3 += x[3][k] * w[k];
			}
			const float sums[LINEAR_ROWS] = {a0, a1, a2, a3};
			for (int i = 0; i < m; i++)
				out[(size_t)(i0 + i) * classes + j] =
				    sums[i] + (bias ? bias[j] : 0.0f);
		}
	}
}

void linear_backward(float *restrict d_in, const float *restrict d_out,
                     const float *restrict weight, int n, int c, int classes)
{
	// d_out is (N, classes), weight is (classes, C), d_in is (N, C)
	size_t nonzero = 0;
	for (size_t i = 0; i < (size_t)n * classes; i++)
		nonzero += d_out[i] != 0.0f;
	/* A logit's gradient is one row of the weights per image: add up the
	 * rows d_out selects instead of multiplying by a mostly-zero matrix. */
	const bool sparse = nonzero <= (size_t)n * 8;
#pragma omp parallel
	{
		long lo, hi;
		thread_range(c, &lo, &hi);
		const int cols = (int)(hi - lo);
		if (cols > 0 && sparse) {
			for (int i = 0; i < n; i++) {
				float *dst = d_in + (size_t)i * c;
				memset(dst + lo, 0, (size_t)cols * sizeof(float));
				for (int j = 0; j < classes; j++) {
					const float d = d_out[(size_t)i * classes + j];
					if (d == 0.0f)
						continue;
					const float *w = weight + (size_t)j * c;
#pragma omp simd
					for (long k = lo; k < hi; k++)
						dst[k] += d * w[k];
				}
			}
		} else if (cols > 0 && n == 1) {
			cblas_sgemv(CblasRowMajor, CblasTrans, classes, cols, 1.0f, weight + lo, c,
			            d_out, 1, 0.0f, d_in + lo, 1);
		} else if (cols > 0) {
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, cols, classes,
			            1.0f, d_out, classes, weight + lo, c, 0.0f, d_in + lo, c);
		}
	}
}

/* ---------------------------------------------------------- path points */

void tensor_lerp(float *restrict out, const float *restrict from, const float *restrict to,
               const float *restrict t, int n, size_t count, bool relu)
{
	/* Split the values, not the points, so each thread reads its part of
	 * the two ends once for all n points. */
#pragma omp parallel
	{
		long lo, hi;
		thread_range((long)count, &lo, &hi);
		for (int i = 0; i < n; i++) {
			const float b = t[i], a = 1.0f - t[i];
			float *restrict y = out + (size_t)i * count;
			if (relu) {
#pragma omp simd
				for (long j = lo; j < hi; j++) {
					float v = a * from[j] + b * to[j];
					y[j] = v > 0.0f ? v : 0.0f;
				}
			} else {
#pragma omp simd
				for (long j = lo; j < hi; j++)
					y[j] = a * from[j] + b * to[j];
			}
		}
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

void softmax_forward(float *probs, const float *logits, int n)
{
	double max = logits[0], sum = 0;
	for (int i = 1; i < n; i++)
		if (logits[i] > max)
			max = logits[i];
	for (int i = 0; i < n; i++)
		sum += exp((double)logits[i] - max);
	for (int i = 0; i < n; i++)
		probs[i] = (float)(exp((double)logits[i] - max) / sum);
}
