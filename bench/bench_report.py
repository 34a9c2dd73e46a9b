"""bench_report.py - the report of bench/run: its tables (results.md) from the measurements.

rows_for() lists a run's figures as (figure, igserve, PyTorch, onnxruntime, unit, target) with
numbers or "n/a (reason)" strings; write_markdown() lays them out with ratios and the targets of
issues 5 and 14.
"""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IG_POINTS = 50
TOL_MAX_STEPS = 1024  # max_steps of the adaptive request of "time to 1%"


def shown(path):
    """path relative to the repository when inside it, else as is."""
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith("..") else rel


def get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d or d[k] is None:
            return None
        d = d[k]
    return d


def na_reason(*parts):
    for p in parts:
        if isinstance(p, dict) and "na" in p:
            return p["na"]
    return None


def rows_for(run, args):
    """[(figure, igserve value, pytorch value, ort value, unit, target)] where values are
    numbers or 'n/a (reason)' strings."""
    eng, srv, tch, ort = run["engine"], run["server"], run["torch"], run["ort"]

    def val(part, *keys, missing="not reported"):
        if "na" in part:
            return "n/a (%s)" % part["na"]
        v = get(part, *keys)
        return v if v is not None else "n/a (%s)" % missing

    def kib_to_mib(v):
        return v / 1024.0 if isinstance(v, (int, float)) else v

    t_fwd = val(tch, "forward_batch1_ms_median")
    o_fwd = val(ort, "forward_batch1_ms_median")
    rate = lambda v: 1000.0 / v if isinstance(v, (int, float)) and v > 0 else v  # noqa: E731
    no_autograd = "n/a (onnxruntime-node has no autograd)"
    srv_pred = srv.get("predict", {}) if "na" not in srv else srv
    srv_attr = srv.get("attribute", {}) if "na" not in srv else srv
    srv_tp = srv.get("throughput", {}) if "na" not in srv else srv
    attr_na = "na" in srv_attr
    rows = [
        ("Forward batch 1, median ms: engine in process", val(eng, "forward_batch1_ms_median"),
         t_fwd, o_fwd, "ms", "fwd"),
        ("Forward batch 1, median ms: server (timing_ms.forward of /predict)",
         val(srv_pred, "forward_ms_median",
             missing=srv_pred.get("forward_na", "not reported")), t_fwd, o_fwd, "ms", "fwd"),
        ("Predict end to end over HTTP, batch 1, median ms (references: forward only)",
         val(srv_pred, "e2e_ms_median"), t_fwd, o_fwd, "ms", None),
        ("Predict throughput, %d concurrent clients, req/s (references: 1000 / forward median, "
         "one stream; higher is better)" % args.clients,
         val(srv_tp, "rps"), rate(t_fwd), rate(o_fwd), "rate", None),
        ("IG %d points, ms: engine in process%s" % (
            IG_POINTS, " (batch %s)" % eng["ig_batch"] if "ig_batch" in eng else ""),
         val(eng, "ig_ms"), val(tch, "ig_ms_best"), no_autograd, "ms", "ig"),
        ("IG %d points, ms: server /attribute (steps=%d, heatmaps=none), end to end median"
         % (IG_POINTS, IG_POINTS),
         "n/a (%s)" % srv_attr["na"] if attr_na else val(srv_attr, "e2e_ms_median"),
         val(tch, "ig_ms_best"), no_autograd, "ms", "ig"),
        ("Peak RSS during IG-%d, MiB: server VmHWM (PyTorch: VmHWM of its process)" % IG_POINTS,
         kib_to_mib(val(srv_attr, "vm_hwm_kib")),
         kib_to_mib(val(tch.get("rss", {"na": tch.get("rss_na", tch.get("na"))}),
                        "vm_hwm_kib")), no_autograd, "MiB", "rss"),
        ("Peak RSS of the whole process, MiB: engine bench_engine (PyTorch: the run process, "
         "all chunk sizes)", kib_to_mib(val(eng, "ru_maxrss_kib")),
         kib_to_mib(val(tch, "ru_maxrss_kib")), "n/a (not measured)", "MiB", None),
    ]
    if "engine_fp32" in run:
        # The same figures with float32 convolutions (--precision fp32).
        e32, s32 = run["engine_fp32"], run["server_fp32"]
        p32 = s32.get("predict", {}) if "na" not in s32 else s32
        a32 = s32.get("attribute", {}) if "na" not in s32 else s32
        tag = "igserve --precision fp32"
        rows += [
            ("Forward batch 1, median ms: %s, engine in process" % tag,
             val(e32, "forward_batch1_ms_median"), t_fwd, o_fwd, "ms", "fwd"),
            ("Forward batch 1, median ms: %s, server (timing_ms.forward)" % tag,
             val(p32, "forward_ms_median", missing=p32.get("forward_na", "not reported")),
             t_fwd, o_fwd, "ms", "fwd"),
            ("IG %d points, ms: %s, engine in process" % (IG_POINTS, tag), val(e32, "ig_ms"),
             val(tch, "ig_ms_best"), no_autograd, "ms", "ig"),
            ("IG %d points, ms: %s, server /attribute end to end median" % (IG_POINTS, tag),
             "n/a (%s)" % a32["na"] if "na" in a32 else val(a32, "e2e_ms_median"),
             val(tch, "ig_ms_best"), no_autograd, "ms", "ig"),
            ("Peak RSS during IG-%d, MiB: %s, server VmHWM" % (IG_POINTS, tag),
             kib_to_mib(val(a32, "vm_hwm_kib")),
             kib_to_mib(val(tch.get("rss", {"na": tch.get("rss_na", tch.get("na"))}),
                            "vm_hwm_kib")), no_autograd, "MiB", "rss"),
        ]
    rows += load_rows(srv, args)
    if "cache" in run:
        rows.append(
            ("Repeated /attribute (steps=%d, heatmaps=none) from the result cache (X-Cache: hit), "
             "end to end median ms (references: no cache)" % IG_POINTS,
             val(run["cache"], "hit_ms_median"), "n/a (no result cache)",
             "n/a (no result cache)", "ms", None))
    rows += tol_rows(run, args, "server", "")
    if "server_fp32" in run:
        rows += tol_rows(run, args, "server_fp32", ", igserve --precision fp32")
    return rows


