/*
 * service.h - one request, from image bytes to typed results.
 *
 * The CLI and the HTTP server both go through here, so `igserve predict`
 * prints exactly what `POST /predict` answers.  The data flow:
 *   bytes -> image_decode -> image_fit -> network (nn) -> attribution (attr)
 *         -> heatmaps and PNGs (render) -> struct predict_result /
 *            struct attribute_result -> JSON (json_render.h)
 *
 * A `struct service` (model, labels, limits) is shared read-only by all
 * threads; each worker thread owns a `struct service_worker` (workspaces).
 */
#ifndef IGSERVE_SERVICE_H
#define IGSERVE_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "attribution.h"
#include "error.h"
#include "faithfulness.h"
#include "image.h"
#include "job.h"
#include "request_options.h"

/* ---- the service ---- */

struct service_config {
	const char *model_path;
	const char *labels_path; /* NULL: built in */
	const char *precision;   /* "auto" (NULL), "fp32" or "bf16x3": see conv.h */
	bool custom_normalization;
	float mean[3], std[3];
	struct image_limits limits;
	int max_steps_cap;    /* ceiling for steps and max_steps (4096) */
	size_t memory_budget; /* bytes for one attribution's workspace (0: 1 GiB) */
	int input_size;       /* 0: the model's default (224) */
	int threads;          /* OpenMP threads per worker (network passes); 0: 1 */
	int max_batch;        /* 0: from memory_budget (at most 4) */
};

/* What a front end shows of the model it serves (strings owned by the
 * service, valid while it is open). */
struct service_info {
	const char *arch, *family, *sha256, *path, *precision;
	const char *engine; /* the convolution backend: "oneDNN 2.6.3, avx512_core" */
	int classes, input_size, depth, max_batch;
};

struct service;
struct service_worker;

/*
 * service_open - load the model (cfg->model_path) in cfg's arithmetic,
 * apply the input size and normalization, open the labels.  Errors name
 * the file and the problem; `precision` not one of the three names is
 * IGS_ERR_BAD_OPTION.
 */
int service_open(struct service **out, const struct service_config *cfg, struct igs_error *err);
void service_close(struct service **s);
void service_get_info(const struct service *s, struct service_info *out);
const char *service_label(const struct service *s, int index);

/* service_check_precision - 0 when `name` is a precision service_open
 * takes, else IGS_ERR_BAD_OPTION listing them. */
int service_check_precision(const char *name, struct igs_error *err);

/*
 * service_threads_setup - before a service runs: OpenBLAS (the classifier's
 * product) gets `blas_threads`, and the calling thread's own OpenMP team
 * `caller_threads` (1 for a thread that only loads and waits; 0 leaves it).
 */
void service_threads_setup(int caller_threads, int blas_threads);

int service_worker_open(struct service_worker **out, struct service *s, struct igs_error *err);
void service_worker_close(struct service_worker **w);
/*
 * service_worker_warm_up - compile the convolution kernels for single images
 * and full batches now rather than in the first requests.  Call it on the
 * thread that will run the worker's jobs (it sets that thread's OpenMP
 * thread count).
 */
int service_worker_warm_up(struct service_worker *w, struct igs_error *err);

/*
 * service_worker_idle - hand the worker's workspace pages back to the
 * system (an attribution fills the whole workspace), so an idle worker
 * holds only the model.  The worker pool calls it once a worker has been
 * idle for a second after an attribution; anything the worker runs next
 * gets fresh zero pages.
 */
void service_worker_idle(struct service_worker *w);

/* ---- results ---- */

/* One class of the answer (label owned by the service). */
struct prediction {
	int index;
	const char *label;
	double probability; /* softmax over all classes */
	double logit;
};

struct predict_result {
	struct prediction *top; /* [count], by logit, highest first */
	int count;
	struct {
		double decode, preprocess, forward, total;
	} timing_ms;
};

void predict_result_clear(struct predict_result *r);

/* A PNG the answer carries: its bytes, and once a front end has written it
 * to a file (the CLI's --out), that file's path, which the JSON then shows
 * instead of base64.  `name` is static ("overlay", "path_0003"...). */
struct rendered_png {
	char name[32]; /* "channel_r_deviation", "path_0003.step_normalized" */
	unsigned char *bytes;
	size_t len;
	char *file; /* malloc'd, or NULL */
	/* a heatmap's scale, for the answer's heatmap_scales (issue 16): as
	 * heatmap_style.h's struct heatmap_scale */
	bool has_scale;
	struct {
		double vmin, vmax;
		const char *colormap, *sign; /* static */
	} scale;
};

/* ---- several targets and faithfulness (issue 16) ---- */

/* One more class of a targets= request: what the answer's "attributions"
 * entry shows. */
struct target_answer {
	struct prediction target;
	struct attr_result attr;   /* path and path maps are the first target's only */
	struct rendered_png *maps; /* [map_count] as attribute_result's */
	int map_count;
	struct faithfulness_result faithfulness; /* with faithfulness= */
};

struct attribute_result {
	struct request_options options; /* as the request gave them */
	struct prediction *top;         /* [top_count]: the input's predictions */
	int top_count;
	struct prediction target;  /* the class explained */
	struct attr_result attr;   /* attributions, completeness, path (attribution.h) */
	struct rendered_png *maps; /* [map_count]: the heatmaps asked for, in HEATMAP_* order */
	int map_count;
	struct rendered_png *path_maps; /* [attr.path_count] with path_maps, else NULL */
	/* ---- the notebook's views (issue 15) ---- */
	/* [attr.path_count] each when path_views names them (path_views.h),
	 * else NULL: PNGs of each point's signed step, two scalings */
	struct rendered_png *path_step_normalized, *path_step_deviation;
	struct {
		double decode, preprocess, attribution, heatmaps, total;
	} timing_ms;
	/* ---- several targets and faithfulness (issue 16) ----
	 * With targets= the fields above are the first target's and `more`
	 * holds the others, in order. */
	struct target_answer *more;
	int more_count;
	struct faithfulness_result faithfulness; /* the first target's */
	double faithfulness_ms;
};

void attribute_result_clear(struct attribute_result *r);

/* ---- requests ---- */

/*
 * service_predict - decode, fit, forward: the top o->top_k classes.  `job`
 * (may be NULL) can cancel it between stages.  On error *out is empty.
 */
int service_predict(struct service_worker *w, const void *bytes, size_t len,
                    const struct request_options *o, struct job_control *job,
                    struct predict_result *out, struct igs_error *err);

/*
 * service_attribute - the /attribute pipeline: attributions (o->attr), their
 * heatmaps as PNGs (o->heatmaps) and, with path maps, one PNG per path
 * point.  Every number in the result is finite (checked: a non-finite one
 * is IGS_ERR_INTERNAL).  On error *out is empty.
 */
int service_attribute(struct service_worker *w, const void *bytes, size_t len,
                      const struct request_options *o, struct job_control *job,
                      struct attribute_result *out, struct igs_error *err);

/*
 * service_attribution_preview - a small picture of attributions in the
 * making (the last completed round's, from a job_progress): the magnitude
 * map (sum of |a| over channels) box-averaged to px x px, scaled by its
 * 99th percentile, as base64 of a grayscale PNG.  NULL when out of memory.
 */
char *service_attribution_preview(const float *attr, int size, int px);

#endif
