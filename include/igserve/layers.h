/*
 * layers.h - the network's kernels: forward and backward-to-input pairs.
 *
 * Layout: every activation is CNHW, i.e. [C][N][H][W] in C order: channel
 * outermost, then image in the batch, then rows and columns.  With that
 * layout a convolution over a whole batch is one GEMM
 *     out[Cout, N*Ho*Wo] = W[Cout, Cin*k*k] x col[Cin*k*k, N*Ho*Wo]
 * and a 1x1 stride-1 convolution needs no im2col at all.
 *
 * Only gradients with respect to the input are computed (attribution never
 * needs weight gradients).  Backward functions take `accumulate`: 0 writes
 * d_in, 1 adds to it (a tensor feeding two consumers, e.g. a residual).
 *
 * No function here allocates: callers pass workspaces sized with the
 * *_workspace_floats() helpers once per model and batch size.
 */
#ifndef IGSERVE_LAYERS_H
#define IGSERVE_LAYERS_H

#include <stddef.h>
#include <stdint.h>

struct conv_shape {
	int n;                /* batch */
	int c_in, h_in, w_in;
	int c_out, k, stride, pad;
	int h_out, w_out;     /* (h_in + 2*pad - k) / stride + 1 */
};

/* Fill h_out and w_out from the other fields. */
void conv_shape_finish(struct conv_shape *s);

/* Floats of column workspace conv2d_forward / conv2d_backward_data need
 * (0 for a 1x1 stride-1 convolution). */
size_t conv2d_workspace_floats(const struct conv_shape *s);

/*
 * conv2d_forward
 *   out      [c_out][n][h_out][w_out]
 *   in       [c_in][n][h_in][w_in]
 *   weight   [c_out][c_in][k][k]
 *   bias     [c_out] or NULL
 *   residual [c_out][n][h_out][w_out] or NULL: added after the convolution
 *            (may alias out)
 *   relu     nonzero: out = max(0, out) last
 * out = relu?(conv(in, weight) + bias + residual)
 */
void conv2d_forward(float *out, const float *in, const float *weight, const float *bias,
                    const float *residual, int relu, const struct conv_shape *s, float *col);

/*
 * conv2d_backward_data - d_in (+)= conv_transpose(d_out, weight)
 *   d_in  [c_in][n][h_in][w_in], d_out [c_out][n][h_out][w_out]
 */
void conv2d_backward_data(float *d_in, const float *d_out, const float *weight,
                          const struct conv_shape *s, int accumulate, float *col);

/* relu_backward - d[i] = out[i] > 0 ? d[i] : 0, in place. */
void relu_backward(float *d, const float *out, size_t count);

/*
 * affine_relu_forward - inference BatchNorm folded to scale/shift, then ReLU:
 *   out[c][...] = max(0, in[c][...] * scale[c] + shift[c]),  plane = N*H*W
 */
void affine_relu_forward(float *out, const float *in, const float *scale, const float *shift,
                         int channels, size_t plane);
/* d_in (+)= d_out * (out > 0) * scale[c] */
void affine_relu_backward(float *d_in, const float *d_out, const float *out, const float *scale,
                          int channels, size_t plane, int accumulate);

/* Max pooling, square window; padding never wins (it is -infinity). */
struct pool_shape {
	int c, n, h_in, w_in, k, stride, pad, h_out, w_out;
};
void pool_shape_finish(struct pool_shape *s);
/*
 * maxpool_forward - out [c][n][h_out][w_out]; argmax [same count] receives
 * the flat index into `in` of each window's maximum (first one on ties).
 */
void maxpool_forward(float *out, int32_t *argmax, const float *in, const struct pool_shape *s);
/* d_in = 0, then d_in[argmax[i]] += d_out[i] */
void maxpool_backward(float *d_in, const float *d_out, const int32_t *argmax,
                      const struct pool_shape *s);

/* Global average pool: in [c][n][hw] -> out [n][c] (note: batch-major). */
void avgpool_forward(float *out, const float *in, int c, int n, int hw);
/* d_in [c][n][hw] = d_out[n][c] / hw */
void avgpool_backward(float *d_in, const float *d_out, int c, int n, int hw);

/*
 * linear_forward - out [n][classes] = in [n][c] x weight^T + bias,
 *   weight [classes][c], bias [classes]
 */
void linear_forward(float *out, const float *in, const float *weight, const float *bias,
                    int n, int c, int classes);
/* d_in [n][c] = d_out [n][classes] x weight */
void linear_backward(float *d_in, const float *d_out, const float *weight, int n, int c,
                     int classes);

/*
 * normalize_forward - pixels [n][h][w][3] (0..255, HWC) to the network's
 * input [3][n][h][w]: (p / 255 - mean[c]) / std[c].
 */
void normalize_forward(float *out, const float *pixels, int n, int h, int w, const float mean[3],
                       const float std[3]);
/* normalize_backward - d_pixels [n][h][w][3] = d_out[c][n][h][w] / (255 std[c]) */
void normalize_backward(float *d_pixels, const float *d_out, int n, int h, int w,
                        const float std[3]);

/* ===== one thread's share, inside a team pass (team.h) =====================
 * Same math as above; each call does this thread's block of channels (or
 * elements).  Callers par_sync() before a later layer reads the output.
 * conv2d_forward_par syncs once inside (after im2col); p NULL = whole range.
 */
struct par;
void conv2d_forward_par(float *out, const float *in, const float *weight, const float *bias,
                        const float *residual, int relu, const struct conv_shape *s, float *col,
                        const struct par *p);
void conv2d_backward_data_par(float *d_in, const float *d_out, const float *weight,
                              const struct conv_shape *s, int accumulate, float *col,
                              const struct par *p);
void relu_backward_par(float *d, const float *out, size_t count, const struct par *p);
void affine_relu_forward_par(float *out, const float *in, const float *scale, const float *shift,
                             int channels, size_t plane, const struct par *p);
void affine_relu_backward_par(float *d_in, const float *d_out, const float *out,
                              const float *scale, int channels, size_t plane, int accumulate,
                              const struct par *p);
void maxpool_forward_par(float *out, int32_t *argmax, const float *in, const struct pool_shape *s,
                         const struct par *p);
void maxpool_backward_par(float *d_in, const float *d_out, const int32_t *argmax,
                          const struct pool_shape *s, const struct par *p);
void avgpool_forward_par(float *out, const float *in, int c, int n, int hw, const struct par *p);
void avgpool_backward_par(float *d_in, const float *d_out, int c, int n, int hw,
                          const struct par *p);
void normalize_forward_par(float *out, const float *pixels, int n, int h, int w,
                           const float mean[3], const float std[3], const struct par *p);
void normalize_backward_par(float *d_pixels, const float *d_out, int n, int h, int w,
                            const float std[3], const struct par *p);

#endif
