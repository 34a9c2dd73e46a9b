/*
 * json_render.c - predict and attribute results, the model and errors as
 * JSON (see json_render.h).  Field order follows the contract's examples.
 */
#include "json_render.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "faithfulness.h"
#include "heatmap.h"
#include "npy.h"
#include "service_internal.h"

/* Print `doc` compactly and delete it; NULL in, NULL out. */
static char *print_and_delete(cJSON *doc)
{
	char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
	cJSON_Delete(doc);
	return text;
}

/* The "model" object of answers (arch, family, classes, sha256). */
static cJSON *model_object(const struct service *s)
{
	const struct model_info *info = model_get_info(s->model);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "arch", info->arch);
	cJSON_AddStringToObject(o, "family", info->family_name);
	cJSON_AddNumberToObject(o, "classes", info->classes);
	cJSON_AddStringToObject(o, "sha256", info->sha256);
	return o;
}

static cJSON *predictions_array(const struct prediction *top, int count)
{
	cJSON *arr = cJSON_CreateArray();
	for (int k = 0; arr && k < count; k++) {
		cJSON *p = cJSON_CreateObject();
		cJSON_AddNumberToObject(p, "index", top[k].index);
		cJSON_AddStringToObject(p, "label", top[k].label);
		cJSON_AddNumberToObject(p, "probability", top[k].probability);
		cJSON_AddNumberToObject(p, "logit", top[k].logit);
		cJSON_AddItemToArray(arr, p);
	}
	return arr;
}

char *json_render_predict(const struct service *s, const struct predict_result *r)
{
	cJSON *root = cJSON_CreateObject();
	cJSON_AddItemToObject(root, "model", model_object(s));
	cJSON_AddItemToObject(root, "predictions", predictions_array(r->top, r->count));
	cJSON *timing = cJSON_AddObjectToObject(root, "timing_ms");
	cJSON_AddNumberToObject(timing, "decode", r->timing_ms.decode);
	cJSON_AddNumberToObject(timing, "preprocess", r->timing_ms.preprocess);
	cJSON_AddNumberToObject(timing, "forward", r->timing_ms.forward);
	cJSON_AddNumberToObject(timing, "total", r->timing_ms.total);
	return print_and_delete(root);
}

/* Add `item` to `obj` under `key`; a NULL item (out of memory: the large
 * base64 strings) clears *ok, so the document is not answered without it. */
static void add_item(cJSON *obj, const char *key, cJSON *item, bool *ok)
{
	if (!item || !cJSON_AddItemToObject(obj, key, item)) {
		cJSON_Delete(item);
		*ok = false;
	}
}

/* A PNG as its file's path, or as base64. */
static cJSON *png_value(const struct rendered_png *png)
{
	if (png->file)
		return cJSON_CreateString(png->file);
	char *b64 = base64_encode_alloc(png->bytes, png->len);
	cJSON *v = b64 ? cJSON_CreateString(b64) : NULL;
	free(b64);
	return v;
}

/* Blur IG, Guided IG and baseline sets (issue 16): their options, and the
 * baseline as the set's text ("black+white"). */
static void path_method_fields(cJSON *m, const struct attribute_result *res)
{
	const struct attr_params *o = &res->options.attr;
	const struct attr_result *r = &res->attr;
	if (o->method == ATTR_BLUR_IG)
		cJSON_AddNumberToObject(m, "blur_max_sigma", o->blur_max_sigma);
	if (o->method == ATTR_GUIDED_IG) {
		cJSON_AddNumberToObject(m, "guided_fraction", o->guided_fraction);
		cJSON_AddNumberToObject(m, "guided_max_dist", o->guided_max_dist);
	}
	if (!attribution_method_uses_baseline(o->method))
		return;
	char set[128];
	attribution_baseline_set_name(o, set, sizeof set);
	cJSON_ReplaceItemInObject(m, "baseline", cJSON_CreateString(set));
	if (o->method == ATTR_GUIDED_IG && o->baseline == BASELINE_BLUR &&
	    !cJSON_HasObjectItem(m, "blur_sigma"))
		cJSON_AddNumberToObject(m, "blur_sigma", o->blur_sigma);
	if (o->baseline_count > 1 || o->baseline_samples > 0) {
		cJSON_AddNumberToObject(m, "baseline_samples", o->baseline_samples);
		cJSON_AddNumberToObject(m, "baselines", r->baselines_total);
		if (r->baselines_done != r->baselines_total)
			cJSON_AddNumberToObject(m, "baselines_done", r->baselines_done);
		if (!cJSON_HasObjectItem(m, "seed"))
			cJSON_AddNumberToObject(m, "seed", (double)o->seed);
	}
}

