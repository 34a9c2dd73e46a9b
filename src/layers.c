/*
 * layers.c - the network's kernels (see include/igserve/layers.h).
 *
 * Every activation is CNHW.  Convolutions are im2col + one sgemm over the
 * whole batch (darknet's scheme, with the batch folded into the GEMM's N);
 * backward to the input is the transposed sgemm + col2im.  Nothing here
 * allocates; buffers come from the caller.
 *
 * The *_par variants do one thread's share of a layer inside a team pass
 * (team.h): each thread takes a block of channels.  A convolution gathers
 * its im2col rows by input channel, meets the team once, then runs the GEMM
 * for its output channels; the caller syncs before the next layer.
 */
#include "igserve/layers.h"
#include "igserve/team.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

/* ---------------------------------------------------------------- shapes */

void conv_shape_finish(struct conv_shape *s)
{
	s->h_out = (s->h_in + 2 * s->pad - s->k) / s->stride + 1;
	s->w_out = (s->w_in + 2 * s->pad - s->k) / s->stride + 1;
}

void pool_shape_finish(struct pool_shape *s)
{
	s->h_out = (s->h_in + 2 * s->pad - s->k) / s->stride + 1;
	s->w_out = (s->w_in + 2 * s->pad - s->k) / s->stride + 1;
}

/* A 1x1 stride-1 unpadded convolution is a plain GEMM on its input. */
static int conv_is_pointwise(const struct conv_shape *s)
{
	return s->k == 1 && s->stride == 1 && s->pad == 0;
}

size_t conv2d_workspace_floats(const struct conv_shape *s)
{
	if (conv_is_pointwise(s))
		return 0;
	return (size_t)s->c_in * s->k * s->k * s->n * s->h_out * s->w_out;
}

/*
 * One kernel tap (ky, kx) of a convolution: output pixel (oy, ox) reads
 * input pixel (oy*stride + dy, ox*stride + dx), which is inside the image
 * exactly for oy in [oy_lo, oy_hi) and ox in [ox_lo, ox_hi).  Clamping these
 * ranges once keeps the inner loops free of per-element padding tests.
 */
struct tap {
	int dy, dx;
	int oy_lo, oy_hi, ox_lo, ox_hi;
};

/* Outputs [*lo, *hi) of `size_out` whose input o*stride + d lies in [0, size_in). */
static void tap_range(int d, int stride, int size_in, int size_out, int *lo, int *hi)
{
	int a = -d;          /* o*stride >= a */
	int b = size_in - d; /* o*stride <  b */
	int l = a <= 0 ? 0 : (a + stride - 1) / stride;
	int h = b <= 0 ? 0 : (b + stride - 1) / stride;
	if (h > size_out)
		h = size_out;
	if (l > h)
		l = h;
	*lo = l;
	*hi = h;
}

static struct tap conv_tap(const struct conv_shape *s, int ky, int kx)
{
	struct tap t = {.dy = ky - s->pad, .dx = kx - s->pad};
	tap_range(t.dy, s->stride, s->h_in, s->h_out, &t.oy_lo, &t.oy_hi);
	tap_range(t.dx, s->stride, s->w_in, s->w_out, &t.ox_lo, &t.ox_hi);
	return t;
}

/* ---------------------------------------------------------------- im2col */

/* One tap of one image, output rows [row_a, row_z): dst [h_out][w_out]
 * gathered from src [h_in][w_in], zero where the tap reads padding. */
