/*
 * path_views.c - the per-point views of the path (see path_views.h).  The
 * step maps are heatmap.c's normalized and deviation maps of one point's
 * step: the same formulas by the same code.
 */
#include "path_views.h"

#include <string.h>
#include <strings.h>

/* Indexed by bit position, in the order path rows list them. */
static const char *const path_view_names[PATH_VIEW_KINDS] = {"gradient", "step_normalized",
                                                             "step_deviation"};

const char *path_view_name(unsigned bit)
{
	for (int i = 0; i < PATH_VIEW_KINDS; i++)
		if (bit == 1u << i)
			return path_view_names[i];
	return NULL;
}

unsigned path_view_bit(const char *name, size_t len)
{
	for (int i = 0; i < PATH_VIEW_KINDS; i++)
		if (strlen(path_view_names[i]) == len &&
		    !strncasecmp(path_view_names[i], name, len))
			return 1u << i;
	return 0;
}

int path_view_parse(const char *value, unsigned *out, struct igs_error *err)
{
	if (!strcasecmp(value, "all")) {
		*out = PATH_VIEW_ALL;
		return 0;
	}
	unsigned mask = 0;
	for (const char *p = value; *p;) {
		size_t len = strcspn(p, ",");
		unsigned bit = path_view_bit(p, len);
		if (!bit && len > 0)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "path_views: unknown view '%.*s' (known: gradient, "
			                "step_normalized, step_deviation, all)",
			                (int)len, p);
		mask |= bit;
		p += len;
		if (*p == ',')
			p++;
	}
	if (!mask)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "path_views: name at least one of gradient, step_normalized, "
		                "step_deviation (got '%s'; path_maps=false draws none)",
		                value);
	*out = mask;
	return 0;
}

int path_view_render_step(unsigned bit, const float *step, int size, struct heatmap_image *out,
                          struct igs_error *err)
{
	memset(out, 0, sizeof *out);
	if (bit == PATH_VIEW_STEP_NORMALIZED)
		return heatmap_render(HEATMAP_NORMALIZED, step, size, NULL, out, err);
	if (bit == PATH_VIEW_STEP_DEVIATION)
		return heatmap_render(HEATMAP_DEVIATION, step, size, NULL, out, err);
	return igs_fail(err, IGS_ERR_INTERNAL, "path views: %#x is not a step view", bit);
}
