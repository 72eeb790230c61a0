"""ONNX export of a fine-tuned folder, checked against PyTorch on real rows before it is handed over.

    python -m bertcls export --model_name_or_path outputs/my-task --output_dir outputs/my-task-onnx
    python -m bertcls export --model_name_or_path outputs/my-task --output_dir outputs/my-task-int8 --quantize int8

The export folder holds `model.onnx` (fp32, or int8 under `--quantize int8`), config.json (label maps, the stored
preprocessing and head settings, and `bertcls_export`: how the graph was made) and the tokenizer files, so
`bertcls.shipping.predict --backend onnx` and `bertcls.shipping.serve --backend onnx` need nothing else. `export_report.json` compares
PyTorch and the export on the same rows of `--check_file` (default: the run's own test or validation file), built
exactly as in training through TrainedClassifier: argmax agreement, max |delta probability|, each one's metric on
labelled rows, and each one's speed. An fp32 graph that disagrees with PyTorch on more than 0.1% of the rows, and
an export whose metric falls more than --max_metric_drop points below PyTorch's, is an error, and nothing is
written to --output_dir.

The graph comes from torch.onnx's TorchScript exporter (dynamo=False): on torch 2.13 with transformers 5.24 it
exports these models in about a second and its graph is the one ONNX Runtime's transformer optimizer knows how to
fuse; the dynamo exporter needs the extra onnxscript package and took 15 s for the 2-layer test model. The model is
traced with eager attention: ONNX Runtime fuses that pattern into its Attention kernel (12 of 12 layers of a
BERT-base), not the one transformers 5's SDPA path exports (0 of 12). `--optimize` runs that optimizer,
`--quantize int8` ONNX Runtime's dynamic quantisation (int8 weights, activations quantised per batch at run time).
optimum-onnx is not used: its releases require transformers < 4.58.
"""

import copy
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from bertcls.config.arguments import DataArguments, check_ranges
from bertcls.config.recipes import parse_args
from bertcls.data.loading import check_columns, read_file, standardize
from bertcls.errors import UserError, exit_on_user_error
from bertcls.files import umask, write_json
from bertcls.logs import setup_logging
from bertcls.model.classifier import TorchBackend, TrainedClassifier
from bertcls.model.runtime import EXPORT_KEY, MODEL_INPUTS, ONNX_FILE, OnnxBackend, cpu_has_bf16, gold_scores

logger = logging.getLogger(__name__)

REPORT_FILE = "export_report.json"
MAX_FP32_DISAGREEMENT = 0.001  # share of rows whose fp32 prediction may differ from PyTorch's
# (low, high, low included, high included), checked as the training flags are (config.arguments.check_ranges)
RANGES = {
    "check_rows": (1, None, True, True),
    "batch_size": (1, None, True, True),
    "threads": (1, None, True, True),
    "max_metric_drop": (0, 100, True, True),
    "min_agreement": (0, 1, True, True),
}
OPSET = 17  # LayerNormalization is a single op from 17 on


@dataclass
class ExportArguments:
    model_name_or_path: str = field(metadata={"help": "A model folder written by run_classification.py."})
    output_dir: str = field(metadata={"help": "The export folder to write (model.onnx, config, tokenizer, report)."})
    quantize: str | None = field(
        default=None,
        metadata={"help": "int8: dynamic int8 quantisation with ONNX Runtime (default: fp32).", "choices": ["int8"]},
    )
    optimize: bool = field(
        default=False,
        metadata={"help": "Fuse attention, layer norms and GELU with ONNX Runtime's transformer optimizer."},
    )
    check_file: str | None = field(
        default=None,
        metadata={"help": "Rows to compare PyTorch and the export on (default: the run's test or validation file)."},
    )
    check_rows: int = field(default=1000, metadata={"help": "Compare on the first N rows of --check_file."})
    max_metric_drop: float = field(
        default=1.0,
        metadata={"help": "Fail when the export's metric on labelled check rows is more points below PyTorch's."},
    )
    min_agreement: float = field(
        default=0.99,
        metadata={
            "help": "--quantize int8: fail when int8 and the fp32 export choose the same label on fewer than this "
            "share of the check rows (labelled or not)."
        },
    )
    text_column: str | None = field(
        default=None, metadata={"help": "Text column of --check_file (default: as in training)."}
    )
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Second text column of --check_file (default: as in training)."}
    )
    label_column: str | None = field(
        default=None, metadata={"help": "Gold label column of --check_file (default: as in training)."}
    )
    column_names: list[str] | None = field(default=None, metadata={"help": "Column names of a header-less file."})
    encoding: str = field(default="utf-8", metadata={"help": "Text encoding of --check_file."})
    batch_size: int = field(default=32, metadata={"help": "Rows per forward pass in the check."})
    threads: int | None = field(
        default=None,
        metadata={
            "help": "CPU threads for both PyTorch and ONNX Runtime (intra-op) in the check (default: torch's count)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace --output_dir if it is an earlier export (it holds export_report.json); any other folder "
            "is refused. The earlier export is replaced only once the new one has passed its checks."
        },
    )


