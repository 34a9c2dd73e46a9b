/*
 * routes.h - the endpoints, by path: what the access handler dispatches on
 * and what requests are counted and logged under.
 */
#ifndef IGSERVE_ROUTES_H
#define IGSERVE_ROUTES_H

#include <stdbool.h>

enum endpoint {
	EP_PREDICT,
	EP_ATTRIBUTE,
	EP_HEALTHZ,
	EP_READYZ,
	EP_METRICS,
	EP_MODEL,
	EP_OPENAPI,
	EP_INDEX,   /* the web page: "/" and "/index.html" */
	EP_APP_JS,  /* its script */
	EP_APP_CSS, /* its style sheet */
	EP_OTHER, /* no such endpoint */
	EP_COUNT
};

/* The endpoint a request path names (EP_OTHER when none). */
enum endpoint routes_find(const char *path);

/* Its path ("/predict", "/" for the page), "other" for EP_OTHER. */
const char *routes_name(enum endpoint e);

/* Whether the endpoint takes an upload (POST) rather than a GET. */
bool routes_takes_upload(enum endpoint e);

#endif