def load_rows(srv, args):
    """Issue 17's rows: /predict alone and under attribution load, the attributions' slowdown."""
    if "na" in srv:
        load = srv
    else:
        load = srv.get("load") or {"na": "not measured"}
    pin = lambda v: "n/a (%s)" % load["na"] if "na" in load else (  # noqa: E731
        v if isinstance(v, (int, float)) else "n/a (not reported)")
    alone, loaded = load.get("alone") or {}, load.get("loaded") or {}
    a_alone, a_loaded = load.get("attribute_alone") or {}, load.get("attribute_loaded") or {}
    if "under_load_na" in load:  # the figures alone were measured, those under load not
        loaded = a_loaded = {"na": load["under_load_na"]}

    def pin_loaded(part, key):
        return "n/a (%s)" % part["na"] if "na" in part else pin(part.get(key))
    r_p99, slow = load.get("p99_loaded_over_p50_alone"), load.get("slowdown")

    def judged(what, r, limit):
        return ("note", "%s <= %gx (issue 17): %s" % (
            what, limit, "n/a" if r is None else "%.2fx, %s" % (
                r, "met" if r <= limit else "NOT met")))
    period = args.load_period_ms
    n_attr = "%s" % len(a_loaded["e2e_ms"]) if "e2e_ms" in a_loaded else "n/a"
    explained = load.get("slowdown_from_compute")
    return [
        ("Predict alone, end to end p50, ms (%d sequential on one connection after 3 "
         "warm-ups)" % args.load_predicts, pin(alone.get("p50_ms")), "-", "-", "ms", None),
        ("Predict alone, end to end p99, ms", pin(alone.get("p99_ms")), "-", "-", "ms", None),
        ("Predict under attribution load, end to end p50, ms (%s requests, one every %d ms, "
         "%s sent while an /attribute was in flight; IG-%d heatmaps=none back to back from "
         "another client)" % (loaded.get("n", "n/a"), period,
                              loaded.get("sent_during_attribution", "n/a"), IG_POINTS),
         pin_loaded(loaded, "p50_ms"), "-", "-", "ms", None),
        ("Predict under attribution load, end to end p99, ms", pin_loaded(loaded, "p99_ms"),
         "-", "-", "ms", judged("p99 under load / p50 alone", r_p99, 3)),
        ("Attribution IG-%d alone, end to end mean, ms (%d back to back)"
         % (IG_POINTS, args.load_attributions), pin(a_alone.get("mean_ms")), "-", "-", "ms",
         None),
        ("Attribution IG-%d during the predictions, end to end mean, ms (%s wholly inside the "
         "window; the predictions' own forwards explain %s)"
         % (IG_POINTS, n_attr, "%.2fx" % explained if explained else "n/a"),
         pin_loaded(a_loaded, "mean_ms"),
         "-", "-", "ms", judged("slowdown", slow, 1.5)),
    ]


