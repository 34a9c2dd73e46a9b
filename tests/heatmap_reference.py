#!/usr/bin/python3
"""heatmap_reference.py - the heatmaps of README "Heatmaps you can compare"
recomputed with numpy from the documented formulas (float64 throughout),
for test_heatmap_style.c to compare igserve's PNGs with.

    heatmap_reference.py DIR

DIR holds attr.npy (float32 [S, S, 3]), input.npy (float32 [S, S, 3],
pixels 0..255) and cases.txt, one case a line:

    ID MAP SIGN CLIP SCALE VMIN VMAX COLORMAP ALPHA     ("-": not given)

For each case it writes DIR/expected_ID.bin (uint8 [S, S, C]) and a line
"ID C VMIN VMAX COLORMAP SIGN" of DIR/scales.txt.

With f32.npy, f16.npy and map.npy in DIR (igserve's raw=npy, npy16, map of
attr.npy) it also checks them: npy16 is numpy's own float16 rounding
(nearest even) of npy, and map is npy summed over channels.  Exit status 1
on a mismatch, with the reason on stderr.
"""
import os
import sys

import numpy as np

VIRIDIS = [
    [0.2777273272234177, 0.005407344544966578, 0.3340998053353061],
    [0.1050930431085774, 1.404613529898575, 1.384590162594685],
    [-0.3308618287255563, 0.214847559468213, 0.09509516302823659],
    [-4.634230498983486, -5.799100973351585, -19.33244095627987],
    [6.228269936347081, 14.17993336680509, 56.69055260068105],
    [4.776384997670288, -13.74514537774601, -65.35303263337234],
    [-5.435455855934631, 4.645852612178535, 26.3124352495832],
]
INFERNO = [
    [0.0002189403691192265, 0.001651004631001012, -0.01948089843709184],
    [0.1065134194856116, 0.5639564367884091, 3.932712388889277],
    [11.60249308247187, -3.972853965665698, -15.9423941062914],
    [-41.70399613139459, 17.43639888205313, 44.35414519872813],
    [77.162935699427, -33.40235894210092, -81.80730925738993],
    [-71.31942824499214, 32.62606426397723, 73.20951985803202],
    [25.13112622477341, -12.24266895238567, -23.07032500287172],
]
RDBU = ["67001f", "b2182b", "d6604d", "f4a582", "fddbc7", "f7f7f7",
        "d1e5f0", "92c5de", "4393c3", "2166ac", "053061"]

ELEMENT = {"normalized", "channel_r", "channel_g", "channel_b"}
PIXEL = {"magnitude", "overlay", "masked_image", "alpha_scaling"}


def to_byte(u):
    """u in [0, 1] -> floor(255 u + 0.5); below 0 (and NaN) 0, above 1 255."""
    u = np.nan_to_num(np.asarray(u, dtype=np.float64), nan=0.0)
    return np.floor(255.0 * np.clip(u, 0.0, 1.0) + 0.5).astype(np.uint8)