class LogitsOnly(torch.nn.Module):
    """The classifier as a graph of named tensors in, logits out."""

    def __init__(self, model, input_names: list[str]):
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs):
        return self.model(**dict(zip(self.input_names, inputs))).logits


def input_names(tokenizer) -> list[str]:
    """The model inputs the tokenizer makes (token_type_ids for BERT-family models), in a fixed order."""
    return [name for name in MODEL_INPUTS if name in tokenizer.model_input_names]


def export_graph(model, tokenizer, path: str, is_pair: bool) -> None:
    """Trace `model` into an ONNX graph at `path` with dynamic batch and sequence axes."""
    names = input_names(tokenizer)
    # Two rows of different lengths, so the traced graph sees padding; pairs, so token_type_ids holds ones.
    texts = ["这家酒店的服务很好，下次还来", "很差"]
    example = tokenizer(texts, ["位置方便", "不推荐"] if is_pair else None, padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["logits"] = {0: "batch"}
    # The exporter puts the module back into the mode it found it in, recursively: a wrapper left in training mode
    # would switch the model's dropout on for every later forward pass.
    wrapper = LogitsOnly(model, names).eval()
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")  # the attention pattern ONNX Runtime's optimizer fuses
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            # The tracer warns that transformers' mask code turns shape checks into constants; for an encoder they
            # are constants (no cache), and the parity check below runs every export on real rows anyway.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                tuple(example[name] for name in names),
                path,
                input_names=names,
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        model.set_attn_implementation(previous)


def optimize_graph(source: str, target: str, config) -> dict:
    """ONNX Runtime's transformer optimizer (BERT fusions); returns how many of each fused op it made."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        source, model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
    )
    optimized.save_model_to_file(target)
    return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}


def quantize_graph(source: str, target: str) -> None:
    """Dynamic int8 quantisation: int8 weights per output channel, activations quantised per batch at run time."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        source,
        target,
        weight_type=QuantType.QInt8,
        per_channel=True,
        # Fused ops (com.microsoft domain) defeat ONNX's shape inference; their outputs are float tensors.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


# -- the check ----------------------------------------------------------------------------------------------------


def default_check_file(run_dir: str) -> str:
    """The run's own test file, else its validation file, as its recipe.json names them."""
    recipe_path = os.path.join(run_dir, "recipe.json")
    recipe = {}
    if os.path.isfile(recipe_path):
        with open(recipe_path, encoding="utf-8") as f:
            recipe = json.load(f)
    for key in ("test_file", "validation_file"):
        if recipe.get(key) and os.path.isfile(recipe[key]):
            return recipe[key]
    named = [recipe[k] for k in ("test_file", "validation_file") if recipe.get(k)]
    why = f"the run's {' and '.join(named)} cannot be found" if named else "the run names no test or validation file"
    raise UserError(
        f"no rows to check the export on: {why}",
        fix="pass --check_file with rows in the training file's format (labelled rows also compare the metric)",
    )


def check_rows(classifier: TrainedClassifier, args: ExportArguments):
    """(data_args, standardized rows, gold labels or None) of the first --check_rows rows of the check file."""
    given = {k: getattr(args, k) for k in ("text_column", "text_pair_column", "label_column") if getattr(args, k)}
    base = dataclasses.replace(DataArguments(), column_names=args.column_names, encoding=args.encoding, **given)
    data_args = classifier.data_args(base, given=set(given))
    path = args.check_file or default_check_file(classifier.path)
    raw, source = read_file(path, data_args)
    if args.check_rows < 1:
        raise UserError(f"--check_rows must be at least 1, got {args.check_rows}")
    raw = raw.select(range(min(args.check_rows, len(raw))))
    check_columns(raw, source, data_args, need_label=False)
    rows, _ = standardize(raw, source, data_args, labels=None, split="test")
    gold = raw[data_args.label_column] if data_args.label_column in raw.column_names else None
    return path, data_args, rows, gold


def timed_probabilities(classifier: TrainedClassifier, encoded, rows, data_args, batch_size: int):
    """Probabilities of every row, and rows/s of the forward passes: inputs are built once for every backend
    (`encoded`, by TrainedClassifier.encode), and one warm-up row runs first (ONNX Runtime allocates on its first
    run)."""
    first = rows.select(range(1))
    classifier.predict_texts(
        first["text"], first["text_pair"] if "text_pair" in rows.column_names else None, data_args
    )
    start = time.perf_counter()
    logits = classifier.logits(encoded, len(rows), data_args, batch_size)
    return classifier.probabilities(logits), len(rows) / (time.perf_counter() - start)


def gold_metric(gold, probs: np.ndarray, labels, decision) -> dict | None:
    """accuracy and macro-F1 (multi-label: subset accuracy, micro- and macro-F1) over the rows with a known gold
    label, and `metric`, the one export failures are judged by. The same reading of gold labels as predict's."""
    if gold is None:
        return None
    scores = gold_scores(gold, decision(probs), labels, decision.positive)
    if scores is None:
        return None
    if labels.multi_label:
        keys, metric = ("subset_accuracy", "f1_micro", "f1_macro", "samples"), "f1_micro"
    elif labels.regression:  # judged by a score where higher is better, like accuracy
        keys, metric = ("pearson", "spearman", "mse", "samples"), "pearson"
    else:
        keys, metric = ("accuracy", "f1_macro", "samples"), "accuracy"
    return {"metric": metric, **{k: scores[k] for k in keys}}


REGRESSION_TOLERANCE = 1e-3  # a regression export agrees with PyTorch on a row within this relative difference


def compare(reference: np.ndarray, probs: np.ndarray, labels, decision) -> dict:
    """How far an export's probabilities are from PyTorch's on the same rows, and how often they decide alike."""
    ref_decided = decision(reference)
    decided = decision(probs)
    if labels.regression:  # the same value up to float noise
        same = np.abs(ref_decided - decided) <= REGRESSION_TOLERANCE * np.maximum(1.0, np.abs(ref_decided))
    else:
        same = (ref_decided == decided).all(axis=-1) if labels.multi_label else ref_decided == decided
    return {
        "agreement": float(same.mean()),
        "disagreeing_rows": [int(i) for i in np.flatnonzero(~same)[:20]],
        "max_abs_prob_diff": float(np.abs(reference - probs).max()),
    }


def check_export(name, classifier, reference, encoded, rows, data_args, gold, args, report, fp32=None):
    """Run one export on the check rows, add its figures to `report[name]`, and fail when it is broken; returns its
    probabilities. `fp32`: the fp32 export's probabilities, which a quantized export must agree with."""
    labels, decision = classifier.labels, classifier.decision(data_args)
    try:
        probs, speed = timed_probabilities(classifier, encoded, rows, data_args, args.batch_size)
    except Exception as e:  # ONNX Runtime refusing the graph's inputs is a broken export, said in one line
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"{name} fails on the check rows: {message}",
            fix="report it with the model's config.json; meanwhile serve the PyTorch folder (--backend torch)",
        ) from e
    entry = {**compare(reference, probs, labels, decision), "rows_per_s": speed}
    scores = gold_metric(gold, probs, labels, decision)
    if scores:
        entry["scores"] = scores
        torch_value = report["torch"]["scores"][scores["metric"]]
        entry["metric_drop_points"] = 100 * (torch_value - scores[scores["metric"]])
    entry["speedup_over_torch"] = speed / report["torch"]["rows_per_s"]
    report[name] = entry
    logger.info(
        "%s: agrees with PyTorch on %.2f%% of %d rows, max |delta p| %.2g, %.1f rows/s (%.2fx PyTorch)",
        name,
        100 * entry["agreement"],
        len(rows),
        entry["max_abs_prob_diff"],
        speed,
        entry["speedup_over_torch"],
    )
    if name.endswith("fp32") and 1 - entry["agreement"] > MAX_FP32_DISAGREEMENT:
        raise UserError(
            f"the fp32 export disagrees with PyTorch on {1 - entry['agreement']:.2%} of {len(rows)} check rows "
            f"(rows {entry['disagreeing_rows'][:5]}; max |delta p| {entry['max_abs_prob_diff']:.3g}), over the "
            f"{MAX_FP32_DISAGREEMENT:.1%} allowed: the export is broken",
            fix="report it with the model's config.json; meanwhile serve the PyTorch folder (--backend torch)",
        )
    if fp32 is not None:
        against = compare(fp32, probs, labels, decision)
        entry["agreement_with_fp32"] = against["agreement"]
        entry["min_agreement"] = args.min_agreement
        entry["batch_dependence"] = batch_dependence(classifier, encoded, rows, data_args, probs, args.batch_size)
        if against["agreement"] < args.min_agreement:
            raise UserError(
                f"{name} chooses the same label as the fp32 export on {against['agreement']:.2%} of {len(rows)} check "
                f"rows (rows {against['disagreeing_rows'][:5]}), under --min_agreement {args.min_agreement}",
                fix="export without --quantize (fp32), or lower --min_agreement if you accept that",
            )
    if scores and entry["metric_drop_points"] > args.max_metric_drop:
        raise UserError(
            f"{name} scores {scores['metric']} {scores[scores['metric']]:.4f} on the check rows, "
            f"{entry['metric_drop_points']:.2f} points below PyTorch's {torch_value:.4f} (--max_metric_drop "
            f"{args.max_metric_drop})",
            fix="export without --quantize (fp32), or raise --max_metric_drop if the check file is small",
        )
    return probs


