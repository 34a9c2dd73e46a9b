/*
 * body.h - what an upload carries: the image bytes and the options,
 * from a raw body (Content-Type image/jpeg or image/png) or from a
 * multipart/form-data body (RFC 7578: the file in field `image`, options as
 * further fields).  Pure parsing over a complete body in memory; no HTTP
 * library types, so it is tested on its own.
 */
#ifndef IGSERVE_BODY_H
#define IGSERVE_BODY_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

enum body_kind { BODY_RAW_IMAGE, BODY_MULTIPART };

/*
 * body_kind_from_content_type - classify a request's Content-Type (may be
 * NULL).  Raw image types are image/jpeg, image/jpg, image/pjpeg, image/png
 * and application/octet-stream (the bytes are sniffed later anyway).  For
 * multipart the boundary is copied to `boundary` (cap bytes, NUL-terminated).
 * Errors: IGS_ERR_UNSUPPORTED_MEDIA naming the type, IGS_ERR_BAD_OPTION for a
 * multipart type without a usable boundary.
 */
int body_kind_from_content_type(const char *content_type, enum body_kind *kind, char *boundary,
                                size_t cap, struct igs_error *err);

/* One part of a multipart body; pointers point into the body. */
struct form_part {
	const char *name;         /* NUL-terminated copy, owned by the parser */
	const char *filename;     /* NULL when the part has none */
	const char *content_type; /* NULL when the part has none */
	const char *data;
	size_t len;
};

/* Called per part; return 0 to go on, a negative igs_code to stop. */
typedef int (*form_part_fn)(void *ctx, const struct form_part *part, struct igs_error *err);

/*
 * body_multipart_parse - walk the parts of `body` (len bytes) delimited by
 * `boundary`, calling `on_part` for each in order.  Errors:
 * IGS_ERR_BAD_OPTION for a malformed body (no closing delimiter, a part
 * without Content-Disposition name), or what on_part returned.
 */
int body_multipart_parse(const char *body, size_t len, const char *boundary, form_part_fn on_part,
                    void *ctx, struct igs_error *err);

#endif
