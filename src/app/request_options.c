/*
 * request_options.c - the options of one request, by their contract names.
 *
 * HTTP query parameters, form fields and CLI flags all arrive here as
 * (name, text) pairs, so every front end validates the same way and says
 * the same thing about a bad value.
 */
#include "request_options.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "heatmap.h"
#include "heatmap_style.h"
#include "npy.h"
#include "path_views.h"

void request_options_init(struct request_options *o)
{
	*o = (struct request_options){
	    .top_k = 5,
	    .resize = RESIZE_LETTERBOX,
	    .heatmaps = HEATMAP_DEFAULT,
	    .raw_npy = false,
	    .deadline_ms = 0,
	    .faithfulness_steps = FAITHFULNESS_DEFAULT_STEPS,
	};
	attr_params_init(&o->attr);
	struct heatmap_style st;
	heatmap_style_init(&st);
	o->heatmap_controls = (struct heatmap_controls){
	    .sign = (int)st.sign, .colormap = (int)st.colormap, .alpha = st.alpha};
	o->raw_format = NPY_FORMAT_F32;
}

/* ===== value parsers ====================================================== */

static int int_in(const char *name, const char *value, long lo, long hi, int *out,
                  struct igs_error *err)
{
	char *end;
	errno = 0;
	long v = strtol(value, &end, 10);
	if (errno || end == value || *end || v < lo || v > hi)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "%s must be an integer from %ld to %ld, got '%s'",
		                name, lo, hi, value);
	*out = (int)v;
	return 0;
}

static int double_in(const char *name, const char *value, double lo, double hi, double *out,
                     struct igs_error *err)
{
	char *end;
	errno = 0;
	double v = strtod(value, &end);
	if (errno || end == value || *end || !isfinite(v) || v < lo || v > hi)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "%s must be a number from %g to %g, got '%s'",
		                name, lo, hi, value);
	*out = v;
	return 0;
}

static int bool_value(const char *name, const char *value, bool *out, struct igs_error *err)
{
	if (!*value || !strcmp(value, "1") || !strcasecmp(value, "true") || !strcasecmp(value, "yes"))
		*out = true;
	else if (!strcmp(value, "0") || !strcasecmp(value, "false") || !strcasecmp(value, "no"))
		*out = false;
	else
		return igs_fail(err, IGS_ERR_BAD_OPTION, "%s must be true or false, got '%s'", name, value);
	return 0;
}

static int parse_heatmaps(const char *value, unsigned *out, struct igs_error *err)
{
	if (!strcasecmp(value, "none") || !*value) {
		*out = 0;
		return 0;
	}
	if (!strcasecmp(value, "all")) {
		*out = HEATMAP_ALL;
		return 0;
	}
	unsigned mask = 0;
	const char *p = value;
	while (*p) {
		size_t len = strcspn(p, ",");
		unsigned bit = heatmap_bit(p, len);
		mask |= bit;
		if (!bit && len > 0)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "heatmaps: unknown map '%.*s' (known: normalized, deviation, "
			                "magnitude, overlay, overlay_full, channel_r, channel_g, "
			                "channel_b, channel_r_deviation, channel_g_deviation, "
			                "channel_b_deviation, masked_image, alpha_scaling, uncertainty, "
			                "all, none)",
			                (int)len, p);
		p += len;
		if (*p == ',')
			p++;
	}
	*out = mask;
	return 0;
}

/* ---- heatmap controls and raw encodings (issue 16) ---- */