static void im2col_tap(float *restrict dst, const float *restrict src, const struct conv_shape *s,
                       const struct tap *t, int row_a, int row_z)
{
	// src is (Hin, Win), dst is (Hout, Wout)
	const int st = s->stride, wi = s->w_in, wo = s->w_out;
	const int len = t->ox_hi - t->ox_lo;
	/* rows that read the image: [v_lo, v_hi) within [row_a, row_z) */
	const int v_lo = t->oy_lo < row_a ? row_a : (t->oy_lo > row_z ? row_z : t->oy_lo);
	const int v_hi = t->oy_hi < v_lo ? v_lo : (t->oy_hi > row_z ? row_z : t->oy_hi);
	memset(dst + (size_t)row_a * wo, 0, (size_t)(v_lo - row_a) * wo * sizeof(float));
	for (int oy = v_lo; oy < v_hi; oy++) {
		float *drow = dst + (size_t)oy * wo;
		for (int ox = 0; ox < t->ox_lo; ox++)
			drow[ox] = 0.0f;
		if (len > 0) {
			/* srow[j * st] feeds output column ox_lo + j */
			const float *srow =
			    src + (size_t)(oy * st + t->dy) * wi + (t->ox_lo * st + t->dx);
			float *d = drow + t->ox_lo;
			if (st == 1) {
				memcpy(d, srow, (size_t)len * sizeof(float));
			} else {
				for (int j = 0; j < len; j++)
					d[j] = srow[(size_t)j * st];
			}
		}
		for (int ox = t->ox_hi; ox < wo; ox++)
			drow[ox] = 0.0f;
	}
	memset(dst + (size_t)v_hi * wo, 0, (size_t)(row_z - v_hi) * wo * sizeof(float));
}

/*
 * im2col - col [c_in*k*k][n][h_out][w_out] from in [c_in][n][h_in][w_in]:
 *   col[(ci*k + ky)*k + kx][b][oy][ox] = in[ci][b][oy*s - pad + ky][ox*s - pad + kx]
 * or 0 where that pixel is padding; for channels [c_lo, c_hi) and output
 * rows [r_lo, r_hi) of the n*h_out rows (image b's row oy is b*h_out + oy).
 */
static void im2col(float *restrict col, const float *restrict in, const struct conv_shape *s,
                   int c_lo, int c_hi, int r_lo, int r_hi)
{
	// in is (Cin, N, Hin, Win), col is (Cin*k*k, N*Hout*Wout)
	const size_t in_plane = (size_t)s->h_in * s->w_in, out_plane = (size_t)s->h_out * s->w_out;
	for (int ci = c_lo; ci < c_hi; ci++) {
		for (int ky = 0; ky < s->k; ky++) {
			for (int kx = 0; kx < s->k; kx++) {
				struct tap t = conv_tap(s, ky, kx);
				size_t row = ((size_t)ci * s->k + ky) * s->k + kx;
				for (int b = 0; b < s->n; b++) {
					int a = r_lo - b * s->h_out, z = r_hi - b * s->h_out;
					a = a < 0 ? 0 : a;
					z = z > s->h_out ? s->h_out : z;
					if (a < z)
						im2col_tap(col + (row * s->n + b) * out_plane,
						           in + ((size_t)ci * s->n + b) * in_plane, s, &t,
						           a, z);
				}
			}
		}
	}
}

/* One tap of one image, the adjoint of im2col_tap: dst [h_in][w_in] +=
 * src [h_out][w_out] scattered back; padding positions are dropped. */
static void col2im_tap(float *restrict dst, const float *restrict src, const struct conv_shape *s,
                       const struct tap *t)
{
	// src is (Hout, Wout), dst is (Hin, Win)
	const int st = s->stride, wi = s->w_in, wo = s->w_out;
	const int len = t->ox_hi - t->ox_lo;
	if (len <= 0)
		return; /* this tap only ever reads padding */
	for (int oy = t->oy_lo; oy < t->oy_hi; oy++) {
		/* drow[j * st] receives output column ox_lo + j */
		float *drow = dst + (size_t)(oy * st + t->dy) * wi + (t->ox_lo * st + t->dx);
		const float *srow = src + (size_t)oy * wo + t->ox_lo;
		if (st == 1) {
			for (int j = 0; j < len; j++)
				drow[j] += srow[j];
		} else {
			for (int j = 0; j < len; j++)
				drow[(size_t)j * st] += srow[j];
		}
	}
}

/* col2im - d_in [c_in][n][h_in][w_in] += the scatter of col [c_in*k*k][n][h_out][w_out]. */
static void col2im_add(float *restrict d_in, const float *restrict col, const struct conv_shape *s,
                       int c_lo, int c_hi)
{
	// col is (Cin*k*k, N*Hout*Wout), d_in is (Cin, N, Hin, Win); channels [c_lo, c_hi)
	const size_t in_plane = (size_t)s->h_in * s->w_in, out_plane = (size_t)s->h_out * s->w_out;
	for (int ci = c_lo; ci < c_hi; ci++) {
		for (int ky = 0; ky < s->k; ky++) {
			for (int kx = 0; kx < s->k; kx++) {
				struct tap t = conv_tap(s, ky, kx);
				size_t row = ((size_t)ci * s->k + ky) * s->k + kx;
				for (int b = 0; b < s->n; b++)
					col2im_tap(d_in + ((size_t)ci * s->n + b) * in_plane,
					           col + (row * s->n + b) * out_plane, s, &t);
			}
		}
	}
}

