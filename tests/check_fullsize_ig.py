#!/usr/bin/python3
"""check_fullsize_ig.py - acceptance check of `igserve attribute` against PyTorch.

Generates the full-size random-weight models and images of check_fullsize.py
(its --only-generate DIR: torchvision resnet18, resnet50 and a timm-named
resnetv2_50, F32 safetensors, two 224x224 PNGs), then for each model runs

    $IGSERVE_BINARY attribute --model M --method gausslegendre --steps 16 \
        --baseline gray --raw out.npy IMAGE

and compares with Integrated Gradients computed by PyTorch in float64 from the
same file (the model rebuilt from the safetensors, normalization inside the
graph, nodes from numpy's leggauss):
  - attributions within 1e-2 relative L2 of the reference,
  - f_input and f_baseline within 1e-4 (relative to max(1, |f|)),
  - the target is the reference's top-1, the JSON has the contract's fields,
    completeness.sum equals the .npy's sum and delta = sum - (f_input - f_baseline).
Then on resnet50 `--steps 8 --tolerance 0.05` must answer converged: true with both
convergence.relative_l2 and relative_error <= 0.05 (the trapezoid, adaptive's default), and `--out DIR` must write the seven heatmaps as 224x224 PNGs.

Usage:
    /usr/bin/python3 tests/check_fullsize_ig.py [--keep DIR] [--image scene.png]
    IGSERVE_BINARY=build-x/src/igserve /usr/bin/python3 tests/check_fullsize_ig.py
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torchvision
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "fixtures"))

import resnets  # noqa: E402
import st  # noqa: E402

STEPS = 16
ATTR_TOL = 1e-2
F_TOL = 1e-4
TOLERANCE = 0.05
HEATMAPS = ["normalized", "deviation", "magnitude", "overlay", "channel_r", "channel_g",
            "channel_b"]
CONSTRUCTORS = {
    "resnet18": lambda: torchvision.models.resnet18(weights=None),
    "resnet50": lambda: torchvision.models.resnet50(weights=None),
    "resnetv2_50": resnets.resnetv2_50,
}


def find_binary():
    binary = os.environ.get("IGSERVE_BINARY")
    if binary:
        return binary
    for cand in ("build/igserve", "build/src/igserve"):
        p = os.path.join(ROOT, cand)
        if os.path.exists(p):
            return p
    return os.path.join(ROOT, "build", "igserve")


def load_model(path, name):
    """The float64 PyTorch model holding exactly the file's weights."""
    tensors, _ = st.load(path)
    model = CONSTRUCTORS[name]().double()
    model.load_state_dict({k: v.double() if v.is_floating_point() else v
                           for k, v in tensors.items()})
    return model.eval()


def reference_ig(model, pixels, target=None):
    """(attr [H,W,3], target, f_input, f_baseline) in float64, gray baseline."""
    mean, std = resnets.family_norm(resnets.family_of(model))
    mean = torch.tensor(mean, dtype=torch.float64)
    std = torch.tensor(std, dtype=torch.float64)

    def forward(p):
        return model(((p / 255.0 - mean) / std).permute(0, 3, 1, 2).contiguous())

    x = torch.tensor(pixels, dtype=torch.float64)
    base = torch.full_like(x, 127.5)
    with torch.no_grad():
        ends = forward(torch.stack([x, base]))
    if target is None:
        target = int(ends[0].argmax())
    z, v = np.polynomial.legendre.leggauss(STEPS)
    alphas, weights = (1 + z) / 2, v / 2
    total = torch.zeros_like(x)
    for k0 in range(0, STEPS, 4):  # four path points at a time bounds the memory
        a = torch.tensor(alphas[k0:k0 + 4], dtype=torch.float64)[:, None, None, None]
        w = torch.tensor(weights[k0:k0 + 4], dtype=torch.float64)[:, None, None, None]
        pts = (base + a * (x - base)).requires_grad_(True)
        (g,) = torch.autograd.grad(forward(pts)[:, target].sum(), pts)
        total += (w * g).sum(0)
    attr = (x - base) * total
    return attr.numpy(), target, float(ends[0, target]), float(ends[1, target])


