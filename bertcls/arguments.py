"""The run's arguments: model, data, and training options.

Every field has `help` metadata, so `python run_classification.py --help` is the reference. Fields named in
PATH_FIELDS are resolved against a recipe file's folder when they come from a recipe.
"""

from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import TrainingArguments

# Fields holding paths: "file" always names a local path; "file_or_hub" may also be a Hub id.
PATH_FIELDS = {
    "model_name_or_path": "file_or_hub",
    "tokenizer_name": "file_or_hub",
    "dataset_name": "file_or_hub",
    "train_file": "file",
    "validation_file": "file",
    "test_file": "file",
}


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        metadata={
            "help": "Hub id (e.g. hfl/chinese-bert-wwm-ext) or local folder of the encoder to fine-tune. "
            "A folder holding only vocab.txt + config.json (a converted Chinese checkpoint) works too.",
        }
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "Tokenizer to use when it differs from model_name_or_path."},
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where downloaded models are stored (default: the Hugging Face cache)."}
    )
    model_revision: str = field(default="main", metadata={"help": "Hub branch, tag or commit of the model."})
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run Python code shipped inside a Hub model repo. Off: only enable for repos you trust."},
    )
    allow_pickle_weights: bool = field(
        default=False,
        metadata={
            "help": "Also load weights from pytorch_model.bin (pickle, can run code). By default only "
            "model.safetensors is accepted."
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
    text_column: str = field(default="text", metadata={"help": "Column holding the (first) text."})
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Column holding the second text; setting it makes this a sentence-pair task."}
    )
    label_column: str = field(default="label", metadata={"help": "Column holding the label."})
    label_names: list[str] | None = field(
        default=None,
        metadata={
            "help": "Explicit label order (id 0 first). Default: numeric order for integer labels, else sorted "
            "strings. Also admits labels that train lacks."
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
    validation_split_percentage: float = field(
        default=10.0,
        metadata={
            "help": "When no validation data is given, hold out this percent of train (stratified by label, "
            "seeded by --seed). 0 disables."
        },
    )
    max_seq_length: int = field(
        default=512,
        metadata={"help": "Maximum tokens per input including [CLS]/[SEP]; must fit the model's position limit."},
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
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation rows."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use only the first N test rows."})
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization (datasets.map num_proc)."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Re-tokenize instead of using the datasets cache."})


@dataclass
class ClassificationTrainingArguments(TrainingArguments):
    """TrainingArguments with defaults for classifier fine-tuning, plus this repo's training options."""

    output_dir: str | None = field(
        default=None, metadata={"help": "Where the model, checkpoints, metrics and predictions are written."}
    )
    do_train: bool = field(default=True, metadata={"help": "Train (on by default)."})
    do_eval: bool = field(default=True, metadata={"help": "Evaluate on the validation split when there is one."})
    do_predict: bool = field(default=True, metadata={"help": "Predict the test split when there is one."})
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate of AdamW."})
    weight_decay: float = field(
        default=0.01, metadata={"help": "AdamW weight decay, applied to weights only (never biases or LayerNorm)."}
    )
    warmup_steps: float = field(
        default=0.1, metadata={"help": "Linear warmup: a step count, or a float < 1 as a share of all steps."}
    )
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Batch size per device for training."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Batch size per device for evaluation."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps or epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to checkpoint: no, steps, epoch or best."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    logging_steps: float = field(default=50, metadata={"help": "Log the training loss every N steps."})
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={
            "help": "Training batches: group_by_length (default: rows of similar length share a batch, so "
            "little padding), random, sequential or batch_rebalance.",
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
    # `--label_names` is DataArguments' explicit label order. The Trainer's own field of that name (which input
    # keys hold labels) is fixed to None here: inputs always carry the label under `labels`.
    label_names: list[str] | None = field(default=None, init=False, repr=False)
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace a finished run already in output_dir."}
    )

    def __post_init__(self):
        # Pinned memory only speeds up copies to an accelerator; without one torch warns on every DataLoader.
        if self.dataloader_pin_memory and not (torch.cuda.is_available() or torch.backends.mps.is_available()):
            self.dataloader_pin_memory = False
        super().__post_init__()
