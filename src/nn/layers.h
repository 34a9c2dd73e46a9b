/*
 * layers.h - the network's kernels other than convolution (conv.h):
 * forward and backward-to-input pairs.
 *
 * Layout: an activation is NHWC, i.e. [N][H][W][C] in C order, channels
 * innermost, or blocked, [N][C/B][H][W][B] (oneDNN's nChw16c for B = 16):
 * the layouts oneDNN's convolutions run fastest on.  Kernels that touch
 * values one at a time (masks, adds) do not care which; the others take a
 * struct act_shape.  `pixels` below is N*H*W.
 *
 * Only gradients with respect to the input are computed (attribution never
 * needs weight gradients).  Backward functions that take `accumulate` write
 * d_in (0) or add to it (1).
 *
 * Every kernel splits its work over the calling thread's OpenMP threads
 * (omp_set_num_threads) and never allocates.
 */
#ifndef IGSERVE_LAYERS_H
#define IGSERVE_LAYERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * relu_mask_bits - bit i % 8 of bits[i / 8] = x[i] > 0, (count + 7) / 8
 * bytes: all the backward pass needs of a ReLU's output, in a 32nd of its
 * memory.  relu_backward_bits - d[i] = that bit ? d[i] : 0, in place.
 */
void relu_mask_bits(uint8_t *bits, const float *x, size_t count);
void relu_backward_bits(float *d, const uint8_t *bits, size_t count);
/* relu_mask_bits_expand - bytes[i] = bit i of `bits` (0 or 1): a bit mask as
 * the byte mask oneDNN's multiplication post-op takes. */
void relu_mask_bits_expand(uint8_t *bytes, const uint8_t *bits, size_t count);

/* tensor_add - dst[i] += src[i]. */
void tensor_add(float *dst, const float *src, size_t count);
/* tensor_add_masked_bits - dst[i] = bit i ? dst[i] + src[i] : 0: a sum of
 * gradients that then goes back through a ReLU, in one pass. */
void tensor_add_masked_bits(float *dst, const float *src, const uint8_t *bits, size_t count);

/* An activation of n images of hw pixels and c channels: NHWC when block
 * is 0, else [n][c/block][hw][block] (c a multiple of block). */
struct act_shape {
	int n, c, hw, block;
};

/*
 * affine_relu_forward - inference BatchNorm folded to scale/shift, then ReLU:
 *   out[i][p][c] = max(0, in[i][p][c] * scale[c] + shift[c])
 * out may equal in; mask (NULL: not wanted) receives out > 0.
 */
void affine_relu_forward(float *out, uint8_t *mask, const float *in, const float *scale,
                         const float *shift, const struct act_shape *s);
/* d_in (+)= d_out * mask * scale[c]; d_in may equal d_out when not accumulating. */
void affine_relu_backward(float *d_in, const float *d_out, const uint8_t *mask, const float *scale,
                          const struct act_shape *s, int accumulate);

/* Max pooling, square window; padding never wins (it is -infinity).  The
 * input is NHWC; the output (and argmax) NHWC when out_block is 0, else
 * blocked by out_block channels. */
struct maxpool_shape {
	int c, n, h_in, w_in, k, stride, pad, h_out, w_out;
	/* TensorFlow's 'SAME' padding instead of `pad` on every side: the
	 * output is ceil(in / stride) and the padding that needs, split with
	 * the smaller half before (0 before and 1 after for 3x3/2 on 112). */
	bool same;
	int pad_top, pad_left; /* set by maxpool_shape_finish */
	int out_block;
	/* The input came out of a ReLU: argmax is -1 where the maximum is not
	 * positive, since the ReLU passes no gradient there (which spares the
	 * ReLU's own mask and backward pass). */
	bool after_relu;
};
void maxpool_shape_finish(struct maxpool_shape *s);
/*
 * maxpool_forward - in [n][h_in][w_in][c], out [n][h_out][w_out][c] (or
 * blocked); argmax [same count and layout as out] receives the flat index
 * into `in` of each window's maximum (first one in row-major window order
 * on ties).
 */
void maxpool_forward(float *out, int32_t *argmax, const float *in, const struct maxpool_shape *s);
/* d_in = 0, then d_in[argmax[i]] += d_out[i] */
void maxpool_backward(float *d_in, const float *d_out, const int32_t *argmax,
                      const struct maxpool_shape *s);

/*
 * maxpool_backward_sum - the path's form of maxpool_backward (IG): the n
 * images' input gradients d_i are not written but summed,
 *   acc[j] += sum_i weight[i] d_i[j]      (acc: one input image),
 * and each is reduced to two inner products with one-image vectors:
 *   dots[2i] = sum_j d_i[j] probe[j],  dots[2i+1] = sum_j d_i[j] (to[j] - from[j]).
 * The sums are the same from run to run.
 */
void maxpool_backward_sum(float *acc, double *dots, const float *d_out, const int32_t *argmax,
                          const float *weight, const float *probe, const float *from,
                          const float *to, const struct maxpool_shape *s);

/* Global average pool: in (shape s) -> out [n][c]. */
void avgpool_forward(float *out, const float *in, const struct act_shape *s);
/* d_in (shape s) = d_out[n][c] / hw */
void avgpool_backward(float *d_in, const float *d_out, const struct act_shape *s);

/*
 * linear_forward - out [n][classes] = in [n][c] x weight^T + bias,
 *   weight [classes][c], bias [classes]
 */
void linear_forward(float *out, const float *in, const float *weight, const float *bias, int n,
                    int c, int classes);
/* d_in [n][c] = d_out [n][classes] x weight */
void linear_backward(float *d_in, const float *d_out, const float *weight, int n, int c,
                     int classes);

/*
 * tensor_lerp - out[i][j] = (1 - t[i]) from[j] + t[i] to[j] for i < n,
 * j < count, then max(0, .) when relu: points on a straight path (exactly
 * `from` at t = 0 and `to` at t = 1).
 */
void tensor_lerp(float *out, const float *from, const float *to, const float *t, int n, size_t count,
               bool relu);

/*
 * normalize_forward - pixels [n][h][w][3] (0..255) to the network's input
 * [n][h][w][3]: (p / 255 - mean[c]) / std[c].
 */
void normalize_forward(float *out, const float *pixels, int n, int h, int w, const float mean[3],
                       const float std[3]);
/* normalize_backward - d_pixels [n][h][w][3] = d_out[n][h][w][c] / (255 std[c]) */
void normalize_backward(float *d_pixels, const float *d_out, int n, int h, int w,
                        const float std[3]);

/* softmax_forward - probs[i] = exp(logits[i]) / sum_j exp(logits[j]), in
 * double, stable for any logits; probs may alias logits. */
void softmax_forward(float *probs, const float *logits, int n);

#endif
