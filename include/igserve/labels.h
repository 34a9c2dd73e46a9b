/*
 * labels.h - class names: the 1000 ImageNet labels built in, or a file.
 */
#ifndef IGSERVE_LABELS_H
#define IGSERVE_LABELS_H

#include "igserve/error.h"

struct labels;

/*
 * labels_open - names for a model with `classes` outputs.  path NULL: the
 * built-in ImageNet names (1000 classes; 1001 classes skip index 0, which is
 * "background"); other counts get "class_N".  A file has one name per line;
 * fewer lines than classes is IGS_ERR_BAD_OPTION naming the file.
 */
int labels_open(struct labels **out, const char *path, int classes, struct igs_error *err);
void labels_close(struct labels **l);
/* The name of class `index` (never NULL; valid until close). */
const char *labels_get(const struct labels *l, int index);

#endif