TIMING_ROUNDS = 3
TIMING_ROWS = 128


def optimize_effect(optimized, unoptimized, encoded, rows, data_args, batch_size: int) -> dict:
    """rows/s of the shipped graph with and without --optimize, in interleaved rounds (median and range), and a
    warning when the optimizer made it slower: on some CPUs its fused int8 kernels lose to the plain graph."""
    if len(rows) > TIMING_ROWS:  # a sample keeps the extra passes affordable for a large model and check file
        rows = rows.select(range(TIMING_ROWS))
        encoded = optimized.encode(rows, data_args)
    speeds = {"optimized": [], "unoptimized": []}
    for _ in range(TIMING_ROUNDS):
        for name, classifier in (("unoptimized", unoptimized), ("optimized", optimized)):
            start = time.perf_counter()
            classifier.logits(encoded, len(rows), data_args, batch_size)
            speeds[name].append(len(rows) / (time.perf_counter() - start))
    effect = {
        f"{name}_rows_per_s": {"median": float(np.median(v)), "min": min(v), "max": max(v)}
        for name, v in speeds.items()
    }
    ratio = effect["optimized_rows_per_s"]["median"] / effect["unoptimized_rows_per_s"]["median"]
    effect.update(rounds=TIMING_ROUNDS, rows=len(rows), speedup=ratio, slower=ratio < 1)
    if ratio < 1:
        logger.warning(
            "--optimize made this export slower here: %.1f rows/s against %.1f without it (median of %d rounds); "
            "export without --optimize",
            effect["optimized_rows_per_s"]["median"],
            effect["unoptimized_rows_per_s"]["median"],
            TIMING_ROUNDS,
        )
    return effect