def tol_rows(run, args, server_key, tag):
    """The rows of "time to 1%" for one server (igserve's default arithmetic or fp32)."""
    pct = "%g%%" % (100 * args.tol)
    no_autograd = "n/a (onnxruntime-node has no autograd)"
    if "tol" not in run:
        return [("Time to %s%s" % (pct, tag), "n/a (measured once, in the run with the "
                 "OpenBLAS variables unset)", "-", "-", "ms", None)]
    tol, srv = run["tol"], run[server_key]
    a = {"na": srv["na"]} if "na" in srv else srv.get("attribute_tol") or {
        "na": "not measured"}

    def num(part, key):
        if "na" in part:
            return "n/a (%s)" % part["na"]
        v = part.get(key)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else \
            "n/a (%s not reported)" % key
    t_part = tol if "na" in tol or "fewest_na" not in tol else {"na": tol["fewest_na"]}
    ig_ms, t_ms = num(a, "e2e_ms_median"), num(t_part, "ms_median")
    ig_pts, t_pts = num(a, "steps"), num(t_part, "fewest_points")
    if "na" in tol:
        ig_err = "n/a (no reference: %s)" % tol["na"]
    elif "na" in a:
        ig_err = "n/a (%s)" % a["na"]
    elif "npy_na" in a:
        ig_err = "n/a (%s)" % a["npy_na"]
    else:
        ig_err = num(get(tol, "igserve", server_key) or {"na": "not measured"}, "true_error")
    t_err = num(t_part, "true_error")
    reported = num(a, "relative_l2")
    nums = lambda *v: all(isinstance(x, (int, float)) for x in v)  # noqa: E731

    def judged(label, ok):
        return ("note", "%s: %s" % (label, "n/a" if ok is None else "met" if ok else "NOT met"))
    r_time = ratio(ig_ms, t_ms)
    r_est = reported / ig_err if nums(reported, ig_err) and ig_err > 0 else None
    return [
        ("Time to %s, ms%s: igserve server /attribute?tolerance=%g (adaptive, end to end "
         "median); PyTorch: midpoint IG at its fewest points for %s (median)"
         % (pct, tag, args.tol, pct), ig_ms, t_ms, no_autograd, "ms",
         judged("<= 0.6x PyTorch (issue 14)", None if r_time is None else r_time <= 0.6)),
        ("Time to %s, path points%s: igserve method.steps; PyTorch: the midpoint rule's fewest"
         % (pct, tag), ig_pts, t_pts, "-", "points",
         judged("<= 3x the midpoint's", None if not nums(ig_pts, t_pts)
                else ig_pts <= 3 * t_pts)),
        ("Time to %s, true error%s: attributions' relative L2 distance to PyTorch's %d-point "
         "reference" % (pct, tag, args.tol_reference + 1), ig_err, t_err, "-", "err",
         judged("igserve <= %g" % args.tol, ig_err <= args.tol if nums(ig_err) else None)),
        ("Time to %s, estimate%s: igserve's reported convergence.relative_l2 (%s)"
         % (pct, tag, "converged" if a.get("converged") else "not converged"
            if a.get("converged") is False else "n/a"),
         reported, "-", "-", "err",
         ("note", "reported / true in [0.8, 4]: %s" % (
             "n/a" if r_est is None else "%s (%.2fx)" % (
                 "met" if 0.8 <= r_est <= 4 else "NOT met", r_est)))),
    ]


