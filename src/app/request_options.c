/*
 * request_options.c - the options of one request, by their contract names.
 *
 * HTTP query parameters, form fields and CLI flags all arrive here as
 * (name, text) pairs, so every front end validates the same way and says
 * the same thing about a bad value.
 */
#include "service.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void request_options_init(struct request_options *o)
{
	*o = (struct request_options){
		.top_k = 5,
		.resize = RESIZE_LETTERBOX,
		.target = -1,
		.method = ATTR_INTEGRATED_GRADIENTS,
		.rule = RULE_GAUSS_LEGENDRE,
		.steps = 50,
		.baseline = BASELINE_GRAY,
		.blur_sigma = 10.0,
		.seed = 0,
		.tolerance = 0,
		.max_steps = 512,
		.heatmaps = HEATMAP_DEFAULT,
		.raw_npy = false,
		.path_maps = false,
		.output = OUTPUT_LOGIT,
		.smooth = SMOOTH_NONE,
		.smooth_samples = 0,
		.smooth_sigma = 0.15,
		.deadline_ms = 0,
	};
}

double igs_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ===== names ============================================================== */

static const char *const rule_names[] = {
	[RULE_GAUSS_LEGENDRE] = "gausslegendre",   [RULE_RIEMANN_LEFT] = "riemann_left",
	[RULE_RIEMANN_RIGHT] = "riemann_right",    [RULE_RIEMANN_MIDDLE] = "riemann_middle",
	[RULE_RIEMANN_TRAPEZOID] = "riemann_trapezoid",
};

static const char *const baseline_names[] = {
	[BASELINE_GRAY] = "gray",   [BASELINE_BLACK] = "black", [BASELINE_WHITE] = "white",
	[BASELINE_BLUR] = "blur",   [BASELINE_NOISE] = "noise",
};

static const char *const smooth_names[] = {
	[SMOOTH_NONE] = "none", [SMOOTH_GRAD] = "smoothgrad", [SMOOTH_GRAD_SQ] = "smoothgrad_sq",
	[SMOOTH_VARGRAD] = "vargrad",
};

static const struct {
	const char *name;
	unsigned bit;
} heatmap_names[] = {
	{"normalized", HEATMAP_NORMALIZED}, {"deviation", HEATMAP_DEVIATION},
	{"magnitude", HEATMAP_MAGNITUDE},   {"overlay", HEATMAP_OVERLAY},
	{"channel_r", HEATMAP_CHANNEL_R},   {"channel_g", HEATMAP_CHANNEL_G},
	{"channel_b", HEATMAP_CHANNEL_B},   {"overlay_full", HEATMAP_OVERLAY_FULL},
};

const char *quad_rule_name(enum quad_rule r)
{
	return (unsigned)r < sizeof rule_names / sizeof *rule_names ? rule_names[r] : "?";
}

const char *baseline_name(enum baseline_kind b)
{
	return (unsigned)b < sizeof baseline_names / sizeof *baseline_names ? baseline_names[b] : "?";
}

