/*
 * service.c - the resident service and the /predict path.
 *
 * bytes -> image_decode -> image_fit -> net_infer -> top-k predictions.
 * attribute.c continues from service_prepare_input for /attribute.
 */
#include "service_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "conv.h"
#include "image.h"
#include "labels.h"
#include "layers.h"
#include "threads.h"

#define DEFAULT_MEMORY_BUDGET ((size_t)1 << 30)
/* Path points per pass: 4 is as fast as 8 here (bench/README.md) with
 * half the workspace. */
#define MAX_BATCH_CAP 4

/* ===== opening ============================================================ */

/* A sibling labels.txt names the classes of a model that is not ImageNet's. */
static int open_labels(struct service *s, struct igs_error *err)
{
	const struct model_info *info = model_get_info(s->model);
	const char *path = s->cfg.labels_path;
	char sibling[4200];
	if (!path && info->classes != 1000 && info->classes != 1001) {
		const char *slash = strrchr(info->path, '/');
		int dir_len = slash ? (int)(slash - info->path + 1) : 0;
		snprintf(sibling, sizeof sibling, "%.*slabels.txt", dir_len, info->path);
		FILE *f = fopen(sibling, "r");
		if (f) {
			fclose(f);
			path = sibling;
		}
	}
	return labels_open(&s->labels, path, info->classes, err);
}

int service_open(struct service **out, const struct service_config *cfg, struct igs_error *err)
{
	*out = NULL;
	struct service *s = calloc(1, sizeof *s);
	if (!s)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory");
	s->cfg = *cfg;
	if (!s->cfg.memory_budget)
		s->cfg.memory_budget = DEFAULT_MEMORY_BUDGET;
	if (s->cfg.max_steps_cap <= 0)
		s->cfg.max_steps_cap = 4096;

	struct model_options mo = {.precision = CONV_PRECISION_AUTO};
	int rc = 0;
	if (cfg->precision) {
		rc = service_check_precision(cfg->precision, err);
		if (rc == 0)
			mo.precision = (enum conv_precision)conv_precision_parse(cfg->precision);
	}
	if (rc == 0)
		rc = model_open(&s->model, cfg->model_path, &mo, err);
	if (rc == 0 && cfg->input_size)
		rc = model_set_input_size(s->model, cfg->input_size, err);
	if (rc == 0 && cfg->custom_normalization)
		rc = model_set_normalization(s->model, cfg->mean, cfg->std, err);
	if (rc == 0)
		rc = open_labels(s, err);
	if (rc < 0) {
		service_close(&s);
		return rc;
	}

	/* The largest batch of path points whose workspace fits the budget. */
	if (cfg->max_batch > 0) {
		s->max_batch = cfg->max_batch;
	} else {
		s->max_batch = 1;
		for (int b = 2; b <= MAX_BATCH_CAP; b++)
			if (net_workspace_bytes_for(s->model, b) <= s->cfg.memory_budget)
				s->max_batch = b;
	}
	*out = s;
	return 0;
}

void service_close(struct service **sp)
{
	struct service *s = *sp;
	if (!s)
		return;
	labels_close(&s->labels);
	model_close(&s->model);
	free(s);
	*sp = NULL;
}

void service_get_info(const struct service *s, struct service_info *out)
{
	const struct model_info *info = model_get_info(s->model);
	*out = (struct service_info){.arch = info->arch,
	                             .family = info->family_name,
	                             .sha256 = info->sha256,
	                             .path = info->path,
	                             .precision = conv_precision_name(info->precision),
	                             .engine = conv_backend(),
	                             .classes = info->classes,
	                             .input_size = info->input_size,
	                             .depth = info->depth,
	                             .max_batch = s->max_batch};
}

int service_check_precision(const char *name, struct igs_error *err)
{
	if (conv_precision_parse(name) < 0)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "precision must be auto, fp32 or bf16x3, got '%s'", name);
	return 0;
}

void service_threads_setup(int caller_threads, int blas_threads)
{
	nn_threads_set_caller(caller_threads);
	nn_threads_set_blas(blas_threads);
}

const char *service_label(const struct service *s, int index)
{
	return labels_get(s->labels, index);
}

