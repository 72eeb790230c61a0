"""Command-line parsing with an optional leading recipe file.

`run_classification.py recipes/x.json --learning_rate 3e-5`: the recipe's keys become the parser's defaults and
command-line flags override them. Recipe values are checked with the parser's own types and choices, so a recipe
and the command line accept exactly the same things.
"""

import argparse
import difflib
import json
import logging
import os
from dataclasses import MISSING, fields
from enum import Enum

import yaml
from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool

from bertcls.config.arguments import PATH_FIELDS, DataArguments, ModelArguments
from bertcls.errors import UserError

logger = logging.getLogger(__name__)

RECIPE_SUFFIXES = (".json", ".yaml", ".yml")
# List fields that also take one word: `class_weights: auto` or `class_weights: [1, 1, 3]`.
WORD_OR_NUMBERS = {"class_weights"}
# Fields holding a JSON object: a recipe gives the object itself, the command line its JSON text.
JSON_OBJECTS = {"hp_space"}


def run_dataclasses() -> tuple:
    """run_classification.py's dataclasses. Imported when asked for: the training options import torch, which the
    tools that parse other dataclasses here (predict and serve on an export folder) never load."""
    from bertcls.config.training_arguments import ClassificationTrainingArguments

    return (ModelArguments, DataArguments, ClassificationTrainingArguments)


class Parser(HfArgumentParser):
    """HfArgumentParser whose errors are one line naming the flag, not a usage dump of several hundred flags."""

    def error(self, message):
        raise UserError(f"command line: {message}", fix="see --help for every flag and its type")


def make_parser(dataclass_types=None) -> HfArgumentParser:
    # No abbreviations: among hundreds of flags a shortened or mistyped one must fail, not land on a neighbour.
    parser = Parser(dataclass_types or run_dataclasses(), allow_abbrev=False)
    for action in parser._actions:
        # HfArgumentParser makes `bool | None = None` fields (do_train: None = not given) require a value; let
        # `--do_eval` alone mean true, as it does for plain bool fields.
        if action.type is string_to_bool and action.nargs is None:
            action.nargs, action.const = "?", True
    return parser


def parse_args(argv=None, dataclass_types=None, parser=None):
    """Parse `[RECIPE] [--flag value ...]` into one instance per dataclass (model, data, training by default).

    Unknown recipe keys and values of the wrong type raise UserError naming the key and the recipe file; so does
    an error the dataclasses themselves raise (TrainingArguments' own checks), naming the flags.
    """
    argv = list(argv) if argv is not None else None
    if argv is None:
        import sys

        argv = sys.argv[1:]
    parser = parser or make_parser(dataclass_types)
    recipe = {}
    if argv and argv[0].lower().endswith(RECIPE_SUFFIXES):
        recipe_path, argv = argv[0], argv[1:]
        recipe = apply_recipe(parser, read_recipe(recipe_path), recipe_path, dataclass_types)
    namespace, unknown = parser.parse_known_args(args=argv)
    if unknown:
        flags = [a.lstrip("-").split("=")[0] for a in unknown if a.startswith("--")]
        hint = did_you_mean(flags, [a.dest for a in parser._actions if a.option_strings], prefix="--")
        where = " (a recipe file must come first)" if any(a.lower().endswith(RECIPE_SUFFIXES) for a in unknown) else ""
        raise UserError(f"command line: unknown argument(s) {' '.join(unknown)}{where}", fix=hint)
    given = set(recipe) | command_line_fields(parser, argv)
    follow_given(namespace, given)
    parsed = []
    for dtype in parser.dataclass_types:
        keys = {f.name for f in fields(dtype) if f.init}
        instance = construct(dtype, {k: v for k, v in vars(namespace).items() if k in keys})
        setattr(instance, GIVEN_ATTRIBUTE, frozenset(given & {f.name for f in fields(instance)}))
        parsed.append(instance)
    return tuple(parsed)


# Old spellings of a field that are still accepted, with a note: old flag -> the field's name.
OLD_SPELLINGS = {"label_names": "class_names"}


def command_line_fields(parser, argv: list[str]) -> set[str]:
    """The fields the command line sets. A field named twice (e.g. --label_column and its alias
    --label_column_name) is an error: argparse would silently keep the last."""
    seen = {}
    for flag in (a.split("=")[0] for a in argv if a.startswith("--")):
        action = parser._option_string_actions.get(flag)
        if action is None:
            continue
        if action.dest in seen and seen[action.dest] != flag:
            raise UserError(
                f"command line: {seen[action.dest]} and {flag} are the same setting, given twice", fix="keep one"
            )
        seen[action.dest] = flag
        _note_old_spelling(flag.lstrip("-"), action.dest)
    return set(seen)


