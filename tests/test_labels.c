/* test_labels.c - built-in ImageNet names, the 1001-class offset, label files. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "labels.h"

/* Writes `text` to a fresh temporary file; returns its path (caller frees
 * the string and unlinks the file). */
static char *write_temp(const char *text)
{
	const char *dir = getenv("TMPDIR");
	char *path = malloc(4096);
	ck_assert_ptr_nonnull(path);
	snprintf(path, 4096, "%s/igs_labels_XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	size_t len = strlen(text);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

/* Expected names are torchvision.models._meta._IMAGENET_CATEGORIES[i]. */
START_TEST(test_builtin_imagenet)
{
	struct labels *l = NULL;
	struct igs_error err = {0};
	ck_assert_int_eq(labels_open(&l, NULL, 1000, &err), IGS_OK);
	ck_assert_str_eq(labels_get(l, 0), "tench");
	ck_assert_str_eq(labels_get(l, 1), "goldfish");
	ck_assert_str_eq(labels_get(l, 134), "crane bird");
	ck_assert_str_eq(labels_get(l, 281), "tabby");
	ck_assert_str_eq(labels_get(l, 282), "tiger cat");
	ck_assert_str_eq(labels_get(l, 285), "Egyptian cat");
	ck_assert_str_eq(labels_get(l, 517), "crane");
	ck_assert_str_eq(labels_get(l, 639), "maillot tank suit");
	ck_assert_str_eq(labels_get(l, 999), "toilet tissue");
	ck_assert_str_eq(labels_imagenet[281], "tabby");
	/* Out of range is an empty name, never NULL. */
	ck_assert_ptr_nonnull(labels_get(l, 1000));
	ck_assert_str_eq(labels_get(l, -1), "");
	labels_close(&l);
	ck_assert_ptr_null(l);
	labels_close(&l); /* closing twice is harmless */
}
END_TEST

START_TEST(test_builtin_1001_background)
{
	struct labels *l = NULL;
	ck_assert_int_eq(labels_open(&l, NULL, 1001, NULL), IGS_OK);
	ck_assert_str_eq(labels_get(l, 0), "background");
	ck_assert_str_eq(labels_get(l, 1), "tench");
	ck_assert_str_eq(labels_get(l, 282), "tabby");
	ck_assert_str_eq(labels_get(l, 1000), "toilet tissue");
	ck_assert_str_eq(labels_get(l, 1001), "");
	labels_close(&l);
}
END_TEST

START_TEST(test_builtin_other_counts)
{
	struct labels *l = NULL;
	ck_assert_int_eq(labels_open(&l, NULL, 4, NULL), IGS_OK);
	ck_assert_str_eq(labels_get(l, 0), "class_0");
	ck_assert_str_eq(labels_get(l, 3), "class_3");
	ck_assert_str_eq(labels_get(l, 4), "");
	labels_close(&l);
	ck_assert_int_eq(labels_open(&l, NULL, 12345, NULL), IGS_OK);
	ck_assert_str_eq(labels_get(l, 12344), "class_12344");
	labels_close(&l);

	struct igs_error err = {0};
	ck_assert_int_eq(labels_open(&l, NULL, 0, &err), IGS_ERR_BAD_OPTION);
	ck_assert_ptr_null(l);
	ck_assert_int_eq(labels_open(&l, NULL, -3, &err), IGS_ERR_BAD_OPTION);
	ck_assert_ptr_nonnull(strstr(err.message, "-3"));
}
END_TEST

START_TEST(test_file_overrides_builtin)
{
	char *path = write_temp("circle\nsquare\ntriangle\ncross\n");
	struct labels *l = NULL;
	struct igs_error err = {0};
	ck_assert_int_eq(labels_open(&l, path, 4, &err), IGS_OK);
	ck_assert_str_eq(labels_get(l, 0), "circle");
	ck_assert_str_eq(labels_get(l, 1), "square");
	ck_assert_str_eq(labels_get(l, 2), "triangle");
	ck_assert_str_eq(labels_get(l, 3), "cross");
	labels_close(&l);
	/* More lines than classes: the first ones are used. */
	ck_assert_int_eq(labels_open(&l, path, 2, &err), IGS_OK);
	ck_assert_str_eq(labels_get(l, 1), "square");
	ck_assert_str_eq(labels_get(l, 2), "");
	labels_close(&l);
	unlink(path);
	free(path);

	/* A 1000-class model with a file uses the file, not ImageNet. */
	size_t cap = 1000 * 16;
	char *text = malloc(cap);
	ck_assert_ptr_nonnull(text);
	size_t n = 0;
	for (int i = 0; i < 1000; i++)
		n += (size_t)snprintf(text + n, cap - n, "n%03d\n", i);
	path = write_temp(text);
	ck_assert_int_eq(labels_open(&l, path, 1000, &err), IGS_OK);
	ck_assert_str_eq(labels_get(l, 0), "n000");
	ck_assert_str_eq(labels_get(l, 281), "n281");
	ck_assert_str_eq(labels_get(l, 999), "n999");
	labels_close(&l);
	unlink(path);
	free(path);
	free(text);
}
END_TEST

START_TEST(test_file_crlf_bom_and_last_line)
{
	char *path = write_temp("\xEF\xBB\xBF" "red fox\r\nkit fox\r\n\r\ngrey fox\r\n\r\n");
	struct labels *l = NULL;
	struct igs_error err = {0};
	ck_assert_int_eq(labels_open(&l, path, 4, &err), IGS_OK);
	ck_assert_str_eq(labels_get(l, 0), "red fox");
	ck_assert_str_eq(labels_get(l, 1), "kit fox");
	ck_assert_str_eq(labels_get(l, 2), ""); /* a blank line inside keeps its place */
	ck_assert_str_eq(labels_get(l, 3), "grey fox");
	labels_close(&l);
	/* Trailing empty lines do not count as names. */
	ck_assert_int_eq(labels_open(&l, path, 5, &err), IGS_ERR_BAD_OPTION);
	ck_assert_ptr_null(l);
	unlink(path);
	free(path);

	/* No newline after the last name. */
	path = write_temp("a\nb");
	ck_assert_int_eq(labels_open(&l, path, 2, &err), IGS_OK);
	ck_assert_str_eq(labels_get(l, 0), "a");
	ck_assert_str_eq(labels_get(l, 1), "b");
	labels_close(&l);
	unlink(path);
	free(path);
}
END_TEST

START_TEST(test_short_file_names_file_and_counts)
{
	char *path = write_temp("cat\ndog\n");
	struct labels *l = (struct labels *)&l; /* must be reset to NULL */
	struct igs_error err = {0};
	ck_assert_int_eq(labels_open(&l, path, 7, &err), IGS_ERR_BAD_OPTION);
	ck_assert_ptr_null(l);
	ck_assert_int_eq(err.code, IGS_ERR_BAD_OPTION);
	char want[IGS_ERROR_MESSAGE_MAX];
	snprintf(want, sizeof(want), "%s: has 2 label lines, the model has 7 classes", path);
	ck_assert_str_eq(err.message, want);
	unlink(path);
	free(path);

	path = write_temp("");
	ck_assert_int_eq(labels_open(&l, path, 1, &err), IGS_ERR_BAD_OPTION);
	ck_assert_ptr_nonnull(strstr(err.message, path));
	unlink(path);
	free(path);
}
END_TEST

START_TEST(test_unreadable_file)
{
	struct labels *l = NULL;
	struct igs_error err = {0};
	const char *missing = "/nonexistent/igserve/labels.txt";
	ck_assert_int_eq(labels_open(&l, missing, 4, &err), IGS_ERR_IO);
	ck_assert_ptr_null(l);
	ck_assert_ptr_nonnull(strstr(err.message, missing));
	/* A directory opens on Linux but cannot be read. */
	ck_assert_int_eq(labels_open(&l, "/", 4, &err), IGS_ERR_IO);
	ck_assert_ptr_null(l);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("labels");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_builtin_imagenet);
	tcase_add_test(tc, test_builtin_1001_background);
	tcase_add_test(tc, test_builtin_other_counts);
	tcase_add_test(tc, test_file_overrides_builtin);
	tcase_add_test(tc, test_file_crlf_bom_and_last_line);
	tcase_add_test(tc, test_short_file_names_file_and_counts);
	tcase_add_test(tc, test_unreadable_file);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
