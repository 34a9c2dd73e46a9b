/*
 * routes.c - the endpoint table (see routes.h).
 */
#include "routes.h"

#include <string.h>

static const char *const paths[EP_COUNT] = {
    [EP_PREDICT] = "/predict",      [EP_ATTRIBUTE] = "/attribute",
    [EP_HEALTHZ] = "/healthz",      [EP_READYZ] = "/readyz",
    [EP_METRICS] = "/metrics",      [EP_MODEL] = "/v1/model",
    [EP_OPENAPI] = "/openapi.yaml", [EP_INDEX] = "/",
    [EP_APP_JS] = "/app.js",        [EP_APP_CSS] = "/app.css",
    [EP_OTHER] = "other",
};

enum endpoint routes_find(const char *path)
{
	for (int e = 0; e < EP_OTHER; e++)
		if (!strcmp(path, paths[e]))
			return (enum endpoint)e;
	if (!strcmp(path, "/index.html"))
		return EP_INDEX;
	return EP_OTHER;
}

const char *routes_name(enum endpoint e)
{
	return (unsigned)e < EP_COUNT ? paths[e] : paths[EP_OTHER];
}

bool routes_takes_upload(enum endpoint e)
{
	return e == EP_PREDICT || e == EP_ATTRIBUTE;
}