/* 1 when `name` is one of these options (set, or an error in *rc), else 0. */
static int set_heatmap_control(struct request_options *o, const char *name, const char *value,
                               int *rc, struct igs_error *err)
{
	struct heatmap_controls *st = &o->heatmap_controls;
	*rc = 0;
	if (!strcmp(name, "raw")) {
		int f = npy_format_parse(value);
		if (f >= 0) {
			o->raw_npy = true;
			o->raw_format = f;
		} else if (!strcasecmp(value, "true") || !strcmp(value, "1")) {
			o->raw_npy = true;
			o->raw_format = NPY_FORMAT_F32;
		} else if (!strcasecmp(value, "none") || !strcasecmp(value, "false") ||
		           !strcmp(value, "0")) {
			o->raw_npy = false;
		} else {
			*rc = igs_fail(err, IGS_ERR_BAD_OPTION,
			               "raw must be npy, npy16, map or none, got '%s'", value);
		}
		return 1;
	}
	if (!strcmp(name, "sign")) {
		int v = heatmap_sign_parse(value);
		if (v < 0)
			*rc = igs_fail(err, IGS_ERR_BAD_OPTION,
			               "sign must be positive, negative, absolute or all, got '%s'",
			               value);
		else
			st->sign = v;
		return 1;
	}
	if (!strcmp(name, "colormap")) {
		int v = heatmap_cmap_parse(value);
		if (v < 0)
			*rc = igs_fail(err, IGS_ERR_BAD_OPTION,
			               "colormap must be viridis, inferno, gray or rdbu, got '%s'",
			               value);
		else
			st->colormap = v;
		return 1;
	}
	if (!strcmp(name, "scale")) {
		if (!strcasecmp(value, "image")) {
			st->fixed = false;
			st->scale_image = true;
		} else if (!strcasecmp(value, "fixed")) {
			st->fixed = true;
			st->scale_image = false;
		} else {
			*rc = igs_fail(err, IGS_ERR_BAD_OPTION,
			               "scale must be image or fixed, got '%s'", value);
		}
		return 1;
	}
	if (!strcmp(name, "clip")) {
		double v;
		*rc = double_in(name, value, 0, 100, &v, err);
		if (!*rc && !(v > 0))
			*rc = igs_fail(err, IGS_ERR_BAD_OPTION,
			               "clip must be a percentile in (0, 100], got '%s'", value);
		if (!*rc)
			st->clip = v;
		return 1;
	}
	if (!strcmp(name, "alpha"))
		return *rc = double_in(name, value, 0, 1, &st->alpha, err), 1;
	if (!strcmp(name, "vmin") || !strcmp(name, "vmax")) {
		bool is_min = name[1] == 'm' && name[2] == 'i';
		*rc = double_in(name, value, -1e30, 1e30, is_min ? &st->vmin : &st->vmax, err);
		if (!*rc) {
			*(is_min ? &st->vmin_given : &st->vmax_given) = true;
			st->fixed = true; /* vmin and vmax mean scale=fixed */
		}
		return 1;
	}
	return 0;
}

void request_options_heatmap_style(const struct request_options *o, void *heatmap_style)
{
	const struct heatmap_controls *c = &o->heatmap_controls;
	*(struct heatmap_style *)heatmap_style =
	    (struct heatmap_style){.sign = (enum heatmap_sign)c->sign,
	                           .clip = c->clip,
	                           .fixed = c->fixed,
	                           .scale_image = c->scale_image,
	                           .vmin_given = c->vmin_given,
	                           .vmax_given = c->vmax_given,
	                           .vmin = c->vmin,
	                           .vmax = c->vmax,
	                           .colormap = (enum heatmap_cmap)c->colormap,
	                           .alpha = c->alpha};
}

int request_options_check_heatmaps(const struct request_options *o, struct igs_error *err)
{
	struct heatmap_style st;
	request_options_heatmap_style(o, &st);
	if (st.sign == HEATMAP_SIGN_ALL &&
	    (o->heatmaps & (HEATMAP_MASKED_IMAGE | HEATMAP_ALPHA_SCALING)))
		return igs_fail(
		    err, IGS_ERR_BAD_OPTION,
		    "sign=all cannot draw masked_image or alpha_scaling (a brightness or an "
		    "opacity has no negative half): choose sign positive, negative or "
		    "absolute, or other heatmaps");
	return heatmap_style_check(&st, err);
}

/* ---- several targets and faithfulness (issue 16) ---- */

/* What targets_options_set answers for a name that is not its own. */
#define NOT_THIS_BLOCK 1

