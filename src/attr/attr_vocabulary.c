/*
 * attr_vocabulary.c - the attribution options' defaults and their contract
 * names ("gray", "smoothgrad", "probability", "gausslegendre"...), both ways.
 */
#include "attribution.h"

#include <stddef.h>
#include <string.h>

#include <strings.h>

#include "quadrature.h"

/* ---- vocabulary ---- */

void attr_params_init(struct attr_params *p)
{
	*p = (struct attr_params){
	    .target = -1,
	    .method = ATTR_INTEGRATED_GRADIENTS,
	    .rule = RULE_GAUSS_LEGENDRE,
	    .steps = 50,
	    .baseline = BASELINE_GRAY,
	    .blur_sigma = 10.0,
	    .seed = 0,
	    .tolerance = 0,
	    .max_steps = 512,
	    .path_maps = false,
	    .output = OUTPUT_LOGIT,
	    .smooth = SMOOTH_NONE,
	    .smooth_samples = 0,
	    .smooth_sigma = 0.15,
	    .blur_max_sigma = 50.0,
	    .guided_fraction = 0.25,
	    .guided_max_dist = 0.02,
	    .baseline_count = 0,
	    .baseline_samples = 0,
	};
}

static const char *const baseline_names[BASELINE_COUNT] = {
    [BASELINE_GRAY] = "gray", [BASELINE_BLACK] = "black", [BASELINE_WHITE] = "white",
    [BASELINE_BLUR] = "blur", [BASELINE_NOISE] = "noise",
};

static const char *const smooth_names[SMOOTH_COUNT] = {
    [SMOOTH_NONE] = "none",
    [SMOOTH_GRAD] = "smoothgrad",
    [SMOOTH_GRAD_SQ] = "smoothgrad_sq",
    [SMOOTH_VARGRAD] = "vargrad",
};

static const char *const output_names[OUTPUT_COUNT] = {
    [OUTPUT_LOGIT] = "logit",
    [OUTPUT_PROBABILITY] = "probability",
    [OUTPUT_LOGPROB] = "logprob",
};

static int lookup(const char *const *names, int count, const char *name)
{
	for (int i = 0; i < count; i++)
		if (!strcasecmp(names[i], name))
			return i;
	return -1;
}

const char *attribution_baseline_name(enum baseline_kind b)
{
	return (unsigned)b < BASELINE_COUNT ? baseline_names[b] : "?";
}

int attribution_baseline_parse(const char *name)
{
	return lookup(baseline_names, BASELINE_COUNT, name);
}

const char *attribution_smooth_name(enum smooth_kind k)
{
	return (unsigned)k < SMOOTH_COUNT ? smooth_names[k] : "?";
}

int attribution_smooth_parse(const char *name)
{
	return lookup(smooth_names, SMOOTH_COUNT, name);
}

const char *attribution_output_name(enum output_kind k)
{
	return (unsigned)k < OUTPUT_COUNT ? output_names[k] : "?";
}

int attribution_output_parse(const char *name)
{
	return lookup(output_names, OUTPUT_COUNT, name);
}

const char *attribution_method_name(enum attr_method method, enum quad_rule rule)
{
	switch (method) {
	case ATTR_SALIENCY:
		return "saliency";
	case ATTR_INPUT_X_GRADIENT:
		return "input_x_gradient";
	case ATTR_BLUR_IG:
		return "blur_ig";
	case ATTR_GUIDED_IG:
		return "guided_ig";
	case ATTR_INTEGRATED_GRADIENTS:
		break;
	}
	return quadrature_rule_name(rule);
}

int attribution_method_parse(const char *name, enum attr_method *method, enum quad_rule *rule)
{
	int r = quadrature_rule_parse(name);
	if (r >= 0) {
		*method = ATTR_INTEGRATED_GRADIENTS;
		*rule = (enum quad_rule)r;
	} else if (!strcasecmp(name, "integrated_gradients") || !strcasecmp(name, "ig")) {
		*method = ATTR_INTEGRATED_GRADIENTS;
	} else if (!strcasecmp(name, "saliency")) {
		*method = ATTR_SALIENCY;
	} else if (!strcasecmp(name, "input_x_gradient")) {
		*method = ATTR_INPUT_X_GRADIENT;
	} else if (!strcasecmp(name, "blur_ig")) {
		*method = ATTR_BLUR_IG;
	} else if (!strcasecmp(name, "guided_ig")) {
		*method = ATTR_GUIDED_IG;
	} else {
		return -1;
	}
	return 0;
}

bool attribution_method_uses_baseline(enum attr_method method)
{
	return method == ATTR_INTEGRATED_GRADIENTS || method == ATTR_GUIDED_IG;
}

bool attribution_method_is_path(enum attr_method method)
{
	return method == ATTR_INTEGRATED_GRADIENTS || method == ATTR_BLUR_IG ||
	       method == ATTR_GUIDED_IG;
}
