/*
 * conv.c - convolutions on oneDNN (see conv.h).
 *
 * oneDNN's convolution kernels (brgconv, jit_1x1) reach the cores' peak only
 * with channels-last or blocked activations and with weights in the blocked
 * layout the kernel asks for; with those they run 1.4-2.3x faster than
 * im2col + OpenBLAS on ResNet-50's layers (bench/README.md).  So activations
 * are NHWC, weights are reordered once per model, and every shape gets its
 * primitives created once per workspace.
 */
#include "conv.h"
#include "layers.h"
#include "memory.h"

#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void conv_shape_finish(struct conv_shape *s)
{
	s->h_out = (s->h_in + 2 * s->pad - s->k) / s->stride + 1;
	s->w_out = (s->w_in + 2 * s->pad - s->k) / s->stride + 1;
}

/* ---------------------------------------------------------------- engine */

/* One CPU engine for the process; oneDNN engines are thread-safe. */
static dnnl_engine_t cpu_engine;
static dnnl_status_t cpu_engine_status = dnnl_runtime_error;
static pthread_once_t cpu_engine_once = PTHREAD_ONCE_INIT;

static void cpu_engine_init(void)
{
	cpu_engine_status = dnnl_engine_create(&cpu_engine, dnnl_cpu, 0);
}

static dnnl_engine_t engine(void)
{
	pthread_once(&cpu_engine_once, cpu_engine_init);
	return cpu_engine_status == dnnl_success ? cpu_engine : NULL;
}

static const char *isa_name(dnnl_cpu_isa_t isa)
{
	switch (isa) {
	case dnnl_cpu_isa_sse41:
		return "sse41";
	case dnnl_cpu_isa_avx:
		return "avx";
	case dnnl_cpu_isa_avx2:
		return "avx2";
	case dnnl_cpu_isa_avx2_vnni:
		return "avx2_vnni";
	case dnnl_cpu_isa_avx512_core:
		return "avx512_core";
	case dnnl_cpu_isa_avx512_core_vnni:
		return "avx512_core_vnni";
	case dnnl_cpu_isa_avx512_core_bf16:
		return "avx512_core_bf16";
	case dnnl_cpu_isa_avx512_core_amx:
		return "avx512_core_amx";
	default:
		return "other";
	}
}

static char backend_text[64];
static pthread_once_t backend_once = PTHREAD_ONCE_INIT;

static void backend_init(void)
{
	const dnnl_version_t *v = dnnl_version();
	snprintf(backend_text, sizeof backend_text, "oneDNN %d.%d.%d, %s", v->major, v->minor,
	         v->patch, isa_name(dnnl_get_effective_cpu_isa()));
}

const char *conv_backend(void)
{
	pthread_once(&backend_once, backend_init);
	return backend_text;
}

/* oneDNN's ISA values are sets of feature bits. */
static bool cpu_has(dnnl_cpu_isa_t isa)
{
	return ((unsigned)dnnl_get_effective_cpu_isa() & (unsigned)isa) == (unsigned)isa;
}

/*
 * Split bf16 (CONV_PRECISION_BF16X3): a float x is hi + lo, two bfloat16s
 * (hi = x rounded to 8 significant bits, lo = the remainder rounded), and
 * x*w is taken as hi_x*hi_w + lo_x*hi_w + hi_x*lo_w, each product exact
 * and summed in float32 by the AMX units.  What is dropped (lo_x*lo_w and
 * the remainders' own rounding) is below 2^-16 of each product, about 100
 * times float32's rounding of one product: logits stay within 5e-6 of
 * float32's, input gradients within 1e-2 relative L2 (ReLUs near zero
 * flip; tests/test_conv.c, test_model.c), where PyTorch's own default on
 * GPUs (TF32, 11 significant bits a factor) is coarser still.  The three
 * products run as one convolution over three times the input channels
 * ([hi | lo | hi] against [W_hi | W_hi | W_lo]), per call 2-3x faster than
 * the float32 kernels on this CPU (bench/README.md).
 */
static bool amx_available(void)
{
	return cpu_has(dnnl_cpu_isa_avx512_core_amx);
}

static const char *const precision_names[] = {
    [CONV_PRECISION_AUTO] = "auto",
    [CONV_PRECISION_FP32] = "fp32",
    [CONV_PRECISION_BF16X3] = "bf16x3",
};

int conv_precision_parse(const char *name)
{
	for (int p = 0; p < (int)(sizeof precision_names / sizeof *precision_names); p++)
		if (!strcmp(name, precision_names[p]))
			return p;
	return -1;
}

const char *conv_precision_name(enum conv_precision p)
{
	return (unsigned)p < sizeof precision_names / sizeof *precision_names ? precision_names[p]
	                                                                      : "?";
}

int conv_precision_resolve(enum conv_precision requested, enum conv_precision *resolved,
                           struct igs_error *err)
{
	if (requested == CONV_PRECISION_BF16X3 && !amx_available())
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "precision bf16x3 needs a CPU with AMX (bf16 tiles); this one has "
		                "%s: use fp32 or auto",
		                isa_name(dnnl_get_effective_cpu_isa()));
	if (requested == CONV_PRECISION_AUTO)
		requested = amx_available() ? CONV_PRECISION_BF16X3 : CONV_PRECISION_FP32;
	*resolved = requested;
	return 0;
}

bool conv_blocked_layout_fits(enum conv_precision p)
{
	/* AMX's kernels take NHWC only */
	return cpu_has(dnnl_cpu_isa_avx512_core) && p != CONV_PRECISION_BF16X3;
}

/* Turn a oneDNN status into an igserve error naming the step that failed. */
static int dnnl_fail(struct igs_error *err, dnnl_status_t st, const char *what)
{
	if (st == dnnl_out_of_memory)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory in oneDNN (%s)", what);
	return igs_fail(err, IGS_ERR_INTERNAL, "oneDNN: %s failed (status %d)", what, (int)st);
}

#define TRY(call, what)                                                                            \
	do {                                                                                       \
		dnnl_status_t st_ = (call);                                                        \
		if (st_ != dnnl_success) {                                                         \
			rc = dnnl_fail(err, st_, what);                                            \
			goto out;                                                                  \
		}                                                                                  \
	} while (0)

static int check_shape(const struct conv_shape *s, struct igs_error *err)
{
	if (s->n < 1 || s->c_in < 1 || s->c_out < 1 || s->k < 1 || s->stride < 1 || s->pad < 0 ||
	    s->h_in < 1 || s->w_in < 1)
		return igs_fail(
		    err, IGS_ERR_BAD_OPTION,
		    "convolution shape is invalid: batch %d, %d -> %d channels, kernel %d, "
		    "stride %d, pad %d, input %dx%d",
		    s->n, s->c_in, s->c_out, s->k, s->stride, s->pad, s->h_in, s->w_in);
	if (s->blocked && (s->c_in % CONV_BLOCK || s->c_out % CONV_BLOCK))
		return igs_fail(
		    err, IGS_ERR_BAD_OPTION,
		    "a blocked convolution needs channels in multiples of %d, got %d -> %d",
		    CONV_BLOCK, s->c_in, s->c_out);
	struct conv_shape t = *s;
	conv_shape_finish(&t);
	if (t.h_out < 1 || t.w_out < 1 || s->h_in + 2 * s->pad < s->k ||
	    s->w_in + 2 * s->pad < s->k)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "a %dx%d kernel does not fit a %dx%d input padded by %d", s->k,
		                s->k, s->h_in, s->w_in, s->pad);
	return 0;
}

