/*
 * attribute.c - service_attribute: one /attribute request, from image bytes
 * to the contract's JSON.
 *
 *   service_prepare_input -> attribution_run (chunks of service->max_batch
 *   path points through the worker's workspace) -> heatmaps -> PNG ->
 *   base64 or files -> cJSON
 *
 * cJSON would print NaN or infinity as null, so every number is checked
 * for finiteness first; a non-finite one fails the request (500) instead of
 * answering a document that looks valid but is not.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attribution.h"
#include "base64.h"
#include "heatmap.h"
#include "npy.h"
#include "png_encode.h"
#include "service_internal.h"

static const char *method_name(const struct request_options *o)
{
	switch (o->method) {
	case ATTR_SALIENCY:
		return "saliency";
	case ATTR_INPUT_X_GRADIENT:
		return "input_x_gradient";
	case ATTR_INTEGRATED_GRADIENTS:
		break;
	}
	return quad_rule_name(o->rule);
}

static const char *smooth_name(enum smooth_kind k)
{
	switch (k) {
	case SMOOTH_GRAD:
		return "smoothgrad";
	case SMOOTH_GRAD_SQ:
		return "smoothgrad_sq";
	case SMOOTH_VARGRAD:
		return "vargrad";
	case SMOOTH_NONE:
		break;
	}
	return "none";
}

/* Every number the JSON will carry is finite. */
static int check_finite(const struct attr_result *r, struct igs_error *err)
{
	size_t n = (size_t)r->size * r->size * 3;
	for (size_t i = 0; i < n; i++)
		if (!isfinite(r->attr[i]))
			return igs_fail(err, IGS_ERR_INTERNAL,
			                "attribution produced a non-finite value at index %zu", i);
	for (int c = 0; c < r->classes; c++)
		if (!isfinite(r->logits[c]))
			return igs_fail(err, IGS_ERR_INTERNAL,
			                "the model produced a non-finite logit for class %d", c);
	const double nums[] = {r->sum, r->f_input, r->f_baseline, r->delta, r->relative_error};
	for (size_t i = 0; i < sizeof nums / sizeof *nums; i++)
		if (!isfinite(nums[i]))
			return igs_fail(err, IGS_ERR_INTERNAL, "completeness report is not finite");
	for (int k = 0; k < r->path_count; k++) {
		const struct attr_point *p = &r->path[k];
		if (!isfinite(p->output) || !isfinite(p->gradient_sum) ||
		    !isfinite(p->path_derivative))
			return igs_fail(err, IGS_ERR_INTERNAL,
			                "path point %d (alpha %.6f) is not finite", k, p->alpha);
	}
	return 0;
}

/*
 * Encode `im` as PNG and either write dir/name.png (the value becomes that
 * path) or base64 it.  *value is a new cJSON string (caller adds it).
 */
static int emit_png(const struct heatmap_image *im, const char *dir, const char *name,
                    cJSON **value, struct igs_error *err)
{
	unsigned char *png;
	size_t len;
	int rc = png_encode(im->pixels, im->width, im->height, im->channels, &png, &len, err);
	if (rc)
		return rc;
	if (dir) {
		char path[4096];
		int n = snprintf(path, sizeof path, "%s/%s.png", dir, name);
		if (n < 0 || (size_t)n >= sizeof path)
			rc = igs_fail(err, IGS_ERR_IO, "%s: output directory path too long", dir);
		else
			rc = write_file_bytes(path, png, len, err);
		*value = rc ? NULL : cJSON_CreateString(path);
	} else {
		char *b64 = base64_encode_alloc(png, len);
		*value = b64 ? cJSON_CreateString(b64) : NULL;
		free(b64);
	}
	free(png);
	if (!rc && !*value)
		rc = igs_fail(err, IGS_ERR_NOMEM, "heatmap %s: out of memory", name);
	return rc;
}

static int add_heatmaps(cJSON *root, const struct attr_result *r, const float *pixels,
                        const struct image *original, const struct image_geometry *geom,
                        unsigned mask, const char *dir, struct igs_error *err)
{
	cJSON *maps = cJSON_AddObjectToObject(root, "heatmaps");
	if (!maps)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory");
	for (unsigned bit = 1; bit <= HEATMAP_OVERLAY_FULL; bit <<= 1) {
		if (!(mask & bit))
			continue;
		struct heatmap_image im;
		int rc =
		    bit == HEATMAP_OVERLAY_FULL
		        ? heatmap_render_overlay_full(r->attr, r->size, original, geom, &im, err)
		        : heatmap_render(bit, r->attr, r->size, pixels, &im, err);
		if (rc)
			return rc;
		cJSON *value;
		rc = emit_png(&im, dir, heatmap_name(bit), &value, err);
		heatmap_image_free(&im);
		if (rc)
			return rc;
		cJSON_AddItemToObject(maps, heatmap_name(bit), value);
	}
	return 0;
}