/* targets=I,J,K (distinct classes), targets=topK, or none (one target). */
static int parse_targets(const char *value, struct attr_params *a, struct igs_error *err)
{
	a->n_targets = 0;
	a->targets_top = false;
	if (!strcasecmp(value, "none"))
		return 0;
	if (!strncasecmp(value, "top", 3)) {
		int k;
		if (int_in("targets=top", value + 3, 1, ATTR_TARGETS_MAX, &k, NULL))
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "targets=topK needs K from 1 to %d, got '%s'",
			                ATTR_TARGETS_MAX, value);
		a->n_targets = k;
		a->targets_top = true;
		return 0;
	}
	const char *p = value;
	for (;;) {
		size_t len = strcspn(p, ",");
		char item[24];
		if (len == 0 || len >= sizeof item) {
			a->n_targets = 0;
			return igs_fail(
			    err, IGS_ERR_BAD_OPTION,
			    "targets must be class indices separated by commas (I,J,K) or "
			    "topK, got '%s'",
			    value);
		}
		if (a->n_targets == ATTR_TARGETS_MAX) {
			a->n_targets = 0;
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "targets names more than %d classes", ATTR_TARGETS_MAX);
		}
		memcpy(item, p, len);
		item[len] = '\0';
		int rc = int_in("targets", item, 0, INT_MAX, &a->targets[a->n_targets], err);
		if (rc) {
			a->n_targets = 0;
			return rc;
		}
		for (int j = 0; j < a->n_targets; j++)
			if (a->targets[j] == a->targets[a->n_targets]) {
				a->n_targets = 0;
				return igs_fail(err, IGS_ERR_BAD_OPTION,
				                "targets lists class %s twice", item);
			}
		a->n_targets++;
		p += len;
		if (!*p)
			return 0;
		p++; /* the comma */
	}
}

/* faithfulness=deletion,insertion (either, both, none). */
static int parse_faithfulness(const char *value, unsigned *out, struct igs_error *err)
{
	unsigned set = 0;
	const char *p = value;
	while (*p) {
		size_t len = strcspn(p, ",");
		if (len == 8 && !strncasecmp(p, "deletion", 8))
			set |= FAITHFULNESS_DELETION;
		else if (len == 9 && !strncasecmp(p, "insertion", 9))
			set |= FAITHFULNESS_INSERTION;
		else if (len == 4 && !strncasecmp(p, "none", 4))
			;
		else
			return igs_fail(
			    err, IGS_ERR_BAD_OPTION,
			    "faithfulness: unknown curve '%.*s' (known: deletion, insertion, "
			    "none)",
			    (int)len, p);
		p += len;
		if (*p == ',')
			p++;
	}
	*out = set;
	return 0;
}

/* This block's options: 0 or an error when `name` is one of them, else
 * NOT_THIS_BLOCK. */
static int targets_options_set(struct request_options *o, const char *name, const char *value,
                               struct igs_error *err)
{
	if (!strcmp(name, "targets"))
		return parse_targets(value, &o->attr, err);
	if (!strcmp(name, "faithfulness"))
		return parse_faithfulness(value, &o->faithfulness, err);
	if (!strcmp(name, "faithfulness_steps"))
		return int_in(name, value, 1, FAITHFULNESS_MAX_STEPS, &o->faithfulness_steps, err);
	return NOT_THIS_BLOCK;
}

/* The evaluations of one target's attribution times the targets, plus
 * faithfulness's forward passes. */
static long long targets_evaluations(const struct request_options *o, long long per_target)
{
	long long targets = attribution_target_count(&o->attr);
	return per_target * targets +
	       targets * faithfulness_forward_passes(o->faithfulness, o->faithfulness_steps);
}

/* ===== the table ========================================================== */

