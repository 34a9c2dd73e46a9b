/*
 * test_http_views.c - the notebook's views over HTTP (issue 15, item 5):
 * `path_views` chooses the per-point fields of the path rows (base64 PNGs
 * of the right kind and size), `path_maps=true` alone answers as before,
 * the channel deviation heatmaps come by name only, bad values and the
 * cap are 400s naming path_views, and /v1/model reports the cap.
 */
#include <check.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base64.h"
#include "http_harness.h"

static struct server_proc server;

static void server_up(void)
{
	static const char *const extra[] = {"--workers", "1", NULL};
	server_spawn(&server, extra);
}

static void server_down(void)
{
	ck_assert_int_eq(server_terminate(&server, 30), 0);
	assert_clean_log(server.log_path);
	unlink(server.log_path);
}

/* POST the test image to /attribute?QUERY: the parsed answer (200). */
static cJSON *attribute(const char *query)
{
	size_t png_len;
	void *png = make_png(64, 64, 3, &png_len);
	char path[512];
	snprintf(path, sizeof path, "/attribute?%s", query);
	struct request q = {.path = path, .image = png, .image_len = png_len};
	struct reply r;
	http(server.port, &q, &r);
	ck_assert_msg(r.status == 200, "%s: status %ld: %s", query, r.status, r.body);
	cJSON *doc = cJSON_Parse(r.body);
	ck_assert(doc != NULL);
	reply_free(&r);
	free(png);
	return doc;
}

/* A 400 whose message holds every one of `words` (NULL-terminated). */
static void refused(const char *query, const char *const *words)
{
	size_t png_len;
	void *png = make_png(64, 64, 3, &png_len);
	char path[512];
	snprintf(path, sizeof path, "/attribute?%s", query);
	struct request q = {.path = path, .image = png, .image_len = png_len};
	struct reply r;
	http(server.port, &q, &r);
	assert_error(&r, 400, "bad_option");
	cJSON *doc = cJSON_Parse(r.body);
	const char *msg =
	    cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "error"), "message")->valuestring;
	for (int i = 0; words[i]; i++)
		ck_assert_msg(strstr(msg, words[i]), "%s: '%s' not in \"%s\"", query, words[i],
		              msg);
	cJSON_Delete(doc);
	reply_free(&r);
	free(png);
}

/* A base64 PNG field: decodes to a 64 x 64 image with `channels`. */
static void assert_png_field(const cJSON *row, const char *key, int channels)
{
	const cJSON *v = cJSON_GetObjectItem(row, key);
	ck_assert_msg(cJSON_IsString(v), "no %s", key);
	size_t len = strlen(v->valuestring), n = 0;
	unsigned char *bytes = malloc(len / 4 * 3 + 3);
	ck_assert_int_eq(base64_decode(v->valuestring, len, bytes, &n), 0);
	png_image im;
	memset(&im, 0, sizeof im);
	im.version = PNG_IMAGE_VERSION;
	ck_assert(png_image_begin_read_from_memory(&im, bytes, n));
	ck_assert_int_eq((int)im.width, 64);
	ck_assert_int_eq((int)im.height, 64);
	ck_assert_int_eq(PNG_IMAGE_PIXEL_CHANNELS(im.format), channels);
	png_image_free(&im);
	free(bytes);
}

/* The keys of every path row beyond the table's five. */
static void assert_row_views(const cJSON *doc, int points, const char *const *want)
{
	const cJSON *path = cJSON_GetObjectItem(doc, "path");
	ck_assert_int_eq(cJSON_GetArraySize(path), points);
	const cJSON *row;
	cJSON_ArrayForEach(row, path)
	{
		int extra = cJSON_GetArraySize(row) - 5;
		int n = 0;
		for (; want[n]; n++)
			assert_png_field(row, want[n], strcmp(want[n], "map") ? 3 : 1);
		ck_assert_int_eq(extra, n);
	}
}

