"""The run's arguments: model, data, and training options.

Every field has `help` metadata, so `python run_classification.py --help` is the reference. Fields named in
PATH_FIELDS are resolved against a recipe file's folder when they come from a recipe.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import TrainingArguments

from bertcls.errors import UserError

logger = logging.getLogger(__name__)

# Fields holding paths: "file" always names a local path; "file_or_hub" may also be a Hub id.
PATH_FIELDS = {
    "model_name_or_path": "file_or_hub",
    "tokenizer_name": "file_or_hub",
    "dataset_name": "file_or_hub",
    "train_file": "file",
    "validation_file": "file",
    "test_file": "file",
    # bertcls.pretrain.run's own path fields (its recipes are parsed by the same code)
    "from_task": "file",
    "config_name": "file_or_hub",
    # bertcls.distill.run's
    "teacher": "file",
    "student": "file_or_hub",
    "unlabelled_file": "file",
    "augment_model": "file_or_hub",
}


# The range of every numeric option, checked when the arguments are parsed (before anything is loaded), so a bad
# value is one line naming the flag instead of a traceback from deep inside scikit-learn or torch.
# name: (low, high, low_included, high_included); None = no bound. None values (unset options) are not checked.
SEED_MAX = 2**32 - 1
RANGES = {
    # model
    "head_hidden_size": (1, None, True, True),
    "head_dropout": (0, 1, True, False),
    # data
    "multi_label_threshold": (0, 1, False, False),
    "label_thresholds": (0, 1, False, False),
    "decision_threshold": (0, 1, False, False),
    "validation_split_percentage": (0, 100, True, False),
    "max_seq_length": (1, None, True, True),
    "head_tokens": (0, None, True, True),
    "stride": (0, None, True, True),
    "max_train_samples": (1, None, True, True),
    "max_eval_samples": (1, None, True, True),
    "max_predict_samples": (1, None, True, True),
    "shuffle_seed": (0, SEED_MAX, True, True),
    "preprocessing_num_workers": (1, None, True, True),
    # training
    "learning_rate": (0, None, False, True),
    "weight_decay": (0, None, True, True),
    "warmup_steps": (0, None, True, True),
    "num_train_epochs": (0, None, True, True),
    "per_device_train_batch_size": (1, None, True, True),
    "per_device_eval_batch_size": (1, None, True, True),
    "gradient_accumulation_steps": (1, None, True, True),
    "eval_accumulation_steps": (1, None, True, True),
    "max_grad_norm": (0, None, True, True),
    "logging_steps": (0, None, False, True),
    "eval_steps": (0, None, False, True),
    "save_steps": (0, None, False, True),
    "save_total_limit": (1, None, True, True),
    "seed": (0, SEED_MAX, True, True),
    "data_seed": (0, SEED_MAX, True, True),
    "kfold_seed": (0, SEED_MAX, True, True),
    "validation_split_seed": (0, SEED_MAX, True, True),
    "dataloader_num_workers": (0, None, True, True),
    "adam_beta1": (0, 1, True, False),
    "adam_beta2": (0, 1, True, False),
    "adam_epsilon": (0, None, False, True),
    "label_smoothing_factor": (0, 1, True, False),
    "pad_to_multiple_of": (1, None, True, True),
    "layerwise_lr_decay": (0, 1, False, True),
    "focal_gamma": (0, None, True, True),
    "adv_epsilon": (0, None, False, True),
    "rdrop_alpha": (0, None, True, True),
    "early_stopping_patience": (1, None, True, True),
    "early_stopping_threshold": (0, None, True, True),
}


# Where a default differs from transformers' examples/pytorch/text-classification/run_classification.py (whose habits
# our users bring), --help says so with this mark; docs/differences-from-transformers.md says why.
DIFFERENCES_PAGE = "docs/differences-from-transformers.md"


def differs(reference: str) -> str:
    """The --help mark of a default that differs from transformers' run_classification.py."""
    return f" [Differs from transformers' run_classification.py: {reference}; see {DIFFERENCES_PAGE}.]"


def check_ranges(args, ranges: dict | None = None) -> None:
    """Every numeric field of `args` named in `ranges` (default: RANGES, the training flags'), as (low, high,
    low included, high included), lies in its range, else one UserError naming the flag."""
    for name, (low, high, low_in, high_in) in (RANGES if ranges is None else ranges).items():
        values = getattr(args, name, None)
        for value in values if isinstance(values, list) else [values]:
            if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            too_low = low is not None and (value < low or (value == low and not low_in))
            too_high = high is not None and (value > high or (value == high and not high_in))
            if too_low or too_high:
                raise UserError(f"--{name} must be {_describe_range(low, high, low_in, high_in)}, got {value}")