/* ------------------------------------------------------- primitive descs */

/* Inputs of at most this many channels have their own backward (narrow_backward). */
enum { NARROW_MAX_C_IN = 4, NARROW_BAND_ROWS = 4 };

/* A split bf16 tensor has three parts per float tensor: [hi | lo | hi]
 * along the channels of each pixel; its weights [W_hi | W_hi | W_lo]. */
enum { SPLIT_PARTS = 3 };

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
static void split_rows_masked(uint16_t *dst, const float *src, size_t rows, int c,
                              const uint8_t *keep, uint8_t *positive, int threads)
{
	/* whole bytes of bits per 16 values: rows start on a byte */
	const bool vector = amx_available() && c % 16 == 0;
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
static void split_weights(uint16_t *dst, const float *w, size_t c_out, size_t k)
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

/*
 * What a plan runs: a forward_inference convolution, and for the backward
 * pass either oneDNN's backward_data or, with Winograd, a forward_inference
 * of the transposed convolution (see winograd_shape).
 */
struct conv_descs {
	dnnl_primitive_desc_t fwd, bwd;
};

static void conv_descs_free(struct conv_descs *d)
{
	if (d->fwd)
		dnnl_primitive_desc_destroy(d->fwd);
	if (d->bwd)
		dnnl_primitive_desc_destroy(d->bwd);
	d->fwd = d->bwd = NULL;
}

static void activation_md(dnnl_memory_desc_t *md, int n, int c, int h, int w, bool blocked)
{
	dnnl_dims_t dims = {n, c, h, w};
	dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, blocked ? dnnl_nChw16c : dnnl_nhwc);
}

/* A ReLU mask over `s`'s output: one byte (0 or 1) per value, same layout. */
static void mask_md_init(dnnl_memory_desc_t *md, const struct conv_shape *s)
{
	dnnl_dims_t dims = {s->n, s->c_out, s->h_out, s->w_out};
	dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_u8, s->blocked ? dnnl_nChw16c : dnnl_nhwc);
}

/*
 * oneDNN's Winograd F(4x4, 3x3) (jit_wino_4x3, blocked layouts only) runs a
 * 3x3 stride-1 layer in 0.5-0.7x the time of the direct kernels from 14x14
 * outputs up, at batch 1 as at 4, but only as a forward_inference
 * primitive: its training forward and its backward_data are slower (at 7x7
 * by 2x).  The backward of a 3x3 stride-1 pad-1 convolution is itself such
 * a convolution, with the kernel flipped and the channels swapped, so it
 * runs as one.
 *
 * Winograd weights are 4x larger (36 values per 3x3 kernel) and each
 * direction needs its own, so where layers are wide it is spent where it
 * pays most per byte: both directions from 14x14 outputs up (in ResNet-50
 * the 14x14 layers' backward costs 35 MB for 2-3% of an attribution).  The
 * 7x7 layers stay direct: their Winograd weights (38 MB per layer and
 * direction) stream from memory in a pass, and an IG-50 got 5% slower.
 */
enum { WINOGRAD_FORWARD_MIN_PIXELS = 14 * 14, WINOGRAD_BACKWARD_MIN_PIXELS = 14 * 14 };

static bool winograd_shape(const struct conv_shape *s, int min_output_pixels)
{
	return s->blocked && s->k == 3 && s->stride == 1 && s->pad == 1 &&
	       s->h_out * s->w_out >= min_output_pixels;
}

/* A 1x1 stride-1 convolution's backward is the forward of its transposed
 * kernel too; run so, it takes post-ops: the shortcut's gradient added in
 * and the ReLU below applied in the same pass (CONV_BACKWARD_*). */
static bool pointwise(const struct conv_shape *s)
{
	return s->k == 1 && s->stride == 1 && s->pad == 0;
}

/*
 * A 1x1 convolution with a stride and no padding reads every stride-th
 * pixel: it runs as the pointwise convolution of those pixels, gathered
 * before the forward and scattered after the backward.  oneDNN's strided
 * 1x1 kernels (ResNet's downsamples) run at 210-260 GFLOP/s where the
 * pointwise ones reach 350; the gather and scatter are memory passes.
 */
static bool subsampled_kernel(int k, int stride, int pad)
{
	return k == 1 && stride > 1 && pad == 0;
}

static bool subsampled(const struct conv_shape *s)
{
	return subsampled_kernel(s->k, s->stride, s->pad);
}

/* The shape oneDNN runs for `s`: itself, or for a subsampled convolution
 * the pointwise one at the output's size. */
static struct conv_shape kernel_shape(const struct conv_shape *s)
{
	struct conv_shape t = *s;
	if (subsampled(s)) {
		t.stride = 1;
		t.h_in = s->h_out;
		t.w_in = s->w_out;
		conv_shape_finish(&t);
	}
	return t;
}

/* The convolution whose forward is the backward-data of `s` (3x3 stride 1
 * pad 1, or 1x1 stride 1): channels swapped, same image size. */
static struct conv_shape transposed(const struct conv_shape *s)
{
	struct conv_shape t = *s;
	t.c_in = s->c_out;
	t.c_out = s->c_in;
	t.h_in = s->h_out;
	t.w_in = s->w_out;
	conv_shape_finish(&t);
	return t;
}

/* Which kernels a convolution's two passes run (chosen with its weights). */
struct conv_algos {
	bool winograd_fwd; /* the forward by Winograd */
	bool winograd_bwd; /* the backward by Winograd, as the transposed forward */
	bool split;        /* split bf16 (CONV_PRECISION_BF16X3): the forward, and the backward
	                      when it runs as the transposed forward */
};

/* Split bf16 for every convolution but the narrow ones (the stem's RGB
 * input), whose forward runs on two images per request and whose backward
 * has its own kernel. */
static bool split_shape(const struct conv_shape *s, enum conv_precision p)
{
	return p == CONV_PRECISION_BF16X3 && !s->blocked && s->c_in > NARROW_MAX_C_IN;
}

/* A stride-1 convolution padded to keep its size: its transposed kernel's
 * forward is its backward. */
static bool same_size(const struct conv_shape *s)
{
	return s->stride == 1 && s->k % 2 == 1 && s->pad == s->k / 2;
}

/* The backward runs as the transposed kernel's forward: Winograd, 1x1
 * stride 1 (with post-ops), and every same-size kernel in split bf16
 * (oneDNN 2.6 has no bf16 backward_data on AMX). */
static bool algos_backward_transposed(const struct conv_algos *a, const struct conv_shape *s)
{
	return a->winograd_bwd || pointwise(s) || (a->split && same_size(s));
}

/* Descriptors of `s`'s tensors; weights in whatever layout oneDNN prefers. */
struct conv_mds {
	dnnl_memory_desc_t src, dst, weights, bias;
	dnnl_dims_t strides, pad;
};

