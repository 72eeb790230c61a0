#!/usr/bin/env python
"""bertcls against the classic hand-written loop: same model, data, batch size and steps, one after the other.

    python benchmarks/run.py --quick               # about 1.5 minutes on 2 CPU cores (make bench)
    python benchmarks/run.py                       # the table in docs/performance.md
    python benchmarks/run.py --knobs               # our path with one default changed at a time
    python benchmarks/run.py --json                # the same as one JSON object
    python benchmarks/run.py --device cuda --model_size base --bf16 --compile --skip_baseline --steps 200 --warmup 20

Each side runs in its own fresh Python process (classic_loop.py, bertcls_side.py), so peak memory is per process
and neither shares caches or allocator state with the other. The model is a randomly initialised BERT with the
real bert-base-chinese vocabulary, built once by bertcls.model.tiny (speed does not depend on the weights).
What is timed is explained in measure.py.
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile

from measure import MODEL_SIZES, SHARED, VOCAB, build_model, child_env, run_measured, write_rows

HERE = os.path.dirname(os.path.abspath(__file__))

# One change from our defaults per row (the defaults: group_by_length, no rounding in fp32, fused AdamW,
# no DataLoader workers, fp32 on CPU). Predict sorted vs unsorted is measured inside the default run.
KNOBS = {
    "random batches (not length-grouped)": ["--train_sampling_strategy", "random"],
    "pad to a multiple of 8": ["--pad_to_multiple_of", "8"],
    "adamw_torch (not fused)": ["--optim", "adamw_torch"],
    "2 DataLoader workers": ["--dataloader_num_workers", "2"],
    "bf16 autocast": ["--bf16", "true"],
    "attention dropout 0 (fused CPU attention)": ["--config_overrides", "attention_probs_dropout_prob=0"],
}

# Dense (no sparsity) bf16 tensor-core peaks from the vendor's data sheets, TFLOP/s. --peak_tflops overrides.
PEAK_BF16_TFLOPS = {"H100 PCIe": 756, "H100 NVL": 835, "H100": 989, "H200": 989, "A100": 312, "L4": 121}

METRICS = [  # key, label, format
    ("train_samples_per_s", "train samples/s", "{:,.1f}"),
    ("train_samples_per_cpu_s", "train samples per CPU-second", "{:,.1f}"),
    ("real_tokens_per_s", "real (non-pad) tokens/s", "{:,.0f}"),
    ("padding_share", "padding share of tokens fed", "{:.1%}"),
    ("peak_rss_mb", "peak RSS of the process, MB", "{:,.0f}"),
    ("tokenize_rows_per_s", "load + tokenize rows/s", "{:,.0f}"),
    ("predict_rows_per_s", "predict rows/s", "{:,.1f}"),
    ("predict_rows_per_cpu_s", "predict rows per CPU-second", "{:,.1f}"),
    ("predict_cli_rows_per_s", "predict rows/s, bertcls.shipping.predict", "{:,.1f}"),
    ("predict_unsorted_rows_per_s", "predict rows/s, unsorted", "{:,.1f}"),
    ("mfu", "useful-token MFU", "{:.1%}"),
]
# Ours against the baseline's only predict figure (unsorted padded batches).
BASELINE_KEY = {
    "predict_cli_rows_per_s": "predict_rows_per_s",
    "predict_unsorted_rows_per_s": "predict_rows_per_s",
}


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(SHARED, "chnsenticorp", "train.tsv"), help="Training rows.")
    parser.add_argument(
        "--data_times",
        type=int,
        default=1,
        help="Use --data's rows this many times over (written to a temporary file): memory against data size.",
    )
    parser.add_argument("--text_column", default="text_a")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--model", help="An existing model folder, instead of building one with --model_size.")
    parser.add_argument("--model_size", choices=MODEL_SIZES, default="tiny", help="tiny: 2 layers, 128 wide.")
    parser.add_argument("--vocab", default=VOCAB, help="vocab.txt of the built model.")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100, help="Timed training steps (same on both sides).")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed steps before them.")
    parser.add_argument("--predict_rows", type=int, default=1200, help="Rows to predict (the first N of --data).")
    parser.add_argument("--predict_batch_size", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="--steps 20 --warmup 2 --predict_rows 640.")
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads (default: all cores)."
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    parser.add_argument("--bf16", action="store_true", help="Our side in bf16 (the baseline stays fp32).")
    parser.add_argument("--compile", action="store_true", help="Also run our side with --torch_compile.")
    parser.add_argument(
        "--bertcls_flags",
        default="",
        help="More run_classification flags for our side, as one string: "
        "--bertcls_flags='--config_overrides attention_probs_dropout_prob=0'.",
    )
    parser.add_argument("--skip_baseline", action="store_true", help="Only our side (e.g. GPU figures).")
    parser.add_argument("--knobs", action="store_true", help="Also run our side with one default changed at a time.")
    parser.add_argument("--repeat", type=int, default=1, help="Run each process N times; report medians.")
    parser.add_argument("--peak_tflops", type=float, help="Peak bf16 TFLOP/s of the GPU, for MFU.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of the table.")
    parser.add_argument("--verbose", action="store_true", help="Show the children's output.")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.predict_rows = 20, 2, 640
    return args


def run_child(script: str, args, model: str, extra: list[str], name: str) -> dict:
    """Run one side once in a fresh process and return its JSON result."""
    command = [sys.executable, os.path.join(HERE, script), "--model", model, "--train_file", args.data]
    command += ["--text_column", args.text_column, "--label_column", args.label_column]
    command += ["--batch_size", str(args.batch_size), "--steps", str(args.steps)]
    command += ["--warmup", str(args.warmup), "--predict_rows", str(args.predict_rows)]
    command += ["--predict_batch_size", str(args.predict_batch_size), "--threads", str(args.threads)]
    command += ["--device", args.device, *extra]
    result = run_measured(name, command, args.threads, args.verbose)
    print(f"[{name}] done in {result['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
    return result


def run_all(specs: dict, args, model: str) -> dict:
    """Every process --repeat times, in rounds (A B A B, so slow drift on a shared machine hits all alike)."""
    results = {name: [] for name in specs}
    for _ in range(args.repeat):
        for name, (script, extra) in specs.items():
            results[name].append(run_child(script, args, model, extra, name))
    return {name: median_result(runs) for name, runs in results.items()}


def median_result(results: list[dict]) -> dict:
    merged = dict(results[0])
    if len(results) > 1:
        for key, value in merged.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                merged[key] = statistics.median(r[key] for r in results)
        merged["spread"] = {  # (max - min) / median of the headline figures, to show how noisy the machine was
            key: (max(r[key] for r in results) - min(r[key] for r in results)) / merged[key]
            for key in ("train_samples_per_s", "predict_rows_per_s")
            if merged.get(key)
        }
        merged["repeats"] = len(results)
    return merged


def peak_tflops(args, device_name: str | None) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    for name, tflops in PEAK_BF16_TFLOPS.items():  # most specific names first
        if device_name and name in device_name:
            return tflops
    return None


def add_mfu(result: dict, peak: float | None) -> None:
    """Useful-token MFU: 6 x encoder parameters x real tokens / time / peak bf16 FLOP/s."""
    if peak and result.get("encoder_params") and "real_tokens_per_s" in result:
        result["mfu"] = 6 * result["encoder_params"] * result["real_tokens_per_s"] / (peak * 1e12)


def ratio(ours, theirs):
    return ours / theirs if isinstance(ours, (int, float)) and theirs else None


def summary(runs: dict, args, model: str) -> dict:
    baseline = runs.get("classic loop")
    ours = runs.get("bertcls")
    out = {"settings": settings(args, model), "runs": runs}
    if baseline and ours:
        out.update(
            train_speedup=ratio(ours["train_samples_per_s"], baseline["train_samples_per_s"]),
            real_tokens_speedup=ratio(ours["real_tokens_per_s"], baseline["real_tokens_per_s"]),
            rss_ratio=ratio(ours["peak_rss_mb"], baseline["peak_rss_mb"]),
            predict_speedup=ratio(ours["predict_rows_per_s"], baseline["predict_rows_per_s"]),
            predict_cli_speedup=ratio(ours.get("predict_cli_rows_per_s"), baseline["predict_rows_per_s"]),
            tokenize_speedup=ratio(ours["tokenize_rows_per_s"], baseline["tokenize_rows_per_s"]),
        )
    if args.knobs and ours:
        out["knobs"] = {  # ratios to the default run, and the padding share itself
            name: {key: ratio(run.get(key), ours.get(key)) for key, _, _ in METRICS if key in run}
            | {"padding_share": run["padding_share"]}
            for name, run in runs.items()
            if name in KNOBS
        }
        out["knobs"]["predict unsorted (Trainer.predict in row order)"] = {
            "predict_rows_per_s": ratio(ours.get("predict_unsorted_rows_per_s"), ours["predict_rows_per_s"])
        }
        out["knobs"]["predict with bertcls.shipping.predict (inference_mode, own loop)"] = {
            "predict_rows_per_s": ratio(ours.get("predict_cli_rows_per_s"), ours["predict_rows_per_s"])
        }
    return out


def settings(args, model: str) -> dict:
    with open(os.path.join(model, "config.json")) as f:
        config = json.load(f)
    return {
        "data": getattr(args, "source_data", args.data) + (f" x {args.data_times}" if args.data_times > 1 else ""),
        "model": model,
        "layers": config["num_hidden_layers"],
        "hidden": config["hidden_size"],
        "vocab": config["vocab_size"],
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "predict_rows": args.predict_rows,
        "predict_batch_size": args.predict_batch_size,
        "device": args.device,
        "threads": args.threads,
        "bertcls_flags": args.bertcls_flags,
        "cores": os.cpu_count(),
        "cpu": cpu_name(),
        "torch": torch_version(),
        "python": platform.python_version(),
    }


def torch_version() -> str:
    from importlib.metadata import version

    return version("torch")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def table(out: dict) -> str:
    s, runs = out["settings"], out["runs"]
    names = [n for n in runs if n not in KNOBS]
    baseline = runs.get("classic loop")
    lines = [
        f"data {s['data']} ({next(iter(runs.values()))['rows']:,} rows); random BERT {s['layers']} layers x "
        f"{s['hidden']} hidden, vocab {s['vocab']:,}",
        f"batch {s['batch_size']}, {s['steps']} timed steps after {s['warmup']} warm-up, predict "
        f"{s['predict_rows']} rows in batches of {s['predict_batch_size']}; device {s['device']}, "
        f"{s['threads']} thread(s) of {s['cores']} cores ({s['cpu']}), torch {s['torch']}",
        "",
    ]
    header = ["", *names] + [f"{n} / classic" for n in names if baseline and n != "classic loop"]
    rows = [header]
    for key, label, fmt in METRICS:
        values = [runs[n].get(key) for n in names]
        if all(v is None for v in values):
            continue
        row = [label] + [fmt.format(v) if v is not None else "-" for v in values]
        if baseline:
            reference = baseline.get(BASELINE_KEY.get(key, key))
            for n in names:
                if n == "classic loop":
                    continue
                r = ratio(runs[n].get(key), reference) if key not in ("padding_share", "mfu") else None
                row.append(f"{r:.2f}x" if r is not None else "")
        rows.append(row)
    lines += format_rows(rows)
    gpus = {r["device_name"] for r in runs.values() if r.get("device", "").startswith("cuda")}
    if gpus:
        peak = next(iter(runs.values())).get("peak_bf16_tflops")
        lines += [f"GPU: {', '.join(sorted(gpus))}; MFU against {peak} TFLOP/s bf16 (--peak_tflops)"]
    if ours := runs.get("bertcls"):
        lines += [
            f"mean real tokens per row: {ours['window_mean_length']:.1f} in bertcls' timed steps, "
            f"{ours['data_mean_length']:.1f} over all rows (the timed steps are a fair sample when these agree)"
        ]
    loads = ", ".join(f"{n} {r['load_average_before']:.1f}" for n, r in runs.items())
    lines += ["", f"1-minute load average before each process: {loads}"]
    if "knobs" in out:
        lines += ["", "our defaults, one changed at a time (ratio to the default run; > 1 means the change is faster)"]
        keys = [("train_samples_per_s", "train samples/s"), ("train_samples_per_cpu_s", "per CPU-s"),
                ("padding_share", "padding share"), ("peak_rss_mb", "peak RSS"),
                ("predict_rows_per_s", "predict rows/s"), ("predict_rows_per_cpu_s", "per CPU-s")]  # fmt: skip
        rows = [["change", *(label for _, label in keys)]]
        rows.append(["(default run)", "", "", f"{runs['bertcls']['padding_share']:.1%}", "", "", ""])
        for name, ratios in out["knobs"].items():
            cells = [
                ("" if ratios.get(k) is None else f"{ratios[k]:.1%}" if k == "padding_share" else f"{ratios[k]:.2f}")
                for k, _ in keys
            ]
            rows.append([name, *cells])
        lines += format_rows(rows)
    return "\n".join(lines)


def format_rows(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]


def main(argv=None) -> dict:
    args = parse(argv)
    if not os.path.isfile(args.data):
        raise SystemExit(f"error: {args.data} not found; pass --data PATH (a .tsv/.csv with text and label columns)")
    model = args.model or build_model(args.model_size, args.vocab, child_env(args.threads, tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(prefix="bertcls-bench-data-") as tmp:
        if args.data_times > 1:
            with open(args.data, encoding="utf-8") as f:
                rows = sum(1 for line in f if line.strip()) - 1
            args.source_data, args.data = args.data, os.path.join(tmp, "rows" + os.path.splitext(args.data)[1])
            write_rows(args.source_data, args.data, rows * args.data_times)
        return compare(args, model)


def compare(args, model: str) -> dict:
    ours = (["--bf16", "true"] if args.bf16 else []) + shlex.split(args.bertcls_flags)
    specs = {}  # name: (script, extra arguments)
    if not args.skip_baseline:
        specs["classic loop"] = ("classic_loop.py", [])
    ways = ["--predict_ways", "sorted", "cli"] + (["unsorted"] if args.knobs else [])
    specs["bertcls"] = ("bertcls_side.py", [*ways, "--", *ours])
    if args.compile:
        specs["bertcls + compile"] = ("bertcls_side.py", [*ways, "--", *ours, "--torch_compile", "true"])
    if args.knobs:
        for name, flags in KNOBS.items():
            specs[name] = ("bertcls_side.py", ["--predict_ways", "sorted", "--", *ours, *flags])
    runs = run_all(specs, args, model)
    if args.device.startswith("cuda"):
        for run in runs.values():
            run["peak_bf16_tflops"] = peak_tflops(args, run.get("device_name"))
            add_mfu(run, run["peak_bf16_tflops"])
    out = summary(runs, args, model)
    print(json.dumps(out, indent=1) if args.json else table(out))
    return out


if __name__ == "__main__":
    main()
