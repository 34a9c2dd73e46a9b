/*
 * cli.h - the subcommands, and the flag parser they share.
 *
 * Every flag --some-name also reads the environment variable
 * IGSERVE_SOME_NAME; a flag on the command line wins over the variable.
 */
#ifndef IGSERVE_CLI_H
#define IGSERVE_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

int cli_predict(int argc, char **argv);
int cli_attribute(int argc, char **argv);
int cli_serve(int argc, char **argv);

struct service;
struct service_worker;
struct request_options;
/* `attribute --manifest` (cli_manifest.c): explain the lines of the
 * manifest whose index is shard_index mod shard_count into out_dir; 0 when
 * every one succeeded (or was done already), 1 when some failed. */
int cli_attribute_manifest(const char *manifest, const char *out_dir, int shard_index,
                           int shard_count, struct service *svc, struct service_worker *worker,
                           const struct request_options *base, int max_steps_cap,
                           size_t max_bytes);
/* "I/N" with 0 <= I < N into *index, *count; -1 when malformed. */
int cli_parse_shard(const char *text, int *index, int *count);

enum flag_type {
	FLAG_STRING,   /* const char ** target */
	FLAG_INT,      /* int * */
	FLAG_SIZE,     /* size_t *, accepts K/M/G suffixes (binary) */
	FLAG_DOUBLE,   /* double * */
	FLAG_BOOL,     /* bool *: "--name" alone sets true; env accepts 1/0/true/false */
	FLAG_CALLBACK, /* set(ctx, value) validates and stores */
};

struct flag {
	const char *name;        /* without dashes: "max-steps" */
	enum flag_type type;
	void *target;
	const char *metavar;     /* "N", "FILE"; NULL for booleans */
	const char *help;        /* one line; the default is part of it */
	int (*set)(void *ctx, const char *name, const char *value, struct igs_error *err);
	void *ctx;
};

/*
 * flags_parse - apply IGSERVE_* variables, then argv[1..].  Positional
 * arguments are collected in order into positional[] (at most
 * max_positional; they point into argv).  Returns 0, 1 when --help was
 * printed (to stdout), or IGS_ERR_BAD_OPTION with a message naming the flag.
 */
int flags_parse(const char *command, const char *synopsis, const struct flag *flags, size_t count,
                int argc, char **argv, const char **positional, size_t max_positional,
                size_t *positional_count, struct igs_error *err);

/* Print the --help text for a command's flags. */
void flags_print_help(const char *command, const char *synopsis, const struct flag *flags,
                      size_t count);

/*
 * Flags every subcommand shares (--model, --labels, --input-size, --mean,
 * --std, --max-bytes, --max-pixels).  cli_model_flags appends them to
 * `flags` (room for CLI_MODEL_FLAG_COUNT) and returns how many it added;
 * cli_model_config turns the parsed values into a service_config (model
 * path defaulted by cli_default_model_path, mean/std validated).
 */
#define CLI_MODEL_FLAG_COUNT 8
struct service_config;
struct cli_model_options {
	const char *model;
	const char *labels;
	int input_size;
	const char *mean, *std;   /* "R,G,B" on the 0..1 scale */
	size_t max_bytes;
	size_t max_pixels;
	const char *precision;    /* "auto", "fp32", "bf16x3" (service_config) */
};
void cli_model_options_init(struct cli_model_options *o);
size_t cli_model_flags(struct flag *flags, struct cli_model_options *o);
int cli_model_config(const struct cli_model_options *o, struct service_config *cfg,
                     struct igs_error *err);

/* A FLAG_CALLBACK setter that hands a flag to request_options_set (ctx is
 * the struct request_options). */
int cli_set_request_option(void *ctx, const char *name, const char *value, struct igs_error *err);

/* Print one JSON document (text, consumed: freed) as a line of stdout; NULL
 * (out of memory) prints an error document instead. */
void cli_print_json(char *text);

/* Print {"error": {"code", "message"}, "image": IMAGE} on stdout: what the
 * HTTP API answers, for one image the CLI could not process. */
void cli_print_error_json(const char *image, const struct igs_error *err);

/* Cores this process may use (sched_getaffinity, capped by a cgroup CPU
 * quota), at least 1. */
int cli_default_threads(void);
/* CPUs the cgroup under `root` allows (v2 cpu.max, else v1
 * cpu/cpu.cfs_quota_us and cpu.cfs_period_us), rounded up; 0: no limit. */
int cli_cgroup_cpu_limit(const char *root);

/*
 * cli_open_service - the service of a one-shot command with `threads`
 * compute threads (cfg as cli_model_config filled it): OpenBLAS sized,
 * model loaded, one worker, the model logged on stderr.  Returns 0, or 1
 * after printing "igserve COMMAND: problem" (nothing left open).
 */
struct service;
struct service_worker;
int cli_open_service(const char *command, struct service_config *cfg, int threads,
                     struct service **svc, struct service_worker **worker);

/* The model path when --model / IGSERVE_MODEL is absent: fetched ImageNet
 * weights when present, else the committed demo model (see README). */
const char *cli_default_model_path(void);

#endif