/* `split`: the source as split bf16, three times its channels (NHWC). */
static void conv_mds_init(struct conv_mds *m, const struct conv_shape *s, bool split)
{
	const int c_in = split ? SPLIT_PARTS * s->c_in : s->c_in;
	const dnnl_data_type_t type = split ? dnnl_bf16 : dnnl_f32;
	if (split) {
		dnnl_dims_t dims = {s->n, c_in, s->h_in, s->w_in};
		dnnl_memory_desc_init_by_tag(&m->src, 4, dims, dnnl_bf16, dnnl_nhwc);
	} else {
		activation_md(&m->src, s->n, s->c_in, s->h_in, s->w_in, s->blocked);
	}
	activation_md(&m->dst, s->n, s->c_out, s->h_out, s->w_out, s->blocked);
	dnnl_dims_t wdims = {s->c_out, c_in, s->k, s->k};
	dnnl_memory_desc_init_by_tag(&m->weights, 4, wdims, type, dnnl_format_tag_any);
	dnnl_dims_t bdims = {s->c_out};
	dnnl_memory_desc_init_by_tag(&m->bias, 1, bdims, dnnl_f32, dnnl_a);
	m->strides[0] = m->strides[1] = s->stride;
	m->pad[0] = m->pad[1] = s->pad;
}

/* The layout a primitive wants its weights in. */
static const dnnl_memory_desc_t *weights_md_of(const_dnnl_primitive_desc_t pd)
{
	return dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
}

/* The name of a primitive's implementation ("brgconv:avx512_core", ...). */
static const char *impl_name(const_dnnl_primitive_desc_t pd)
{
	const char *impl = NULL;
	dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
	return impl;
}

/*
 * At one image a Winograd layer's time goes to reading its weights: 9.4 MB
 * for a 256-channel layer in F(4x4,3x3) layout, streamed from memory at
 * ~23 GB/s, made it 0.78 ms in a forward pass against 0.29 with the weights
 * in cache.  oneDNN's F(2x2,3x3) kernel, which runs only one image, reads
 * 4.2 MB; a batch-1 forward (predictions) takes it, on a copy of the
 * weights in its layout (22 MB in ResNet-50, one for all workers), and a
 * whole forward gets 1-1.5 ms faster.  Backwards and batches keep the
 * shared F(4x4,3x3) weights.
 */
static bool lean_winograd(const_dnnl_primitive_desc_t pd)
{
	const char *impl = impl_name(pd);
	return impl && strstr(impl, "wino_2x3");
}

/*
 * Split bf16 3x3 layers run on oneDNN's older AMX kernel ("jit:"), not on
 * brgconv, its first choice: within noise of it in an attribution's pass
 * (up to 1.7x slower on its own at 14x14, faster at 7x7), but brgconv keeps
 * 0.5-2.7 MB of kernels per primitive (the most at 56x56), and the server's
 * peak RSS during IG-50 was 448 MiB with it, 401 without.
 */
static const char *wanted_kernel(const struct conv_shape *s, bool split)
{
	return split && s->k > 1 ? "jit:avx512_core_amx" : NULL;
}

static bool impl_is(const_dnnl_primitive_desc_t pd, const char *prefix)
{
	const char *impl = impl_name(pd);
	return impl && !strncmp(impl, prefix, strlen(prefix));
}

/* The implementation to run: the first one oneDNN offers (its own order
 * of preference) of those that best meet, in this order: `lean` (a
 * lean_winograd one), `kernel` (an implementation name starting so, or
 * NULL), `prefer` (running on weights laid out so, or NULL: plans for
 * other batch sizes then share the model's packed weights instead of a
 * copy in another layout). */
static dnnl_status_t pick_impl(dnnl_primitive_desc_t *pd, const_dnnl_op_desc_t desc,
                               const_dnnl_primitive_attr_t attr, const_dnnl_primitive_desc_t hint,
                               const dnnl_memory_desc_t *prefer, bool lean, const char *kernel)
{
	dnnl_primitive_desc_iterator_t it;
	dnnl_status_t st = dnnl_primitive_desc_iterator_create(&it, desc, attr, engine(), hint);
	if (st != dnnl_success)
		return st;
	*pd = NULL;
	const int best = (lean ? 4 : 0) + (kernel ? 2 : 0) + (prefer ? 1 : 0);
	int rank = -1; /* of *pd: the sum of the wishes it meets */
	do {
		dnnl_primitive_desc_t cand = dnnl_primitive_desc_iterator_fetch(it);
		if (!cand)
			continue;
		const int r =
		    (lean && lean_winograd(cand) ? 4 : 0) +
		    (kernel && impl_is(cand, kernel) ? 2 : 0) +
		    (prefer && dnnl_memory_desc_equal(weights_md_of(cand), prefer) ? 1 : 0);
		if (r > rank) {
			if (*pd)
				dnnl_primitive_desc_destroy(*pd);
			*pd = cand;
			rank = r;
		} else {
			dnnl_primitive_desc_destroy(cand);
		}
	} while (rank < best && dnnl_primitive_desc_iterator_next(it) == dnnl_success);
	dnnl_primitive_desc_iterator_destroy(it);
	return *pd ? dnnl_success : dnnl_unimplemented;
}

/*
 * A forward convolution descriptor.  Scratch memory is ours (user mode) so
 * plans never allocate while running and two threads never share a
 * library-owned scratchpad.  `prefer`, `lean`: as pick_impl.  err may be
 * NULL (a probe).
 */
static int forward_desc(dnnl_primitive_desc_t *pd, const struct conv_shape *s, bool bias,
                        unsigned epilogue, dnnl_alg_kind_t alg, dnnl_prop_kind_t prop, bool split,
                        const dnnl_memory_desc_t *prefer, bool lean, struct igs_error *err)
{
	int rc = 0;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t ops = NULL;
	struct conv_mds m;
	conv_mds_init(&m, s, split);
	*pd = NULL;
	TRY(dnnl_primitive_attr_create(&attr), "attribute creation");
	TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user),
	    "scratchpad mode");
	TRY(dnnl_post_ops_create(&ops), "post-op creation");
	if (epilogue & CONV_ADD_TO_OUT)
		TRY(dnnl_post_ops_append_sum(ops, 1.0f), "residual post-op");
	if (epilogue & CONV_RELU)
		TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f),
		    "ReLU post-op");
	if (epilogue & CONV_BACKWARD_MASK) {
		dnnl_memory_desc_t mask_md;
		mask_md_init(&mask_md, s);
		TRY(dnnl_post_ops_append_binary(ops, dnnl_binary_mul, &mask_md), "mask post-op");
	}
	TRY(dnnl_primitive_attr_set_post_ops(attr, ops), "post-ops");
	dnnl_convolution_desc_t desc;
	TRY(dnnl_convolution_forward_desc_init(&desc, prop, alg, &m.src, &m.weights,
	                                       bias ? &m.bias : NULL, &m.dst, m.strides, m.pad,
	                                       m.pad),
	    "forward convolution descriptor");
	TRY(pick_impl(pd, &desc, attr, NULL, prefer, lean, wanted_kernel(s, split)),
	    "forward convolution");
out:
	if (ops)
		dnnl_post_ops_destroy(ops);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return rc;
}

/* oneDNN's direct backward_data; it wants a training forward as a hint. */
static int backward_desc(dnnl_primitive_desc_t *pd, const struct conv_shape *s,
                         const dnnl_memory_desc_t *prefer, struct igs_error *err)
{
	int rc = 0;
	dnnl_primitive_desc_t hint = NULL;
	dnnl_primitive_attr_t attr = NULL;
	struct conv_mds m;
	conv_mds_init(&m, s, false);
	*pd = NULL;
	rc = forward_desc(&hint, s, false, 0, dnnl_convolution_direct, dnnl_forward_training, false,
	                  NULL, false, err);
	if (rc)
		goto out;
	TRY(dnnl_primitive_attr_create(&attr), "attribute creation");
	TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user),
	    "scratchpad mode");
	dnnl_convolution_desc_t desc;
	TRY(dnnl_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &m.src,
	                                             &m.weights, &m.dst, m.strides, m.pad, m.pad),
	    "backward-data convolution descriptor");
	TRY(pick_impl(pd, &desc, attr, hint, prefer, false, NULL), "backward-data convolution");
