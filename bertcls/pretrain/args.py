"""The arguments of `python -m bertcls pretrain`: the model to start from, the text, and training.

Every field has `help` metadata (`python -m bertcls pretrain --help`); a recipe's keys are the same names. The
data flags keep run_classification.py's names and meanings where they overlap (--train_file, --validation_file,
--text_column, --column_names, --encoding, --max_seq_length, --validation_split_percentage).
"""

import logging
from dataclasses import dataclass, field

from transformers import TrainingArguments

from bertcls.config.arguments import HubArguments
from bertcls.config.training_arguments import check_world, fit_to_launch
from bertcls.errors import UserError

logger = logging.getLogger(__name__)


@dataclass
class PretrainModelArguments(HubArguments):
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "The checkpoint to continue pretraining: a Hub id (hfl/chinese-bert-wwm-ext) or a local folder, "
            "read as run_classification.py reads it (release zips, pytorch_model.bin through torch's weights-only "
            "loader). Not given: a new model is pretrained from scratch, with --tokenizer_name and either "
            "--config_name or the size flags (--num_layers, --hidden_size, ...)."
        },
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={
            "help": "Tokenizer when it differs from model_name_or_path; for a model from scratch, a folder with a "
            "vocab.txt (e.g. ../shared/data/vocab) or tokenizer files, or a Hub id."
        },
    )
    config_name: str | None = field(
        default=None,
        metadata={
            "help": "From scratch: a folder (or config.json) whose config the new model takes, e.g. one made by "
            "`python -m bertcls tiny-model`; its weights are not read. Instead of the size flags."
        },
    )
    model_type: str = field(
        default="bert",
        metadata={
            "help": "From scratch, no --config_name: the architecture of the new model. `bert` learns absolute "
            "position embeddings; `roformer` (BERT with rotary positions, as ZhuiyiTechnology's Chinese RoFormer) "
            "learns word order far sooner on a small budget: on 2 CPU cores a 2-layer BERT's masked-LM loss stayed "
            "near 6 (the character-frequency plateau) for 3,000 steps where RoFormer's fell to 4.9 in 1,700.",
            "choices": ["bert", "roformer"],
        },
    )
    num_layers: int = field(default=4, metadata={"help": "From scratch, no --config_name: encoder layers."})
    hidden_size: int = field(default=256, metadata={"help": "From scratch, no --config_name: hidden size."})
    num_heads: int = field(default=4, metadata={"help": "From scratch, no --config_name: attention heads."})
    intermediate_size: int | None = field(
        default=None, metadata={"help": "From scratch, no --config_name: feed-forward size (default 4 x hidden)."}
    )
    max_position_embeddings: int | None = field(
        default=None,
        metadata={
            "help": "From scratch, no --config_name: positions of the new model. Default: --max_seq_length, so the "
            "model never claims positions that pretraining did not train (fine-tuning longer inputs is then an "
            "error, not a silent use of random position embeddings)."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Change settings of the model's config before the weights load (or before a new model is "
            "built), as key=value pairs separated by commas, e.g. attention_probs_dropout_prob=0. The output "
            "folder keeps them."
        },
    )
    sparse_mlm_head: bool = field(
        default=True,
        metadata={
            "help": "Run the masked-LM head (a matrix over the whole vocabulary) only at the masked positions, "
            "about 15%% of the tokens, instead of at every position. The loss is the same; for a small model with a "
            "21k vocabulary this is most of the compute. Used for heads that take hidden states and return "
            "vocabulary logits (BERT, RoBERTa, ALBERT, ERNIE); others run the model's stock forward."
        },
    )


@dataclass
class PretrainDataArguments:
    train_file: list[str] | None = field(
        default=None,
        metadata={
            "help": "Raw text, one or more files: .txt (one text per line; blank lines are skipped and counted), or "
            ".csv, .tsv, .json, .jsonl, .parquet with --text_column. Unlike run_classification.py, a .txt file is "
            "plain text here, not label<TAB>text: for such a file use --from_task, or name it .tsv with "
            "--column_names."
        },
    )
    from_task: list[str] | None = field(
        default=None,
        metadata={
            "help": "Classification recipe(s) whose texts to pretrain on: the train and validation splits the "
            "recipe names (train_file, validation_file, or --dataset_name's splits), its text_column and "
            "text_pair_column; the test split only with --from_task_test_text. Labels are never read. Can be "
            "combined with --train_file."
        },
    )
    from_task_test_text: bool = field(
        default=False,
        metadata={
            "help": "Also pretrain on the test split's texts of the --from_task recipes. This is transductive: the "
            "model has then seen the very texts its test scores are measured on (labels never), which a user "
            "with the unlabelled test texts at hand may do, but its test gains are no longer those of unseen "
            "text. Off by default: task-adaptive pretraining as published (Gururangan et al. 2020) uses the "
            "task's unlabelled training text."
        },
    )
    validation_file: list[str] | None = field(
        default=None,
        metadata={
            "help": "Held-out text for perplexity, same formats as --train_file. Default: hold out "
            "--validation_split_percentage of the texts."
        },
    )
    text_column: list[str] = field(
        default_factory=lambda: ["text"],
        metadata={
            "help": "The column(s) of csv/tsv/json/jsonl/parquet files that hold text; each file uses those of them "
            "it has (a file with none is an error listing its columns), so a pair task's text_a and text_b, or "
            "files with different column names, can be read together."
        },
    )
    column_names: list[str] | None = field(
        default=None,
        metadata={"help": "Column names for csv/tsv files WITHOUT a header line, in file order."},
    )
    encoding: str = field(default="utf-8", metadata={"help": "Text encoding of the files (e.g. gbk, gb18030)."})
    validation_split_percentage: float = field(
        default=5.0,
        metadata={
            "help": "Without --validation_file: hold out this percent of the texts (seeded by --seed) to report "
            "perplexity on. 0: no held-out text, no perplexity."
        },
    )
    max_seq_length: int = field(
        default=128,
        metadata={
            "help": "Tokens per training block, [CLS] and [SEP] included. Texts are joined (a [SEP] after each) and "
            "cut into blocks of exactly this length, so no compute goes to padding; a text may span two blocks."
        },
    )
    mlm_probability: float = field(
        default=0.15,
        metadata={
            "help": "Share of tokens chosen for prediction, drawn anew every time a block is used (dynamic "
            "masking). Of the chosen tokens 80%% become [MASK], 10%% a random token, 10%% stay as they are."
        },
    )
    whole_word_mask: bool = field(
        default=False,
        metadata={
            "help": "Choose whole words instead of single tokens: every token of a chosen word is predicted "
            "(Chinese-BERT-wwm). Words come from the jieba segmenter (Chinese, and words between spaces or "
            "punctuation in other text); the share of masked tokens in words of two or more tokens is logged."
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenizing and segmenting (datasets.map num_proc)."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Re-tokenize instead of using the datasets cache."})