/* ----------------------------------------------------------- convolution */

/*
 * Sharing a GEMM C[M][N] = A[M][K] B[K][N] in a team: each thread takes
 * some rows of C (and packs all of B) or some columns (and packs all of A).
 * Split the larger one: columns when N >= M (early layers, batches),
 * rows otherwise (late layers, where the weights are the big operand).
 */
static bool split_by_columns(int rows, int cols)
{
	return cols >= rows;
}

void conv2d_forward_par(float *out, const float *in, const float *weight, const float *bias,
                        const float *residual, int relu, const struct conv_shape *s, float *col,
                        const struct par *p)
{
	// in is (Cin, N, Hin, Win), weight is (Cout, Cin*k*k), out is (Cout, N*Hout*Wout)
	// out = weight x col, col = im2col(in) (or in itself for a pointwise conv)
	const int kk = s->c_in * s->k * s->k;
	const int cols = s->n * s->h_out * s->w_out;
	const size_t plane = (size_t)cols;

	/* This thread: output channels [o_lo, o_hi) x columns [j_lo, j_hi). */
	int o_lo = 0, o_hi = s->c_out, r_lo = 0, r_hi = s->n * s->h_out;
	const float *b_mat = in;
	if (split_by_columns(s->c_out, cols)) {
		par_range(p, s->n * s->h_out, &r_lo, &r_hi);
		if (!conv_is_pointwise(s)) {
			im2col(col, in, s, 0, s->c_in, r_lo, r_hi);
			b_mat = col;
		}
	} else {
		if (!conv_is_pointwise(s)) {
			int c_lo, c_hi;
			par_range(p, s->c_in, &c_lo, &c_hi);
			im2col(col, in, s, c_lo, c_hi, 0, s->n * s->h_out);
			par_sync(p); /* every thread's GEMM reads all of col */
			b_mat = col;
		}
		par_range(p, s->c_out, &o_lo, &o_hi);
	}
	const int m = o_hi - o_lo;
	const size_t j_lo = (size_t)r_lo * s->w_out, j_hi = (size_t)r_hi * s->w_out;
	if (m <= 0 || j_hi <= j_lo)
		return;

	/* Pre-fill out with bias (+ residual) and let the GEMM add onto it
	 * (beta = 1).  OpenBLAS scales C by beta in a pass of its own whenever
	 * beta != 1, so beta = 0 would not save that pass anyway. */
	float beta = 0.0f;
	if (residual || bias) {
		for (int c = o_lo; c < o_hi; c++) {
			float *o = out + (size_t)c * plane;
			const float bc = bias ? bias[c] : 0.0f;
			if (residual && residual != out) {
				const float *r = residual + (size_t)c * plane;
				for (size_t i = j_lo; i < j_hi; i++)
					o[i] = r[i] + bc;
			} else if (residual) { /* aliases out: it is already there */
				for (size_t i = j_lo; i < j_hi; i++)
					o[i] += bc;
			} else {
				for (size_t i = j_lo; i < j_hi; i++)
					o[i] = bc;
			}
		}
		beta = 1.0f;
	}

	float *c_block = out + (size_t)o_lo * plane + j_lo;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, (int)(j_hi - j_lo), kk, 1.0f,
	            weight + (size_t)o_lo * kk, kk, b_mat + j_lo, cols, beta, c_block, cols);

	if (relu) {
		for (int c = 0; c < m; c++) {
			float *o = c_block + (size_t)c * plane;
			for (size_t i = 0; i < j_hi - j_lo; i++)
				o[i] = o[i] > 0.0f ? o[i] : 0.0f;
		}
	}
}

void conv2d_forward(float *out, const float *in, const float *weight, const float *bias,
                    const float *residual, int relu, const struct conv_shape *s, float *col)
{
	conv2d_forward_par(out, in, weight, bias, residual, relu, s, col, NULL);
}

