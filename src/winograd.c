/*
 * winograd.c - F(2x2, 3x3) convolution: input transform, 16 GEMMs, output
 * transform (see winograd.h).
 *
 * With d a 4x4 input tile, g a 3x3 filter and
 *   B^T = [1  0 -1  0]   G = [ 1    0    0 ]   A^T = [1  1  1  0]
 *         [0  1  1  0]       [ 1/2  1/2  1/2]         [0  1 -1 -1]
 *         [0 -1  1  0]       [ 1/2 -1/2  1/2]
 *         [0  1  0 -1]       [ 0    0    1 ]
 * the 2x2 output tile is  Y = A^T [ (G g G^T) .* (B^T d B) ] A.
 * Summed over input channels, the elementwise product becomes, for each of
 * the 16 positions k, a GEMM  M[k][c_out][tile] = U[k][c_out][c_in] V[k][c_in][tile].
 */
#include "igserve/winograd.h"
#include "igserve/team.h"

#include <cblas.h>
#include <stdbool.h>
#include <string.h>

/* Widest row input_transform's band buffers hold; wider inputs go to im2col. */
#define WINOGRAD_MAX_WIDTH 1024

int winograd_applies(const struct conv_shape *s)
{
	return s->k == 3 && s->stride == 1 && s->pad == 1 && s->w_in <= WINOGRAD_MAX_WIDTH;
}

size_t winograd_filter_floats(int c_out, int c_in)
{
	return (size_t)16 * c_out * c_in;
}

void winograd_filter_transform(float *U, const float *weight, int c_out, int c_in)
{
	const size_t plane = (size_t)c_out * c_in;
	for (int o = 0; o < c_out; o++) {
		for (int i = 0; i < c_in; i++) {
			const float *g = weight + ((size_t)o * c_in + i) * 9;
			float t[4][3]; /* G g */
			for (int c = 0; c < 3; c++) {
				t[0][c] = g[c];
				t[1][c] = 0.5f * (g[c] + g[3 + c] + g[6 + c]);
				t[2][c] = 0.5f * (g[c] - g[3 + c] + g[6 + c]);
				t[3][c] = g[6 + c];
			}
			for (int r = 0; r < 4; r++) {
				float u[4] = {t[r][0], 0.5f * (t[r][0] + t[r][1] + t[r][2]),
				              0.5f * (t[r][0] - t[r][1] + t[r][2]), t[r][2]};
				for (int c = 0; c < 4; c++)
					U[(size_t)(r * 4 + c) * plane + (size_t)o * c_in + i] = u[c];
			}
		}
	}
}

static size_t tile_count(const struct conv_shape *s)
{
	return (size_t)s->n * ((s->h_out + 1) / 2) * ((s->w_out + 1) / 2);
}

size_t winograd_workspace_floats(const struct conv_shape *s)
{
	return 16 * (size_t)(s->c_in + s->c_out) * tile_count(s);
}

/*
 * input_transform - V[k][c][t] = (B^T d B)[k] for every 4x4 tile d of
 * `in` [channels][n][h][w], tiles stepping by 2 from (-1, -1); channels
 * [c_lo, c_hi) and tile rows [r_lo, r_hi) of the n * ceil(h/2) rows.
 *
 * Done a band of tiles at a time: the 4 input rows of a tile row are copied
 * with their zero padding, B^T is applied down the columns (contiguous,
 * vectorizes), then B across each tile, writing each of the 16 planes as a
 * contiguous run.
 */
