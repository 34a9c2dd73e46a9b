/*
 * tfbundle_path.c - which checkpoint prefix a --model path names: PREFIX,
 * PREFIX.index, DIR/checkpoint (tf.train.latest_checkpoint) or a SavedModel
 * directory (tfbundle.h: tfbundle_resolve_prefix).
 */
#include "tfbundle.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "file.h"

/* ======================================================================== */
/* Prefix resolution                                                        */
/* ======================================================================== */

static bool is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool has_index(const char *prefix)
{
	char buf[4200];
	if (snprintf(buf, sizeof buf, "%s.index", prefix) >= (int)sizeof buf)
		return false;
	return is_file(buf);
}

static int put(char *out, size_t cap, const char *path, struct igs_error *err)
{
	if (strlen(path) + 1 > cap || strlen(path) > 4000)
		return igs_fail(err, IGS_ERR_IO, "%.200s...: path too long", path);
	strcpy(out, path);
	return 0;
}

/* The text-format value of model_checkpoint_path in DIR/checkpoint (a
 * CheckpointState proto): a quoted string with C escapes. */
static int checkpoint_file_prefix(const char *dir, const char *file, char *out, size_t cap,
                                  struct igs_error *err)
{
	unsigned char *text;
	size_t len;
	int rc = file_read_all(file, 1 << 20, &text, &len, err);
	if (rc)
		return rc;
	char value[4096];
	size_t n = 0;
	bool found = false;
	const char *key = "model_checkpoint_path:";
	for (size_t i = 0; i < len && !found; i++) {
		if ((i && text[i - 1] != '\n') || len - i < strlen(key) ||
		    memcmp(text + i, key, strlen(key)))
			continue;
		size_t j = i + strlen(key);
		while (j < len && (text[j] == ' ' || text[j] == '\t'))
			j++;
		if (j >= len || text[j] != '"')
			break;
		for (j++; j < len && text[j] != '"' && text[j] != '\n' && n + 1 < sizeof value;
		     j++) {
			if (text[j] == '\\' && j + 1 < len)
				j++;
			value[n++] = (char)text[j];
		}
		found = j < len && text[j] == '"';
	}
	free(text);
	if (!found || n == 0)
		return igs_fail(err, IGS_ERR_FORMAT,
		                "%s: no model_checkpoint_path: \"...\" line naming the latest "
		                "checkpoint",
		                file);
	value[n] = 0;
	char joined[8300];
	if (value[0] == '/')
		snprintf(joined, sizeof joined, "%s", value);
	else
		snprintf(joined, sizeof joined, "%s/%s", dir, value);
	if (!has_index(joined))
		return igs_fail(err, IGS_ERR_IO,
		                "%s names checkpoint '%s', but %s.index does not exist", file,
		                value, joined);
	return put(out, cap, joined, err);
}

int tfbundle_resolve_prefix(const char *path, char *out, size_t cap, struct igs_error *err)
{
	char buf[4200];
	if (strlen(path) > 4000)
		return igs_fail(err, IGS_ERR_IO, "%.200s...: path too long", path);
	if (is_dir(path)) {
		snprintf(buf, sizeof buf, "%s/checkpoint", path);
		if (is_file(buf))
			return checkpoint_file_prefix(path, buf, out, cap, err);
		snprintf(buf, sizeof buf, "%s/variables/variables", path);
		if (has_index(buf))
			return put(out, cap, buf, err);
		snprintf(buf, sizeof buf, "%s/variables", path);
		if (has_index(buf))
			return put(out, cap, buf, err);
		return igs_fail(
		    err, IGS_ERR_IO,
		    "%s: a directory without a 'checkpoint' file, variables/variables.index "
		    "or variables.index: not a TensorFlow checkpoint",
		    path);
	}
	size_t n = strlen(path);
	if (n > 6 && !strcmp(path + n - 6, ".index") && is_file(path)) {
		snprintf(buf, sizeof buf, "%.*s", (int)(n - 6), path);
		return put(out, cap, buf, err);
	}
	if (has_index(path))
		return put(out, cap, path, err);
	return igs_fail(err, IGS_ERR_IO, "%s: no such checkpoint (%s.index does not exist)", path,
	                path);
}

int tfbundle_is_checkpoint(const char *path)
{
	char buf[4200];
	if (is_dir(path))
		return tfbundle_resolve_prefix(path, buf, sizeof buf, NULL) == 0;
	size_t n = strlen(path);
	return (n > 6 && !strcmp(path + n - 6, ".index")) || (!is_file(path) && has_index(path));
}
