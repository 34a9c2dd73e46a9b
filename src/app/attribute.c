/*
 * attribute.c - service_attribute: one /attribute request, from image bytes
 * to a struct attribute_result.
 *
 *   service_prepare_input -> attribution_run (chunks of service->max_batch
 *   path points through the worker's workspace) -> heatmaps -> PNGs
 *
 * JSON would show NaN or infinity as null (cJSON does), so every number is
 * checked for finiteness here; a non-finite one fails the request (500)
 * instead of answering a document that looks valid but is not.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attribution.h"
#include "base64.h"
#include "clock.h"
#include "faithfulness.h"
#include "heatmap.h"
#include "heatmap_style.h"
#include "path_views.h"
#include "layers.h"
#include "png_encode.h"
#include "service_internal.h"

/* Every number the answer will carry is finite. */
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

/* Encode `im` as the PNG `out` named `name`; `im` is cleared either way. */
static int encode(struct heatmap_image *im, const char *name, struct rendered_png *out,
                  struct igs_error *err)
{
	*out = (struct rendered_png){0};
	snprintf(out->name, sizeof out->name, "%s", name);
	int rc = png_encode(im->pixels, im->width, im->height, im->channels, &out->bytes, &out->len,
	                    err);
	heatmap_image_clear(im);
	return rc;
}

/* Every PNG the answer will carry can be encoded: refused before the
 * attribution, not after it. */
static int check_renderable(const struct request_options *o, const struct image *original,
                            int size, struct igs_error *err)
{
	int rc = 0;
	if (o->heatmaps & ~HEATMAP_OVERLAY_FULL)
		rc = png_encode_check(size, size, 3, err);
	if (!rc && (o->heatmaps & HEATMAP_OVERLAY_FULL)) {
		int ow, oh;
		heatmap_overlay_full_size(original->width, original->height, &ow, &oh);
		rc = png_encode_check(ow, oh, 3, err);
	}
	return rc;
}

static int render_heatmaps(struct attribute_result *res, const float *pixels,
                           const struct image *original, const struct image_geometry *geom,
                           struct igs_error *err)
{
	const struct attr_result *r = &res->attr;
	res->maps = calloc(HEATMAP_KINDS, sizeof *res->maps);
	if (!res->maps)
		return igs_fail(err, IGS_ERR_NOMEM, "heatmaps: out of memory");
	for (unsigned bit = 1; bit <= HEATMAP_LAST; bit <<= 1) {
		if (!(res->options.heatmaps & bit))
			continue;
		/* no estimate (a deadline before the second round): no map of it */
		if (bit == HEATMAP_UNCERTAINTY && !r->uncertainty)
			continue;
		struct heatmap_image im;
		struct heatmap_scale scale;
		struct heatmap_style style;
		request_options_heatmap_style(&res->options, &style);
		const struct heatmap_style *st = &style;
		int rc = bit == HEATMAP_OVERLAY_FULL
		             ? heatmap_render_overlay_full_styled(r->attr, r->size, original, geom,
		                                                  st, &im, &scale, err)
		         : bit == HEATMAP_UNCERTAINTY
		             ? heatmap_render_uncertainty(r->uncertainty, r->size, st, &im, &scale, err)
		             : heatmap_render_styled(bit, r->attr, r->size, pixels, st, &im, &scale,
		                                     err);
		if (rc == 0)
			rc = encode(&im, heatmap_name(bit), &res->maps[res->map_count], err);
		if (rc)
			return rc;
		res->maps[res->map_count].has_scale = scale.colormap != NULL;
		res->maps[res->map_count].scale.vmin = scale.vmin;
		res->maps[res->map_count].scale.vmax = scale.vmax;
		res->maps[res->map_count].scale.colormap = scale.colormap;
		res->maps[res->map_count].scale.sign = scale.sign;
		res->map_count++;
	}
	return 0;
}

/* One grayscale PNG per path point of |dF/dx| summed over channels, all on
 * one scale (the largest value of the path) so the maps of a path compare. */
