/*
 * fuzz_content_type - body_kind_from_content_type on any header value.
 * Invariants: a multipart answer has a NUL-terminated boundary of 1..cap-1
 * bytes; a failure has a message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *value = malloc(size + 1);
	if (!value)
		return 0;
	memcpy(value, data, size);
	value[size] = '\0';
	enum body_kind kind;
	char boundary[72];
	memset(boundary, 'x', sizeof boundary);
	struct igs_error err = {0};
	int rc = body_kind_from_content_type(value, &kind, boundary, sizeof boundary, &err);
	if (rc != 0 && err.message[0] == '\0')
		abort();
	if (rc == 0 && kind == BODY_MULTIPART) {
		size_t n = strnlen(boundary, sizeof boundary);
		if (n == 0 || n >= sizeof boundary)
			abort();
	}
	free(value);
	return 0;
}
