#!/usr/bin/python3
"""check_fullsize.py - acceptance check of the igserve engine against PyTorch.

Builds full-size models with random weights and non-trivial BatchNorm
statistics (torchvision resnet18 and resnet50, and a timm-named resnetv2_50
from tests/fixtures/resnets.py), saves them as F32 safetensors together with
two deterministic 224x224 PNG images in a temporary directory, runs

    $IGSERVE_BINARY predict --model M.safetensors scene.png noise.png

and checks each JSON line against a float64 PyTorch forward of the same
weights: the top-5 indices agree (in order, allowing a swap only between
reference logits closer than the tolerance), each reported logit is within
1e-4 * max|logit| of PyTorch, each probability within 1e-4 of the float64
softmax, and labels are torchvision's ImageNet names.  Exits non-zero on any
mismatch.

Usage (from anywhere; the binary defaults to build/igserve):
    /usr/bin/python3 tests/check_fullsize.py
    IGSERVE_BINARY=build-x/igserve /usr/bin/python3 tests/check_fullsize.py
    /usr/bin/python3 tests/check_fullsize.py --only-generate DIR   # models, PNGs, reference.json
    /usr/bin/python3 tests/check_fullsize.py --selfcheck           # the Python side alone
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torchvision
import torchvision.models._meta as tv_meta
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "fixtures"))

import resnets  # noqa: E402
import st  # noqa: E402

SIZE = 224
TOP_K = 5
REL_TOL = 1e-4
PROB_TOL = 1e-4
IMAGES = ["scene.png", "noise.png"]


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

def make_images(outdir):
    """Write scene.png (a smooth synthetic landscape) and noise.png (uniform
    RGB noise), both 224x224 8-bit RGB, deterministic."""
    n = SIZE
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    img = np.zeros((n, n, 3), np.float64)
    horizon = 130 + 18 * np.sin(x / 23.0) + 9 * np.sin(x / 7.0 + 1.0)
    sky = y < horizon
    img[..., 0] = np.where(sky, 90 + 0.5 * y, 60 + 0.3 * (y - 130))
    img[..., 1] = np.where(sky, 140 + 0.4 * y, 120 + 0.2 * x * 0.3 + 20 * np.sin(y / 9.0))
    img[..., 2] = np.where(sky, 230 - 0.3 * y, 50 + 0.1 * x)
    sun = (x - 160) ** 2 + (y - 50) ** 2 <= 22 ** 2
    img[sun] = [255, 220, 120]
    house = (x >= 40) & (x < 90) & (y >= 150) & (y < 200)
    img[house] = [170, 60, 50]
    roof = (y >= 120) & (y < 150) & (np.abs(x - 65) <= (y - 120) * 27 / 30)
    img[roof] = [90, 40, 30]
    scene = np.clip(np.round(img), 0, 255).astype(np.uint8)
    rng = np.random.RandomState(1234)
    noise = rng.randint(0, 256, size=(n, n, 3)).astype(np.uint8)
    paths = []
    for name, arr in zip(IMAGES, [scene, noise]):
        p = os.path.join(outdir, name)
        Image.fromarray(arr, "RGB").save(p)
        paths.append(p)
    return paths


def load_pixels(paths):
    """[N, H, W, 3] float64 pixels exactly as the PNGs decode."""
    return torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), np.float64))
                        for p in paths])


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------

def build_models():
    """[(name, model in float64 eval mode with F32-representable weights)]."""
    specs = [
        ("resnet18", lambda: torchvision.models.resnet18(weights=None), 18),
        ("resnet50", lambda: torchvision.models.resnet50(weights=None), 50),
        ("resnetv2_50", resnets.resnetv2_50, 250),
    ]
    out = []
    for name, ctor, seed in specs:
        gen = torch.Generator().manual_seed(seed)
        model = ctor().double()
        resnets.randomize(model, gen, logit_std=3.0, input_size=SIZE, calib_images=2)
        # Round to float32 so PyTorch sees exactly the weights the file holds.
        model.load_state_dict({k: v.float().double() if v.is_floating_point() else v
                               for k, v in model.state_dict().items()})
        model.eval()
        out.append((name, model))
    return out


@torch.no_grad()
def reference_logits(model, pixels):
    """float64 logits of [N, H, W, 3] 0..255 pixels, family normalization."""
    mean, std = resnets.family_norm(resnets.family_of(model))
    x = (pixels / 255.0 - torch.tensor(mean, dtype=torch.float64)) \
        / torch.tensor(std, dtype=torch.float64)
    return model(x.permute(0, 3, 1, 2).contiguous())


def generate(outdir):
    """Models, images and reference.json in outdir; returns the manifest."""
    os.makedirs(outdir, exist_ok=True)
    t0 = time.time()
    paths = make_images(outdir)
    pixels = load_pixels(paths)
    manifest = {"images": [os.path.basename(p) for p in paths], "models": {}}
    for name, model in build_models():
        path = os.path.join(outdir, name + ".safetensors")
        st.save(path, resnets.state_dict_as(model, torch.float32), {"format": "pt"})
        logits = reference_logits(model, pixels)
        manifest["models"][name] = {
            "file": os.path.basename(path),
            "family": resnets.family_of(model),
            "logits": logits.tolist(),
        }
        print("generated %-12s %-14s %6.1f MB  (%.0f s)" % (
            name, resnets.family_of(model), os.path.getsize(path) / 1e6, time.time() - t0),
            flush=True)
    with open(os.path.join(outdir, "reference.json"), "w") as f:
        json.dump(manifest, f)
    return manifest


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------

def parse_predictions(stdout, count):
    """The `count` JSON objects with "predictions" that predict printed."""
    found = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "predictions" in obj:
            found.append(obj)
    if len(found) != count:
        raise ValueError("expected %d JSON lines with \"predictions\", got %d" % (count, len(found)))
    return found


def compare_image(ref, preds, labels):
    """Problems (a list of strings) between reference logits `ref` (float64
    [classes]) and the engine's prediction list."""
    problems = []
    classes = ref.shape[0]
    tol = REL_TOL * float(ref.abs().max())
    probs = torch.softmax(ref, 0)
    order = ref.argsort(descending=True).tolist()
    want_k = min(TOP_K, classes)
    if len(preds) != want_k:
        problems.append("%d predictions, expected %d" % (len(preds), want_k))
    for r, p in enumerate(preds[:want_k]):
        try:
            idx, logit, prob = int(p["index"]), float(p["logit"]), float(p["probability"])
            label = p["label"]
        except (KeyError, TypeError, ValueError) as e:
            problems.append("rank %d: malformed prediction %r (%s)" % (r, p, e))
            continue
        if not 0 <= idx < classes:
            problems.append("rank %d: index %d out of range" % (r, idx))
            continue
        if idx != order[r]:
            # A swap is fine only between logits the tolerance cannot separate.
            if abs(float(ref[idx]) - float(ref[order[r]])) > tol:
                problems.append("rank %d: index %d (ref logit %.6f), PyTorch has %d (%.6f)"
                                % (r, idx, float(ref[idx]), order[r], float(ref[order[r]])))
        err = abs(logit - float(ref[idx]))
        if not err <= tol:
            problems.append("rank %d: index %d logit %.6f, PyTorch %.6f (|diff| %.3g > %.3g)"
                            % (r, idx, logit, float(ref[idx]), err, tol))
        perr = abs(prob - float(probs[idx]))
        if not perr <= PROB_TOL:
            problems.append("rank %d: index %d probability %.6g, PyTorch %.6g"
                            % (r, idx, prob, float(probs[idx])))
        if labels is not None and label != labels[idx]:
            problems.append("rank %d: index %d label %r, expected %r" % (r, idx, label, labels[idx]))
    return problems