def fastest_form(report: dict, args: ExportArguments) -> dict:
    """The fastest of the forms measured on the check rows that stays within the gates (agreement with PyTorch of
    at least --min_agreement, metric drop at most --max_metric_drop), with the figures it was chosen by."""
    figures = {}
    for name in ("torch", "torch_bf16", "onnx_fp32", f"onnx_{args.quantize}" if args.quantize else None):
        entry = report.get(name)
        if not entry:
            continue
        within = name == "torch" or (
            entry.get("agreement_with_fp32", entry["agreement"]) >= args.min_agreement
            and entry.get("metric_drop_points", 0) <= args.max_metric_drop
        )
        figures[name] = {"rows_per_s": entry["rows_per_s"], "within_gates": within}
    best = max((n for n, f in figures.items() if f["within_gates"]), key=lambda n: figures[n]["rows_per_s"])
    how = {
        "torch": "the run's folder (--backend torch)",
        "torch_bf16": "the run's folder with --backend torch_bf16",
    }.get(best, "this export folder")
    return {"form": best, "serve": how, "figures": figures}


def batch_dependence(classifier, encoded, rows, data_args, batched: np.ndarray, batch_size: int) -> dict:
    """How often the same rows get another label at batch 1 than in batches of 32: dynamic int8 quantizes each
    batch's activations with that batch's range, so a row's answer depends on its batch-mates."""
    if len(rows) < 2:
        return {"rows": len(rows), "flipped_rows": 0, "flip_rate": 0.0, "max_abs_prob_diff": 0.0}
    at_32 = batched
    if batch_size != 32:  # `batched` ran at --batch_size
        at_32 = classifier.probabilities(classifier.logits(encoded, len(rows), data_args, 32))
    alone = classifier.probabilities(classifier.logits(encoded, len(rows), data_args, 1))
    decision = classifier.decision(data_args)
    differ = compare(at_32, alone, classifier.labels, decision)
    flipped = round((1 - differ["agreement"]) * len(rows))
    return {
        "batch_sizes": [1, 32],
        "rows": len(rows),
        "flipped_rows": flipped,
        "flip_rate": 1 - differ["agreement"],
        "max_abs_prob_diff": differ["max_abs_prob_diff"],
    }