out:
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	if (hint)
		dnnl_primitive_desc_destroy(hint);
	return rc;
}

/* The descriptors of `s`: the forward (Winograd or direct) and the
 * backward, as the transposed kernel's forward (algos_backward_transposed:
 * Winograd, 1x1 with the backward epilogue as post-ops, same-size kernels
 * in split bf16) or oneDNN's backward_data; preferring
 * implementations that run on weights laid out as fwd_md and bwd_md (NULL:
 * oneDNN's choice).  err may be NULL (a probe). */
static int conv_descs_create(struct conv_descs *d, const struct conv_shape *s, bool bias,
                             unsigned epilogue, const struct conv_algos *algos,
                             const dnnl_memory_desc_t *fwd_md, const dnnl_memory_desc_t *bwd_md,
                             struct igs_error *err)
{
	*d = (struct conv_descs){0};
	const unsigned forward_epilogue = epilogue & (CONV_ADD_TO_OUT | CONV_RELU);
	/* the backward's epilogue in the transposed forward's terms */
	const unsigned backward_epilogue =
	    (epilogue & CONV_BACKWARD_ADD ? CONV_ADD_TO_OUT : 0) | (epilogue & CONV_BACKWARD_MASK);
	/* lean_winograd for a forward of one image */
	int rc = forward_desc(
	    &d->fwd, s, bias, forward_epilogue,
	    algos->winograd_fwd ? dnnl_convolution_winograd : dnnl_convolution_direct,
	    dnnl_forward_inference, algos->split, fwd_md, s->n == 1 && algos->winograd_fwd, err);
	if (!rc && algos_backward_transposed(algos, s)) {
		struct conv_shape t = transposed(s);
		rc = forward_desc(&d->bwd, &t, false, backward_epilogue,
		                  algos->winograd_bwd ? dnnl_convolution_winograd
		                                      : dnnl_convolution_direct,
		                  dnnl_forward_inference, algos->split, bwd_md, false, err);
	} else if (!rc) {
		rc = backward_desc(&d->bwd, s, bwd_md, err);
	}
	if (rc)
		conv_descs_free(d);
	return rc;
}

/* Run a reorder from one weight layout into another, synchronously. */
static int reorder(const dnnl_memory_desc_t *from_md, const void *from,
                   const dnnl_memory_desc_t *to_md, void *to, struct igs_error *err)
{
	int rc = 0;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_primitive_t prim = NULL;
	dnnl_memory_t src = NULL, dst = NULL;
	dnnl_stream_t stream = NULL;
	TRY(dnnl_reorder_primitive_desc_create(&pd, from_md, engine(), to_md, engine(), NULL),
	    "weight reorder descriptor");
	TRY(dnnl_primitive_create(&prim, pd), "weight reorder");
	TRY(dnnl_memory_create(&src, from_md, engine(), (void *)from), "weight memory");
	TRY(dnnl_memory_create(&dst, to_md, engine(), to), "weight memory");
	TRY(dnnl_stream_create(&stream, engine(), dnnl_stream_default_flags), "stream");
	dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
	TRY(dnnl_primitive_execute(prim, stream, 2, args), "weight reorder");
	TRY(dnnl_stream_wait(stream), "weight reorder");
out:
	if (stream)
		dnnl_stream_destroy(stream);
	if (src)
		dnnl_memory_destroy(src);
	if (dst)
		dnnl_memory_destroy(dst);
	if (prim)
		dnnl_primitive_destroy(prim);
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	return rc;
}

/* ---------------------------------------------------------------- weights */

/* Weights in one layout: its descriptor and the reordered values. */
struct packed {
	dnnl_memory_desc_t md;
	float *data;
	size_t bytes;
};

static int packed_make(struct packed *p, const dnnl_memory_desc_t *from_md, const void *from,
                       const dnnl_memory_desc_t *to_md, struct igs_error *err)
{
	p->md = *to_md;
	p->bytes = dnnl_memory_desc_get_size(to_md);
	p->data = memory_alloc_large(p->bytes);
	if (!p->data)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory for %zu bytes of weights",
		                p->bytes);
	int rc = reorder(from_md, from, to_md, p->data, err);
	if (rc) {
		free(p->data);
		p->data = NULL;
	}
	return rc;
}

/*
 * Backward to an input of a few channels (the stem's RGB) has no fast
 * oneDNN kernel: it runs at ~70 GFLOP/s, 3x slower than every other layer.
 * With at least one image per thread it goes instead as one GEMM per band
 * of output rows, d_col[pixels][k*k*c_in] = d_out[pixels][c_out] x W, whose
 * columns are then added into the image (col2im), each thread on its own
 * images.  Weights for it: [c_out][k][k][c_in].
 */

struct conv_weights {
	int c_in, c_out, k, stride, pad;
	struct conv_algos algos;
	/* The backward runs as the transposed kernel's forward
	 * (algos_backward_transposed); bwd then holds the transposed kernel. */
	bool bwd_transposed;
	struct packed fwd, bwd;
	/* With Winograd only: the plain [c_out][c_in][k][k] weights, since
	 * oneDNN cannot reorder out of a Winograd layout and a plan for another
	 * batch may want another one. */
	float *plain;
	float *bias;   /* [c_out] or NULL */
	float *narrow; /* [c_out][k][k][c_in] when c_in <= NARROW_MAX_C_IN, else NULL */
	struct other_layouts *others;
};

/*
 * Weights in a layout other than fwd's or bwd's, made for the first plan
 * that runs on it (another batch size, an epilogue only another kernel
 * takes) and kept with the weights, so every plan that wants the layout
 * shares one copy: the servers' workspaces prepare batches 1-4 in every
 * worker, and a copy per plan was 120 MB in split bf16's ResNet-50.
 */
struct other_layout {
	struct packed packed;
	bool backward;
	struct other_layout *next;
};

struct other_layouts {
	pthread_mutex_t lock; /* plans are made on the workers' threads */
	struct other_layout *head;
};

static void plain_md(dnnl_memory_desc_t *md, int c_out, int c_in, int k)
{
	dnnl_dims_t dims = {c_out, c_in, k, k};
	dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, dnnl_oihw);
}

/* Reorder plain weights [c_out][c_in][k][k] into `to_md`; with `split`,
 * their split bf16 [c_out][3 c_in][k][k] (W_hi, W_hi, W_lo). */
static int packed_make_plain(struct packed *p, const float *weight, int c_out, int c_in, int k,
                             bool split, const dnnl_memory_desc_t *to_md, struct igs_error *err)
{
	dnnl_memory_desc_t md;
	if (!split) {
		plain_md(&md, c_out, c_in, k);
		return packed_make(p, &md, weight, to_md, err);
	}
	uint16_t *halves = malloc((size_t)c_out * SPLIT_PARTS * c_in * k * k * sizeof(uint16_t));
	if (!halves)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory for convolution weights");
	split_weights(halves, weight, (size_t)c_out, (size_t)c_in * k * k);
	dnnl_dims_t dims = {c_out, SPLIT_PARTS * c_in, k, k};
	dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_bf16, dnnl_oihw);
	int rc = packed_make(p, &md, halves, to_md, err);
	free(halves);
	return rc;
}