void conv2d_backward_data_par(float *d_in, const float *d_out, const float *weight,
                              const struct conv_shape *s, int accumulate, float *col,
                              const struct par *p)
{
	// d_out is (Cout, N*Hout*Wout), weight is (Cout, Cin*k*k), d_in is (Cin, N, Hin, Win)
	// col = weight^T x d_out, then d_in (+)= col2im(col)
	const int m = s->c_out, kk = s->c_in * s->k * s->k, taps = s->k * s->k;
	const int cols = s->n * s->h_out * s->w_out;
	const bool pointwise = conv_is_pointwise(s);
	float *dst = pointwise ? d_in : col; /* the GEMM's C */
	const float beta = pointwise && accumulate ? 1.0f : 0.0f;
	int c_lo, c_hi;

	if (split_by_columns(kk, cols)) {
		int j_lo, j_hi;
		par_range(p, cols, &j_lo, &j_hi);
		if (j_hi > j_lo)
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, j_hi - j_lo, m, 1.0f,
			            weight, kk, d_out + j_lo, cols, beta, dst + j_lo, cols);
		if (pointwise)
			return;
		par_sync(p); /* col2im of a channel reads all of its columns */
		par_range(p, s->c_in, &c_lo, &c_hi);
	} else {
		/* This thread: input channels [c_lo, c_hi), i.e. rows c*k*k.. of col. */
		par_range(p, s->c_in, &c_lo, &c_hi);
		if (c_hi <= c_lo)
			return;
		const size_t first = (size_t)c_lo * taps;
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (c_hi - c_lo) * taps, cols, m,
		            1.0f, weight + first, kk, d_out, cols, beta, dst + first * (size_t)cols,
		            cols);
		if (pointwise)
			return;
	}
	if (c_hi <= c_lo)
		return;
	const size_t in_channel = (size_t)s->n * s->h_in * s->w_in;
	if (!accumulate)
		memset(d_in + (size_t)c_lo * in_channel, 0,
		       (size_t)(c_hi - c_lo) * in_channel * sizeof(float));
	col2im_add(d_in, col, s, c_lo, c_hi);
}

void conv2d_backward_data(float *d_in, const float *d_out, const float *weight,
                          const struct conv_shape *s, int accumulate, float *col)
{
	conv2d_backward_data_par(d_in, d_out, weight, s, accumulate, col, NULL);
}

/* ------------------------------------------------------------ elementwise */

void relu_backward_par(float *restrict d, const float *restrict out, size_t count,
                       const struct par *p)
{
	// d and out are (count)
	size_t lo, hi;
	par_range_size(p, count, &lo, &hi);
	for (size_t i = lo; i < hi; i++)
		d[i] = out[i] > 0.0f ? d[i] : 0.0f;
}

void relu_backward(float *restrict d, const float *restrict out, size_t count)
{
	relu_backward_par(d, out, count, NULL);
}

/* out may equal in (an in-place BatchNorm+ReLU): no restrict here. */
void affine_relu_forward_par(float *out, const float *in, const float *scale, const float *shift,
                             int channels, size_t plane, const struct par *p)
{
	// in and out are (C, plane), scale and shift are (C)
	int c_lo, c_hi;
	par_range(p, channels, &c_lo, &c_hi);
	for (int c = c_lo; c < c_hi; c++) {
		const float a = scale[c], b = shift[c];
		const float *x = in + (size_t)c * plane;
		float *y = out + (size_t)c * plane;
		for (size_t i = 0; i < plane; i++) {
			float v = x[i] * a + b;
			y[i] = v > 0.0f ? v : 0.0f;
		}
	}
}

void affine_relu_forward(float *out, const float *in, const float *scale, const float *shift,
                         int channels, size_t plane)
{
	affine_relu_forward_par(out, in, scale, shift, channels, plane, NULL);
}

/* d_in may equal d_out when not accumulating: no restrict on them. */
void affine_relu_backward_par(float *d_in, const float *d_out, const float *out,
                              const float *scale, int channels, size_t plane, int accumulate,
                              const struct par *p)
{
	// d_in, d_out and out are (C, plane), scale is (C)
	int c_lo, c_hi;
	par_range(p, channels, &c_lo, &c_hi);
	for (int c = c_lo; c < c_hi; c++) {
		const float a = scale[c];
		const float *g = d_out + (size_t)c * plane;
		const float *y = out + (size_t)c * plane;
		float *dx = d_in + (size_t)c * plane;
		if (accumulate) {
			for (size_t i = 0; i < plane; i++)
				dx[i] += y[i] > 0.0f ? g[i] * a : 0.0f;
		} else {
			for (size_t i = 0; i < plane; i++)
				dx[i] = y[i] > 0.0f ? g[i] * a : 0.0f;
		}
	}
}