# -- the folder ----------------------------------------------------------------------------------------------------


def check_output_dir(args: ExportArguments) -> None:
    """Refuse an --output_dir whose replacement would lose work: the source folder itself, a folder inside it or
    one holding it, a file, or a non-empty folder that is not an earlier export (--overwrite_output_dir replaces
    only those)."""
    out, source = os.path.realpath(args.output_dir), os.path.realpath(args.model_name_or_path)
    fix = "pass an --output_dir outside the model folder, e.g. beside it"
    if out == source:
        raise UserError(f"--output_dir {args.output_dir} is the folder being exported", fix=fix)
    if os.path.commonpath([out, source]) == source:
        raise UserError(f"--output_dir {args.output_dir} lies inside the folder being exported", fix=fix)
    if os.path.commonpath([out, source]) == out:
        raise UserError(
            f"--output_dir {args.output_dir} holds the folder being exported ({args.model_name_or_path}): replacing "
            "it would delete the model",
            fix=fix,
        )
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--output_dir {args.output_dir} is a file", fix="pass a folder path for the export")
    if not (os.path.isdir(out) and os.listdir(out)):
        return
    if not args.overwrite_output_dir:
        raise UserError(
            f"--output_dir {args.output_dir} exists and is not empty",
            fix="pass --overwrite_output_dir to replace an earlier export there, or choose another --output_dir",
        )
    if not is_export_folder(out):
        raise UserError(
            f"--output_dir {args.output_dir} is not an earlier export (it has no {REPORT_FILE} and {ONNX_FILE}): "
            "--overwrite_output_dir replaces only an export folder",
            fix="choose another --output_dir, or move that folder's files away yourself",
        )


def is_export_folder(folder: str) -> bool:
    """Whether `folder` is what this command writes: model.onnx, export_report.json, and a config that says so."""
    config = os.path.join(folder, "config.json")
    if not all(os.path.isfile(os.path.join(folder, f)) for f in (REPORT_FILE, ONNX_FILE, "config.json")):
        return False
    try:
        with open(config, encoding="utf-8") as f:
            return EXPORT_KEY in json.load(f)
    except (OSError, ValueError):
        return False


