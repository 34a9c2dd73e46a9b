/*
 * model_tfbundle.c - a ResNet from a TensorFlow checkpoint (TensorBundle V2,
 * src/weights/tfbundle.h) in the layout of TensorFlow's official ResNet v2
 * (official/resnet/resnet_model.py, imagenet_resnet_v2, as the notebook's
 * resnet50_2017_11_30 checkpoint holds it):
 *
 *   conv2d                      the stem, 7x7/2, no BatchNorm, no ReLU,
 *                               then a 3x3/2 max-pool with 'SAME' padding
 *   per block                   batch_normalization (pre-activation) + ReLU,
 *                               [projection conv 1x1/s on the pre-activated
 *                               input: first block of each stage], then
 *                               bottleneck: 1x1, BN+ReLU, 3x3/s, BN+ReLU, 1x1
 *                               basic:      3x3/s, BN+ReLU, 3x3
 *   batch_normalization_N       the final BN + ReLU, global average
 *   dense                       kernel [features, classes], bias [classes]
 *
 * tf.layers names variables in creation order (conv2d, conv2d_1, ...;
 * batch_normalization, batch_normalization_1, ...), so the interleaving of
 * the two sequences is not in the names: a block has a projection when the
 * convolution that would be its second (bottleneck) or first (basic) is 1x1
 * where that layer's is not.  Kernels are HWIO.  Strided convolutions use
 * fixed padding ((k-1)/2 each side, then VALID), the others SAME: for odd
 * kernels both are k/2 on every side.  Optimizer slots, global_step and any
 * other variable outside these names are ignored.  The names may sit in one
 * variable scope ("resnet_model/conv2d/kernel", as later versions of the
 * official model write them): the stem's scope is taken for all.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#include "tfbundle.h"

/* tf.layers.batch_normalization(fused=True) raises epsilon 1e-5 to the
 * fused kernel's minimum. */
#define TF_BN_EPS 1.001e-5f

struct tf_loader {
	struct tfb_file *file;
	const char *path;
	struct igs_error *err;
	int n_convs, n_bns;     /* conv2d .. conv2d_{n-1}, likewise for BN */
	int next_conv, next_bn; /* creation-order cursors */
	char scope[256];        /* "" or a variable scope around the model, "resnet_model/" */
};

/* A model variable by its name inside the scope. */
static const struct tfb_tensor *find_var(const struct tf_loader *ld, const char *name)
{
	char full[512];
	snprintf(full, sizeof full, "%s%s", ld->scope, name);
	return tfbundle_find(ld->file, full);
}

/* The scope of the stem's "conv2d/kernel" (the shortest such name), as
 * later versions of the official model wrap it in variable_scope('resnet_model'). */
static void find_scope(struct tf_loader *ld)
{
	const char *key = "conv2d/kernel";
	const size_t klen = strlen(key);
	size_t best = SIZE_MAX;
	ld->scope[0] = 0;
	for (size_t t = 0; t < tfbundle_count(ld->file); t++) {
		const char *v = tfbundle_at(ld->file, t)->name;
		size_t n = strlen(v);
		if (n < klen || strcmp(v + n - klen, key) || (n > klen && v[n - klen - 1] != '/'))
			continue;
		if (n - klen < best && n - klen < sizeof ld->scope) {
			best = n - klen;
			snprintf(ld->scope, sizeof ld->scope, "%.*s", (int)best, v);
		}
	}
}

static void layer_name(char *buf, size_t len, const char *layer, int i, const char *part)
{
	if (i == 0)
		snprintf(buf, len, "%s/%s", layer, part);
	else
		snprintf(buf, len, "%s_%d/%s", layer, i, part);
}

static int fail_code(const struct tf_loader *ld)
{
	return ld->err && ld->err->code ? ld->err->code : IGS_ERR_MODEL;
}

/* The float32 copy of `name` with `ndim` dims of `shape` (-1: any, reported
 * back), all finite; malloc'ed, or NULL with the error set. */
