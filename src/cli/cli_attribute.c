/*
 * cli_attribute.c - `igserve attribute`: the /attribute JSON of one image
 * on stdout; --out DIR writes the heatmaps as PNG files, --raw FILE the
 * attributions as .npy; with path maps --out DIR also gets the per-point
 * floats as .npy (path_views.h).  Long runs report progress on stderr.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "file.h"
#include "heatmap.h"
#include "json_render.h"
#include "npy.h"
#include "path_views.h"
#include "service.h"

static void on_progress(void *ctx, const struct job_progress *p)
{
	(void)ctx;
	if (isfinite(p->relative_l2))
		fprintf(stderr,
		        "igserve attribute: %d/%d path points, estimated error %.3g, completeness "
		        "error %.3g\n",
		        p->points_done, p->points_total, p->relative_l2, p->relative_error);
	else
		fprintf(stderr, "igserve attribute: %d/%d path points, completeness error %.3g\n",
		        p->points_done, p->points_total, p->relative_error);
}

/* One PNG of the answer into dir/PREFIXNAME.png; the JSON then names the
 * file. */
static int write_png_named(struct rendered_png *png, const char *dir, const char *prefix,
                           struct igs_error *err)
{
	char path[4096];
	int n = snprintf(path, sizeof path, "%s/%s%s.png", dir, prefix, png->name);
	if (n < 0 || (size_t)n >= sizeof path)
		return igs_fail(err, IGS_ERR_IO, "%s: output directory path too long", dir);
	/* Exclusively: never through a planted symbolic link, never over a file. */
	int rc = file_write_new(path, png->bytes, png->len, err);
	if (rc == 0 && !(png->file = strdup(path)))
		rc = igs_fail(err, IGS_ERR_NOMEM, "out of memory");
	return rc;
}

static int write_png(struct rendered_png *png, const char *dir, struct igs_error *err)
{
	return write_png_named(png, dir, "", err);
}

/* With targets=, the targets after the first: their maps as
 * target_CLASS.NAME.png (the first target's keep the plain names). */
static int write_more_targets(struct attribute_result *res, const char *dir,
                              struct igs_error *err)
{
	int rc = 0;
	for (int t = 0; t < res->more_count && rc == 0; t++) {
		char prefix[32];
		snprintf(prefix, sizeof prefix, "target_%d.", res->more[t].target.index);
		for (int i = 0; i < res->more[t].map_count && rc == 0; i++)
			rc = write_png_named(&res->more[t].maps[i], dir, prefix, err);
	}
	return rc;
}

/* ---- the notebook's views (issue 15) ---- */

/* The .npy files --out DIR gets with path maps: the signed steps with a
 * step view, the gradient maps' values with the gradient view. */
#define PATH_STEPS_NPY "path_steps.npy"
#define PATH_GRADIENT_MAPS_NPY "path_gradient_maps.npy"

/* dir/name as a new file (exclusively, as the PNGs) holding `data` with
 * `shape` as float32 .npy. */
static int write_new_npy(const char *dir, const char *name, const float *data, const size_t *shape,
                         int ndim, struct igs_error *err)
{
	char path[4096];
	int n = snprintf(path, sizeof path, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof path)
		return igs_fail(err, IGS_ERR_IO, "%s: output directory path too long", dir);
	unsigned char *npy = NULL;
	size_t len = 0;
	int rc = npy_encode_f32(data, shape, ndim, &npy, &len, err);
	if (rc == 0)
		rc = file_write_new(path, npy, len, err);
	free(npy);
	return rc;
}

/* Every step view's PNGs, then the per-point floats. */
static int write_path_views(struct attribute_result *res, const char *dir, struct igs_error *err)
{
	const struct attr_result *r = &res->attr;
	int rc = 0;
	for (int k = 0; res->path_step_normalized && k < r->path_count && rc == 0; k++)
		rc = write_png(&res->path_step_normalized[k], dir, err);
	for (int k = 0; res->path_step_deviation && k < r->path_count && rc == 0; k++)
		rc = write_png(&res->path_step_deviation[k], dir, err);
	const size_t shape[4] = {(size_t)r->path_count, (size_t)r->size, (size_t)r->size, 3};
	if (rc == 0 && r->path_steps)
		rc = write_new_npy(dir, PATH_STEPS_NPY, r->path_steps, shape, 4, err);
	if (rc == 0 && r->path_maps)
		rc = write_new_npy(dir, PATH_GRADIENT_MAPS_NPY, r->path_maps, shape, 3, err);
	return rc;
}