def run_attribute(binary, args):
    t0 = time.time()
    proc = subprocess.run([binary, "attribute"] + args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("igserve attribute %s exited %d: %s" % (
            " ".join(args), proc.returncode, proc.stderr[-2000:]))
    return json.loads(proc.stdout), time.time() - t0


def close(a, b, tol):
    return abs(a - b) <= tol * max(1.0, abs(b))


def check_shape(doc, problems, where):
    """The contract's /attribute fields."""
    want = {
        "model": ["arch", "family", "classes", "sha256"],
        "target": ["index", "label", "logit", "probability"],
        "method": ["name", "steps", "baseline", "tolerance", "converged"],
        "completeness": ["sum", "f_input", "f_baseline", "delta", "relative_error"],
        "timing_ms": ["decode", "preprocess", "attribution", "heatmaps", "total"],
    }
    for key, fields in want.items():
        for f in fields:
            if f not in doc.get(key, {}):
                problems.append("%s: JSON lacks %s.%s" % (where, key, f))
    if len(doc.get("predictions", [])) != 5:
        problems.append("%s: predictions has %d entries, expected 5" % (
            where, len(doc.get("predictions", []))))
    for row in doc.get("path", []):
        for f in ("alpha", "weight", "logit", "gradient_sum"):
            if f not in row:
                problems.append("%s: a path row lacks %s" % (where, f))
                return


def check_model(binary, workdir, name, info, image, problems):
    path = os.path.join(workdir, info["file"])
    model = load_model(path, name)
    pixels = np.asarray(Image.open(os.path.join(workdir, image)).convert("RGB"), np.float64)
    t0 = time.time()
    ref, target, fi, fb = reference_ig(model, pixels)
    t_ref = time.time() - t0
    npy = os.path.join(workdir, name + ".attr.npy")
    doc, t_ig = run_attribute(binary, ["--model", path, "--method", "gausslegendre",
                                       "--steps", str(STEPS), "--baseline", "gray",
                                       "--heatmaps", "none", "--raw", npy,
                                       os.path.join(workdir, image)])
    attr = np.load(npy)
    where = "%s/%s" % (name, image)
    check_shape(doc, problems, where)
    if attr.dtype != np.float32 or attr.shape != (224, 224, 3):
        problems.append("%s: .npy is %s %s, expected float32 (224, 224, 3)" % (
            where, attr.dtype, attr.shape))
    err = float(np.linalg.norm(attr.astype(np.float64) - ref) / np.linalg.norm(ref))
    comp = doc["completeness"]
    print("%-12s %-10s rel L2 %.2e  f_input %.6f (%.6f)  f_baseline %.6f (%.6f)  "
          "rel.err %.3g  igserve %.1f s, PyTorch f64 %.1f s" % (
              name, image, err, comp["f_input"], fi, comp["f_baseline"], fb,
              comp["relative_error"], t_ig, t_ref), flush=True)
    if not err < ATTR_TOL:
        problems.append("%s: attributions %.3g relative L2 from PyTorch (limit %g)" % (
            where, err, ATTR_TOL))
    if doc["target"]["index"] != target:
        problems.append("%s: target %d, PyTorch top-1 %d" % (where, doc["target"]["index"],
                                                               target))
    if not close(comp["f_input"], fi, F_TOL):
        problems.append("%s: f_input %.8g, PyTorch %.8g" % (where, comp["f_input"], fi))
    if not close(comp["f_baseline"], fb, F_TOL):
        problems.append("%s: f_baseline %.8g, PyTorch %.8g" % (where, comp["f_baseline"], fb))
    if not close(comp["sum"], float(attr.astype(np.float64).sum()), 1e-4):
        problems.append("%s: completeness.sum %.8g but the .npy sums to %.8g" % (
            where, comp["sum"], float(attr.sum())))
    if not close(comp["delta"], comp["sum"] - (comp["f_input"] - comp["f_baseline"]), 1e-6):
        problems.append("%s: delta is not sum - (f_input - f_baseline)" % where)
    if doc["method"]["name"] != "gausslegendre" or doc["method"]["steps"] != STEPS \
            or doc["method"]["baseline"] != "gray" or doc["method"]["tolerance"] is not None:
        problems.append("%s: method %s" % (where, doc["method"]))
    if len(doc["path"]) != STEPS:
        problems.append("%s: path has %d rows, expected %d" % (where, len(doc["path"]), STEPS))


def check_adaptive(binary, workdir, info, image, problems):
    path = os.path.join(workdir, info["file"])
    # Start below what suffices, so the answer shows a refinement.
    doc, t = run_attribute(binary, ["--model", path, "--steps", "8",
                                    "--tolerance", str(TOLERANCE),
                                    "--heatmaps", "none", os.path.join(workdir, image)])
    m = doc["method"]
    rel = doc["completeness"]["relative_error"]
    print("resnet50 adaptive: tolerance %s -> %d steps (%s evaluations), relative error %.3g, "
          "converged %s, %.1f s" % (m["tolerance"], m["steps"], m.get("evaluations"), rel,
                                    m["converged"], t), flush=True)
    conv = doc.get("convergence") or {}
    est = conv.get("relative_l2")
    print("resnet50 adaptive: %s, estimated error %s" % (m["name"], est), flush=True)
    if not (rel <= TOLERANCE and m["converged"] is True and est is not None
            and est <= TOLERANCE and m["name"] == "riemann_trapezoid"):
        problems.append("resnet50 --tolerance %g: %s, relative_error %.3g, relative_l2 %s, "
                        "converged %s" % (TOLERANCE, m["name"], rel, est, m["converged"]))
    if m["tolerance"] != TOLERANCE:
        problems.append("resnet50 adaptive: method.tolerance %s" % m["tolerance"])


def check_heatmap_files(binary, workdir, info, image, problems):
    outdir = os.path.join(workdir, "maps")
    path = os.path.join(workdir, info["file"])
    doc, _ = run_attribute(binary, ["--model", path, "--steps", "4", "--out", outdir,
                                    os.path.join(workdir, image)])
    for name in HEATMAPS:
        f = doc["heatmaps"].get(name)
        if not f or not os.path.exists(f):
            problems.append("--out: heatmap %s not written (%s)" % (name, f))
            continue
        with Image.open(f) as im:
            if im.size != (224, 224) or im.format != "PNG":
                problems.append("--out: %s is %s %s" % (f, im.format, im.size))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", metavar="DIR", help="work in DIR (kept) instead of a temporary one")
    ap.add_argument("--image", default="scene.png", help="scene.png (default) or noise.png")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    binary = find_binary()
    if not os.access(binary, os.X_OK):
        print("FAIL: igserve binary %s not found or not executable (set IGSERVE_BINARY)" % binary)
        return 1
    with tempfile.TemporaryDirectory(prefix="igserve-fullsize-ig-") as tmp:
        workdir = args.keep or tmp
        subprocess.run([sys.executable, os.path.join(HERE, "check_fullsize.py"),
                        "--only-generate", workdir], check=True)
        with open(os.path.join(workdir, "reference.json")) as f:
            manifest = json.load(f)
        problems = []
        for name in ("resnet18", "resnet50", "resnetv2_50"):
            try:
                check_model(binary, workdir, name, manifest["models"][name], args.image,
                            problems)
            except (RuntimeError, KeyError, ValueError) as e:
                problems.append("%s: %s" % (name, e))
        try:
            check_adaptive(binary, workdir, manifest["models"]["resnet50"], args.image,
                           problems)
            check_heatmap_files(binary, workdir, manifest["models"]["resnet18"], args.image,
                                problems)
        except (RuntimeError, KeyError, ValueError) as e:
            problems.append(str(e))
    for p in problems:
        print("FAIL:", p)
    print("fullsize-ig-pytorch: %s (%d problem%s)" % (
        "PASSED" if not problems else "FAILED", len(problems), "" if len(problems) == 1 else "s"))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
