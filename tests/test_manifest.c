/*
 * test_manifest.c - `igserve attribute --manifest FILE --out DIR` run as
 * users run it (the binary, IGSERVE_BINARY): every line explained into
 * DIR, bad lines reported without stopping the rest, an interrupted run
 * (the files one leaves) resumed to the same outputs as an uninterrupted
 * one, a third run that does nothing, and --shard I/N partitioning the
 * lines.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINES 6

static char binary[4096], model[4096], heldout[4096], tmp[] = "/tmp/igserve-manifest-XXXXXX";

static void setup(void)
{
	const char *b = getenv("IGSERVE_BINARY"), *f = getenv("IGSERVE_FIXTURES");
	snprintf(binary, sizeof binary, "%s", b ? b : "build/igserve");
	f = f ? f : "tests/fixtures";
	snprintf(model, sizeof model, "%s/../../models/demo/shapes-resnet.safetensors", f);
	snprintf(heldout, sizeof heldout, "%s/shapes/heldout", f);
	ck_assert_ptr_nonnull(mkdtemp(tmp));
}

static void teardown(void)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
	ck_assert_int_eq(system(cmd), 0);
}

/* The manifest: LINES good lines (ids img0..), plus `bad` bad ones. */
static void write_manifest(const char *path, bool bad)
{
	static const char *const shapes[] = {"circle", "square", "triangle"};
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < LINES; i++) {
		fprintf(f,
		        "{\"image\": \"%s/%s_0%d.png\", \"id\": \"img%d\", \"steps\": 8, \"heatmaps\": "
		        "[\"magnitude\"], \"raw\": \"npy\"}\n",
		        heldout, shapes[i % 3], i / 3, i);
		if (bad && i == 2) {
			fputs("{\"image\": \"missing.png\", \"id\": \"gone\"}\n", f);
			fputs("this is not JSON\n", f);
		}
	}
	fclose(f);
}

/* Run the CLI on the manifest; its exit status, and the last stderr line
 * (the summary) into `summary`. */
