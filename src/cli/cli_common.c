/*
 * cli_common.c - what predict, attribute and serve share on the command
 * line: the model flags and the default model.
 */
#define _GNU_SOURCE /* sched_getaffinity */
#include <sched.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "json_render.h"
#include "service.h"

#ifndef IGSERVE_SOURCE_ROOT
#define IGSERVE_SOURCE_ROOT "."
#endif
#ifndef IGSERVE_DATADIR
#define IGSERVE_DATADIR "/usr/local/share/igserve"
#endif

#define IMAGENET_WEIGHTS "resnet50.tv_in1k.safetensors"
#define DEMO_MODEL "models/demo/shapes-resnet.safetensors"

void cli_model_options_init(struct cli_model_options *o)
{
	*o = (struct cli_model_options){.max_bytes = IMAGE_DEFAULT_MAX_BYTES,
	                                .max_pixels = (size_t)IMAGE_DEFAULT_MAX_PIXELS};
}

size_t cli_model_flags(struct flag *f, struct cli_model_options *o)
{
	const struct flag add[CLI_MODEL_FLAG_COUNT] = {
		{"model", FLAG_STRING, &o->model, "FILE",
		 "weights (.safetensors, or a TensorFlow checkpoint prefix or directory); default: "
		 "fetched ImageNet weights, else the demo model",
		 NULL, NULL},
		{"labels", FLAG_STRING, &o->labels, "FILE",
		 "class names, one per line (default: built-in ImageNet names, or labels.txt beside "
		 "the model)",
		 NULL, NULL},
		{"input-size", FLAG_INT, &o->input_size, "N", "model input size in pixels (default 224)",
		 NULL, NULL},
		{"mean", FLAG_STRING, &o->mean, "R,G,B",
		 "normalization mean on the 0..1 scale (default: the family's)", NULL, NULL},
		{"std", FLAG_STRING, &o->std, "R,G,B",
		 "normalization std on the 0..1 scale (default: the family's)", NULL, NULL},
		{"max-bytes", FLAG_SIZE, &o->max_bytes, "BYTES", "largest accepted image file (16M)",
		 NULL, NULL},
		{"max-pixels", FLAG_SIZE, &o->max_pixels, "N",
		 "largest accepted decoded image, width x height (40000000)", NULL, NULL},
		{"precision", FLAG_STRING, &o->precision, "P",
		 "convolution arithmetic: auto (default: bf16x3 on CPUs with AMX, else fp32), fp32, "
		 "or bf16x3 (split bfloat16 on AMX: logits within 5e-6 of fp32's, faster)",
		 NULL, NULL},
	};
	memcpy(f, add, sizeof add);
	return CLI_MODEL_FLAG_COUNT;
}

static int parse_triple(const char *name, const char *text, float out[3], struct igs_error *err)
{
	char *end;
	const char *p = text;
	for (int i = 0; i < 3; i++) {
		out[i] = strtof(p, &end);
		if (end == p || (i < 2 && *end != ',') || (i == 2 && *end))
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "--%s must be three numbers R,G,B on the 0..1 scale, got '%s'", name,
			                text);
		p = end + 1;
	}
	return 0;
}

int cli_model_config(const struct cli_model_options *o, struct service_config *cfg,
                     struct igs_error *err)
{
	if (o->precision && service_check_precision(o->precision, err) < 0)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "--precision (IGSERVE_PRECISION) must be auto, fp32 or bf16x3, got '%s'",
		                o->precision);
	cfg->precision = o->precision;
	cfg->model_path = o->model ? o->model : cli_default_model_path();
	if (!cfg->model_path)
		return igs_fail(err, IGS_ERR_IO,
		                "no model: pass --model FILE (or set IGSERVE_MODEL), run "
		                "scripts/fetch-weights, or keep %s",
		                DEMO_MODEL);
	cfg->labels_path = o->labels;
	cfg->input_size = o->input_size;
	cfg->limits.max_bytes = o->max_bytes;
	cfg->limits.max_pixels = o->max_pixels;
	if (o->mean || o->std) {
		if (!o->mean || !o->std)
			return igs_fail(err, IGS_ERR_BAD_OPTION, "--mean and --std go together");
		int rc = parse_triple("mean", o->mean, cfg->mean, err);
		if (rc == 0)
			rc = parse_triple("std", o->std, cfg->std, err);
		if (rc < 0)
			return rc;
		for (int c = 0; c < 3; c++)
			if (!(cfg->std[c] > 0))
				return igs_fail(err, IGS_ERR_BAD_OPTION, "--std values must be positive");
		cfg->custom_normalization = true;
	}
	return 0;
}

