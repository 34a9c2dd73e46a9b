/*
 * selfcheck.c - the readiness check run once on a worker at startup: a
 * fixed synthetic image through the same service calls requests use.
 *
 * What it catches: weights that load but compute NaN/Inf, a backward pass
 * that disagrees with the forward (completeness, Sundararajan et al. 2017,
 * prop. 1: sum(attr) = F(x) - F(x')), and a predict path that disagrees
 * with the attribution path on the input's logit.
 */
#include "server.h"

#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdlib.h>

#define SELFCHECK_STEPS 8

/* A smooth color gradient with a bright square and a dark disc: structure
 * at several scales, so gradients are not degenerate.  size x size RGB. */
static void synthetic_image(uint8_t *rgb, int size)
{
	for (int y = 0; y < size; y++)
		for (int x = 0; x < size; x++) {
			uint8_t *p = rgb + ((size_t)y * size + x) * 3;
			p[0] = (uint8_t)(255 * x / size);
			p[1] = (uint8_t)(255 * y / size);
			p[2] = (uint8_t)(128 + 100 * ((x / 8 + y / 8) % 2));
			if (x > size / 8 && x < size / 2 && y > size / 8 && y < size / 2)
				p[0] = p[1] = p[2] = 240;
			int dx = x - 3 * size / 4, dy = y - 3 * size / 4;
			if (dx * dx + dy * dy < size * size / 49)
				p[0] = p[1] = p[2] = 20;
		}
}

/* PNG bytes of the synthetic image (malloc'd into *out). */
static int synthetic_png(int size, void **out, size_t *len, struct igs_error *err)
{
	uint8_t *rgb = malloc((size_t)size * size * 3);
	if (!rgb)
		return igs_fail(err, IGS_ERR_NOMEM, "self-check: out of memory");
	synthetic_image(rgb, size);
	png_image img = {.version = PNG_IMAGE_VERSION,
	                 .width = (png_uint_32)size,
	                 .height = (png_uint_32)size,
	                 .format = PNG_FORMAT_RGB};
	png_alloc_size_t n = 0;
	int rc = 0;
	if (!png_image_write_to_memory(&img, NULL, &n, 0, rgb, 0, NULL) || !(*out = malloc(n)) ||
	    !png_image_write_to_memory(&img, *out, &n, 0, rgb, 0, NULL))
		rc = igs_fail(err, IGS_ERR_INTERNAL, "self-check: cannot encode the test image");
	*len = n;
	png_image_free(&img);
	free(rgb);
	return rc;
}

static double number_at(const cJSON *obj, const char *a, const char *b)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, a);
	if (b)
		v = cJSON_GetObjectItemCaseSensitive(v, b);
	return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

int selfcheck_run(struct service_worker *w, const struct service *s, struct igs_error *err)
{
	const struct model_info *info = model_get_info(service_model(s));
	void *png = NULL;
	size_t len = 0;
	cJSON *pred = NULL, *attr = NULL;
	struct job_control job = {.deadline = 0};
	atomic_init(&job.cancelled, false);
	int rc = synthetic_png(info->input_size, &png, &len, err);
	if (rc < 0)
		goto out;

	struct request_options o;
	request_options_init(&o);
	o.top_k = info->classes;
	rc = service_predict(w, png, len, &o, &job, &pred, err);
	if (rc < 0)
		goto out;
	const cJSON *preds = cJSON_GetObjectItemCaseSensitive(pred, "predictions");
	int n = cJSON_GetArraySize(preds);
	if (n != info->classes) {
		rc = igs_fail(err, IGS_ERR_INTERNAL,
		              "self-check: predict returned %d of %d classes", n, info->classes);
		goto out;
	}
	double top_logit = NAN, psum = 0;
	for (int i = 0; i < n; i++) {
		const cJSON *p = cJSON_GetArrayItem(preds, i);
		double logit = number_at(p, "logit", NULL),
		       prob = number_at(p, "probability", NULL);
		if (!isfinite(logit) || !(prob >= 0 && prob <= 1)) {
			rc = igs_fail(err, IGS_ERR_INTERNAL,
			              "self-check: prediction %d is not finite (logit %g, p %g)", i,
			              logit, prob);
			goto out;
		}
		if (i == 0)
			top_logit = logit;
		psum += prob;
	}
	if (fabs(psum - 1) > 1e-3) {
		rc = igs_fail(err, IGS_ERR_INTERNAL, "self-check: probabilities sum to %g", psum);
		goto out;
	}

	request_options_init(&o);
	o.steps = SELFCHECK_STEPS;
	o.heatmaps = 0;
	rc = service_attribute(w, png, len, &o, &job, NULL, NULL, &attr, err);
	if (rc < 0)
		goto out;
	double sum = number_at(attr, "completeness", "sum");
	double f_in = number_at(attr, "completeness", "f_input");
	double f_base = number_at(attr, "completeness", "f_baseline");
	double delta = number_at(attr, "completeness", "delta");
	double target_logit = number_at(attr, "target", "logit");
	if (!isfinite(sum) || !isfinite(f_in) || !isfinite(f_base) || !isfinite(delta)) {
		rc = igs_fail(err, IGS_ERR_INTERNAL,
		              "self-check: completeness is not finite (sum %g, f(x) %g, f(x') %g)",
		              sum, f_in, f_base);
		goto out;
	}
	/* The same pixels through the same network: equal up to batching. */
	if (fabs(target_logit - top_logit) > 1e-3 * (1 + fabs(top_logit)) ||
	    fabs(f_in - top_logit) > 1e-3 * (1 + fabs(top_logit))) {
		rc = igs_fail(err, IGS_ERR_INTERNAL,
		              "self-check: attribution sees logit %g, prediction %g", f_in,
		              top_logit);
		goto out;
	}
	/* 8 Gauss-Legendre points on a piecewise-linear network are not exact,
	 * but a broken gradient misses by the whole difference. */
	double diff = fabs(f_in - f_base);
	if (fabs(delta) > 0.5 * diff + 0.05 * (1 + fabs(f_in) + fabs(f_base))) {
		rc = igs_fail(err, IGS_ERR_INTERNAL,
		              "self-check: completeness off: sum %g vs f(x) - f(x') = %g", sum,
		              f_in - f_base);
		goto out;
	}
out:
	cJSON_Delete(pred);
	cJSON_Delete(attr);
	free(png);
	return rc;
}
