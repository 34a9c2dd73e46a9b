#!/usr/bin/python3
"""check_uncertainty.py - the `uncertainty` heatmap (issue 14), from the CLI, against NumPy.

On the demo shapes model and held-out images, for plain IG with a nested rule:
  - uncertainty.png decodes to NumPy's map, built from two independent runs: the m-point rule
    (fine) and its coarser sub-rule run alone (coarse), u_p = g ||fine_p - coarse_p|| over the
    three channels, g = relative_l2 ||fine|| / ||fine - coarse|| (so ||u|| = relative_l2
    ||fine||), drawn as u / p99(u); `heatmap_scales.uncertainty.vmax` is that p99;
  - the map says where the error is: against a 2049-point trapezoid reference, the pixels in
    the map's top decile hold at least TOP_DECILE_SHARE of the true squared error (a map
    unrelated to the error would hold about 10%), and u correlates with the true per-pixel
    error (Pearson r >= MIN_CORRELATION).  So does the attributions' own magnitude, about as
    well; what the map adds is which large attributions are relatively unreliable: over the
    upper half of pixels by ||attr_p||, log(u_p / ||attr_p||) correlates with the true
    log(e_p / ||attr_p||) at r >= MIN_RELATIVE;
  - an adaptive request draws it too (tolerance=0.02); heatmaps=all leaves it out; methods and
    rules without an estimate are refused naming heatmaps=uncertainty.
Needs numpy and PIL (scripts/install-deps, test set).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from heatmap_reference import to_byte  # noqa: E402  (the byte rule the heatmap checks share)

BIN = os.environ.get("IGSERVE_BINARY", "build/igserve")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "demo", "shapes-resnet.safetensors")
HELDOUT = os.path.join(ROOT, "tests", "fixtures", "shapes", "heldout")
IMAGES = ["circle_01.png", "square_00.png", "cross_02.png"]
# (rule, m, its coarser sub-rule's points)
CASES = [("riemann_trapezoid", 33, 17), ("riemann_trapezoid", 65, 33), ("riemann_middle", 27, 9)]
TOP_DECILE_SHARE = 0.30
MIN_CORRELATION = 0.5
MIN_RELATIVE = 0.25


RUNS = [0]


def attribute(args, tmp, ok=True):
    RUNS[0] += 1
    raw = os.path.join(tmp, "a.npy")
    out = os.path.join(tmp, "out%d" % RUNS[0])  # --out does not overwrite
    p = subprocess.run([BIN, "attribute", "--model", MODEL, "--raw", raw, "--out", out] + args,
                       capture_output=True, text=True)
    if not ok:
        return p
    if p.returncode != 0:
        sys.exit(f"FAIL: igserve attribute {' '.join(args)}: exit {p.returncode}\n{p.stderr}")
    return json.loads(p.stdout), np.load(raw).astype(np.float64), out


def expected_map(fine, coarse, rel):
    d = fine - coarse
    dp = np.sqrt((d * d).sum(-1))
    g = rel * np.linalg.norm(fine) / np.linalg.norm(d)
    return g * dp


def main():
    checks = 0
    shares, corrs, rels = [], [], []
    with tempfile.TemporaryDirectory(prefix="igserve-unc-") as tmp:
        for name in IMAGES:
            img = os.path.join(HELDOUT, name)
            _, ref, _ = attribute(["--method", "riemann_trapezoid", "--steps", "2049",
                                   "--heatmaps", "none", img], tmp)
            for rule, m, c in CASES:
                what = f"{name} {rule} {m}"
                doc, fine, out = attribute(["--method", rule, "--steps", str(m), "--heatmaps",
                                            "uncertainty,magnitude", img], tmp)
                _, coarse, _ = attribute(["--method", rule, "--steps", str(c), "--heatmaps",
                                          "none", img], tmp)
                rel = doc["convergence"]["relative_l2"]
                u = expected_map(fine, coarse, rel)
                vmax = float(np.quantile(u, 0.99))
                sc = doc["heatmap_scales"]["uncertainty"]
                if abs(sc["vmax"] - vmax) > 1e-4 * vmax or sc["vmin"] != 0 or \
                        sc["colormap"] != "gray" or sc["sign"] != "absolute":
                    sys.exit(f"FAIL: {what}: heatmap_scales.uncertainty {sc}, expected vmax "
                             f"{vmax:.6g}, vmin 0, gray, absolute")
                got = np.asarray(Image.open(os.path.join(out, "uncertainty.png")))
                want = to_byte(u / vmax)
                diff = np.abs(got.astype(int) - want.astype(int))
                # fine and coarse come from separate runs here: float rounding may move a
                # byte by one, rarely
                if got.shape != want.shape or diff.max() > 1 or np.mean(diff > 0) > 0.005:
                    sys.exit(f"FAIL: {what}: uncertainty.png differs from NumPy's map: "
                             f"{np.count_nonzero(diff)} bytes, at most {diff.max()}")
                checks += 2
                e = np.sqrt(((fine - ref) ** 2).sum(-1)).ravel()
                uu = u.ravel()
                top = uu >= np.quantile(uu, 0.9)
                share = float((e[top] ** 2).sum() / (e ** 2).sum())
                r = float(np.corrcoef(uu, e)[0, 1])
                # the trivial predictor: errors are where the attributions are large; what
                # the map adds is which of the large ones are unreliable, relatively
                a = np.sqrt((fine * fine).sum(-1)).ravel()
                r_attr = float(np.corrcoef(a, e)[0, 1])
                big = a >= np.quantile(a, 0.5)
                r_rel = float(np.corrcoef(np.log(uu[big] / a[big] + 1e-12),
                                          np.log(e[big] / a[big] + 1e-12))[0, 1])
                rels.append(r_rel)
                shares.append(share)
                corrs.append(r)
                print(f"{what}: estimate {rel:.3g}, true "
                      f"{np.linalg.norm(fine - ref) / np.linalg.norm(ref):.3g}, top decile holds "
                      f"{share:.0%} of the squared error, r = {r:.2f} (|attr|'s: {r_attr:.2f}), "
                      f"relative r = {r_rel:.2f}")
                if share < TOP_DECILE_SHARE or r < MIN_CORRELATION or r_rel < MIN_RELATIVE:
                    sys.exit(f"FAIL: {what}: the map does not show where the error is "
                             f"(top decile {share:.0%} < {TOP_DECILE_SHARE:.0%}, r {r:.2f} "
                             f"< {MIN_CORRELATION} or relative r {r_rel:.2f} < {MIN_RELATIVE})")
                checks += 1

        img = os.path.join(HELDOUT, IMAGES[1])
        doc, fine, out = attribute(["--tolerance", "0.02", "--heatmaps", "uncertainty", img], tmp)
        sc = doc["heatmap_scales"].get("uncertainty")
        if not sc or not sc["vmax"] > 0 or not os.path.isfile(os.path.join(out, "uncertainty.png")):
            sys.exit(f"FAIL: adaptive: no uncertainty map ({doc['heatmap_scales']})")
        checks += 1
        doc, _, _ = attribute(["--heatmaps", "all", "--method", "riemann_trapezoid", "--steps",
                               "33", img], tmp)
        if "uncertainty" in doc["heatmap_scales"] or "uncertainty" in doc["heatmaps"]:
            sys.exit("FAIL: heatmaps=all drew the uncertainty map")
        checks += 1
        for args in (["--method", "saliency"], ["--method", "gausslegendre", "--steps", "16"],
                     ["--method", "riemann_trapezoid", "--steps", "32"],
                     ["--smoothgrad", "smoothgrad", "--smoothgrad-samples", "2", "--steps", "9",
                      "--method", "riemann_trapezoid"],
                     ["--baseline", "black+white", "--steps", "33",
                      "--method", "riemann_trapezoid"]):
            p = attribute(args + ["--heatmaps", "uncertainty", img], tmp, ok=False)
            if p.returncode == 0 or "heatmaps=uncertainty" not in p.stderr:
                sys.exit(f"FAIL: {' '.join(args)} with heatmaps=uncertainty: exit "
                         f"{p.returncode}, {p.stderr.strip()[-200:]}")
            checks += 1
    print(f"check_uncertainty: {checks} checks passed; top decile holds "
          f"{min(shares):.0%}-{max(shares):.0%} of the squared error, r {min(corrs):.2f}-"
          f"{max(corrs):.2f}, relative r {min(rels):.2f}-{max(rels):.2f}")


if __name__ == "__main__":
    main()
