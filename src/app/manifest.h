/*
 * manifest.h - one line of a JSON-lines manifest of images to explain
 * (contract: Many images):
 *
 *   {"image": "cats/1.jpg", "id": "cat-1", "target": 281, "steps": 64}
 *
 * `image` is required; `id` names the outputs (default: the image's file
 * name without its extension) and must be 1-128 characters of
 * [A-Za-z0-9._-], not starting with '.'; every other key is a request
 * option by its contract name, its value a string, a number, a boolean or
 * (for `heatmaps`) an array of strings, applied over the command line's.
 */
#ifndef IGSERVE_MANIFEST_H
#define IGSERVE_MANIFEST_H

#include "error.h"
#include "request_options.h"

struct manifest_entry {
	char *image; /* malloc'd, as written in the line */
	char id[129];
};

/*
 * manifest_line_parse - parse `line` (NUL-terminated, without its newline)
 * into *e and apply its options to *o.  Returns 1 for a blank line (only
 * white space: nothing to do), 0 on success, or IGS_ERR_BAD_OPTION naming
 * the problem (not JSON, not an object, no image, a bad id, a bad option).
 * On success the caller frees e->image with manifest_entry_clear.
 */
int manifest_line_parse(const char *line, struct manifest_entry *e, struct request_options *o,
                        int max_steps_cap, struct igs_error *err);
void manifest_entry_clear(struct manifest_entry *e);

/* manifest_id_valid - whether `id` may name output files (rule above). */
int manifest_id_valid(const char *id);

#endif
