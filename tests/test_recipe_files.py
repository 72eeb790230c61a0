"""Every file under recipes/: task recipes parse with known keys, name files that exist (or the documented dataset
paths under data/), and read the dataset layout recipes/README.md documents; accelerate configs hold only keys
accelerate knows."""

import json
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import launch_command_parser

from bertcls.config.arguments import PATH_FIELDS
from bertcls.config.recipes import parse_args, read_recipe, resolve_path, run_dataclasses
from bertcls.data.loading import load_task_data
from bertcls.pretrain import run as pretrain

from .conftest import REPO

RECIPES_DIR = REPO / "recipes"
ACCELERATE_DIR = RECIPES_DIR / "accelerate"
PRETRAIN_DIR = RECIPES_DIR / "pretrain"  # bertcls.pretrain.run's recipes: its own flags
RECIPES = sorted(
    p for p in RECIPES_DIR.rglob("*") if p.suffix in (".json", ".yaml", ".yml") and ACCELERATE_DIR not in p.parents
)
ACCELERATE_CONFIGS = sorted(ACCELERATE_DIR.glob("*"))
README = (RECIPES_DIR / "README.md").read_text(encoding="utf-8")

# Paths a recipe may name before they exist, and why. Everything else it names must exist in the checkout.
DATA = REPO / "data"  # the published datasets, downloaded by the user (recipes/README.md); never committed
BUILT = {REPO / ".cache" / "demo-model": "built by `make demo`"}


def ids(paths):
    return [str(p.relative_to(RECIPES_DIR)) for p in paths]


def test_the_expected_files_are_there():
    assert {p.name for p in ACCELERATE_CONFIGS} == {
        "single_gpu.yaml",
        "multi_gpu.yaml",
        "multi_node.yaml",
        "deepspeed_zero2.yaml",
    }
    assert set(ids(RECIPES)) == {
        "demo.json",
        "pretrain/shared-data-tiny.json",
        "pretrain/shared-data-tiny-transductive.json",
        "pretrain/thucnews-titles-task.json",
    } | {f"{task}/chinese-bert-wwm-ext.json" for task in LAYOUTS}


@pytest.mark.parametrize("recipe", RECIPES, ids=ids(RECIPES))
def test_recipe_parses_and_names_files_that_exist(recipe):
    # unknown keys and wrong types raise UserError
    pretraining = PRETRAIN_DIR in recipe.parents and not recipe.name.endswith("-task.json")  # -task: for --from_task
    parse_args([str(recipe)], dataclass_types=pretrain.DATACLASSES if pretraining else run_dataclasses())
    raw = read_recipe(str(recipe))
    for key, kind in PATH_FIELDS.items():
        values = raw.get(key)
        for value in values if isinstance(values, list) else [] if values is None else [values]:
            path = resolve_path(value, str(recipe.parent), hub_ok=kind == "file_or_hub")
            if path == value and kind == "file_or_hub" and not value.startswith("."):
                continue  # a Hub id
            path = Path(path)
            if path.exists():
                continue
            if DATA in path.parents:
                documented = str(path.relative_to(REPO))
                assert f"`{documented}`" in README, (
                    f"{recipe.relative_to(REPO)}: {key} {documented} is not in recipes/README.md"
                )
            else:
                assert path in BUILT, f"{recipe.relative_to(REPO)}: {key} names {path}, which does not exist"


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=ids(ACCELERATE_CONFIGS))
def test_accelerate_config_holds_only_keys_accelerate_knows(config):
    raw = yaml.safe_load(config.read_text())
    cluster = load_config_from_file(str(config))  # raises on keys accelerate does not know
    launch_flags = {action.dest for action in launch_command_parser()._actions}
    for key in raw.get("deepspeed_config") or {}:
        assert key in launch_flags, f"{config.name}: deepspeed_config key {key!r} is not an accelerate launch flag"
    # Precision, batch size and accumulation are training settings: they belong to the recipe.
    assert not {"mixed_precision", "gradient_accumulation_steps"} & set(raw)
    assert cluster.num_processes >= 1 and cluster.num_processes % cluster.num_machines == 0
    assert f"`{config.relative_to(REPO)}`" in README


