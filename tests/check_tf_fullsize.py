#!/usr/bin/python3
"""check_tf_fullsize.py - acceptance: a full-size TensorFlow ResNet-50 v2 checkpoint.

Writes, in a temporary directory, a ResNet-50 v2 in the layout of TensorFlow's official
checkpoints (the notebook's resnet50_2017_11_30: conv2d/batch_normalization/dense in creation
order, HWIO kernels, 1001 classes, Momentum slots for every variable and global_step) with
random weights, through tests/fixtures/tfbundle.py (a writer made from the format, not
TensorFlow's), as DIR/model.ckpt-225207 with a `checkpoint` file naming it; and three 224x224
PNGs.  Then, against float64 PyTorch built op by op (tests/fixtures/tf_resnet.py):

  igserve predict --model PREFIX (and --model DIR)   every reported logit within 1e-4 of the
      largest reference logit, the top 5 the reference's top 5 among classes 1..1000 (the
      background class 0 left out), labels the ImageNet names shifted by one;
  igserve attribute --model PREFIX --steps 16 --method gausslegendre --baseline gray --raw
      within 1e-2 relative L2 of float64 PyTorch IG, the same default target (not 0).

Usage: /usr/bin/python3 tests/check_tf_fullsize.py   (IGSERVE_BINARY, default build/igserve;
about 200 MB of temporary files; a few minutes)
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "fixtures"))

import tf_resnet  # noqa: E402
import tfbundle  # noqa: E402

SIZE = 224
REL_TOL = 1e-4
IG_TOL = 1e-2


def make_images(outdir):
    rng = np.random.default_rng(77)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    scene = np.stack([90 + 0.5 * y, 140 + 40 * np.sin(x / 17.0), 230 - 0.3 * y], -1)
    scene[(x - 150) ** 2 + (y - 60) ** 2 <= 30 ** 2] = [255, 220, 120]
    noise = rng.integers(0, 256, (SIZE, SIZE, 3)).astype(np.float64)
    cells = ((y // 16 + x // 16) % 2)[..., None]
    checker = np.where(cells == 0, 30.0, rng.integers(0, 256, (SIZE, SIZE, 3)))
    paths = []
    for name, img in (("scene", scene), ("noise", noise), ("checker", checker)):
        p = os.path.join(outdir, name + ".png")
        Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8), "RGB").save(p)
        paths.append(p)
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float64) for p in paths])
    return paths, pixels


def run(binary, args):
    proc = subprocess.run([binary] + args, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit("igserve %s failed (%d): %s" % (args[0], proc.returncode, proc.stderr[-2000:]))
    return proc.stdout


def check_predict(binary, model, paths, ref, problems):
    out = run(binary, ["predict", "--model", model, "--top-k", "5"] + paths)
    lines = [json.loads(l) for l in out.splitlines() if l.strip().startswith("{")]
    if len(lines) != len(paths):
        problems.append("%s: %d JSON lines for %d images" % (model, len(lines), len(paths)))
        return
    for i, obj in enumerate(lines):
        r = ref[i]
        tol = REL_TOL * np.abs(r).max()
        want = [int(c) + 1 for c in np.argsort(-r[1:], kind="stable")[:5]]
        got = [p["index"] for p in obj["predictions"]]
        if got != want:
            problems.append("%s image %d: top 5 %s, reference %s" % (model, i, got, want))
        for p in obj["predictions"]:
            if abs(p["logit"] - r[p["index"]]) > tol:
                problems.append("%s image %d class %d: logit %.6g, reference %.6g" % (
                    model, i, p["index"], p["logit"], r[p["index"]]))
        print("%s image %d: top 5 %s, max |logit diff| %.3g (tolerance %.3g)" % (
            os.path.basename(model), i, got,
            max(abs(p["logit"] - r[p["index"]]) for p in obj["predictions"]), tol))


def main():
    binary = os.environ.get("IGSERVE_BINARY", os.path.join(ROOT, "build", "igserve"))
    with tempfile.TemporaryDirectory(prefix="igserve-tf-") as tmp:
        variables, net = tf_resnet.build(50, [3, 4, 6, 3], True, 64, [64, 128, 256, 512], 1001)
        tensors = dict(variables)
        tensors.update(tf_resnet.training_extras(variables, False))
        ckdir = os.path.join(tmp, "resnet50_2017_11_30")
        os.makedirs(ckdir)
        prefix = os.path.join(ckdir, "model.ckpt-225207")
        tfbundle.write_bundle(prefix, tensors)
        with open(os.path.join(ckdir, "checkpoint"), "w") as f:
            f.write('model_checkpoint_path: "model.ckpt-225207"\n'
                    'all_model_checkpoint_paths: "model.ckpt-225207"\n')
        paths, pixels = make_images(tmp)

        v = {k: torch.tensor(a, dtype=torch.float64) for k, a in variables.items()}
        with torch.no_grad():
            ref = tf_resnet.forward(v, net, torch.tensor(pixels)).numpy()
        problems = []
        check_predict(binary, prefix, paths, ref, problems)
        check_predict(binary, ckdir, paths, ref, problems)

        # Integrated Gradients of the first image, default target (background left out)
        target = int(np.argmax(ref[0, 1:])) + 1
        x = torch.tensor(pixels[0:1])
        base = torch.full_like(x, 127.5)
        z, w = np.polynomial.legendre.leggauss(16)
        total = torch.zeros_like(x)
        for a, wk in zip((1 + z) / 2, w / 2):
            p = (base + float(a) * (x - base)).requires_grad_(True)
            (g,) = torch.autograd.grad(tf_resnet.forward(v, net, p)[0, target], p)
            total += float(wk) * g
        ig_ref = ((x - base) * total)[0].numpy()
        npy = os.path.join(tmp, "ig.npy")
        out = run(binary, ["attribute", "--model", prefix, "--steps", "16", "--method",
                           "gausslegendre", "--baseline", "gray", "--heatmaps", "none",
                           "--raw", npy, paths[0]])
        obj = json.loads([l for l in out.splitlines() if l.strip().startswith("{")][0])
        got_target = obj["target"]["index"]
        if got_target != target:
            problems.append("attribute: default target %d, reference %d" % (got_target, target))
        ig = np.load(npy).astype(np.float64)
        rel = np.linalg.norm(ig - ig_ref) / np.linalg.norm(ig_ref)
        print("attribute: target %d, IG relative L2 %.3g (tolerance %g)" % (got_target, rel, IG_TOL))
        if not rel <= IG_TOL:
            problems.append("attribute: IG relative L2 %.3g" % rel)
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
