"""The training options: TrainingArguments with this repo's defaults and options, checked before anything loads.

The settings that follow from the machine and the launcher (pinned memory, CPU training under a multi-process
launch, the world size) are shared with bertcls pretrain's TrainingArguments (fit_to_launch, check_world).
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import TrainingArguments

from bertcls.config.arguments import check_ranges, differs
from bertcls.errors import UserError

logger = logging.getLogger(__name__)


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