static float *read_var(struct tf_loader *ld, const char *name, int ndim, int64_t *shape)
{
	const struct tfb_tensor *t = find_var(ld, name);
	if (!t) {
		igs_fail(ld->err, IGS_ERR_MODEL, "%s: missing variable '%s%s'", ld->path, ld->scope,
		         name);
		return NULL;
	}
	bool ok = t->ndim == ndim;
	for (int i = 0; ok && i < ndim; i++)
		ok = shape[i] < 0 ? t->shape[i] > 0 : t->shape[i] == shape[i];
	if (!ok) {
		char got[96] = "", want[96] = "";
		for (int i = 0; i < t->ndim; i++)
			snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld",
			         i ? ", " : "", (long long)t->shape[i]);
		for (int i = 0; i < ndim; i++)
			snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s%lld",
			         i ? ", " : "", shape[i] < 0 ? "*" : "",
			         shape[i] < 0 ? 0LL : (long long)shape[i]);
		for (char *p = strstr(want, "*0"); p; p = strstr(p, "*0"))
			memmove(p + 1, p + 2, strlen(p + 2) + 1);
		igs_fail(ld->err, IGS_ERR_MODEL, "%s: variable '%s' has shape [%s], expected [%s]",
		         ld->path, name, got, want);
		return NULL;
	}
	for (int i = 0; i < ndim; i++)
		shape[i] = t->shape[i];
	float *data = malloc((size_t)t->numel * sizeof(float) + 1);
	if (!data) {
		igs_fail(ld->err, IGS_ERR_NOMEM, "%s: out of memory reading '%s'", ld->path, name);
		return NULL;
	}
	if (tfbundle_read_f32(ld->file, t, data, ld->err) < 0) {
		free(data);
		return NULL;
	}
	for (int64_t i = 0; i < t->numel; i++)
		if (!isfinite(data[i])) {
			igs_fail(ld->err, IGS_ERR_MODEL,
			         "%s: variable '%s' holds a non-finite value", ld->path, name);
			free(data);
			return NULL;
		}
	return data;
}

/* Kernel size of conv2d_i, or 0 when there is no such convolution. */
static int conv_kernel_size(struct tf_loader *ld, int i)
{
	char name[64];
	if (i >= ld->n_convs)
		return 0;
	layer_name(name, sizeof name, "conv2d", i, "kernel");
	const struct tfb_tensor *t = find_var(ld, name);
	return t && t->ndim == 4 ? (int)t->shape[0] : 0;
}

/* The next convolution in creation order: HWIO [k, k, c_in, *] -> OIHW. */
static int next_conv(struct tf_loader *ld, struct conv_params *c, int c_in, int k, int stride)
{
	char name[64];
	if (ld->next_conv >= ld->n_convs)
		return igs_fail(ld->err, IGS_ERR_MODEL,
		                "%s: the network needs more convolutions than conv2d..conv2d_%d",
		                ld->path, ld->n_convs - 1);
	layer_name(name, sizeof name, "conv2d", ld->next_conv++, "kernel");
	int64_t shape[4] = {k, k, c_in, -1};
	float *hwio = read_var(ld, name, 4, shape);
	if (!hwio)
		return fail_code(ld);
	const int o_n = (int)shape[3];
	c->weight = malloc((size_t)o_n * c_in * k * k * sizeof(float));
	if (!c->weight) {
		free(hwio);
		return igs_fail(ld->err, IGS_ERR_NOMEM, "%s: out of memory", ld->path);
	}
	for (int y = 0; y < k; y++)
		for (int x = 0; x < k; x++)
			for (int i = 0; i < c_in; i++)
				for (int o = 0; o < o_n; o++)
					c->weight[(((size_t)o * c_in + i) * k + y) * k + x] =
					    hwio[(((size_t)y * k + x) * c_in + i) * o_n + o];
	free(hwio);
	c->c_in = c_in;
	c->c_out = o_n;
	c->k = k;
	c->stride = stride;
	c->pad = k / 2; /* SAME, and fixed padding for strided odd kernels */
	return 0;
}