int request_options_set(struct request_options *o, const char *name_in, const char *value,
                        int max_steps_cap, struct igs_error *err)
{
	/* CLI flags spell names with '-', HTTP with '_': accept both. */
	char name[64];
	size_t n = 0;
	for (; name_in[n] && n + 1 < sizeof name; n++)
		name[n] = name_in[n] == '-' ? '_' : name_in[n];
	name[n] = '\0';
	if (max_steps_cap <= 0)
		max_steps_cap = 4096;
	struct attr_params *a = &o->attr;
	int rc;

	if (!strcmp(name, "top_k"))
		return int_in(name, value, 1, 100000, &o->top_k, err);
	if (!strcmp(name, "include_background"))
		return bool_value(name, value, &o->include_background, err);
	if (!strcmp(name, "resize")) {
		int m = image_resize_mode_parse(value);
		if (m < 0)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "resize must be letterbox, center-crop or stretch, got '%s'", value);
		o->resize = (enum resize_mode)m;
		return 0;
	}
	if (!strcmp(name, "target"))
		return int_in(name, value, 0, INT_MAX, &a->target, err);
	if (!strcmp(name, "method")) {
		if (quadrature_rule_parse(value) >= 0)
			o->rule_given = true;
		if (attribution_method_parse(value, &a->method, &a->rule) < 0)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "method must be one of gausslegendre, riemann_left, riemann_right, "
			                "riemann_middle, riemann_trapezoid, saliency, input_x_gradient, "
			                "blur_ig, guided_ig; got '%s'",
			                value);
		return 0;
	}
	if (!strcmp(name, "steps")) {
		o->steps_given = true;
		return int_in(name, value, 1, max_steps_cap, &a->steps, err);
	}
	if (!strcmp(name, "baseline")) {
		/* one baseline, or a set joined with '+' (baseline_set.c) */
		if (attribution_baseline_set_parse(value, a) < 0)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "baseline must be gray, black, white, blur or noise, or up to "
			                "%d of them joined with '+' (black+white), got '%s'",
			                ATTR_BASELINE_SET_MAX, value);
		return 0;
	}
	if (!strcmp(name, "blur_sigma"))
		return double_in(name, value, 0.1, ATTR_BLUR_SIGMA_MAX, &a->blur_sigma, err);
	if (!strcmp(name, "seed")) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(value, &end, 10);
		if (errno || end == value || *end || value[0] == '-')
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "seed must be a non-negative integer, got '%s'", value);
		a->seed = v;
		return 0;
	}
	if (!strcmp(name, "tolerance")) {
		if (!strcasecmp(value, "none") || !strcasecmp(value, "null") || !*value) {
			a->tolerance = 0;
			return 0;
		}
		return double_in(name, value, 1e-9, 1, &a->tolerance, err);
	}
	if (!strcmp(name, "max_steps"))
		return int_in(name, value, 1, max_steps_cap, &a->max_steps, err);
	if (!strcmp(name, "heatmaps"))
		return parse_heatmaps(value, &o->heatmaps, err);
	if (!strcmp(name, "preview")) {
		if (!strcasecmp(value, "none") || !strcmp(value, "0")) {
			o->preview_px = 0;
			return 0;
		}
		return int_in(name, value, 8, 224, &o->preview_px, err);
	}
	if (!strcmp(name, "path_maps"))
		return bool_value(name, value, &a->path_maps, err);
	if (!strcmp(name, "output")) {
		int k = attribution_output_parse(value);
		if (k < 0)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "output must be logit, probability or logprob, got '%s'",
			                value);
		a->output = (enum output_kind)k;
		return 0;
	}
	if (!strcmp(name, "smoothgrad")) {
		int s = attribution_smooth_parse(value);
		if (s < 0)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "smoothgrad must be none, smoothgrad, smoothgrad_sq or vargrad, "
			                "got '%s'",
			                value);
		a->smooth = (enum smooth_kind)s;
		if (a->smooth != SMOOTH_NONE && a->smooth_samples == 0)
			a->smooth_samples = 16;
		return 0;
	}
	if (!strcmp(name, "smoothgrad_samples"))
		return int_in(name, value, 1, max_steps_cap, &a->smooth_samples, err);
	if (!strcmp(name, "smoothgrad_sigma"))
		return double_in(name, value, 0, 10, &a->smooth_sigma, err);
	if (!strcmp(name, "deadline_ms"))
		return int_in(name, value, 1, 24 * 3600 * 1000, &o->deadline_ms, err);
	if (set_heatmap_control(o, name, value, &rc, err))
		return rc;
	/* ---- the notebook's views (issue 15) ---- */
	if (!strcmp(name, "path_views"))
		return path_view_parse(value, &o->path_views, err);
	/* ---- Blur IG, Guided IG and baseline sets (issue 16) ---- */
	if (!strcmp(name, "blur_max_sigma"))
		return double_in(name, value, 0.1, ATTR_BLUR_SIGMA_MAX, &a->blur_max_sigma, err);
	if (!strcmp(name, "guided_fraction"))
		return double_in(name, value, 1e-6, 1, &a->guided_fraction, err);
	if (!strcmp(name, "guided_max_dist"))
		return double_in(name, value, 0, 1, &a->guided_max_dist, err);
	if (!strcmp(name, "baseline_samples")) {
		if (!strcasecmp(value, "none") || !strcmp(value, "0")) {
			a->baseline_samples = 0;
			return 0;
		}
		return int_in(name, value, 1, max_steps_cap, &a->baseline_samples, err);
	}
	/* ---- end of Blur IG, Guided IG and baseline sets ---- */
	if ((rc = targets_options_set(o, name, value, err)) != NOT_THIS_BLOCK)
		return rc;
	return igs_fail(err, IGS_ERR_BAD_OPTION, "unknown option '%s'", name_in);
}