static cJSON *method_object(const struct attribute_result *res)
{
	const struct attr_params *o = &res->options.attr;
	const struct attr_result *r = &res->attr;
	cJSON *m = cJSON_CreateObject();
	if (!m)
		return NULL;
	cJSON_AddStringToObject(m, "name", attribution_method_name(o->method, o->rule));
	cJSON_AddNumberToObject(m, "steps", r->steps);
	if (o->method == ATTR_INTEGRATED_GRADIENTS)
		cJSON_AddStringToObject(m, "baseline", attribution_baseline_name(o->baseline));
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
	cJSON_AddStringToObject(m, "output", attribution_output_name(o->output));
	if (o->smooth != SMOOTH_NONE) {
		cJSON *sg = cJSON_AddObjectToObject(m, "smoothgrad");
		cJSON_AddStringToObject(sg, "kind", attribution_smooth_name(o->smooth));
		cJSON_AddNumberToObject(sg, "samples", o->smooth_samples);
		if (r->samples != o->smooth_samples)
			cJSON_AddNumberToObject(sg, "samples_done", r->samples);
		cJSON_AddNumberToObject(sg, "sigma", o->smooth_sigma);
		cJSON_AddNumberToObject(sg, "seed", (double)o->seed);
	}
	path_method_fields(m, res);
	return m;
}

/* The notebook's views (issue 15): a path row's step maps, when asked. */
static void add_path_step_views(cJSON *row, const struct attribute_result *res, int k, bool *ok)
{
	if (res->path_step_normalized)
		add_item(row, "step_normalized", png_value(&res->path_step_normalized[k]), ok);
	if (res->path_step_deviation)
		add_item(row, "step_deviation", png_value(&res->path_step_deviation[k]), ok);
}

static cJSON *path_array(const struct attribute_result *res, bool *ok)
{
	const struct attr_result *r = &res->attr;
	cJSON *path = cJSON_CreateArray();
	const char *key = attribution_output_name(res->options.attr.output);
	for (int k = 0; path && k < r->path_count; k++) {
		const struct attr_point *p = &r->path[k];
		cJSON *row = cJSON_CreateObject();
		cJSON_AddItemToArray(path, row);
		cJSON_AddNumberToObject(row, "alpha", p->alpha);
		cJSON_AddNumberToObject(row, "weight", p->weight);
		cJSON_AddNumberToObject(row, key, p->output);
		cJSON_AddNumberToObject(row, "gradient_sum", p->gradient_sum);
		cJSON_AddNumberToObject(row, "path_derivative", p->path_derivative);
		if (res->path_maps)
			add_item(row, "map", png_value(&res->path_maps[k]), ok);
		add_path_step_views(row, res, k, ok);
	}
	return path;
}

/* The attributions as base64 of their .npy bytes in the encoding raw=
 * asked for (float32 or float16 [H, W, 3], or the float32 map [H, W]). */
static cJSON *npy_value(const struct attr_result *r, enum npy_format format)
{
	unsigned char *npy;
	size_t len;
	if (npy_encode_attributions(r->attr, r->size, format, &npy, &len, NULL))
		return NULL;
	char *b64 = base64_encode_alloc(npy, len);
	free(npy);
	cJSON *v = b64 ? cJSON_CreateString(b64) : NULL;
	free(b64);
	return v;
}

/* heatmap_scales: {NAME: {vmin, vmax, colormap, sign}} of the maps drawn,
 * so a client can draw a legend (issue 16); each target's own with targets=. */
static cJSON *heatmap_scales_object(const struct rendered_png *maps, int map_count, bool *ok)
{
	cJSON *scales = cJSON_CreateObject();
	for (int i = 0; scales && i < map_count; i++) {
		const struct rendered_png *m = &maps[i];
		if (!m->has_scale)
			continue;
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "vmin", m->scale.vmin);
		cJSON_AddNumberToObject(o, "vmax", m->scale.vmax);
		cJSON_AddStringToObject(o, "colormap", m->scale.colormap);
		cJSON_AddStringToObject(o, "sign", m->scale.sign);
		add_item(scales, m->name, o, ok);
	}
	return scales;
}

static void add_heatmap_scales(cJSON *root, const struct attribute_result *res, bool *ok)
{
	add_item(root, "heatmap_scales", heatmap_scales_object(res->maps, res->map_count, ok), ok);
}

/* The target, completeness and convergence objects: the answer's own and
 * each "attributions" entry's. */
static cJSON *target_object(const struct prediction *t)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "index", t->index);
	cJSON_AddStringToObject(o, "label", t->label);
	cJSON_AddNumberToObject(o, "logit", t->logit);
	cJSON_AddNumberToObject(o, "probability", t->probability);
	return o;
}

