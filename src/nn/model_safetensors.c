/*
 * model_safetensors.c - a ResNet from a .safetensors file: the architecture
 * read off tensor names and shapes (never a flag), BatchNorm folded.
 *
 *   torchvision ResNet v1.5  conv1, bn1, layerN.M.{convK,bnK}, layerN.0.downsample.{0,1}, fc
 *   timm ResNetV2 (preact)   stem.conv, stages.S.blocks.B.{normK,convK},
 *                            stages.S.blocks.0.downsample.conv, norm, head.fc
 * Depth, widths and the class count come from the shapes.  Every tensor in
 * the file must be used (num_batches_tracked aside): an unexpected name
 * means we would silently run a different network, so it is an error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#include "safetensors.h"

#define BN_EPS 1e-5f

/* ===== loading context ==================================================== */

struct loader {
	struct st_file *file;
	const char *path;
	bool *used; /* per tensor in file order */
	struct igs_error *err;
};

static const struct st_tensor *find_tensor(struct loader *ld, const char *name)
{
	const struct st_tensor *t = safetensors_find(ld->file, name);
	if (t) {
		size_t n = safetensors_count(ld->file);
		for (size_t i = 0; i < n; i++)
			if (safetensors_at(ld->file, i) == t)
				ld->used[i] = true;
	}
	return t;
}

static bool has_tensor(struct loader *ld, const char *name)
{
	return safetensors_find(ld->file, name) != NULL;
}

static void format_shape(char *buf, size_t len, const int64_t *shape, int ndim)
{
	size_t off = 0;
	off += (size_t)snprintf(buf + off, len - off, "[");
	for (int i = 0; i < ndim && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? ", " : "",
		                        (long long)shape[i]);
	if (off < len)
		snprintf(buf + off, len - off, "]");
}

/*
 * read_tensor - the float32 copy of tensor `name`, which must have exactly
 * `ndim` dims of `shape` (a -1 entry accepts any size and reports it back).
 * Returns a malloc'ed array the caller owns, or NULL with ld->err set.
 */