def fmt(v, unit):
    if isinstance(v, str):
        return v
    if unit == "err":
        return "%.2e" % v
    if unit == "points":
        return "%d" % v
    if unit == "MiB":
        return "%.0f" % v
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def fmt_ratio(r):
    if r is None:
        return "-"
    return "%.3fx" % r if r < 0.1 else "%.2fx" % r


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0:
        return a / b
    return None


def target_note(kind, r_torch, r_ort, env_kind):
    """Which of the issue's targets apply to this row in this run, and whether they are met."""
    notes = []

    def check(label, r, limit):
        if r is None:
            notes.append("%s: n/a" % label)
        else:
            notes.append("%s: %s" % (label, "met" if r <= limit else "NOT met"))
    if kind == "fwd":
        if env_kind in ("unset", "both"):
            check("<= 1.0x onnxruntime (env unset)", r_ort, 1.0)
        if env_kind in ("set", "both"):
            check("<= 1.0x PyTorch (env as set)", r_torch, 1.0)
    elif kind == "ig" and env_kind in ("unset", "both"):
        check("<= 0.5x PyTorch (env unset)", r_torch, 0.5)
    elif kind == "rss" and env_kind in ("unset", "both"):
        check("<= 0.5x PyTorch (env unset)", r_torch, 0.5)
    return "; ".join(notes)


def tol_notes(run, args):
    """How "time to 1%" was found: the reference, the search, what igserve said."""
    tol = run.get("tol")
    if not tol:
        return []
    pct = "%g%%" % (100 * args.tol)
    L = [""]
    if "na" in tol:
        L.append("Time to %s, PyTorch: n/a (%s)." % (pct, tol["na"]))
    else:
        ref, search = tol["reference"], tol["search"]
        errs = ", ".join("%s: %.2e" % kv for kv in search["errors"].items())
        L.append("Time to %s, PyTorch (float32, chunk %d, target %d: %s): reference the "
                 "trapezoid over %d points (%s), built in %.1f s, its own estimate %.2e, "
                 "completeness error %.1e; the midpoint rule's error by m (powers of two from "
                 "the reference pass's own nodes, the others computed): %s; search %d points "
                 "more in %.1f s; %s."
                 % (pct, tol["chunk"], tol["target"], tol["target_from"], ref["points"],
                    ref["arithmetic"], ref["seconds"], ref["own_estimate"],
                    ref["completeness_error"], errs, search["points_evaluated"],
                    search["seconds"],
                    tol.get("fewest_na") or "fewest m %d, timed %d times (%s ms)" % (
                        tol["fewest_points"], len(tol["ms"]),
                        ", ".join("%.0f" % v for v in tol["ms"]))))
    for key, tag in (("server", ""), ("server_fp32", " (--precision fp32)")):
        a = get(run, key, "attribute_tol")
        if a and "na" not in a:
            L.append("")
            e = lambda v: "%.2e" % v if isinstance(v, (int, float)) else "n/a"  # noqa: E731
            L.append("Time to %s, igserve%s: `%s` over HTTP, %s points (%s evaluations, %s), "
                     "converged %s, relative_l2 %s (%s), completeness error %s; %d requests "
                     "(%s ms)."
                     % (pct, tag, a["path"], a.get("steps"), a.get("evaluations"),
                        a.get("method"), json.dumps(a.get("converged")), e(a.get("relative_l2")),
                        a.get("estimator"), e(a.get("relative_error")), len(a["e2e_ms"]),
                        ", ".join("%.0f" % v for v in a["e2e_ms"])))
    return L


def env_desc(env_vars):
    return ", ".join("%s=%s" % (k, v if v is not None else "(unset)")
                     for k, v in env_vars.items())


