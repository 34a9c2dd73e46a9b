/* manifest.c - see manifest.h. */
#include "manifest.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int manifest_id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n < 1 || n > 128 || id[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* The default id: the file name without directories or extension. */
static void default_id(const char *image, char *id, size_t size)
{
	const char *base = strrchr(image, '/');
	base = base ? base + 1 : image;
	snprintf(id, size, "%s", base);
	char *dot = strrchr(id, '.');
	if (dot && dot != id)
		*dot = '\0';
}

/* An option's JSON value as the text request_options_set takes. */
static int option_text(const cJSON *v, char *buf, size_t size)
{
	if (cJSON_IsString(v))
		return snprintf(buf, size, "%s", v->valuestring) < (int)size ? 0 : -1;
	if (cJSON_IsBool(v))
		return snprintf(buf, size, "%s", cJSON_IsTrue(v) ? "true" : "false"), 0;
	if (cJSON_IsNumber(v))
		return snprintf(buf, size, "%.17g", v->valuedouble), 0;
	if (cJSON_IsArray(v)) {
		size_t used = 0;
		buf[0] = '\0';
		const cJSON *item;
		cJSON_ArrayForEach(item, v)
		{
			if (!cJSON_IsString(item))
				return -1;
			int n = snprintf(buf + used, size - used, "%s%s", used ? "," : "",
			                 item->valuestring);
			if (n < 0 || (size_t)n >= size - used)
				return -1;
			used += (size_t)n;
		}
		return 0;
	}
	return -1;
}

int manifest_line_parse(const char *line, struct manifest_entry *e, struct request_options *o,
                        int max_steps_cap, struct igs_error *err)
{
	memset(e, 0, sizeof *e);
	if (line[strspn(line, " \t\r\n")] == '\0')
		return 1;
	cJSON *doc = cJSON_Parse(line);
	int rc = 0;
	if (!cJSON_IsObject(doc)) {
		rc = igs_fail(err, IGS_ERR_BAD_OPTION, "not a JSON object");
		goto done;
	}
	const cJSON *image = cJSON_GetObjectItemCaseSensitive(doc, "image");
	if (!cJSON_IsString(image) || !image->valuestring[0]) {
		rc = igs_fail(err, IGS_ERR_BAD_OPTION, "no \"image\" (a file path) in the line");
		goto done;
	}
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
	if (id && !cJSON_IsString(id)) {
		rc = igs_fail(err, IGS_ERR_BAD_OPTION, "\"id\" must be a string");
		goto done;
	}
	if (id)
		snprintf(e->id, sizeof e->id, "%s", id->valuestring);
	else
		default_id(image->valuestring, e->id, sizeof e->id);
	if (!manifest_id_valid(e->id) || (id && strlen(id->valuestring) > 128)) {
		rc = igs_fail(err, IGS_ERR_BAD_OPTION,
		              "id '%s' must be 1-128 characters of A-Z a-z 0-9 . _ - not starting "
		              "with '.'",
		              id ? id->valuestring : e->id);
		goto done;
	}
	const cJSON *v;
	cJSON_ArrayForEach(v, doc)
	{
		if (!strcmp(v->string, "image") || !strcmp(v->string, "id"))
			continue;
		char text[1024];
		if (option_text(v, text, sizeof text) != 0) {
			rc = igs_fail(err, IGS_ERR_BAD_OPTION,
			              "option %s: give a string, a number, a boolean or a list of "
			              "strings",
			              v->string);
			goto done;
		}
		if ((rc = request_options_set(o, v->string, text, max_steps_cap, err)))
			goto done;
	}
	if (!(e->image = strdup(image->valuestring)))
		rc = igs_fail(err, IGS_ERR_NOMEM, "out of memory");
done:
	cJSON_Delete(doc);
	return rc;
}

void manifest_entry_clear(struct manifest_entry *e)
{
	free(e->image);
	e->image = NULL;
}
