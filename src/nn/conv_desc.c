/*
 * conv_desc.c - which oneDNN primitives a convolution runs: memory
 * descriptors, the kernel chosen for each shape (Winograd, split bf16,
 * pointwise for strided 1x1), the forward and backward descriptors, and
 * reorders between layouts.
 */
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <string.h>

#include "conv_internal.h"

void conv_descs_free(struct conv_descs *d)
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

bool conv_winograd_shape(const struct conv_shape *s, int min_output_pixels)
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

bool conv_subsampled(const struct conv_shape *s)
{
	return subsampled_kernel(s->k, s->stride, s->pad);
}

/* The shape oneDNN runs for `s`: itself, or for a subsampled convolution
 * the pointwise one at the output's size. */
struct conv_shape conv_kernel_shape(const struct conv_shape *s)
{
	struct conv_shape t = *s;
	if (conv_subsampled(s)) {
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

/* Split bf16 for every convolution but the narrow ones (the stem's RGB
 * input), whose forward runs on two images per request and whose backward
 * has its own kernel. */
bool conv_split_shape(const struct conv_shape *s, enum conv_precision p)
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
bool conv_algos_backward_transposed(const struct conv_algos *a, const struct conv_shape *s)
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
const dnnl_memory_desc_t *conv_weights_md_of(const_dnnl_primitive_desc_t pd)
{
	return dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
}

/* The name of a primitive's implementation ("brgconv:avx512_core", ...). */
const char *conv_impl_name(const_dnnl_primitive_desc_t pd)
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
	const char *impl = conv_impl_name(pd);
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
	const char *impl = conv_impl_name(pd);
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
	dnnl_status_t st =
	    dnnl_primitive_desc_iterator_create(&it, desc, attr, conv_engine(), hint);
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
		    (prefer && dnnl_memory_desc_equal(conv_weights_md_of(cand), prefer) ? 1 : 0);
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
int conv_descs_create(struct conv_descs *d, const struct conv_shape *s, bool bias,
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
	if (!rc && conv_algos_backward_transposed(algos, s)) {
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
int conv_reorder(const dnnl_memory_desc_t *from_md, const void *from,
                 const dnnl_memory_desc_t *to_md, void *to, struct igs_error *err)
{
	int rc = 0;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_primitive_t prim = NULL;
	dnnl_memory_t src = NULL, dst = NULL;
	dnnl_stream_t stream = NULL;
	TRY(dnnl_reorder_primitive_desc_create(&pd, from_md, conv_engine(), to_md, conv_engine(),
	                                       NULL),
	    "weight reorder descriptor");
	TRY(dnnl_primitive_create(&prim, pd), "weight reorder");
	TRY(dnnl_memory_create(&src, from_md, conv_engine(), (void *)from), "weight memory");
	TRY(dnnl_memory_create(&dst, to_md, conv_engine(), to), "weight memory");
	TRY(dnnl_stream_create(&stream, conv_engine(), dnnl_stream_default_flags), "stream");
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