/* The kernel of the transposed convolution: channels swapped, flipped. */
static float *transpose_kernel(const float *w, int c_out, int c_in, int k)
{
	const int kk = k * k;
	float *t = malloc((size_t)c_out * c_in * kk * sizeof(float));
	if (!t)
		return NULL;
	for (int o = 0; o < c_out; o++)
		for (int i = 0; i < c_in; i++)
			for (int j = 0; j < kk; j++)
				t[((size_t)i * c_out + o) * kk + (kk - 1 - j)] =
				    w[((size_t)o * c_in + i) * kk + j];
	return t;
}

/* Pack plain weights [c_out][c_in][k][k] into the layouts `d` runs on:
 * split bf16 for the forward and the transposed backward with `split`. */
static int pack_plain(struct packed *fwd, struct packed *bwd, const float *weight, int c_out,
                      int c_in, int k, bool transposed, bool split, const struct conv_descs *d,
                      struct igs_error *err)
{
	int rc =
	    fwd ? packed_make_plain(fwd, weight, c_out, c_in, k, split, weights_md_of(d->fwd), err)
	        : 0;
	if (rc || !bwd)
		return rc;
	if (!transposed)
		return packed_make_plain(bwd, weight, c_out, c_in, k, false, weights_md_of(d->bwd),
		                         err);
	float *t = transpose_kernel(weight, c_out, c_in, k);
	if (!t)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory for convolution weights");
	rc = packed_make_plain(bwd, t, c_in, c_out, k, split, weights_md_of(d->bwd), err);
	free(t);
	return rc;
}

int conv_weights_open(struct conv_weights **out, const float *weight, const float *bias,
                      const struct conv_shape *shape, unsigned backward,
                      enum conv_precision precision, struct igs_error *err)
{
	*out = NULL;
	struct conv_shape s = *shape;
	int rc = check_shape(&s, err);
	if (rc)
		return rc;
	if ((backward & ~(unsigned)(CONV_BACKWARD_ADD | CONV_BACKWARD_MASK)) ||
	    (backward && !conv_kernel_fuses_backward(s.k, s.stride, s.pad)))
		return igs_fail(err, IGS_ERR_INTERNAL,
		                "backward epilogue 0x%x for a %dx%d stride-%d convolution",
		                backward, s.k, s.k, s.stride);
	conv_shape_finish(&s);
	if (!engine())
		return igs_fail(err, IGS_ERR_INTERNAL, "oneDNN could not create a CPU engine");
	if (precision == CONV_PRECISION_AUTO)
		return igs_fail(err, IGS_ERR_INTERNAL,
		                "convolution weights need a resolved precision (conv_precision_resolve)");

	struct conv_weights *w = calloc(1, sizeof *w);
	struct other_layouts *others = calloc(1, sizeof *others);
	if (!w || !others) {
		free(w);
		free(others);
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory for convolution weights");
	}
	pthread_mutex_init(&others->lock, NULL);
	*w = (struct conv_weights){.c_in = s.c_in,
	                           .c_out = s.c_out,
	                           .k = s.k,
	                           .stride = s.stride,
	                           .pad = s.pad,
	                           .others = others};
	struct conv_descs d = {0};
	/* Winograd where the shape wants it and oneDNN has it (with the bias). */
	w->algos =
	    (struct conv_algos){.winograd_fwd = winograd_shape(&s, WINOGRAD_FORWARD_MIN_PIXELS),
	                        .winograd_bwd = winograd_shape(&s, WINOGRAD_BACKWARD_MIN_PIXELS),
	                        .split = split_shape(&s, precision)};
	if ((w->algos.winograd_fwd || w->algos.winograd_bwd) &&
	    conv_descs_create(&d, &s, bias != NULL, backward, &w->algos, NULL, NULL, NULL) != 0)
		w->algos = (struct conv_algos){.split = w->algos.split};
	const struct conv_shape ks = kernel_shape(&s);
	if (!d.fwd)
		rc = conv_descs_create(&d, &ks, bias != NULL, backward, &w->algos, NULL, NULL, err);
	w->bwd_transposed = algos_backward_transposed(&w->algos, &ks);
	if (!rc)
		rc = pack_plain(&w->fwd, &w->bwd, weight, s.c_out, s.c_in, s.k, w->bwd_transposed,
		                w->algos.split, &d, err);
	conv_descs_free(&d);
	const size_t plain_bytes = (size_t)s.c_out * s.c_in * s.k * s.k * sizeof(float);
	if (!rc && (w->algos.winograd_fwd || w->algos.winograd_bwd)) {
		w->plain = malloc(plain_bytes);
		if (!w->plain)
			rc = igs_fail(err, IGS_ERR_NOMEM, "out of memory for convolution weights");
		else
			memcpy(w->plain, weight, plain_bytes);
	}
	if (!rc && s.c_in <= NARROW_MAX_C_IN) {
		const int kk = s.k * s.k;
		w->narrow = malloc((size_t)s.c_out * kk * s.c_in * sizeof(float));
		if (!w->narrow)
			rc = igs_fail(err, IGS_ERR_NOMEM, "out of memory for convolution weights");
		for (int o = 0; !rc && o < s.c_out; o++)
			for (int i = 0; i < s.c_in; i++)
				for (int t = 0; t < kk; t++)
					w->narrow[((size_t)o * kk + t) * s.c_in + i] =
					    weight[((size_t)o * s.c_in + i) * kk + t];
	}
	if (!rc && bias) {
		w->bias = memory_alloc_large((size_t)s.c_out * sizeof(float));
		if (!w->bias)
			rc = igs_fail(err, IGS_ERR_NOMEM, "out of memory for a bias");
		else
			memcpy(w->bias, bias, (size_t)s.c_out * sizeof(float));
	}
	if (rc) {
		conv_weights_close(&w);
		return rc;
	}
	*out = w;
	return 0;
}

void conv_weights_close(struct conv_weights **wp)
{
	struct conv_weights *w = *wp;
	if (!w)
		return;
	free(w->fwd.data);
	free(w->bwd.data);
	free(w->plain);
	free(w->bias);
	free(w->narrow);
	for (struct other_layout *o = w->others->head, *next; o; o = next) {
		next = o->next;
		free(o->packed.data);
		free(o);
	}
	pthread_mutex_destroy(&w->others->lock);
	free(w->others);
	free(w);
	*wp = NULL;
}

bool conv_kernel_fuses_backward(int k, int stride, int pad)
{
	/* a subsampled backward ends in the scatter, after any post-op */
	return k == 1 && stride == 1 && pad == 0;
}

bool conv_weights_fuse_backward(const struct conv_weights *w)
{
	return w->bwd_transposed && conv_kernel_fuses_backward(w->k, w->stride, w->pad);
}

size_t conv_weights_bytes(const struct conv_weights *w)
{
	const size_t kernel = (size_t)w->c_out * w->k * w->k * w->c_in * sizeof(float);
	size_t bytes = w->fwd.bytes + w->bwd.bytes + (w->narrow ? kernel : 0) +
	               (w->plain ? kernel : 0) + (w->bias ? (size_t)w->c_out * sizeof(float) : 0);
	pthread_mutex_lock(&w->others->lock);
	for (const struct other_layout *o = w->others->head; o; o = o->next)
		bytes += o->packed.bytes;
	pthread_mutex_unlock(&w->others->lock);
	return bytes;
}

/* ------------------------------------------------------------------ plans */

