/*
 * request_canonical.c - the canonical text of a request's options, which
 * the HTTP result cache hashes into its key (with the route, the image
 * bytes and the model's sha256).  Two requests with the same text get the
 * same answer from the same model and image, so the text must name every
 * option that changes an answer: a missing one would serve one request's
 * answer to another.
 */
#include "request_options.h"

#include <stdio.h>
#include <string.h>

/*
 * The guard against a forgotten option: these are the structs' sizes
 * (x86-64) when every field below was written.  A new field changes them
 * (or, tucked into padding, should be noticed in review): add it to the
 * text, then update the numbers.
 */
#if defined(__x86_64__) && defined(__LP64__)
_Static_assert(sizeof(struct request_options) == 336,
               "struct request_options changed: add the new option to "
               "request_options_canonical, then update this size");
_Static_assert(sizeof(struct attr_params) == 224,
               "struct attr_params changed: add the new field to "
               "request_options_canonical, then update this size");
#endif

void request_options_normalized(const struct request_options *in, struct request_options *out)
{
	/* memcpy keeps the padding as `in` has it: zero, since options start
	 * from calloc'd or initialized memory and are set field by field */
	memcpy(out, in, sizeof *out);
	request_options_resolve(out);
	out->deadline_ms = 0;
	out->preview_px = 0;
	out->rule_given = out->steps_given = false;
}

int request_options_canonical(const struct request_options *in, char *buf, size_t cap)
{
	struct request_options o;
	request_options_normalized(in, &o);
	const struct attr_params *a = &o.attr;
	const struct heatmap_controls *hc = &o.heatmap_controls;
	/* the baseline set, member by member ("" when there is none) */
	char set[4 * ATTR_BASELINE_SET_MAX + 1] = "";
	for (int i = 0; i < a->baseline_count && i < ATTR_BASELINE_SET_MAX; i++)
		snprintf(set + strlen(set), sizeof set - strlen(set), "%d+", (int)a->baselines[i]);
	int n = snprintf(buf, cap,
	                 "v1;top_k=%d;include_background=%d;resize=%d;heatmaps=%u;raw_npy=%d;"
	                 "target=%d;first_default_target=%d;method=%d;rule=%d;steps=%d;"
	                 "baseline=%d;blur_sigma=%a;seed=%llu;tolerance=%a;max_steps=%d;"
	                 "path_maps=%d;output=%d;smooth=%d;smooth_samples=%d;smooth_sigma=%a;"
	                 "path_views=%u;path_steps=%d;sign=%d;clip=%a;fixed=%d;scale_image=%d;"
	                 "vmin_given=%d;vmax_given=%d;vmin=%a;vmax=%a;colormap=%d;alpha=%a;"
	                 "raw_format=%d;blur_max_sigma=%a;guided_fraction=%a;guided_max_dist=%a;"
	                 "baseline_samples=%d;baselines=%s",
	                 o.top_k, o.include_background, (int)o.resize, o.heatmaps, o.raw_npy,
	                 a->target, a->first_default_target, (int)a->method, (int)a->rule,
	                 a->steps, (int)a->baseline, a->blur_sigma, a->seed, a->tolerance,
	                 a->max_steps, a->path_maps, (int)a->output, (int)a->smooth,
	                 a->smooth_samples, a->smooth_sigma, o.path_views, a->path_steps,
	                 hc->sign, hc->clip, hc->fixed, hc->scale_image, hc->vmin_given,
	                 hc->vmax_given, hc->vmin, hc->vmax, hc->colormap, hc->alpha, o.raw_format,
	                 a->blur_max_sigma, a->guided_fraction, a->guided_max_dist, a->baseline_samples,
	                 set);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	/* several targets and faithfulness (issue 16) */
	int m = snprintf(buf + n, cap - (size_t)n,
	                 ";n_targets=%d;targets_top=%d;faithfulness=%u;faithfulness_steps=%d;targets=",
	                 a->n_targets, a->targets_top, o.faithfulness, o.faithfulness_steps);
	for (int t = 0; m >= 0 && !a->targets_top && t < a->n_targets && t < ATTR_TARGETS_MAX;
	     t++) {
		if ((size_t)(n + m) >= cap)
			return -1;
		int k = snprintf(buf + n + m, cap - (size_t)(n + m), "%s%d", t ? "," : "",
		                 a->targets[t]);
		m = k < 0 ? -1 : m + k;
	}
	if (m < 0 || (size_t)(n + m) >= cap)
		return -1;
	return n + m;
}