def _describe_range(low, high, low_in, high_in) -> str:
    if high is None:
        return f"{'at least' if low_in else 'above'} {low}"
    return f"in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"


@dataclass(kw_only=True)
class HubArguments:
    """Where a checkpoint on the Hugging Face Hub is fetched from: every command that loads one takes these flags
    (keyword-only, so a subclass may still have required fields)."""

    token: str | None = field(
        default=None,
        metadata={
            "help": "Hugging Face Hub token for private models and datasets (default: the one `hf auth login` "
            "stored, or HF_TOKEN)."
        },
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where downloaded models are stored (default: the Hugging Face cache)."}
    )
    model_revision: str = field(default="main", metadata={"help": "Hub branch, tag or commit of the model."})
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run Python code shipped inside a Hub model repo. Off: only enable for repos you trust."},
    )

    def hub_options(self) -> dict:
        """These settings as the keyword arguments of from_pretrained."""
        return {
            "cache_dir": self.cache_dir,
            "revision": self.model_revision,
            "trust_remote_code": self.trust_remote_code,
            "token": self.token,
        }


@dataclass
class ModelArguments(HubArguments):
    model_name_or_path: str = field(
        metadata={
            "help": "Hub id (e.g. hfl/chinese-bert-wwm-ext) or local folder of the encoder to fine-tune, or a "
            "folder fine-tuned by this script (with --do_eval / --do_predict alone: evaluated as it was trained). "
            "Release zips (bert_config.json + pytorch_model.bin + vocab.txt) work as they are; pytorch_model.bin is "
            "read with torch's weights-only loader (tensors only, no code runs).",
        }
    )
    config_name: str | None = field(
        default=None,
        metadata={"help": "Config (Hub id or folder) to use when it differs from model_name_or_path's."},
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "Tokenizer to use when it differs from model_name_or_path."},
    )
    use_fast_tokenizer: bool = field(
        default=True,
        metadata={
            "help": "Use a fast (Rust) tokenizer (passed to AutoTokenizer; transformers 5 always builds the fast one "
            "and ignores false)."
        },
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={
            "help": "Re-initialise the classifier when the checkpoint was fine-tuned for a different number of "
            "labels (re-heading an already fine-tuned model)."
        },
    )
    head: Literal["linear", "mlp"] = field(
        default="linear",
        metadata={
            "help": "Classifier head. linear: the model's stock head. mlp: dropout -> Linear -> activation -> "
            "dropout -> Linear over the pooled vector, with its own loss."
        },
    )
    pooling: Literal["cls", "mean"] = field(
        default="cls",
        metadata={
            "help": "Sentence vector for the head. cls: the stock pooler ([CLS]); mean: mean of the last hidden "
            "states over real (non-pad) tokens. mean implies the custom head."
        },
    )
    head_hidden_size: int | None = field(
        default=None, metadata={"help": "Hidden width of the mlp head (default: the encoder's hidden size)."}
    )
    head_dropout: float | None = field(
        default=None, metadata={"help": "Dropout in the custom head (default: the encoder's hidden dropout)."}
    )
    head_activation: str = field(
        default="gelu", metadata={"help": "Activation of the mlp head: any name in transformers' ACT2FN."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Change settings of the model's config before the weights load, as key=value pairs separated "
            "by commas, e.g. attention_probs_dropout_prob=0 (on CPU this lets attention take its fused kernel: "
            "faster and less memory, see docs/performance.md). Keys must exist in config.json.",
        },
    )

    def __post_init__(self):
        check_ranges(self)