/* One primitive with the memory objects it runs on (handles set per call). */
struct runner {
	dnnl_primitive_t prim;
	dnnl_memory_t in, weights, out, scratch,
	    bias;           /* forward: in = src; backward: in = diff_dst */
	dnnl_memory_t mask; /* the binary post-op's operand (CONV_BACKWARD_MASK), or NULL */
	int mask_arg;       /* its execution argument */
	size_t scratch_bytes;
	const char *impl;
};

struct conv_plan {
	struct conv_shape shape;
	int threads;         /* omp_get_max_threads() at creation */
	const float *narrow; /* weights for narrow_backward, or NULL */
	struct runner fwd, bwd;
	bool bwd_is_forward; /* bwd is a forward convolution (Winograd, conv_weights) */
	/* The scratch: first, for subsampled(), the gathered input or the
	 * gradient to scatter (tmp_bytes); then, in split bf16, the split
	 * source of the primitive running (split_bytes); then oneDNN's.  Both
	 * 4 KiB-aligned. */
	size_t tmp_bytes, split_bytes;
	bool split_fwd, split_bwd; /* each primitive's source is split bf16 */
	size_t other_bytes;        /* of the weights' other layouts this plan runs on */
	dnnl_stream_t stream;
};

static void runner_free(struct runner *r)
{
	dnnl_memory_t mems[] = {r->in, r->weights, r->out, r->scratch, r->bias, r->mask};
	for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
		if (mems[i])
			dnnl_memory_destroy(mems[i]);
	if (r->prim)
		dnnl_primitive_destroy(r->prim);
	*r = (struct runner){0};
}

void conv_plan_close(struct conv_plan **pp)
{
	struct conv_plan *p = *pp;
	if (!p)
		return;
	runner_free(&p->fwd);
	runner_free(&p->bwd);
	if (p->stream)
		dnnl_stream_destroy(p->stream);
	free(p);
	*pp = NULL;
}

static size_t page_round(size_t bytes)
{
	return (bytes + 4095) & ~(size_t)4095;
}

/*
 * The weights the primitive `pd` runs on: the shared ones when their layout
 * is the one it wants, else the copy in that layout (struct other_layouts),
 * made on first use: reordered from the shared ones, or packed anew from
 * the plain ones for Winograd (whose layouts oneDNN cannot reorder out
 * of).  `backward`: the bwd weights.  *bytes: the copy's size, 0 shared.
 */
static int weights_for(const_dnnl_primitive_desc_t pd, const struct conv_weights *w, bool backward,
                       const float **data, size_t *bytes, struct igs_error *err)
{
	const struct packed *shared = backward ? &w->bwd : &w->fwd;
	const dnnl_memory_desc_t *want = weights_md_of(pd);
	*bytes = 0;
	if (dnnl_memory_desc_equal(want, &shared->md)) {
		*data = shared->data;
		return 0;
	}
	int rc = 0;
	struct other_layouts *others = w->others;
	pthread_mutex_lock(&others->lock);
	struct other_layout *o = others->head;
	while (o && !(o->backward == backward && dnnl_memory_desc_equal(want, &o->packed.md)))
		o = o->next;
	if (!o) {
		o = calloc(1, sizeof *o);
		if (!o) {
			rc = igs_fail(err, IGS_ERR_NOMEM, "out of memory for convolution weights");
		} else if (w->plain) {
			struct conv_descs d = {.fwd = backward ? NULL : (dnnl_primitive_desc_t)pd,
			                       .bwd = backward ? (dnnl_primitive_desc_t)pd : NULL};
			rc = pack_plain(backward ? NULL : &o->packed, backward ? &o->packed : NULL,
			                w->plain, w->c_out, w->c_in, w->k, w->bwd_transposed,
			                w->algos.split, &d, err);
		} else {
			rc = packed_make(&o->packed, &shared->md, shared->data, want, err);
		}
		if (rc) {
			free(o);
			o = NULL;
		} else {
			o->backward = backward;
			o->next = others->head;
			others->head = o;
		}
	}
	if (o) {
		*data = o->packed.data;
		*bytes = o->packed.bytes;
	}
	pthread_mutex_unlock(&others->lock);
	return rc;
}

/* A memory object for argument `what` of `pd`, its handle set at run time. */
static dnnl_status_t arg_memory(dnnl_memory_t *m, const_dnnl_primitive_desc_t pd, dnnl_query_t what)
{
	const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, 0);
	return dnnl_memory_create(m, md, engine(), DNNL_MEMORY_NONE);
}

static int runner_create(struct runner *r, const_dnnl_primitive_desc_t pd, bool forward,
                         const float *weights, const float *bias, int mask_arg,
                         struct igs_error *err)
{
	int rc = 0;
	TRY(dnnl_primitive_create(&r->prim, pd), "convolution primitive");
	TRY(arg_memory(&r->in, pd, forward ? dnnl_query_src_md : dnnl_query_diff_dst_md),
	    "activation memory");
	TRY(arg_memory(&r->out, pd, forward ? dnnl_query_dst_md : dnnl_query_diff_src_md),
	    "activation memory");
	TRY(arg_memory(&r->weights, pd, dnnl_query_weights_md), "weight memory");
	TRY(dnnl_memory_set_data_handle(r->weights, (void *)weights), "weight memory");
	TRY(arg_memory(&r->scratch, pd, dnnl_query_scratchpad_md), "scratch memory");
	r->scratch_bytes = dnnl_memory_desc_get_size(
	    dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
	if (bias) {
		/* The bias is the second weights argument of a forward convolution. */
		const dnnl_memory_desc_t *bmd =
		    dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
		TRY(dnnl_memory_create(&r->bias, bmd, engine(), (void *)bias), "bias memory");
	}
	if (mask_arg) {
		/* the binary post-op's operand: a mask shaped as the output */
		r->mask_arg = mask_arg;
		const dnnl_memory_desc_t *mmd =
		    dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, mask_arg);
		TRY(dnnl_memory_create(&r->mask, mmd, engine(), DNNL_MEMORY_NONE), "mask memory");
	}
	r->impl = impl_name(pd);
out:
	return rc;
}