def replace_folder(staging: str, out: str) -> None:
    """Move the finished export into place; an earlier export there is removed only once the new one is whole."""
    old = None
    if os.path.isdir(out):
        old = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out)), prefix=".old-export-")
        os.replace(out, os.path.join(old, "folder"))
    os.replace(staging, out)
    if old:
        shutil.rmtree(old)


def export(args: ExportArguments) -> dict:
    """Export, check and write the folder; returns the report."""
    check_ranges(args, RANGES)
    check_output_dir(args)
    # One thread count for every backend, so their speeds compare: ONNX Runtime ignores torch's and OMP's settings.
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    torch_classifier = TrainedClassifier.load(args.model_name_or_path, device="cpu", backend="torch")
    check_file, data_args, rows, gold = check_rows(torch_classifier, args)
    labels, decision = torch_classifier.labels, torch_classifier.decision(data_args)
    encoded = torch_classifier.encode(rows, data_args)  # the same model inputs for every backend
    reference, speed = timed_probabilities(torch_classifier, encoded, rows, data_args, args.batch_size)
    report = {
        "model": os.path.abspath(args.model_name_or_path),
        "check_file": os.path.abspath(check_file),
        "rows": len(rows),
        "labelled_rows": 0 if gold is None else len(gold),
        "batch_size": args.batch_size,
        "threads": {"torch": torch.get_num_threads()},
        "torch": {"rows_per_s": speed},
    }
    scores = gold_metric(gold, reference, labels, decision)
    if scores:
        report["torch"]["scores"] = scores
    if cpu_has_bf16():  # the fastest form on such CPUs may be no export at all: measured, and gated alike
        model = torch_classifier.model
        bf16 = TrainedClassifier(
            torch_classifier.path, model.config, torch_classifier.tokenizer, TorchBackend(model, "cpu", bf16=True)
        )
        probs, speed = timed_probabilities(bf16, encoded, rows, data_args, args.batch_size)
        entry = {**compare(reference, probs, labels, decision), "rows_per_s": speed}
        entry["speedup_over_torch"] = speed / report["torch"]["rows_per_s"]
        bf16_scores = gold_metric(gold, probs, labels, decision)
        if bf16_scores:
            entry["scores"] = bf16_scores
            entry["metric_drop_points"] = 100 * (scores[scores["metric"]] - bf16_scores[scores["metric"]])
        report["torch_bf16"] = entry

    parent = os.path.dirname(os.path.abspath(args.output_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(os.path.abspath(args.output_dir))}.")
    try:
        config = copy.deepcopy(torch_classifier.config)
        model_file = os.path.join(staging, ONNX_FILE)
        start = time.perf_counter()
        export_graph(torch_classifier.model, torch_classifier.tokenizer, model_file, bool(data_args.text_pair_column))
        made = {
            "exporter": "torch.onnx (TorchScript)",
            "opset": OPSET,
            "inputs": input_names(torch_classifier.tokenizer),
        }
        plain = os.path.join(staging, "unoptimized.onnx")  # kept to time --optimize against; removed below
        if args.optimize:
            shutil.copyfile(model_file, plain)
            made["fused_ops"] = optimize_graph(model_file, os.path.join(staging, "optimized.onnx"), config)
            os.replace(os.path.join(staging, "optimized.onnx"), model_file)
        made.update(
            precision="fp32",
            optimized=args.optimize,
            exported_from=os.path.abspath(args.model_name_or_path),
            versions=_versions(),
        )
        made["tokenizer"] = save_tokenizer(torch_classifier.tokenizer, data_args, staging)
        _save_config(config, made, staging)
        # Loaded back from the folder itself: its config and tokenizer files are all it needs to run.
        shipped = TrainedClassifier.load(staging, backend="onnx", threads=threads)
        report["threads"]["onnxruntime_intra_op"] = shipped.backend.threads
        fp32 = check_export("onnx_fp32", shipped, reference, encoded, rows, data_args, gold, args, report)
        if args.quantize:
            quantize_graph(model_file, os.path.join(staging, "quantized.onnx"))
            os.replace(os.path.join(staging, "quantized.onnx"), model_file)
            made["precision"] = args.quantize
            _save_config(config, made, staging)
            shipped = TrainedClassifier.load(staging, backend="onnx", threads=threads)
            name = f"onnx_{args.quantize}"
            check_export(name, shipped, reference, encoded, rows, data_args, gold, args, report, fp32=fp32)
            if args.optimize:
                quantize_graph(plain, os.path.join(staging, "quantized.onnx"))
                os.replace(os.path.join(staging, "quantized.onnx"), plain)
        if args.optimize:
            unoptimized = TrainedClassifier(staging, shipped.config, shipped.tokenizer, OnnxBackend(plain, threads))
            report["optimize"] = optimize_effect(shipped, unoptimized, encoded, rows, data_args, args.batch_size)
            os.remove(plain)
        made["seconds"] = round(time.perf_counter() - start, 1)
        report["exported"] = made
        report["fastest"] = fastest_form(report, args)
        _save_config(config, made, staging)
        write_json(os.path.join(staging, REPORT_FILE), report)
        os.chmod(staging, 0o777 & ~umask())  # mkdtemp made it private; the export is an ordinary folder
        replace_folder(staging, args.output_dir)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)
    return report