/* Before the attribution: the .npy files are not there yet. */
static int check_path_npy_free(const char *dir, unsigned views, struct igs_error *err)
{
	const char *names[2] = {views & PATH_VIEW_STEPS ? PATH_STEPS_NPY : NULL,
	                        views & PATH_VIEW_GRADIENT ? PATH_GRADIENT_MAPS_NPY : NULL};
	for (int i = 0; i < 2; i++) {
		char path[4096];
		struct stat st;
		if (!names[i])
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (lstat(path, &st) == 0)
			return igs_fail(
			    err, IGS_ERR_IO,
			    "%s: already exists (--out does not overwrite; remove it or "
			    "choose another directory)",
			    path);
	}
	return 0;
}

/* Before the attribution: none of the heatmap files --out DIR will get
 * exists yet (they are created exclusively, so one would fail the run only
 * after the work). */
static int check_out_dir_free(const char *dir, unsigned heatmaps, struct igs_error *err)
{
	for (unsigned bit = 1; bit <= HEATMAP_LAST; bit <<= 1) {
		if (!(heatmaps & bit))
			continue;
		char path[4096];
		struct stat st;
		snprintf(path, sizeof path, "%s/%s.png", dir, heatmap_name(bit));
		if (lstat(path, &st) == 0)
			return igs_fail(err, IGS_ERR_IO,
			                "%s: already exists (--out does not overwrite; remove it or "
			                "choose another directory)",
			                path);
	}
	return 0;
}

/* --out DIR: every PNG of the answer as a file; --raw FILE: the .npy. */
static int write_outputs(struct attribute_result *res, const char *dir, const char *raw_path,
                         enum npy_format raw_format, struct igs_error *err)
{
	int rc = 0;
	for (int k = 0; dir && res->path_maps && k < res->attr.path_count && rc == 0; k++)
		rc = write_png(&res->path_maps[k], dir, err);
	for (int i = 0; dir && i < res->map_count && rc == 0; i++)
		rc = write_png(&res->maps[i], dir, err);
	if (rc == 0 && dir)
		rc = write_path_views(res, dir, err);
	if (rc == 0 && dir)
		rc = write_more_targets(res, dir, err);
	if (rc == 0 && raw_path) {
		unsigned char *npy = NULL;
		size_t len = 0;
		rc = npy_encode_attributions(res->attr.attr, res->attr.size, raw_format, &npy, &len,
		                             err);
		if (rc == 0)
			rc = file_write_bytes(raw_path, npy, len, err);
		free(npy);
	}
	return rc;
}