void affine_relu_backward(float *d_in, const float *d_out, const float *out, const float *scale,
                          int channels, size_t plane, int accumulate)
{
	affine_relu_backward_par(d_in, d_out, out, scale, channels, plane, accumulate, NULL);
}

/* ---------------------------------------------------------------- pooling */

void maxpool_forward_par(float *restrict out, int32_t *restrict argmax, const float *restrict in,
                         const struct pool_shape *s, const struct par *par)
{
	// in is (C, N, Hin, Win), out and argmax are (C, N, Hout, Wout)
	const int k = s->k, st = s->stride, pad = s->pad;
	const int hi = s->h_in, wi = s->w_in, ho = s->h_out, wo = s->w_out;
	const size_t in_plane = (size_t)hi * wi, out_plane = (size_t)ho * wo;
	size_t p_lo, p_hi;
	par_range_size(par, (size_t)s->c * s->n, &p_lo, &p_hi);
	for (size_t p = p_lo; p < p_hi; p++) {
		const float *x = in + p * in_plane;
		float *y = out + p * out_plane;
		int32_t *am = argmax + p * out_plane;
		for (int oy = 0; oy < ho; oy++) {
			int y0 = oy * st - pad, y1 = y0 + k;
			y0 = y0 < 0 ? 0 : y0;
			y1 = y1 > hi ? hi : y1;
			for (int ox = 0; ox < wo; ox++) {
				int x0 = ox * st - pad, x1 = x0 + k;
				x0 = x0 < 0 ? 0 : x0;
				x1 = x1 > wi ? wi : x1;
				/* Padding is skipped, so it never wins.  A window
				 * that is all padding (pad >= k, which PyTorch
				 * refuses) yields -inf and argmax -1. */
				float best = -INFINITY;
				int32_t best_i = -1;
				if (y0 < y1 && x0 < x1) {
					size_t first = (size_t)y0 * wi + x0;
					best = x[first];
					best_i = (int32_t)(p * in_plane + first);
				}
				for (int iy = y0; iy < y1; iy++) {
					for (int ix = x0; ix < x1; ix++) {
						float v = x[(size_t)iy * wi + ix];
						/* Strict > keeps the first of equal values;
						 * a NaN wins once (propagates, as PyTorch). */
						if (v > best || (isnan(v) && !isnan(best))) {
							best = v;
							best_i = (int32_t)(p * in_plane +
							                   (size_t)iy * wi + ix);
						}
					}
				}
				y[(size_t)oy * wo + ox] = best;
				am[(size_t)oy * wo + ox] = best_i;
			}
		}
	}
}

void maxpool_forward(float *restrict out, int32_t *restrict argmax, const float *restrict in,
                     const struct pool_shape *s)
{
	maxpool_forward_par(out, argmax, in, s, NULL);
}

void maxpool_backward_par(float *restrict d_in, const float *restrict d_out,
                          const int32_t *restrict argmax, const struct pool_shape *s,
                          const struct par *p)
{
	// d_out and argmax are (C, N, Hout, Wout), d_in is (C, N, Hin, Win)
	// A window of plane q only reads plane q, so planes split cleanly.
	const size_t in_plane = (size_t)s->h_in * s->w_in, out_plane = (size_t)s->h_out * s->w_out;
	size_t lo, hi;
	par_range_size(p, (size_t)s->c * s->n, &lo, &hi);
	memset(d_in + lo * in_plane, 0, (hi - lo) * in_plane * sizeof(float));
	for (size_t i = lo * out_plane; i < hi * out_plane; i++)
		if (argmax[i] >= 0)
			d_in[argmax[i]] += d_out[i];
}

void maxpool_backward(float *restrict d_in, const float *restrict d_out,
                      const int32_t *restrict argmax, const struct pool_shape *s)
{
	maxpool_backward_par(d_in, d_out, argmax, s, NULL);
}

