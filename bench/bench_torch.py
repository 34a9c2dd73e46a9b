#!/usr/bin/python3
"""bench_torch.py - the PyTorch side of bench/run (run it with /usr/bin/python3: torch lives there).

Subcommands (each prints one JSON object on stdout, progress on stderr):

  generate OUT.safetensors [--arch resnet50] [--seed N]
      a torchvision ResNet with random weights and non-trivial BatchNorm statistics
      (tests/fixtures/resnets.py randomize), saved as F32 safetensors as real checkpoints name it.
  export MODEL.safetensors OUT.onnx [--input-size S]
      the same weights through torch.onnx.export (opset 13), input "input" [1,3,S,S] in pixel
      space 0..255 with the family's normalization inside the graph, as igserve's engine has it.
  image OUT.png [--size S]
      a deterministic S x S RGB PNG (smooth gradients plus noise) for the HTTP requests.
  run MODEL.safetensors [--threads T] [--input-size S] [--forward-reps N] [--ig-points M]
      [--ig-chunks 1,4,8,16] [--ig-reps R]
      forward latency at batch 1 under torch.no_grad (median of N after one warm-up), and
      Integrated Gradients with M path points: per chunk size c, M/c passes of forward plus
      autograd to the input (parameters frozen) on c interpolated images; the time of each
      chunk size (one run each, then R-1 more runs of the fastest; medians) and the best one.
  rss MODEL.safetensors --chunk C [--threads T] [--input-size S] [--ig-points M]
      peak resident memory of this process during one IG run at chunk size C: the model is loaded
      and warmed up, the high-water mark is reset (/proc/self/clear_refs "5"), IG runs, and VmHWM
      is read; ru_maxrss (whole life, loading included) is reported too.
  tol MODEL.safetensors --image PNG [--target K] [--threads T] [--input-size S] [--tolerance 0.01]
      [--reference 1024] [--chunk C] [--reps R] [--igserve NAME=FILE.npy]...
      time to a tolerance: a reference integral (trapezoid over 1024 intervals, float32
      gradients summed in float64; its nodes hold the midpoint rules of every power of two up
      to 512), the fewest points m the midpoint rule (a_k = (k+0.5)/m, w = 1/m) needs to be
      within the tolerance of it (relative L2 of the attributions), midpoint IG at that m timed
      R times, and the true error of each igserve .npy given.

The model is built from the names and shapes in the file (either naming of
tests/fixtures/resnets.py), so the narrow test fixtures work as well as a full resnet50.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))

import resnets  # noqa: E402
import st  # noqa: E402


def log(msg):
    print("bench_torch: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Model from a safetensors file
# ---------------------------------------------------------------------------

def _count(sd, fmt):
    n = 0
    while any(k.startswith(fmt % n + ".") for k in sd):
        n += 1
    return n


def build_model(sd):
    """An nn.Module (eval, float32) whose state_dict has exactly sd's names and shapes."""
    if "conv1.weight" in sd and "fc.weight" in sd:
        stages = 0  # layer1.. (there is no layer0)
        while any(k.startswith("layer%d." % (stages + 1)) for k in sd):
            stages += 1
        layers = [_count(sd, "layer%d.%%d" % (i + 1)) for i in range(stages)]
        block = "bottleneck" if "layer1.0.conv3.weight" in sd else "basic"
        widths = [int(sd["layer%d.0.conv1.weight" % (i + 1)].shape[0]) for i in range(stages)]
        stem = int(sd["conv1.weight"].shape[0])
        classes = int(sd["fc.weight"].shape[0])
        model = resnets.TvResNet(block, layers, widths, stem, classes)
    elif "stem.conv.weight" in sd and "head.fc.weight" in sd:
        stages = _count(sd, "stages.%d")
        layers = [_count(sd, "stages.%d.blocks.%%d" % i) for i in range(stages)]
        block = "bottleneck" if "stages.0.blocks.0.conv3.weight" in sd else "basic"
        last = "conv3" if block == "bottleneck" else "conv2"
        widths = [int(sd["stages.%d.blocks.0.%s.weight" % (i, last)].shape[0])
                  for i in range(stages)]
        stem = int(sd["stem.conv.weight"].shape[0])
        classes = int(sd["head.fc.weight"].shape[0])
        model = resnets.TimmResNetV2(block, layers, widths, stem, classes)
    else:
        raise SystemExit("bench_torch: neither torchvision nor timm ResNetV2 names in the file")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    return model.float().eval()


