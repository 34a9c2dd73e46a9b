/*
 * body.c - Content-Type classification and a multipart/form-data
 * parser (RFC 7578, delimiters per RFC 2046 section 5.1.1) over a body
 * already in memory.
 */
#include "body.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define PART_NAME_MAX 256
#define PART_TYPE_MAX 128
#define BOUNDARY_MAX 70 /* RFC 2046: 1 to 70 characters */

/* ---- small string helpers over (pointer, length) ---- */

static const char *skip_space(const char *s, const char *end)
{
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	return s;
}

/* First occurrence of needle in [hay, hay+len), or NULL. */
static const char *find_bytes(const char *hay, size_t len, const char *needle, size_t nlen)
{
	if (nlen == 0 || len < nlen)
		return NULL;
	const char *last = hay + len - nlen;
	for (const char *p = hay; p <= last; p++) {
		p = memchr(p, needle[0], (size_t)(last - p) + 1);
		if (!p)
			return NULL;
		if (!memcmp(p, needle, nlen))
			return p;
	}
	return NULL;
}

/*
 * Parameter `key` of a header value like `form-data; name="image"` or
 * `multipart/form-data; boundary=xyz`: copies the (unquoted) value into out.
 * Returns 1 when found, 0 when absent, -1 when it does not fit.
 */
static int header_param(const char *value, const char *key, char *out, size_t cap)
{
	size_t klen = strlen(key);
	const char *s = value, *end = value + strlen(value);
	while ((s = memchr(s, ';', (size_t)(end - s)))) {
		s = skip_space(s + 1, end);
		const char *eq = memchr(s, '=', (size_t)(end - s));
		if (!eq)
			return 0;
		const char *kend = eq;
		while (kend > s && (kend[-1] == ' ' || kend[-1] == '\t'))
			kend--;
		const char *v = skip_space(eq + 1, end);
		size_t n = 0;
		bool match = (size_t)(kend - s) == klen && !strncasecmp(s, key, klen);
		if (v < end && *v == '"') {
			for (v++; v < end && *v != '"'; v++) {
				if (*v == '\\' && v + 1 < end)
					v++;
				if (match && n + 1 < cap)
					out[n] = *v;
				n++;
			}
		} else {
			for (; v < end && *v != ';' && *v != ' ' && *v != '\t'; v++) {
				if (match && n + 1 < cap)
					out[n] = *v;
				n++;
			}
		}
		if (match) {
			if (n + 1 > cap)
				return -1;
			out[n] = 0;
			return 1;
		}
		s = v;
	}
	return 0;
}

/* ---- Content-Type ---- */

static bool media_type_is(const char *ct, const char *type)
{
	size_t n = strlen(type);
	return !strncasecmp(ct, type, n) &&
	       (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t');
}

int body_kind_from_content_type(const char *content_type, enum body_kind *kind, char *boundary,
                                size_t cap, struct igs_error *err)
{
	if (!content_type || !content_type[0])
		return igs_fail(
		    err, IGS_ERR_UNSUPPORTED_MEDIA,
		    "request: no Content-Type; send multipart/form-data with the file in "
		    "field 'image', or the raw image as image/jpeg or image/png");
	const char *ct = content_type;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	static const char *const raw_types[] = {"image/jpeg", "image/jpg", "image/pjpeg",
	                                        "image/png", "application/octet-stream"};
	for (size_t i = 0; i < sizeof raw_types / sizeof raw_types[0]; i++)
		if (media_type_is(ct, raw_types[i])) {
			*kind = BODY_RAW_IMAGE;
			return 0;
		}
	if (media_type_is(ct, "multipart/form-data")) {
		char b[BOUNDARY_MAX + 2];
		int found = header_param(ct, "boundary", b, sizeof b);
		if (found <= 0 || !b[0] || strlen(b) > BOUNDARY_MAX || strlen(b) + 1 > cap)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "request: multipart/form-data without a valid boundary "
			                "(1 to 70 characters)");
		strcpy(boundary, b);
		*kind = BODY_MULTIPART;
		return 0;
	}
	char shown[64];
	snprintf(shown, sizeof shown, "%s", ct);
	shown[strcspn(shown, ";")] = 0;
	return igs_fail(err, IGS_ERR_UNSUPPORTED_MEDIA,
	                "request: Content-Type '%s' is not supported; use multipart/form-data, "
	                "image/jpeg or image/png",
	                shown);
}

