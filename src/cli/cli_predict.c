/*
 * cli_predict.c - `igserve predict`: one /predict JSON line per image.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "file.h"
#include "json_render.h"
#include "service.h"

#define MAX_IMAGES 4096

int cli_predict(int argc, char **argv)
{
	struct cli_model_options mo;
	struct request_options ro;
	cli_model_options_init(&mo);
	request_options_init(&ro);

	struct flag flags[CLI_MODEL_FLAG_COUNT + 4];
	size_t n = cli_model_flags(flags, &mo);
	int threads = cli_default_threads();
	flags[n++] = (struct flag){"threads", FLAG_INT, &threads, "N",
	                           "compute threads (default: the number of cores)", NULL, NULL};
	flags[n++] = (struct flag){"top-k", FLAG_CALLBACK, NULL, "K",
	                           "how many classes to print per image (5)", cli_set_request_option, &ro};
	flags[n++] = (struct flag){"resize", FLAG_CALLBACK, NULL, "MODE",
	                           "letterbox (default), center-crop or stretch", cli_set_request_option, &ro};
	flags[n++] = (struct flag){"include-background", FLAG_BOOL, &ro.include_background, NULL,
	                           "list a 1001-class model's background class 0 too", NULL, NULL};

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
	if (count == 0) {
		fprintf(stderr, "igserve predict: no image given\nusage: igserve predict %s\n", synopsis);
		return 2;
	}

	struct service_config cfg = {0};
	struct service *svc = NULL;
	struct service_worker *worker = NULL;
	rc = cli_model_config(&mo, &cfg, &err);
	if (rc < 0) {
		fprintf(stderr, "igserve predict: %s\n", err.message);
		return 1;
	}
	cfg.max_batch = 1;
	if (cli_open_service("predict", &cfg, threads, &svc, &worker) != 0)
		return 1;

	int failures = 0;
	for (size_t i = 0; i < count; i++) {
		struct predict_result out = {0};
		unsigned char *bytes = NULL;
		size_t len = 0;
		/* The same byte path as HTTP uploads: the decoder sniffs the format. */
		rc = file_read_all(images[i], cfg.limits.max_bytes, &bytes, &len, &err);
		if (rc == 0)
			rc = service_predict(worker, bytes, len, &ro, NULL, &out, &err);
		free(bytes);
		if (rc < 0) {
			fprintf(stderr, "igserve predict: %s: %s\n", images[i], err.message);
			cli_print_error_json(images[i], &err);
			failures++;
			continue;
		}
		cli_print_json(json_render_predict(svc, &out));
		predict_result_clear(&out);
	}
	fflush(stdout);
	service_worker_close(&worker);
	service_close(&svc);
	return failures ? 1 : 0;
}