int cli_attribute(int argc, char **argv)
{
	struct cli_model_options mo;
	struct request_options ro;
	cli_model_options_init(&mo);
	request_options_init(&ro);
	const char *raw_path = NULL, *out_dir = NULL, *manifest = NULL, *shard = NULL;
	const char *raw_format_name = NULL;
	size_t memory_budget = 0;
	int batch = 0;
	int threads = cli_default_threads();

	struct flag flags[CLI_MODEL_FLAG_COUNT + 44];
	size_t n = cli_model_flags(flags, &mo);
#define OPT(name, metavar, help)                                                                   \
	flags[n++] = (struct flag){name, FLAG_CALLBACK, NULL, metavar, help, cli_set_request_option, &ro}
	OPT("target", "N", "class to explain (default: the top-1 prediction)");
	OPT("method", "M",
	    "gausslegendre (default), riemann_left, riemann_right, riemann_middle, "
	    "riemann_trapezoid, saliency, input_x_gradient, blur_ig or guided_ig");
	OPT("steps", "N", "path points of the quadrature rule (50)");
	OPT("baseline", "B",
	    "gray (default), black, white, blur or noise, or several joined with '+' "
	    "(black+white: the mean over them)");
	OPT("blur-sigma", "PX", "Gaussian sigma of the blur baseline in input pixels (10, at most 100)");
	OPT("seed", "N", "seed of the noise baseline and of SmoothGrad (0)");
	OPT("tolerance", "T",
	    "refine until the estimated error of the attributions and the completeness error are "
	    "both at most T (default: off; the rule then defaults to riemann_trapezoid from 15 "
	    "points)");
	OPT("max-steps", "N", "most path points adaptive refinement may use (512)");
	OPT("output", "O",
	    "explain the logit (default), the probability or the log-probability (logprob)");
	OPT("smoothgrad", "KIND", "none (default), smoothgrad, smoothgrad_sq or vargrad");
	OPT("smoothgrad-samples", "N", "noisy samples for SmoothGrad");
	OPT("smoothgrad-sigma", "S", "SmoothGrad noise sigma as a fraction of 0..255 (0.15)");
	OPT("heatmaps", "LIST",
	    "comma-separated maps: normalized, deviation, magnitude, overlay, overlay_full, "
	    "channel_r, channel_g, channel_b, channel_r_deviation, channel_g_deviation, "
	    "channel_b_deviation, masked_image, alpha_scaling, uncertainty (the convergence "
	    "estimate pixel by pixel: IG with --tolerance or a nested rule; not in all), all, none "
	    "(default: the first seven)");
	OPT("resize", "MODE", "letterbox (default), center-crop or stretch");
	/* heatmap controls (issue 16; README: Heatmaps you can compare) */
	OPT("sign", "S",
	    "the part of the attributions the maps show: positive, negative, absolute or all "
	    "(default: all for normalized, deviation and channel_*, absolute for the others)");
	OPT("clip", "P",
	    "the percentile mapped to the top of the scale, in (0, 100] (magnitude: 99)");
	OPT("scale", "S", "image (default: each map's own range) or fixed (--vmin/--vmax)");
	OPT("vmin", "V", "with --scale fixed: the value at the bottom of the scale (0 or -vmax)");
	OPT("vmax", "V", "with --scale fixed: the value at the top of the scale");
	OPT("colormap", "C",
	    "viridis, inferno, gray or rdbu (default: gray, viridis for overlays)");
	OPT("alpha", "A", "overlay opacity in [0, 1] (default: 0.2 + 0.6 t)");
	OPT("path-views", "LIST",
	    "per-point views, comma-separated: gradient (what --path-maps draws alone), "
	    "step_normalized, step_deviation (the signed step (x - x') * gradient, min-max or "
	    "deviation scaled), all; naming any turns path maps on");
	/* ---- Blur IG, Guided IG and baseline sets (issue 16) ---- */
	OPT("blur-max-sigma", "PX", "blur_ig: the path's most blurred end, sigma in pixels (50)");
	OPT("guided-fraction", "F", "guided_ig: fraction of features moved per move (0.25)");
	OPT("guided-max-dist", "D",
	    "guided_ig: how far the path may leave the straight line, in alpha (0.02)");
	OPT("baseline-samples", "N",
	    "average over N draws of each noise or blur baseline, seeded by --seed (0: off)");
	/* several targets and faithfulness (issue 16) */
	OPT("targets", "LIST",
	    "explain several classes at once: I,J,K or topK (shares the forward passes; "
	    "not with --target, --tolerance or --smoothgrad)");
	OPT("faithfulness", "LIST",
	    "deletion, insertion or both (comma-separated): the target's probability as pixels "
	    "go to the baseline in order of attribution, and its AUC");
	OPT("faithfulness-steps", "N", "fractions of the faithfulness curves (16: 17 points)");
#undef OPT
	flags[n++] = (struct flag){"include-background", FLAG_BOOL, &ro.include_background, NULL,
	                           "a 1001-class model's background class 0 may be the default "
	                           "target and is listed",
	                           NULL, NULL};
	flags[n++] = (struct flag){"raw",
	                           FLAG_STRING,
	                           &raw_path,
	                           "FILE",
	                           "write the attributions as .npy (float32 [H, W, 3])",
	                           NULL,
	                           NULL};
	flags[n++] = (struct flag){"raw-format",
	                           FLAG_STRING,
	                           &raw_format_name,
	                           "F",
	                           "--raw's encoding: npy (float32 [H, W, 3], default), npy16 "
	                           "(float16) or map (float32 [H, W], the sum over channels)",
	                           NULL,
	                           NULL};
	flags[n++] = (struct flag){"out",
	                           FLAG_STRING,
	                           &out_dir,
	                           "DIR",
	                           "write the heatmaps as PNG files into DIR (created if missing)",
	                           NULL,
	                           NULL};
	flags[n++] = (struct flag){"manifest",
	                           FLAG_STRING,
	                           &manifest,
	                           "FILE",
	                           "explain every line of a JSON-lines manifest into --out DIR "
	                           "(resumable; README: Many images)",
	                           NULL,
	                           NULL};
	flags[n++] = (struct flag){"shard",
	                           FLAG_STRING,
	                           &shard,
	                           "I/N",
	                           "with --manifest: only the lines whose index is I mod N (0/1)",
	                           NULL,
	                           NULL};
	flags[n++] = (struct flag){
	    "path-maps",
	    FLAG_BOOL,
	    &ro.attr.path_maps,
	    NULL,
	    "also draw |gradient| at every path point (with --out: PNGs and "
	    "path_gradient_maps.npy; --path-views for the signed steps and path_steps.npy)",
	    NULL,
	    NULL};
	flags[n++] = (struct flag){"memory-budget",
	                           FLAG_SIZE,
	                           &memory_budget,
	                           "BYTES",
	                           "workspace for the path points run at once (1G)",
	                           NULL,
	                           NULL};
	flags[n++] = (struct flag){"batch",
	                           FLAG_INT,
	                           &batch,
	                           "N",
	                           "path points per forward pass (default: from --memory-budget)",
	                           NULL,
	                           NULL};
	flags[n++] = (struct flag){"threads", FLAG_INT, &threads, "N",
	                           "compute threads (default: the number of cores)", NULL, NULL};

	const char *synopsis =
	    "[--model FILE] [--target N] [--method M] [--steps N] [--baseline B] "
	    "[--tolerance T] [--max-steps N] [--raw OUT.npy [--raw-format F]] [--out DIR] IMAGE\n"
	    "       igserve attribute [options] --manifest FILE --out DIR [--shard I/N]";
	const char *images[2];
	size_t count = 0;
	struct igs_error err = {0};
	int rc = flags_parse("attribute", synopsis, flags, n, argc, argv, images, 2, &count, &err);
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "igserve attribute: %s\n", err.message);
		return 2;
	}
	if (manifest && (count != 0 || !out_dir || raw_path)) {
		fprintf(stderr, "igserve attribute: --manifest takes --out DIR, no IMAGE and no --raw "
		                "(a line's \"raw\": \"npy\" writes DIR/ID.npy)\n");
		return 2;
	}
	int raw_format = NPY_FORMAT_F32;
	if (raw_format_name &&
	    (!raw_path || (raw_format = npy_format_parse(raw_format_name)) < 0)) {
		fprintf(stderr,
		        "igserve attribute: --raw-format takes npy, npy16 or map, with --raw "
		        "FILE\n");
		return 2;
	}
	if (shard && !manifest) {
		fprintf(stderr, "igserve attribute: --shard needs --manifest\n");
		return 2;
	}
	int shard_i = 0, shard_n = 1;
	if (shard && cli_parse_shard(shard, &shard_i, &shard_n)) {
		fprintf(stderr, "igserve attribute: --shard must be I/N with 0 <= I < N, got '%s'\n",
		        shard);
		return 2;
	}
	if (!manifest && count != 1) {
		fprintf(stderr,
		        "igserve attribute: give exactly one image\nusage: igserve attribute %s\n",
		        synopsis);
		return 2;
	}
	if (batch < 0) {
		fprintf(stderr, "igserve attribute: --batch must be >= 1\n");
		return 2;
	}
	if (threads < 1 || threads > 64) {
		fprintf(stderr, "igserve attribute: --threads must be 1..64, got %d\n", threads);
		return 2;
	}
	if (out_dir && mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
		fprintf(stderr, "igserve attribute: %s: cannot create: %s\n", out_dir,
		        strerror(errno));
		return 1;
	}
	if (out_dir && (check_out_dir_free(out_dir, ro.heatmaps, &err) != 0 ||
	                check_path_npy_free(out_dir, request_options_path_views(&ro), &err) != 0)) {
		fprintf(stderr, "igserve attribute: %s\n", err.message);
		return 1;
	}

	struct service_config cfg = {0};
	struct service *svc = NULL;
	struct service_worker *worker = NULL;
	rc = cli_model_config(&mo, &cfg, &err);
	if (rc < 0) {
		fprintf(stderr, "igserve attribute: %s\n", err.message);
		return 1;
	}
	cfg.memory_budget = memory_budget;
	cfg.max_batch = batch;
	if (cli_open_service("attribute", &cfg, threads, &svc, &worker) != 0)
		return 1;

	if (manifest) {
		rc = cli_attribute_manifest(manifest, out_dir, shard_i, shard_n, svc, worker, &ro, 0,
		                            cfg.limits.max_bytes);
		service_worker_close(&worker);
		service_close(&svc);
		return rc;
	}

	struct job_control job;
	job_init(&job);
	const struct attr_params *a = &ro.attr;
	long evaluations = (long)a->steps * (a->smooth != SMOOTH_NONE ? a->smooth_samples : 1);
	if (isatty(STDERR_FILENO) || evaluations > 64 || a->tolerance > 0)
		job.progress = on_progress;

	unsigned char *bytes = NULL;
	size_t len = 0;
	struct attribute_result out = {0};
	rc = file_read_all(images[0], cfg.limits.max_bytes, &bytes, &len, &err);
	if (rc == 0)
		rc = service_attribute(worker, bytes, len, &ro, &job, &out, &err);
	free(bytes);
	if (rc == 0)
		rc = write_outputs(&out, out_dir, raw_path, (enum npy_format)raw_format, &err);
	if (rc < 0) {
		fprintf(stderr, "igserve attribute: %s: %s\n", images[0], err.message);
		cli_print_error_json(images[0], &err);
	} else {
		cli_print_json(json_render_attribute(svc, &out));
	}
	attribute_result_clear(&out);
	fflush(stdout);
	service_worker_close(&worker);
	service_close(&svc);
	return rc < 0 ? 1 : 0;
}