int service_worker_open(struct service_worker **out, struct service *s, struct igs_error *err)
{
	*out = NULL;
	struct service_worker *w = calloc(1, sizeof *w);
	if (!w)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory");
	w->service = s;
	const int classes = model_get_info(s->model)->classes;
	w->logits = calloc((size_t)s->max_batch * classes, sizeof(float));
	w->d_logits = calloc((size_t)s->max_batch * classes, sizeof(float));
	int rc = 0;
	if (!w->logits || !w->d_logits)
		rc = igs_fail(err, IGS_ERR_NOMEM, "out of memory");
	else
		rc = net_workspace_open(&w->ws, s->model, s->max_batch, err);
	if (rc == 0 && s->cfg.threads > 1)
		rc = net_workspace_set_threads(w->ws, s->cfg.threads, err);
	if (rc < 0) {
		service_worker_close(&w);
		return rc;
	}
	*out = w;
	return 0;
}

int service_worker_warm_up(struct service_worker *w, struct igs_error *err)
{
	/* Every batch a request can run (the last chunk of a path has
	 * steps % max_batch points), so no request waits for kernels to compile
	 * (the first IG-50 did, 0.1 s).  Batches between 1 and max_batch run on
	 * the weights packed for those two.  oneDNN caches kernels process-wide,
	 * so the second worker gets them almost for free. */
	int rc = 0;
	for (int n = 1; n <= w->service->max_batch && rc == 0; n++)
		rc = net_workspace_prepare(w->ws, n, err);
	return rc;
}

void service_worker_idle(struct service_worker *w)
{
	net_workspace_release(w->ws);
	if (w->side_ws)
		net_workspace_release(w->side_ws);
}

/* The workspace a prediction runs on: ws, or side_ws while an attribution
 * holds ws mid-pass. */
static int predict_workspace(struct service_worker *w, struct net_workspace **out,
                             struct igs_error *err)
{
	if (!w->ws_busy) {
		*out = w->ws;
		return 0;
	}
	if (!w->side_ws) {
		int rc = net_workspace_open(&w->side_ws, w->service->model, 1, err);
		if (rc == 0 && w->service->cfg.threads > 1)
			rc = net_workspace_set_threads(w->side_ws, w->service->cfg.threads, err);
		if (rc < 0) {
			net_workspace_close(&w->side_ws);
			return rc;
		}
	}
	*out = w->side_ws;
	return 0;
}

void service_worker_close(struct service_worker **wp)
{
	struct service_worker *w = *wp;
	if (!w)
		return;
	net_workspace_close(&w->ws);
	net_workspace_close(&w->side_ws);
	free(w->logits);
	free(w->d_logits);
	free(w);
	*wp = NULL;
}

/* ===== predictions ====================================================== */

/* Whether class a ranks above class b: higher logit, ties to the lower
 * index (what a stable sort by logit gives). */
static bool ranks_above(const float *logits, int a, int b)
{
	return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
}

/* Restore the heap property below slot i of a min-heap (by rank: the
 * lowest-ranked of the k best at the root). */
static void sift_down(int *heap, int n, int i, const float *logits)
{
	for (;;) {
		int lo = i, l = 2 * i + 1, r = l + 1;
		if (l < n && ranks_above(logits, heap[lo], heap[l]))
			lo = l;
		if (r < n && ranks_above(logits, heap[lo], heap[r]))
			lo = r;
		if (lo == i)
			return;
		int t = heap[i];
		heap[i] = heap[lo];
		heap[lo] = t;
		i = lo;
	}
}

int service_first_class(const struct service *s, const struct request_options *o)
{
	return model_get_info(s->model)->classes == 1001 && !o->include_background ? 1 : 0;
}

