/*
 * conv_weights.c - one convolution's weights, reordered once (at model
 * load) into the layouts its forward and backward kernels want, and the
 * copies in other layouts that plans share.
 */
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "conv_internal.h"
#include "memory.h"

int conv_packed_make(struct packed *p, const dnnl_memory_desc_t *from_md, const void *from,
                     const dnnl_memory_desc_t *to_md, struct igs_error *err)
{
	p->md = *to_md;
	p->bytes = dnnl_memory_desc_get_size(to_md);
	p->data = memory_alloc_large(p->bytes);
	if (!p->data)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory for %zu bytes of weights",
		                p->bytes);
	int rc = conv_reorder(from_md, from, to_md, p->data, err);
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
		return conv_packed_make(p, &md, weight, to_md, err);
	}
	uint16_t *halves = malloc((size_t)c_out * SPLIT_PARTS * c_in * k * k * sizeof(uint16_t));
	if (!halves)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory for convolution weights");
	conv_split_weights(halves, weight, (size_t)c_out, (size_t)c_in * k * k);
	dnnl_dims_t dims = {c_out, SPLIT_PARTS * c_in, k, k};
	dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_bf16, dnnl_oihw);
	int rc = conv_packed_make(p, &md, halves, to_md, err);
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
int conv_pack_plain(struct packed *fwd, struct packed *bwd, const float *weight, int c_out,
                    int c_in, int k, bool transposed, bool split, const struct conv_descs *d,
                    struct igs_error *err)
{
	int rc = fwd ? packed_make_plain(fwd, weight, c_out, c_in, k, split,
	                                 conv_weights_md_of(d->fwd), err)
	             : 0;
	if (rc || !bwd)
		return rc;
	if (!transposed)
		return packed_make_plain(bwd, weight, c_out, c_in, k, false,
		                         conv_weights_md_of(d->bwd), err);
	float *t = transpose_kernel(weight, c_out, c_in, k);
	if (!t)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory for convolution weights");
	rc = packed_make_plain(bwd, t, c_in, c_out, k, split, conv_weights_md_of(d->bwd), err);
	free(t);
	return rc;
}

int conv_weights_open(struct conv_weights **out, const float *weight, const float *bias,
                      const struct conv_shape *shape, unsigned backward,
                      enum conv_precision precision, struct igs_error *err)
{
	*out = NULL;
	struct conv_shape s = *shape;
	int rc = conv_check_shape(&s, err);
	if (rc)
		return rc;
	if ((backward & ~(unsigned)(CONV_BACKWARD_ADD | CONV_BACKWARD_MASK)) ||
	    (backward && !conv_kernel_fuses_backward(s.k, s.stride, s.pad)))
		return igs_fail(err, IGS_ERR_INTERNAL,
		                "backward epilogue 0x%x for a %dx%d stride-%d convolution",
		                backward, s.k, s.k, s.stride);
	conv_shape_finish(&s);
	if (!conv_engine())
		return igs_fail(err, IGS_ERR_INTERNAL, "oneDNN could not create a CPU engine");
	if (precision == CONV_PRECISION_AUTO)
		return igs_fail(
		    err, IGS_ERR_INTERNAL,
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
	w->algos = (struct conv_algos){
	    .winograd_fwd = conv_winograd_shape(&s, WINOGRAD_FORWARD_MIN_PIXELS),
	    .winograd_bwd = conv_winograd_shape(&s, WINOGRAD_BACKWARD_MIN_PIXELS),
	    .split = conv_split_shape(&s, precision)};
	if ((w->algos.winograd_fwd || w->algos.winograd_bwd) &&
	    conv_descs_create(&d, &s, bias != NULL, backward, &w->algos, NULL, NULL, NULL) != 0)
		w->algos = (struct conv_algos){.split = w->algos.split};
	const struct conv_shape ks = conv_kernel_shape(&s);
	if (!d.fwd)
		rc = conv_descs_create(&d, &ks, bias != NULL, backward, &w->algos, NULL, NULL, err);
	w->bwd_transposed = conv_algos_backward_transposed(&w->algos, &ks);
	if (!rc)
		rc = conv_pack_plain(&w->fwd, &w->bwd, weight, s.c_out, s.c_in, s.k,
		                     w->bwd_transposed, w->algos.split, &d, err);
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