static int add_path(cJSON *root, const struct attr_result *r, const struct request_options *o,
                    const char *dir, struct igs_error *err)
{
	cJSON *path = cJSON_AddArrayToObject(root, "path");
	if (!path)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory");
	size_t hw = (size_t)r->size * r->size;
	/* per-point maps share one scale (the largest value of all) so the
	 * maps of one path compare */
	double scale = 0;
	if (r->path_maps)
		for (size_t i = 0; i < hw * (size_t)r->path_count; i++)
			scale = fmax(scale, r->path_maps[i]);
	const char *key = o->output == OUTPUT_PROBABILITY ? "probability" : "logit";
	for (int k = 0; k < r->path_count; k++) {
		const struct attr_point *p = &r->path[k];
		cJSON *row = cJSON_CreateObject();
		if (!row)
			return igs_fail(err, IGS_ERR_NOMEM, "out of memory");
		cJSON_AddItemToArray(path, row);
		cJSON_AddNumberToObject(row, "alpha", p->alpha);
		cJSON_AddNumberToObject(row, "weight", p->weight);
		cJSON_AddNumberToObject(row, key, p->output);
		cJSON_AddNumberToObject(row, "gradient_sum", p->gradient_sum);
		cJSON_AddNumberToObject(row, "path_derivative", p->path_derivative);
		if (!r->path_maps)
			continue;
		struct heatmap_image im;
		int rc = heatmap_render_scalar(r->path_maps + (size_t)k * hw, r->size, r->size,
		                               scale, &im, err);
		if (rc)
			return rc;
		char name[32];
		snprintf(name, sizeof name, "path_%04d", k);
		cJSON *value;
		rc = emit_png(&im, dir, name, &value, err);
		heatmap_image_free(&im);
		if (rc)
			return rc;
		cJSON_AddItemToObject(row, "map", value);
	}
	return 0;
}

static cJSON *method_json(const struct request_options *o, const struct attr_result *r)
{
	cJSON *m = cJSON_CreateObject();
	if (!m)
		return NULL;
	cJSON_AddStringToObject(m, "name", method_name(o));
	cJSON_AddNumberToObject(m, "steps", r->steps);
	if (o->method == ATTR_INTEGRATED_GRADIENTS)
		cJSON_AddStringToObject(m, "baseline", baseline_name(o->baseline));
	else if (o->method == ATTR_INPUT_X_GRADIENT)
		cJSON_AddStringToObject(m, "baseline", "black");
	else
		cJSON_AddNullToObject(m, "baseline");
	if (r->adaptive)
		cJSON_AddNumberToObject(m, "tolerance", o->tolerance);
	else
		cJSON_AddNullToObject(m, "tolerance");
	cJSON_AddBoolToObject(m, "converged", r->converged);
	/* extensions */
	cJSON_AddNumberToObject(m, "evaluations", r->evaluations);
	if (r->adaptive)
		cJSON_AddNumberToObject(m, "max_steps", o->max_steps);
	if (r->deadline_hit)
		cJSON_AddStringToObject(m, "stopped", "deadline");
	if (o->method == ATTR_INTEGRATED_GRADIENTS && o->baseline == BASELINE_BLUR)
		cJSON_AddNumberToObject(m, "blur_sigma", o->blur_sigma);
	if (o->method == ATTR_INTEGRATED_GRADIENTS && o->baseline == BASELINE_NOISE)
		cJSON_AddNumberToObject(m, "seed", (double)o->seed);
	cJSON_AddStringToObject(m, "output",
	                        o->output == OUTPUT_PROBABILITY ? "probability" : "logit");
	if (o->smooth != SMOOTH_NONE) {
		cJSON *s = cJSON_AddObjectToObject(m, "smoothgrad");
		cJSON_AddStringToObject(s, "kind", smooth_name(o->smooth));
		cJSON_AddNumberToObject(s, "samples", o->smooth_samples);
		cJSON_AddNumberToObject(s, "sigma", o->smooth_sigma);
		cJSON_AddNumberToObject(s, "seed", (double)o->seed);
	}
	return m;
}