START_TEST(test_path_views_fields)
{
	static const char *const none[] = {NULL};
	static const char *const gradient[] = {"map", NULL};
	static const char *const normalized[] = {"step_normalized", NULL};
	static const char *const all[] = {"map", "step_normalized", "step_deviation", NULL};
	cJSON *doc = attribute("steps=4&heatmaps=none");
	assert_row_views(doc, 4, none);
	cJSON_Delete(doc);
	doc = attribute("steps=4&heatmaps=none&path_maps=true");
	assert_row_views(doc, 4, gradient);
	cJSON_Delete(doc);
	doc = attribute("steps=3&heatmaps=none&path_views=step_normalized");
	assert_row_views(doc, 3, normalized);
	cJSON_Delete(doc);
	doc = attribute("steps=5&method=riemann_trapezoid&heatmaps=none&path_maps=true&"
	                "path_views=gradient,step_normalized,step_deviation");
	assert_row_views(doc, 5, all);
	cJSON_Delete(doc);
}
END_TEST

START_TEST(test_channel_deviation_heatmaps)
{
	cJSON *doc = attribute("steps=2");
	const cJSON *maps = cJSON_GetObjectItem(doc, "heatmaps");
	ck_assert_int_eq(cJSON_GetArraySize(maps), 7); /* the contract's seven, unchanged */
	ck_assert(cJSON_GetObjectItem(maps, "channel_r_deviation") == NULL);
	cJSON_Delete(doc);
	doc = attribute("steps=2&heatmaps=channel_b_deviation,channel_r_deviation");
	maps = cJSON_GetObjectItem(doc, "heatmaps");
	ck_assert_int_eq(cJSON_GetArraySize(maps), 2);
	assert_png_field(maps, "channel_r_deviation", 1);
	assert_png_field(maps, "channel_b_deviation", 1);
	/* in HEATMAP_* order */
	ck_assert_str_eq(maps->child->string, "channel_r_deviation");
	cJSON_Delete(doc);
}
END_TEST

START_TEST(test_bad_path_views)
{
	refused("path_views=steps", (const char *const[]){"path_views", "'steps'", NULL});
	refused("path_views=gradient,sideways",
	        (const char *const[]){"path_views", "'sideways'", "step_deviation", NULL});
	refused("path_views=", (const char *const[]){"path_views", NULL});
	refused("steps=129&path_views=step_deviation",
	        (const char *const[]){"path_views", "at most 128", "129", NULL});
	refused("tolerance=0.01&path_views=step_normalized",
	        (const char *const[]){"path_views", "128", "512", NULL});
	refused("heatmaps=channel_x_deviation",
	        (const char *const[]){"channel_x_deviation", "channel_r_deviation", NULL});
	/* the gray maps keep their larger cap */
	cJSON *doc = attribute("steps=129&path_maps=true&heatmaps=none");
	assert_row_views(doc, 129, (const char *const[]){"map", NULL});
	cJSON_Delete(doc);
}
END_TEST

START_TEST(test_model_reports_the_cap)
{
	struct request q = {.path = "/v1/model"};
	struct reply r;
	http(server.port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	cJSON *doc = cJSON_Parse(r.body);
	const cJSON *lim = cJSON_GetObjectItem(doc, "limits");
	ck_assert_int_eq(cJSON_GetObjectItem(lim, "path_maps_points")->valueint, 512);
	ck_assert_int_eq(cJSON_GetObjectItem(lim, "path_steps_points")->valueint, 128);
	cJSON_Delete(doc);
	reply_free(&r);
}
END_TEST

int main(void)
{
	setup_paths();
	Suite *s = suite_create("http-views");
	TCase *tc = tcase_create("views");
	tcase_add_unchecked_fixture(tc, server_up, server_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_path_views_fields);
	tcase_add_test(tc, test_channel_deviation_heatmaps);
	tcase_add_test(tc, test_bad_path_views);
	tcase_add_test(tc, test_model_reports_the_cap);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