static int render_path_maps(struct attribute_result *res, struct igs_error *err)
{
	const struct attr_result *r = &res->attr;
	if (!r->path_maps)
		return 0;
	const size_t hw = (size_t)r->size * r->size;
	double scale = 0;
	for (size_t i = 0; i < hw * (size_t)r->path_count; i++)
		scale = fmax(scale, r->path_maps[i]);
	res->path_maps = calloc((size_t)r->path_count, sizeof *res->path_maps);
	if (!res->path_maps)
		return igs_fail(err, IGS_ERR_NOMEM, "path maps: out of memory");
	for (int k = 0; k < r->path_count; k++) {
		struct heatmap_image im;
		int rc = heatmap_render_scalar(r->path_maps + (size_t)k * hw, r->size, r->size,
		                               scale, &im, err);
		char name[16];
		snprintf(name, sizeof name, "path_%04d", k);
		if (rc == 0)
			rc = encode(&im, name, &res->path_maps[k], err);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- the notebook's views (issue 15) ---- */

/* Where the PNGs of step view `bit` go. */
static struct rendered_png **step_view_pngs(struct attribute_result *res, unsigned bit)
{
	return bit == PATH_VIEW_STEP_NORMALIZED ? &res->path_step_normalized
	                                        : &res->path_step_deviation;
}

/* One RGB PNG per path point and step view asked for, each point scaled
 * alone (path_views.h). */
static int render_path_steps(struct attribute_result *res, struct igs_error *err)
{
	const struct attr_result *r = &res->attr;
	if (!r->path_steps)
		return 0;
	const size_t n = (size_t)r->size * r->size * 3;
	for (size_t i = 0; i < n * (size_t)r->path_count; i++)
		if (!isfinite(r->path_steps[i]))
			return igs_fail(err, IGS_ERR_INTERNAL,
			                "path step %zu of point %zu is not finite", i % n, i / n);
	unsigned views = request_options_path_views(&res->options);
	for (unsigned bit = PATH_VIEW_STEP_NORMALIZED; bit <= PATH_VIEW_STEP_DEVIATION; bit <<= 1) {
		if (!(views & bit))
			continue;
		struct rendered_png **pngs = step_view_pngs(res, bit);
		if (!(*pngs = calloc((size_t)r->path_count, sizeof **pngs)))
			return igs_fail(err, IGS_ERR_NOMEM, "path views: out of memory");
		for (int k = 0; k < r->path_count; k++) {
			struct heatmap_image im;
			int rc = path_view_render_step(bit, r->path_steps + (size_t)k * n, r->size,
			                               &im, err);
			char name[32];
			snprintf(name, sizeof name, "path_%04d.%s", k, path_view_name(bit));
			if (rc == 0)
				rc = encode(&im, name, &(*pngs)[k], err);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* ---- several targets and faithfulness (issue 16) ---- */

static void target_answers_clear(struct attribute_result *r)
{
	for (int i = 0; r->more && i < r->more_count; i++) {
		struct target_answer *t = &r->more[i];
		for (int k = 0; t->maps && k < t->map_count; k++) {
			free(t->maps[k].bytes);
			free(t->maps[k].file);
		}
		free(t->maps);
		attr_result_clear(&t->attr);
		faithfulness_result_clear(&t->faithfulness);
	}
	free(r->more);
	faithfulness_result_clear(&r->faithfulness);
}

/* faithfulness= for one target's attributions (on the oracle's workspace,
 * so inside the attribution's hold of it). */
static int run_faithfulness(const struct grad_oracle *oracle, const struct attribute_result *res,
                            const float *pixels, const struct attr_result *a, int batch,
                            struct job_control *job, struct faithfulness_result *out,
                            struct igs_error *err)
{
	memset(out, 0, sizeof *out);
	if (!res->options.faithfulness)
		return 0;
	return faithfulness_run(oracle, pixels, a->baseline, a->attr, a->target,
	                        res->options.faithfulness, res->options.faithfulness_steps, batch,
	                        job, out, err);
}

/*
 * The attribution step: attribution_run, or with targets= one
 * attribution_run_targets whose first answer goes to res->attr and the
 * others to res->more; then faithfulness= for each.
 */
static int attribute_targets(const struct service *s, const struct grad_oracle *oracle,
                             const float *pixels, struct attribute_result *res,
                             struct job_control *job, struct igs_error *err)
{
	const struct attr_params *o = &res->options.attr;
	const int T = attribution_target_count(o);
	int rc;
	if (o->n_targets == 0) {
		rc = attribution_run(oracle, pixels, o, s->max_batch, job, &res->attr, err);
	} else {
		struct attr_result *outs = calloc((size_t)T, sizeof *outs);
		res->more = T > 1 ? calloc((size_t)T - 1, sizeof *res->more) : NULL;
		if (!outs || (T > 1 && !res->more)) {
			free(outs);
			return igs_fail(err, IGS_ERR_NOMEM, "targets: out of memory");
		}
		rc = attribution_run_targets(oracle, pixels, o, s->max_batch, job, outs, err);
		if (rc == 0) {
			res->attr = outs[0];
			for (int t = 1; t < T; t++)
				res->more[t - 1].attr = outs[t];
			res->more_count = T - 1;
		}
		free(outs);
	}
	if (rc)
		return rc;
	double t0 = igs_now();
	rc = run_faithfulness(oracle, res, pixels, &res->attr, s->max_batch, job,
	                      &res->faithfulness, err);
	for (int i = 0; !rc && i < res->more_count; i++)
		rc = run_faithfulness(oracle, res, pixels, &res->more[i].attr, s->max_batch, job,
		                      &res->more[i].faithfulness, err);
	res->faithfulness_ms = igs_ms_since(t0);
	return rc;
}

/* The other targets' numbers checked, their class named and their heatmaps
 * drawn as the first target's are (render_heatmaps on a stand-in result). */
static int finish_targets(const struct service *s, struct attribute_result *res,
                          const float *pixels, const float *probs, const struct image *original,
                          const struct image_geometry *geom, struct igs_error *err)
{
	for (int i = 0; i < res->more_count; i++) {
		struct target_answer *t = &res->more[i];
		int rc = check_finite(&t->attr, err);
		if (rc)
			return rc;
		const int c = t->attr.target;
		t->target = (struct prediction){.index = c,
		                                .label = service_label(s, c),
		                                .logit = t->attr.logits[c],
		                                .probability = probs[c]};
		struct attribute_result stand_in = {.options = res->options, .attr = t->attr};
		rc = render_heatmaps(&stand_in, pixels, original, geom, err);
		t->maps = stand_in.maps;
		t->map_count = stand_in.map_count;
		if (rc)
			return rc;
	}
	return 0;
}

static void free_pngs(struct rendered_png *pngs, int count)
{
	for (int k = 0; pngs && k < count; k++) {
		free(pngs[k].bytes);
		free(pngs[k].file);
	}
	free(pngs);
}

void attribute_result_clear(struct attribute_result *r)
{
	free_pngs(r->path_step_normalized, r->attr.path_count);
	free_pngs(r->path_step_deviation, r->attr.path_count);
	target_answers_clear(r);
	for (int i = 0; r->maps && i < r->map_count; i++) {
		free(r->maps[i].bytes);
		free(r->maps[i].file);
	}
	for (int k = 0; r->path_maps && k < r->attr.path_count; k++) {
		free(r->path_maps[k].bytes);
		free(r->path_maps[k].file);
	}
	free(r->maps);
	free(r->path_maps);
	free(r->top);
	attr_result_clear(&r->attr);
	memset(r, 0, sizeof *r);
}

int service_attribute(struct service_worker *w, const void *bytes, size_t len,
                      const struct request_options *o, struct job_control *job,
                      struct attribute_result *out, struct igs_error *err)
{
	memset(out, 0, sizeof *out);
	out->options = *o;
	const struct service *s = w->service;
	const struct model_info *info = model_get_info(s->model);
	const double t_start = igs_now();
	const int size = info->input_size;
	double prep_ms[2] = {0};
	struct image original = {0};
	struct image_geometry geom = {0};
	float *pixels = malloc((size_t)size * size * 3 * sizeof *pixels);
	float *probs = malloc((size_t)info->classes * sizeof *probs);
	int rc = 0;
	if (!pixels || !probs) {
		rc = igs_fail(err, IGS_ERR_NOMEM, "out of memory for the input");
		goto done;
	}
	if ((rc = request_options_check_heatmaps(o, err)))
		goto done;
	rc = service_prepare_input(w, bytes, len, o, pixels, &original, &geom, prep_ms, err);
	if (rc)
		goto done;
	if ((rc = check_renderable(o, &original, size, err)))
		goto done;

	double t0 = igs_now();
	struct grad_oracle oracle;
	attribution_net_oracle(&oracle, s->model, w->ws);
	request_options_resolve(&out->options);
	if ((out->options.heatmaps & HEATMAP_UNCERTAINTY) &&
	    !attribution_estimates(&out->options.attr)) {
		rc = igs_fail(err, IGS_ERR_BAD_OPTION,
		              "heatmaps=uncertainty needs a convergence estimate: plain Integrated "
		              "Gradients on one baseline, with tolerance or a rule whose points nest a "
		              "coarser one (riemann_trapezoid with odd steps, riemann_middle with steps "
		              "divisible by 3, ...), not %s",
		              attribution_method_name(out->options.attr.method, out->options.attr.rule));
		goto done;
	}
	out->options.attr.first_default_target = service_first_class(s, &out->options);
	/* lend the thread between the network's blocks too, not only between
	 * chunks: a waiting prediction then runs within milliseconds */
	if (job && job->yield) {
		w->ws_busy = true;
		net_workspace_set_yield(w->ws, job->yield, job->yield_ctx);
	}
	rc = attribute_targets(s, &oracle, pixels, out, job, err);
	net_workspace_set_yield(w->ws, NULL, NULL);
	w->ws_busy = false;
	/* (the worker pool hands the workspace's pages back once the worker is
	 * idle: service_worker_idle) */
	if (rc)
		goto done;
	out->timing_ms.attribution = igs_ms_since(t0);
	if ((rc = check_finite(&out->attr, err)))
		goto done;

	t0 = igs_now();
	const struct attr_result *r = &out->attr;
	if ((rc = service_top_k(s, r->logits, service_first_class(s, o), o->top_k, &out->top,
	                        &out->top_count, err)))
		goto done;
	softmax_forward(probs, r->logits, info->classes);
	out->target = (struct prediction){.index = r->target,
	                                  .label = service_label(s, r->target),
	                                  .logit = r->logits[r->target],
	                                  .probability = probs[r->target]};
	if ((rc = render_path_maps(out, err)) || (rc = render_path_steps(out, err)) ||
	    (rc = render_heatmaps(out, pixels, &original, &geom, err)) ||
	    (rc = finish_targets(s, out, pixels, probs, &original, &geom, err)))
		goto done;
	out->timing_ms.heatmaps = igs_ms_since(t0);
	out->timing_ms.decode = prep_ms[0];
	out->timing_ms.preprocess = prep_ms[1];
	out->timing_ms.total = igs_ms_since(t_start);
done:
	if (rc)
		attribute_result_clear(out);
	image_clear(&original);
	free(pixels);
	free(probs);
	return rc;
}

static int compare_floats(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

char *service_attribution_preview(const float *attr, int size, int px)
{
	if (px < 1 || size < 1)
		return NULL;
	if (px > size)
		px = size;
	float *cells = calloc((size_t)px * px, sizeof *cells);
	float *sorted = malloc((size_t)px * px * sizeof *sorted);
	char *b64 = NULL;
	if (!cells || !sorted)
		goto done;
	/* box average: source row y falls in cell row y * px / size */
	for (int y = 0; y < size; y++)
		for (int x = 0; x < size; x++) {
			const float *a = attr + ((size_t)y * size + x) * 3;
			cells[(size_t)(y * px / size) * px + x * px / size] +=
			    fabsf(a[0]) + fabsf(a[1]) + fabsf(a[2]);
		}
	memcpy(sorted, cells, (size_t)px * px * sizeof *sorted);
	qsort(sorted, (size_t)px * px, sizeof *sorted, compare_floats);
	double scale = sorted[(size_t)((px * px - 1) * 0.99)];
	struct heatmap_image im = {0};
	if (heatmap_render_scalar(cells, px, px, scale > 0 ? scale : 1.0, &im, NULL))
		goto done;
	unsigned char *png = NULL;
	size_t len = 0;
	if (!png_encode(im.pixels, im.width, im.height, im.channels, &png, &len, NULL))
		b64 = base64_encode_alloc(png, len);
	free(png);
	heatmap_image_clear(&im);
done:
	free(cells);
	free(sorted);
	return b64;
}