int conv_plan_open(struct conv_plan **out, const struct conv_weights *w,
                     const struct conv_shape *shape, unsigned epilogue, struct igs_error *err)
{
	*out = NULL;
	struct conv_shape s = *shape;
	int rc = check_shape(&s, err);
	if (rc)
		return rc;
	conv_shape_finish(&s);
	if (s.c_in != w->c_in || s.c_out != w->c_out || s.k != w->k || s.stride != w->stride ||
	    s.pad != w->pad)
		return igs_fail(err, IGS_ERR_INTERNAL,
		                "convolution plan %d -> %d k%d s%d p%d does not match its weights "
		                "%d -> %d k%d s%d p%d",
		                s.c_in, s.c_out, s.k, s.stride, s.pad, w->c_in, w->c_out, w->k,
		                w->stride, w->pad);
	const unsigned known = CONV_ADD_TO_OUT | CONV_RELU | CONV_BACKWARD_ADD | CONV_BACKWARD_MASK;
	if (epilogue & ~known)
		return igs_fail(err, IGS_ERR_INTERNAL, "unknown convolution epilogue flags 0x%x",
		                epilogue);
	if ((epilogue & (CONV_BACKWARD_ADD | CONV_BACKWARD_MASK)) && !conv_weights_fuse_backward(w))
		return igs_fail(err, IGS_ERR_INTERNAL,
		                "a %dx%d stride-%d convolution's backward takes no epilogue", w->k,
		                w->k, w->stride);
	struct conv_plan *p = calloc(1, sizeof *p);
	if (!p)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory for a convolution plan");
	p->shape = s;
	p->threads = omp_get_max_threads();
	p->narrow = w->narrow;
	struct conv_descs d = {0};
	const float *fwd_w = NULL, *bwd_w = NULL;
	p->bwd_is_forward = w->bwd_transposed;
	if (subsampled(&s))
		p->tmp_bytes = page_round((size_t)s.n * s.h_out * s.w_out * s.c_in * sizeof(float));
	const struct conv_shape ks = kernel_shape(&s);
	p->split_fwd = w->algos.split;
	p->split_bwd = w->algos.split && w->bwd_transposed;
	const size_t fwd_values = (size_t)ks.n * ks.h_in * ks.w_in * ks.c_in;
	const size_t bwd_values = (size_t)s.n * s.h_out * s.w_out * s.c_out;
	const size_t split_values = p->split_bwd && bwd_values > fwd_values ? bwd_values
	                            : p->split_fwd                          ? fwd_values
	                                                                    : 0;
	p->split_bytes = page_round(split_values * SPLIT_PARTS * sizeof(uint16_t));
	rc = conv_descs_create(&d, &ks, w->bias != NULL, epilogue, &w->algos, &w->fwd.md,
	                       &w->bwd.md, err);
	size_t fwd_other = 0, bwd_other = 0;
	if (!rc)
		rc = weights_for(d.fwd, w, false, &fwd_w, &fwd_other, err);
	if (!rc)
		rc = weights_for(d.bwd, w, true, &bwd_w, &bwd_other, err);
	p->other_bytes = fwd_other + bwd_other;
	if (!rc)
		rc = runner_create(&p->fwd, d.fwd, true, fwd_w, w->bias, 0, err);
	/* the mask multiplies after the sum when both are there */
	const int mask_arg =
	    epilogue & CONV_BACKWARD_MASK
	        ? DNNL_ARG_ATTR_MULTIPLE_POST_OP(epilogue & CONV_BACKWARD_ADD ? 1 : 0) |
	              DNNL_ARG_SRC_1
	        : 0;
	if (!rc)
		rc = runner_create(&p->bwd, d.bwd, w->bwd_transposed, bwd_w, NULL, mask_arg, err);
	if (!rc) {
		dnnl_status_t st =
		    dnnl_stream_create(&p->stream, engine(), dnnl_stream_default_flags);
		if (st != dnnl_success)
			rc = dnnl_fail(err, st, "stream");
	}
	conv_descs_free(&d);
	if (rc) {
		conv_plan_close(&p);
		return rc;
	}
	*out = p;
	return 0;
}

/* Whether the backward pass goes by narrow_backward: images for every thread. */
static bool use_narrow(const struct conv_plan *p)
{
	return p->narrow && p->shape.n >= p->threads;
}

static size_t narrow_scratch_floats(const struct conv_plan *p)
{
	const struct conv_shape *s = &p->shape;
	return (size_t)p->threads * NARROW_BAND_ROWS * s->w_out * s->k * s->k * s->c_in;
}

size_t conv_plan_scratch_bytes(const struct conv_plan *p)
{
	size_t bytes = p->fwd.scratch_bytes > p->bwd.scratch_bytes ? p->fwd.scratch_bytes
	                                                           : p->bwd.scratch_bytes;
	if (use_narrow(p) && narrow_scratch_floats(p) * sizeof(float) > bytes)
		bytes = narrow_scratch_floats(p) * sizeof(float);
	return p->tmp_bytes + p->split_bytes + bytes;
}

size_t conv_plan_other_layout_bytes(const struct conv_plan *p)
{
	return p->other_bytes;
}

const char *conv_plan_forward_impl(const struct conv_plan *p)
{
	return p->fwd.impl ? p->fwd.impl : "unknown";
}

const char *conv_plan_backward_impl(const struct conv_plan *p)
{
	if (use_narrow(p))
		return "igserve:gemm_col2im";
	return p->bwd.impl ? p->bwd.impl : "unknown";
}

/*
 * Execution cannot fail for a primitive that was created (oneDNN validated
 * the shapes then); a failure here is a bug, so it aborts loudly rather than
 * returning a result computed from garbage.
 */
static void run(const struct conv_plan *p, const struct runner *r, int in_arg, const void *in,
                int out_arg, void *out, const uint8_t *mask, void *scratch)
{
	dnnl_memory_set_data_handle(r->in, (void *)in);
	dnnl_memory_set_data_handle(r->out, out);
	dnnl_memory_set_data_handle(r->scratch, scratch);
	dnnl_exec_arg_t args[6] = {{in_arg, r->in},
	                           {DNNL_ARG_WEIGHTS, r->weights},
	                           {out_arg, r->out},
	                           {DNNL_ARG_SCRATCHPAD, r->scratch}};
	int nargs = 4;
	if (r->bias)
		args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, r->bias};
	if (r->mask) {
		dnnl_memory_set_data_handle(r->mask, (void *)mask);
		args[nargs++] = (dnnl_exec_arg_t){r->mask_arg, r->mask};
	}
	dnnl_status_t st = dnnl_primitive_execute(r->prim, p->stream, nargs, args);
	if (st == dnnl_success)
		st = dnnl_stream_wait(p->stream);
	if (st != dnnl_success)
		abort();
}

/* Pixels of an activation as runs of `group` floats: NHWC one run of c per
 * pixel, blocked c/16 runs of 16 ([n][c/16][h][w][16]). */
static void pixel_runs(const struct conv_shape *s, int c, int *group, int *groups)
{
	*group = s->blocked ? 16 : c;
	*groups = s->blocked ? c / 16 : 1;
}

/* One pixel's run of g floats: blocked runs (16) as fixed-size moves,
 * which a memcpy call per 64 bytes made 1% of an attribution. */
static inline void copy_run(float *restrict dst, const float *restrict src, int g)
{
	if (g == 16)
		for (int k = 0; k < 16; k++)
			dst[k] = src[k];
	else
		memcpy(dst, src, (size_t)g * sizeof(float));
}

static inline void zero_run(float *dst, int g)
{
	if (g == 16)
		for (int k = 0; k < 16; k++)
			dst[k] = 0.0f;
	else
		memset(dst, 0, (size_t)g * sizeof(float));
}

/* tmp [n][h_out][w_out][c_in] (in the activation layout) = the pixels of
 * `in` a subsampled convolution reads. */
static void gather_strided(float *restrict tmp, const float *restrict in, const struct conv_plan *p)
{
	const struct conv_shape *s = &p->shape;
	int g, G;
	pixel_runs(s, s->c_in, &g, &G);
	const long rows = (long)s->n * G * s->h_out;
#pragma omp parallel for schedule(static) num_threads(p->threads)
	for (long r = 0; r < rows; r++) {
		const long plane = r / s->h_out; /* image and channel group */
		const int oy = (int)(r % s->h_out);
		const float *src =
		    in + ((size_t)plane * s->h_in + (size_t)oy * s->stride) * s->w_in * g;
		float *dst = tmp + (size_t)r * s->w_out * g;
		for (int ox = 0; ox < s->w_out; ox++)
			copy_run(dst + (size_t)ox * g, src + (size_t)ox * s->stride * g, g);
	}
}

/* d_in = the gradient tmp [n][h_out][w_out][c_in] at the pixels a
 * subsampled convolution read, 0 elsewhere. */
