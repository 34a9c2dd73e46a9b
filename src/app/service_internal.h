/*
 * service_internal.h - what service.c (the service, /predict) and
 * attribute.c (/attribute) share about a service and its workers.  Not for
 * other stages.
 */
#ifndef IGSERVE_SERVICE_INTERNAL_H
#define IGSERVE_SERVICE_INTERNAL_H

#include "labels.h"
#include "model.h"
#include "service.h"

struct service {
	struct service_config cfg;
	struct model *model;
	struct labels *labels;
	int max_batch; /* path points per net_forward, from the memory budget */
};

struct service_worker {
	struct service *service;
	struct net_workspace *ws; /* sized for service->max_batch */
	/* While an attribution holds ws mid-pass (it lends its thread between
	 * blocks: net_workspace_set_yield), predictions run on side_ws, a
	 * batch-1 workspace opened on first use and released with ws. */
	bool ws_busy;
	struct net_workspace *side_ws;
	float *logits;            /* [max_batch][classes] */
	float *d_logits;          /* [max_batch][classes] */
};

/*
 * service_prepare_input - decode `bytes`, fit to the model input; fills
 * `pixels` (size*size*3 floats, caller-owned, 0..255), `original` (the
 * decoded upload, caller clears with image_clear) and `geom`.
 * timing_ms[0] gets decode, timing_ms[1] preprocess milliseconds.
 */
int service_prepare_input(struct service_worker *w, const void *bytes, size_t len,
                          const struct request_options *o, float *pixels, struct image *original,
                          struct image_geometry *geom, double timing_ms[2], struct igs_error *err);

/*
 * service_first_class - 1 when the model's class 0 is a background class
 * the request leaves out (1001 classes, include_background false), else 0.
 */
int service_first_class(const struct service *s, const struct request_options *o);

/*
 * service_top_k - the top `k` classes of `logits` among classes >= `first`
 * (at most that many; sorted by logit, ties to the lower index) with their
 * softmax probabilities over all classes: *top is malloc'd (caller frees),
 * *count its length.
 */
int service_top_k(const struct service *s, const float *logits, int first, int k,
                  struct prediction **top,
                  int *count, struct igs_error *err);

#endif
