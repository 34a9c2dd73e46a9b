/*
 * model.h - a ResNet resident in memory, and the passes that run it.
 *
 * A `struct model` is loaded once from a .safetensors file or a TensorFlow
 * checkpoint (architecture
 * detected from names and shapes, BatchNorm folded into the convolutions
 * where it can be) and is read-only afterwards: any number of threads can
 * run it at once, each with its own `struct net_workspace`.
 *
 * The network's input is pixel space: [n][size][size][3] floats in 0..255,
 * HWC, RGB.  Normalization ((p/255 - mean) / std) is the network's first
 * layer, so gradients come back in pixel space too, as Integrated Gradients
 * defines them.
 */
#ifndef IGSERVE_MODEL_H
#define IGSERVE_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "conv.h"
#include "error.h"

enum model_family { FAMILY_TORCHVISION, FAMILY_TIMM_RESNETV2, FAMILY_TENSORFLOW };
enum block_kind { BLOCK_BASIC, BLOCK_BOTTLENECK };

#define MODEL_MAX_STAGES 8

struct model_info {
	enum model_family family;
	enum block_kind block;
	char arch[48];           /* "resnet50", "resnetv2_50", "resnet18", or "resnet-custom" */
	const char *family_name; /* "torchvision", "timm_resnetv2" or "tensorflow" */
	int depth;               /* 18, 34, 50, 101, 152, or the layer count of a custom one */
	int stages;
	int blocks[MODEL_MAX_STAGES];
	int widths[MODEL_MAX_STAGES]; /* output channels of each stage */
	int stem_width;
	int classes;
	int features;          /* channels into the classifier */
	int input_size;        /* 224 */
	float mean[3], std[3]; /* on the 0..1 scale */
	char sha256[65];       /* of the weights file */
	char path[4096];
	size_t parameters; /* count after folding */
	enum conv_precision precision; /* the convolutions' arithmetic (resolved) */
};

struct model;

/* How to load a model; all zero is the default. */
struct model_options {
	enum conv_precision precision; /* AUTO: bf16x3 where the CPU has AMX, else fp32 */
};

/*
 * model_open - read `path`, detect the architecture, fold BatchNorm and
 * pack the convolutions in `opt`'s arithmetic (NULL: the defaults).  The
 * file is not kept open.  On failure returns IGS_ERR_IO, IGS_ERR_FORMAT,
 * IGS_ERR_MODEL or IGS_ERR_BAD_OPTION (a precision this CPU lacks) with a
 * message naming the file and the problem.
 */
int model_open(struct model **out, const char *path, const struct model_options *opt,
               struct igs_error *err);
void model_close(struct model **m);
const struct model_info *model_get_info(const struct model *m);

/* Override the family's default normalization (0..1 scale; std > 0). */
/* Run the network at another square input size (>= 32; tests use small
 * inputs).  Default 224. */
int model_set_input_size(struct model *m, int size, struct igs_error *err);

int model_set_normalization(struct model *m, const float mean[3], const float std[3],
                            struct igs_error *err);

/*
 * A workspace holds what one batch's backward pass needs of its forward
 * (ReLU masks, max-pool argmax), the activation and gradient buffers, and
 * the convolution kernels compiled for each batch size used.  Create it once
 * per worker; it serves any batch size up to max_batch.  Owned by one thread
 * at a time.
 */
struct net_workspace;

int net_workspace_open(struct net_workspace **out, const struct model *m, int max_batch,
                         struct igs_error *err);
void net_workspace_close(struct net_workspace **ws);
/*
 * Run each pass on `threads` OpenMP threads (the calling thread's team; each
 * calling thread has its own).  Default 1.  Changing it drops the kernels
 * prepared for the old count.  OpenBLAS (only the classifier's GEMM) should
 * then be single-threaded.
 */
int net_workspace_set_threads(struct net_workspace *ws, int threads, struct igs_error *err);
int net_workspace_threads(const struct net_workspace *ws);

/*
 * net_workspace_prepare - create the convolution kernels for batches of n
 * now (oneDNN compiles them for each shape), so the first request of that
 * size does not pay for it.  net_forward does this itself when needed.
 * Call it on the thread that will run the passes.
 */
int net_workspace_prepare(struct net_workspace *ws, int n, struct igs_error *err);

/*
 * Return the workspace's physical pages to the system (its contents become
 * zeros; the next pass touches them again).  For after large jobs, so an
 * idle worker does not hold a full batch's buffers.
 */