unsigned request_options_path_views(const struct request_options *o)
{
	if (o->path_views)
		return o->path_views;
	return o->attr.path_maps ? PATH_VIEW_GRADIENT : 0;
}

void request_options_resolve(struct request_options *o)
{
	struct attr_params *a = &o->attr;
	/* the notebook's views (issue 15): what the attribution keeps per point */
	unsigned views = request_options_path_views(o);
	a->path_maps = views & PATH_VIEW_GRADIENT;
	a->path_steps = views & PATH_VIEW_STEPS;
	if (a->method != ATTR_INTEGRATED_GRADIENTS || !(a->tolerance > 0))
		return;
	if (!o->rule_given)
		a->rule = ATTR_ADAPTIVE_RULE;
	if (!o->steps_given && a->steps > ATTR_ADAPTIVE_START_POINTS)
		a->steps = ATTR_ADAPTIVE_START_POINTS;
}

/* ===== limits on one request's work ======================================= */

long long request_options_evaluations(const struct request_options *o)
{
	const struct attr_params *a = &o->attr;
	long long points = 1;
	if (a->method == ATTR_INTEGRATED_GRADIENTS) {
		points = a->steps;
		if (a->tolerance > 0 && a->max_steps > points)
			points = a->max_steps;
		/* adaptive Gauss-Legendre recomputes every order: up to twice
		 * max_steps in all (the nested rules reuse every point) */
		if (a->tolerance > 0 && o->rule_given && a->rule == RULE_GAUSS_LEGENDRE)
			points *= 2;
	}
	if (a->method == ATTR_BLUR_IG || a->method == ATTR_GUIDED_IG)
		points = a->steps;
	long long samples = a->smooth != SMOOTH_NONE && a->smooth_samples > 1 ? a->smooth_samples : 1;
	/* baseline sets: one run per baseline (baseline_set.c) */
	if (attribution_method_uses_baseline(a->method))
		samples *= attribution_baseline_set_size(a);
	return targets_evaluations(o, points * samples);
}

int request_options_check_limits(const struct request_options *o, bool attribution,
                                 const struct request_limits *l, struct igs_error *err)
{
	if (l->max_deadline_ms > 0 && o->deadline_ms > l->max_deadline_ms)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "deadline_ms %d is over this server's limit of %d "
		                "(--max-deadline-ms)",
		                o->deadline_ms, l->max_deadline_ms);
	if (!attribution || l->max_evaluations <= 0)
		return 0;
	long long evals = request_options_evaluations(o);
	if (evals > l->max_evaluations)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "the request asks for %lld forward+backward passes (path points "
		                "x smoothgrad_samples x baselines x targets, + faithfulness; "
		                "max_steps with tolerance), over this "
		                "server's limit of %d (--max-evaluations)",
		                evals, l->max_evaluations);
	return 0;
}
