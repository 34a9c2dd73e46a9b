/*
 * flags.c - one flag parser for every subcommand.
 *
 * A flag --max-steps is also read from IGSERVE_MAX_STEPS.  Variables are
 * applied first, the command line second, so the command line wins.  Values
 * are validated here for their type (integer, size, number, boolean); the
 * meaning of a value is checked by the callback or the caller.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ===== value parsing ===================================================== */

static int parse_int(const char *s, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < INT_MIN || v > INT_MAX)
		return -1;
	*out = (int)v;
	return 0;
}

/* Sizes accept a binary suffix: 16M, 1G, 512K (or 16MiB, 16MB: the same). */
static int parse_size(const char *s, size_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	/* NaN would pass every comparison below and its conversion to size_t is
	 * undefined; infinity and negatives are not sizes either. */
	if (errno || end == s || !isfinite(v) || v < 0)
		return -1;
	double mult = 1;
	switch (toupper((unsigned char)*end)) {
	case 'K': mult = 1024.0; end++; break;
	case 'M': mult = 1024.0 * 1024; end++; break;
	case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
	case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
	default: break;
	}
	if (mult > 1) {
		if (*end == 'i' || *end == 'I')
			end++;
		if (*end == 'B' || *end == 'b')
			end++;
	} else if (*end == 'B' || *end == 'b') {
		end++;
	}
	if (*end || !(v * mult <= (double)SIZE_MAX / 2))
		return -1;
	*out = (size_t)(v * mult);
	return 0;
}

static int parse_double(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || v != v)
		return -1;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on"))
		*out = true;
	else if (!strcmp(s, "0") || !strcasecmp(s, "false") || !strcasecmp(s, "no") ||
	         !strcasecmp(s, "off") || !*s)
		*out = false;
	else
		return -1;
	return 0;
}

static const char *type_expectation(enum flag_type t)
{
	switch (t) {
	case FLAG_INT: return "an integer";
	case FLAG_SIZE: return "a size in bytes, finite and >= 0 (suffix K, M, G or T allowed)";
	case FLAG_DOUBLE: return "a number";
	case FLAG_BOOL: return "true or false";
	default: return "a value";
	}
}

/* Store `value` into the flag's target; `source` names where it came from
 * ("--steps" or "IGSERVE_STEPS") for the error message. */
static int flag_apply(const struct flag *f, const char *value, const char *source,
                      struct igs_error *err)
{
	int bad = 0;
	switch (f->type) {
	case FLAG_STRING: *(const char **)f->target = value; break;
	case FLAG_INT: bad = parse_int(value, f->target); break;
	case FLAG_SIZE: bad = parse_size(value, f->target); break;
	case FLAG_DOUBLE: bad = parse_double(value, f->target); break;
	case FLAG_BOOL: bad = parse_bool(value, f->target); break;
	case FLAG_CALLBACK: {
		int rc = f->set(f->ctx, f->name, value, err);
		if (rc < 0) {
			/* Prefix the source so the user knows which input to fix. */
			if (err) {
				char msg[IGS_ERROR_MESSAGE_MAX];
				snprintf(msg, sizeof msg, "%s", err->message);
				igs_fail(err, rc, "%s: %s", source, msg);
			}
			return rc;
		}
		break;
	}
	}
	if (bad)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "%s: '%s' is not %s", source, value,
		                type_expectation(f->type));
	return 0;
}

static void env_name(char *buf, size_t len, const char *flag)
{
	size_t i = 0;
	int n = snprintf(buf, len, "IGSERVE_");
	for (i = (size_t)n; *flag && i + 1 < len; flag++, i++)
		buf[i] = *flag == '-' ? '_' : (char)toupper((unsigned char)*flag);
	buf[i] = '\0';
}

/* ===== parsing ============================================================ */

static const struct flag *find_flag(const struct flag *flags, size_t count, const char *name,
                                    size_t name_len)
{
	for (size_t i = 0; i < count; i++)
		if (strlen(flags[i].name) == name_len && !strncmp(flags[i].name, name, name_len))
			return &flags[i];
	return NULL;
}

int flags_parse(const char *command, const char *synopsis, const struct flag *flags, size_t count,
                int argc, char **argv, const char **positional, size_t max_positional,
                size_t *positional_count, struct igs_error *err)
{
	*positional_count = 0;

	for (size_t i = 0; i < count; i++) {
		char var[128];
		env_name(var, sizeof var, flags[i].name);
		const char *value = getenv(var);
		if (value) {
			int rc = flag_apply(&flags[i], value, var, err);
			if (rc < 0)
				return rc;
		}
	}

	bool only_positional = false;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (only_positional || arg[0] != '-' || !strcmp(arg, "-")) {
			if (*positional_count >= max_positional)
				return igs_fail(err, IGS_ERR_BAD_OPTION,
				                "%s: unexpected argument '%s' (see igserve %s --help)",
				                command, arg, command);
			positional[(*positional_count)++] = arg;
			continue;
		}
		if (!strcmp(arg, "--")) {
			only_positional = true;
			continue;
		}
		if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
			flags_print_help(command, synopsis, flags, count);
			return 1;
		}
		const char *name = arg + (arg[1] == '-' ? 2 : 1);
		const char *eq = strchr(name, '=');
		size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
		const struct flag *f = find_flag(flags, count, name, name_len);
		if (!f)
			return igs_fail(err, IGS_ERR_BAD_OPTION,
			                "unknown option '%.*s' for '%s' (see igserve %s --help)",
			                (int)(name_len + (size_t)(name - arg)), arg, command, command);
		const char *value;
		if (eq) {
			value = eq + 1;
		} else if (f->type == FLAG_BOOL) {
			value = "true";
		} else {
			if (i + 1 >= argc)
				return igs_fail(err, IGS_ERR_BAD_OPTION, "option --%s needs a value (%s)",
				                f->name, f->metavar ? f->metavar : "VALUE");
			value = argv[++i];
		}
		char source[128];
		snprintf(source, sizeof source, "--%s", f->name);
		int rc = flag_apply(f, value, source, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

void flags_print_help(const char *command, const char *synopsis, const struct flag *flags,
                      size_t count)
{
	printf("usage: igserve %s %s\n\noptions (each also read from the environment variable shown):\n",
	       command, synopsis);
	for (size_t i = 0; i < count; i++) {
		char left[96], var[128];
		snprintf(left, sizeof left, "--%s%s%s", flags[i].name, flags[i].metavar ? " " : "",
		         flags[i].metavar ? flags[i].metavar : "");
		env_name(var, sizeof var, flags[i].name);
		printf("  %-28s %s\n  %-28s [%s]\n", left, flags[i].help, "", var);
	}
	printf("  %-28s %s\n", "--help", "show this help and exit");
}
