/*
 * browser.h - what a browser client needs and what keeps strangers out
 * (contract: Browser clients): CORS for configured origins, and bearer
 * tokens.  Both are off unless configured.
 *
 * CORS: for an allowed Origin, every answer carries
 * Access-Control-Allow-Origin (that origin), Vary: Origin and
 * Access-Control-Expose-Headers; a preflight (OPTIONS with
 * Access-Control-Request-Method) from it is 204 with the allowed methods,
 * headers and max age; from any other origin 403 cors_origin_not_allowed.
 *
 * Tokens: one per line of a file (blank lines and lines starting with '#'
 * skipped, surrounding white space trimmed).  The model endpoints,
 * /metrics and /v1/model then need Authorization: Bearer TOKEN.  Tokens
 * are kept only as SHA-256 digests, compared in constant time, and never
 * logged.
 */
#ifndef IGSERVE_BROWSER_H
#define IGSERVE_BROWSER_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define BROWSER_MAX_ORIGINS 64
#define BROWSER_ORIGIN_MAX 256

struct browser_policy {
	bool cors_any;      /* "*": every origin */
	int origin_count;
	char origins[BROWSER_MAX_ORIGINS][BROWSER_ORIGIN_MAX];
	int token_count;    /* 0: no authentication */
	unsigned char (*token_digests)[32];
};

/*
 * browser_policy_open - parse `cors_origins` (comma-separated origins such
 * as https://app.example.com, or "*"; NULL or "": none) and read
 * `token_file` (NULL: no tokens).  Errors (IGS_ERR_BAD_OPTION, IGS_ERR_IO)
 * name the flag or the file and the problem: an origin that is not
 * scheme://host[:port], a token file without tokens or with a token
 * holding white space or control characters.
 */
int browser_policy_open(struct browser_policy *p, const char *cors_origins,
                        const char *token_file, struct igs_error *err);
void browser_policy_close(struct browser_policy *p);

/* Whether `origin` (an Origin header's value) may read answers. */
bool browser_origin_allowed(const struct browser_policy *p, const char *origin);

/* Whether an Authorization header's value carries one of the tokens (true
 * when there are none).  Every token is compared, in constant time. */
bool browser_authorized(const struct browser_policy *p, const char *authorization);

#endif
