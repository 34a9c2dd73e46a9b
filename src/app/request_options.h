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
 * samples, times the targets (targets=: the forward passes are shared,
 * the backward ones are not), plus faithfulness's forward passes
 * (2 (faithfulness_steps + 1) per target with both curves, each counted
 * as a whole evaluation).
 */
long long request_options_evaluations(const struct request_options *o);

/*
 * request_options_check_limits - IGS_ERR_BAD_OPTION, naming the option
 * and the server's flag, when deadline_ms is over l->max_deadline_ms or
 * (when `attribution`) the evaluations are over l->max_evaluations.
 */
int request_options_check_limits(const struct request_options *o, bool attribution,
                                 const struct request_limits *l, struct igs_error *err);

#endif
