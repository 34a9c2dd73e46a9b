/*
 * selfcheck.c - the readiness check run once on a worker at startup: a
 * fixed synthetic image through the same service calls requests use.
 *
 * What it catches: weights that load but compute NaN/Inf, a backward pass
 * that disagrees with the forward (completeness, Sundararajan et al. 2017,
 * prop. 1: sum(attr) = F(x) - F(x')), and a predict path that disagrees
 * with the attribution path on the input's logit.
 */
#include "selfcheck.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "png_encode.h"

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
static int synthetic_png(int size, unsigned char **out, size_t *len, struct igs_error *err)
{
	uint8_t *rgb = malloc((size_t)size * size * 3);
	if (!rgb)
		return igs_fail(err, IGS_ERR_NOMEM, "self-check: out of memory");
	synthetic_image(rgb, size);
	int rc = png_encode(rgb, size, size, 3, out, len, err);
	free(rgb);
	return rc;
}

int selfcheck_run(struct service_worker *w, const struct service *s, struct igs_error *err)
{
	struct service_info info;
	service_get_info(s, &info);
	unsigned char *png = NULL;
	size_t len = 0;
	struct predict_result pred = {0};
	struct attribute_result attr = {0};
	struct job_control job;
	job_init(&job);
	int rc = synthetic_png(info.input_size, &png, &len, err);
	if (rc < 0)
		goto out;

	struct request_options o;
	request_options_init(&o);
	o.top_k = info.classes;
	o.include_background = true; /* every class, a background one too */
	rc = service_predict(w, png, len, &o, &job, &pred, err);
	if (rc < 0)
		goto out;
	if (pred.count != info.classes) {
		rc =
		    igs_fail(err, IGS_ERR_INTERNAL, "self-check: predict returned %d of %d classes",
		             pred.count, info.classes);
		goto out;
	}
	double psum = 0;
	for (int i = 0; i < pred.count; i++) {
		const struct prediction *p = &pred.top[i];
		if (!isfinite(p->logit) || !(p->probability >= 0 && p->probability <= 1)) {
			rc = igs_fail(err, IGS_ERR_INTERNAL,
			              "self-check: prediction %d is not finite (logit %g, p %g)", i,
			              p->logit, p->probability);
			goto out;
		}
		psum += p->probability;
	}
	const double top_logit = pred.top[0].logit;
	if (fabs(psum - 1) > 1e-3) {
		rc = igs_fail(err, IGS_ERR_INTERNAL, "self-check: probabilities sum to %g", psum);
		goto out;
	}

	request_options_init(&o);
	o.attr.steps = SELFCHECK_STEPS;
	o.heatmaps = 0;
	rc = service_attribute(w, png, len, &o, &job, &attr, err);
	if (rc < 0)
		goto out;
	const double sum = attr.attr.sum, f_in = attr.attr.f_input, f_base = attr.attr.f_baseline;
	const double delta = attr.attr.delta, target_logit = attr.target.logit;
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
	predict_result_clear(&pred);
	attribute_result_clear(&attr);
	free(png);
	return rc;
}
