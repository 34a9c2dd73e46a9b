/*
 * service.h - one request, from image bytes to the JSON the contract shows.
 *
 * The CLI and the HTTP server both go through here, so `igserve predict`
 * prints exactly what `POST /predict` answers.  The data flow:
 *   bytes -> image_decode -> image_fit -> model (net_forward / net_backward)
 *         -> attribution (ig.h) -> heatmaps (heatmap.h) -> cJSON
 *
 * A `struct service` (model, labels, limits) is shared read-only by all
 * threads; each worker thread owns a `struct service_worker` (workspaces).
 */
#ifndef IGSERVE_SERVICE_H
#define IGSERVE_SERVICE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "image.h"
#include "model.h"

/* ---- options of one request (query parameters, form fields, CLI flags) ---- */

enum attr_method {
	ATTR_INTEGRATED_GRADIENTS, /* IG with the quadrature `rule` */
	ATTR_SALIENCY,             /* plain gradient dF/dx */
	ATTR_INPUT_X_GRADIENT,     /* x * dF/dx */
};

enum quad_rule {
	RULE_GAUSS_LEGENDRE,
	RULE_RIEMANN_LEFT,
	RULE_RIEMANN_RIGHT,
	RULE_RIEMANN_MIDDLE,
	RULE_RIEMANN_TRAPEZOID,
};

enum baseline_kind { BASELINE_GRAY, BASELINE_BLACK, BASELINE_WHITE, BASELINE_BLUR, BASELINE_NOISE };

enum smooth_kind { SMOOTH_NONE, SMOOTH_GRAD, SMOOTH_GRAD_SQ, SMOOTH_VARGRAD };

enum output_kind { OUTPUT_LOGIT, OUTPUT_PROBABILITY };

#define HEATMAP_NORMALIZED (1u << 0)
#define HEATMAP_DEVIATION (1u << 1)
#define HEATMAP_MAGNITUDE (1u << 2)
#define HEATMAP_OVERLAY (1u << 3)
#define HEATMAP_CHANNEL_R (1u << 4)
#define HEATMAP_CHANNEL_G (1u << 5)
#define HEATMAP_CHANNEL_B (1u << 6)
#define HEATMAP_OVERLAY_FULL (1u << 7) /* overlay at the upload's own resolution */
#define HEATMAP_DEFAULT 0x7fu          /* the seven the contract lists */

struct request_options {
	int top_k;                   /* 5 */
	enum resize_mode resize;     /* letterbox */
	int target;                  /* -1: top-1 */
	enum attr_method method;     /* integrated gradients */
	enum quad_rule rule;         /* gausslegendre */
	int steps;                   /* 50 */
	enum baseline_kind baseline; /* gray */
	double blur_sigma;           /* 10 (input pixels) */
	unsigned long long seed;     /* 0: noise baseline and SmoothGrad seed */
	double tolerance;            /* <= 0: off */
	int max_steps;               /* 512 */
	unsigned heatmaps;           /* HEATMAP_* mask */
	bool raw_npy;                /* attributions_npy in the JSON */
	bool path_maps;              /* per-path-point gradient maps */
	enum output_kind output;     /* logit */
	enum smooth_kind smooth;     /* none */
	int smooth_samples;          /* 0 */
	double smooth_sigma;         /* 0.15 (fraction of the 0..255 range) */
	int deadline_ms;             /* 0: the server default */
};

/* Defaults as listed above. */
void request_options_init(struct request_options *o);

/*
 * request_options_set - set one option by its contract name ("steps",
 * "method", "baseline", "heatmaps", ...) from its text value.  Unknown
 * names and invalid values: IGS_ERR_BAD_OPTION naming both.  `max_steps_cap`
 * is the server's ceiling for steps and max_steps.
 */
int request_options_set(struct request_options *o, const char *name, const char *value,
                        int max_steps_cap, struct igs_error *err);

/* Names for JSON and logs. */
const char *quad_rule_name(enum quad_rule r);
const char *baseline_name(enum baseline_kind b);

/* ---- job control: progress, deadline, cancellation ---- */

struct job_control {
	atomic_bool cancelled; /* set by the HTTP layer when the client leaves */
	double deadline;       /* CLOCK_MONOTONIC seconds; 0: none */
	/* Called from the worker thread after each chunk of path points. */
	void (*progress)(void *ctx, int points_done, int points_total, double relative_error);
	void *progress_ctx;
	/* Called from the worker thread between chunks, when the worker's
	 * network workspace is free: the pool runs waiting predictions there. */
	void (*yield)(void *ctx);
	void *yield_ctx;
};

/* Seconds on CLOCK_MONOTONIC. */
double igs_now(void);

/* ---- the service ---- */

struct service_config {
	const char *model_path;
	const char *labels_path; /* NULL: built in */
	bool custom_normalization;
	float mean[3], std[3];
	struct image_limits limits;
	int max_steps_cap;    /* ceiling for steps and max_steps (4096) */
	size_t memory_budget; /* bytes for one attribution's workspace (0: 1 GiB) */
	int blas_threads;     /* threads OpenBLAS may use inside one request */
	int input_size;       /* 0: the model's default (224) */
	int threads;          /* OpenMP threads per worker (network passes); 0: 1 */
	int max_batch;        /* 0: from memory_budget (at most 4) */
};

struct service;
struct service_worker;

int service_open(struct service **out, const struct service_config *cfg, struct igs_error *err);
void service_close(struct service **s);
const struct model *service_model(const struct service *s);
const char *service_label(const struct service *s, int index);
/* The "model" object of responses (arch, family, classes, sha256). */
cJSON *service_model_json(const struct service *s);
/* The fuller GET /v1/model document. */
cJSON *service_model_info_json(const struct service *s);

int service_worker_create(struct service_worker **out, struct service *s, struct igs_error *err);
void service_worker_free(struct service_worker **w);
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

/*
 * service_predict - decode, fit, forward; *out receives the /predict JSON
 * (caller frees with cJSON_Delete).
 */
int service_predict(struct service_worker *w, const void *bytes, size_t len,
                    const struct request_options *o, struct job_control *job, cJSON **out,
                    struct igs_error *err);

/*
 * service_attribute - the /attribute JSON.  With `heatmap_dir` non-NULL the
 * PNGs are written there and the JSON carries file names instead of base64
 * (the CLI's --out).  `raw_path` non-NULL writes the .npy there.
 */
int service_attribute(struct service_worker *w, const void *bytes, size_t len,
                      const struct request_options *o, struct job_control *job,
                      const char *heatmap_dir, const char *raw_path, cJSON **out,
                      struct igs_error *err);

#endif
