#!/usr/bin/env python
"""Distillation: students of 1 and 2 layers distilled from a fine-tuned teacher, against the same students trained
on labels alone, on ChnSentiCorp, TNEWS and SMP2020-EWECT; accuracy, speed and retention.

    nice -n 10 python benchmarks/distill.py            # markdown tables (about 25 minutes on 2 shared cores)
    python benchmarks/distill.py --json                # one JSON object instead
    python benchmarks/distill.py --quick               # 1 seed, few rows and steps: checks that it all runs

What runs, per task (the budget is set by a 2-core machine shared with other jobs, and said here plainly):
1. The teacher: a 4-layer BERT (width 128, 2 heads, feed-forward 512, the bert-base-chinese vocabulary) from
   random weights (no pretrained checkpoint is reachable here, and pretraining one did not fit the time), fine-tuned
   with `run_classification.py` on the task's labelled rows, seed 1.
2. Students built from the teacher's own layers (`--student_layers 1` and `2`, every n-th layer: [0] and [0, 2]),
   each trained twice with `bertcls distill`, the same flags and seeds for both:
   - labels alone: `--alpha 0` on the labelled rows (plain cross-entropy; the teacher is not used);
   - distilled: `--alpha 0.5 --temperature 2` on the labelled rows plus the task's unlabelled texts
     (`--unlabelled_file`: texts the task has beyond the labelled subset, their labels never read).
3. Test accuracy on the task's test split (mean ± std over the seeds), retention = student / teacher.
4. Speed: rows/s of each model over the same test texts, torch fp32 and the fastest shipped form of
   `bertcls export` (fp32 or --quantize int8, both --optimize, parity-checked by export itself), 1 thread, batch 32,
   timed round-robin in one process on the first 300 test texts (best of 3 rounds), so the ratios compare models
   under the same load. Inputs of at most 32 tokens (max_seq_length 32).

Labelled rows (subsampled to fit): ChnSentiCorp the first 1,000 train rows (unlabelled: the next 2,000 train
texts), TNEWS all 1,185 FewCLUE train rows (unlabelled: the 1,098 dev texts), SMP2020 the first 1,000 train rows
(unlabelled: the next 2,000 train texts); test: 1,000 rows of each test split, evenly spread over the file.
"""

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from measure import SHARED as DATA
from measure import VOCAB, offline, seeded_task_parser

offline()

TASKS = {
    "chnsenticorp": {"dir": "chnsenticorp", "train": "train.tsv", "test": "test.tsv", "text": "text_a",
                     "labelled": 1000, "unlabelled": 2000, "test_rows": 1000},
    "tnews": {"dir": "tnews_fewclue", "train": "train_few_all.json", "test": "test_public.json", "text": "sentence",
              "labelled": None, "unlabelled_file": "dev_few_all.json", "test_rows": 1000},
    "smp2020": {"dir": "smp2020_ewect_usual", "train": "train.tsv", "test": "test.tsv", "text": "text_a",
                "labelled": 1000, "unlabelled": 2000, "test_rows": 1000},
}  # fmt: skip
TEACHER = {
    "num_layers": 4,
    "hidden_size": 256,
    "num_heads": 4,
    "intermediate_size": 1024,
    "max_position_embeddings": 32,
}
COMMON = {
    "max_seq_length": 32,
    "per_device_train_batch_size": 32,
    "warmup_steps": 0.1,
    "validation_split_percentage": 0,
    "do_eval": False,
    "save_strategy": "no",
    "logging_steps": 50,
    "report_to": "none",
    "disable_tqdm": "true",
}
TEACHER_TRAINING = {"learning_rate": 5e-4, "num_train_epochs": 4}
STUDENT_TRAINING = {"learning_rate": 5e-4, "num_train_epochs": 2}
DISTILLED = {"alpha": 0.5, "temperature": 2.0}


def flags(**values) -> list[str]:
    argv = []
    for name, value in values.items():
        argv += [f"--{name}", str(value)]
    return argv