/*
 * A container limited to 2 CPUs still sees every CPU of the host in its
 * affinity mask, and threads beyond the quota only wait for their turn.
 */
int cli_cgroup_cpu_limit(const char *root)
{
	char path[4096];
	long long quota = -1, period = 0;
	snprintf(path, sizeof path, "%s/cpu.max", root);
	FILE *f = fopen(path, "r");
	if (f) {
		char q[32];
		if (fscanf(f, "%31s %lld", q, &period) == 2 && strcmp(q, "max") != 0)
			quota = atoll(q);
		fclose(f);
	} else if (snprintf(path, sizeof path, "%s/cpu/cpu.cfs_quota_us", root) > 0 &&
	           (f = fopen(path, "r"))) {
		if (fscanf(f, "%lld", &quota) != 1)
			quota = -1;
		fclose(f);
		snprintf(path, sizeof path, "%s/cpu/cpu.cfs_period_us", root);
		if ((f = fopen(path, "r"))) {
			if (fscanf(f, "%lld", &period) != 1)
				period = 0;
			fclose(f);
		}
	}
	if (quota <= 0 || period <= 0)
		return 0;
	return (int)((quota + period - 1) / period);
}

int cli_default_threads(void)
{
	int cpus = 0;
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
		cpus = CPU_COUNT(&set);
	if (cpus == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		cpus = n > 0 ? (int)n : 1;
	}
	int limit = cli_cgroup_cpu_limit("/sys/fs/cgroup");
	return limit > 0 && limit < cpus ? limit : cpus;
}

int cli_set_request_option(void *ctx, const char *name, const char *value, struct igs_error *err)
{
	return request_options_set(ctx, name, value, 0, err);
}

void cli_print_json(char *text)
{
	if (!text)
		text = json_render_error(IGS_ERR_NOMEM, "out of memory rendering the answer", NULL);
	if (text)
		puts(text);
	free(text);
}

void cli_print_error_json(const char *image, const struct igs_error *err)
{
	cli_print_json(json_render_error(err->code, err->message, image));
}

int cli_open_service(const char *command, struct service_config *cfg, int threads,
                     struct service **svc, struct service_worker **worker)
{
	struct igs_error err = {0};
	*svc = NULL;
	*worker = NULL;
	cfg->threads = threads;
	/* OpenBLAS (the classifier's product) single-threaded when the OpenMP
	 * teams are the parallelism. */
	service_threads_setup(0, threads > 1 ? 1 : cli_default_threads());
	int rc = service_open(svc, cfg, &err);
	if (rc == 0)
		rc = service_worker_open(worker, *svc, &err);
	if (rc < 0) {
		fprintf(stderr, "igserve %s: %s\n", command, err.message);
		service_close(svc);
		return 1;
	}
	struct service_info info;
	service_get_info(*svc, &info);
	fprintf(stderr, "igserve: model %s (%s, %d classes, sha256 %.12s) from %s, %s arithmetic\n",
	        info.arch, info.family, info.classes, info.sha256, info.path, info.precision);
	return 0;
}

static bool readable(const char *path)
{
	return access(path, R_OK) == 0;
}

const char *cli_default_model_path(void)
{
	static char path[4200];
	const char *dir = getenv("IGSERVE_WEIGHTS_DIR");
	const char *candidates[][2] = {
		{dir, IMAGENET_WEIGHTS},
		{"weights", IMAGENET_WEIGHTS},
		{IGSERVE_SOURCE_ROOT "/weights", IMAGENET_WEIGHTS},
		{".", DEMO_MODEL},
		{IGSERVE_SOURCE_ROOT, DEMO_MODEL},
		{IGSERVE_DATADIR, DEMO_MODEL},
	};
	for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++) {
		if (!candidates[i][0])
			continue;
		snprintf(path, sizeof path, "%s/%s", candidates[i][0], candidates[i][1]);
		if (readable(path))
			return path;
	}
	return NULL;
}
