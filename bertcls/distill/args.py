"""The arguments of `bertcls distill`: the teacher, the student, the losses and the transfer set.

The data and training flags are run_classification.py's own dataclasses (DataArguments,
ClassificationTrainingArguments), so --train_file, --max_seq_length, --learning_rate, --resume_from_checkpoint ... mean
exactly what they mean when fine-tuning. Every field here has `help` metadata (`bertcls distill --help`) and a range
checked when the arguments are parsed.
"""

from dataclasses import dataclass, field

from bertcls.config.arguments import check_ranges
from bertcls.errors import UserError

RANGES = {
    "student_layers": (1, None, True, True),
    "temperature": (0, None, False, True),
    "alpha": (0, 1, True, True),
    "hidden_weight": (0, None, True, True),
    "attention_weight": (0, None, True, True),
    "augment_copies": (0, None, True, True),
    "augment_share": (0, 1, False, True),
    "teacher_batch_size": (1, None, True, True),
}


@dataclass
class DistillArguments:
    teacher: str = field(
        metadata={
            "help": "The teacher: a fine-tuned folder written by run_classification.py (any head, the custom "
            "--head mlp / --pooling mean included). Its labels, and how it built its inputs (columns, "
            "max_seq_length, truncation, windows), become the student's; flags given here win, logged."
        }
    )
    student: str | None = field(
        default=None,
        metadata={
            "help": "A pretrained checkpoint to start the student from (Hub id, local folder or release zip, read as "
            "run_classification.py reads --model_name_or_path); its head is new. Instead of --student_layers."
        },
    )
    student_layers: int | None = field(
        default=None,
        metadata={
            "help": "Build the student from the teacher itself: its embeddings, head and K of its encoder layers "
            "(every n-th from the bottom by default, n = teacher layers / K, as DistilBERT was initialised; "
            "--student_layer_ids picks them). Instead of --student."
        },
    )
    student_layer_ids: list[int] | None = field(
        default=None,
        metadata={
            "help": "With --student_layers: the teacher layers to copy, counted from 0 at the bottom, e.g. "
            "`--student_layer_ids 0 1 2` (hfl's rbt3: the first three) or `0 6 11`. Default: every n-th."
        },
    )
    temperature: float = field(
        default=2.0,
        metadata={
            "help": "Softmax temperature T of the soft targets. The soft loss is T^2 x KL(teacher || student) over "
            "the softened distributions (Hinton et al. 2015), so its gradients keep their size as T changes. "
            "Multi-label: binary cross-entropy of sigmoid(student/T) to sigmoid(teacher/T), times T^2."
        },
    )
    alpha: float = field(
        default=0.5,
        metadata={
            "help": "Weight of the soft loss: loss = alpha x soft + (1 - alpha) x hard-label loss (the run's "
            "--loss, --class_weights ...). Rows without a label (--unlabelled_file, augmented texts) take the "
            "soft loss alone. 1: teacher only; 0: labels only (the baseline)."
        },
    )
    hidden_weight: float = field(
        default=0.0,
        metadata={
            "help": "Add this x the mean squared error between student and teacher hidden states (TinyBERT's "
            "intermediate layers), over real tokens, for each pair of --layer_map; a learned linear projection "
            "maps the student's width to the teacher's when they differ. The teacher then runs every step. 0: off."
        },
    )
    attention_weight: float = field(
        default=0.0,
        metadata={
            "help": "Add this x the mean squared error between student and teacher attention probabilities "
            "(TinyBERT), per layer of --layer_map (the embeddings, 0, have none). Needs the same number of heads; "
            "both models then run eager attention during training. 0: off."
        },
    )
    layer_map: list[int] | None = field(
        default=None,
        metadata={
            "help": "For --hidden_weight / --attention_weight: the teacher layer each student layer learns from, one "
            "per student layer and one first for the embeddings, e.g. `0 6 12` for a 2-layer student of a 12-layer "
            "teacher (0 = embeddings). Default: student layer m learns from teacher layer m x L / K (TinyBERT)."
        },
    )
    unlabelled_file: list[str] | None = field(
        default=None,
        metadata={
            "help": "More texts for the transfer set, labels not needed (a label column is ignored): same formats "
            "and columns as --train_file. The student learns the teacher's soft targets on them."
        },
    )
    augment_copies: int = field(
        default=0,
        metadata={
            "help": "Augment the transfer set (TinyBERT's data augmentation, for Chinese): make this many new "
            "texts from each train and unlabelled text, replacing a share of its jieba words with a masked-LM's "
            "predictions. The number of new texts is logged. 0: off."
        },
    )
    augment_share: float = field(
        default=0.3, metadata={"help": "For --augment_copies: the share of a text's words that are replaced."}
    )
    augment_model: str | None = field(
        default=None,
        metadata={
            "help": "For --augment_copies: the masked-LM checkpoint that proposes words (e.g. a `bertcls pretrain` "
            "folder, or hfl/chinese-bert-wwm-ext). Default: the teacher, when its folder holds a masked-LM head."
        },
    )
    teacher_batch_size: int = field(
        default=64, metadata={"help": "Rows per forward pass when the teacher's logits are computed."}
    )

    def __post_init__(self):
        check_ranges(self, RANGES)


def check_arguments(args: DistillArguments) -> None:
    """Settings that contradict each other, before anything is loaded (not in __post_init__: recipe_of builds a
    default instance)."""
    if (args.student is None) == (args.student_layers is None):
        raise UserError(
            "pass exactly one of --student (a pretrained checkpoint) and --student_layers (K layers of the teacher)",
            fix="e.g. --student_layers 3, or --student hfl/rbt3",
        )
    if args.student_layer_ids is not None:
        if args.student_layers is None:
            raise UserError(
                "--student_layer_ids picks teacher layers for --student_layers", fix="add --student_layers"
            )
        if len(args.student_layer_ids) != args.student_layers:
            raise UserError(
                f"--student_layer_ids names {len(args.student_layer_ids)} layers, but --student_layers is "
                f"{args.student_layers}",
                fix="give one teacher layer per student layer",
            )
        if sorted(set(args.student_layer_ids)) != list(args.student_layer_ids):
            raise UserError(
                f"--student_layer_ids {' '.join(map(str, args.student_layer_ids))}: give distinct layers, bottom first"
            )
    if args.layer_map is not None and not (args.hidden_weight or args.attention_weight):
        raise UserError("--layer_map is for --hidden_weight / --attention_weight", fix="set one of them above 0")
