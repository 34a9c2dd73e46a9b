/*
 * selfcheck.h - the readiness check: a fixed synthetic image through the
 * same service calls requests use.
 */
#ifndef IGSERVE_SELFCHECK_H
#define IGSERVE_SELFCHECK_H

#include "error.h"
#include "service.h"

/*
 * selfcheck_run - the synthetic image (the model's input size, encoded as
 * PNG) through service_predict and an 8-step Integrated Gradients.  Passes
 * (0) when every number is finite, the probabilities sum to 1, the
 * attribution sees the prediction's logit, and completeness holds within a
 * loose bound; else IGS_ERR_INTERNAL saying what failed.  Runs on the
 * thread that owns `w`.
 */
int selfcheck_run(struct service_worker *w, const struct service *s, struct igs_error *err);

#endif