/* ---- multipart ---- */

/* Parse the header block [s, end) of one part into the part's fields. */
static int parse_part_headers(const char *s, const char *end, struct form_part *part,
                              char name[PART_NAME_MAX], char filename[PART_NAME_MAX],
                              char type[PART_TYPE_MAX], int index, struct igs_error *err)
{
	bool have_name = false;
	part->filename = NULL;
	part->content_type = NULL;
	while (s < end) {
		const char *eol = find_bytes(s, (size_t)(end - s), "\r\n", 2);
		const char *line_end = eol ? eol : end;
		const char *colon = memchr(s, ':', (size_t)(line_end - s));
		if (colon) {
			char value[1024];
			const char *v = skip_space(colon + 1, line_end);
			size_t vlen = (size_t)(line_end - v);
			if (vlen >= sizeof value)
				return igs_fail(err, IGS_ERR_BAD_OPTION,
				                "multipart: header of part %d is too long", index);
			memcpy(value, v, vlen);
			value[vlen] = 0;
			size_t nlen = (size_t)(colon - s);
			if (nlen == 19 && !strncasecmp(s, "Content-Disposition", 19)) {
				int r = header_param(value, "name", name, PART_NAME_MAX);
				if (r < 0)
					return igs_fail(
					    err, IGS_ERR_BAD_OPTION,
					    "multipart: field name of part %d is too long", index);
				have_name = r > 0;
				if (header_param(value, "filename", filename, PART_NAME_MAX) > 0)
					part->filename = filename;
			} else if (nlen == 12 && !strncasecmp(s, "Content-Type", 12)) {
				snprintf(type, PART_TYPE_MAX, "%.*s", PART_TYPE_MAX - 1, value);
				part->content_type = type;
			}
		}
		s = eol ? eol + 2 : end;
	}
	if (!have_name)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "multipart: part %d has no Content-Disposition name", index);
	part->name = name;
	return 0;
}

int body_multipart_parse(const char *body, size_t len, const char *boundary, form_part_fn on_part,
                    void *ctx, struct igs_error *err)
{
	char delim[BOUNDARY_MAX + 5];
	size_t blen = strlen(boundary);
	if (blen == 0 || blen > BOUNDARY_MAX)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "multipart: bad boundary");
	/* "\r\n--boundary": the CRLF before a delimiter belongs to it. */
	int dlen = snprintf(delim, sizeof delim, "\r\n--%s", boundary);
	const char *end = body + len;

	/* The first delimiter may open the body without a CRLF before it. */
	const char *p;
	if (len >= (size_t)dlen - 2 && !memcmp(body, delim + 2, (size_t)dlen - 2))
		p = body + dlen - 2;
	else {
		p = find_bytes(body, len, delim, (size_t)dlen);
		if (!p)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "multipart: the body does not contain the boundary");
		p += dlen;
	}
	for (int index = 0;; index++) {
		/* After a delimiter: "--" closes the body, else padding and CRLF. */
		if (end - p >= 2 && p[0] == '-' && p[1] == '-')
			return 0;
		p = skip_space(p, end);
		if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "multipart: malformed delimiter line before part %d",
			                index);
		p += 2;
		const char *headers_end;
		if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
			headers_end = p; /* a part without headers */
		else {
			headers_end = find_bytes(p, (size_t)(end - p), "\r\n\r\n", 4);
			if (!headers_end)
				return igs_fail(err, IGS_ERR_BAD_OPTION,
				                "multipart: headers of part %d do not end", index);
		}
		const char *data = headers_end + (headers_end == p ? 2 : 4);
		const char *next = find_bytes(data, (size_t)(end - data), delim, (size_t)dlen);
		if (!next)
			return igs_fail(
			    err, IGS_ERR_BAD_OPTION,
			    "multipart: part %d has no closing boundary (truncated body?)", index);
		struct form_part part;
		char name[PART_NAME_MAX], filename[PART_NAME_MAX], type[PART_TYPE_MAX];
		int rc =
		    parse_part_headers(p, headers_end, &part, name, filename, type, index, err);
		if (rc < 0)
			return rc;
		part.data = data;
		part.len = (size_t)(next - data);
		rc = on_part(ctx, &part, err);
		if (rc < 0)
			return rc;
		p = next + dlen;
	}
}