# The layout each recipe expects, as the published datasets ship it (recipes/README.md): a few rows in that
# layout are read through the recipe's own column settings.
def tsv(*lines):
    return "\n".join(lines) + "\n"


def jsonl(*rows):
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


ERNIE_SINGLE = tsv("label\ttext_a", "1\t房间很干净，服务热情", "0\t设施陈旧，隔音很差", "1\t早餐丰富")
ERNIE_PAIR = tsv(
    "text_a\ttext_b\tlabel",
    "怎么开通花呗\t花呗如何开通\t1",
    "今天天气好吗\t明天几点上班\t0",
    "借呗能提前还吗\t借呗提前还款\t1",
)
CLUE_TNEWS = jsonl(
    {"label": "102", "label_desc": "news_entertainment", "sentence": "新片定档春节", "keywords": "电影"},
    {"label": "103", "label_desc": "news_sports", "sentence": "主队加时险胜", "keywords": "篮球"},
    {"label": "102", "label_desc": "news_entertainment", "sentence": "歌手发布新专辑", "keywords": ""},
)
CLUE_TNEWS_TEST = jsonl({"id": 0, "sentence": "球队官宣新帅", "keywords": "足球"})  # CLUE test files are unlabelled
CLUE_AFQMC = jsonl(
    {"sentence1": "花呗怎么还款", "sentence2": "花呗如何还钱", "label": "1"},
    {"sentence1": "借呗额度", "sentence2": "余额宝收益", "label": "0"},
)
CLUE_AFQMC_TEST = jsonl({"id": 0, "sentence1": "花呗逾期", "sentence2": "花呗晚还了"})
CNEWS = tsv("体育\t主队加时险胜，晋级决赛", "财经\t央行宣布下调存款准备金率", "体育\t名将宣布退役")

# task -> ({split: file text}, rows per split (train, validation, test), first train row (text, pair, label))
LAYOUTS = {
    "chnsenticorp": ((ERNIE_SINGLE,) * 3, (3, 3, 3), ("房间很干净，服务热情", None, "1")),
    "lcqmc": ((ERNIE_PAIR,) * 3, (3, 3, 3), ("怎么开通花呗", "花呗如何开通", "1")),
    "bq_corpus": ((ERNIE_PAIR,) * 3, (3, 3, 3), ("怎么开通花呗", "花呗如何开通", "1")),
    "afqmc": ((CLUE_AFQMC, CLUE_AFQMC, CLUE_AFQMC_TEST), (2, 2, 1), ("花呗怎么还款", "花呗如何还钱", "1")),
    "tnews": ((CLUE_TNEWS, CLUE_TNEWS, CLUE_TNEWS_TEST), (3, 3, 1), ("新片定档春节", None, "102")),
    "thucnews": ((CNEWS,) * 3, (3, 3, 3), ("主队加时险胜，晋级决赛", None, "体育")),
}


@pytest.mark.parametrize("task", sorted(LAYOUTS))
def test_recipe_reads_its_documented_layout(task, tmp_path):
    recipe = RECIPES_DIR / task / "chinese-bert-wwm-ext.json"
    texts, counts, (text, pair, label) = LAYOUTS[task]
    _, data_args, _ = parse_args([str(recipe)])
    overrides = []
    for i, flag in enumerate(("train_file", "validation_file", "test_file")):
        # Same file name as the recipe's, so the extension (and with it the reader) is the recipe's.
        path = tmp_path / flag / Path(getattr(data_args, flag)).name
        path.parent.mkdir()
        path.write_text(texts[i], encoding="utf-8")
        overrides += [f"--{flag}", str(path)]
    _, data_args, training_args = parse_args([str(recipe), *overrides])
    task_data = load_task_data(data_args, training_args.seed)
    assert task_data.is_pair == (pair is not None)
    assert [len(task_data.splits[s]) for s in ("train", "validation", "test")] == list(counts)
    first = task_data.splits["train"][0]
    assert first["text"] == text and first.get("text_pair") == pair
    assert task_data.labels.names[first["label"]] == label