class PixelModel(nn.Module):
    """NCHW pixels 0..255 -> logits, normalization inside (as igserve's first layer)."""

    def __init__(self, net, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("scale", (1.0 / (255.0 * torch.tensor(std))).view(1, 3, 1, 1))
        self.register_buffer("shift", (torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1))

    def forward(self, x):
        return self.net(x * self.scale - self.shift)


def load(path):
    sd, _ = st.load(path)
    net = build_model(sd)
    del sd
    mean, std = resnets.family_norm(resnets.family_of(net))
    model = PixelModel(net, mean, std).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, resnets.family_of(net)


def test_pixels(size, seed=1):
    """[1,3,S,S] float32 pixels in 0..255, deterministic."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, 3, size, size), generator=gen).float()


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------

def forward_times(model, x, reps):
    with torch.no_grad():
        model(x)  # warm up
        out = []
        for _ in range(reps):
            t0 = time.perf_counter()
            model(x)
            out.append((time.perf_counter() - t0) * 1e3)
    return out


def rule_points(rule, points):
    """(alphas, weights) of a quadrature rule on [0, 1]."""
    if rule == "gausslegendre":
        z, w = np.polynomial.legendre.leggauss(points)
        return (1 + z) / 2, w / 2
    if rule == "riemann_middle":
        return (np.arange(points) + 0.5) / points, np.full(points, 1.0 / points)
    raise ValueError("unknown rule " + rule)


def integrated_gradients(model, x, target, points, chunk, rule="gausslegendre"):
    """IG of logit `target` against a gray baseline: `points` path points of `rule`, `chunk` at
    a time, each a forward plus autograd to the input.  Returns the attributions."""
    a, w = rule_points(rule, points)
    alphas = torch.tensor(a, dtype=torch.float32)
    weights = torch.tensor(w, dtype=torch.float32)
    baseline = torch.full_like(x, 127.5)
    diff = x - baseline
    total = torch.zeros_like(x)
    for start in range(0, points, chunk):
        a = alphas[start:start + chunk].view(-1, 1, 1, 1)
        xs = (baseline + a * diff).requires_grad_(True)
        logits = model(xs)
        (grad,) = torch.autograd.grad(logits[:, target].sum(), xs)
        total += (grad * weights[start:start + chunk].view(-1, 1, 1, 1)).sum(0, keepdim=True)
    return diff * total


# ---------------------------------------------------------------------------
# Time to a tolerance: the midpoint rule's fewest points against a fine reference
# ---------------------------------------------------------------------------

def load_png(path, size):
    """[1,3,S,S] float32 pixels 0..255 of an S x S RGB image (igserve copies such an image
    pixel for pixel, so both sides integrate from the same input)."""
    from PIL import Image
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    if img.shape[:2] != (size, size):
        raise SystemExit("bench_torch: %s is %dx%d, not the input size %d (igserve would "
                         "resize it)" % (path, img.shape[1], img.shape[0], size))
    return torch.from_numpy(img.transpose(2, 0, 1).copy()).unsqueeze(0)


class PathGradients:
    """Gradients of logit `target` at baseline + alpha (x - baseline), `chunk` points a pass,
    float32 as the timed runs compute them; sums in float64.  Counts the points evaluated."""

    def __init__(self, model, x, target, chunk):
        self.model, self.x, self.target, self.chunk = model, x, target, chunk
        self.baseline = torch.full_like(x, 127.5)
        self.diff = x - self.baseline
        self.evaluated = 0

    def chunks(self, alphas):
        """Yields (first index, float64 gradients [c,3,H,W], float64 logits [c])."""
        for start in range(0, len(alphas), self.chunk):
            a = torch.tensor(alphas[start:start + self.chunk], dtype=torch.float32)
            xs = (self.baseline + a.view(-1, 1, 1, 1) * self.diff).requires_grad_(True)
            logits = self.model(xs)[:, self.target]
            (g,) = torch.autograd.grad(logits.sum(), xs)
            self.evaluated += len(a)
            yield start, g.double(), logits.detach().double()

    def sum(self, alphas):
        total = torch.zeros_like(self.x, dtype=torch.float64)
        for _, g, _ in self.chunks(alphas):
            total += g.sum(0, keepdim=True)
        return total


def rel_l2(a, ref):
    return float(torch.linalg.norm((a - ref).flatten()) / torch.linalg.norm(ref.flatten()))


def reference_pass(pg, intervals):
    """The trapezoid rule over `intervals` (a power of two) equal intervals, and on the way the
    midpoint rules of every power of two m <= intervals / 2 for free: the interior node
    k / intervals with k = 2^v * odd is a midpoint of the rule with m = intervals / 2^(v+1),
    and these rules partition the interior nodes.  Returns (reference attributions,
    {m: unweighted gradient sum of midpoint m}, facts about the reference)."""
    ks = np.arange(intervals + 1)
    alphas = ks / intervals
    ref = torch.zeros_like(pg.x, dtype=torch.float64)
    coarse = torch.zeros_like(ref)  # the trapezoid over intervals / 2: the reference's estimate
    mids = {}
    ends = {}
    for start, g, logits in pg.chunks(alphas):
        for i in range(g.shape[0]):
            k = int(ks[start + i])
            end = k in (0, intervals)
            ref += g[i:i + 1] * ((0.5 if end else 1.0) / intervals)
            if k % 2 == 0:
                coarse += g[i:i + 1] * ((0.5 if end else 1.0) / (intervals / 2))
            if end:
                ends[k] = float(logits[i])
                continue
            v = (k & -k).bit_length() - 1
            m = intervals >> (v + 1)
            mids[m] = mids.get(m, 0) + g[i:i + 1]
    ref_attr = pg.diff.double() * ref
    f_delta = ends[intervals] - ends[0]
    facts = {"rule": "riemann_trapezoid", "points": intervals + 1,
             "arithmetic": "float32 forward and gradients (as the timed runs), sums in float64",
             "own_estimate": rel_l2(ref_attr, pg.diff.double() * coarse),
             "completeness_error": abs(float(ref_attr.sum()) - f_delta) / max(1e-12, abs(f_delta)),
             "f_input": ends[intervals], "f_baseline": ends[0]}
    return ref_attr, mids, facts


def midpoint_sum(pg, m, sums):
    """Unweighted gradient sum of the m-point midpoint rule, reusing the largest known rule q
    with m / q odd (its nodes (2i+1)/(2q) are nodes of m).  Stores it in sums."""
    if m in sums:
        return sums[m]
    reuse = max((q for q in sums if m % q == 0 and (m // q) % 2 == 1), default=None)
    j = np.arange(m)
    if reuse is not None:
        d = m // reuse
        j = j[(2 * j + 1) % d != 0]  # (2j+1)/(2m) = (2i+1)/(2q) exactly when d divides 2j+1
    total = pg.sum((j + 0.5) / m)
    if reuse is not None:
        total = total + sums[reuse]
    sums[m] = total
    return total


def fewest_midpoint(pg, ref, sums, tol, largest):
    """Fewest m <= largest whose midpoint rule is within tol of ref (relative L2), assuming the
    error falls with m: bracketed by the powers of two the reference pass gave, then narrowed by
    regula falsi on log(error / tol) against log(m) with the Illinois rule (the end kept twice in
    a row has its value halved), bisecting when the bracket has not halved in two steps, until
    the bracket's ends are neighbours.  The error jitters by a few percent around C/m, so "fewest"
    is the crossing this search finds.  Returns (m or None, {m: error})."""
    errors = {}

    def err(m):
        if m not in errors:
            errors[m] = rel_l2(pg.diff.double() * midpoint_sum(pg, m, sums) / m, ref)
            log("midpoint %d: relative L2 %.3e" % (m, errors[m]))
        return errors[m]
    p = 1
    while p <= largest and err(p) > tol:
        p *= 2
    if p > largest:
        return None, errors
    if p == 1:
        return 1, errors
    lo, hi = p // 2, p
    g_lo, g_hi = np.log(errors[lo] / tol), np.log(errors[hi] / tol)  # > 0, <= 0
    kept, widths = 0, [hi - lo]
    while hi - lo > 1:
        stalled = len(widths) >= 3 and widths[-1] * 2 > widths[-3]
        if stalled or not g_lo > 0 >= g_hi:
            m = (lo + hi) // 2
        else:
            x0, x1 = np.log(lo), np.log(hi)
            m = int(np.ceil(np.exp(x0 + (x1 - x0) * g_lo / (g_lo - g_hi)) - 1e-9))
        m = min(max(m, lo + 1), hi - 1)
        g = np.log(max(err(m), 1e-300) / tol)
        if g <= 0:
            hi, g_hi = m, g
            if kept == -1:
                g_lo /= 2
            kept = -1  # lo kept
        else:
            lo, g_lo = m, g
            if kept == 1:
                g_hi /= 2
            kept = 1  # hi kept
        widths.append(hi - lo)
    return hi, errors


def load_attributions(path, like):
    """igserve's .npy (float32 [H,W,3]) as float64 [1,3,H,W]."""
    a = np.load(path)
    if a.shape != (like.shape[2], like.shape[3], 3):
        raise ValueError("%s has shape %s, expected [%d,%d,3]" % (path, a.shape, like.shape[2],
                                                                  like.shape[3]))
    return torch.from_numpy(a.astype(np.float64).transpose(2, 0, 1).copy()).unsqueeze(0)


def vm_hwm_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------

def cmd_generate(args):
    import torchvision
    ctor = getattr(torchvision.models, args.arch)
    t0 = time.time()
    gen = torch.Generator().manual_seed(args.seed)
    model = ctor(weights=None).double()
    resnets.randomize(model, gen, logit_std=3.0, input_size=224, calib_images=2)
    tmp = args.out + ".tmp"
    st.save(tmp, resnets.state_dict_as(model, torch.float32), {"format": "pt"})
    os.replace(tmp, args.out)
    return {"file": args.out, "arch": args.arch, "bytes": os.path.getsize(args.out),
            "seconds": time.time() - t0}


def cmd_export(args):
    model, family = load(args.model)
    x = test_pixels(args.input_size)
    tmp = args.out + ".tmp"
    with torch.no_grad():
        torch.onnx.export(model, x, tmp, opset_version=13, input_names=["input"],
                          output_names=["logits"], do_constant_folding=True)
    os.replace(tmp, args.out)
    with torch.no_grad():
        logits = model(x)[0]
    return {"file": args.out, "family": family, "input_size": args.input_size,
            "torch_top1": int(logits.argmax())}


def cmd_image(args):
    from PIL import Image
    n = args.size
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    rng = np.random.RandomState(7)
    img = np.stack([255 * x / max(1, n - 1), 255 * y / max(1, n - 1),
                    127 + 100 * np.sin((x + y) / 9.0)], axis=-1)
    img += rng.uniform(-20, 20, size=img.shape)
    Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8), "RGB").save(args.out)
    return {"file": args.out, "size": n}