@dataclass
class DataArguments:
    dataset_name: str | None = field(
        default=None, metadata={"help": "A Hub dataset id or local dataset folder, instead of files."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    train_file: str | None = field(
        default=None,
        metadata={"help": "Training data: .csv, .tsv, .json, .jsonl, .txt (label<TAB>text) or .parquet."},
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Validation data, same formats as train_file."}
    )
    test_file: str | None = field(
        default=None,
        metadata={"help": "Test data; labels optional (predictions are written either way)."},
    )
    train_split_name: str = field(
        default="train", metadata={"help": "The split of --dataset_name to train on (as in transformers' script)."}
    )
    validation_split_name: str = field(
        default="validation",
        metadata={"help": "The split of --dataset_name to validate on (also found: dev, valid)."},
    )
    test_split_name: str = field(default="test", metadata={"help": "The split of --dataset_name to predict."})
    remove_splits: str | None = field(
        default=None,
        metadata={
            "help": "Splits of --dataset_name to drop before anything else, comma-separated, e.g. unsupervised."
        },
    )
    remove_columns: str | None = field(
        default=None,
        metadata={"help": "Columns to drop from every split before anything else, comma-separated."},
    )
    # One concept, one field: the reference script's spellings are aliases of the same field, not copies.
    text_column: str = field(
        default="text",
        metadata={
            "aliases": ["--text_column_names", "--text_column_name"],
            "help": "Column holding the (first) text; with no text column given, a file without `text` but with "
            "`sentence` (the reference's default) uses `sentence`, logged. Several columns, comma-separated "
            "(`a,b,c`, the reference's --text_column_names), are joined into one text by --text_column_delimiter; "
            "a true sentence pair is --text_pair_column." + differs("default text column `sentence`"),
        },
    )
    text_column_delimiter: str = field(
        default=" ",
        metadata={"help": "Joins the columns of a comma-separated --text_column into one text (as in the reference)."},
    )
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Column holding the second text; setting it makes this a sentence-pair task."}
    )
    label_column: str = field(
        default="label",
        metadata={
            "aliases": ["--label_column_name"],
            "help": "Column holding the label (for --multi_label: a JSON list, or labels cut by --label_delimiter; "
            "for regression: a number).",
        },
    )
    do_regression: bool | None = field(
        default=None,
        metadata={
            "help": "Regression: predict a number (num_labels 1, MSE loss; metrics mse, rmse, mae, pearson, "
            "spearman). Default, as in the reference: on when the train label column holds numbers that are not all "
            "integers (logged with the reason); --do_regression false keeps such a column as classes."
        },
    )
    multi_label: bool = field(
        default=False,
        metadata={
            "help": "Each row may have any number of labels (sigmoid + binary cross-entropy per label). Switched on "
            "by itself, with a log line, when the train label column holds lists."
        },
    )
    label_delimiter: str | None = field(
        default=None,
        metadata={
            "help": "For --multi_label: the string between a row's labels (e.g. `|` or `,`). JSON-list cells "
            '(`["a", "b"]`) need none. Also joins the predicted labels in predictions.csv (`|` when unset).'
        },
    )
    multi_label_threshold: float = field(
        default=0.5,
        metadata={"help": "For --multi_label: a label is predicted when its probability is at or above this."},
    )
    label_thresholds: list[float] | None = field(
        default=None,
        metadata={
            "help": "For --multi_label: one threshold per label, in label order, instead of --multi_label_threshold. "
            "--tune_threshold sets them."
        },
    )
    decision_threshold: float | None = field(
        default=None,
        metadata={
            "help": "Two-class tasks: predict the positive label (--positive_label) when its probability is at "
            "least this. Default: the more probable label. --tune_threshold sets it."
        },
    )
    tune_threshold: bool = field(
        default=False,
        metadata={
            "help": "After training, choose on the validation split (never the test split) the decision threshold "
            "of a two-class task, or one threshold per label of a multi-label task, that maximises "
            "--metric_for_best_model (default f1_macro); store it with the model, where predict, eval-only runs, "
            "export and serve use it. With --kfold, chosen on the out-of-fold predictions."
        },
    )
    class_names: list[str] | None = field(
        default=None,
        metadata={
            "aliases": ["--label_names"],
            "help": "Explicit label order (id 0 first). Default: numeric order for integer labels, else sorted "
            "strings. Also admits labels that train lacks. --label_names is its old spelling (the Trainer's "
            "label_names, the input keys that hold labels, is not settable here: inputs carry them as `labels`).",
        },
    )
    positive_label: str | None = field(
        default=None,
        metadata={
            "help": "Two-class tasks: the label whose precision, recall and F1 are reported. Default: the label a "
            "person means by positive (1, true, yes, pos, positive, 正面, 积极, 好评, 正向, 正例, ...), else the "
            "second in label order; the choice is logged and written to the results and the model card."
        },
    )
    allow_many_classes: bool = field(
        default=False,
        metadata={
            "help": "Accept a single-label train column with more than 50 classes and more classes than half its "
            "rows (stopped by default: that is usually a text column read as labels)."
        },
    )
    column_names: list[str] | None = field(
        default=None,
        metadata={
            "help": "Column names for files WITHOUT a header line (csv/tsv/txt), in file order, e.g. "
            "`--column_names text label`. Header-less .txt files default to `label text`."
        },
    )
    encoding: str = field(default="utf-8", metadata={"help": "Text encoding of the data files (e.g. gbk, gb18030)."})
    drop_invalid_rows: bool = field(
        default=False,
        metadata={
            "help": "Drop train/validation rows with empty text or a missing label (the count is logged) instead "
            "of stopping with an error."
        },
    )
    drop_duplicate_rows: bool = field(
        default=False,
        metadata={
            "help": "Drop train rows that repeat an earlier train row's text and label (the count is logged; rows of "
            "a text with conflicting labels stay, for you or --find_label_issues to judge). Before a validation "
            "split is held out, so copies cannot land on both sides."
        },
    )
    drop_leaked_rows: bool = field(
        default=False,
        metadata={
            "help": "Drop train rows whose text also occurs in the validation or test split (counted in the log); "
            "the held-out splits stay as they are. Without it the data-health report counts them."
        },
    )
    validation_split_percentage: float = field(
        default=10.0,
        metadata={
            "help": "When no validation data is given, hold out this percent of train (stratified by label, "
            "seeded by --validation_split_seed, default --seed). 0 disables."
            + differs("no validation split unless one is given")
        },
    )
    validation_split_seed: int | None = field(
        default=None,
        metadata={
            "help": "Seed of the rows a run sees: the validation split held out from train and the --max_*_samples "
            "samples (default: --seed). A search that varies "
            "`seed` keeps one split for every trial, and its best_recipe.json sets this, so the final run validates "
            "on the same rows as the trial it reproduces."
        },
    )
    max_seq_length: int = field(
        default=512,
        metadata={
            "help": "Maximum tokens per input including [CLS]/[SEP]; must fit the model's position limit."
            + differs("128")
        },
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={
            "help": "Pad every row to max_seq_length (fixed shapes, e.g. for accelerators that recompile per shape). "
            "Default: each batch is padded to its own longest row, which is faster." + differs("True")
        },
    )
    shuffle_train_dataset: bool = field(
        default=False,
        metadata={"help": "Shuffle the train split once, seeded by --shuffle_seed, before anything else (reference)."},
    )
    shuffle_seed: int = field(default=42, metadata={"help": "Seed of --shuffle_train_dataset."})
    metric_name: str | None = field(
        default=None,
        metadata={
            "help": "The reference's evaluation metric: a metric this script computes anyway (accuracy, f1, "
            "precision, recall; mse, mae, pearsonr, spearmanr for regression) is reported under our names with no "
            "download; any other name is loaded with `evaluate` (a local metric folder, or a Hub name, which needs "
            "network access) and added like --extra_metrics."
        },
    )
    truncation: Literal["longest_first", "only_first", "only_second", "head_tail"] = field(
        default="longest_first",
        metadata={
            "help": "How over-long inputs are cut. longest_first: trim the longer text of a pair first; "
            "only_first / only_second: trim only that text of a pair; head_tail: keep the first head_tokens "
            "and the last tokens of a long single text (Sun et al. 2019)."
        },
    )
    truncation_side: Literal["right", "left"] = field(
        default="right", metadata={"help": "Cut tokens from the end (right) or the start (left) of a text."}
    )
    head_tokens: int = field(
        default=128,
        metadata={
            "help": "For head_tail: tokens kept from the start; the rest of max_seq_length comes from the end "
            "(128 of 512 in Sun et al. 2019)."
        },
    )
    sliding_window: bool = field(
        default=False,
        metadata={
            "help": "At prediction (the test split and `python -m bertcls predict`): cut each long single text into "
            "overlapping windows of max_seq_length tokens, classify every window and combine their logits "
            "(--window_aggregation), instead of truncating. Training and validation still truncate."
        },
    )
    stride: int | None = field(
        default=None,
        metadata={
            "help": "For --sliding_window: tokens that consecutive windows share (the tokenizer's `stride`). "
            "Default: a quarter of max_seq_length."
        },
    )
    window_aggregation: Literal["mean", "max"] = field(
        default="mean",
        metadata={"help": "For --sliding_window: combine the windows' logits by their mean or per-class maximum."},
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={
            "help": "Use N training rows: a seeded (--seed) sample, stratified by label, never the first N of a "
            "sorted file (logged)." + differs("the first N rows")
        },
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={
            "help": "Use N validation rows: a seeded sample, stratified by label (logged)."
            + differs("the first N rows")
        },
    )
    max_predict_samples: int | None = field(
        default=None,
        metadata={
            "help": "Predict N test rows: a seeded sample, stratified by label where there are labels, kept "
            "in file order (logged)." + differs("the first N rows")
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization (datasets.map num_proc)."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Re-tokenize instead of using the datasets cache."})

    def __post_init__(self):
        check_ranges(self)


@dataclass
class ClassificationTrainingArguments(TrainingArguments):
    """TrainingArguments with defaults for classifier fine-tuning, plus this repo's training options."""

    output_dir: str | None = field(
        default=None, metadata={"help": "Where the model, checkpoints, metrics and predictions are written."}
    )
    # None = not given. As in Hugging Face's example scripts, when any of the three is given true exactly those run;
    # unlike them, with none given everything for which there is data runs (see resolve_phases).
    do_train: bool | None = field(
        default=None,
        metadata={
            "help": "Train. When any of --do_train / --do_eval / --do_predict is given, exactly those run (as in "
            "Hugging Face's examples); with none given, every phase for which there is data runs."
            + differs("only the phases given run")
        },
    )
    do_eval: bool | None = field(
        default=None,
        metadata={
            "help": "Evaluate on the validation split. --do_eval false also turns off evaluation during training. "
            "On a fine-tuned folder without --do_train, evaluates that model as it was trained."
        },
    )
    do_predict: bool | None = field(default=None, metadata={"help": "Predict the test split (predictions.csv)."})
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate of AdamW." + differs("5e-5")})
    weight_decay: float = field(
        default=0.01,
        metadata={"help": "AdamW weight decay, applied to weights only (never biases or LayerNorm)." + differs("0.0")},
    )
    warmup_steps: float = field(
        default=0.1,
        metadata={"help": "Linear warmup: a step count, or a float < 1 as a share of all steps." + differs("0")},
    )
    per_device_train_batch_size: int = field(
        default=32, metadata={"help": "Batch size per device for training." + differs("8")}
    )
    per_device_eval_batch_size: int = field(
        default=64, metadata={"help": "Batch size per device for evaluation." + differs("8")}
    )
    eval_strategy: str = field(
        default="epoch",
        metadata={"help": "When to evaluate: no, steps or epoch. --eval_steps N alone means steps." + differs('"no"')},
    )
    save_strategy: str = field(
        default="epoch",
        metadata={
            "help": "When to checkpoint: no, steps, epoch or best. Not given: as --eval_strategy when that is "
            "given, steps when --save_steps is given, else epoch." + differs('"steps", every 500 steps')
        },
    )
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Keep at most this many checkpoints." + differs("no limit")}
    )
    logging_steps: float = field(
        default=50, metadata={"help": "Log the training loss every N steps." + differs("500")}
    )
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={
            "help": "Training batches: group_by_length (default: rows of similar length share a batch, so "
            "little padding), random, sequential or batch_rebalance." + differs("random"),
            "choices": ["random", "sequential", "group_by_length", "batch_rebalance"],
        },
    )
    pad_to_multiple_of: int | None = field(
        default=None,
        metadata={
            "help": "Pad each batch to its longest row rounded up to a multiple of N tokens. Default: 8 under "
            "--fp16/--bf16 (GPU tensor cores work on tiles of 8), none in fp32. 1 turns rounding off."
        },
    )
    layerwise_lr_decay: float = field(
        default=1.0,
        metadata={
            "help": "Layer-wise lr decay: the head gets the full lr, encoder layer i of L gets lr * decay^(L-i), "
            "embeddings lr * decay^(L+1). 1.0 disables; 0.9-0.95 is typical."
        },
    )
    extra_metrics: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Extra `evaluate` metrics by Hub name or local folder, e.g. `--extra_metrics matthews_correlation`. "
            "Hub names need network access."
        },
    )
    metric_for_best_model: str | None = field(
        default=None,
        metadata={
            "help": "Metric that picks the best checkpoint (the eval_ prefix is optional). Default when "
            "--early_stopping_patience or --load_best_model_at_end is on: f1_macro, or mse for regression (lower is "
            "better for mse, rmse, mae and loss)." + differs("the evaluation loss")
        },
    )
    # Imbalance
    class_weights: list[str] = field(
        default_factory=lambda: ["none"],
        metadata={
            "help": "Per-class loss weights (single-label). none; auto: inverse class frequency in train, w_c = "
            "(1/n_c) / mean_k(1/n_k), so the weights average 1 over classes; or one number per label in label "
            "order, e.g. `--class_weights 1 1 3`."
        },
    )
    loss: Literal["ce", "focal", "mse", "huber"] = field(
        default="ce",
        metadata={
            "help": "ce: cross-entropy (binary cross-entropy per label for --multi_label). focal: focal loss "
            "(1-p_t)^gamma * CE (Lin et al. 2017), which down-weights rows the model already gets right. "
            "Regression: mse (what ce means there, the default) or huber (squared below 1, linear above: "
            "outlying scores pull less)."
        },
    )
    focal_gamma: float = field(default=2.0, metadata={"help": "For --loss focal: the focusing exponent gamma."})
    # Early stopping
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many evaluations without improvement of metric_for_best_model, and keep the "
            "best checkpoint (turns on load_best_model_at_end). Needs save_strategy = eval_strategy."
        },
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "For early stopping: the least change that counts as an improvement."}
    )
    # Regularization
    adversarial: Literal["none", "fgm"] = field(
        default="none",
        metadata={
            "help": "fgm: adversarial training (Miyato et al. 2017): after each backward pass, move the word "
            "embeddings by adv_epsilon along the normalized gradient, add the loss there, and restore them. One "
            "extra forward/backward per step."
        },
    )
    adv_epsilon: float = field(default=1.0, metadata={"help": "For --adversarial fgm: size of the perturbation."})
    rdrop_alpha: float = field(
        default=0.0,
        metadata={
            "help": "R-Drop (Liang et al. 2021): run each training batch twice with different dropout and add alpha "
            "x the symmetric KL divergence of the two predictions to their mean loss. 0 disables. The KL here is a "
            "mean over rows, like the loss; the reference implementation sums it over the batch, so its alpha a "
            "is a x batch size here."
        },
    )
    # Cross-validation
    kfold: int = field(
        default=0,
        metadata={
            "help": "Train K models on K stratified folds of train (random folds for --multi_label and regression): each fold "
            "validates on its held-out part, out-of-fold predictions cover the train set, and the K models' "
            "averaged probabilities make predictions.csv. 0 disables."
        },
    )
    kfold_seed: int | None = field(default=None, metadata={"help": "Seed of the fold assignment (default: --seed)."})
    # Hyperparameter search
    hp_search: Literal["optuna"] | None = field(
        default=None,
        metadata={
            "help": "Search hyperparameters with optuna through the Trainer's hyperparameter_search over hp_space, "
            "scoring each trial on the validation split by --metric_for_best_model; writes hp_trials.csv and "
            "best_recipe.json (which trains the final model)."
        },
    )
    hp_trials: int = field(default=10, metadata={"help": "For --hp_search: the number of trials."})
    hp_space: str | None = field(
        default=None,
        metadata={
            "help": "For --hp_search: the search space, a JSON object of flag: {low, high[, log, step]} or "
            '{choices: [...]}, e.g. {"learning_rate": {"low": 1e-5, "high": 1e-4, "log": true}}. In a recipe, '
            "an object."
        },
    )
    find_label_issues: bool = field(
        default=False,
        metadata={
            "help": "With --kfold: rank every train row by how likely its label is wrong (cleanlab on the "
            "out-of-fold probabilities) into label_issues.csv, with the suggested label; a summary per class goes "
            "to analysis.md."
        },
    )
    # The Trainer's own label_names (which input keys hold labels) is fixed to None here: inputs always carry the
    # label under `labels`. DataArguments.class_names (old spelling --label_names) is the label order.
    label_names: list[str] | None = field(default=None, init=False, repr=False)
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace a finished run already in output_dir."}
    )

    def __post_init__(self):
        fit_to_launch(self)
        resolve_phases(self)
        if not self.do_eval and _value(self.eval_strategy) != "no":
            # Otherwise the Trainer turns do_eval back on and evaluates inside train() anyway.
            if self.early_stopping_patience is not None or self.load_best_model_at_end:
                raise UserError(
                    "--early_stopping_patience / --load_best_model_at_end pick checkpoints by evaluation, but "
                    "--do_eval is off",
                    fix="add --do_eval (or drop early stopping / --load_best_model_at_end)",
                )
            self.eval_strategy = "no"
        check_options(self)
        check_precision(self)
        if self.early_stopping_patience is not None:
            check_early_stopping(self)
            self.load_best_model_at_end = True
        if self.load_best_model_at_end and self.metric_for_best_model is None:
            self.metric_for_best_model = "f1_macro"  # the Trainer's default, eval loss, rarely tracks the score
        super().__post_init__()
        check_report_to(self)
        check_optimizer(self)
        check_world(self)


