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
  - --path-maps alone changes nothing that existed (no step fields, no
    path_steps.npy); a manifest line with path_views gets ID.path_steps.npy;
    the cap and a bad view are refused, naming path_views.
Needs numpy and PIL (scripts/install-deps, test set).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

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
    print(f"check_path_views: {checks} checks passed ({points} points)")


if __name__ == "__main__":
    main()
