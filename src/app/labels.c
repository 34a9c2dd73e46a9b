/*
 * labels.c - class names for a model's outputs.
 *
 * Three sources, chosen by labels_open:
 *   - built in, 1000 classes: the ImageNet-1k names (imagenet_labels.c);
 *   - built in, 1001 classes: index 0 is "background" and index i is ImageNet
 *     class i-1 (the layout of the TensorFlow official checkpoints);
 *   - built in, any other count: "class_0", "class_1", ...;
 *   - a file: one name per line, '\r' before '\n' stripped, a UTF-8 byte order
 *     mark skipped, empty lines at the end ignored, extra lines ignored.
 */
#include "labels.h"

#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A labels file larger than this is not a list of class names. */
#define LABELS_FILE_MAX (64u << 20)
/* "class_" + up to 10 digits + NUL fits. */
#define CLASS_NAME_MAX 24

struct labels {
	int classes;
	const char **names; /* [classes], pointing into `text` or static storage */
	char *text;         /* file contents or "class_N" strings, owned */
};

/* ---------------------------------------------------------------- reading */

/*
 * split_lines - cut `text` (len bytes, NUL-terminated) into lines in place
 * and store up to `max` line starts in names[].  Returns the number of lines,
 * not counting empty lines at the end of the file.
 */
static int split_lines(char *text, size_t len, const char **names, int max)
{
	char *p = text, *end = text + len;
	int count = 0, nonempty = 0;
	if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *stop = nl ? nl : end;
		if (stop > p && stop[-1] == '\r')
			stop--;
		*stop = '\0';
		if (count < max)
			names[count] = p;
		count++;
		if (stop > p)
			nonempty = count;
		if (!nl)
			break;
		p = nl + 1;
	}
	return nonempty;
}

/* ------------------------------------------------------------------- API */

int labels_open(struct labels **out, const char *path, int classes, struct igs_error *err)
{
	*out = NULL;
	if (classes <= 0)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "labels: model has %d classes", classes);
	struct labels *l = calloc(1, sizeof(*l));
	if (l)
		l->names = calloc((size_t)classes, sizeof(*l->names));
	if (!l || !l->names) {
		labels_close(&l);
		return igs_fail(err, IGS_ERR_NOMEM, "labels: out of memory for %d classes", classes);
	}
	l->classes = classes;

	if (path) {
		size_t len = 0;
		unsigned char *text = NULL;
		int rc = file_read_all(path, LABELS_FILE_MAX, &text, &len, err);
		l->text = (char *)text;
		if (rc < 0) {
			labels_close(&l);
			return rc;
		}
		int lines = split_lines(l->text, len, l->names, classes);
		if (lines < classes) {
			labels_close(&l);
			return igs_fail(err, IGS_ERR_BAD_OPTION,
					"%s: has %d label lines, the model has %d classes", path,
					lines, classes);
		}
	} else if (classes == 1000) {
		for (int i = 0; i < 1000; i++)
			l->names[i] = labels_imagenet[i];
	} else if (classes == 1001) {
		l->names[0] = "background";
		for (int i = 1; i < 1001; i++)
			l->names[i] = labels_imagenet[i - 1];
	} else {
		l->text = malloc((size_t)classes * CLASS_NAME_MAX);
		if (!l->text) {
			labels_close(&l);
			return igs_fail(err, IGS_ERR_NOMEM, "labels: out of memory for %d classes",
					classes);
		}
		for (int i = 0; i < classes; i++) {
			char *name = l->text + (size_t)i * CLASS_NAME_MAX;
			snprintf(name, CLASS_NAME_MAX, "class_%d", i);
			l->names[i] = name;
		}
	}
	*out = l;
	return IGS_OK;
}

void labels_close(struct labels **l)
{
	if (!l || !*l)
		return;
	free((*l)->names);
	free((*l)->text);
	free(*l);
	*l = NULL;
}

const char *labels_get(const struct labels *l, int index)
{
	if (!l || index < 0 || index >= l->classes)
		return "";
	return l->names[index];
}