def fit_to_launch(args) -> None:
    """Before TrainingArguments.__post_init__: settings that follow from the machine and the launcher."""
    # Pinned memory only speeds up copies to an accelerator; without one torch warns on every DataLoader.
    if args.dataloader_pin_memory and not (torch.cuda.is_available() or torch.backends.mps.is_available()):
        args.dataloader_pin_memory = False
    launched = launched_processes()
    if launched > 1 and not args.use_cpu and not distributed_accelerator_available():
        # `accelerate launch --multi_gpu` / torchrun on a machine without GPUs: unless told `use_cpu`, the
        # Trainer sets up every process as a world of one, and N copies train and write the same output_dir.
        _warn_once(f"{launched} processes launched and no GPU found: training on CPU with gloo (--use_cpu)")
        args.use_cpu = True


def check_world(args) -> None:
    """After TrainingArguments.__post_init__: the Trainer's world is the one the launcher started."""
    launched = launched_processes()
    if launched > 1 and args.world_size != launched:
        raise UserError(
            f"{launched} processes were launched but the Trainer set up a world of {args.world_size} "
            "(each process would train its own copy and write the same output_dir)",
            fix="launch on machines whose accelerators torch can see, or pass --use_cpu true to train on CPU",
        )


PHASES = ("do_train", "do_eval", "do_predict")