def quiet(function, argv):
    with contextlib.redirect_stdout(sys.stderr):  # the runs' summaries would break --json's one object
        return function(argv)


def task_files(task: str, work: str, quick: bool) -> dict:
    """The task's labelled train file, unlabelled texts and test file (subsets written into `work`)."""
    import pandas as pd

    spec, folder = TASKS[task], os.path.join(DATA, TASKS[task]["dir"])

    def read(name):
        path = os.path.join(folder, name)
        if name.endswith(".json"):
            return pd.read_json(path, lines=True)
        return pd.read_csv(path, sep="\t", quoting=3, dtype=str, keep_default_na=False)

    def write(frame, name):
        path = os.path.join(work, f"{task}-{name}.jsonl")
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
        return path

    train, test = read(spec["train"]), read(spec["test"])
    labelled = spec["labelled"] or len(train)
    unlabelled = read(spec["unlabelled_file"]) if "unlabelled_file" in spec else train.iloc[labelled:]
    unlabelled = unlabelled.iloc[: spec.get("unlabelled") or len(unlabelled)]
    if spec["test_rows"] and len(test) > spec["test_rows"]:  # evenly spread: TNEWS's test file is sorted by label
        test = test.iloc[np.linspace(0, len(test) - 1, spec["test_rows"]).round().astype(int)]
    if quick:
        labelled, unlabelled, test = 300, unlabelled.iloc[:300], test.iloc[:300]
    return {
        "train": write(train.iloc[:labelled], "train"),
        "unlabelled": write(unlabelled[[spec["text"]]], "unlabelled"),
        "test": write(test, "test"),
        "rows": {"labelled": labelled, "unlabelled": len(unlabelled), "test": len(test)},
    }


def make_teacher_model(work: str) -> str:
    from bertcls.model.tiny import TinyModelArguments, make_tiny_bert

    return make_tiny_bert(
        TinyModelArguments(output_dir=os.path.join(work, "teacher-init"), vocab_file=VOCAB, **TEACHER)
    )


def train_teacher(init: str, files: dict, task: str, out: str, quick: bool) -> dict:
    import run_classification

    budget = dict(COMMON, **TEACHER_TRAINING, **({"max_steps": 20} if quick else {}))
    argv = flags(model_name_or_path=init, train_file=files["train"], test_file=files["test"], output_dir=out)
    argv += flags(text_column=TASKS[task]["text"], seed=1, **budget)
    start = time.perf_counter()
    results = quiet(run_classification.main, argv)
    return {"accuracy": results["test_accuracy"], "seconds": time.perf_counter() - start}


def distil(teacher: str, files: dict, layers: int, seed: int, distilled: bool, out: str, quick: bool) -> dict:
    from bertcls.distill import run

    budget = dict(COMMON, **STUDENT_TRAINING, **({"max_steps": 20} if quick else {}))
    argv = flags(teacher=teacher, student_layers=layers, train_file=files["train"], test_file=files["test"])
    argv += flags(output_dir=out, seed=seed, **budget)
    argv += flags(**DISTILLED, unlabelled_file=files["unlabelled"]) if distilled else flags(alpha=0)
    start = time.perf_counter()
    results = quiet(run.main, argv)
    return {"accuracy": results["test_accuracy"], "seconds": time.perf_counter() - start}


def export_fastest(folder: str, work: str) -> dict:
    """fp32 and int8 exports (both optimized, each parity-checked by export): the folders and their reports."""
    from bertcls.shipping import export

    made = {}
    for name, extra in (("onnx-fp32", []), ("onnx-int8", ["--quantize", "int8"])):
        target = os.path.join(work, f"{os.path.basename(folder)}-{name}")
        argv = ["--model_name_or_path", folder, "--output_dir", target, "--optimize", "--threads", "1", *extra]
        argv += ["--check_rows", "100"]
        quiet(export.main, argv + ["--overwrite_output_dir"])
        made[name] = target
    return made