static void scatter_strided(float *restrict d_in, const float *restrict tmp,
                            const struct conv_plan *p)
{
	const struct conv_shape *s = &p->shape;
	int g, G;
	pixel_runs(s, s->c_in, &g, &G);
	const long rows = (long)s->n * G * s->h_in;
#pragma omp parallel for schedule(static) num_threads(p->threads)
	for (long r = 0; r < rows; r++) {
		const long plane = r / s->h_in;
		const int iy = (int)(r % s->h_in);
		float *dst = d_in + (size_t)r * s->w_in * g;
		const int oy = iy / s->stride;
		if (iy % s->stride || oy >= s->h_out) {
			memset(dst, 0, (size_t)s->w_in * g * sizeof(float));
			continue;
		}
		const float *src = tmp + ((size_t)plane * s->h_out + oy) * s->w_out * g;
		for (int ix = 0; ix < s->w_in; ix++) {
			const int ox = ix / s->stride;
			if (ix % s->stride || ox >= s->w_out)
				zero_run(dst + (size_t)ix * g, g);
			else
				copy_run(dst + (size_t)ix * g, src + (size_t)ox * g, g);
		}
	}
}

/* The source a primitive runs on: `count` values of `c` channels per
 * pixel, split into the scratch's split part when `split` (with the masks
 * of split_rows_masked), else `values` themselves (and no masks). */
static const void *source(const struct conv_plan *p, const float *values, size_t count, int c,
                          bool split, const uint8_t *keep, uint8_t *positive, char *scratch)
{
	if (!split)
		return values;
	uint16_t *halves = (uint16_t *)(scratch + p->tmp_bytes);
	split_rows_masked(halves, values, count / c, c, keep, positive, p->threads);
	return halves;
}

/* oneDNN's part of the scratch. */
static void *dnnl_scratch(const struct conv_plan *p, void *scratch)
{
	return (char *)scratch + p->tmp_bytes + p->split_bytes;
}

void conv_plan_forward_mask(const struct conv_plan *p, float *out, const float *in,
                            uint8_t *in_bits, void *scratch)
{
	const struct conv_shape *s = &p->shape;
	size_t count = (size_t)s->n * s->h_in * s->w_in * s->c_in;
	/* the mask in the split's read of `in`, when the split reads all of it */
	if (in_bits && (!p->split_fwd || p->tmp_bytes)) {
		relu_mask_bits(in_bits, in, count);
		in_bits = NULL;
	}
	if (p->tmp_bytes) {
		float *tmp = scratch;
		gather_strided(tmp, in, p);
		in = tmp;
		count = (size_t)s->n * s->h_out * s->w_out * s->c_in;
	}
	run(p, &p->fwd, DNNL_ARG_SRC,
	    source(p, in, count, s->c_in, p->split_fwd, NULL, in_bits, scratch), DNNL_ARG_DST, out,
	    NULL, dnnl_scratch(p, scratch));
}

void conv_plan_forward(const struct conv_plan *p, float *out, const float *in, void *scratch)
{
	conv_plan_forward_mask(p, out, in, NULL, scratch);
}

/* col2im of one band: add each output pixel's columns into the taps it read. */
static void add_columns(float *d_image, const float *col, const struct conv_shape *s, int oy0,
                        int rows)
{
	const int k = s->k, c = s->c_in, kkc = k * k * c;
	for (int r = 0; r < rows; r++) {
		const int oy = oy0 + r;
		for (int ox = 0; ox < s->w_out; ox++) {
			const float *cp = col + ((size_t)r * s->w_out + ox) * kkc;
			/* the kernel's columns inside the image: kx in [kx0, kx1) */
			const int x = ox * s->stride - s->pad;
			const int kx0 = x < 0 ? -x : 0;
			const int kx1 = x + k > s->w_in ? s->w_in - x : k;
			for (int ky = 0; ky < k; ky++) {
				const int iy = oy * s->stride - s->pad + ky;
				if (iy < 0 || iy >= s->h_in || kx0 >= kx1)
					continue;
				float *dst = d_image + ((size_t)iy * s->w_in + x + kx0) * c;
				const float *src = cp + ((size_t)ky * k + kx0) * c;
				/* taps of one kernel row are adjacent pixels: contiguous in NHWC */
				for (int j = 0; j < (kx1 - kx0) * c; j++)
					dst[j] += src[j];
			}
		}
	}
}

static void narrow_backward(const struct conv_plan *p, float *d_in, const float *d_out,
                            float *scratch)
{
	const struct conv_shape *s = &p->shape;
	const int kkc = s->k * s->k * s->c_in;
	const size_t image_in = (size_t)s->h_in * s->w_in * s->c_in;
	const size_t image_out = (size_t)s->h_out * s->w_out * s->c_out;
#pragma omp parallel num_threads(p->threads)
	{
		const int t = omp_get_thread_num(), nth = omp_get_num_threads();
		float *col = scratch + (size_t)t * NARROW_BAND_ROWS * s->w_out * kkc;
		for (int img = t; img < s->n; img += nth) {
			float *dx = d_in + (size_t)img * image_in;
			memset(dx, 0, image_in * sizeof(float));
			for (int oy = 0; oy < s->h_out; oy += NARROW_BAND_ROWS) {
				int rows = s->h_out - oy < NARROW_BAND_ROWS ? s->h_out - oy
				                                            : NARROW_BAND_ROWS;
				const float *g = d_out + (size_t)img * image_out +
				                 (size_t)oy * s->w_out * s->c_out;
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
				            rows * s->w_out, kkc, s->c_out, 1.0f, g, s->c_out,
				            p->narrow, kkc, 0.0f, col, kkc);
				add_columns(dx, col, s, oy, rows);
			}
		}
	}
}

void conv_plan_backward_data_masked(const struct conv_plan *p, float *d_in, float *d_out,
                                    const uint8_t *d_out_bits, const uint8_t *mask, void *scratch)
{
	const struct conv_shape *s = &p->shape;
	const size_t count = (size_t)s->n * s->h_out * s->w_out * s->c_out;
	/* the ReLU's backward in the split's read of d_out, else in place */
	if (d_out_bits && (!p->split_bwd || use_narrow(p))) {
		relu_backward_bits(d_out, d_out_bits, count);
		d_out_bits = NULL;
	}
	if (use_narrow(p)) {
		narrow_backward(p, d_in, d_out, scratch);
	} else if (p->tmp_bytes) {
		float *tmp = scratch;
		run(p, &p->bwd, DNNL_ARG_SRC,
		    source(p, d_out, count, s->c_out, p->split_bwd, d_out_bits, NULL, scratch),
		    DNNL_ARG_DST, tmp, NULL, dnnl_scratch(p, scratch));
		scatter_strided(d_in, tmp, p);
	} else if (p->bwd_is_forward) {
		run(p, &p->bwd, DNNL_ARG_SRC,
		    source(p, d_out, count, s->c_out, p->split_bwd, d_out_bits, NULL, scratch),
		    DNNL_ARG_DST, d_in, mask, dnnl_scratch(p, scratch));
	} else {
		run(p, &p->bwd, DNNL_ARG_DIFF_DST, d_out, DNNL_ARG_DIFF_SRC, d_in, NULL,
		    dnnl_scratch(p, scratch));
	}
}

void conv_plan_backward_data(const struct conv_plan *p, float *d_in, const float *d_out,
                             const uint8_t *mask, void *scratch)
{
	/* without bits d_out is only read */
	conv_plan_backward_data_masked(p, d_in, (float *)d_out, NULL, mask, scratch);
}