def resolve_phases(args) -> None:
    """None (not given) becomes True or False: when any phase is given true, exactly the phases given true run;
    otherwise every phase not given false runs (for the splits that exist)."""
    given = {name: getattr(args, name) for name in PHASES}
    any_true = any(value is True for value in given.values())
    for name, value in given.items():
        setattr(args, name, value is True if any_true else value is not False)


def _value(strategy) -> str:
    return getattr(strategy, "value", strategy)


def check_options(args) -> None:
    """Reject impossible option values before anything is loaded."""
    weights = args.class_weights or ["none"]
    if len(weights) == 1 and weights[0] in ("none", "auto"):
        pass
    else:
        try:
            numbers = [float(w) for w in weights]
        except ValueError:
            raise UserError(
                f"--class_weights {' '.join(weights)}: expected none, auto, or one number per label",
                fix="e.g. --class_weights auto, or --class_weights 1 1 3",
            ) from None
        if any(not w > 0 for w in numbers):
            raise UserError(f"--class_weights {' '.join(weights)}: every weight must be above 0")
    check_ranges(args)
    if args.max_steps == 0 or args.max_steps < -1:
        raise UserError(f"--max_steps must be -1 (train --num_train_epochs) or at least 1, got {args.max_steps}")
    if args.max_steps == -1 and args.do_train and not args.num_train_epochs > 0:
        raise UserError(f"--num_train_epochs must be above 0, got {args.num_train_epochs}", fix="or pass --max_steps")
    if args.prediction_loss_only:
        raise UserError(
            "--prediction_loss_only: this script scores every evaluation and writes predictions from the model's "
            "outputs, which that flag would drop",
            fix="drop --prediction_loss_only (the evaluation loss is reported anyway, as eval_loss)",
        )
    if args.find_label_issues and not args.kfold:
        raise UserError(
            "--find_label_issues needs out-of-fold probabilities, from k-fold training", fix="add --kfold 5"
        )
    if args.kfold == 1 or args.kfold < 0:
        raise UserError(
            f"--kfold {args.kfold}: k-fold needs at least 2 folds", fix="pass --kfold 5, or 0 to turn it off"
        )