def timed(folders: dict, test_file: str, text_column: str, rounds: int) -> dict:
    """rows/s of each (name -> folder) on the test texts, 1 thread, batch 32, round-robin, best of `rounds`."""
    import torch

    from bertcls.config.arguments import DataArguments
    from bertcls.data.loading import read_file, standardize
    from bertcls.model.classifier import TrainedClassifier

    torch.set_num_threads(1)
    models = {name: TrainedClassifier.load(path, device="cpu", threads=1) for name, path in folders.items()}
    first = next(iter(models.values()))
    data_args = first.data_args(DataArguments(text_column=text_column))
    raw, source = read_file(test_file, data_args)
    rows, _ = standardize(raw, source, data_args, None, "test")
    rows = rows.select(range(min(300, len(rows))))
    encoded = {name: m.encode(rows, m.data_args(DataArguments(text_column=text_column))) for name, m in models.items()}
    best = {name: float("inf") for name in models}
    for _ in range(rounds):
        for name, m in models.items():
            start = time.perf_counter()
            m.logits(encoded[name], len(rows), data_args, batch_size=32)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(rows) / seconds for name, seconds in best.items()}


def summary(runs: list[dict]) -> dict:
    values = np.array([r["accuracy"] for r in runs])
    return {"mean": float(values.mean()), "std": float(values.std()), "per_seed": values.tolist(),
            "seconds": float(np.mean([r["seconds"] for r in runs]))}  # fmt: skip


def run_task(task: str, args, work: str) -> dict:
    files = task_files(task, work, args.quick)
    teacher = os.path.join(work, f"{task}-teacher")
    report = {"rows": files["rows"], "teacher": train_teacher(args.teacher_init, files, task, teacher, args.quick)}
    print(f"# {task} teacher: {report['teacher']}", file=sys.stderr, flush=True)
    report["students"], keep = {}, {"teacher": teacher}
    for layers in (1, 2):
        for distilled in (False, True):
            name = f"{layers} layer{'s' if layers > 1 else ''}, {'distilled' if distilled else 'labels alone'}"
            runs = []
            for seed in args.seeds:
                out = os.path.join(work, f"{task}-{layers}-{int(distilled)}-{seed}")
                runs.append(distil(teacher, files, layers, seed, distilled, out, args.quick))
                print(f"# {task} / {name} / seed {seed}: {runs[-1]}", file=sys.stderr, flush=True)
                if seed == args.seeds[0] and distilled:
                    keep[f"student-{layers}"] = out  # timed (speed does not depend on the loss or seed)
                else:
                    shutil.rmtree(out)
            report["students"][name] = summary(runs)
    folders = {}
    for name, folder in keep.items():
        folders[f"{name} torch"] = folder
        for kind, path in export_fastest(folder, work).items():
            folders[f"{name} {kind}"] = path
    speeds = timed(folders, files["test"], TASKS[task]["text"], rounds=1 if args.quick else 3)
    report["rows_per_s"] = {}
    for name in keep:
        onnx = {kind: speeds[f"{name} {kind}"] for kind in ("onnx-fp32", "onnx-int8")}
        fastest = max(onnx, key=onnx.get)
        report["rows_per_s"][name] = {"torch": speeds[f"{name} torch"], "shipped": onnx[fastest], "form": fastest}
    return report