static void input_transform(float *restrict V, const float *restrict in, int channels, int n,
                            int h, int w, int c_lo, int c_hi, int r_lo, int r_hi)
{
	const int th = (h + 1) / 2, tw = (w + 1) / 2;
	const int wp = 2 * tw + 2; /* padded band width: columns -1 .. 2*tw */
	const size_t tiles = (size_t)n * th * tw;
	const size_t kstride = (size_t)channels * tiles;
	float band[4][WINOGRAD_MAX_WIDTH + 4], t[4][WINOGRAD_MAX_WIDTH + 4];
	for (int c = c_lo; c < c_hi; c++) {
		for (int tile_row = r_lo; tile_row < r_hi; tile_row++) {
			const int b = tile_row / th, ty = tile_row % th;
			const float *img = in + ((size_t)c * n + b) * h * w;
			float *v = V + (size_t)c * tiles + (size_t)b * th * tw;
			const int y0 = 2 * ty - 1;
			for (int r = 0; r < 4; r++) {
				const int y = y0 + r;
				band[r][0] = 0.0f;
				if (y >= 0 && y < h)
					memcpy(&band[r][1], img + (size_t)y * w, (size_t)w * sizeof(float));
				else
					memset(&band[r][1], 0, (size_t)w * sizeof(float));
				for (int x = w + 1; x < wp; x++)
					band[r][x] = 0.0f;
			}
			for (int x = 0; x < wp; x++) { /* B^T down the columns */
				t[0][x] = band[0][x] - band[2][x];
				t[1][x] = band[1][x] + band[2][x];
				t[2][x] = band[2][x] - band[1][x];
				t[3][x] = band[1][x] - band[3][x];
			}
			float *row = v + (size_t)ty * tw;
			for (int r = 0; r < 4; r++) { /* B across each tile */
				const float *tr = t[r];
				float *v0 = row + (size_t)(r * 4) * kstride, *v1 = v0 + kstride,
				      *v2 = v1 + kstride, *v3 = v2 + kstride;
				for (int tx = 0; tx < tw; tx++) {
					const float a0 = tr[2 * tx], a1 = tr[2 * tx + 1],
					            a2 = tr[2 * tx + 2], a3 = tr[2 * tx + 3];
					v0[tx] = a0 - a2;
					v1[tx] = a1 + a2;
					v2[tx] = a2 - a1;
					v3[tx] = a1 - a3;
				}
			}
		}
	}
}

/*
 * output_transform - out[c][b][y][x] = relu?((A^T m A) + bias[c] + residual)
 * from M[k][c][t]; residual may alias out.
 */
static void output_transform(float *out, const float *restrict M, const float *bias,
                             const float *residual, int relu, int channels, int n, int h, int w,
                             int c_lo, int c_hi, int r_lo, int r_hi)
{
	const int th = (h + 1) / 2, tw = (w + 1) / 2;
	const size_t tiles = (size_t)n * th * tw;
	const size_t kstride = (size_t)channels * tiles;
	for (int c = c_lo; c < c_hi; c++) {
		const float b0 = bias ? bias[c] : 0.0f;
		for (int tile_row = r_lo; tile_row < r_hi; tile_row++) {
			const int b = tile_row / th, ty = tile_row % th;
			const size_t base = ((size_t)c * n + b) * h * w;
			const float *m = M + (size_t)c * tiles + (size_t)b * th * tw;
			for (int tx = 0; tx < tw; tx++) {
				const float *mt = m + (size_t)ty * tw + tx;
				float s[2][4]; /* A^T m */
				for (int q = 0; q < 4; q++) {
					float m0 = mt[(size_t)q * kstride];
					float m1 = mt[(size_t)(4 + q) * kstride];
					float m2 = mt[(size_t)(8 + q) * kstride];
					float m3 = mt[(size_t)(12 + q) * kstride];
					s[0][q] = m0 + m1 + m2;
					s[1][q] = m1 - m2 - m3;
				}
				for (int r = 0; r < 2; r++) {
					const int y = 2 * ty + r;
					if (y >= h)
						break;
					float y2[2] = {s[r][0] + s[r][1] + s[r][2],
					               s[r][1] - s[r][2] - s[r][3]};
					for (int q = 0; q < 2; q++) {
						const int x = 2 * tx + q;
						if (x >= w)
							break;
						const size_t at = base + (size_t)y * w + x;
						float v = y2[q] + b0;
						if (residual)
							v += residual[at];
						out[at] = relu && v < 0.0f ? 0.0f : v;
					}
				}
			}
		}
	}
}

/*
 * Two ways to share a convolution in a team: by output channels (each
 * thread transforms some input channels, all meet, each multiplies its rows
 * of U) or by tiles (each thread transforms, multiplies and writes back its
 * own tiles, no meeting).  Every thread packs the whole of the operand it
 * does not split, so split the larger one: tiles when they outnumber the
 * output channels (early layers, batches), channels otherwise.
 */
static bool split_by_tiles(size_t tiles, int out_channels)
{
	return tiles >= (size_t)out_channels;
}

