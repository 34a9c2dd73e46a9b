/* test_error.c - the error table: names and HTTP statuses the contract fixes. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

START_TEST(test_fail_formats_and_returns_code)
{
	struct igs_error err = {0};
	int rc = igs_fail(&err, IGS_ERR_BAD_OPTION, "steps must be 1..%d, got %d", 4096, 0);
	ck_assert_int_eq(rc, IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(err.code, IGS_ERR_BAD_OPTION);
	ck_assert_str_eq(err.message, "steps must be 1..4096, got 0");
	ck_assert_int_eq(igs_fail(NULL, IGS_ERR_IO, "x"), IGS_ERR_IO);
}
END_TEST

START_TEST(test_http_statuses_match_contract)
{
	ck_assert_int_eq(igs_code_http_status(IGS_ERR_BAD_OPTION), 400);
	ck_assert_int_eq(igs_code_http_status(IGS_ERR_NOT_FOUND), 404);
	ck_assert_int_eq(igs_code_http_status(IGS_ERR_METHOD), 405);
	ck_assert_int_eq(igs_code_http_status(IGS_ERR_TOO_LARGE), 413);
	ck_assert_int_eq(igs_code_http_status(IGS_ERR_IMAGE_TOO_LARGE), 413);
	ck_assert_int_eq(igs_code_http_status(IGS_ERR_UNSUPPORTED_MEDIA), 415);
	ck_assert_int_eq(igs_code_http_status(IGS_ERR_IMAGE_DECODE), 422);
	ck_assert_int_eq(igs_code_http_status(IGS_ERR_BUSY), 429);
	ck_assert_int_eq(igs_code_http_status(IGS_ERR_NOT_READY), 503);
	ck_assert_int_eq(igs_code_http_status(IGS_ERR_DEADLINE), 504);
	ck_assert_int_eq(igs_code_http_status(12345), 500);
	ck_assert_str_eq(igs_code_name(IGS_ERR_BAD_OPTION), "bad_option");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("error");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_fail_formats_and_returns_code);
	tcase_add_test(tc, test_http_statuses_match_contract);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
