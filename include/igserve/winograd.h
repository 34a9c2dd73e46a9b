/*
 * winograd.h - 3x3 stride-1 convolutions by Winograd's minimal filtering
 * F(2x2, 3x3) (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural
 * Networks"): each 2x2 output tile costs 16 multiplications instead of 36,
 * done as 16 GEMMs  M[k] = U[k] x V[k]  over all tiles of the batch.
 *
 * Layout as in layers.h: activations CNHW.  U, the transformed filters,
 * is computed once at model load: [16][c_out][c_in].  The backward pass to
 * the input is a 3x3 convolution with the flipped, transposed filters, whose
 * transform is a permutation of U's, so it reuses U (GEMM with A^T).
 */
#ifndef IGSERVE_WINOGRAD_H
#define IGSERVE_WINOGRAD_H

#include <stddef.h>

#include "igserve/layers.h"

/* Does this convolution qualify (k 3, stride 1, pad 1)? */
int winograd_applies(const struct conv_shape *s);

/* Floats of U for a c_out x c_in filter bank. */
size_t winograd_filter_floats(int c_out, int c_in);

/* U [16][c_out][c_in] = G g G^T for each weight [c_out][c_in][3][3]. */
void winograd_filter_transform(float *U, const float *weight, int c_out, int c_in);

/* Floats of workspace the forward or backward call needs for shape s. */
size_t winograd_workspace_floats(const struct conv_shape *s);

/*
 * winograd_conv3x3_forward - as conv2d_forward (layers.h): out =
 * relu?(conv(in) + bias + residual); residual may alias out.
 */
void winograd_conv3x3_forward(float *out, const float *in, const float *U, const float *bias,
                              const float *residual, int relu, const struct conv_shape *s,
                              float *work);

/* winograd_conv3x3_backward_data - as conv2d_backward_data. */
void winograd_conv3x3_backward_data(float *d_in, const float *d_out, const float *U,
                                    const struct conv_shape *s, int accumulate, float *work);

/* One thread's share inside a team pass (team.h); both sync once inside. */
struct par;
void winograd_conv3x3_forward_par(float *out, const float *in, const float *U, const float *bias,
                                  const float *residual, int relu, const struct conv_shape *s,
                                  float *work, const struct par *p);
void winograd_conv3x3_backward_data_par(float *d_in, const float *d_out, const float *U,
                                        const struct conv_shape *s, int accumulate, float *work,
                                        const struct par *p);

#endif