def check_precision(args) -> None:
    """--bf16 with no GPU: the stock TrainingArguments demand --use_cpu (a traceback otherwise). On a CPU with bf16
    instructions (avx512_bf16 or AMX) train there in bf16, logged; on any other CPU refuse in one line (bf16 would be
    emulated, slower than fp32). An explicit --use_cpu is taken as it is."""
    if not args.bf16 or args.use_cpu:
        return
    if torch.cuda.is_available() or torch.backends.mps.is_available() or distributed_accelerator_available():
        return
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise UserError(
            "--bf16: there is no GPU, and this CPU lacks bf16 instructions (avx512_bf16 or AMX), so bf16 would be "
            "emulated and slower than fp32",
            fix="drop --bf16, or pass --use_cpu true to run emulated bf16 anyway",
        )
    _warn_once("--bf16 with no GPU: training in bf16 on the CPU (avx512_bf16 / AMX instructions), as --use_cpu")
    args.use_cpu = True


def check_optimizer(args) -> None:
    """--optim names an optimizer whose package (bitsandbytes, torchao ...) may be missing: the Trainer finds out
    only when training starts, after the data is read. Optimizers that need the model to be built are left to it."""
    from transformers import Trainer

    try:
        Trainer.get_optimizer_cls_and_kwargs(args)
    except ImportError as e:
        text = " ".join(str(e).split())
        raise UserError(f"--optim {_value(args.optim)}: {text}", fix="install it, or pick another --optim") from None
    except (ValueError, TypeError, AttributeError):
        pass


