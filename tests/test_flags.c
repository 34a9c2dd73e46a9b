/*
 * test_flags.c - flags_parse: each flag type in the --flag=value and
 * --flag value forms, IGSERVE_<FLAG> environment variables and the rule
 * that the command line wins, bad values (sizes above all) refused with a
 * message naming where they came from, unknown flags, positional
 * arguments, and --help listing every flag with its variable.
 *
 * Check runs every test in a child process, so setenv stays in its test.
 */
#include <check.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "request_options.h"

/* ---- one command's flags: one of each type ---- */

struct values {
	const char *name;
	int count;
	size_t bytes;
	double ratio;
	bool verbose;
	struct request_options ro;
};

enum { FLAG_COUNT_ = 7 };

static size_t make_flags(struct flag *f, struct values *v)
{
	*v = (struct values){.name = "default", .count = 3, .bytes = 100, .ratio = 0.5};
	request_options_init(&v->ro);
	size_t n = 0;
	f[n++] = (struct flag){"name", FLAG_STRING, &v->name, "TEXT", "a string", NULL, NULL};
	f[n++] = (struct flag){"count", FLAG_INT, &v->count, "N", "an integer", NULL, NULL};
	f[n++] = (struct flag){"max-bytes", FLAG_SIZE, &v->bytes, "BYTES", "a size", NULL, NULL};
	f[n++] = (struct flag){"ratio", FLAG_DOUBLE, &v->ratio, "R", "a number", NULL, NULL};
	f[n++] = (struct flag){"verbose", FLAG_BOOL, &v->verbose, NULL, "a switch", NULL, NULL};
	f[n++] = (struct flag){"steps", FLAG_CALLBACK, NULL, "N", "a request option",
	                       cli_set_request_option, &v->ro};
	f[n++] = (struct flag){"top-k", FLAG_CALLBACK, NULL, "K", "another request option",
	                       cli_set_request_option, &v->ro};
	return n;
}

static const char *const env_vars[] = {"IGSERVE_NAME",    "IGSERVE_COUNT",   "IGSERVE_MAX_BYTES",
                                       "IGSERVE_RATIO",   "IGSERVE_VERBOSE", "IGSERVE_STEPS",
                                       "IGSERVE_TOP_K"};

static void clear_env(void)
{
	for (size_t i = 0; i < sizeof env_vars / sizeof env_vars[0]; i++)
		unsetenv(env_vars[i]);
}

/* Parse a NULL-terminated argument list (argv[0] is the command). */
struct parsed {
	int rc;
	struct values v;
	struct igs_error err;
	const char *positional[4];
	size_t positional_count;
};

static void parse(struct parsed *p, const char *const *args)
{
	char *argv[32];
	int argc = 0;
	argv[argc++] = (char *)"test";
	for (; args && args[argc - 1]; argc++)
		argv[argc] = (char *)args[argc - 1];
	struct flag flags[FLAG_COUNT_];
	memset(p, 0, sizeof *p);
	size_t n = make_flags(flags, &p->v);
	p->rc = flags_parse("test", "[options] FILE...", flags, n, argc, argv, p->positional, 4,
	                    &p->positional_count, &p->err);
}

#define PARSE(p, ...) parse(p, (const char *const[]){__VA_ARGS__, NULL})

/* ---- good values ---- */

START_TEST(test_defaults_untouched)
{
	clear_env();
	struct parsed p;
	parse(&p, NULL);
	ck_assert_int_eq(p.rc, 0);
	ck_assert_str_eq(p.v.name, "default");
	ck_assert_int_eq(p.v.count, 3);
	ck_assert_uint_eq(p.v.bytes, 100);
	ck_assert_double_eq(p.v.ratio, 0.5);
	ck_assert(!p.v.verbose);
	ck_assert_int_eq(p.v.ro.attr.steps, 50);
	ck_assert_uint_eq(p.positional_count, 0);
}
END_TEST

