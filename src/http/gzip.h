/*
 * gzip.h - Content-Encoding: gzip for JSON answers (zlib).  A 51-point
 * attribution with path maps is over a megabyte of JSON, most of it
 * base64.
 */
#ifndef IGSERVE_GZIP_H
#define IGSERVE_GZIP_H

#include <stdbool.h>
#include <stddef.h>

/*
 * gzip_accepted - whether an Accept-Encoding value (NULL: none) accepts
 * gzip: a "gzip" (or "x-gzip") entry whose q is not 0, or else a "*" entry
 * whose q is not 0.  q-values are read only as zero or not ("gzip;q=0",
 * "gzip;q=0.000" refuse; "gzip;q=0.5" accepts); the server offers just
 * gzip or identity, so their order does not matter.
 */
bool gzip_accepted(const char *accept_encoding);

/*
 * gzip_compress - `data` (len bytes) as one gzip member (deflateInit2,
 * 16 + MAX_WBITS).  Returns a malloc'd buffer (*out_len bytes) or NULL
 * when out of memory.
 */
char *gzip_compress(const char *data, size_t len, size_t *out_len);

#endif