static cJSON *completeness_object(const struct attr_result *r)
{
	cJSON *comp = cJSON_CreateObject();
	cJSON_AddNumberToObject(comp, "sum", r->sum);
	cJSON_AddNumberToObject(comp, "f_input", r->f_input);
	cJSON_AddNumberToObject(comp, "f_baseline", r->f_baseline);
	cJSON_AddNumberToObject(comp, "delta", r->delta);
	cJSON_AddNumberToObject(comp, "relative_error", r->relative_error);
	return comp;
}

static cJSON *convergence_object(const struct attr_result *r)
{
	cJSON *conv = cJSON_CreateObject();
	if (isfinite(r->relative_l2))
		cJSON_AddNumberToObject(conv, "relative_l2", r->relative_l2);
	else
		cJSON_AddNullToObject(conv, "relative_l2");
	cJSON_AddStringToObject(conv, "estimator", r->estimator);
	cJSON_AddNumberToObject(conv, "points", r->steps);
	return conv;
}

/* ---- several targets and faithfulness (issue 16) ---- */

static cJSON *faithfulness_object(const struct faithfulness_result *f, bool *ok)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	if (f->deletion) {
		cJSON_AddNumberToObject(o, "deletion_auc", f->deletion_auc);
		add_item(o, "deletion", cJSON_CreateDoubleArray(f->deletion, f->steps + 1), ok);
	}
	if (f->insertion) {
		cJSON_AddNumberToObject(o, "insertion_auc", f->insertion_auc);
		add_item(o, "insertion", cJSON_CreateDoubleArray(f->insertion, f->steps + 1), ok);
	}
	cJSON_AddNumberToObject(o, "steps", f->steps);
	cJSON_AddNumberToObject(o, "forward_passes", f->forward_passes);
	if (f->deadline_hit)
		cJSON_AddStringToObject(o, "stopped", "deadline");
	return o;
}

/* One entry of "attributions": a target's class, completeness,
 * convergence, heatmaps, .npy and faithfulness. */
static cJSON *target_entry(const struct attribute_result *res, const struct prediction *target,
                           const struct attr_result *r, const struct rendered_png *maps,
                           int map_count, const struct faithfulness_result *f, bool *ok)
{
	cJSON *e = cJSON_CreateObject();
	if (!e)
		return NULL;
	add_item(e, "target", target_object(target), ok);
	add_item(e, "completeness", completeness_object(r), ok);
	if (res->options.attr.method == ATTR_INTEGRATED_GRADIENTS)
		add_item(e, "convergence", convergence_object(r), ok);
	cJSON *hm = cJSON_CreateObject();
	for (int i = 0; hm && i < map_count; i++)
		add_item(hm, maps[i].name, png_value(&maps[i]), ok);
	add_item(e, "heatmaps", hm, ok);
	add_item(e, "heatmap_scales", heatmap_scales_object(maps, map_count, ok), ok);
	if (res->options.raw_npy)
		add_item(e, "attributions_npy", npy_value(r, res->options.raw_format), ok);
	if (res->options.faithfulness)
		add_item(e, "faithfulness", faithfulness_object(f, ok), ok);
	return e;
}

/* "faithfulness" (the first target's) and, with targets=, "attributions"
 * (every target, the first one too). */
static void add_targets_and_faithfulness(cJSON *root, const struct attribute_result *res, bool *ok)
{
	if (res->options.faithfulness)
		add_item(root, "faithfulness", faithfulness_object(&res->faithfulness, ok), ok);
	if (res->options.attr.n_targets == 0)
		return;
	cJSON *arr = cJSON_CreateArray();
	if (!arr) {
		*ok = false;
		return;
	}
	cJSON_AddItemToObject(root, "attributions", arr);
	cJSON *first = target_entry(res, &res->target, &res->attr, res->maps, res->map_count,
	                            &res->faithfulness, ok);
	if (!first || !cJSON_AddItemToArray(arr, first))
		*ok = false;
	for (int i = 0; i < res->more_count; i++) {
		const struct target_answer *t = &res->more[i];
		cJSON *e = target_entry(res, &t->target, &t->attr, t->maps, t->map_count,
		                        &t->faithfulness, ok);
		if (!e || !cJSON_AddItemToArray(arr, e))
			*ok = false;
	}
}

