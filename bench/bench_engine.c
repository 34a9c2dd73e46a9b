/*
 * bench_engine.c - igserve's engine in process: forward latency at batch 1,
 * and Integrated-Gradients-shaped work (forward + backward over path points
 * in batches), on a model file.  Prints one JSON object.
 *
 *   bench_engine MODEL.safetensors [--forward-reps N] [--ig-points N] [--batch B] [--threads T]
 *                [--input-size S] [--ig-backward summed|per-point] [--precision P]
 *
 * --ig-backward: the path's gradients summed before the stem, as attribution
 * runs them (net_backward_path, the default), or each point's backward to
 * its pixels (net_backward), for comparison.
 * --precision: the convolutions' arithmetic, auto (default), fp32 or bf16x3
 * (conv.h).
 */
#include <cblas.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conv.h"
#include "model.h"

void openblas_set_num_threads(int);

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr,
		        "usage: bench_engine MODEL [--forward-reps N] [--ig-points N] "
		        "[--batch B] [--threads T] [--input-size S] "
		        "[--ig-backward summed|per-point] [--precision auto|fp32|bf16x3]\n");
		return 2;
	}
	int reps = 20, points = 50, batch = 4, threads = 2, input_size = 0;
	const char *ig_backward = "summed", *precision = "auto";
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--forward-reps"))
			reps = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--ig-points"))
			points = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--batch"))
			batch = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--threads"))
			threads = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--input-size"))
			input_size = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--ig-backward"))
			ig_backward = argv[i + 1];
		else if (!strcmp(argv[i], "--precision"))
			precision = argv[i + 1];
	}
	const bool summed = strcmp(ig_backward, "per-point") != 0;
	if (summed && strcmp(ig_backward, "summed") != 0) {
		fprintf(stderr, "bench_engine: --ig-backward is summed or per-point, not %s\n",
		        ig_backward);
		return 2;
	}
	/* OpenMP splits every layer; OpenBLAS (the classifier only) runs single-threaded. */
	openblas_set_num_threads(1);
	struct igs_error err = {0};
	const int arith = conv_precision_parse(precision);
	if (arith < 0) {
		fprintf(stderr, "bench_engine: --precision is auto, fp32 or bf16x3, not %s\n",
		        precision);
		return 2;
	}
	const struct model_options opts = {.precision = (enum conv_precision)arith};
	struct model *m = NULL;
	if (model_open(&m, argv[1], &opts, &err) < 0) {
		fprintf(stderr, "bench_engine: %s\n", err.message);
		return 1;
	}
	/* Small inputs keep bench/run --quick fast; 0 keeps the model's 224. */
	if (input_size > 0 && model_set_input_size(m, input_size, &err) < 0) {
		fprintf(stderr, "bench_engine: %s\n", err.message);
		model_close(&m);
		return 1;
	}
	const struct model_info *info = model_get_info(m);
	const int S = info->input_size, classes = info->classes;
	const size_t per_image = (size_t)S * S * 3;
	struct net_workspace *ws1 = NULL, *wsb = NULL;
	double t_prepare = now();
	if (net_workspace_open(&ws1, m, 1, &err) < 0 ||
	    net_workspace_open(&wsb, m, batch, &err) < 0 ||
	    net_workspace_set_threads(ws1, threads, &err) < 0 ||
	    net_workspace_set_threads(wsb, threads, &err) < 0 ||
	    /* Kernels for every batch size the runs use are compiled up front,
	     * as the server does at startup. */
	    net_workspace_prepare(wsb, batch, &err) < 0 ||
	    net_workspace_prepare(wsb, 1, &err) < 0 ||
	    (points % batch && net_workspace_prepare(wsb, points % batch, &err) < 0)) {
		fprintf(stderr, "bench_engine: %s\n", err.message);
		return 1;
	}
	t_prepare = now() - t_prepare;
	float *pixels = malloc(per_image * batch * sizeof(float));
	float *grad = malloc(per_image * batch * sizeof(float));
	float *logits = malloc((size_t)classes * batch * sizeof(float));
	float *d_logits = calloc((size_t)classes * batch, sizeof(float));
	srand(1);
	for (size_t i = 0; i < per_image * batch; i++)
		pixels[i] = (float)(rand() % 256);

	double *times = malloc((size_t)(reps > 0 ? reps : 1) * sizeof(double));
	net_infer(ws1, pixels, 1, logits); /* warm up */
	for (int r = 0; r < reps; r++) {
		double t0 = now();
		net_infer(ws1, pixels, 1, logits);
		times[r] = (now() - t0) * 1e3;
	}
	qsort(times, (size_t)reps, sizeof(double), cmp_double);
	double forward_median = reps ? times[reps / 2] : 0;

	/* IG-shaped: `points` path points from a gray image to the input,
	 * forward + backward, `batch` at a time, by position as attribution
	 * runs them (net_forward_path). */
	for (int i = 0; i < batch; i++)
		d_logits[(size_t)i * classes] = 1;
	float *gray = malloc(per_image * sizeof(float)), *alpha = malloc(batch * sizeof(float));
	float *weight = malloc(batch * sizeof(float));
	double *sums = malloc(2 * batch * sizeof(double));
	for (size_t i = 0; i < per_image; i++)
		gray[i] = 127.5f;
	double t0 = now();
	net_path_start(wsb, pixels, gray);
	for (int done = 0; done < points; done += batch) {
		int n = points - done < batch ? points - done : batch;
		for (int i = 0; i < n; i++) {
			alpha[i] = (float)(done + i + 0.5) / (float)points;
			weight[i] = 1.0f / (float)points;
		}
		net_forward_path(wsb, alpha, n, logits);
		if (summed)
			net_backward_path(wsb, d_logits, weight, sums);
		else
			net_backward(wsb, d_logits, grad);
	}
	if (summed)
		net_path_gradient(wsb, grad);
	double ig_ms = (now() - t0) * 1e3;
	free(gray);
	free(alpha);
	free(weight);
	free(sums);
	printf("{\"arch\": \"%s\", \"precision\": \"%s\", \"input_size\": %d, \"threads\": %d, "
	       "\"forward_batch1_ms_median\": %.2f, "
	       "\"ig_points\": %d, \"ig_batch\": %d, \"ig_backward\": \"%s\", \"ig_ms\": %.1f, "
	       "\"workspace_mib\": %.1f, \"prepare_ms\": %.0f}\n",
	       info->arch, conv_precision_name(info->precision), S, threads, forward_median, points, batch,
	       ig_backward, ig_ms, (double)net_workspace_bytes(wsb) / (1 << 20), t_prepare * 1e3);
	free(times);
	free(pixels);
	free(grad);
	free(logits);
	free(d_logits);
	net_workspace_close(&ws1);
	net_workspace_close(&wsb);
	model_close(&m);
	return 0;
}