def _note_old_spelling(name: str, dest: str) -> None:
    if OLD_SPELLINGS.get(name) == dest:
        logger.info("--%s is the old spelling of --%s (the label order); it works the same", name, dest)


def follow_given(namespace, given: set[str]) -> None:
    """Defaults that follow what the user gave, so every combination stock TrainingArguments accept works here:
    --eval_steps N alone means evaluating every N steps; an evaluation strategy given without a save strategy is
    also the save strategy (load_best_model_at_end needs them to match; the stock default saves every 500 steps);
    --save_steps N alone means saving every N steps."""
    if not hasattr(namespace, "save_strategy"):
        return
    if "eval_steps" in given and "eval_strategy" not in given and namespace.eval_strategy != "steps":
        logger.info(
            "--eval_steps %g given: evaluating every %g steps (--eval_strategy steps)", *[namespace.eval_steps] * 2
        )
        namespace.eval_strategy = "steps"
        given.add("eval_strategy")
    if "save_strategy" in given:
        return
    evaluate = str(getattr(namespace.eval_strategy, "value", namespace.eval_strategy))
    if "eval_strategy" in given and evaluate != "no":
        namespace.save_strategy = evaluate
        if evaluate == "steps" and "save_steps" not in given and namespace.eval_steps is not None:
            namespace.save_steps = namespace.eval_steps
        logger.info("--save_strategy follows --eval_strategy %s (not given)", evaluate)
    elif "save_steps" in given:
        namespace.save_strategy = "steps"
        logger.info("--save_steps %g given: saving a checkpoint every %g steps", *[namespace.save_steps] * 2)


def construct(dtype, inputs: dict):
    """dtype(**inputs), its own checks' errors (TrainingArguments raises ValueError with a paragraph) as one line."""
    try:
        return dtype(**inputs)
    except UserError:
        raise
    except (ValueError, TypeError, ImportError) as e:
        raise training_error(e) from None


def training_error(error: Exception) -> UserError:
    """A check of TrainingArguments (or another arguments class) that failed, as one line naming the flags."""
    text = " ".join(str(error).split())
    if "save and eval strategy to match" in text:
        return UserError(
            "--load_best_model_at_end keeps the best checkpoint, so --save_strategy must match --eval_strategy",
            fix="leave --save_strategy out (it then follows --eval_strategy), or pass the same value to both",
        )
    return UserError(f"arguments: {text[:400]}", fix="see --help for the flags named there")


GIVEN_ATTRIBUTE = "_given_fields"


def given_fields(instance) -> frozenset[str]:
    """The fields of a parsed instance that the recipe or the command line set (the rest are defaults)."""
    return getattr(instance, GIVEN_ATTRIBUTE, frozenset())


def did_you_mean(names: list[str], known: list[str], prefix: str = "", quote: bool = False) -> str:
    """The closest valid names, or a pointer to --help."""
    close = [c for name in names for c in difflib.get_close_matches(name, known, n=3, cutoff=0.6)]
    if not close:
        return "see --help for every valid name"
    return "did you mean " + " or ".join(repr(prefix + c) if quote else prefix + c for c in dict.fromkeys(close)) + "?"


def read_recipe(path: str) -> dict:
    """Read a flat JSON or YAML object. JSON is read with json, so `2e-5` stays a float."""
    if not os.path.isfile(path):
        raise UserError(f"recipe file not found: {path}", fix="check the path (it is the first argument)")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        recipe = json.loads(text) if path.lower().endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise UserError(f"recipe {path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: {e}") from None
    if recipe is None:
        recipe = {}
    if not isinstance(recipe, dict):
        raise UserError(f"recipe {path} must hold one flat object of key: value pairs, not {type(recipe).__name__}")
    return recipe


