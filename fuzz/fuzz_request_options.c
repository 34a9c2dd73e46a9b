/*
 * fuzz_request_options - request_options_set on `name=value&name=value...`
 * (what a query string or the form fields give).  Invariants: a failure
 * names something; what is accepted stays in the documented ranges.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request_options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	struct request_options o;
	request_options_init(&o);
	char *save = NULL;
	for (char *pair = strtok_r(text, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(pair, '=');
		const char *value = "";
		if (eq) {
			*eq = '\0';
			value = eq + 1;
		}
		struct igs_error err = {0};
		int rc = request_options_set(&o, pair, value, 4096, &err);
		if (rc != 0 && (rc != IGS_ERR_BAD_OPTION || err.message[0] == '\0'))
			abort();
	}
	if (o.attr.steps < 1 || o.attr.steps > 4096 || o.top_k < 1 ||
	    !(o.attr.blur_sigma > 0) || o.attr.blur_sigma > ATTR_BLUR_SIGMA_MAX ||
	    (unsigned)o.resize > RESIZE_STRETCH)
		abort();
	free(text);
	return 0;
}
