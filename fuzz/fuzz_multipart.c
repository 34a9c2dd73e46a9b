/*
 * fuzz_multipart - body_multipart_parse.  The input is the boundary, a
 * newline, then the body.  Invariants: every part the parser hands out lies
 * inside the body and has a name; a failure has a message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct span {
	const char *body;
	size_t len;
};

static int check_part(void *ctx, const struct form_part *part, struct igs_error *err)
{
	(void)err;
	const struct span *s = ctx;
	if (part->name == NULL || part->data < s->body || part->len > s->len ||
	    part->data + part->len > s->body + s->len)
		abort();
	/* Touch every byte, so an out-of-bounds span is caught by ASan too. */
	volatile unsigned sum = 0;
	for (size_t i = 0; i < part->len; i++)
		sum += (unsigned char)part->data[i];
	sum += (unsigned)strlen(part->name);
	if (part->filename)
		sum += (unsigned)strlen(part->filename);
	if (part->content_type)
		sum += (unsigned)strlen(part->content_type);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size < 80 ? size : 80);
	if (!nl)
		return 0;
	size_t blen = (size_t)(nl - data);
	char boundary[81];
	memcpy(boundary, data, blen);
	boundary[blen] = '\0';
	if (strlen(boundary) != blen)
		return 0; /* a NUL inside: no header could carry it */
	/* The body in its own allocation, so reads past its end are seen. */
	size_t len = size - blen - 1;
	char *body = malloc(len ? len : 1);
	if (!body)
		return 0;
	memcpy(body, nl + 1, len);
	struct span s = {body, len};
	struct igs_error err = {0};
	int rc = body_multipart_parse(body, len, boundary, check_part, &s, &err);
	if (rc != 0 && err.message[0] == '\0')
		abort();
	free(body);
	return 0;
}