int service_top_k(const struct service *s, const float *logits, int first, int k,
                  struct prediction **top, int *count, struct igs_error *err)
{
	*top = NULL;
	*count = 0;
	const int classes = model_get_info(s->model)->classes;
	if (first < 0 || first >= classes)
		first = 0;
	if (k > classes - first)
		k = classes - first;
	if (k < 1)
		k = 1;
	float *probs = malloc((size_t)classes * sizeof *probs);
	int *heap = malloc((size_t)k * sizeof *heap);
	struct prediction *out = malloc((size_t)k * sizeof *out);
	if (!probs || !heap || !out) {
		free(probs);
		free(heap);
		free(out);
		return igs_fail(err, IGS_ERR_NOMEM, "predictions: out of memory");
	}
	softmax_forward(probs, logits, classes);
	/* The k best in a min-heap: O(classes log k). */
	for (int c = 0; c < k; c++)
		heap[c] = first + c;
	for (int i = k / 2 - 1; i >= 0; i--)
		sift_down(heap, k, i, logits);
	for (int c = first + k; c < classes; c++)
		if (ranks_above(logits, c, heap[0])) {
			heap[0] = c;
			sift_down(heap, k, 0, logits);
		}
	/* Popping the root yields them lowest first: fill from the end. */
	for (int n = k; n > 0; n--) {
		int c = heap[0];
		out[n - 1] = (struct prediction){.index = c,
		                                 .label = labels_get(s->labels, c),
		                                 .probability = probs[c],
		                                 .logit = logits[c]};
		heap[0] = heap[n - 1];
		sift_down(heap, n - 1, 0, logits);
	}
	free(probs);
	free(heap);
	*top = out;
	*count = k;
	return 0;
}

void predict_result_clear(struct predict_result *r)
{
	free(r->top);
	memset(r, 0, sizeof *r);
}

/* ===== requests =========================================================== */

int service_prepare_input(struct service_worker *w, const void *bytes, size_t len,
                          const struct request_options *o, float *pixels, struct image *original,
                          struct image_geometry *geom, double timing_ms[2], struct igs_error *err)
{
	const int size = model_get_info(w->service->model)->input_size;
	double t0 = igs_now();
	*original = (struct image){0};
	int rc = image_decode(original, bytes, len, &w->service->cfg.limits, err);
	if (rc < 0)
		return rc;
	timing_ms[0] = igs_ms_since(t0);
	t0 = igs_now();
	struct image fitted = {0};
	rc = image_fit(&fitted, original, size, o->resize, geom, err);
	if (rc < 0) {
		image_clear(original);
		return rc;
	}
	const size_t count = (size_t)size * size * 3;
	for (size_t i = 0; i < count; i++)
		pixels[i] = fitted.rgb[i];
	image_clear(&fitted);
	timing_ms[1] = igs_ms_since(t0);
	return 0;
}

int service_predict(struct service_worker *w, const void *bytes, size_t len,
                    const struct request_options *o, struct job_control *job,
                    struct predict_result *out, struct igs_error *err)
{
	memset(out, 0, sizeof *out);
	const struct service *s = w->service;
	const struct model_info *info = model_get_info(s->model);
	const double t_start = igs_now();
	double prep_ms[2] = {0};
	float *pixels = malloc((size_t)info->input_size * info->input_size * 3 * sizeof(float));
	if (!pixels)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory");
	struct image original = {0};
	struct image_geometry geom;
	int rc = service_prepare_input(w, bytes, len, o, pixels, &original, &geom, prep_ms, err);
	image_clear(&original);
	if (rc == 0)
		rc = job_check(job, "prediction", err);
	double forward_ms = 0;
	if (rc == 0) {
		double t0 = igs_now();
		struct net_workspace *ws = NULL;
		rc = predict_workspace(w, &ws, err);
		if (rc == 0)
			rc = net_infer(ws, pixels, 1, w->logits);
		forward_ms = igs_ms_since(t0);
		if (rc < 0)
			igs_fail(err, rc, "forward pass failed");
	}
	free(pixels);
	if (rc < 0)
		return rc;
	for (int c = 0; c < info->classes; c++)
		if (!isfinite(w->logits[c]))
			return igs_fail(err, IGS_ERR_INTERNAL,
			                "the model produced a non-finite logit for class %d", c);
	rc = service_top_k(s, w->logits, service_first_class(s, o), o->top_k, &out->top,
	                   &out->count, err);
	if (rc < 0)
		return rc;
	out->timing_ms.decode = prep_ms[0];
	out->timing_ms.preprocess = prep_ms[1];
	out->timing_ms.forward = forward_ms;
	out->timing_ms.total = igs_ms_since(t_start);
	return 0;
}
