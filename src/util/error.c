/*
 * error.c - error codes, their names and their HTTP statuses, in one table.
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
	int code;
	const char *name;
	int http_status;
} code_table[] = {
	{IGS_OK, "ok", 200},
	{IGS_ERR_NOMEM, "out_of_memory", 503},
	{IGS_ERR_IO, "io_error", 500},
	{IGS_ERR_FORMAT, "bad_weights_file", 500},
	{IGS_ERR_MODEL, "bad_model", 500},
	{IGS_ERR_IMAGE_DECODE, "image_decode", 422},
	{IGS_ERR_IMAGE_TOO_LARGE, "image_too_large", 413},
	{IGS_ERR_UNSUPPORTED_MEDIA, "unsupported_media_type", 415},
	{IGS_ERR_BAD_OPTION, "bad_option", 400},
	{IGS_ERR_TOO_LARGE, "payload_too_large", 413},
	{IGS_ERR_DEADLINE, "deadline_exceeded", 504},
	{IGS_ERR_CANCELLED, "cancelled", 499},
	{IGS_ERR_BUSY, "queue_full", 429},
	{IGS_ERR_NOT_READY, "not_ready", 503},
	{IGS_ERR_NOT_FOUND, "not_found", 404},
	{IGS_ERR_METHOD, "method_not_allowed", 405},
	{IGS_ERR_INTERNAL, "internal", 500},
	{IGS_ERR_UNAUTHORIZED, "unauthorized", 401},
	{IGS_ERR_ORIGIN, "cors_origin_not_allowed", 403},
};

int igs_fail(struct igs_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof err->message, fmt, ap);
		va_end(ap);
	}
	return code;
}

const char *igs_code_name(int code)
{
	for (size_t i = 0; i < sizeof code_table / sizeof code_table[0]; i++)
		if (code_table[i].code == code)
			return code_table[i].name;
	return "internal";
}

int igs_code_http_status(int code)
{
	for (size_t i = 0; i < sizeof code_table / sizeof code_table[0]; i++)
		if (code_table[i].code == code)
			return code_table[i].http_status;
	return 500;
}
