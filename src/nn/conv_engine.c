/*
 * conv_engine.c - the oneDNN engine every convolution runs on, the
 * instruction set it found, the arithmetic (precision) names and what this
 * CPU allows, and the checks every convolution shape goes through.
 */
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "conv_internal.h"

void conv_shape_finish(struct conv_shape *s)
{
	s->h_out = (s->h_in + 2 * s->pad - s->k) / s->stride + 1;
	s->w_out = (s->w_in + 2 * s->pad - s->k) / s->stride + 1;
}

/* ---------------------------------------------------------------- engine */

/* One CPU engine for the process; oneDNN engines are thread-safe. */
static dnnl_engine_t cpu_engine;
static dnnl_status_t cpu_engine_status = dnnl_runtime_error;
static pthread_once_t cpu_engine_once = PTHREAD_ONCE_INIT;

static void cpu_engine_init(void)
{
	cpu_engine_status = dnnl_engine_create(&cpu_engine, dnnl_cpu, 0);
}

dnnl_engine_t conv_engine(void)
{
	pthread_once(&cpu_engine_once, cpu_engine_init);
	return cpu_engine_status == dnnl_success ? cpu_engine : NULL;
}

static const char *isa_name(dnnl_cpu_isa_t isa)
{
	switch (isa) {
	case dnnl_cpu_isa_sse41:
		return "sse41";
	case dnnl_cpu_isa_avx:
		return "avx";
	case dnnl_cpu_isa_avx2:
		return "avx2";
	case dnnl_cpu_isa_avx2_vnni:
		return "avx2_vnni";
	case dnnl_cpu_isa_avx512_core:
		return "avx512_core";
	case dnnl_cpu_isa_avx512_core_vnni:
		return "avx512_core_vnni";
	case dnnl_cpu_isa_avx512_core_bf16:
		return "avx512_core_bf16";
	case dnnl_cpu_isa_avx512_core_amx:
		return "avx512_core_amx";
	default:
		return "other";
	}
}

static char backend_text[64];
static pthread_once_t backend_once = PTHREAD_ONCE_INIT;

static void backend_init(void)
{
	const dnnl_version_t *v = dnnl_version();
	snprintf(backend_text, sizeof backend_text, "oneDNN %d.%d.%d, %s", v->major, v->minor,
	         v->patch, isa_name(dnnl_get_effective_cpu_isa()));
}

const char *conv_backend(void)
{
	pthread_once(&backend_once, backend_init);
	return backend_text;
}

/* oneDNN's ISA values are sets of feature bits. */
static bool cpu_has(dnnl_cpu_isa_t isa)
{
	return ((unsigned)dnnl_get_effective_cpu_isa() & (unsigned)isa) == (unsigned)isa;
}

bool conv_amx_available(void)
{
	return cpu_has(dnnl_cpu_isa_avx512_core_amx);
}

static const char *const precision_names[] = {
    [CONV_PRECISION_AUTO] = "auto",
    [CONV_PRECISION_FP32] = "fp32",
    [CONV_PRECISION_BF16X3] = "bf16x3",
};

int conv_precision_parse(const char *name)
{
	for (int p = 0; p < (int)(sizeof precision_names / sizeof *precision_names); p++)
		if (!strcmp(name, precision_names[p]))
			return p;
	return -1;
}

const char *conv_precision_name(enum conv_precision p)
{
	return (unsigned)p < sizeof precision_names / sizeof *precision_names ? precision_names[p]
	                                                                      : "?";
}

int conv_precision_resolve(enum conv_precision requested, enum conv_precision *resolved,
                           struct igs_error *err)
{
	if (requested == CONV_PRECISION_BF16X3 && !conv_amx_available())
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "precision bf16x3 needs a CPU with AMX (bf16 tiles); this one has "
		                "%s: use fp32 or auto",
		                isa_name(dnnl_get_effective_cpu_isa()));
	if (requested == CONV_PRECISION_AUTO)
		requested = conv_amx_available() ? CONV_PRECISION_BF16X3 : CONV_PRECISION_FP32;
	*resolved = requested;
	return 0;
}

bool conv_blocked_layout_fits(enum conv_precision p)
{
	/* AMX's kernels take NHWC only */
	return cpu_has(dnnl_cpu_isa_avx512_core) && p != CONV_PRECISION_BF16X3;
}

/* Turn a oneDNN status into an igserve error naming the step that failed. */
int conv_dnnl_fail(struct igs_error *err, dnnl_status_t st, const char *what)
{
	if (st == dnnl_out_of_memory)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory in oneDNN (%s)", what);
	return igs_fail(err, IGS_ERR_INTERNAL, "oneDNN: %s failed (status %d)", what, (int)st);
}

int conv_check_shape(const struct conv_shape *s, struct igs_error *err)
{
	if (s->n < 1 || s->c_in < 1 || s->c_out < 1 || s->k < 1 || s->stride < 1 || s->pad < 0 ||
	    s->h_in < 1 || s->w_in < 1)
		return igs_fail(
		    err, IGS_ERR_BAD_OPTION,
		    "convolution shape is invalid: batch %d, %d -> %d channels, kernel %d, "
		    "stride %d, pad %d, input %dx%d",
		    s->n, s->c_in, s->c_out, s->k, s->stride, s->pad, s->h_in, s->w_in);
	if (s->blocked && (s->c_in % CONV_BLOCK || s->c_out % CONV_BLOCK))
		return igs_fail(
		    err, IGS_ERR_BAD_OPTION,
		    "a blocked convolution needs channels in multiples of %d, got %d -> %d",
		    CONV_BLOCK, s->c_in, s->c_out);
	struct conv_shape t = *s;
	conv_shape_finish(&t);
	if (t.h_out < 1 || t.w_out < 1 || s->h_in + 2 * s->pad < s->k ||
	    s->w_in + 2 * s->pad < s->k)
		return igs_fail(err, IGS_ERR_BAD_OPTION,
		                "a %dx%d kernel does not fit a %dx%d input padded by %d", s->k,
		                s->k, s->h_in, s->w_in, s->pad);
	return 0;
}
