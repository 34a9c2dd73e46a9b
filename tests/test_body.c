/*
 * test_body.c - what an upload carries (src/http/body.c): Content-Type
 * classification and the multipart/form-data parser, on their own.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"


struct parts_seen {
	int count;
	char names[8][64];
	char values[8][64];
	bool has_filename[8];
};

static int record_part(void *ctx, const struct form_part *p, struct igs_error *err)
{
	struct parts_seen *s = ctx;
	if (s->count >= 8)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "too many");
	snprintf(s->names[s->count], 64, "%s", p->name);
	snprintf(s->values[s->count], 64, "%.*s", (int)p->len, p->data);
	s->has_filename[s->count] = p->filename != NULL;
	s->count++;
	return 0;
}

START_TEST(test_content_type)
{
	enum body_kind k;
	char b[80];
	ck_assert_int_eq(body_kind_from_content_type("image/png", &k, b, sizeof b, NULL), 0);
	ck_assert_int_eq(k, BODY_RAW_IMAGE);
	ck_assert_int_eq(body_kind_from_content_type("IMAGE/JPEG; q=1", &k, b, sizeof b, NULL), 0);
	ck_assert_int_eq(k, BODY_RAW_IMAGE);
	ck_assert_int_eq(body_kind_from_content_type("multipart/form-data; boundary=\"a b\"", &k, b,
	                                             sizeof b, NULL),
	                 0);
	ck_assert_int_eq(k, BODY_MULTIPART);
	ck_assert_str_eq(b, "a b");
	ck_assert_int_eq(body_kind_from_content_type("multipart/form-data;charset=x;BOUNDARY=xyz",
	                                             &k, b, sizeof b, NULL),
	                 0);
	ck_assert_str_eq(b, "xyz");
	struct igs_error err;
	ck_assert_int_eq(body_kind_from_content_type("text/plain", &k, b, sizeof b, &err),
	                 IGS_ERR_UNSUPPORTED_MEDIA);
	ck_assert(strstr(err.message, "text/plain") != NULL);
	ck_assert_int_eq(body_kind_from_content_type(NULL, &k, b, sizeof b, &err),
	                 IGS_ERR_UNSUPPORTED_MEDIA);
	ck_assert_int_eq(body_kind_from_content_type("image/pngx", &k, b, sizeof b, &err),
	                 IGS_ERR_UNSUPPORTED_MEDIA);
	ck_assert_int_eq(body_kind_from_content_type("multipart/form-data", &k, b, sizeof b, &err),
	                 IGS_ERR_BAD_OPTION);
}
END_TEST

START_TEST(test_multipart_parse)
{
	/* Preamble, a part whose data contains a near-delimiter, a field,
	 * transport padding after a delimiter, an epilogue. */
	static const char body[] =
	    "preamble\r\n--XyZ\r\n"
	    "Content-Disposition: form-data; name=\"image\"; filename=\"a;b.png\"\r\n"
	    "Content-Type: image/png\r\n\r\n"
	    "ab--XyZ\r\n--Xy\r\n"
	    "--XyZ  \r\n"
	    "content-disposition: form-data; name=steps\r\n\r\n"
	    "12\r\n--XyZ--\r\nepilogue";
	struct parts_seen s = {0};
	ck_assert_int_eq(body_multipart_parse(body, sizeof body - 1, "XyZ", record_part, &s, NULL), 0);
	ck_assert_int_eq(s.count, 2);
	ck_assert_str_eq(s.names[0], "image");
	ck_assert(s.has_filename[0]);
	/* Only CRLF + "--" + boundary delimits: "--XyZ" inside a line and
	 * "\r\n--Xy" are content. */
	ck_assert_str_eq(s.values[0], "ab--XyZ\r\n--Xy");
	ck_assert_str_eq(s.names[1], "steps");
	ck_assert(!s.has_filename[1]);
	ck_assert_str_eq(s.values[1], "12");

	/* Delimiter at the very start, empty value. */
	static const char body2[] = "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n"
	                            "\r\n--b--";
	memset(&s, 0, sizeof s);
	ck_assert_int_eq(body_multipart_parse(body2, sizeof body2 - 1, "b", record_part, &s, NULL), 0);
	ck_assert_int_eq(s.count, 1);
	ck_assert_str_eq(s.values[0], "");

	/* Errors: truncated, no name, no boundary at all. */
	struct igs_error err;
	static const char trunc[] = "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nabc";
	ck_assert_int_eq(body_multipart_parse(trunc, sizeof trunc - 1, "b", record_part, &s, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert(strstr(err.message, "closing boundary") != NULL);
	static const char noname[] = "--b\r\nContent-Type: text/plain\r\n\r\nabc\r\n--b--";
	ck_assert_int_eq(body_multipart_parse(noname, sizeof noname - 1, "b", record_part, &s, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(body_multipart_parse("hello", 5, "b", record_part, &s, &err),
	                 IGS_ERR_BAD_OPTION);
	ck_assert_int_eq(body_multipart_parse("", 0, "b", record_part, &s, &err), IGS_ERR_BAD_OPTION);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("body");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_content_type);
	tcase_add_test(tc, test_multipart_parse);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
