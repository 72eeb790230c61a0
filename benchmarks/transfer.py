#!/usr/bin/env python
"""Transfer from our own pretraining: the same small BERT fine-tuned from random weights and from weights
pretrained with bertcls.pretrain.run on the Chinese text in ../shared/data; then the training options, one at a time,
on the pretrained encoder.

    python benchmarks/transfer.py                # everything, markdown tables (about 45 minutes on 2 quiet cores)
    python benchmarks/transfer.py --json         # one JSON object instead
    python benchmarks/transfer.py --quick        # 1 seed, fewer rows and steps: checks that it all runs
    python benchmarks/transfer.py --transductive # the earlier figures: pretraining also read the scored test texts

1. Pretraining: `python -m bertcls pretrain recipes/pretrain/shared-data-tiny.json` in its own process, into
   .cache/transfer/pretrained-inductive (git-ignored; reused when it holds a finished run, --repretrain makes it
   anew). The recipe reads texts only, never a label: the train splits of the three scored tasks (chnsenticorp,
   smp2020_ewect_usual, tnews_fewclue), lcqmc's dev and test, and through --from_task thucnews_titles' dev split.
   No validation or test text of a scored task is in it (texts that the datasets themselves repeat between their
   train and test files aside). --transductive uses shared-data-tiny-transductive.json instead, which also reads
   every validation and test split (task-adaptive pretraining on all the text at hand, as a user with unlabelled
   test data can do, but its test gains are then measured on text the encoder has seen).
2. The random baseline: the pretrained model's config (architecture, shape, vocabulary, position limit) with
   random weights.
3. Fine-tuning: run_classification.main in this process, the same flags for both starting points (below), seeds
   1, 2, 3, scored on each task's whole test split. Pretraining ran without dropout; fine-tuning sets BERT's usual
   0.1 for both starting points (R-Drop needs dropout).
4. Options on the pretrained encoder only, one change at a time.

Prints the tables with mean ± standard deviation over seeds and each seed's value, the pretraining figures, the
wall time and the machine's load average (os.getloadavg) at the start and the end.
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from measure import REPO, offline, seeded_task_parser
from measure import SHARED as DATA

offline()
RECIPES = {
    "inductive": os.path.join(REPO, "recipes", "pretrain", "shared-data-tiny.json"),
    "transductive": os.path.join(REPO, "recipes", "pretrain", "shared-data-tiny-transductive.json"),
}
CACHE = os.path.join(REPO, ".cache", "transfer")
RANDOM = os.path.join(CACHE, "random")

TASKS = {
    "chnsenticorp": {
        "files": ("chnsenticorp/train.tsv", "chnsenticorp/test.tsv"),
        "text_column": "text_a",
        "train_rows": 2500,
        "epochs": 3,
    },
    "tnews": {
        "files": ("tnews_fewclue/train_few_all.json", "tnews_fewclue/test_public.json"),
        "text_column": "sentence",
        "train_rows": None,  # all 1,185
        "epochs": 5,
    },
    "smp2020": {
        "files": ("smp2020_ewect_usual/train.tsv", "smp2020_ewect_usual/test.tsv"),
        "text_column": "text_a",
        "train_rows": 4000,
        "epochs": 3,
    },
}
BUDGET = {
    "max_seq_length": 64,
    "per_device_train_batch_size": 32,
    "learning_rate": 3e-4,
    "warmup_steps": 0.1,
    "validation_split_percentage": 0,
    "save_strategy": "no",
    "logging_steps": 1000,
    "report_to": "none",
    "disable_tqdm": "true",
    "config_overrides": "hidden_dropout_prob=0.1,attention_probs_dropout_prob=0.1",
}
# One change at a time, on the pretrained encoder: (task, name, flags).
OPTIONS = [
    ("chnsenticorp", "layer-wise lr decay 0.9", {"layerwise_lr_decay": 0.9}),
    ("tnews", "layer-wise lr decay 0.9", {"layerwise_lr_decay": 0.9}),
    ("smp2020", "layer-wise lr decay 0.9", {"layerwise_lr_decay": 0.9}),
    ("chnsenticorp", "FGM epsilon 0.5", {"adversarial": "fgm", "adv_epsilon": 0.5}),
    ("chnsenticorp", "FGM epsilon 1.0", {"adversarial": "fgm", "adv_epsilon": 1.0}),
    ("chnsenticorp", "R-Drop alpha 1", {"rdrop_alpha": 1.0}),
    ("chnsenticorp", "R-Drop alpha 4", {"rdrop_alpha": 4.0}),
    ("smp2020", "class weights auto", {"class_weights": "auto"}),
]


def flags(**values) -> list[str]:
    argv = []
    for name, value in values.items():
        argv += [f"--{name}", str(value)]
    return argv


def pretrain(args) -> dict:
    """Run the pretraining recipe in its own process (or reuse a finished run); return its results."""
    finished = os.path.join(args.encoder, "all_results.json")
    if os.path.isfile(finished) and not args.repretrain:
        print(f"# reusing the pretrained encoder in {args.encoder}", file=sys.stderr)
        with open(finished) as f:
            return {"reused": True, **json.load(f)}
    command = [sys.executable, "-m", "bertcls", "pretrain", RECIPES[args.text], "--output_dir", args.encoder]
    command += ["--overwrite_output_dir", "true", "--disable_tqdm", "true"]
    if args.quick:
        command += ["--max_steps", "60", "--save_steps", "60"]
    elif args.pretrain_steps:
        command += ["--max_steps", str(args.pretrain_steps)]
    print("# " + " ".join(command), file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=sys.stderr)
    seconds = time.perf_counter() - start
    with open(finished) as f:
        return {"reused": False, "wall_seconds": seconds, **json.load(f)}


def random_model(encoder: str) -> str:
    """The pretrained model's architecture and shape with random weights (seeded: the same weights every time),
    saved with the same tokenizer: the only difference between the two starting points is pretraining."""
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(encoder))
    model.save_pretrained(RANDOM)
    AutoTokenizer.from_pretrained(encoder).save_pretrained(RANDOM)
    return RANDOM


def fine_tune(model: str, task: str, seed: int, extra: dict, quick: bool) -> dict:
    import run_classification

    spec = TASKS[task]
    train, test = (os.path.join(DATA, f) for f in spec["files"])
    budget = dict(BUDGET, num_train_epochs=1 if quick else spec["epochs"])
    rows = 300 if quick else spec["train_rows"]
    with tempfile.TemporaryDirectory() as out:
        argv = flags(model_name_or_path=model, train_file=train, test_file=test, text_column=spec["text_column"])
        argv += flags(output_dir=out, seed=seed, **budget, **extra)
        if rows:
            argv += flags(max_train_samples=rows)
        if quick:
            argv += flags(max_predict_samples=300)
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # its summary table would break --json's one object
            results = run_classification.main(argv)
    return {
        "accuracy": results["test_accuracy"],
        "f1_macro": results["test_f1_macro"],
        "seconds": time.perf_counter() - start,
    }


def summarize(runs: list[dict]) -> dict:
    out = {"seeds": len(runs), "seconds": float(np.mean([r["seconds"] for r in runs]))}
    for metric in ("accuracy", "f1_macro"):
        values = np.array([r[metric] for r in runs])
        out[metric] = {"mean": float(values.mean()), "std": float(values.std()), "per_seed": values.tolist()}
    return out


def cell(summary: dict, metric: str) -> str:
    return f"{summary[metric]['mean']:.4f} ± {summary[metric]['std']:.4f}"


def per_seed(summary: dict, metric: str) -> str:
    return " / ".join(f"{v:.4f}" for v in summary[metric]["per_seed"])


def tables(report: dict) -> str:
    lines = ["| task | start | test accuracy | per seed | test macro-F1 | per seed | s / run |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for task, starts in report["transfer"].items():
        for start, s in starts.items():
            lines.append(
                f"| {task} | {start} | {cell(s, 'accuracy')} | {per_seed(s, 'accuracy')} | {cell(s, 'f1_macro')} "
                f"| {per_seed(s, 'f1_macro')} | {s['seconds']:.0f} |"
            )
    lines += ["", "| task | pretrained encoder plus | test accuracy | change | test macro-F1 | change | per seed (accuracy) | s / run |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in report["options"]:
        s, base = row["summary"], report["transfer"][row["task"]][f"pretrained ({report['pretraining_text']})"]
        change = {m: s[m]["mean"] - base[m]["mean"] for m in ("accuracy", "f1_macro")}
        lines.append(
            f"| {row['task']} | {row['option']} | {cell(s, 'accuracy')} | {change['accuracy']:+.4f} | "
            f"{cell(s, 'f1_macro')} | {change['f1_macro']:+.4f} | {per_seed(s, 'accuracy')} | {s['seconds']:.0f} |"
        )
    p = report["pretraining"]
    lines += [
        "",
        f"pretraining: {p.get('train_blocks', 0):,} blocks of {p.get('train_block_size', '?')} tokens ({p.get('train_tokens', 0):,} text tokens), "
        f"train loss {p.get('train_loss', float('nan')):.3f}, held-out perplexity {p.get('eval_perplexity', 0):.1f}, "
        f"{p.get('train_tokens_per_second', 0):,.0f} tokens/s, {p.get('train_runtime', 0) / 60:.1f} min of training"
        + (" (reused)" if p.get("reused") else ""),
        f"pretrained encoder: {report['pretrained_encoder']} (recipe {os.path.relpath(report['recipe'], REPO)}, {report['pretraining_text']})",
        f"wall time {report['wall_seconds'] / 60:.1f} min; load average at start {report['load_start']}, "
        f"at end {report['load_end']}",
    ]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = seeded_task_parser(__doc__, TASKS)
    parser.add_argument("--skip_options", action="store_true", help="Only the transfer table.")
    parser.add_argument(
        "--skip_random",
        action="store_true",
        help="Leave out the random-init rows: they do not depend on the pretraining text (the same architecture, "
        "the same seeded weights) and CPU runs reproduce them to every digit.",
    )
    parser.add_argument(
        "--transductive",
        action="store_true",
        help="Pretrain also on the validation and test texts of the scored tasks (the earlier, transductive figures).",
    )
    parser.add_argument("--repretrain", action="store_true", help="Pretrain anew even if a finished run is there.")
    parser.add_argument(
        "--pretrain_steps",
        type=int,
        help="Pretrain for this many steps instead of the recipe's 3,000, into .cache/transfer/pretrained-TEXT-STEPS.",
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, 60 pretraining steps, 300 rows, 1 epoch.")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds = args.seeds[:1]
    args.text = "transductive" if args.transductive else "inductive"
    args.encoder = os.path.join(CACHE, f"pretrained-{args.text}") + (
        f"-{args.pretrain_steps}" if args.pretrain_steps else ""
    )
    start, load_start = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]

    report = {"pretraining": pretrain(args), "transfer": {}, "options": []}
    print(f"pretrained encoder: {args.encoder}", file=sys.stderr, flush=True)
    starts = {} if args.skip_random else {"random init": random_model(args.encoder)}
    starts[f"pretrained ({args.text})"] = args.encoder
    for task in args.tasks:
        report["transfer"][task] = {}
        for name, model in starts.items():
            runs = []
            for seed in args.seeds:
                runs.append(fine_tune(model, task, seed, {}, args.quick))
                print(f"# {task} / {name} / seed {seed}: {runs[-1]}", file=sys.stderr, flush=True)
            report["transfer"][task][name] = summarize(runs)
    for task, option, extra in [] if args.skip_options else OPTIONS:
        if task not in args.tasks:
            continue
        runs = []
        for seed in args.seeds:
            runs.append(fine_tune(args.encoder, task, seed, extra, args.quick))
            print(f"# {task} / {option} / seed {seed}: {runs[-1]}", file=sys.stderr, flush=True)
        report["options"].append({"task": task, "option": option, "flags": extra, "summary": summarize(runs)})

    report.update(
        wall_seconds=time.perf_counter() - start,
        load_start=load_start,
        load_end=[round(x, 2) for x in os.getloadavg()],
        seeds=args.seeds,
        budget=BUDGET,
        tasks=TASKS,
        pretrained_encoder=args.encoder,
        pretraining_text=args.text,
        recipe=RECIPES[args.text],
    )
    print(json.dumps(report, indent=1, default=str) if args.json else tables(report))
    return report


if __name__ == "__main__":
    main()
