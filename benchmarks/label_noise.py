#!/usr/bin/env python
"""How well --find_label_issues finds labels flipped on purpose.

    OMP_NUM_THREADS=2 python benchmarks/label_noise.py --model .cache/transfer/pretrained [--json]

ChnSentiCorp's train split with a share of its labels flipped at random (5%, seeded), trained with
`run_classification.py --kfold 5 --find_label_issues` (the product's own path: k-fold out-of-fold probabilities,
cleanlab's ranking), then scored against the rows we flipped: precision and recall of the flipped rows among the
top-ranked 5% of label_issues.csv (as many rows as were flipped), among the rows cleanlab flags, and the ranking's
AUROC. --model is a small pretrained encoder (benchmarks/transfer.py makes one from the text in ../shared/data);
without it a randomly initialised tiny BERT is used and the figures say so.
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import run_classification  # noqa: E402
from bertcls.model.tiny import TinyModelArguments, make_tiny_bert  # noqa: E402

DATA = os.environ.get("BERTCLS_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))


def flip(train: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows with `share` of their labels flipped (0 <-> 1), and which rows were flipped."""
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(train), int(round(share * len(train))), replace=False)
    noisy = train.copy()
    noisy.loc[flipped, "label"] = 1 - noisy.loc[flipped, "label"]
    return noisy, np.sort(flipped)


def scores(issues: pd.DataFrame, flipped: np.ndarray) -> dict:
    """Precision/recall of the flipped rows among the top-ranked rows and among cleanlab's flagged rows."""
    # source_line 2 is the first data row of the header-led train.tsv (= row 0 of the frame we flipped in)
    truth = (issues["source_line"] - 2).isin(set(flipped.tolist())).to_numpy()
    top = truth[: len(flipped)]
    flagged = truth[issues["label_issue"].to_numpy()]
    return {
        "rows": len(issues),
        "flipped": len(flipped),
        "top_share_precision": float(top.mean()),
        "top_share_recall": float(top.sum() / len(flipped)),
        "flagged": int(issues["label_issue"].sum()),
        "flagged_precision": float(flagged.mean()) if len(flagged) else 0.0,
        "flagged_recall": float(flagged.sum() / len(flipped)),
        "auroc": float(roc_auc_score(truth, -issues["label_quality"].to_numpy())),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a pretrained encoder folder (default: a random tiny BERT)")
    parser.add_argument("--rows", type=int, default=9600, help="train rows used (default: all 9,600)")
    parser.add_argument("--noise", type=float, default=0.05, help="share of labels flipped")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="bertcls-label-noise-")
    model = args.model
    if not model:
        model = make_tiny_bert(
            TinyModelArguments(
                output_dir=os.path.join(work, "tiny"), vocab_file=os.path.join(DATA, "vocab", "vocab.txt")
            )
        )
    train = pd.read_csv(os.path.join(DATA, "chnsenticorp", "train.tsv"), sep="\t", quoting=3, dtype={"text_a": str})
    train = train.iloc[: args.rows].reset_index(drop=True)
    noisy, flipped = flip(train, args.noise, args.seed)
    path = os.path.join(work, "train.tsv")
    noisy.to_csv(path, sep="\t", index=False, quoting=3)
    out = os.path.join(work, "run")
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # its summary table would break --json's one object
        results = run_classification.main(
            ["--model_name_or_path", model, "--train_file", path, "--text_column", "text_a", "--output_dir", out]
            + ["--kfold", str(args.folds), "--find_label_issues", "--num_train_epochs", str(args.epochs)]
            + ["--learning_rate", str(args.learning_rate), "--max_seq_length", str(args.max_seq_length)]
            + ["--per_device_train_batch_size", str(args.batch_size), "--validation_split_percentage", "0"]
            + ["--eval_strategy", "no", "--save_strategy", "no", "--seed", str(args.seed)]
        )
    issues = pd.read_csv(os.path.join(out, "label_issues.csv"))
    report = {
        "model": args.model or "random tiny BERT (2 x 128)",
        "noise": args.noise,
        "seed": args.seed,
        "oof_accuracy": results["oof_accuracy"],
        "seconds": round(time.perf_counter() - start, 1),
        **scores(issues, flipped),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:<22} {value:.4f}" if isinstance(value, float) else f"{key:<22} {value}")
    return report


if __name__ == "__main__":
    main()