int service_attribute(struct service_worker *w, const void *bytes, size_t len,
                      const struct request_options *o, struct job_control *job,
                      const char *heatmap_dir, const char *raw_path, cJSON **out,
                      struct igs_error *err)
{
	*out = NULL;
	const struct service *s = w->service;
	const struct model_info *info = model_get_info(s->model);
	const double t_start = igs_now();
	const int size = info->input_size;
	const size_t n = (size_t)size * size * 3;
	double prep_ms[2] = {0};
	struct image original = {0};
	struct image_geometry geom = {0};
	struct attr_result res = {0};
	cJSON *root = NULL;
	float *pixels = malloc(n * sizeof *pixels);
	if (!pixels)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory for the input");
	int rc = service_prepare_input(w, bytes, len, o, pixels, &original, &geom, prep_ms, err);
	if (rc)
		goto done;

	double t0 = igs_now();
	struct grad_oracle oracle;
	attribution_net_oracle(&oracle, s->model, w->ws);
	rc = attribution_run(&oracle, pixels, o, s->max_batch, job, &res, err);
	/* (the worker pool hands the workspace's pages back once the worker is
	 * idle: service_worker_idle) */
	if (rc)
		goto done;
	double attribution_ms = service_ms_since(t0);
	if ((rc = check_finite(&res, err)))
		goto done;

	t0 = igs_now();
	root = cJSON_CreateObject();
	cJSON *preds = service_predictions_json(s, res.logits, o->top_k);
	if (!root || !preds) {
		cJSON_Delete(preds);
		rc = igs_fail(err, IGS_ERR_NOMEM, "out of memory");
		goto done;
	}
	cJSON_AddItemToObject(root, "model", service_model_json(s));
	cJSON_AddItemToObject(root, "predictions", preds);

	float *probs = malloc((size_t)info->classes * sizeof *probs);
	if (!probs) {
		rc = igs_fail(err, IGS_ERR_NOMEM, "out of memory");
		goto done;
	}
	softmax(probs, res.logits, info->classes);
	cJSON *target = cJSON_AddObjectToObject(root, "target");
	cJSON_AddNumberToObject(target, "index", res.target);
	cJSON_AddStringToObject(target, "label", service_label(s, res.target));
	cJSON_AddNumberToObject(target, "logit", res.logits[res.target]);
	cJSON_AddNumberToObject(target, "probability", probs[res.target]);
	free(probs);

	cJSON_AddItemToObject(root, "method", method_json(o, &res));
	cJSON *comp = cJSON_AddObjectToObject(root, "completeness");
	cJSON_AddNumberToObject(comp, "sum", res.sum);
	cJSON_AddNumberToObject(comp, "f_input", res.f_input);
	cJSON_AddNumberToObject(comp, "f_baseline", res.f_baseline);
	cJSON_AddNumberToObject(comp, "delta", res.delta);
	cJSON_AddNumberToObject(comp, "relative_error", res.relative_error);

	if ((rc = add_path(root, &res, o, heatmap_dir, err)))
		goto done;
	if ((rc =
	         add_heatmaps(root, &res, pixels, &original, &geom, o->heatmaps, heatmap_dir, err)))
		goto done;

	const size_t shape[3] = {(size_t)size, (size_t)size, 3};
	if (raw_path && (rc = npy_write_f32(raw_path, res.attr, shape, 3, err)))
		goto done;
	if (o->raw_npy) {
		unsigned char *npy;
		size_t npy_len;
		if ((rc = npy_encode_f32(res.attr, shape, 3, &npy, &npy_len, err)))
			goto done;
		char *b64 = base64_encode_alloc(npy, npy_len);
		free(npy);
		if (!b64) {
			rc = igs_fail(err, IGS_ERR_NOMEM, "out of memory for attributions_npy");
			goto done;
		}
		cJSON_AddStringToObject(root, "attributions_npy", b64);
		free(b64);
	}
	double heatmaps_ms = service_ms_since(t0);

	cJSON *timing = cJSON_AddObjectToObject(root, "timing_ms");
	cJSON_AddNumberToObject(timing, "decode", prep_ms[0]);
	cJSON_AddNumberToObject(timing, "preprocess", prep_ms[1]);
	cJSON_AddNumberToObject(timing, "attribution", attribution_ms);
	cJSON_AddNumberToObject(timing, "heatmaps", heatmaps_ms);
	cJSON_AddNumberToObject(timing, "total", service_ms_since(t_start));
	*out = root;
	root = NULL;
done:
	cJSON_Delete(root);
	attr_result_free(&res);
	image_free(&original);
	free(pixels);
	return rc;
}