def save_tokenizer(tokenizer, data_args, folder: str) -> dict:
    """The tokenizer files, with tokenizer.json set to truncate where training did and to pad nothing, so a
    consumer of tokenizer.json alone (tokenizers.Tokenizer.from_file, a Rust service) builds inputs the graph
    takes. Returns what tokenizer.json does, for the report: head_tail and sliding windows are not expressible
    there (such a consumer cuts the head only); bertcls predict and serve build them as in training."""
    shipped = copy.deepcopy(tokenizer)
    backend = shipped.backend_tokenizer
    strategy = data_args.truncation if data_args.truncation in ("only_first", "only_second") else "longest_first"
    backend.enable_truncation(data_args.max_seq_length, strategy=strategy, direction=data_args.truncation_side)
    backend.no_padding()
    shipped.save_pretrained(folder)
    cut = "windows" if data_args.sliding_window else data_args.truncation
    return {
        "truncation": strategy,
        "max_length": data_args.max_seq_length,
        "direction": data_args.truncation_side,
        "padding": None,
        "as_trained": cut not in ("head_tail", "windows"),
    }


def _save_config(config, made: dict, folder: str) -> None:
    """config.json with how the graph was made; label maps, preprocessing and head settings come along."""
    setattr(config, EXPORT_KEY, made)
    config.save_pretrained(folder)


def _versions() -> dict:
    import onnx
    import onnxruntime
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def shipped_name(args: ExportArguments) -> str:
    return f"onnx_{args.quantize}" if args.quantize else "onnx_fp32"


@exit_on_user_error
def main(argv=None) -> dict:
    setup_logging()
    (args,) = parse_args(argv, (ExportArguments,))
    report = export(args)
    shipped = report.get(f"onnx_{args.quantize}") if args.quantize else report["onnx_fp32"]
    fastest = report["fastest"]
    if fastest["form"] != shipped_name(args):
        logger.warning(
            "the fastest form on these check rows within the gates is %s (%.1f rows/s, against %.1f for this export):"
            " serve %s",
            fastest["form"],
            fastest["figures"][fastest["form"]]["rows_per_s"],
            shipped["rows_per_s"],
            fastest["serve"],
        )
    print(
        f"exported {args.model_name_or_path} to {args.output_dir} ({report['exported']['precision']}"
        f"{', optimized' if args.optimize else ''}): agrees with PyTorch on {shipped['agreement']:.2%} of "
        f"{report['rows']} rows of {report['check_file']}, max |delta p| {shipped['max_abs_prob_diff']:.2g}, "
        f"{shipped['speedup_over_torch']:.2f}x PyTorch's rows/s; report: {os.path.join(args.output_dir, REPORT_FILE)}"
    )
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
