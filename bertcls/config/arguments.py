"""The run's arguments: the model and the data (training options: config/training_arguments.py).

Every field has `help` metadata, so `python run_classification.py --help` is the reference. Fields named in
PATH_FIELDS are resolved against a recipe file's folder when they come from a recipe. This module imports neither
torch nor transformers: predict and serve parse these dataclasses for export folders that run without torch.
"""

import logging
from dataclasses import dataclass, field
from typing import Literal

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
