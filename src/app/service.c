/*
 * service.c - the resident service and the /predict path.
 *
 * bytes -> image_decode -> image_fit -> net_forward -> top-k JSON.
 * attribute.c continues from service_prepare_input for /attribute.
 */
#include "service_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "image.h"
#include "labels.h"

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

	int rc = model_load(&s->model, cfg->model_path, err);
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
	model_free(&s->model);
	free(s);
	*sp = NULL;
}

const struct model *service_model(const struct service *s)
{
	return s->model;
}

const char *service_label(const struct service *s, int index)
{
	return labels_get(s->labels, index);
}

int service_worker_create(struct service_worker **out, struct service *s, struct igs_error *err)
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
		rc = net_workspace_create(&w->ws, s->model, s->max_batch, err);
	if (rc == 0 && s->cfg.threads > 1)
		rc = net_workspace_set_threads(w->ws, s->cfg.threads, err);
	if (rc < 0) {
		service_worker_free(&w);
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
}

void service_worker_free(struct service_worker **wp)
{
	struct service_worker *w = *wp;
	if (!w)
		return;
	net_workspace_free(&w->ws);
	free(w->logits);
	free(w->d_logits);
	free(w);
	*wp = NULL;
}

/* ===== JSON pieces ======================================================== */

cJSON *service_model_json(const struct service *s)
{
	const struct model_info *info = model_get_info(s->model);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "arch", info->arch);
	cJSON_AddStringToObject(o, "family", info->family_name);
	cJSON_AddNumberToObject(o, "classes", info->classes);
	cJSON_AddStringToObject(o, "sha256", info->sha256);
	return o;
}

cJSON *service_model_info_json(const struct service *s)
{
	const struct model_info *info = model_get_info(s->model);
	cJSON *o = service_model_json(s);
	cJSON_AddNumberToObject(o, "depth", info->depth);
	cJSON_AddStringToObject(o, "block",
	                        info->block == BLOCK_BOTTLENECK ? "bottleneck" : "basic");
	cJSON_AddNumberToObject(o, "input_size", info->input_size);
	cJSON *pre = cJSON_AddObjectToObject(o, "preprocessing");
	const double mean[3] = {info->mean[0], info->mean[1], info->mean[2]};
	const double std[3] = {info->std[0], info->std[1], info->std[2]};
	cJSON_AddItemToObject(pre, "mean", cJSON_CreateDoubleArray(mean, 3));
	cJSON_AddItemToObject(pre, "std", cJSON_CreateDoubleArray(std, 3));
	cJSON_AddStringToObject(pre, "scale", "0..1");
	cJSON_AddStringToObject(pre, "layout", "RGB");
	cJSON_AddStringToObject(o, "path", info->path);
	cJSON_AddNumberToObject(o, "parameters", (double)info->parameters);
	cJSON *stages = cJSON_AddArrayToObject(o, "stages");
	for (int i = 0; i < info->stages; i++) {
		cJSON *st = cJSON_CreateObject();
		cJSON_AddNumberToObject(st, "blocks", info->blocks[i]);
		cJSON_AddNumberToObject(st, "width", info->widths[i]);
		cJSON_AddItemToArray(stages, st);
	}
	cJSON_AddNumberToObject(o, "max_batch", s->max_batch);
	cJSON_AddStringToObject(o, "precision", conv_precision_name());
	return o;
}

void softmax(float *probs, const float *logits, int n)
{
	double max = logits[0], sum = 0;
	for (int i = 1; i < n; i++)
		if (logits[i] > max)
			max = logits[i];
	for (int i = 0; i < n; i++)
		sum += exp((double)logits[i] - max);
	for (int i = 0; i < n; i++)
		probs[i] = (float)(exp((double)logits[i] - max) / sum);
}

cJSON *service_predictions_json(const struct service *s, const float *logits, int top_k)
{
	const int classes = model_get_info(s->model)->classes;
	if (top_k > classes)
		top_k = classes;
	float *probs = malloc((size_t)classes * sizeof(float));
	int *order = malloc((size_t)top_k * sizeof(int));
	cJSON *arr = cJSON_CreateArray();
	if (!probs || !order || !arr) {
		free(probs);
		free(order);
		cJSON_Delete(arr);
		return NULL;
	}
	softmax(probs, logits, classes);
	/* Partial selection: top_k is small. Ties keep the lower index first. */
	for (int k = 0; k < top_k; k++) {
		int best = -1;
		for (int c = 0; c < classes; c++) {
			bool taken = false;
			for (int j = 0; j < k && !taken; j++)
				taken = order[j] == c;
			if (!taken && (best < 0 || logits[c] > logits[best]))
				best = c;
		}
		order[k] = best;
	}
	for (int k = 0; k < top_k; k++) {
		cJSON *p = cJSON_CreateObject();
		cJSON_AddNumberToObject(p, "index", order[k]);
		cJSON_AddStringToObject(p, "label", labels_get(s->labels, order[k]));
		cJSON_AddNumberToObject(p, "probability", probs[order[k]]);
		cJSON_AddNumberToObject(p, "logit", logits[order[k]]);
		cJSON_AddItemToArray(arr, p);
	}
	free(probs);
	free(order);
	return arr;
}

/* ===== requests =========================================================== */

double service_ms_since(double t0)
{
	/* Microseconds are all a timing can tell; more digits are noise in the JSON. */
	return round((igs_now() - t0) * 1e6) / 1e3;
}

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
	timing_ms[0] = service_ms_since(t0);
	t0 = igs_now();
	struct image fitted = {0};
	rc = image_fit(&fitted, original, size, o->resize, geom, err);
	if (rc < 0) {
		image_free(original);
		return rc;
	}
	const size_t count = (size_t)size * size * 3;
	for (size_t i = 0; i < count; i++)
		pixels[i] = fitted.rgb[i];
	image_free(&fitted);
	timing_ms[1] = service_ms_since(t0);
	return 0;
}

static int check_job(const struct job_control *job, struct igs_error *err)
{
	if (!job)
		return 0;
	if (atomic_load(&job->cancelled))
		return igs_fail(err, IGS_ERR_CANCELLED, "the client went away");
	if (job->deadline > 0 && igs_now() > job->deadline)
		return igs_fail(err, IGS_ERR_DEADLINE, "the request's deadline passed");
	return 0;
}

int service_predict(struct service_worker *w, const void *bytes, size_t len,
                    const struct request_options *o, struct job_control *job, cJSON **out,
                    struct igs_error *err)
{
	*out = NULL;
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
	image_free(&original);
	if (rc == 0)
		rc = check_job(job, err);
	double forward_ms = 0;
	if (rc == 0) {
		double t0 = igs_now();
		rc = net_infer(w->ws, pixels, 1, w->logits);
		forward_ms = service_ms_since(t0);
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

	cJSON *root = cJSON_CreateObject();
	cJSON_AddItemToObject(root, "model", service_model_json(s));
	cJSON *preds = service_predictions_json(s, w->logits, o->top_k);
	if (!root || !preds) {
		cJSON_Delete(root);
		cJSON_Delete(preds);
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory");
	}
	cJSON_AddItemToObject(root, "predictions", preds);
	cJSON *timing = cJSON_AddObjectToObject(root, "timing_ms");
	cJSON_AddNumberToObject(timing, "decode", prep_ms[0]);
	cJSON_AddNumberToObject(timing, "preprocess", prep_ms[1]);
	cJSON_AddNumberToObject(timing, "forward", forward_ms);
	cJSON_AddNumberToObject(timing, "total", service_ms_since(t_start));
	*out = root;
	return 0;
}