START_TEST(test_each_type_both_forms)
{
	clear_env();
	struct parsed p;
	PARSE(&p, "--name=alpha", "--count=7", "--max-bytes=2K", "--ratio=0.25", "--verbose",
	      "--steps=16", "--top-k=3");
	ck_assert_msg(p.rc == 0, "%s", p.err.message);
	ck_assert_str_eq(p.v.name, "alpha");
	ck_assert_int_eq(p.v.count, 7);
	ck_assert_uint_eq(p.v.bytes, 2048);
	ck_assert_double_eq(p.v.ratio, 0.25);
	ck_assert(p.v.verbose);
	ck_assert_int_eq(p.v.ro.attr.steps, 16);
	ck_assert_int_eq(p.v.ro.top_k, 3);

	PARSE(&p, "--name", "beta", "--count", "-4", "--max-bytes", "3M", "--ratio", "-1.5e2",
	      "--steps", "8", "--top-k", "9");
	ck_assert_msg(p.rc == 0, "%s", p.err.message);
	ck_assert_str_eq(p.v.name, "beta");
	ck_assert_int_eq(p.v.count, -4);
	ck_assert_uint_eq(p.v.bytes, 3u << 20);
	ck_assert_double_eq(p.v.ratio, -150);
	ck_assert_int_eq(p.v.ro.attr.steps, 8);
	ck_assert_int_eq(p.v.ro.top_k, 9);

	/* a single dash and an empty string value */
	PARSE(&p, "-count=11", "--name=");
	ck_assert_msg(p.rc == 0, "%s", p.err.message);
	ck_assert_int_eq(p.v.count, 11);
	ck_assert_str_eq(p.v.name, "");
}
END_TEST