def targets(report: dict) -> dict:
    """The issue's two targets, computed from the tables."""
    gains = []
    for r in report["tasks"].values():
        teacher_acc = r["teacher"]["accuracy"]
        teacher_speed = r["rows_per_s"]["teacher"]["shipped"]
        for layers in (1, 2):
            label = "layer" if layers == 1 else "layers"
            alone, distilled = (r["students"][f"{layers} {label}, {k}"]["mean"] for k in ("labels alone", "distilled"))
            gains.append(distilled - alone)
        for layers in (1, 2):
            label = "layer" if layers == 1 else "layers"
            s = r["students"][f"{layers} {label}, distilled"]
            retention = s["mean"] / teacher_acc
            speedup = r["rows_per_s"][f"student-{layers}"]["shipped"] / teacher_speed
            r.setdefault("retention", {})[f"student-{layers}"] = {"retention": retention, "speedup": speedup}
    by_size = {}
    for layers in (1, 2):
        rs = [r["retention"][f"student-{layers}"] for r in report["tasks"].values()]
        by_size[layers] = {k: float(np.mean([x[k] for x in rs])) for k in ("retention", "speedup")}
    best = max(
        by_size,
        key=lambda k: (by_size[k]["retention"] >= 0.95 and by_size[k]["speedup"] >= 3, by_size[k]["retention"]),
    )
    return {
        "mean_gain_points": 100 * float(np.mean(gains)),
        "gain_met": bool(np.mean(gains) >= 0.01),
        "by_size": by_size,
        "best_student_layers": best,
        "retention_speed_met": bool(by_size[best]["retention"] >= 0.95 and by_size[best]["speedup"] >= 3),
    }


def tables(report: dict) -> str:
    lines = ["| task | model | test accuracy (mean ± std) | per seed | retention | torch fp32 rows/s | shipped rows/s (form) | speed vs teacher (shipped) | s / run |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for task, r in report["tasks"].items():
        t, speed = r["teacher"], r["rows_per_s"]
        ts = speed["teacher"]
        lines.append(f"| {task} | teacher (4 layers) | {t['accuracy']:.4f} | seed 1 | 100% | {ts['torch']:.0f} | {ts['shipped']:.0f} ({ts['form']}) | 1.00x | {t['seconds']:.0f} |")  # fmt: skip
        for name, s in r["students"].items():
            layers = int(name[0])
            sp = speed[f"student-{layers}"]
            lines.append(
                f"| {task} | {name} | {s['mean']:.4f} ± {s['std']:.4f} | {' / '.join(f'{v:.4f}' for v in s['per_seed'])} "
                f"| {s['mean'] / t['accuracy']:.1%} | {sp['torch']:.0f} | {sp['shipped']:.0f} ({sp['form']}) "
                f"| {sp['shipped'] / ts['shipped']:.2f}x | {s['seconds']:.0f} |"
            )
    g = report["targets"]
    lines += [
        "",
        f"distilled minus labels alone, mean over tasks and sizes: {g['mean_gain_points']:+.2f} points "
        f"(target >= +1: {'met' if g['gain_met'] else 'MISSED'})",
    ]
    for layers, b in g["by_size"].items():
        lines.append(
            f"{layers}-layer distilled student: mean retention {b['retention']:.1%}, {b['speedup']:.2f}x the teacher's shipped rows/s"
        )
    lines += [
        f"best student ({g['best_student_layers']} layers) >= 95% of the teacher at >= 3x its rows/s: "
        f"{'met' if g['retention_speed_met'] else 'MISSED'}",
        f"rows: {json.dumps({t: r['rows'] for t, r in report['tasks'].items()})}",
        f"seeds {report['seeds']}; wall time {report['wall_seconds'] / 60:.1f} min; load average at start "
        f"{report['load_start']}, at end {report['load_end']}; CPU: {report['cpu']}",
    ]
    return "\n".join(lines)


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return "unknown"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    present = [flag for flag in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f" {flag}" in info]
    return f"{name} ({', '.join(present)})"


def main(argv=None) -> dict:
    parser = seeded_task_parser(__doc__, TASKS)
    parser.add_argument("--quick", action="store_true", help="1 seed, 300 rows, 20 steps: checks that it all runs.")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds = args.seeds[:1]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start, load_start = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    report = {"seeds": args.seeds, "tasks": {}, "cpu": cpu_flags()}
    with tempfile.TemporaryDirectory() as work:
        os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(work, "datasets"))
        args.teacher_init = make_teacher_model(work)
        for task in args.tasks:
            report["tasks"][task] = run_task(task, args, work)
    report["targets"] = targets(report)
    report["wall_seconds"] = time.perf_counter() - start
    report["load_start"], report["load_end"] = load_start, [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2) if args.json else tables(report))
    return report


if __name__ == "__main__":
    main()