static int lookup(const char *const *names, size_t count, const char *value)
{
	for (size_t i = 0; i < count; i++)
		if (names[i] && !strcasecmp(names[i], value))
			return (int)i;
	return -1;
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
		*out = HEATMAP_DEFAULT | HEATMAP_OVERLAY_FULL;
		return 0;
	}
	unsigned mask = 0;
	const char *p = value;
	while (*p) {
		size_t len = strcspn(p, ",");
		bool found = false;
		for (size_t i = 0; i < sizeof heatmap_names / sizeof *heatmap_names; i++) {
			if (strlen(heatmap_names[i].name) == len &&
			    !strncasecmp(heatmap_names[i].name, p, len)) {
				mask |= heatmap_names[i].bit;
				found = true;
			}
		}
		if (!found && len > 0)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "heatmaps: unknown map '%.*s' (known: normalized, deviation, "
			                "magnitude, overlay, overlay_full, channel_r, channel_g, "
			                "channel_b, all, none)",
			                (int)len, p);
		p += len;
		if (*p == ',')
			p++;
	}
	*out = mask;
	return 0;
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

	if (!strcmp(name, "top_k"))
		return int_in(name, value, 1, 100000, &o->top_k, err);
	if (!strcmp(name, "resize")) {
		int m = resize_mode_parse(value);
		if (m < 0)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "resize must be letterbox, center-crop or stretch, got '%s'", value);
		o->resize = (enum resize_mode)m;
		return 0;
	}
	if (!strcmp(name, "target"))
		return int_in(name, value, 0, INT_MAX, &o->target, err);
	if (!strcmp(name, "method")) {
		int r = lookup(rule_names, sizeof rule_names / sizeof *rule_names, value);
		if (r >= 0) {
			o->method = ATTR_INTEGRATED_GRADIENTS;
			o->rule = (enum quad_rule)r;
		} else if (!strcasecmp(value, "integrated_gradients") || !strcasecmp(value, "ig")) {
			o->method = ATTR_INTEGRATED_GRADIENTS;
		} else if (!strcasecmp(value, "saliency")) {
			o->method = ATTR_SALIENCY;
		} else if (!strcasecmp(value, "input_x_gradient")) {
			o->method = ATTR_INPUT_X_GRADIENT;
		} else {
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "method must be one of gausslegendre, riemann_left, riemann_right, "
			                "riemann_middle, riemann_trapezoid, saliency, input_x_gradient; "
			                "got '%s'",
			                value);
		}
		return 0;
	}
	if (!strcmp(name, "steps"))
		return int_in(name, value, 1, max_steps_cap, &o->steps, err);
	if (!strcmp(name, "baseline")) {
		int b = lookup(baseline_names, sizeof baseline_names / sizeof *baseline_names, value);
		if (b < 0)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "baseline must be gray, black, white, blur or noise, got '%s'", value);
		o->baseline = (enum baseline_kind)b;
		return 0;
	}
	if (!strcmp(name, "blur_sigma"))
		return double_in(name, value, 0.1, 1000, &o->blur_sigma, err);
	if (!strcmp(name, "seed")) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(value, &end, 10);
		if (errno || end == value || *end || value[0] == '-')
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "seed must be a non-negative integer, got '%s'", value);
		o->seed = v;
		return 0;
	}
	if (!strcmp(name, "tolerance")) {
		if (!strcasecmp(value, "none") || !strcasecmp(value, "null") || !*value) {
			o->tolerance = 0;
			return 0;
		}
		return double_in(name, value, 1e-9, 1, &o->tolerance, err);
	}
	if (!strcmp(name, "max_steps"))
		return int_in(name, value, 1, max_steps_cap, &o->max_steps, err);
	if (!strcmp(name, "heatmaps"))
		return parse_heatmaps(value, &o->heatmaps, err);
	if (!strcmp(name, "raw")) {
		if (!strcasecmp(value, "npy") || !strcasecmp(value, "true") || !strcmp(value, "1"))
			o->raw_npy = true;
		else if (!strcasecmp(value, "none") || !strcasecmp(value, "false") || !strcmp(value, "0"))
			o->raw_npy = false;
		else
			return igs_fail(err, IGS_ERR_BAD_OPTION, "raw must be npy or none, got '%s'", value);
		return 0;
	}
	if (!strcmp(name, "path_maps"))
		return bool_value(name, value, &o->path_maps, err);
	if (!strcmp(name, "output")) {
		if (!strcasecmp(value, "logit"))
			o->output = OUTPUT_LOGIT;
		else if (!strcasecmp(value, "probability"))
			o->output = OUTPUT_PROBABILITY;
		else
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "output must be logit or probability, got '%s'", value);
		return 0;
	}
	if (!strcmp(name, "smoothgrad")) {
		int s = lookup(smooth_names, sizeof smooth_names / sizeof *smooth_names, value);
		if (s < 0)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "smoothgrad must be none, smoothgrad, smoothgrad_sq or vargrad, "
			                "got '%s'",
			                value);
		o->smooth = (enum smooth_kind)s;
		if (o->smooth != SMOOTH_NONE && o->smooth_samples == 0)
			o->smooth_samples = 16;
		return 0;
	}
	if (!strcmp(name, "smoothgrad_samples"))
		return int_in(name, value, 1, max_steps_cap, &o->smooth_samples, err);
	if (!strcmp(name, "smoothgrad_sigma"))
		return double_in(name, value, 0, 10, &o->smooth_sigma, err);
	if (!strcmp(name, "deadline_ms"))
		return int_in(name, value, 1, 24 * 3600 * 1000, &o->deadline_ms, err);
	return igs_fail(err, IGS_ERR_BAD_OPTION, "unknown option '%s'", name_in);
}