START_TEST(test_bool_values)
{
	clear_env();
	static const struct {
		const char *arg;
		bool want;
	} cases[] = {
	    {"--verbose", true},        {"--verbose=1", true},     {"--verbose=true", true},
	    {"--verbose=YES", true},    {"--verbose=on", true},    {"--verbose=0", false},
	    {"--verbose=false", false}, {"--verbose=No", false},   {"--verbose=off", false},
	    {"--verbose=", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct parsed p;
		PARSE(&p, "--verbose", cases[i].arg); /* first on, then the case */
		ck_assert_msg(p.rc == 0, "%s: %s", cases[i].arg, p.err.message);
		ck_assert_msg(p.v.verbose == cases[i].want, "%s", cases[i].arg);
	}
	/* a switch takes no separate value: the next word is positional */
	struct parsed p;
	PARSE(&p, "--verbose", "false");
	ck_assert_int_eq(p.rc, 0);
	ck_assert(p.v.verbose);
	ck_assert_uint_eq(p.positional_count, 1);
	ck_assert_str_eq(p.positional[0], "false");
}
END_TEST

START_TEST(test_good_sizes)
{
	clear_env();
	static const struct {
		const char *text;
		size_t want;
	} cases[] = {
	    {"0", 0},
	    {"1", 1},
	    {"512", 512},
	    {"512B", 512},
	    {"1K", 1024},
	    {"1k", 1024},
	    {"1KB", 1024},
	    {"1KiB", 1024},
	    {"16M", 16u << 20},
	    {"16MiB", 16u << 20},
	    {"16mb", 16u << 20},
	    {"1G", (size_t)1 << 30},
	    {"2T", (size_t)2 << 40},
	    {"1.5K", 1536},
	    {"0.5M", 512u << 10},
	    {"1e3", 1000},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct parsed p;
		PARSE(&p, "--max-bytes", cases[i].text);
		ck_assert_msg(p.rc == 0, "%s: %s", cases[i].text, p.err.message);
		ck_assert_msg(p.v.bytes == cases[i].want, "%s gave %zu, expected %zu", cases[i].text,
		              p.v.bytes, cases[i].want);
	}
}
END_TEST

/* ---- bad values: refused, message names the flag and the value ---- */

struct bad_case {
	const char *flag; /* "--max-bytes" */
	const char *value;
};

static const struct bad_case bad_cases[] = {
    {"--max-bytes", "12x"},
    {"--max-bytes", "-1"},
    {"--max-bytes", "-1K"},
    {"--max-bytes", "nan"},
    {"--max-bytes", "NaNK"},
    {"--max-bytes", "inf"},
    {"--max-bytes", "99999999999999999999"},
    {"--max-bytes", "99999999999T"},
    {"--max-bytes", "1e999"},
    {"--max-bytes", ""},
    {"--max-bytes", "K"},
    {"--max-bytes", "1KK"},
    {"--max-bytes", "1P"},
    {"--max-bytes", "1 M"},
    {"--max-bytes", "1MiBs"},
    {"--count", ""},
    {"--count", "abc"},
    {"--count", "1.5"},
    {"--count", "7x"},
    {"--count", "nan"},
    {"--count", "2147483648"},
    {"--count", "-2147483649"},
    {"--count", "99999999999999999999"},
    {"--ratio", ""},
    {"--ratio", "nan"},
    {"--ratio", "half"},
    {"--ratio", "1.5.2"},
    {"--ratio", "1e999"},
    {"--verbose", "maybe"},
    {"--verbose", "2"},
    {"--steps", "0"},
    {"--steps", "nan"},
    {"--top-k", "99999999999999999999"},
};

START_TEST(test_bad_value_on_command_line)
{
	clear_env();
	const struct bad_case *c = &bad_cases[_i];
	char arg[128];
	snprintf(arg, sizeof arg, "%s=%s", c->flag, c->value);
	struct parsed p;
	PARSE(&p, arg);
	ck_assert_msg(p.rc == IGS_ERR_BAD_OPTION, "%s: rc %d", arg, p.rc);
	ck_assert_msg(strstr(p.err.message, c->flag) == p.err.message, "%s: message '%s'", arg,
	              p.err.message);
	if (*c->value)
		ck_assert_msg(strstr(p.err.message, c->value) != NULL, "%s: message '%s'", arg,
		              p.err.message);
	if (strcmp(c->flag, "--max-bytes") == 0)
		ck_assert_msg(strstr(p.err.message, "size") != NULL, "%s: message '%s'", arg,
		              p.err.message);
}
END_TEST

/* The same values from the environment: the message names the variable. */
START_TEST(test_bad_value_in_environment)
{
	clear_env();
	const struct bad_case *c = &bad_cases[_i];
	char var[64];
	size_t n = (size_t)snprintf(var, sizeof var, "IGSERVE_");
	for (const char *s = c->flag + 2; *s; s++)
		var[n++] = *s == '-' ? '_' : (char)(*s - 'a' + 'A');
	var[n] = '\0';
	ck_assert_int_eq(setenv(var, c->value, 1), 0);
	struct parsed p;
	parse(&p, NULL);
	ck_assert_msg(p.rc == IGS_ERR_BAD_OPTION, "%s=%s: rc %d", var, c->value, p.rc);
	ck_assert_msg(strstr(p.err.message, var) == p.err.message, "%s=%s: message '%s'", var,
	              c->value, p.err.message);
}
END_TEST

START_TEST(test_missing_value)
{
	clear_env();
	struct parsed p;
	PARSE(&p, "--count");
	ck_assert_int_eq(p.rc, IGS_ERR_BAD_OPTION);
	ck_assert_ptr_nonnull(strstr(p.err.message, "--count needs a value (N)"));
	PARSE(&p, "--verbose", "--max-bytes");
	ck_assert_int_eq(p.rc, IGS_ERR_BAD_OPTION);
	ck_assert_ptr_nonnull(strstr(p.err.message, "--max-bytes needs a value"));
}
END_TEST

START_TEST(test_unknown_flags)
{
	clear_env();
	static const char *const cases[][2] = {
	    {"--bogus", "'--bogus'"},       {"--bogus=1", "'--bogus'"},
	    {"--coun", "'--coun'"},         {"--counts=1", "'--counts'"},
	    {"--Count=1", "'--Count'"},     {"--max_bytes=1", "'--max_bytes'"},
	    {"-x", "'-x'"},                 {"--=5", "'--'"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct parsed p;
		PARSE(&p, cases[i][0]);
		ck_assert_msg(p.rc == IGS_ERR_BAD_OPTION, "%s: rc %d", cases[i][0], p.rc);
		ck_assert_msg(strstr(p.err.message, cases[i][1]) != NULL, "%s: '%s'", cases[i][0],
		              p.err.message);
		ck_assert_msg(strstr(p.err.message, "unknown option") != NULL, "%s: '%s'", cases[i][0],
		              p.err.message);
		ck_assert_ptr_nonnull(strstr(p.err.message, "igserve test --help"));
	}
}
END_TEST

/* ---- positional arguments ---- */

START_TEST(test_positional_arguments)
{
	clear_env();
	struct parsed p;
	PARSE(&p, "a.jpg", "--count=2", "b.png", "-", "--", "--count=5");
	ck_assert_msg(p.rc == 0, "%s", p.err.message);
	ck_assert_int_eq(p.v.count, 2); /* after "--", flags are file names */
	ck_assert_uint_eq(p.positional_count, 4);
	ck_assert_str_eq(p.positional[0], "a.jpg");
	ck_assert_str_eq(p.positional[1], "b.png");
	ck_assert_str_eq(p.positional[2], "-");
	ck_assert_str_eq(p.positional[3], "--count=5");

	PARSE(&p, "1", "2", "3", "4", "5");
	ck_assert_int_eq(p.rc, IGS_ERR_BAD_OPTION);
	ck_assert_ptr_nonnull(strstr(p.err.message, "unexpected argument '5'"));
}
END_TEST

/* ---- the environment, and the command line over it ---- */

START_TEST(test_environment_sets_every_type)
{
	clear_env();
	setenv("IGSERVE_NAME", "from-env", 1);
	setenv("IGSERVE_COUNT", "42", 1);
	setenv("IGSERVE_MAX_BYTES", "4K", 1);
	setenv("IGSERVE_RATIO", "2.5", 1);
	setenv("IGSERVE_VERBOSE", "on", 1);
	setenv("IGSERVE_STEPS", "12", 1);
	setenv("IGSERVE_TOP_K", "2", 1); /* '-' becomes '_' */
	struct parsed p;
	parse(&p, NULL);
	ck_assert_msg(p.rc == 0, "%s", p.err.message);
	ck_assert_str_eq(p.v.name, "from-env");
	ck_assert_int_eq(p.v.count, 42);
	ck_assert_uint_eq(p.v.bytes, 4096);
	ck_assert_double_eq(p.v.ratio, 2.5);
	ck_assert(p.v.verbose);
	ck_assert_int_eq(p.v.ro.attr.steps, 12);
	ck_assert_int_eq(p.v.ro.top_k, 2);
}
END_TEST

START_TEST(test_command_line_wins)
{
	clear_env();
	setenv("IGSERVE_NAME", "from-env", 1);
	setenv("IGSERVE_COUNT", "42", 1);
	setenv("IGSERVE_MAX_BYTES", "4K", 1);
	setenv("IGSERVE_RATIO", "2.5", 1);
	setenv("IGSERVE_VERBOSE", "true", 1);
	setenv("IGSERVE_STEPS", "12", 1);
	struct parsed p;
	PARSE(&p, "--name", "from-argv", "--count=1", "--max-bytes=1M", "--ratio", "0",
	      "--verbose=false", "--steps", "99");
	ck_assert_msg(p.rc == 0, "%s", p.err.message);
	ck_assert_str_eq(p.v.name, "from-argv");
	ck_assert_int_eq(p.v.count, 1);
	ck_assert_uint_eq(p.v.bytes, 1u << 20);
	ck_assert_double_eq(p.v.ratio, 0);
	ck_assert(!p.v.verbose);
	ck_assert_int_eq(p.v.ro.attr.steps, 99);
	/* the last of repeated flags wins too */
	PARSE(&p, "--count=1", "--count", "2");
	ck_assert_int_eq(p.v.count, 2);
}
END_TEST

/* Only IGSERVE_<FLAG> in capitals counts. */
START_TEST(test_environment_names_exact)
{
	clear_env();
	setenv("igserve_count", "5", 1);
	setenv("IGSERVE_count", "6", 1);
	setenv("IGSERVE_MAX-BYTES", "7", 1);
	setenv("COUNT", "8", 1);
	struct parsed p;
	parse(&p, NULL);
	ck_assert_int_eq(p.rc, 0);
	ck_assert_int_eq(p.v.count, 3);
	ck_assert_uint_eq(p.v.bytes, 100);
}
END_TEST

/* ---- --help ---- */

/* Run flags_parse with --help, stdout captured into a string (caller frees). */
static char *help_text(int *rc)
{
	fflush(stdout);
	FILE *tmp = tmpfile();
	ck_assert_ptr_nonnull(tmp);
	int saved = dup(STDOUT_FILENO);
	dup2(fileno(tmp), STDOUT_FILENO);
	struct parsed p;
	PARSE(&p, "--count=1", "--help", "--bogus");
	*rc = p.rc;
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	long len = ftell(tmp);
	ck_assert_int_gt(len, 0);
	char *text = calloc((size_t)len + 1, 1);
	rewind(tmp);
	ck_assert_uint_eq(fread(text, 1, (size_t)len, tmp), (size_t)len);
	fclose(tmp);
	return text;
}

START_TEST(test_help_lists_every_flag)
{
	clear_env();
	int rc;
	char *text = help_text(&rc);
	ck_assert_int_eq(rc, 1); /* stops at --help, before the unknown flag */
	ck_assert_ptr_nonnull(strstr(text, "usage: igserve test [options] FILE..."));
	struct values v;
	struct flag flags[FLAG_COUNT_];
	size_t n = make_flags(flags, &v);
	for (size_t i = 0; i < n; i++) {
		char want[160];
		snprintf(want, sizeof want, "--%s%s%s ", flags[i].name, flags[i].metavar ? " " : "",
		         flags[i].metavar ? flags[i].metavar : "");
		ck_assert_msg(strstr(text, want) != NULL, "help lacks '%s':\n%s", want, text);
		ck_assert_msg(strstr(text, flags[i].help) != NULL, "help lacks '%s'", flags[i].help);
		snprintf(want, sizeof want, "[%s]", env_vars[i]);
		ck_assert_msg(strstr(text, want) != NULL, "help lacks '%s':\n%s", want, text);
	}
	ck_assert_ptr_nonnull(strstr(text, "--help"));
	free(text);
}
END_TEST

/* The real subcommands' --help lists the flags CONTRACT.md names. */
START_TEST(test_subcommand_help_lists_contract_flags)
{
	const char *binary = getenv("IGSERVE_BINARY");
	if (!binary)
		binary = "build/igserve";
	static const char *const commands[][16] = {
	    {"predict", "--model FILE", "--labels FILE", "--top-k K", "[IGSERVE_TOP_K]", "--resize",
	     "--max-bytes BYTES", NULL},
	    {"attribute", "--model FILE", "--target N", "--method M", "--steps N", "--baseline B",
	     "--tolerance T", "--max-steps N", "--labels FILE", "--raw FILE", "--out DIR",
	     "[IGSERVE_MAX_STEPS]", "--memory-budget BYTES", NULL},
	    {"serve", "--model FILE", "--host ADDR", "--port PORT", "--workers N", "[IGSERVE_PORT]",
	     "--queue-size N", "--max-body-bytes BYTES", "--deadline-ms MS", "[IGSERVE_DEADLINE_MS]",
	     NULL},
	};
	for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++) {
		char cmd[1024];
		snprintf(cmd, sizeof cmd, "'%s' %s --help", binary, commands[c][0]);
		FILE *f = popen(cmd, "r");
		ck_assert_ptr_nonnull(f);
		static char text[65536];
		size_t len = fread(text, 1, sizeof text - 1, f);
		text[len] = '\0';
		int status = pclose(f);
		ck_assert_msg(status == 0, "%s: exit status %d", cmd, status);
		for (int i = 1; commands[c][i]; i++)
			ck_assert_msg(strstr(text, commands[c][i]) != NULL, "%s lacks '%s':\n%s", cmd,
			              commands[c][i], text);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("flags");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_defaults_untouched);
	tcase_add_test(tc, test_each_type_both_forms);
	tcase_add_test(tc, test_bool_values);
	tcase_add_test(tc, test_good_sizes);
	int bad = (int)(sizeof bad_cases / sizeof bad_cases[0]);
	tcase_add_loop_test(tc, test_bad_value_on_command_line, 0, bad);
	tcase_add_loop_test(tc, test_bad_value_in_environment, 0, bad);
	tcase_add_test(tc, test_missing_value);
	tcase_add_test(tc, test_unknown_flags);
	tcase_add_test(tc, test_positional_arguments);
	tcase_add_test(tc, test_environment_sets_every_type);
	tcase_add_test(tc, test_command_line_wins);
	tcase_add_test(tc, test_environment_names_exact);
	tcase_add_test(tc, test_help_lists_every_flag);
	tcase_add_test(tc, test_subcommand_help_lists_contract_flags);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
