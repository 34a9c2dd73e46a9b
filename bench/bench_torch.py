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


def integrated_gradients(model, x, target, points, chunk):
    """Gauss-Legendre IG of logit `target` against a gray baseline: `points` path points,
    `chunk` at a time, each a forward plus autograd to the input.  Returns the attributions."""
    z, w = np.polynomial.legendre.leggauss(points)
    alphas = torch.tensor((1 + z) / 2, dtype=torch.float32)
    weights = torch.tensor(w / 2, dtype=torch.float32)
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
    args = ap.parse_args()
    cmds = {"generate": cmd_generate, "export": cmd_export, "image": cmd_image,
            "run": cmd_run, "rss": cmd_rss}
    out = cmds[args.cmd](args)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
