/*
 * cli_manifest.c - `igserve attribute --manifest FILE --out DIR`: every line
 * of a JSON-lines manifest explained into DIR (contract: Many images).
 *
 * For a line with id NAME: DIR/NAME.json (the /attribute JSON, heatmaps
 * named by file), DIR/NAME.<map>.png (with targets=, the targets after the
 * first as DIR/NAME.target_CLASS.<map>.png), and DIR/NAME.npy with "raw": "npy";
 * with path maps also DIR/NAME.path_NNNN[.VIEW].png and the per-point
 * floats DIR/NAME.path_steps.npy, DIR/NAME.path_gradient_maps.npy.
 * Every file is written atomically (file_write_atomic), the JSON last: its
 * presence means the line is done, so a rerun skips it and an interrupted
 * run resumes where it stopped.  --shard I/N takes the lines whose index
 * (0-based, counting every line of the file) is I mod N, so N jobs
 * partition a manifest without talking to each other.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "file.h"
#include "json_render.h"
#include "manifest.h"
#include "npy.h"
#include "service.h"

int cli_parse_shard(const char *text, int *index, int *count)
{
	char *end;
	errno = 0;
	long i = strtol(text, &end, 10);
	if (errno || end == text || *end != '/')
		return -1;
	const char *rest = end + 1;
	long n = strtol(rest, &end, 10);
	if (errno || end == rest || *end || n < 1 || n > 1000000 || i < 0 || i >= n)
		return -1;
	*index = (int)i;
	*count = (int)n;
	return 0;
}

static bool blank(const char *p, const char *end)
{
	for (; p < end; p++)
		if (*p != ' ' && *p != '\t' && *p != '\r')
			return false;
	return true;
}

struct tally {
	long lines, in_shard, done, skipped, failed;
};

static void show_progress(const struct tally *t, bool tty, bool last)
{
	long finished = t->done + t->skipped + t->failed;
	if (tty) {
		int width = 30, filled = t->in_shard ? (int)(width * finished / t->in_shard) : width;
		fprintf(stderr, "\r[%.*s%*s] %ld/%ld  done %ld, skipped %ld, failed %ld%s", filled,
		        "##############################", width - filled, "", finished, t->in_shard,
		        t->done, t->skipped, t->failed, last ? "\n" : "");
		fflush(stderr);
	}
}

/* DIR/NAME.SUFFIX into buf; -1 when too long. */
static int out_path(char *buf, size_t size, const char *dir, const char *id, const char *suffix)
{
	int n = snprintf(buf, size, "%s/%s%s", dir, id, suffix);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

static int write_map(struct rendered_png *png, const char *dir, const char *id,
                     struct igs_error *err)
{
	char suffix[64], path[4096];
	snprintf(suffix, sizeof suffix, ".%s.png", png->name);
	if (out_path(path, sizeof path, dir, id, suffix))
		return igs_fail(err, IGS_ERR_IO, "%s: output path too long", dir);
	int rc = file_write_atomic(path, png->bytes, png->len, err);
	/* the JSON sits beside the maps: it names them relative to itself */
	if (rc == 0 && !(png->file = strdup(strrchr(path, '/') + 1)))
		rc = igs_fail(err, IGS_ERR_NOMEM, "out of memory");
	return rc;
}

/* ---- the notebook's views (issue 15) ---- */

/* DIR/ID.SUFFIX, atomically, as float32 .npy. */
static int write_npy(const char *dir, const char *id, const char *suffix, const float *data,
                     const size_t *shape, int ndim, struct igs_error *err)
{
	char path[4096];
	if (out_path(path, sizeof path, dir, id, suffix))
		return igs_fail(err, IGS_ERR_IO, "%s: output path too long", dir);
	unsigned char *npy = NULL;
	size_t len = 0;
	int rc = npy_encode_f32(data, shape, ndim, &npy, &len, err);
	if (rc == 0)
		rc = file_write_atomic(path, npy, len, err);
	free(npy);
	return rc;
}

/* The step views' PNGs and the per-point floats (cli_attribute.c's
 * --out files, prefixed by the line's id). */
static int write_path_views(struct attribute_result *res, const char *dir, const char *id,
                            struct igs_error *err)
{
	const struct attr_result *r = &res->attr;
	int rc = 0;
	for (int k = 0; res->path_step_normalized && k < r->path_count && rc == 0; k++)
		rc = write_map(&res->path_step_normalized[k], dir, id, err);
	for (int k = 0; res->path_step_deviation && k < r->path_count && rc == 0; k++)
		rc = write_map(&res->path_step_deviation[k], dir, id, err);
	const size_t shape[4] = {(size_t)r->path_count, (size_t)r->size, (size_t)r->size, 3};
	if (rc == 0 && r->path_steps)
		rc = write_npy(dir, id, ".path_steps.npy", r->path_steps, shape, 4, err);
	if (rc == 0 && r->path_maps)
		rc = write_npy(dir, id, ".path_gradient_maps.npy", r->path_maps, shape, 3, err);
	return rc;
}

/* One line's outputs: maps, .npy, then the JSON. */
static int write_line_outputs(struct service *svc, struct attribute_result *res, const char *dir,
                              const char *id, struct igs_error *err)
{
	int rc = 0;
	for (int k = 0; res->path_maps && k < res->attr.path_count && rc == 0; k++)
		rc = write_map(&res->path_maps[k], dir, id, err);
	for (int i = 0; i < res->map_count && rc == 0; i++)
		rc = write_map(&res->maps[i], dir, id, err);
	/* targets=: the other targets' maps beside the first's */
	for (int t = 0; t < res->more_count && rc == 0; t++) {
		char target_id[4096];
		if (snprintf(target_id, sizeof target_id, "%s.target_%d", id,
		             res->more[t].target.index) >= (int)sizeof target_id)
			return igs_fail(err, IGS_ERR_IO, "%s: output path too long", dir);
		for (int i = 0; i < res->more[t].map_count && rc == 0; i++)
			rc = write_map(&res->more[t].maps[i], dir, target_id, err);
	}
	if (rc == 0)
		rc = write_path_views(res, dir, id, err);
	char path[4096];
	if (rc == 0 && res->options.raw_npy) {
		unsigned char *npy = NULL;
		size_t len = 0;
		if (out_path(path, sizeof path, dir, id, ".npy"))
			return igs_fail(err, IGS_ERR_IO, "%s: output path too long", dir);
		rc = npy_encode_attributions(res->attr.attr, res->attr.size,
		                             res->options.raw_format, &npy, &len, err);
		if (rc == 0)
			rc = file_write_atomic(path, npy, len, err);
		free(npy);
		res->options.raw_npy = false; /* a file, not base64 in the JSON */
	}
	if (rc)
		return rc;
	char *text = json_render_attribute(svc, res);
	if (!text)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory rendering the JSON");
	if (out_path(path, sizeof path, dir, id, ".json"))
		rc = igs_fail(err, IGS_ERR_IO, "%s: output path too long", dir);
	else {
		size_t len = strlen(text);
		text[len] = '\n'; /* replaces the NUL: one line, newline-terminated */
		rc = file_write_atomic(path, text, len + 1, err);
	}
	free(text);
	return rc;
}

/* The image of a line: relative paths are relative to the manifest. */
static void image_path(char *buf, size_t size, const char *manifest, const char *image)
{
	const char *slash = strrchr(manifest, '/');
	if (image[0] == '/' || !slash)
		snprintf(buf, size, "%s", image);
	else
		snprintf(buf, size, "%.*s/%s", (int)(slash - manifest), manifest, image);
}

int cli_attribute_manifest(const char *manifest, const char *out_dir, int shard_index,
                           int shard_count, struct service *svc, struct service_worker *worker,
                           const struct request_options *base, int max_steps_cap,
                           size_t max_bytes)
{
	struct igs_error err = {0};
	unsigned char *text = NULL;
	size_t len = 0;
	if (file_read_all(manifest, 0, &text, &len, &err)) {
		fprintf(stderr, "igserve attribute: %s\n", err.message);
		return 1;
	}
	bool tty = isatty(STDERR_FILENO);
	struct tally t = {0};
	/* count the shard's lines first, for the progress bar */
	for (char *p = (char *)text, *end = p + len; p < end; t.lines++) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *stop = nl ? nl : end;
		if (t.lines % shard_count == shard_index && !blank(p, stop))
			t.in_shard++;
		p = nl ? nl + 1 : end;
	}
	long index = 0;
	for (char *p = (char *)text; p < (char *)text + len; index++) {
		char *nl = memchr(p, '\n', (size_t)((char *)text + len - p));
		if (nl)
			*nl = '\0';
		char *line = p;
		p = nl ? nl + 1 : (char *)text + len;
		if (index % shard_count != shard_index)
			continue;
		struct request_options o = *base;
		struct manifest_entry e;
		int rc = manifest_line_parse(line, &e, &o, max_steps_cap, &err);
		if (rc == 1)
			continue; /* blank */
		if (rc) {
			t.failed++;
			fprintf(stderr, "%sigserve attribute: %s:%ld: %s\n", tty ? "\n" : "", manifest,
			        index + 1, err.message);
			show_progress(&t, tty, false);
			continue;
		}
		char json_path[4096], img[4096];
		if (out_path(json_path, sizeof json_path, out_dir, e.id, ".json") == 0 &&
		    file_exists(json_path)) {
			t.skipped++;
			manifest_entry_clear(&e);
			show_progress(&t, tty, false);
			continue;
		}
		image_path(img, sizeof img, manifest, e.image);
		unsigned char *bytes = NULL;
		size_t n = 0;
		struct job_control job;
		job_init(&job);
		struct attribute_result res = {0};
		rc = file_read_all(img, max_bytes, &bytes, &n, &err);
		if (rc == 0)
			rc = service_attribute(worker, bytes, n, &o, &job, &res, &err);
		free(bytes);
		if (rc == 0)
			rc = write_line_outputs(svc, &res, out_dir, e.id, &err);
		if (rc) {
			t.failed++;
			fprintf(stderr, "%sigserve attribute: %s:%ld (%s): %s\n", tty ? "\n" : "",
			        manifest, index + 1, e.id, err.message);
		} else {
			t.done++;
			if (!tty)
				fprintf(stderr, "igserve attribute: %s:%ld: %s.json\n", manifest, index + 1,
				        e.id);
		}
		attribute_result_clear(&res);
		manifest_entry_clear(&e);
		show_progress(&t, tty, false);
	}
	show_progress(&t, tty, true);
	free(text);
	fprintf(stderr,
	        "igserve attribute: %s, shard %d/%d: %ld lines, %ld in this shard: %ld explained, "
	        "%ld already done, %ld failed\n",
	        manifest, shard_index, shard_count, t.lines, t.in_shard, t.done, t.skipped, t.failed);
	return t.failed ? 1 : 0;
}