# Logging integrations whose packages an extra of bertcls installs (setup.cfg extras_require).
REPORT_EXTRAS = {"tensorboard": "tensorboard"}


def check_report_to(args) -> None:
    """--report_to names integrations the Trainer loads only when it starts: a missing package is one line naming
    what to install, before any data is read (the Trainer raises a RuntimeError deep in its constructor)."""
    from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

    wanted = [r for r in (args.report_to or []) if r not in ("none", "all")]
    unknown = [r for r in wanted if r not in INTEGRATION_TO_CALLBACK]
    if unknown:
        raise UserError(
            f"--report_to {' '.join(unknown)}: not a logging integration the Trainer knows",
            fix=f"use one of {', '.join(sorted(INTEGRATION_TO_CALLBACK))}, or none",
        )
    available = set(get_available_reporting_integrations())
    for name in wanted:
        if name not in available:
            extra = REPORT_EXTRAS.get(name)
            install = f"pip install 'bertcls[{extra}]'" if extra else f"pip install {name}"
            raise UserError(
                f"--report_to {name}: the {name} package is not installed",
                fix=f"{install}, or drop --report_to {name}",
            )


def check_early_stopping(args) -> None:
    """Early stopping keeps the best checkpoint, so evaluation and checkpoints must happen at the same moments."""
    if args.early_stopping_patience < 1:
        raise UserError(f"--early_stopping_patience must be at least 1, got {args.early_stopping_patience}")
    evaluate, save = _value(args.eval_strategy), _value(args.save_strategy)
    if evaluate == "no":
        raise UserError(
            "--early_stopping_patience needs evaluations, but --eval_strategy is no", fix="pass --eval_strategy epoch"
        )
    if save not in (evaluate, "best"):
        raise UserError(
            f"--early_stopping_patience keeps the best checkpoint, but --save_strategy {save} does not match "
            f"--eval_strategy {evaluate}",
            fix=f"pass --save_strategy {evaluate}",
        )
    if evaluate == "steps" and save == "steps":
        eval_steps = args.eval_steps or args.logging_steps
        if eval_steps >= 1 and args.save_steps >= 1 and args.save_steps % eval_steps:  # (below 1: ratios)
            raise UserError(
                f"--save_steps {args.save_steps:g} is not a multiple of --eval_steps {eval_steps:g}: early stopping "
                "could pick an evaluation that has no checkpoint",
                fix=f"pass --save_steps {eval_steps:g}",
            )


_warned = set()


def _warn_once(message: str) -> None:
    # Arguments are built more than once per run (recipe_of builds a default instance); say it once, on rank 0.
    if message not in _warned and os.environ.get("RANK", "0") == "0":
        logger.warning(message)
    _warned.add(message)


def launched_processes() -> int:
    """How many processes the launcher (accelerate launch, torchrun) started; 1 for a plain `python` run."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def distributed_accelerator_available() -> bool:
    """Whether accelerate would run distributed processes on an accelerator: the device checks it makes, in
    accelerate.state.PartialState._prepare_backend, before it falls back to no distribution at all."""
    import accelerate.utils as au

    if torch.cuda.is_available():
        return True
    checks = (
        "is_torch_xla_available",
        "is_mlu_available",
        "is_sdaa_available",
        "is_musa_available",
        "is_npu_available",
        "is_hpu_available",
        "is_xpu_available",
        "is_neuron_available",
    )
    return any(getattr(au, name, lambda: False)() for name in checks)
