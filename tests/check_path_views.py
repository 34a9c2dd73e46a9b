#!/usr/bin/python3
"""check_path_views.py - the notebook's views from the CLI, against NumPy.

`igserve attribute --path-views all --out DIR --raw FILE` on the narrow
64x64 fixture model, then:
  - DIR/path_steps.npy is float32 [points, 64, 64, 3], little-endian, C
    order, and sum_k weight_k steps_k equals the attributions (--raw) to
    float tolerance (the path rows give the weights);
  - every DIR/path_NNNN.step_normalized.png / .step_deviation.png decodes to
    NumPy's (s - min) / (max - min) and |s - median| * 2 / max|s - median|
    of that point's steps; the channel_*_deviation heatmaps to the same per
    channel of the attributions;
  - DIR/path_gradient_maps.npy [points, 64, 64] is what path_NNNN.png draws
    (one scale: the path's largest value);
  - on a 64x64 upload (no resize, so x is known) the steps and gradient
    maps match float64 PyTorch's (x - x') * dF_t/dx and sum_c |dF_t/dx| at
    every point (tests/fixtures/resnets.py's reference_forward);
  - --path-maps alone changes nothing that existed (no step fields, no
    path_steps.npy); a manifest line with path_views gets ID.path_steps.npy;
    the cap and a bad view are refused, naming path_views.
Needs numpy, PIL and torch (scripts/install-deps, test set).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures"))
import resnets  # noqa: E402
import st  # noqa: E402

BIN = os.environ.get("IGSERVE_BINARY", "build/igserve")
FIXTURES = os.environ.get("IGSERVE_FIXTURES", "tests/fixtures")
MODEL = os.path.join(FIXTURES, "engine", "tv_basic.safetensors")


def run(args, ok=True):
    p = subprocess.run([BIN, "attribute", "--model", MODEL, "--input-size", "64",
                        "--threads", "1"] + args, capture_output=True, text=True)
    if ok and p.returncode != 0:
        sys.exit(f"FAIL: igserve attribute {' '.join(args)}: exit {p.returncode}\n{p.stderr}")
    return p


def to_byte(v):
    return np.floor(255.0 * np.clip(v, 0.0, 1.0) + 0.5).astype(np.uint8)


def minmax(s):
    s = s.astype(np.float64)
    lo, hi = s.min(), s.max()
    return to_byte((s - lo) / (hi - lo)) if hi > lo else np.zeros(s.shape, np.uint8)


def deviation(s):
    s = s.astype(np.float64)
    d = np.abs(s - np.median(s))
    return to_byte(d * 2.0 / d.max()) if d.max() > 0 else np.zeros(s.shape, np.uint8)


def load_png(path, mode):
    im = Image.open(path)
    if im.mode != mode:
        sys.exit(f"FAIL: {path} is {im.mode}, expected {mode}")
    return np.asarray(im)


def same(got, want, what):
    if got.shape != want.shape:
        sys.exit(f"FAIL: {what}: shape {got.shape}, expected {want.shape}")
    diff = np.abs(got.astype(int) - want.astype(int))
    if diff.max() > 0:
        i = np.unravel_index(diff.argmax(), diff.shape)
        sys.exit(f"FAIL: {what}: {np.count_nonzero(diff)} values differ, e.g. at {i}: "
                 f"{got[i]} vs {want[i]}")


def load_npy(path, shape):
    with open(path, "rb") as f:
        head = f.read(128)
    if not head.startswith(b"\x93NUMPY\x01\x00") or b"'descr': '<f4'" not in head \
            or b"'fortran_order': False" not in head:
        sys.exit(f"FAIL: {path}: not a little-endian C-order float32 .npy: {head!r}")
    a = np.load(path)
    if a.dtype != np.dtype("<f4") or a.shape != shape:
        sys.exit(f"FAIL: {path}: {a.dtype} {a.shape}, expected float32 {shape}")
    return a


def reference_path(pixels, alphas, target):
    """float64 PyTorch: per point, (x - x') * g and sum_c |g|, g = dF_t/dx at
    x' + a (x - x'), gray baseline, torchvision normalization."""
    tensors, _ = st.load(MODEL)
    sd = {k: v.double() if v.is_floating_point() else v for k, v in tensors.items()}
    mean = torch.tensor(resnets.TORCHVISION_MEAN, dtype=torch.float64)
    std = torch.tensor(resnets.TORCHVISION_STD, dtype=torch.float64)
    x = torch.tensor(pixels, dtype=torch.float64)
    base = torch.full_like(x, 127.5)
    a = torch.tensor(alphas, dtype=torch.float64)[:, None, None, None]
    pts = (base + a * (x - base)).requires_grad_(True)
    logits = resnets.reference_forward(sd, ((pts / 255.0 - mean) / std).permute(0, 3, 1, 2))
    (g,) = torch.autograd.grad(logits[:, target].sum(), pts)
    return ((x - base) * g).numpy(), g.abs().sum(-1).numpy()


def rel_l2(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b))


def main():
    tmp = tempfile.mkdtemp(prefix="igserve-views-")
    img = os.path.join(tmp, "in.png")
    rng = np.random.default_rng(15)
    Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(img)
    checks = 0

    # ---- all views, riemann_trapezoid 9 (two refinement rounds merged) ----
    out = os.path.join(tmp, "out")
    raw = os.path.join(tmp, "attr.npy")
    p = run(["--steps", "9", "--method", "riemann_trapezoid", "--path-views", "all",
             "--heatmaps", "channel_r_deviation,channel_g_deviation,channel_b_deviation",
             "--raw", raw, "--out", out, img])
    doc = json.loads(p.stdout)
    rows = doc["path"]
    points = len(rows)
    assert points == 9, points
    attr = load_npy(raw, (64, 64, 3))
    steps = load_npy(os.path.join(out, "path_steps.npy"), (points, 64, 64, 3))
    weights = np.array([r["weight"] for r in rows])
    summed = np.tensordot(weights, steps.astype(np.float64), axes=1)
    err = np.abs(summed - attr).max() / np.abs(attr).max()
    if not err < 1e-5:
        sys.exit(f"FAIL: sum_k w_k steps differs from the attributions by {err:.3g} "
                 "(relative to the largest)")
    checks += 1
    for k, row in enumerate(rows):
        for view, fn in (("step_normalized", minmax), ("step_deviation", deviation)):
            path = row[view]
            if path != os.path.join(out, f"path_{k:04d}.{view}.png"):
                sys.exit(f"FAIL: row {k} {view} is {path!r}")
            same(load_png(path, "RGB"), fn(steps[k]), f"{path}")
            checks += 1
    for c, name in enumerate(("channel_r_deviation", "channel_g_deviation",
                              "channel_b_deviation")):
        path = doc["heatmaps"][name]
        same(load_png(path, "L"), deviation(attr[..., c]), path)
        checks += 1
    if sorted(doc["heatmaps"]) != ["channel_b_deviation", "channel_g_deviation",
                                   "channel_r_deviation"]:
        sys.exit(f"FAIL: heatmaps {sorted(doc['heatmaps'])}")
    grad = load_npy(os.path.join(out, "path_gradient_maps.npy"), (points, 64, 64))
    scale = float(grad.max())
    for k, row in enumerate(rows):
        want = to_byte(grad[k].astype(np.float64) / scale)
        same(load_png(row["map"], "L"), want, row["map"])
        checks += 1
    # the steps move along the path: not one map repeated
    if np.allclose(steps[0], steps[-1]):
        sys.exit("FAIL: the first and last steps are the same")

    # ---- against float64 PyTorch on a 64x64 upload: x is the upload ----
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    img64 = os.path.join(tmp, "in64.png")
    Image.fromarray(pixels).save(img64)
    out4 = os.path.join(tmp, "out4")
    # fp32: split bfloat16 (auto on AMX CPUs) is held to its own limits elsewhere
    doc4 = json.loads(run(["--precision", "fp32", "--steps", "6",
                           "--path-views", "gradient,step_deviation",
                           "--heatmaps", "none", "--out", out4, img64]).stdout)
    alphas = [r["alpha"] for r in doc4["path"]]
    ref_steps, ref_grad = reference_path(pixels.astype(np.float64), alphas,
                                         doc4["target"]["index"])
    steps4 = load_npy(os.path.join(out4, "path_steps.npy"), (6, 64, 64, 3))
    grad4 = load_npy(os.path.join(out4, "path_gradient_maps.npy"), (6, 64, 64))
    worst = 0.0
    for k in range(6):
        e_s, e_g = rel_l2(steps4[k], ref_steps[k]), rel_l2(grad4[k], ref_grad[k])
        worst = max(worst, e_s, e_g)
        if not (e_s < 1e-4 and e_g < 1e-4):
            sys.exit(f"FAIL: point {k} (alpha {alphas[k]:.4f}) vs PyTorch float64: steps "
                     f"{e_s:.3g}, gradient maps {e_g:.3g} relative L2")
        checks += 1

    # ---- --path-maps alone: the answer as before ----
    out2 = os.path.join(tmp, "out2")
    doc2 = json.loads(run(["--steps", "4", "--path-maps", "--heatmaps", "none", "--out", out2,
                           img]).stdout)
    for row in doc2["path"]:
        if set(row) - {"alpha", "weight", "logit", "gradient_sum", "path_derivative", "map"}:
            sys.exit(f"FAIL: --path-maps alone gave fields {sorted(row)}")
    if os.path.exists(os.path.join(out2, "path_steps.npy")):
        sys.exit("FAIL: --path-maps alone wrote path_steps.npy")
    load_npy(os.path.join(out2, "path_gradient_maps.npy"), (4, 64, 64))
    checks += 1
    # --out never overwrites: a second run into the same directory is refused
    # before the work, naming the file
    p = run(["--steps", "4", "--path-maps", "--heatmaps", "none", "--out", out2, img], ok=False)
    if p.returncode == 0 or "path_gradient_maps.npy: already exists" not in p.stderr:
        sys.exit(f"FAIL: rerun into {out2}: exit {p.returncode}, {p.stderr}")
    checks += 1

    # ---- refused: over the cap, an unknown view ----
    p = run(["--steps", "129", "--path-views", "step_deviation", img], ok=False)
    if p.returncode == 0 or "path_views" not in p.stderr or "128" not in p.stderr:
        sys.exit(f"FAIL: 129 points with step views: exit {p.returncode}, {p.stderr}")
    p = run(["--path-views", "gradient,steps", img], ok=False)
    if p.returncode == 0 or "path_views" not in p.stderr or "'steps'" not in p.stderr:
        sys.exit(f"FAIL: a bad view: exit {p.returncode}, {p.stderr}")
    checks += 2

    # ---- the manifest: ID.path_steps.npy beside ID.json ----
    man = os.path.join(tmp, "m.jsonl")
    with open(man, "w") as f:
        f.write(json.dumps({"id": "one", "image": img, "steps": 3,
                            "path_views": ["step_normalized"], "raw": "npy"}) + "\n")
    out3 = os.path.join(tmp, "out3")
    run(["--heatmaps", "none", "--manifest", man, "--out", out3])
    line = json.load(open(os.path.join(out3, "one.json")))
    st = load_npy(os.path.join(out3, "one.path_steps.npy"), (3, 64, 64, 3))
    a = load_npy(os.path.join(out3, "one.npy"), (64, 64, 3))
    w = np.array([r["weight"] for r in line["path"]])
    err = np.abs(np.tensordot(w, st.astype(np.float64), axes=1) - a).max() / np.abs(a).max()
    if not err < 1e-5:
        sys.exit(f"FAIL: manifest: weighted steps off by {err:.3g}")
    for k, row in enumerate(line["path"]):
        if row.get("step_normalized") != f"one.path_{k:04d}.step_normalized.png" or "map" in row:
            sys.exit(f"FAIL: manifest row {k}: {row}")
        same(load_png(os.path.join(out3, row["step_normalized"]), "RGB"), minmax(st[k]),
             row["step_normalized"])
    if os.path.exists(os.path.join(out3, "one.path_gradient_maps.npy")):
        sys.exit("FAIL: manifest wrote gradient maps nobody asked for")
    checks += 1
    print(f"check_path_views: {checks} checks passed ({points} points; steps and gradient "
          f"maps within {worst:.2g} relative L2 of float64 PyTorch)")


if __name__ == "__main__":
    main()
