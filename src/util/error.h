/*
 * error.h - one error vocabulary for every igserve module.
 *
 * Every fallible function returns 0 (IGS_OK) or one of the negative codes
 * below, and fills an optional `struct igs_error` with a sentence that names
 * the thing that was wrong ("model.safetensors: tensor 'fc.weight' has shape
 * [10, 64], expected [10, 512]").  The HTTP layer maps codes to statuses in
 * one table (see igs_error_http_status); the CLI prints the message.
 */
#ifndef IGSERVE_ERROR_H
#define IGSERVE_ERROR_H

#include <stddef.h>

enum igs_code {
	IGS_OK = 0,
	IGS_ERR_NOMEM = -1,          /* allocation failed */
	IGS_ERR_IO = -2,             /* a file could not be opened, read or written */
	IGS_ERR_FORMAT = -3,         /* a weights file is truncated or malformed */
	IGS_ERR_MODEL = -4,          /* names or shapes that are not a ResNet we know */
	IGS_ERR_IMAGE_DECODE = -5,   /* bytes are not a decodable JPEG or PNG (HTTP 422) */
	IGS_ERR_IMAGE_TOO_LARGE = -6,/* decoded pixels over the limit (HTTP 413) */
	IGS_ERR_UNSUPPORTED_MEDIA = -7, /* neither JPEG nor PNG (HTTP 415) */
	IGS_ERR_BAD_OPTION = -8,     /* an option value is invalid (HTTP 400) */
	IGS_ERR_TOO_LARGE = -9,      /* upload bytes over the limit (HTTP 413) */
	IGS_ERR_DEADLINE = -10,      /* the request deadline passed (HTTP 504) */
	IGS_ERR_CANCELLED = -11,     /* the client went away; nobody to answer */
	IGS_ERR_BUSY = -12,          /* queue full (HTTP 429) */
	IGS_ERR_NOT_READY = -13,     /* not ready or shutting down (HTTP 503) */
	IGS_ERR_NOT_FOUND = -14,     /* no such endpoint (HTTP 404) */
	IGS_ERR_METHOD = -15,        /* wrong HTTP method (HTTP 405) */
	IGS_ERR_INTERNAL = -16,      /* a bug or a numeric failure (HTTP 500) */
	IGS_ERR_UNAUTHORIZED = -17,  /* no or a wrong bearer token (HTTP 401) */
	IGS_ERR_ORIGIN = -18,        /* a CORS preflight from an origin not allowed (HTTP 403) */
};

#define IGS_ERROR_MESSAGE_MAX 512

struct igs_error {
	int code;
	char message[IGS_ERROR_MESSAGE_MAX];
};

/*
 * igs_fail - record `code` and a printf-style message in `err` (which may be
 * NULL) and return `code`, so callers can write `return igs_fail(err, ...)`.
 */
int igs_fail(struct igs_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* igs_code_name - stable snake_case name of a code, used as the JSON
 * "code" field of error responses ("bad_option", "image_decode", ...). */
const char *igs_code_name(int code);

/* igs_code_http_status - the HTTP status a code is answered with. */
int igs_code_http_status(int code);

#endif