def cmd_run(args):
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, family = load(args.model)
    load_ms = (time.perf_counter() - t0) * 1e3
    x = test_pixels(args.input_size)
    fwd = forward_times(model, x, args.forward_reps)
    with torch.no_grad():
        target = int(model(x)[0].argmax())
    # Each chunk size once (after a one-pass warm-up of its shape), then more runs of the
    # fastest, so the reported figure is a median without timing every size `reps` times.
    chunks = {}
    for c in args.ig_chunks:
        integrated_gradients(model, x, target, min(c, args.ig_points), c)
        t = time.perf_counter()
        attr = integrated_gradients(model, x, target, args.ig_points, c)
        chunks[str(c)] = {"ms": [(time.perf_counter() - t) * 1e3]}
        log("IG-%d chunk %d: %.0f ms" % (args.ig_points, c, chunks[str(c)]["ms"][0]))
    first = min(chunks, key=lambda k: chunks[k]["ms"][0])
    for _ in range(args.ig_reps - 1):
        t = time.perf_counter()
        attr = integrated_gradients(model, x, target, args.ig_points, int(first))
        chunks[first]["ms"].append((time.perf_counter() - t) * 1e3)
        log("IG-%d chunk %s again: %.0f ms" % (args.ig_points, first, chunks[first]["ms"][-1]))
    for v in chunks.values():
        v["ms_median"] = statistics.median(v["ms"])
    best = min(chunks, key=lambda k: chunks[k]["ms_median"])
    # Completeness of the last run, so a broken gradient would show.
    with torch.no_grad():
        f_in = float(model(x)[0, target])
        f_base = float(model(torch.full_like(x, 127.5))[0, target])
    rel = abs(float(attr.sum()) - (f_in - f_base)) / max(1e-12, abs(f_in - f_base))
    return {"runtime": "pytorch", "version": torch.__version__, "family": family,
            "threads": torch.get_num_threads(), "input_size": args.input_size,
            "load_ms": load_ms, "forward_reps": args.forward_reps,
            "forward_batch1_ms_median": statistics.median(fwd), "forward_ms": fwd,
            "ig_points": args.ig_points, "ig_chunks": chunks, "ig_best_chunk": int(best),
            "ig_ms_best": chunks[best]["ms_median"], "ig_relative_error": rel,
            "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def cmd_rss(args):
    torch.set_num_threads(args.threads)
    model, _ = load(args.model)
    x = test_pixels(args.input_size)
    with torch.no_grad():
        target = int(model(x)[0].argmax())
    integrated_gradients(model, x, target, min(args.chunk, args.ig_points), args.chunk)
    before = vm_hwm_kib()
    was_reset = reset_hwm()
    t = time.perf_counter()
    integrated_gradients(model, x, target, args.ig_points, args.chunk)
    ms = (time.perf_counter() - t) * 1e3
    return {"chunk": args.chunk, "ig_points": args.ig_points, "ig_ms": ms,
            "hwm_reset": was_reset, "vm_hwm_kib_before_ig": before,
            "vm_hwm_kib": vm_hwm_kib(),
            "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def cmd_tol(args):
    torch.set_num_threads(args.threads)
    model, family = load(args.model)
    x = load_png(args.image, args.input_size)
    with torch.no_grad():
        top1 = int(model(x)[0].argmax())
    target = top1 if args.target is None else args.target
    pg = PathGradients(model, x, target, args.chunk)
    out = {"runtime": "pytorch", "version": torch.__version__, "family": family,
           "threads": torch.get_num_threads(), "input_size": args.input_size,
           "image": args.image, "target": target, "torch_top1": top1, "tolerance": args.tolerance,
           "chunk": args.chunk, "rule": "riemann_middle"}
    t = time.perf_counter()
    ref, sums, out["reference"] = reference_pass(pg, args.reference)
    out["reference"]["seconds"] = time.perf_counter() - t
    log("reference: %d-point trapezoid in %.1f s, its own estimate %.2e"
        % (args.reference + 1, out["reference"]["seconds"], out["reference"]["own_estimate"]))
    t, before = time.perf_counter(), pg.evaluated
    m, errors = fewest_midpoint(pg, ref, sums, args.tolerance, args.reference // 2)
    out["search"] = {"seconds": time.perf_counter() - t, "points_evaluated": pg.evaluated - before,
                     "errors": {str(k): v for k, v in sorted(errors.items())}}
    out["points_evaluated"] = pg.evaluated
    igserve = {}
    for name, path in (kv.split("=", 1) for kv in args.igserve):
        try:
            igserve[name] = {"file": path, "true_error": rel_l2(load_attributions(path, x), ref)}
        except (OSError, ValueError) as e:
            igserve[name] = {"file": path, "na": str(e)}
    out["igserve"] = igserve
    if m is None:
        out["fewest_na"] = ("the midpoint rule needs more than %d points for %g against the "
                            "%d-point reference" % (args.reference // 2, args.tolerance,
                                                    args.reference + 1))
        return out
    # The timed runs: plain midpoint IG at m, as a user would run it (float32 sums), warm.
    times = []
    for _ in range(args.reps):
        t = time.perf_counter()
        attr = integrated_gradients(model, x, target, m, args.chunk, "riemann_middle")
        times.append((time.perf_counter() - t) * 1e3)
        log("midpoint IG-%d chunk %d: %.0f ms" % (m, args.chunk, times[-1]))
    out.update({"fewest_points": m, "ms": times, "ms_median": statistics.median(times),
                "ms_min": min(times), "true_error": rel_l2(attr.double(), ref)})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("out")
    g.add_argument("--arch", default="resnet50")
    g.add_argument("--seed", type=int, default=50)
    e = sub.add_parser("export")
    e.add_argument("model")
    e.add_argument("out")
    e.add_argument("--input-size", type=int, default=224)
    i = sub.add_parser("image")
    i.add_argument("out")
    i.add_argument("--size", type=int, default=224)
    for name in ("run", "rss"):
        p = sub.add_parser(name)
        p.add_argument("model")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--input-size", type=int, default=224)
        p.add_argument("--ig-points", type=int, default=50)
        if name == "run":
            p.add_argument("--forward-reps", type=int, default=20)
            p.add_argument("--ig-chunks", default="1,4,8,16",
                           type=lambda s: [int(v) for v in s.split(",") if v])
            p.add_argument("--ig-reps", type=int, default=1)
        else:
            p.add_argument("--chunk", type=int, required=True)
    t = sub.add_parser("tol")
    t.add_argument("model")
    t.add_argument("--image", required=True)
    t.add_argument("--target", type=int, help="logit to explain (default: PyTorch's top-1)")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--input-size", type=int, default=224)
    t.add_argument("--tolerance", type=float, default=0.01)
    t.add_argument("--reference", type=int, default=1024,
                   help="intervals of the trapezoid reference, a power of two (1024)")
    t.add_argument("--chunk", type=int, default=8)
    t.add_argument("--reps", type=int, default=1)
    t.add_argument("--igserve", action="append", default=[], metavar="NAME=FILE.npy",
                   help="igserve attributions to measure against the reference")
    args = ap.parse_args()
    if args.cmd == "tol" and (args.reference < 2 or args.reference & (args.reference - 1)):
        ap.error("--reference must be a power of two")
    cmds = {"generate": cmd_generate, "export": cmd_export, "image": cmd_image,
            "run": cmd_run, "rss": cmd_rss, "tol": cmd_tol}
    out = cmds[args.cmd](args)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