@dataclass
class PretrainingArguments(TrainingArguments):
    """TrainingArguments with defaults for masked-LM pretraining on a small budget."""

    output_dir: str | None = field(
        default=None,
        metadata={"help": "Where the pretrained model (config.json, model.safetensors, tokenizer), checkpoints and "
                  "results are written."},
    )  # fmt: skip
    do_train: bool = field(default=True, metadata={"help": "Train (false: only report held-out perplexity)."})
    learning_rate: float = field(
        default=5e-5,
        metadata={"help": "Peak learning rate of AdamW (continued pretraining; a new small model takes ~5e-4)."},
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup_steps: float = field(
        default=0.06, metadata={"help": "Linear warmup: a step count, or a float < 1 as a share of all steps."}
    )
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Blocks per device and step."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Blocks per device for perplexity."})
    eval_strategy: str = field(
        default="no",
        metadata={
            "help": "When to report held-out perplexity during training as well: no, steps, epoch. It is always "
            "reported at the end (and, continuing a checkpoint, at the start)."
        },
    )
    save_strategy: str = field(default="steps", metadata={"help": "When to checkpoint: no, steps or epoch."})
    save_steps: float = field(default=500, metadata={"help": "Checkpoint every N steps (with save_strategy steps)."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    logging_steps: float = field(default=50, metadata={"help": "Log the training loss every N steps."})
    # The blocks carry `word_start` for whole-word masking, which the model's forward does not take: keep it.
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep False: the collator needs them."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace a finished run already in output_dir."}
    )

    def __post_init__(self):
        fit_to_launch(self)
        super().__post_init__()
        check_world(self)


def check_arguments(model_args, data_args, training_args, given: frozenset) -> None:
    """Reject contradictory or impossible settings before anything is loaded. `given`: the model fields set by the
    recipe or the command line."""
    size_flags = sorted(
        {"model_type", "num_layers", "hidden_size", "num_heads", "intermediate_size", "max_position_embeddings"}
        & given
    )
    if model_args.model_name_or_path:
        if model_args.config_name:
            raise UserError(
                "--config_name builds a new model, but --model_name_or_path continues an existing one",
                fix="pass one of them (change settings of the checkpoint with --config_overrides)",
            )
        if size_flags:
            raise UserError(
                f"--{size_flags[0]} sets the size of a new model, but --model_name_or_path continues an existing one",
                fix=f"drop --{size_flags[0]}, or drop --model_name_or_path to pretrain from scratch",
            )
    elif not model_args.tokenizer_name:
        raise UserError(
            "no model given",
            fix="pass --model_name_or_path to continue pretraining a checkpoint, or --tokenizer_name (a folder with "
            "vocab.txt) to pretrain a new model from scratch",
        )
    elif model_args.config_name and size_flags:
        raise UserError(f"--{size_flags[0]} and --config_name both set the new model's size", fix="pass one of them")
    if not (data_args.train_file or data_args.from_task) and training_args.do_train:
        raise UserError("no text given", fix="pass --train_file (one or more files) or --from_task RECIPE")
    if not 0 < data_args.mlm_probability < 1:
        raise UserError(f"--mlm_probability must be between 0 and 1, got {data_args.mlm_probability}")
    if data_args.max_seq_length < 8:
        raise UserError(f"--max_seq_length must be at least 8, got {data_args.max_seq_length}")
    if not 0 <= data_args.validation_split_percentage < 100:
        raise UserError(
            f"--validation_split_percentage must be in [0, 100), got {data_args.validation_split_percentage}"
        )
    if not model_args.model_name_or_path:
        for name in ("num_layers", "hidden_size", "num_heads"):
            if getattr(model_args, name) < 1:
                raise UserError(f"--{name} must be at least 1, got {getattr(model_args, name)}")
        if model_args.hidden_size % model_args.num_heads:
            raise UserError(
                f"--hidden_size {model_args.hidden_size} is not a multiple of --num_heads {model_args.num_heads}",
                fix="pick a head count that divides the hidden size (64 dimensions per head is usual)",
            )