/* The next BatchNorm as y = x*scale + shift. */
static int next_bn(struct tf_loader *ld, int channels, float **scale_out, float **shift_out)
{
	static const char *const parts[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
	if (ld->next_bn >= ld->n_bns)
		return igs_fail(ld->err, IGS_ERR_MODEL,
		                "%s: the network needs more BatchNorms than batch_normalization.."
		                "batch_normalization_%d",
		                ld->path, ld->n_bns - 1);
	const int idx = ld->next_bn++;
	float *p[4] = {0};
	char name[96];
	int rc = 0;
	for (int i = 0; i < 4 && rc == 0; i++) {
		int64_t shape[1] = {channels};
		layer_name(name, sizeof name, "batch_normalization", idx, parts[i]);
		p[i] = read_var(ld, name, 1, shape);
		if (!p[i])
			rc = fail_code(ld);
	}
	for (int c = 0; rc == 0 && c < channels; c++) {
		if (!(p[3][c] + TF_BN_EPS > 0)) {
			layer_name(name, sizeof name, "batch_normalization", idx,
			           "moving_variance");
			rc = igs_fail(ld->err, IGS_ERR_MODEL, "%s: '%s' is negative at %d",
			              ld->path, name, c);
			break;
		}
		float s = p[0][c] / sqrtf(p[3][c] + TF_BN_EPS);
		p[3][c] = s;
		p[2][c] = p[1][c] - p[2][c] * s;
	}
	if (rc == 0) {
		*scale_out = p[3];
		*shift_out = p[2];
		p[3] = p[2] = NULL;
	}
	for (int i = 0; i < 4; i++)
		free(p[i]);
	return rc;
}

/* conv followed by the next BatchNorm and a ReLU, folded. */
static int next_conv_bn_relu(struct tf_loader *ld, struct conv_params *c, int c_in, int k,
                             int stride)
{
	int rc = next_conv(ld, c, c_in, k, stride);
	if (rc < 0)
		return rc;
	float *scale, *shift;
	rc = next_bn(ld, c->c_out, &scale, &shift);
	if (rc < 0)
		return rc;
	const size_t per_out = (size_t)c->c_in * c->k * c->k;
	for (int o = 0; o < c->c_out; o++)
		for (size_t i = 0; i < per_out; i++)
			c->weight[o * per_out + i] *= scale[o];
	free(scale);
	c->bias = shift;
	c->relu = true;
	return 0;
}

/* How many of layer `layer`'s numbered variables `part` exist: 0..n-1 with
 * no gap, and no conv bias (tf.layers' official ResNet has none). */
static int count_layers(struct tf_loader *ld, const char *layer, const char *part, int *n)
{
	char name[96];
	size_t plen = strlen(layer);
	int max = -1;
	for (size_t t = 0; t < tfbundle_count(ld->file); t++) {
		const char *v = tfbundle_at(ld->file, t)->name;
		const size_t slen = strlen(ld->scope);
		if (strncmp(v, ld->scope, slen))
			continue;
		v += slen;
		if (strncmp(v, layer, plen))
			continue;
		int idx = 0, used = 0;
		if (v[plen] == '_' && sscanf(v + plen + 1, "%d%n", &idx, &used) == 1 && idx > 0)
			used += 1;
		else if (v[plen] == '/')
			idx = 0, used = 0;
		else
			continue;
		const char *rest = v + plen + used;
		if (rest[0] != '/' || strchr(rest + 1, '/'))
			continue; /* another layer's name, or a slot such as .../Momentum */
		if (!strcmp(layer, "conv2d") && !strcmp(rest, "/bias"))
			return igs_fail(ld->err, IGS_ERR_MODEL,
			                "%s: '%s': the official ResNet's convolutions have no bias",
			                ld->path, v);
		if (strcmp(rest + 1, part) == 0 && idx > max)
			max = idx;
	}
	for (int i = 0; i <= max; i++) {
		layer_name(name, sizeof name, layer, i, part);
		if (!find_var(ld, name))
			return igs_fail(ld->err, IGS_ERR_MODEL,
			                "%s: '%s' is missing (there are up to %s_%d)", ld->path,
			                name, layer, max);
	}
	*n = max + 1;
	return 0;
}

static int grow_blocks(struct model *m, int *cap)
{
	if (m->n_blocks < *cap)
		return 0;
	int ncap = *cap ? 2 * *cap : 16;
	struct block_params *nb = realloc(m->blocks, (size_t)ncap * sizeof *nb);
	if (!nb)
		return IGS_ERR_NOMEM;
	memset(nb + *cap, 0, (size_t)(ncap - *cap) * sizeof *nb);
	m->blocks = nb;
	*cap = ncap;
	return 0;
}

/* One pre-activation block reading c_in channels; *c_io becomes its output width. */
static int load_block(struct tf_loader *ld, struct model *m, struct block_params *blk,
                      bool bottleneck, int *c_io, int *stage)
{
	struct model_info *info = &m->info;
	const int c_in = *c_io;
	blk->preact = true;
	blk->relu_out = false;
	blk->n_convs = bottleneck ? 3 : 2;
	blk->norm1.channels = c_in;
	int rc = next_bn(ld, c_in, &blk->norm1.scale, &blk->norm1.shift);
	if (rc < 0)
		return rc;
	const int first = ld->next_conv;
	blk->has_downsample =
	    bottleneck ? conv_kernel_size(ld, first + 1) == 1 : conv_kernel_size(ld, first) == 1;
	if (*stage < 0 && !blk->has_downsample)
		return igs_fail(ld->err, IGS_ERR_MODEL,
		                "%s: the first block has no projection (conv2d_1 is not 1x1)",
		                ld->path);
	int stride = 1;
	if (blk->has_downsample) {
		if (++*stage >= MODEL_MAX_STAGES)
			return igs_fail(ld->err, IGS_ERR_MODEL, "%s: more than %d stages", ld->path,
			                MODEL_MAX_STAGES);
		stride = *stage == 0 ? 1 : 2;
		rc = next_conv(ld, &blk->downsample, c_in, 1, stride);
		if (rc < 0)
			return rc;
	}
	info->blocks[*stage]++;
	int width = c_in;
	if (bottleneck) {
		rc = next_conv_bn_relu(ld, &blk->convs[0], width, 1, 1);
		if (rc == 0)
			rc = next_conv_bn_relu(ld, &blk->convs[1], blk->convs[0].c_out, 3, stride);
		if (rc == 0)
			rc = next_conv(ld, &blk->convs[2], blk->convs[1].c_out, 1, 1);
	} else {
		rc = next_conv_bn_relu(ld, &blk->convs[0], width, 3, stride);
		if (rc == 0)
			rc = next_conv(ld, &blk->convs[1], blk->convs[0].c_out, 3, 1);
	}
	if (rc < 0)
		return rc;
	width = blk->convs[blk->n_convs - 1].c_out;
	const int shortcut = blk->has_downsample ? blk->downsample.c_out : c_in;
	if (width != shortcut)
		return igs_fail(
		    ld->err, IGS_ERR_MODEL,
		    "%s: a block ending in conv2d_%d gives %d channels but its shortcut "
		    "%d",
		    ld->path, ld->next_conv - 1, width, shortcut);
	info->widths[*stage] = width;
	*c_io = width;
	return 0;
}

static int build(struct model *m, struct tf_loader *ld)
{
	struct model_info *info = &m->info;
	find_scope(ld);
	int rc = count_layers(ld, "conv2d", "kernel", &ld->n_convs);
	if (rc == 0)
		rc = count_layers(ld, "batch_normalization", "gamma", &ld->n_bns);
	if (rc < 0)
		return rc;
	if (ld->n_convs < 4 || !find_var(ld, "dense/kernel"))
		return igs_fail(
		    ld->err, IGS_ERR_MODEL,
		    "%s: not TensorFlow's official ResNet v2 layout (expected conv2d/kernel, "
		    "conv2d_1/kernel, ..., batch_normalization/gamma, ..., dense/kernel)",
		    ld->path);
	info->family = FAMILY_TENSORFLOW;
	info->family_name = "tensorflow";
	for (int c = 0; c < 3; c++) { /* the notebook's x/255 - 0.5 */
		info->mean[c] = 0.5f;
		info->std[c] = 1.0f;
	}
	info->input_size = 224;

	const int k = conv_kernel_size(ld, 0);
	if (k % 2 == 0)
		return igs_fail(ld->err, IGS_ERR_MODEL,
		                "%s: stem 'conv2d/kernel' needs an odd size", ld->path);
	rc = next_conv(ld, &m->stem, 3, k, 2);
	if (rc < 0)
		return rc;
	m->stem.relu = false;
	m->pool_same = true;
	info->stem_width = m->stem.c_out;
	const bool bottleneck = conv_kernel_size(ld, 2) == 1;
	info->block = bottleneck ? BLOCK_BOTTLENECK : BLOCK_BASIC;

	int channels = m->stem.c_out, stage = -1, cap = 0;
	while (ld->next_conv < ld->n_convs) {
		if (grow_blocks(m, &cap) < 0)
			return igs_fail(ld->err, IGS_ERR_NOMEM, "%s: out of memory", ld->path);
		rc = load_block(ld, m, &m->blocks[m->n_blocks++], bottleneck, &channels, &stage);
		if (rc < 0)
			return rc;
	}
	info->stages = stage + 1;
	m->has_final_norm = true;
	m->final_norm.channels = channels;
	rc = next_bn(ld, channels, &m->final_norm.scale, &m->final_norm.shift);
	if (rc < 0)
		return rc;
	if (ld->next_bn != ld->n_bns)
		return igs_fail(
		    ld->err, IGS_ERR_MODEL,
		    "%s: %d BatchNorms left over after the final one (batch_normalization_%d)",
		    ld->path, ld->n_bns - ld->next_bn, ld->next_bn - 1);

	int64_t kshape[2] = {channels, -1};
	float *kernel = read_var(ld, "dense/kernel", 2, kshape);
	if (!kernel)
		return fail_code(ld);
	const int classes = (int)kshape[1];
	m->fc_weight = malloc((size_t)classes * channels * sizeof(float));
	if (!m->fc_weight) {
		free(kernel);
		return igs_fail(ld->err, IGS_ERR_NOMEM, "%s: out of memory", ld->path);
	}
	for (int i = 0; i < channels; i++)
		for (int o = 0; o < classes; o++)
			m->fc_weight[(size_t)o * channels + i] = kernel[(size_t)i * classes + o];
	free(kernel);
	int64_t bshape[1] = {classes};
	m->fc_bias = read_var(ld, "dense/bias", 1, bshape);
	if (!m->fc_bias)
		return fail_code(ld);
	info->classes = classes;
	info->features = channels;
	snprintf(info->sha256, sizeof info->sha256, "%s", tfbundle_sha256(ld->file));
	snprintf(info->path, sizeof info->path, "%s", tfbundle_prefix(ld->file));
	return 0;
}

int model_read_tfbundle(struct model *m, const char *path, struct igs_error *err)
{
	struct tf_loader ld = {.path = path, .err = err};
	int rc = tfbundle_open(&ld.file, path, err);
	if (rc < 0)
		return rc;
	ld.path = tfbundle_prefix(ld.file);
	rc = build(m, &ld);
	tfbundle_close(&ld.file);
	return rc;
}