def run_check(binary, workdir, manifest):
    failures = 0
    images = [os.path.join(workdir, n) for n in manifest["images"]]
    for name, info in manifest["models"].items():
        model_path = os.path.join(workdir, info["file"])
        cmd = [binary, "predict", "--model", model_path] + images
        t0 = time.time()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            print("FAIL %s: cannot run %s: %s" % (name, " ".join(cmd), e))
            failures += 1
            continue
        secs = time.time() - t0
        if proc.returncode != 0:
            print("FAIL %s: exit status %d\n  stderr: %s" % (
                name, proc.returncode, proc.stderr.strip()[-2000:]))
            failures += 1
            continue
        try:
            outputs = parse_predictions(proc.stdout, len(images))
        except ValueError as e:
            print("FAIL %s: %s\n  stdout: %s" % (name, e, proc.stdout[-2000:]))
            failures += 1
            continue
        ref_all = torch.tensor(info["logits"], dtype=torch.float64)
        labels = list(tv_meta._IMAGENET_CATEGORIES) if ref_all.shape[1] == 1000 else None
        for img, ref, out in zip(manifest["images"], ref_all, outputs):
            problems = compare_image(ref, out["predictions"], labels)
            worst = max((abs(float(p.get("logit", math.nan)) - float(ref[int(p["index"])]))
                         for p in out["predictions"]
                         if isinstance(p, dict) and "index" in p and "logit" in p
                         and 0 <= int(p["index"]) < ref.shape[0]), default=math.nan)
            status = "ok  " if not problems else "FAIL"
            print("%s %-12s %-10s top5 %s  max|dlogit| %.3g (tol %.3g)  %.1f s" % (
                status, name, img, [p.get("index") for p in out["predictions"]],
                worst, REL_TOL * float(ref.abs().max()), secs))
            if problems:
                failures += 1
                print("     PyTorch top5 %s logits %s" % (
                    ref.argsort(descending=True)[:TOP_K].tolist(),
                    [round(float(v), 5) for v in ref.sort(descending=True).values[:TOP_K]]))
                for p in problems:
                    print("     - " + p)
    return failures