void net_workspace_release(struct net_workspace *ws);

/*
 * net_workspace_set_yield - `fn(ctx)` is called between residual blocks of
 * every forward and backward pass on `ws` (NULL: never), on the pass's own
 * thread and outside any parallel region: a caller can run short work of
 * its own there, such as a waiting prediction on another workspace.  It
 * must not touch `ws`.
 */
void net_workspace_set_yield(struct net_workspace *ws, void (*fn)(void *ctx), void *ctx);

/* Bytes the workspace holds (for memory budgets and /metrics). */
size_t net_workspace_bytes(const struct net_workspace *ws);
/* Bytes a workspace for `batch` images would take, without allocating. */
size_t net_workspace_bytes_for(const struct model *m, int batch);

/*
 * net_forward - logits [n][classes] for pixels [n][size][size][3].
 * Keeps what a following net_backward needs (ReLU masks, max-pool argmax).
 */
int net_forward(struct net_workspace *ws, const float *pixels, int n, float *logits);

/* net_infer - the same logits, keeping nothing for net_backward (faster). */
int net_infer(struct net_workspace *ws, const float *pixels, int n, float *logits);

/*
 * net_constant_logits - logits [classes] of one image whose every pixel
 * value is `value` (a constant baseline: gray, black, white), computed by
 * net_infer the first time and kept in the workspace (the last three
 * values), since every attribution from that baseline asks for them.  Like
 * net_infer it leaves nothing for a net_backward.
 */
int net_constant_logits(struct net_workspace *ws, float value, float *logits);

/*
 * Path points (Integrated Gradients).  The stem convolution and the input
 * normalization before it are affine, so on the straight path
 * x' + a (x - x') the stem's output is (1 - a) s(x') + a s(x):
 * net_path_start computes s(x) and s(x') once, and net_forward_path runs
 * n points from their positions a alone, skipping the stem convolution.
 * The logits and a following net_backward are net_forward's on the
 * interpolated pixels, up to float rounding.  The ends stay valid until the
 * next net_path_start or net_workspace_release; other passes on the
 * workspace in between do not disturb them.
 */
int net_path_start(struct net_workspace *ws, const float *x, const float *baseline);
int net_forward_path(struct net_workspace *ws, const float *alpha, int n, float *logits);

/*
 * net_backward - gradient of sum_i sum_j d_logits[i][j] * logits[i][j]
 * with respect to the pixels of the last net_forward or net_forward_path
 * on `ws` (after a
 * net_infer, or none, it returns IGS_ERR_BAD_OPTION):
 * grad_pixels [n][size][size][3].  A one-hot d_logits row gives
 * dF_t/dx for class t.
 */
int net_backward(struct net_workspace *ws, const float *d_logits, float *grad_pixels);

/*
 * The path's gradients summed before the stem (IG).  The stem convolution
 * and the normalization are affine in the pixels, so the weighted sum of the
 * points' pixel gradients is the stem's backward of the weighted sum of
 * their stem-output gradients: one backward of one image per path instead
 * of one per point.
 *
 * net_backward_path - after net_forward_path of n points, their backward
 * down to the stem's output, adding weight[i] times point i's gradient
 * there into a sum the workspace keeps, and writing for point i
 *   sums[2i]     = sum_j dF_i/dx_j                (over every pixel value)
 *   sums[2i + 1] = sum_j (x_j - x'_j) dF_i/dx_j   (dF_i/dalpha)
 * where F_i = sum_c d_logits[i][c] logit_c, as net_backward.
 * net_path_gradient - grad_pixels [size][size][3] = the sum's pixel
 * gradient, sum_i weight_i dF_i/dx; the sum starts over from zero.  It also
 * starts over at net_path_start.
 */
int net_backward_path(struct net_workspace *ws, const float *d_logits, const float *weight,
                      double *sums);
int net_path_gradient(struct net_workspace *ws, float *grad_pixels);

/*
 * Several sums over one path (several targets, each with its own
 * d_logits): net_path_use_sum makes the following net_backward_path and
 * net_path_gradient add into and read (then zero) `sum`, caller-owned and
 * zeroed, net_path_sum_count floats; NULL goes back to the workspace's
 * own, as does net_path_start.
 */
size_t net_path_sum_count(const struct net_workspace *ws);
void net_path_use_sum(struct net_workspace *ws, float *sum);

#endif
