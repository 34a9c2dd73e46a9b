/*
 * page.c - the web page at GET / and its script and style sheet, compiled
 * in from src/http/page/ by tools/embed.py (like openapi.yaml).
 *
 * The three files are revalidated on every use (Cache-Control: no-cache
 * with an ETag of their bytes) so a browser never runs a script from an
 * older binary against a newer API, yet does not download it again.  The
 * Content-Security-Policy keeps the page to its own origin: no external
 * resources can load even by mistake.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "server_internal.h"

extern const unsigned char page_index_html[], page_app_js[], page_app_css[];
extern const size_t page_index_html_len, page_app_js_len, page_app_css_len;

struct page_file {
	const unsigned char *bytes;
	const size_t *len;
	const char *content_type;
};

static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                          "img-src 'self' data: blob:; connect-src 'self'; "
                          "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

static bool page_file_for(enum endpoint ep, struct page_file *f)
{
	switch (ep) {
	case EP_INDEX:
		*f = (struct page_file){page_index_html, &page_index_html_len,
		                        "text/html; charset=utf-8"};
		return true;
	case EP_APP_JS:
		*f = (struct page_file){page_app_js, &page_app_js_len,
		                        "text/javascript; charset=utf-8"};
		return true;
	case EP_APP_CSS:
		*f = (struct page_file){page_app_css, &page_app_css_len, "text/css; charset=utf-8"};
		return true;
	default:
		return false;
	}
}

/* FNV-1a 64 of the bytes: an ETag that changes when the file does. */
static void page_etag(const struct page_file *f, char out[24])
{
	uint64_t h = 14695981039346656037ull;
	for (size_t i = 0; i < *f->len; i++)
		h = (h ^ f->bytes[i]) * 1099511628211ull;
	snprintf(out, 24, "\"%016llx\"", (unsigned long long)h);
}

enum MHD_Result page_answer(struct conn *c)
{
	struct page_file f;
	if (!page_file_for(c->ep, &f))
		return conn_send_error(c, IGS_ERR_NOT_FOUND, "no such endpoint");
	char etag[24];
	page_etag(&f, etag);
	const char *match =
	    MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
	const bool fresh = match && strstr(match, etag);
	struct MHD_Response *r = MHD_create_response_from_buffer(
	    fresh ? 0 : *f.len, fresh ? (void *)"" : (void *)f.bytes, MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, f.content_type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (c->ep == EP_INDEX) {
		MHD_add_response_header(r, "Content-Security-Policy", csp);
		MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	}
	conn_add_common_headers(c, r);
	const int status = fresh ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK;
	enum MHD_Result ok = MHD_queue_response(c->mhd, (unsigned)status, r);
	MHD_destroy_response(r);
	c->status = status;
	c->phase = PHASE_ANSWERED;
	return ok;
}