void avgpool_forward_par(float *restrict out, const float *restrict in, int c, int n, int hw,
                         const struct par *p)
{
	// in is (C, N, HW), out is (N, C)
	const float inv = 1.0f / (float)hw;
	int c_lo, c_hi;
	par_range(p, c, &c_lo, &c_hi);
	for (int ci = c_lo; ci < c_hi; ci++) {
		for (int b = 0; b < n; b++) {
			const float *x = in + ((size_t)ci * n + b) * hw;
			float sum = 0.0f;
			for (int i = 0; i < hw; i++)
				sum += x[i];
			out[(size_t)b * c + ci] = sum * inv;
		}
	}
}

void avgpool_forward(float *restrict out, const float *restrict in, int c, int n, int hw)
{
	avgpool_forward_par(out, in, c, n, hw, NULL);
}

void avgpool_backward_par(float *restrict d_in, const float *restrict d_out, int c, int n, int hw,
                          const struct par *p)
{
	// d_out is (N, C), d_in is (C, N, HW)
	const float inv = 1.0f / (float)hw;
	int c_lo, c_hi;
	par_range(p, c, &c_lo, &c_hi);
	for (int ci = c_lo; ci < c_hi; ci++) {
		for (int b = 0; b < n; b++) {
			float *dx = d_in + ((size_t)ci * n + b) * hw;
			const float g = d_out[(size_t)b * c + ci] * inv;
			for (int i = 0; i < hw; i++)
				dx[i] = g;
		}
	}
}

void avgpool_backward(float *restrict d_in, const float *restrict d_out, int c, int n, int hw)
{
	avgpool_backward_par(d_in, d_out, c, n, hw, NULL);
}

/* ----------------------------------------------------------------- linear */

void linear_forward(float *restrict out, const float *restrict in, const float *restrict weight,
                    const float *restrict bias, int n, int c, int classes)
{
	// in is (N, C), weight is (classes, C), out is (N, classes)
	float beta = 0.0f;
	if (bias) {
		for (int b = 0; b < n; b++)
			memcpy(out + (size_t)b * classes, bias, (size_t)classes * sizeof(float));
		beta = 1.0f;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, classes, c, 1.0f, in, c, weight, c,
	            beta, out, classes);
}

void linear_backward(float *restrict d_in, const float *restrict d_out,
                     const float *restrict weight, int n, int c, int classes)
{
	// d_out is (N, classes), weight is (classes, C), d_in is (N, C)
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, c, classes, 1.0f, d_out, classes,
	            weight, c, 0.0f, d_in, c);
}

/* ---------------------------------------------------------- preprocessing */

void normalize_forward_par(float *restrict out, const float *restrict pixels, int n, int h, int w,
                           const float mean[3], const float std[3], const struct par *p)
{
	// pixels is (N, H, W, 3) in 0..255, out is (3, N, H, W)
	const size_t plane = (size_t)n * h * w;
	size_t lo, hi;
	par_range_size(p, plane, &lo, &hi);
	for (int c = 0; c < 3; c++) {
		const float mc = mean[c], sc = std[c];
		float *y = out + (size_t)c * plane;
		for (size_t i = lo; i < hi; i++)
			y[i] = (pixels[i * 3 + c] / 255.0f - mc) / sc;
	}
}

void normalize_forward(float *restrict out, const float *restrict pixels, int n, int h, int w,
                       const float mean[3], const float std[3])
{
	normalize_forward_par(out, pixels, n, h, w, mean, std, NULL);
}

void normalize_backward_par(float *restrict d_pixels, const float *restrict d_out, int n, int h,
                            int w, const float std[3], const struct par *p)
{
	// d_out is (3, N, H, W), d_pixels is (N, H, W, 3)
	const size_t plane = (size_t)n * h * w;
	size_t lo, hi;
	par_range_size(p, plane, &lo, &hi);
	for (int c = 0; c < 3; c++) {
		const float g = 1.0f / (255.0f * std[c]);
		const float *d = d_out + (size_t)c * plane;
		for (size_t i = lo; i < hi; i++)
			d_pixels[i * 3 + c] = d[i] * g;
	}
}

void normalize_backward(float *restrict d_pixels, const float *restrict d_out, int n, int h, int w,
                        const float std[3])
{
	normalize_backward_par(d_pixels, d_out, n, h, w, std, NULL);
}
