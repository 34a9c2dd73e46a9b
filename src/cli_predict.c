/*
 * cli_predict.c - `igserve predict`: one /predict JSON line per image.
 */
#include <stdio.h>
#include <stdlib.h>

#include "igserve/cli.h"
#include "igserve/service.h"

#define MAX_IMAGES 4096

static int set_option(void *ctx, const char *name, const char *value, struct igs_error *err)
{
	return request_options_set(ctx, name, value, 0, err);
}

static void print_error_json(const char *image, const struct igs_error *err)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *e = cJSON_AddObjectToObject(root, "error");
	cJSON_AddStringToObject(e, "code", igs_code_name(err->code));
	cJSON_AddStringToObject(e, "message", err->message);
	cJSON_AddStringToObject(root, "image", image);
	char *text = cJSON_PrintUnformatted(root);
	if (text)
		puts(text);
	free(text);
	cJSON_Delete(root);
}

int cli_predict(int argc, char **argv)
{
	struct cli_model_options mo;
	struct request_options ro;
	cli_model_options_init(&mo);
	request_options_init(&ro);

	struct flag flags[CLI_MODEL_FLAG_COUNT + 3];
	size_t n = cli_model_flags(flags, &mo);
	int threads = cli_default_threads();
	flags[n++] = (struct flag){"threads", FLAG_INT, &threads, "N",
	                           "compute threads (default: the number of cores)", NULL, NULL};
	flags[n++] = (struct flag){"top-k", FLAG_CALLBACK, NULL, "K",
	                           "how many classes to print per image (5)", set_option, &ro};
	flags[n++] = (struct flag){"resize", FLAG_CALLBACK, NULL, "MODE",
	                           "letterbox (default), center-crop or stretch", set_option, &ro};

	const char *synopsis = "[--model FILE] [--labels FILE] [--top-k K] IMAGE...";
	const char *images[MAX_IMAGES];
	size_t count = 0;
	struct igs_error err = {0};
	int rc = flags_parse("predict", synopsis, flags, n, argc, argv, images, MAX_IMAGES, &count,
	                     &err);
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "igserve predict: %s\n", err.message);
		return 2;
	}
	if (threads < 1 || threads > 64) {
		fprintf(stderr, "igserve predict: --threads must be 1..64, got %d\n", threads);
		return 2;
	}
	cli_use_compute_threads(threads);
	if (count == 0) {
		fprintf(stderr, "igserve predict: no image given\nusage: igserve predict %s\n", synopsis);
		return 2;
	}

	struct service_config cfg = {0};
	struct service *svc = NULL;
	struct service_worker *worker = NULL;
	rc = cli_model_config(&mo, &cfg, &err);
	cfg.max_batch = 1;
	cfg.threads = threads;
	if (rc == 0)
		rc = service_open(&svc, &cfg, &err);
	if (rc == 0)
		rc = service_worker_create(&worker, svc, &err);
	if (rc < 0) {
		fprintf(stderr, "igserve predict: %s\n", err.message);
		service_close(&svc);
		return 1;
	}
	const struct model_info *info = model_get_info(service_model(svc));
	fprintf(stderr, "igserve: model %s (%s, %d classes, sha256 %.12s) from %s\n", info->arch,
	        info->family_name, info->classes, info->sha256, info->path);

	int failures = 0;
	for (size_t i = 0; i < count; i++) {
		cJSON *out = NULL;
		/* Read through the same byte path as HTTP uploads. */
		FILE *f = fopen(images[i], "rb");
		unsigned char *bytes = NULL;
		long len = -1;
		if (f && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 &&
		    fseek(f, 0, SEEK_SET) == 0) {
			if ((size_t)len > cfg.limits.max_bytes) {
				rc = igs_fail(&err, IGS_ERR_TOO_LARGE, "%s: %ld bytes, over the %zu-byte limit",
				              images[i], len, cfg.limits.max_bytes);
			} else {
				bytes = malloc((size_t)len + 1);
				if (!bytes || fread(bytes, 1, (size_t)len, f) != (size_t)len)
					rc = igs_fail(&err, IGS_ERR_IO, "%s: cannot read", images[i]);
				else
					rc = service_predict(worker, bytes, (size_t)len, &ro, NULL, &out, &err);
			}
		} else {
			rc = igs_fail(&err, IGS_ERR_IO, "%s: cannot open", images[i]);
		}
		if (f)
			fclose(f);
		free(bytes);
		if (rc < 0) {
			fprintf(stderr, "igserve predict: %s: %s\n", images[i], err.message);
			print_error_json(images[i], &err);
			failures++;
			continue;
		}
		char *text = cJSON_PrintUnformatted(out);
		if (text)
			puts(text);
		free(text);
		cJSON_Delete(out);
	}
	fflush(stdout);
	service_worker_free(&worker);
	service_close(&svc);
	return failures ? 1 : 0;
}
