/*
 * request_options.h - the options of one request, by their contract names.
 *
 * HTTP query parameters, form fields and CLI flags all arrive as (name,
 * text) pairs and go through request_options_set, so every front end
 * validates the same way and says the same thing about a bad value.
 */
#ifndef IGSERVE_REQUEST_OPTIONS_H
#define IGSERVE_REQUEST_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "attribution.h"
#include "faithfulness.h"
#include "error.h"
#include "image.h"

struct request_options {
	int top_k;               /* 5 */
	/* false: a 1001-class model's class 0 (background) is left out of the
	 * predictions and of the default target */
	bool include_background;
	enum resize_mode resize; /* letterbox */
	struct attr_params attr; /* what to attribute and how (attr_params_init) */
	unsigned heatmaps;       /* HEATMAP_* set (heatmap.h); the contract's seven */
	bool raw_npy;            /* attributions_npy in the answer */
	int deadline_ms;         /* 0: the server default */
	int preview_px;          /* SSE: a px x px preview per completed round (0: none) */
	/* whether the request named a quadrature rule, or steps: adaptive IG
	 * picks its own otherwise (request_options_resolve) */
	bool rule_given, steps_given;
	/* ---- heatmap controls and raw encodings (issue 16) ---- */
	/* struct heatmap_style's fields (heatmap_style.h, which the stages
	 * above app may not see): request_options_heatmap_style */
	struct heatmap_controls {
		int sign;    /* enum heatmap_sign */
		double clip; /* 0: the map's default */
		bool fixed, scale_image, vmin_given, vmax_given;
		double vmin, vmax;
		int colormap; /* enum heatmap_cmap */
		double alpha; /* < 0: the default */
	} heatmap_controls;
	int raw_format; /* enum npy_format (npy.h): with raw_npy, raw=npy, npy16 or map */
	/* ---- the notebook's views (issue 15) ---- */
	/* PATH_VIEW_* set (path_views.h) drawn per path point; 0: not given
	 * (path_maps alone draws the gradient maps) */
	unsigned path_views;
	/* ---- several targets and faithfulness (issue 16) ----
	 * targets= lives in attr (n_targets, targets_top, targets) */
	unsigned faithfulness;  /* FAITHFULNESS_* set (faithfulness.h); 0: none */
	int faithfulness_steps; /* FAITHFULNESS_DEFAULT_STEPS */
};

/* The defaults listed above. */
void request_options_init(struct request_options *o);

/*
 * request_options_set - set one option by its contract name ("steps",
 * "method", "baseline", "heatmaps", ...; '-' and '_' alike) from its text
 * value.  Unknown names and invalid values: IGS_ERR_BAD_OPTION naming both.
 * `max_steps_cap` (<= 0: 4096) is the server's ceiling for steps and
 * max_steps.
 */
int request_options_set(struct request_options *o, const char *name, const char *value,
                        int max_steps_cap, struct igs_error *err);

/*
 * request_options_resolve - the defaults that depend on other options,
 * applied once all are set: adaptive IG (a tolerance) without a named
 * rule uses ATTR_ADAPTIVE_RULE, and without steps starts at
 * ATTR_ADAPTIVE_START_POINTS (attribution.h).
 */
void request_options_resolve(struct request_options *o);

/* IGS_ERR_BAD_OPTION when the heatmap controls contradict each other
 * (scale=fixed without vmax, vmin >= vmax, ...): heatmap_style_check. */
int request_options_check_heatmaps(const struct request_options *o, struct igs_error *err);

/* The heatmap controls as heatmap_style.h's struct heatmap_style (given
 * as void * so this header needs no render header). */
void request_options_heatmap_style(const struct request_options *o, void *heatmap_style);
/*
 * request_options_path_views - the per-point views the options ask for
 * (PATH_VIEW_*): `path_views` when given (naming views turns them on),
 * else the gradient maps with path_maps, else none.  request_options_resolve
 * sets attr.path_maps and attr.path_steps from it.
 */
unsigned request_options_path_views(const struct request_options *o);

/* The server's limits on one request's work (contract: "Limits on one
 * request's work"); 0 in a field: no limit. */
struct request_limits {
	int max_deadline_ms; /* a larger deadline_ms is refused */
	int max_evaluations; /* forward+backward passes one attribution may ask for */
};

/*
 * request_options_evaluations - the forward+backward passes the options
 * may ask for: path points (steps, or max_steps when adaptive refinement
 * may go that far; 1 for saliency and input x gradient) times SmoothGrad's
 * samples, times the baselines of a baseline set (attribution_baseline_set_size;
 * Blur IG and Guided IG: steps), times the targets (targets=: the forward
 * passes are shared, the backward ones are not), plus faithfulness's
 * forward passes (2 (faithfulness_steps + 1) per target with both curves,
 * each counted as a whole evaluation).
 */
long long request_options_evaluations(const struct request_options *o);

/*
 * request_options_check_limits - IGS_ERR_BAD_OPTION, naming the option
 * and the server's flag, when deadline_ms is over l->max_deadline_ms or
 * (when `attribution`) the evaluations are over l->max_evaluations.
 */
int request_options_check_limits(const struct request_options *o, bool attribution,
                                 const struct request_limits *l, struct igs_error *err);

/* ---- the result cache's key (issue 16) ---- */

/* Room for request_options_canonical's text. */
#define REQUEST_OPTIONS_CANONICAL_MAX 1024

/*
 * request_options_canonical - the options that decide an answer's bytes,
 * resolved (request_options_resolve) and written as one line of text in a
 * fixed order, numbers exactly ("%a" for doubles): `steps=50` and no steps
 * give the same text, as do `method=ig` and the default.  Left out, since
 * they do not change a complete answer: deadline_ms (an answer cut by its
 * deadline is not cached), preview (SSE only, never cached) and the
 * bookkeeping flags rule_given and steps_given (resolve has applied them).
 * Writes at most `cap` bytes (NUL included); returns the length, or -1
 * when `cap` is too small.  A field added to struct request_options or
 * struct attr_params must be added here too: a static assertion on the
 * structs' sizes in request_canonical.c stops the build until it is.
 */
int request_options_canonical(const struct request_options *o, char *buf, size_t cap);

/*
 * request_options_normalized - `in` resolved, with the fields the
 * canonical text leaves out zeroed (deadline_ms, preview_px, rule_given,
 * steps_given).  The cache key hashes these bytes beside the text, so a
 * field added to the structs but not yet to the text still tells requests
 * apart (a missed hit at worst, never another request's answer).  Hence
 * the structs hold values only, never pointers.
 */
void request_options_normalized(const struct request_options *in, struct request_options *out);

#endif