# ---------------------------------------------------------------------------
# Self-check of the Python side (no binary needed)
# ---------------------------------------------------------------------------

def selfcheck():
    """The modules agree with the independent functional forward, the files
    round-trip, and the PNGs decode to the pixels that were written."""
    ok = True
    with tempfile.TemporaryDirectory(prefix="igserve-selfcheck-") as d:
        paths = make_images(d)
        pixels = load_pixels(paths)
        ok &= pixels.shape == (2, SIZE, SIZE, 3)
        for name, model in build_models():
            logits = reference_logits(model, pixels)
            mean, std = resnets.family_norm(resnets.family_of(model))
            x = ((pixels / 255.0 - torch.tensor(mean, dtype=torch.float64))
                 / torch.tensor(std, dtype=torch.float64)).permute(0, 3, 1, 2)
            path = os.path.join(d, name + ".safetensors")
            st.save(path, resnets.state_dict_as(model, torch.float32))
            loaded, _ = st.load(path)
            sd = {k: v.double() if v.is_floating_point() else v for k, v in loaded.items()}
            with torch.no_grad():
                other = resnets.reference_forward(sd, x)
            diff = float((other - logits).abs().max())
            std_ = float(logits.std())
            good = diff <= 1e-9 * float(logits.abs().max()) and 0.5 < std_ < 20
            ok &= good
            print("%s %-12s functional-vs-module max|diff| %.3g, logit std %.2f, top1 %s" % (
                "ok  " if good else "FAIL", name, diff, std_, logits.argmax(1).tolist()))
    print("selfcheck", "passed" if ok else "FAILED")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only-generate", metavar="DIR",
                    help="write the models, images and reference.json to DIR and stop")
    ap.add_argument("--selfcheck", action="store_true",
                    help="check the Python side only (no igserve binary)")
    ap.add_argument("--keep", metavar="DIR",
                    help="generate into DIR (kept) instead of a temporary directory")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if args.selfcheck:
        return selfcheck()
    if args.only_generate:
        generate(args.only_generate)
        return 0
    binary = os.environ.get("IGSERVE_BINARY")
    if not binary:
        binary = os.path.join(ROOT, "build", "igserve")
        if not os.path.exists(binary) and os.path.exists(os.path.join(ROOT, "build", "src", "igserve")):
            binary = os.path.join(ROOT, "build", "src", "igserve")
    if not os.access(binary, os.X_OK):
        print("FAIL: igserve binary %s not found or not executable (set IGSERVE_BINARY)" % binary)
        return 1
    if args.keep:
        manifest = generate(args.keep)
        failures = run_check(binary, args.keep, manifest)
    else:
        with tempfile.TemporaryDirectory(prefix="igserve-fullsize-") as d:
            manifest = generate(d)
            failures = run_check(binary, d, manifest)
    print("fullsize-pytorch: %s (%d problem%s)" % (
        "PASSED" if failures == 0 else "FAILED", failures, "" if failures == 1 else "s"))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