def colormap(name, t):
    """[..., 3] uint8 colors of t (clamped to [0, 1])."""
    t = np.clip(t, 0.0, 1.0)[..., None]
    if name in ("viridis", "inferno"):
        c = np.array(VIRIDIS if name == "viridis" else INFERNO)
        return to_byte(sum(c[k] * t ** k for k in range(7)))
    if name == "gray":
        return np.repeat(to_byte(t), 3, axis=-1)
    anchors = np.array([[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in RDBU], float)
    x = np.linspace(0, 1, 11)
    out = np.stack([np.interp(t[..., 0], x, anchors[:, ch]) for ch in range(3)], axis=-1)
    return to_byte(out / 255.0)


def g(sign, a):
    return {"all": a, "positive": np.maximum(a, 0), "negative": np.maximum(-a, 0),
            "absolute": np.abs(a)}[sign]


def render(attr, inp, case):
    kind, sign, clip, scale, vmin, vmax, cmap, alpha = case
    a = attr.astype(np.float64)
    family = ("element" if kind in ELEMENT
              else "deviation" if kind.endswith("deviation") else "pixel")
    if sign == "-":
        sign = "absolute" if family == "pixel" else "all"
    signed = sign == "all" and family != "deviation"
    fixed = scale == "fixed" or vmin != "-" or vmax != "-"
    if family == "element":
        v = g(sign, a if kind == "normalized" else a[..., "rgb".index(kind[-1])])
    elif family == "deviation":  # deviation, or channel_X_deviation over one channel
        gv = g(sign, a if kind == "deviation" else a[..., "rgb".index(kind[8])])
        v = np.abs(gv - np.median(gv))
    else:
        v = g(sign, a).sum(axis=2)
    if fixed:
        hi = float(vmax)
        lo = float(vmin) if vmin != "-" else (-hi if signed else 0.0)
    elif family == "element":
        c = float(clip) if clip != "-" else 100.0
        lo, hi = np.percentile(v, 100 - c), np.percentile(v, c)
    elif family == "deviation":
        lo = 0.0
        hi = np.percentile(v, float(clip)) if clip != "-" else v.max() / 2
    else:
        c = float(clip) if clip != "-" else 99.0
        m = np.abs(v) if signed else v
        hi = np.percentile(m, c)
        if not hi > 0:
            hi = m.max()
        lo = -hi if signed else 0.0
    t = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    t = np.clip(t, 0, 1)
    name = cmap
    if kind in ("normalized", "deviation"):
        img, name = to_byte(t), "rgb"
    elif kind in ("magnitude",) or family in ("element", "deviation"):
        if cmap in ("-", "gray"):
            img, name = to_byte(t)[..., None], "gray"
        else:
            img = colormap(cmap, t)
    elif kind == "overlay":
        name = "viridis" if cmap == "-" else cmap
        col = colormap(name, t).astype(np.float64)
        w = float(alpha) if alpha != "-" else 0.2 + 0.6 * t
        w = np.broadcast_to(np.asarray(w, dtype=np.float64), t.shape)[..., None]
        img = to_byte(((1 - w) * inp + w * col) / 255.0)
    elif kind == "masked_image":
        img, name = to_byte(inp * t[..., None] / 255.0), "brightness"
    else:
        img = np.concatenate([to_byte(inp / 255.0), to_byte(t)[..., None]], axis=2)
        name = "opacity"
    return img, lo, hi, name, sign


def check_raw(d):
    f32 = np.load(os.path.join(d, "f32.npy"))
    f16 = np.load(os.path.join(d, "f16.npy"))
    mp = np.load(os.path.join(d, "map.npy"))
    attr = np.load(os.path.join(d, "attr.npy"))
    problems = []
    if f32.dtype != np.dtype("<f4") or not np.array_equal(f32, attr):
        problems.append("npy is not attr.npy")
    if f16.dtype != np.dtype("<f2") or f16.shape != attr.shape:
        problems.append("npy16: dtype %s shape %s" % (f16.dtype, f16.shape))
    elif not np.array_equal(f16.view(np.uint16), attr.astype(np.float16).view(np.uint16)):
        bad = np.flatnonzero(f16.view(np.uint16) != attr.astype(np.float16).view(np.uint16))
        problems.append("npy16 differs from numpy's float16 at %d values, first %r -> %r" %
                        (bad.size, attr.flat[bad[0]], f16.flat[bad[0]]))
    else:
        # within float16 precision: half an ulp, 2^-11 relative (normal range)
        rel = np.abs(f16.astype(np.float64) - attr) / np.maximum(np.abs(attr), 2.0 ** -14)
        if rel.max() > 2.0 ** -11:
            problems.append("npy16 off by %g relative" % rel.max())
    if mp.dtype != np.dtype("<f4") or mp.shape != attr.shape[:2]:
        problems.append("map: dtype %s shape %s" % (mp.dtype, mp.shape))
    else:
        want = attr.astype(np.float64).sum(axis=2)
        err = np.abs(mp - want).max() / max(np.abs(want).max(), 1e-30)
        if err > 1e-6:
            problems.append("map is not the channel sum (relative error %g)" % err)
    for p in problems:
        print("heatmap_reference.py:", p, file=sys.stderr)
    return not problems


def main():
    d = sys.argv[1]
    attr = np.load(os.path.join(d, "attr.npy"))
    inp = np.load(os.path.join(d, "input.npy")).astype(np.float64)
    with open(os.path.join(d, "scales.txt"), "w") as scales:
        for line in open(os.path.join(d, "cases.txt")):
            f = line.split()
            if not f:
                continue
            img, lo, hi, name, sign = render(attr, inp, f[1:])
            img.astype(np.uint8).tofile(os.path.join(d, "expected_%s.bin" % f[0]))
            scales.write("%s %d %.17g %.17g %s %s\n" % (f[0], img.shape[2], lo, hi, name, sign))
    ok = True
    if os.path.exists(os.path.join(d, "f16.npy")):
        ok = check_raw(d)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