static float *read_tensor(struct loader *ld, const char *name, int ndim, int64_t *shape)
{
	const struct st_tensor *t = find_tensor(ld, name);
	if (!t) {
		igs_fail(ld->err, IGS_ERR_MODEL, "%s: missing tensor '%s'", ld->path, name);
		return NULL;
	}
	bool ok = t->ndim == ndim;
	for (int i = 0; ok && i < ndim; i++)
		ok = shape[i] < 0 ? t->shape[i] > 0 : t->shape[i] == shape[i];
	if (!ok) {
		char got[128], want[128];
		format_shape(got, sizeof got, t->shape, t->ndim);
		format_shape(want, sizeof want, shape, ndim);
		for (char *p = strstr(want, "-1"); p; p = strstr(p, "-1"))
			p[0] = ' ', p[1] = '*';
		igs_fail(ld->err, IGS_ERR_MODEL, "%s: tensor '%s' has shape %s, expected %s",
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
	int rc = safetensors_read_f32(t, data, ld->err);
	if (rc < 0) {
		free(data);
		return NULL;
	}
	for (int64_t i = 0; i < t->numel; i++) {
		if (!isfinite(data[i])) {
			igs_fail(ld->err, IGS_ERR_MODEL, "%s: tensor '%s' holds a non-finite value",
			         ld->path, name);
			free(data);
			return NULL;
		}
	}
	return data;
}

/* ===== building blocks ==================================================== */

/*
 * load_conv - weight `prefix`.weight [c_out][c_in][k][k] with c_in and k
 * known; c_out < 0 accepts any output width.
 */
static int load_conv(struct loader *ld, struct conv_params *c, const char *weight_name, int c_in,
                     int c_out, int k, int stride)
{
	int64_t shape[4] = {c_out, c_in, k, k};
	c->weight = read_tensor(ld, weight_name, 4, shape);
	if (!c->weight)
		return ld->err ? ld->err->code : IGS_ERR_MODEL;
	c->c_in = c_in;
	c->c_out = (int)shape[0];
	c->k = k;
	c->stride = stride;
	c->pad = k / 2;
	return 0;
}

/* BatchNorm `prefix`.{weight,bias,running_mean,running_var} as y = x*scale + shift. */
static int load_bn(struct loader *ld, const char *prefix, int channels, float **scale_out,
                   float **shift_out)
{
	static const char *const parts[4] = {"weight", "bias", "running_mean", "running_var"};
	float *p[4] = {0};
	char name[256];
	int rc = 0;
	for (int i = 0; i < 4; i++) {
		int64_t shape[1] = {channels};
		snprintf(name, sizeof name, "%s.%s", prefix, parts[i]);
		p[i] = read_tensor(ld, name, 1, shape);
		if (!p[i]) {
			rc = ld->err ? ld->err->code : IGS_ERR_MODEL;
			goto out;
		}
	}
	snprintf(name, sizeof name, "%s.num_batches_tracked", prefix);
	find_tensor(ld, name); /* training bookkeeping: allowed, unused */
	for (int c = 0; c < channels; c++) {
		if (!(p[3][c] + BN_EPS > 0)) {
			rc =
			    igs_fail(ld->err, IGS_ERR_MODEL,
			             "%s: '%s.running_var' is negative at %d", ld->path, prefix, c);
			goto out;
		}
		float s = p[0][c] / sqrtf(p[3][c] + BN_EPS);
		p[3][c] = s;                     /* reuse: scale */
		p[2][c] = p[1][c] - p[2][c] * s; /* reuse: shift */
	}
	*scale_out = p[3];
	*shift_out = p[2];
	p[3] = p[2] = NULL;
out:
	for (int i = 0; i < 4; i++)
		free(p[i]);
	return rc;
}

/* Fold y = bn(conv(x)) into the convolution: W' = W*scale, b' = shift. */
static int fold_bn_into_conv(struct loader *ld, struct conv_params *c, const char *bn_prefix)
{
	float *scale, *shift;
	int rc = load_bn(ld, bn_prefix, c->c_out, &scale, &shift);
	if (rc < 0)
		return rc;
	size_t per_out = (size_t)c->c_in * c->k * c->k;
	for (int o = 0; o < c->c_out; o++)
		for (size_t i = 0; i < per_out; i++)
			c->weight[o * per_out + i] *= scale[o];
	free(scale);
	c->bias = shift;
	return 0;
}

/* ===== the two families =================================================== */

/* Names of block b of stage s, by family. */
static void block_prefix(char *buf, size_t len, enum model_family f, int s, int b)
{
	if (f == FAMILY_TORCHVISION)
		snprintf(buf, len, "layer%d.%d", s + 1, b);
	else
		snprintf(buf, len, "stages.%d.blocks.%d", s, b);
}

static int count_stages_and_blocks(struct loader *ld, struct model *m)
{
	struct model_info *info = &m->info;
	char name[256], prefix[128];
	info->stages = 0;
	for (int s = 0; s < MODEL_MAX_STAGES; s++) {
		block_prefix(prefix, sizeof prefix, info->family, s, 0);
		snprintf(name, sizeof name, "%s.conv1.weight", prefix);
		if (!has_tensor(ld, name))
			break;
		int b = 0;
		for (;; b++) {
			block_prefix(prefix, sizeof prefix, info->family, s, b);
			snprintf(name, sizeof name, "%s.conv1.weight", prefix);
			if (!has_tensor(ld, name))
				break;
		}
		info->blocks[s] = b;
		info->stages = s + 1;
		m->n_blocks += b;
	}
	if (info->stages == 0) {
		block_prefix(prefix, sizeof prefix, info->family, 0, 0);
		return igs_fail(ld->err, IGS_ERR_MODEL,
		                "%s: no residual blocks (expected '%s.conv1.weight')", ld->path,
		                prefix);
	}
	block_prefix(prefix, sizeof prefix, info->family, 0, 0);
	snprintf(name, sizeof name, "%s.conv3.weight", prefix);
	info->block = has_tensor(ld, name) ? BLOCK_BOTTLENECK : BLOCK_BASIC;
	return 0;
}

/*
 * load_block - one residual block reading `c_in` channels with `stride`;
 * returns its output width through *c_out.
 */
static int load_block(struct loader *ld, struct model *m, struct block_params *blk, int s, int b,
                      int c_in, int stride, int *c_out)
{
	const bool tv = m->info.family == FAMILY_TORCHVISION;
	const bool bottleneck = m->info.block == BLOCK_BOTTLENECK;
	char prefix[128], name[256], bn[256];
	int rc;
	block_prefix(prefix, sizeof prefix, m->info.family, s, b);

	blk->preact = !tv;
	blk->relu_out = tv;
	blk->n_convs = bottleneck ? 3 : 2;
	if (blk->preact) {
		snprintf(bn, sizeof bn, "%s.norm1", prefix);
		blk->norm1.channels = c_in;
		rc = load_bn(ld, bn, c_in, &blk->norm1.scale, &blk->norm1.shift);
		if (rc < 0)
			return rc;
	}
	/* v1.5 and timm both stride the 3x3: conv2 in a bottleneck, conv1 in a basic block. */
	const int ks[3] = {bottleneck ? 1 : 3, 3, 1};
	const int strided = bottleneck ? 1 : 0;
	int width = c_in;
	for (int i = 0; i < blk->n_convs; i++) {
		struct conv_params *c = &blk->convs[i];
		snprintf(name, sizeof name, "%s.conv%d.weight", prefix, i + 1);
		rc = load_conv(ld, c, name, width, -1, ks[i], i == strided ? stride : 1);
		if (rc < 0)
			return rc;
		width = c->c_out;
		bool last = i == blk->n_convs - 1;
		/* torchvision: bnK after convK.  timm: norm(K+1) after convK, except the last. */
		if (tv) {
			snprintf(bn, sizeof bn, "%s.bn%d", prefix, i + 1);
			rc = fold_bn_into_conv(ld, c, bn);
		} else if (!last) {
			snprintf(bn, sizeof bn, "%s.norm%d", prefix, i + 2);
			rc = fold_bn_into_conv(ld, c, bn);
		}
		if (rc < 0)
			return rc;
		c->relu = !last;
	}
	blk->convs[blk->n_convs - 1].relu = blk->relu_out;

	snprintf(name, sizeof name, tv ? "%s.downsample.0.weight" : "%s.downsample.conv.weight",
	         prefix);
	blk->has_downsample = has_tensor(ld, name);
	if (blk->has_downsample) {
		rc = load_conv(ld, &blk->downsample, name, c_in, width, 1, stride);
		if (rc < 0)
			return rc;
		if (tv) {
			snprintf(bn, sizeof bn, "%s.downsample.1", prefix);
			rc = fold_bn_into_conv(ld, &blk->downsample, bn);
			if (rc < 0)
				return rc;
		}
	} else if (stride != 1 || c_in != width) {
		return igs_fail(
		    ld->err, IGS_ERR_MODEL,
		    "%s: block '%s' changes shape (%d -> %d channels, stride %d) but has no "
		    "'%s'",
		    ld->path, prefix, c_in, width, stride, name);
	}
	*c_out = width;
	return 0;
}

static int load_stem(struct loader *ld, struct model *m)
{
	const bool tv = m->info.family == FAMILY_TORCHVISION;
	const char *name = tv ? "conv1.weight" : "stem.conv.weight";
	const struct st_tensor *t = safetensors_find(ld->file, name);
	if (!t || t->ndim != 4 || t->shape[1] != 3 || t->shape[2] != t->shape[3] ||
	    t->shape[2] % 2 == 0) {
		char got[128] = "absent";
		if (t)
			format_shape(got, sizeof got, t->shape, t->ndim);
		return igs_fail(ld->err, IGS_ERR_MODEL,
		                "%s: stem '%s' must be [width, 3, k, k] with odd k, got %s",
		                ld->path, name, got);
	}
	int rc = load_conv(ld, &m->stem, name, 3, -1, (int)t->shape[2], 2);
	if (rc < 0)
		return rc;
	if (tv) {
		rc = fold_bn_into_conv(ld, &m->stem, "bn1");
		m->stem.relu = true;
	}
	m->info.stem_width = m->stem.c_out;
	return rc;
}

static int load_head(struct loader *ld, struct model *m, int features)
{
	const bool tv = m->info.family == FAMILY_TORCHVISION;
	if (!tv) {
		m->has_final_norm = true;
		m->final_norm.channels = features;
		int rc = load_bn(ld, "norm", features, &m->final_norm.scale, &m->final_norm.shift);
		if (rc < 0)
			return rc;
	}
	int64_t shape4[4] = {-1, features, 1, 1};
	m->fc_weight = read_tensor(ld, tv ? "fc.weight" : "head.fc.weight", tv ? 2 : 4, shape4);
	if (!m->fc_weight)
		return ld->err ? ld->err->code : IGS_ERR_MODEL;
	int classes = (int)shape4[0];
	int64_t bias_shape[1] = {classes};
	m->fc_bias = read_tensor(ld, tv ? "fc.bias" : "head.fc.bias", 1, bias_shape);
	if (!m->fc_bias)
		return ld->err ? ld->err->code : IGS_ERR_MODEL;
	m->info.classes = classes;
	m->info.features = features;
	return 0;
}

/* The model in ld's file: family, blocks, classifier; every tensor used. */
static int build(struct model *m, struct loader *ld)
{
	struct model_info *info = &m->info;
	if (has_tensor(ld, "conv1.weight") && has_tensor(ld, "fc.weight")) {
		info->family = FAMILY_TORCHVISION;
		info->family_name = "torchvision";
		const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
		memcpy(info->mean, mean, sizeof mean);
		memcpy(info->std, std, sizeof std);
	} else if (has_tensor(ld, "stem.conv.weight") && has_tensor(ld, "head.fc.weight")) {
		info->family = FAMILY_TIMM_RESNETV2;
		info->family_name = "timm_resnetv2";
		for (int c = 0; c < 3; c++)
			info->mean[c] = info->std[c] = 0.5f;
	} else {
		return igs_fail(
		    ld->err, IGS_ERR_MODEL,
		    "%s: not a ResNet igserve recognizes: expected torchvision names "
		    "(conv1.weight, layer1.0.conv1.weight, fc.weight) or timm ResNetV2 names "
		    "(stem.conv.weight, stages.0.blocks.0.conv1.weight, head.fc.weight)",
		    ld->path);
	}
	info->input_size = 224;

	int rc = count_stages_and_blocks(ld, m);
	if (rc < 0)
		return rc;
	m->blocks = calloc((size_t)m->n_blocks, sizeof *m->blocks);
	if (!m->blocks)
		return igs_fail(ld->err, IGS_ERR_NOMEM, "%s: out of memory", ld->path);
	rc = load_stem(ld, m);
	if (rc < 0)
		return rc;

	int channels = m->stem.c_out, i = 0;
	for (int s = 0; s < info->stages; s++) {
		for (int b = 0; b < info->blocks[s]; b++, i++) {
			int stride = (s > 0 && b == 0) ? 2 : 1;
			rc = load_block(ld, m, &m->blocks[i], s, b, channels, stride, &channels);
			if (rc < 0)
				return rc;
		}
		info->widths[s] = channels;
	}
	rc = load_head(ld, m, channels);
	if (rc < 0)
		return rc;

	/* Anything left unread is a layer we would not run. */
	for (size_t t = 0; t < safetensors_count(ld->file); t++) {
		if (!ld->used[t])
			return igs_fail(ld->err, IGS_ERR_MODEL,
			                "%s: unexpected tensor '%s' for a %s ResNet (%d stages)",
			                ld->path, safetensors_at(ld->file, t)->name,
			                info->family_name, info->stages);
	}

	snprintf(info->sha256, sizeof info->sha256, "%s", safetensors_sha256(ld->file));
	snprintf(info->path, sizeof info->path, "%s", ld->path);
	return 0;
}

int model_read_safetensors(struct model *m, const char *path, struct igs_error *err)
{
	struct loader ld = {.path = path, .err = err};
	int rc = safetensors_open(&ld.file, path, err);
	if (rc < 0)
		return rc;
	ld.used = calloc(safetensors_count(ld.file) + 1, sizeof *ld.used);
	rc = ld.used ? build(m, &ld) : igs_fail(err, IGS_ERR_NOMEM, "%s: out of memory", path);
	free(ld.used);
	safetensors_close(&ld.file);
	return rc;
}