def write_markdown(path, meta, runs, args, harness_failures):
    L = []
    L.append("# igserve benchmark%s" % (" (--quick: harness check, numbers mean nothing)"
                                          if args.quick else ""))
    L.append("")
    L.append("- date: %s; host: %s, %s cores; load average at start %s, at end %s"
             % (meta["date"], meta["cpu"], meta["cores"], meta["load_start"], meta["load_end"]))
    L.append("- model: `%s` (sha256 %s), input %dx%d, %d threads for every program"
             % (shown(meta["model"]), meta["model_sha256"][:16], args.input_size,
                args.input_size, args.threads))
    L.append("- igserve %s; PyTorch %s; onnxruntime-node %s"
             % (meta.get("git", "?"), meta.get("torch_version", "n/a"),
                meta.get("ort_version", "n/a")))
    L.append("- repetitions: forward %d (median); PyTorch IG chunk sizes %s one run each, the "
             "fastest %d times in all (best median reported); server /attribute %d; "
             "throughput %g s"
             % (args.forward_reps, args.ig_chunks, args.ig_reps, args.ig_reps_server,
                args.throughput_seconds))
    L.append("- time to %g%%: igserve's `/attribute?tolerance=%g&max_steps=%d` (%d requests, "
             "median) against PyTorch's midpoint rule at the fewest points within %g of a "
             "%d-point trapezoid reference (found by search, then timed %d times, median), "
             "once per invocation"
             % (100 * args.tol, args.tol, TOL_MAX_STEPS, args.ig_reps_server, args.tol,
                args.tol_reference + 1, args.ig_reps))
    L.append("- predictions under attribution load (issue 17, default server): %d /predict "
             "alone; then at least %d, one every %d ms, while /attribute?steps=%d&heatmaps=none "
             "runs back to back from another client, until %d attributions ran wholly among "
             "them; %d attributions alone; p99 by nearest rank"
             % (args.load_predicts, args.load_predicts, args.load_period_ms, IG_POINTS,
                args.load_attributions, args.load_attributions))
    L.append("- ratios are igserve / reference: below 1.0 means igserve takes less time or "
             "memory (for throughput, above 1.0 is better)")
    for run in runs:
        L.append("")
        L.append("## %s" % run["title"])
        L.append("")
        L.append("Environment of every program in this run: %s." % env_desc(run["env_vars"]))
        L.append("")
        L.append("igserve's convolutions: %s (the default, `--precision auto`)%s." % (
            run["engine"].get("precision", "n/a"),
            "; the rows marked `--precision fp32` are float32 throughout"
            if "engine_fp32" in run else ""))
        L.append("")
        L.append("| figure | igserve | PyTorch | onnxruntime | igserve / PyTorch "
                 "| igserve / onnxruntime | target |")
        L.append("| --- | --- | --- | --- | --- | --- | --- |")
        for figure, ig, tv, ov, unit, kind in rows_for(run, args):
            rt, ro = (None, None) if unit == "err" else (ratio(ig, tv), ratio(ig, ov))
            if isinstance(kind, tuple):  # a note the row worked out itself
                note = kind[1]
            else:
                note = target_note(kind, rt, ro, run["env_kind"]) if kind else ""
            L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                figure, fmt(ig, unit), fmt(tv, unit), fmt(ov, unit),
                fmt_ratio(rt), fmt_ratio(ro),
                note))
        tch = run["torch"]
        if "ig_chunks" in tch:
            L.append("")
            L.append("PyTorch IG-%d by chunk size (ms): %s; best %s." % (
                IG_POINTS, ", ".join("%s: %s" % (c, fmt(v["ms_median"], "ms"))
                                     for c, v in tch["ig_chunks"].items()),
                tch.get("ig_best_chunk")))
        L += tol_notes(run, args)
        tp = get(run, "server", "throughput")
        if tp and tp.get("other_status"):
            L.append("")
            L.append("Throughput run: %d answers 200, others by status: %s." % (
                tp["ok"], json.dumps(tp["other_status"])))
        load = get(run, "server", "load")
        if load and load.get("window_cut"):
            L.append("")
            L.append("Predictions under load: the window was cut short (%s)."
                     % load["window_cut"])
        attr = get(run, "server", "attribute")
        if attr and not attr.get("hwm_reset", True):
            L.append("")
            L.append("The server's VmHWM could not be reset before IG (%s): it is the peak "
                     "since startup." % attr.get("hwm_reset_error"))
    if harness_failures:
        L.append("")
        L.append("## Harness failures")
        L.append("")
        for f in harness_failures:
            L.append("- " + f)
    L.append("")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(L))
    os.replace(path + ".tmp", path)
    return "\n".join(L)
