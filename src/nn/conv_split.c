/*
 * conv_split.c - split bfloat16 (CONV_PRECISION_BF16X3), the arithmetic of
 * the AMX kernels.
 *
 * A float x is hi + lo, two bfloat16s (hi = x rounded to 8 significant
 * bits, lo = the remainder rounded), and x*w is taken as hi_x*hi_w +
 * lo_x*hi_w + hi_x*lo_w, each product exact and summed in float32 by the
 * AMX units.  What is dropped (lo_x*lo_w and the remainders' own rounding)
 * is below 2^-16 of each product, about 100 times float32's rounding of one
 * product: logits stay within 5e-6 of float32's, input gradients within
 * 1e-2 relative L2 (ReLUs near zero flip; tests/test_conv.c, test_model.c),
 * where PyTorch's own default on GPUs (TF32, 11 significant bits a factor)
 * is coarser still.  The three products run as one convolution over three
 * times the input channels ([hi | lo | hi] against [W_hi | W_hi | W_lo]),
 * per call 2-3x faster than the float32 kernels on this CPU
 * (bench/README.md).
 */
#include <immintrin.h>
#include <string.h>

#include "conv_internal.h"
#include "layers.h"

static inline uint16_t bf16_round(float x)
{
	uint32_t u;
	memcpy(&u, &x, sizeof u);
	u += 0x7fffu + ((u >> 16) & 1u); /* to nearest, ties to even */
	return (uint16_t)(u >> 16);
}

static inline float bf16_value(uint16_t h)
{
	const uint32_t u = (uint32_t)h << 16;
	float x;
	memcpy(&x, &u, sizeof x);
	return x;
}

/* The split of one float as bf16 (hi, lo). */
static inline void split_one(float x, uint16_t *hi, uint16_t *lo)
{
	*hi = bf16_round(x);
	*lo = bf16_round(x - bf16_value(*hi));
}

/* The same for 16 floats, by AVX512-BF16's conversion (to nearest even,
 * as bf16_round), of the values whose bit in `keep` is set (0 elsewhere);
 * their bits of value > 0 into *positive.  Only called where AMX runs,
 * whose CPUs all have AVX512-BF16. */
__attribute__((target("avx512f,avx512bf16"))) static inline void
split_16_masks(const float *x, uint16_t keep, uint16_t *positive, uint16_t *hi_a, uint16_t *lo,
               uint16_t *hi_b)
{
	const __m512 v = _mm512_maskz_loadu_ps(keep, x);
	*positive = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
	const __m256i hi = (__m256i)_mm512_cvtneps_pbh(v);
	const __m512 hi_value =
	    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(hi), 16));
	const __m256i low = (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(v, hi_value));
	_mm256_storeu_si256((__m256i *)hi_a, hi);
	_mm256_storeu_si256((__m256i *)hi_b, hi);
	_mm256_storeu_si256((__m256i *)lo, low);
}

static inline bool bit_of(const uint8_t *bits, size_t i)
{
	return bits[i / 8] >> (i % 8) & 1;
}

/*
 * The activations' split (parts hi, lo, hi per row of c values) as it can
 * fold the ReLU masks of the pass around it into its read of the values:
 * `keep` (or NULL) zeroes values whose bit is clear first (a gradient
 * through its ReLU), `positive` (or NULL) receives the bits of value > 0
 * (a ReLU output's mask), both over the flat index row * c + channel;
 * one of them at most.
 */
void conv_split_rows_masked(uint16_t *dst, const float *src, size_t rows, int c,
                            const uint8_t *keep, uint8_t *positive, int threads)
{
	/* whole bytes of bits per 16 values: rows start on a byte */
	const bool vector = conv_amx_available() && c % 16 == 0;
#pragma omp parallel for schedule(static) num_threads(threads)
	for (size_t r = 0; r < rows; r++) {
		const float *x = src + r * c;
		uint16_t *d = dst + r * SPLIT_PARTS * c;
		const size_t flat = r * c;
		if (vector) {
			for (int i = 0; i < c; i += 16) {
				const size_t byte = (flat + i) / 8;
				const uint16_t k =
				    keep ? (uint16_t)(keep[byte] | keep[byte + 1] << 8) : 0xffff;
				uint16_t pos;
				split_16_masks(x + i, k, &pos, d + i, d + c + i, d + 2 * c + i);
				if (positive) {
					positive[byte] = (uint8_t)pos;
					positive[byte + 1] = (uint8_t)(pos >> 8);
				}
			}
			continue;
		}
		for (int i = 0; i < c; i++) {
			const float v = keep && !bit_of(keep, flat + i) ? 0.0f : x[i];
			split_one(v, d + i, d + c + i);
			d[2 * c + i] = d[i];
		}
	}
	/* rows off the byte grid share bytes between threads: the bits in a
	 * pass of their own */
	if (positive && !vector)
		relu_mask_bits(positive, src, rows * (size_t)c);
}

/* dst [c_out][3 k][...] = the split of weights [c_out][k] (k = c_in k k):
 * parts hi, hi, lo, against the activations' hi, lo, hi the products
 * hi*hi + lo*hi + hi*lo. */
void conv_split_weights(uint16_t *dst, const float *w, size_t c_out, size_t k)
{
	for (size_t o = 0; o < c_out; o++) {
		const float *x = w + o * k;
		uint16_t *d = dst + o * SPLIT_PARTS * k;
		for (size_t i = 0; i < k; i++) {
			split_one(x[i], d + i, d + 2 * k + i);
			d[k + i] = d[i];
		}
	}
}
