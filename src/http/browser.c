/* browser.c - see browser.h. */
#include "browser.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "file.h"

/* scheme://host[:port], no path, no white space. */
static bool origin_well_formed(const char *o, size_t n)
{
	if (n >= BROWSER_ORIGIN_MAX)
		return false;
	char buf[BROWSER_ORIGIN_MAX];
	memcpy(buf, o, n);
	buf[n] = '\0';
	const char *sep = strstr(buf, "://");
	if (!sep || sep == buf)
		return false;
	for (size_t i = 0; i < n; i++)
		if (isspace((unsigned char)buf[i]) || iscntrl((unsigned char)buf[i]))
			return false;
	const char *host = sep + 3;
	return *host && !strchr(host, '/');
}

static int parse_origins(struct browser_policy *p, const char *list, struct igs_error *err)
{
	for (const char *s = list; s && *s;) {
		const char *comma = strchr(s, ',');
		size_t n = comma ? (size_t)(comma - s) : strlen(s);
		while (n && isspace((unsigned char)*s)) {
			s++;
			n--;
		}
		while (n && isspace((unsigned char)s[n - 1]))
			n--;
		if (n == 1 && *s == '*')
			p->cors_any = true;
		else if (n) {
			if (!origin_well_formed(s, n))
				return igs_fail(err, IGS_ERR_BAD_OPTION,
				                "--cors-origins: '%.*s' is not an origin "
				                "(scheme://host[:port], or *)",
				                (int)(n < 200 ? n : 200), s);
			if (p->origin_count == BROWSER_MAX_ORIGINS)
				return igs_fail(err, IGS_ERR_BAD_OPTION,
				                "--cors-origins: more than %d origins", BROWSER_MAX_ORIGINS);
			memcpy(p->origins[p->origin_count], s, n);
			p->origins[p->origin_count++][n] = '\0';
		}
		s = comma ? comma + 1 : NULL;
	}
	return 0;
}

static int digest(const void *data, size_t len, unsigned char out[32])
{
	unsigned int n = 0;
	return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) && n == 32 ? 0 : -1;
}

static int read_tokens(struct browser_policy *p, const char *path, struct igs_error *err)
{
	unsigned char *text = NULL;
	size_t len = 0;
	int rc = file_read_all(path, 1 << 20, &text, &len, err);
	if (rc) {
		char why[IGS_ERROR_MESSAGE_MAX];
		snprintf(why, sizeof why, "%s", err ? err->message : path);
		return igs_fail(err, rc, "--auth-token-file %s", why);
	}
	size_t lines = 1;
	for (size_t i = 0; i < len; i++)
		lines += text[i] == '\n';
	p->token_digests = calloc(lines, sizeof *p->token_digests);
	if (!p->token_digests) {
		free(text);
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory");
	}
	char *save = NULL;
	int line = 0;
	for (char *t = strtok_r((char *)text, "\n", &save); t; t = strtok_r(NULL, "\n", &save)) {
		line++;
		size_t n = strlen(t);
		while (n && isspace((unsigned char)t[n - 1]))
			t[--n] = '\0';
		while (*t && isspace((unsigned char)*t)) {
			t++;
			n--;
		}
		if (!*t || *t == '#')
			continue;
		for (size_t i = 0; i < n; i++)
			if (isspace((unsigned char)t[i]) || iscntrl((unsigned char)t[i])) {
				free(text);
				/* the token itself is not quoted: it may be a real one */
				return igs_fail(err, IGS_ERR_BAD_OPTION,
				                "--auth-token-file %s: line %d: a token holds white space "
				                "or a control character",
				                path, line);
			}
		if (digest(t, n, p->token_digests[p->token_count]) != 0) {
			free(text);
			return igs_fail(err, IGS_ERR_INTERNAL, "SHA-256 unavailable");
		}
		p->token_count++;
	}
	OPENSSL_cleanse(text, len);
	free(text);
	if (p->token_count == 0)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "--auth-token-file %s: no tokens in it",
		                path);
	return 0;
}

int browser_policy_open(struct browser_policy *p, const char *cors_origins,
                        const char *token_file, struct igs_error *err)
{
	memset(p, 0, sizeof *p);
	int rc = parse_origins(p, cors_origins, err);
	if (rc == 0 && token_file && *token_file)
		rc = read_tokens(p, token_file, err);
	if (rc)
		browser_policy_close(p);
	return rc;
}

void browser_policy_close(struct browser_policy *p)
{
	free(p->token_digests);
	memset(p, 0, sizeof *p);
}

bool browser_origin_allowed(const struct browser_policy *p, const char *origin)
{
	if (!origin || !*origin)
		return false;
	if (p->cors_any)
		return true;
	for (int i = 0; i < p->origin_count; i++)
		if (!strcasecmp(p->origins[i], origin))
			return true;
	return false;
}

bool browser_authorized(const struct browser_policy *p, const char *authorization)
{
	if (p->token_count == 0)
		return true;
	if (!authorization || strncasecmp(authorization, "Bearer ", 7))
		return false;
	const char *token = authorization + 7;
	while (*token == ' ')
		token++;
	unsigned char d[32];
	if (digest(token, strlen(token), d) != 0)
		return false;
	/* every token compared, no early exit: the time says nothing of which */
	int match = 0;
	for (int i = 0; i < p->token_count; i++)
		match |= CRYPTO_memcmp(d, p->token_digests[i], 32) == 0;
	return match;
}