char *json_render_attribute(const struct service *s, const struct attribute_result *res)
{
	const struct attr_result *r = &res->attr;
	bool ok = true;
	cJSON *root = cJSON_CreateObject();
	cJSON_AddItemToObject(root, "model", model_object(s));
	cJSON_AddItemToObject(root, "predictions", predictions_array(res->top, res->top_count));
	add_item(root, "target", target_object(&res->target), &ok);
	cJSON_AddItemToObject(root, "method", method_object(res));
	add_item(root, "completeness", completeness_object(r), &ok);
	if (attribution_method_is_path(res->options.attr.method))
		add_item(root, "convergence", convergence_object(r), &ok);
	add_item(root, "path", path_array(res, &ok), &ok);
	cJSON *maps = cJSON_AddObjectToObject(root, "heatmaps");
	for (int i = 0; maps && i < res->map_count; i++)
		add_item(maps, res->maps[i].name, png_value(&res->maps[i]), &ok);
	add_heatmap_scales(root, res, &ok);
	if (res->options.raw_npy)
		add_item(root, "attributions_npy", npy_value(r, res->options.raw_format), &ok);
	add_targets_and_faithfulness(root, res, &ok);
	cJSON *timing = cJSON_AddObjectToObject(root, "timing_ms");
	cJSON_AddNumberToObject(timing, "decode", res->timing_ms.decode);
	cJSON_AddNumberToObject(timing, "preprocess", res->timing_ms.preprocess);
	cJSON_AddNumberToObject(timing, "attribution", res->timing_ms.attribution);
	cJSON_AddNumberToObject(timing, "heatmaps", res->timing_ms.heatmaps);
	cJSON_AddNumberToObject(timing, "total", res->timing_ms.total);
	if (!ok || !maps || !timing) {
		cJSON_Delete(root);
		return NULL;
	}
	return print_and_delete(root);
}

/* Blur IG's, Guided IG's and baseline sets' defaults (issue 16). */
static void path_method_defaults(cJSON *d, const struct attr_params *a)
{
	cJSON_AddNumberToObject(d, "blur_max_sigma", a->blur_max_sigma);
	cJSON_AddNumberToObject(d, "guided_fraction", a->guided_fraction);
	cJSON_AddNumberToObject(d, "guided_max_dist", a->guided_max_dist);
	cJSON_AddNumberToObject(d, "baseline_samples", a->baseline_samples);
}

/* The defaults of request_options_init, by their contract names. */
static cJSON *request_defaults_object(void)
{
	struct request_options o;
	request_options_init(&o);
	cJSON *d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "top_k", o.top_k);
	cJSON_AddStringToObject(d, "resize", image_resize_mode_name(o.resize));
	cJSON_AddStringToObject(d, "method", attribution_method_name(o.attr.method, o.attr.rule));
	cJSON_AddNumberToObject(d, "steps", o.attr.steps);
	cJSON_AddStringToObject(d, "baseline", attribution_baseline_name(o.attr.baseline));
	cJSON_AddNumberToObject(d, "blur_sigma", o.attr.blur_sigma);
	cJSON_AddNullToObject(d, "tolerance");
	cJSON_AddNumberToObject(d, "max_steps", o.attr.max_steps);
	cJSON_AddStringToObject(d, "output", attribution_output_name(o.attr.output));
	path_method_defaults(d, &o.attr);
	return d;
}

char *json_render_model(const struct service *s, size_t max_upload_bytes)
{
	const struct model_info *info = model_get_info(s->model);
	cJSON *o = model_object(s);
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
	/* the file's name only: the server's directories are nobody's business */
	const char *slash = strrchr(info->path, '/');
	cJSON_AddStringToObject(o, "path", slash ? slash + 1 : info->path);
	cJSON_AddNumberToObject(o, "parameters", (double)info->parameters);
	cJSON *stages = cJSON_AddArrayToObject(o, "stages");
	for (int i = 0; i < info->stages; i++) {
		cJSON *st = cJSON_CreateObject();
		cJSON_AddNumberToObject(st, "blocks", info->blocks[i]);
		cJSON_AddNumberToObject(st, "width", info->widths[i]);
		cJSON_AddItemToArray(stages, st);
	}
	cJSON_AddNumberToObject(o, "max_batch", s->max_batch);
	cJSON_AddStringToObject(o, "precision", conv_precision_name(info->precision));
	cJSON_AddItemToObject(o, "request_defaults", request_defaults_object());
	cJSON *lim = cJSON_AddObjectToObject(o, "limits");
	cJSON_AddNumberToObject(lim, "max_steps", s->cfg.max_steps_cap);
	cJSON_AddNumberToObject(lim, "path_maps_points", ATTR_PATH_MAPS_MAX_POINTS);
	cJSON_AddNumberToObject(lim, "path_steps_points", ATTR_PATH_STEPS_MAX_POINTS);
	cJSON_AddNumberToObject(lim, "upload_bytes", (double)max_upload_bytes);
	cJSON_AddNumberToObject(lim, "pixels", (double)(s->cfg.limits.max_pixels
	                                                    ? s->cfg.limits.max_pixels
	                                                    : IMAGE_DEFAULT_MAX_PIXELS));
	return print_and_delete(o);
}

char *json_render_error(int code, const char *message, const char *image)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON *e = cJSON_AddObjectToObject(doc, "error");
	cJSON_AddStringToObject(e, "code", igs_code_name(code));
	cJSON_AddStringToObject(e, "message", message);
	if (image)
		cJSON_AddStringToObject(doc, "image", image);
	return print_and_delete(doc);
}
