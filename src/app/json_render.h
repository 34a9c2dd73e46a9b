/*
 * json_render.h - the typed results as the JSON documents the contract
 * shows: the one place answers become JSON, for the CLI and HTTP alike.
 *
 * Every function returns a malloc'd NUL-terminated string (caller frees),
 * or NULL when out of memory.
 */
#ifndef IGSERVE_JSON_RENDER_H
#define IGSERVE_JSON_RENDER_H

#include "service.h"

/* The /predict answer. */
char *json_render_predict(const struct service *s, const struct predict_result *r);

/*
 * The /attribute answer.  A PNG whose `file` is set is named by that path,
 * otherwise carried as base64; with options.raw_npy the attributions come
 * as base64 .npy bytes (attributions_npy).
 */
char *json_render_attribute(const struct service *s, const struct attribute_result *r);

/*
 * GET /v1/model: architecture, classes, input size, preprocessing, weights,
 * and what a client needs to build a request: the options' defaults
 * (request_defaults) and this server's limits, `max_upload_bytes` being
 * the HTTP body limit.
 */
char *json_render_model(const struct service *s, size_t max_upload_bytes);

/*
 * The error document, {"error": {"code", "message"}}, code from
 * igs_code_name; with `image` non-NULL also "image": image (the CLI's line
 * for an image it could not process).
 */
char *json_render_error(int code, const char *message, const char *image);

#endif
