/*
 * gzip.c - Accept-Encoding, read minimally, and gzip by zlib.
 */
#include "gzip.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* Level 1: the JSON is mostly base64 of PNGs and floats, which level 6
 * shrinks by only 2% more (266 KB against 260 KB of a 361 KB answer) for
 * 30% more CPU, and a cache hit is compressed on an HTTP thread. */
#define GZIP_LEVEL 1

/* Whether the parameters after a coding (";q=0.5;x=y") leave it wanted:
 * only a q whose value is zero ("0", "0.", "0.000") refuses. */
static bool q_nonzero(const char *p, const char *end)
{
	while (p < end) {
		while (p < end && (*p == ';' || *p == ' ' || *p == '\t'))
			p++;
		const char *param = p;
		while (p < end && *p != ';')
			p++;
		if (p - param >= 2 && tolower((unsigned char)param[0]) == 'q') {
			const char *v = param + 1;
			while (v < p && (*v == ' ' || *v == '\t'))
				v++;
			if (v < p && *v == '=') {
				v++;
				while (v < p && (*v == ' ' || *v == '\t'))
					v++;
				bool zero = v < p && *v == '0';
				for (const char *d = v + 1; zero && d < p && *d != ' ' && *d != '\t'; d++)
					if (*d != '.' && *d != '0')
						zero = false;
				if (zero)
					return false;
			}
		}
	}
	return true;
}

bool gzip_accepted(const char *accept_encoding)
{
	if (!accept_encoding)
		return false;
	int gzip = -1, star = -1; /* -1 not named, 0 refused, 1 accepted */
	const char *p = accept_encoding;
	while (*p) {
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		const char *item = p;
		while (*p && *p != ',')
			p++;
		const char *name_end = item;
		while (name_end < p && *name_end != ';' && *name_end != ' ' && *name_end != '\t')
			name_end++;
		size_t n = (size_t)(name_end - item);
		const int accepted = q_nonzero(name_end, p) ? 1 : 0;
		if ((n == 4 && !strncasecmp(item, "gzip", 4)) ||
		    (n == 6 && !strncasecmp(item, "x-gzip", 6)))
			gzip = accepted;
		else if (n == 1 && item[0] == '*')
			star = accepted;
	}
	return gzip >= 0 ? gzip == 1 : star == 1;
}

char *gzip_compress(const char *data, size_t len, size_t *out_len)
{
	/* one deflate call into deflateBound's room always finishes; answers
	 * are far below zlib's 32-bit counts */
	if (len > (1u << 30))
		return NULL;
	z_stream zs;
	memset(&zs, 0, sizeof zs);
	if (deflateInit2(&zs, GZIP_LEVEL, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return NULL;
	uLong cap = deflateBound(&zs, (uLong)len);
	char *out = malloc(cap);
	int rc = Z_MEM_ERROR;
	if (out) {
		zs.next_in = (Bytef *)data;
		zs.avail_in = (uInt)len;
		zs.next_out = (Bytef *)out;
		zs.avail_out = (uInt)cap;
		rc = deflate(&zs, Z_FINISH);
	}
	*out_len = zs.total_out;
	deflateEnd(&zs);
	if (rc != Z_STREAM_END) {
		free(out);
		return NULL;
	}
	return out;
}