def apply_recipe(parser: argparse.ArgumentParser, recipe: dict, recipe_path: str, dataclass_types=None) -> dict:
    """Check every recipe value against the parser and install the values as defaults; returns the recipe keyed
    by field names (a key may be any spelling of a flag, e.g. the reference script's `label_column_name`)."""
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    spellings = {opt[2:]: a.dest for a in actions.values() for opt in a.option_strings if opt.startswith("--")}
    recipe_dir = os.path.dirname(os.path.abspath(recipe_path))
    defaults, spelled = {}, {}
    for key, value in recipe.items():
        if key not in spellings or key == "help":
            raise UserError(
                f"recipe {recipe_path}: unknown key {key!r}", fix=did_you_mean([key], list(actions), quote=True)
            )
        alias, key = key, spellings[key]
        if key in spelled:
            raise UserError(
                f"recipe {recipe_path}: keys {spelled[key]!r} and {alias!r} are the same setting", fix="keep one"
            )
        spelled[key] = alias
        _note_old_spelling(alias, key)
        value = check_value(actions[key], value, f"recipe {recipe_path}: key {alias!r}")
        if key in PATH_FIELDS and value is not None:
            value = resolve_path(value, recipe_dir, hub_ok=PATH_FIELDS[key] == "file_or_hub")
        defaults[key] = value
        # argparse checks required flags against the command line only; the recipe satisfies them.
        actions[key].required = False
    parser.set_defaults(**defaults)
    return defaults


def check_value(action: argparse.Action, value, where: str):
    """Convert a recipe value the way argparse converts the same flag, or raise UserError."""
    if value is None:
        return None
    if action.dest in JSON_OBJECTS and isinstance(value, dict):
        return json.dumps(value)
    is_list = action.nargs in ("+", "*")
    if action.dest in WORD_OR_NUMBERS:
        # `"class_weights": "auto"` and `"class_weights": [1, 1, 3]` are both natural in a recipe.
        value = [value] if not isinstance(value, list) else value
        value = [json.dumps(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value]
    if is_list and not isinstance(value, list):
        # A lone string for a list field is a common slip ("a,b"); say what shape is wanted.
        raise UserError(f"{where} must be a list, got {value!r}", fix=f'write it as ["{value}"] (a JSON list)')
    if not is_list and isinstance(value, (list, dict)):
        raise UserError(f"{where} must be a single value, got {type(value).__name__} {value!r}")
    items = value if is_list else [value]
    converted = []
    for item in items:
        if action.type is str and not isinstance(item, str):
            raise UserError(f"{where} must be a string, got {item!r}", fix=f'quote it: "{item}"')
        if action.type is not None:
            # json.dumps gives the text a user would type on the command line: true, 3, 2e-05.
            text = item if isinstance(item, str) else json.dumps(item)
            try:
                item = action.type(text)
            except (ValueError, TypeError, argparse.ArgumentTypeError):
                expected = getattr(action.type, "__name__", "the flag's type")
                raise UserError(f"{where} must be of type {expected}, got {item!r}") from None
        if action.choices is not None and item not in action.choices:
            raise UserError(f"{where} must be one of {list(action.choices)}, got {item!r}")
        converted.append(item)
    return converted if is_list else converted[0]


def resolve_path(value, base_dir: str, hub_ok: bool):
    """Resolve a recipe-relative path. For keys that also take Hub ids, a value that is not a local path and
    does not start with "." stays as it is (e.g. hfl/chinese-bert-wwm-ext)."""
    if isinstance(value, list):
        return [resolve_path(v, base_dir, hub_ok) for v in value]
    if not isinstance(value, str) or os.path.isabs(value) or value.startswith("~"):
        return value
    candidate = os.path.normpath(os.path.join(base_dir, value))
    if hub_ok and not value.startswith(".") and not os.path.exists(candidate):
        return value
    return candidate


# Always written out, default or not: these decide the result, and defaults can change between versions.
KEY_HYPERPARAMETERS = (
    "max_seq_length",
    "learning_rate",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "warmup_steps",
    "max_grad_norm",
    "seed",
)


def recipe_of(*instances) -> dict:
    """The parsed arguments as a flat recipe: the key hyperparameters and every other field that differs from
    its default, file paths made absolute."""
    recipe = {}
    for instance in instances:
        # Compare with a default instance, so values normalized by __post_init__ (report_to "none" -> []) match.
        required = {f.name: getattr(instance, f.name) for f in fields(instance) if f.init and _is_required(f)}
        defaults = type(instance)(**required)
        for f in fields(instance):
            if not f.init:
                continue
            value = _plain(getattr(instance, f.name))
            if (
                value == _plain(getattr(defaults, f.name))
                and f.name not in KEY_HYPERPARAMETERS
                and f.name not in required
            ):
                continue
            if f.name in PATH_FIELDS:  # so recipe.json reruns from any folder; list-valued paths one by one
                value = _absolute(value)
            if isinstance(value, (str, int, float, bool, list)):
                recipe[f.name] = value
    return recipe


def _absolute(value):
    if isinstance(value, list):
        return [_absolute(v) for v in value]
    return os.path.abspath(value) if isinstance(value, str) and os.path.exists(value) else value


def _is_required(f) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _plain(value):
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