static int run(const char *manifest, const char *out, const char *shard, char *summary,
               size_t size)
{
	char cmd[16384];
	snprintf(cmd, sizeof cmd, "'%s' attribute --model '%s' --manifest '%s' --out '%s' %s%s 2>&1",
	         binary, model, manifest, out, shard ? "--shard " : "", shard ? shard : "");
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	char line[4096];
	summary[0] = '\0';
	while (fgets(line, sizeof line, p))
		snprintf(summary, size, "%s", line);
	int status = pclose(p);
	ck_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* DIR/NAME's JSON without the timings (which differ run to run). */
static char *answer(const char *dir, const char *id)
{
	char path[8192];
	snprintf(path, sizeof path, "%s/%s.json", dir, id);
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	static char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	cJSON *doc = cJSON_Parse(buf);
	ck_assert_msg(doc != NULL, "%s is not JSON", path);
	cJSON_DeleteItemFromObject(doc, "timing_ms");
	char *text = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	return text;
}

static bool exists(const char *dir, const char *name)
{
	char path[8192];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

START_TEST(test_every_line_and_bad_lines)
{
	char manifest[1024], out[1024], summary[4096];
	snprintf(manifest, sizeof manifest, "%s/m.jsonl", tmp);
	snprintf(out, sizeof out, "%s/out", tmp);
	write_manifest(manifest, true);
	ck_assert_int_eq(run(manifest, out, NULL, summary, sizeof summary), 1);
	ck_assert_msg(strstr(summary, "8 lines, 8 in this shard: 6 explained, 0 already done, 2 "
	                              "failed"),
	              "summary: %s", summary);
	for (int i = 0; i < LINES; i++) {
		char name[64];
		snprintf(name, sizeof name, "img%d.json", i);
		ck_assert(exists(out, name));
		snprintf(name, sizeof name, "img%d.magnitude.png", i);
		ck_assert(exists(out, name));
		snprintf(name, sizeof name, "img%d.npy", i);
		ck_assert(exists(out, name));
	}
	ck_assert(!exists(out, "gone.json"));
	/* the JSON names its map by file, and holds no base64 .npy */
	char *a = answer(out, "img0");
	ck_assert(strstr(a, "\"magnitude\":\"img0.magnitude.png\"") != NULL);
	ck_assert(strstr(a, "attributions_npy") == NULL);
	free(a);
	/* the rerun explains nothing anew and still reports the bad lines */
	ck_assert_int_eq(run(manifest, out, NULL, summary, sizeof summary), 1);
	ck_assert_msg(strstr(summary, "0 explained, 6 already done, 2 failed"), "summary: %s",
	              summary);
}
END_TEST

/* targets= in a line: every target's maps are files, the JSON names each */
START_TEST(test_targets_maps_are_files)
{
	char manifest[1024], out[1024], summary[4096];
	snprintf(manifest, sizeof manifest, "%s/t.jsonl", tmp);
	snprintf(out, sizeof out, "%s/out", tmp);
	FILE *f = fopen(manifest, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
	        "{\"image\": \"%s/circle_00.png\", \"id\": \"multi\", \"steps\": 4, "
	        "\"targets\": \"top3\", \"heatmaps\": [\"magnitude\", \"overlay\"]}\n",
	        heldout);
	fclose(f);
	ck_assert_int_eq(run(manifest, out, NULL, summary, sizeof summary), 0);
	char *a = answer(out, "multi");
	ck_assert_ptr_nonnull(a);
	cJSON *doc = cJSON_Parse(a);
	free(a);
	cJSON *list = cJSON_GetObjectItem(doc, "attributions");
	ck_assert_int_eq(cJSON_GetArraySize(list), 3);
	for (int k = 0; k < 3; k++) {
		cJSON *e = cJSON_GetArrayItem(list, k);
		int index = cJSON_GetObjectItem(cJSON_GetObjectItem(e, "target"), "index")->valueint;
		for (int m = 0; m < 2; m++) {
			const char *map = m ? "overlay" : "magnitude";
			char want[256];
			if (k == 0)
				snprintf(want, sizeof want, "multi.%s.png", map);
			else
				snprintf(want, sizeof want, "multi.target_%d.%s.png", index, map);
			cJSON *file = cJSON_GetObjectItem(cJSON_GetObjectItem(e, "heatmaps"), map);
			ck_assert_msg(cJSON_IsString(file) && !strcmp(file->valuestring, want),
			              "target %d's %s: %s, expected %s", index, map,
			              cJSON_IsString(file) ? file->valuestring : "(none)", want);
			ck_assert_msg(exists(out, want), "%s not written", want);
		}
	}
	cJSON_Delete(doc);
}
END_TEST

START_TEST(test_interrupted_run_resumes)
{
	char manifest[1024], clean[1024], cut[1024], summary[4096];
	snprintf(manifest, sizeof manifest, "%s/m.jsonl", tmp);
	snprintf(clean, sizeof clean, "%s/clean", tmp);
	snprintf(cut, sizeof cut, "%s/cut", tmp);
	write_manifest(manifest, false);
	ck_assert_int_eq(run(manifest, clean, NULL, summary, sizeof summary), 0);
	/* what an interrupted run leaves: the first answers complete, the next
	 * line's map written but not its JSON (the JSON is written last), here
	 * with the wrong bytes */
	char cmd[16384];
	snprintf(cmd, sizeof cmd,
	         "mkdir '%s' && cp '%s'/img0.* '%s'/img1.* '%s'/ && echo partial > '%s'/img2.magnitude.png",
	         cut, clean, clean, cut, cut);
	ck_assert_int_eq(system(cmd), 0);
	/* resumed: the same answers as the clean run */
	ck_assert_int_eq(run(manifest, cut, NULL, summary, sizeof summary), 0);
	ck_assert_msg(strstr(summary, "4 explained, 2 already done, 0 failed"), "summary: %s",
	              summary);
	for (int i = 0; i < LINES; i++) {
		char id[16];
		snprintf(id, sizeof id, "img%d", i);
		char *a = answer(clean, id), *b = answer(cut, id);
		ck_assert_ptr_nonnull(a);
		ck_assert_ptr_nonnull(b);
		ck_assert_str_eq(a, b);
		free(a);
		free(b);
	}
	/* a third run does nothing */
	ck_assert_int_eq(run(manifest, cut, NULL, summary, sizeof summary), 0);
	ck_assert_msg(strstr(summary, "0 explained, 6 already done, 0 failed"), "summary: %s",
	              summary);
	/* the partial map replaced, no stray temporary files */
	snprintf(cmd, sizeof cmd, "cmp -s '%s'/img2.magnitude.png '%s'/img2.magnitude.png", clean,
	         cut);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp-", cut);
	ck_assert_int_ne(system(cmd), 0);
}
END_TEST

START_TEST(test_shards_partition_the_lines)
{
	char manifest[1024], out[1024], summary[4096];
	snprintf(manifest, sizeof manifest, "%s/m.jsonl", tmp);
	snprintf(out, sizeof out, "%s/sharded", tmp);
	write_manifest(manifest, false);
	int explained = 0;
	for (int s = 0; s < 3; s++) {
		char shard[8];
		snprintf(shard, sizeof shard, "%d/3", s);
		ck_assert_int_eq(run(manifest, out, shard, summary, sizeof summary), 0);
		/* lines s and s + 3 */
		ck_assert_msg(strstr(summary, "2 in this shard: 2 explained, 0 already done"),
		              "shard %s: %s", shard, summary);
		explained += 2;
		for (int i = 0; i < LINES; i++) {
			char name[64];
			snprintf(name, sizeof name, "img%d.json", i);
			ck_assert_int_eq(exists(out, name), i % 3 <= s);
		}
	}
	ck_assert_int_eq(explained, LINES);
	ck_assert_int_eq(run(manifest, out, "3/3", summary, sizeof summary), 2);
	ck_assert_int_eq(run(manifest, out, "x", summary, sizeof summary), 2);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("manifest");
	TCase *tc = tcase_create("cli");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_every_line_and_bad_lines);
	tcase_add_test(tc, test_targets_maps_are_files);
	tcase_add_test(tc, test_interrupted_run_resumes);
	tcase_add_test(tc, test_shards_partition_the_lines);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