void winograd_conv3x3_forward_par(float *out, const float *in, const float *U, const float *bias,
                                  const float *residual, int relu, const struct conv_shape *s,
                                  float *work, const struct par *p)
{
	/* in [c_in][n][h][w] -> out [c_out][n][h][w] (stride 1, pad 1) */
	const size_t tiles = tile_count(s);
	const int rows = s->n * ((s->h_out + 1) / 2), tw = (s->w_out + 1) / 2;
	float *V = work, *M = work + 16 * (size_t)s->c_in * tiles;
	int c_lo = 0, c_hi = s->c_out, r_lo = 0, r_hi = rows;
	if (split_by_tiles(tiles, s->c_out)) {
		par_range(p, rows, &r_lo, &r_hi);
		input_transform(V, in, s->c_in, s->n, s->h_in, s->w_in, 0, s->c_in, r_lo, r_hi);
	} else {
		int lo, hi;
		par_range(p, s->c_in, &lo, &hi);
		input_transform(V, in, s->c_in, s->n, s->h_in, s->w_in, lo, hi, 0, rows);
		par_sync(p); /* every GEMM reads all input channels */
		par_range(p, s->c_out, &c_lo, &c_hi);
	}
	if (c_hi <= c_lo || r_hi <= r_lo)
		return;
	const size_t t0 = (size_t)r_lo * tw, nt = (size_t)(r_hi - r_lo) * tw;
	for (int k = 0; k < 16; k++)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c_hi - c_lo, (int)nt, s->c_in,
		            1.0f, U + (size_t)k * s->c_out * s->c_in + (size_t)c_lo * s->c_in, s->c_in,
		            V + (size_t)k * s->c_in * tiles + t0, (int)tiles, 0.0f,
		            M + (size_t)k * s->c_out * tiles + (size_t)c_lo * tiles + t0, (int)tiles);
	output_transform(out, M, bias, residual, relu, s->c_out, s->n, s->h_out, s->w_out, c_lo, c_hi,
	                 r_lo, r_hi);
}

void winograd_conv3x3_forward(float *out, const float *in, const float *U, const float *bias,
                              const float *residual, int relu, const struct conv_shape *s,
                              float *work)
{
	winograd_conv3x3_forward_par(out, in, U, bias, residual, relu, s, work, NULL);
}

void winograd_conv3x3_backward_data_par(float *d_in, const float *d_out, const float *U,
                                        const struct conv_shape *s, int accumulate, float *work,
                                        const struct par *p)
{
	/*
	 * d_out [c_out][n][h][w] -> d_in [c_in][n][h][w]: a 3x3 convolution
	 * with W'[i][o] = flip(W[o][i]).  Since G J = P G (P swaps rows 0 and
	 * 3), its transform is U'[a][b] = U[P a][P b]^T: same U, transposed.
	 */
	static const int P[4] = {3, 1, 2, 0};
	const size_t tiles = tile_count(s);
	const int rows = s->n * ((s->h_out + 1) / 2), tw = (s->w_out + 1) / 2;
	float *V = work, *M = work + 16 * (size_t)s->c_out * tiles;
	int c_lo = 0, c_hi = s->c_in, r_lo = 0, r_hi = rows;
	if (split_by_tiles(tiles, s->c_in)) {
		par_range(p, rows, &r_lo, &r_hi);
		input_transform(V, d_out, s->c_out, s->n, s->h_out, s->w_out, 0, s->c_out, r_lo, r_hi);
	} else {
		int lo, hi;
		par_range(p, s->c_out, &lo, &hi);
		input_transform(V, d_out, s->c_out, s->n, s->h_out, s->w_out, lo, hi, 0, rows);
		par_sync(p);
		par_range(p, s->c_in, &c_lo, &c_hi);
	}
	if (c_hi <= c_lo || r_hi <= r_lo)
		return;
	const size_t t0 = (size_t)r_lo * tw, nt = (size_t)(r_hi - r_lo) * tw;
	for (int a = 0; a < 4; a++) {
		for (int b = 0; b < 4; b++) {
			const int k = a * 4 + b, kp = P[a] * 4 + P[b];
			/* rows [c_lo, c_hi) of U[kp]^T are its columns [c_lo, c_hi) */
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c_hi - c_lo, (int)nt,
			            s->c_out, 1.0f, U + (size_t)kp * s->c_out * s->c_in + c_lo, s->c_in,
			            V + (size_t)k * s->c_out * tiles + t0, (int)tiles, 0.0f,
			            M + (size_t)k * s->c_in * tiles + (size_t)c_lo * tiles + t0,
			            (int)tiles);
		}
	}
	output_transform(d_in, M, NULL, accumulate ? d_in : NULL, 0, s->c_in, s->n, s->h_in, s->w_in,
	                 c_lo, c_hi, r_lo, r_hi);
}

void winograd_conv3x3_backward_data(float *d_in, const float *d_out, const float *U,
                                    const struct conv_shape *s, int accumulate, float *work)
{
	winograd_conv3x3_backward_data_par(d_in, d_out, U, s, accumulate, work, NULL);
}
