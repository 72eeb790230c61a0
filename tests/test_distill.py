"""bertcls distill: the soft-target loss against a hand computation, the cached teacher logits against a fresh forward
pass of plain transformers, a student built from the teacher's layers against the teacher's tensors, distillation
against label training on noisy labels, teachers of every kind (pair, custom head, multi-label), augmentation, bad
inputs, and the student folder through export (its parity check), predict and serve as separate processes."""

import json
import math
import os
import random
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import run_classification
from bertcls.distill import run as distill
from bertcls.distill.losses import DistillationLoss, soft_target_loss
from bertcls.distill.student import student_from_teacher
from bertcls.distill.teacher import teacher_logits
from bertcls.model.classifier import TrainedClassifier
from bertcls.model.losses import MULTI_LABEL, ClassificationLoss

from .conftest import REPO, cli, make_tiny, shared

TEACHER_FLAGS = {
    "max_seq_length": 24,
    "per_device_train_batch_size": 16,
    "learning_rate": 3e-3,
    "save_strategy": "no",
    "do_eval": False,
    "validation_split_percentage": 0,
    "seed": 3,
    "report_to": "none",
    "disable_tqdm": True,
}
STUDENT_FLAGS = {k: v for k, v in TEACHER_FLAGS.items() if k != "max_seq_length"}  # the teacher's is used


# -- the losses, by hand ------------------------------------------------------------------------------------------

STUDENT = [[1.0, -0.5, 0.25], [0.0, 2.0, -1.0]]
TEACHER = [[2.0, 0.0, -1.0], [-0.5, 1.5, 0.5]]


def hand_kl(student, teacher, temperature) -> float:
    """T^2 x mean over rows of sum_c p_t(c) (log p_t(c) - log p_s(c)), softmax at temperature T, in plain math."""

    def softmax(row):
        exps = [math.exp(v / temperature) for v in row]
        return [e / sum(exps) for e in exps]

    total = 0.0
    for s_row, t_row in zip(student, teacher):
        p_s, p_t = softmax(s_row), softmax(t_row)
        total += sum(t * (math.log(t) - math.log(s)) for s, t in zip(p_s, p_t))
    return temperature**2 * total / len(student)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kl_at_temperature_matches_a_hand_computation(temperature):
    got = soft_target_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), temperature, "single_label_classification")
    assert got.item() == pytest.approx(hand_kl(STUDENT, TEACHER, temperature), rel=1e-6)
    same = soft_target_loss(torch.tensor(TEACHER), torch.tensor(TEACHER), temperature, None)
    assert same.item() == pytest.approx(0.0, abs=1e-7)


def test_multi_label_and_regression_soft_targets_by_hand():
    temperature = 2.0
    expected = 0.0
    for s_row, t_row in zip(STUDENT, TEACHER):
        for s, t in zip(s_row, t_row):
            q = 1 / (1 + math.exp(-t / temperature))
            p = 1 / (1 + math.exp(-s / temperature))
            expected += -(q * math.log(p) + (1 - q) * math.log(1 - p))
    expected = temperature**2 * expected / 6
    got = soft_target_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), temperature, MULTI_LABEL)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    values = soft_target_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [1.0]]), temperature, "regression")
    assert values.item() == pytest.approx(((1 - 2) ** 2 + (3 - 1) ** 2) / 2)


def test_alpha_mixes_soft_and_hard_and_unlabelled_rows_take_soft_alone():
    student, teacher = torch.tensor(STUDENT), torch.tensor(TEACHER)
    labels = torch.tensor([0, 2])
    ce = [-math.log(math.exp(r[y]) / sum(math.exp(v) for v in r)) for r, y in zip(STUDENT, labels.tolist())]
    per_row_kl = [hand_kl([s], [t], 2.0) for s, t in zip(STUDENT, TEACHER)]
    loss = DistillationLoss(ClassificationLoss(), "single_label_classification", temperature=2.0, alpha=0.3)
    both, _ = loss(student, teacher, labels, torch.tensor([True, True]))
    assert both.item() == pytest.approx(0.3 * sum(per_row_kl) / 2 + 0.7 * sum(ce) / 2, rel=1e-6)
    # Row 1 has no label: it counts with its soft loss alone; each row is half the batch.
    mixed, _ = loss(student, teacher, labels, torch.tensor([True, False]))
    assert mixed.item() == pytest.approx(0.5 * (0.3 * per_row_kl[0] + 0.7 * ce[0]) + 0.5 * per_row_kl[1], rel=1e-6)


# -- teachers -----------------------------------------------------------------------------------------------------


def subset(source: str, target, rows: int) -> str:
    with open(source, encoding="utf-8") as f:
        lines = [next(f) for _ in range(rows + 1)]
    target.write_text("".join(lines), encoding="utf-8")
    return str(target)


@pytest.fixture(scope="module")
def encoder4(tmp_path_factory) -> str:
    """A 4-layer tiny BERT, so students of 1 and 2 layers are smaller."""
    return make_tiny(tmp_path_factory.mktemp("tiny4"), num_layers=4)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    d, folder = shared("chnsenticorp"), tmp_path_factory.mktemp("sentiment")
    return {
        "train": subset(f"{d}/train.tsv", folder / "train.tsv", 160),
        "test": subset(f"{d}/test.tsv", folder / "test.tsv", 60),
    }


def train_teacher(model, out, steps=12, **flags) -> str:
    run_classification.main(cli(model_name_or_path=model, output_dir=out, max_steps=steps, **TEACHER_FLAGS, **flags))
    return str(out)


@pytest.fixture(scope="module")
def teacher(encoder4, files, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("teacher") / "run"
    return train_teacher(encoder4, out, train_file=files["train"], test_file=files["test"], text_column="text_a")


@pytest.fixture(scope="module")
def student(teacher, files, tmp_path_factory) -> tuple[str, dict]:
    """A 2-layer student distilled from the teacher, and its results."""
    out = str(tmp_path_factory.mktemp("student") / "run")
    argv = cli(teacher=teacher, student_layers=2, train_file=files["train"], test_file=files["test"], output_dir=out)
    results = distill.main(argv + cli(max_steps=8, **STUDENT_FLAGS))
    return out, results


# -- the teacher's logits -----------------------------------------------------------------------------------------


def test_cached_teacher_logits_equal_a_fresh_forward_pass(teacher, files, monkeypatch):
    classifier = TrainedClassifier.load(teacher, device="cpu")
    rows = pd.read_csv(files["train"], sep="\t", quoting=3, dtype=str)["text_a"].tolist()
    from datasets import Dataset

    texts = Dataset.from_dict({"text": rows})
    data_args = classifier.data_args()
    cached = teacher_logits(classifier, texts, data_args)
    assert isinstance(cached, np.memmap)  # read from the file, not held in memory

    # A fresh forward pass with plain transformers, inputs cut as the teacher was trained (max_seq_length 24).
    model = AutoModelForSequenceClassification.from_pretrained(teacher).eval()
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    with torch.no_grad():
        fresh = model(**tokenizer(rows, truncation=True, max_length=24, padding=True, return_tensors="pt")).logits
    np.testing.assert_allclose(cached, fresh.numpy(), atol=1e-5)

    # The second time nothing runs the teacher; other texts (or another teacher) are another cache entry.
    def no_forward(*args, **kwargs):
        raise AssertionError("the teacher ran again")

    monkeypatch.setattr(TrainedClassifier, "logits", no_forward)
    again = teacher_logits(classifier, texts, data_args)
    assert again.filename == cached.filename
    with pytest.raises(AssertionError, match="ran again"):
        teacher_logits(classifier, Dataset.from_dict({"text": rows[:-1] + ["另一个评论"]}), data_args)


def test_a_distillation_run_computes_the_teacher_logits_once(teacher, files, tmp_path, monkeypatch):
    calls = []
    real = TrainedClassifier.logits

    def counted(self, *args, **kwargs):
        calls.append(len(args[0]))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TrainedClassifier, "logits", counted)
    train = subset(files["train"], tmp_path / "train.tsv", 143)  # texts no other test gives this teacher
    argv = cli(teacher=teacher, student_layers=1, train_file=train, num_train_epochs=3, **STUDENT_FLAGS)
    distill.main(argv + cli(output_dir=tmp_path / "a", do_predict=False))
    assert calls == [143]  # once, over the 143 train texts, for all three epochs
    distill.main(argv + cli(output_dir=tmp_path / "b", do_predict=False, seed=4))
    assert calls == [143]  # a second run reads the cache


# -- the student --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer_ids, expected", [(None, [0, 2]), ([1, 3], [1, 3])])
def test_a_student_built_from_teacher_layers_holds_exactly_those_weights(teacher, layer_ids, expected):
    model = TrainedClassifier.load(teacher, device="cpu").model
    built, used = student_from_teacher(model, layer_ids, 2)
    assert used == expected and built.config.num_hidden_layers == 2
    theirs, ours = model.state_dict(), built.state_dict()
    for key, tensor in ours.items():
        if ".encoder.layer." in key:
            prefix, rest = key.split(".encoder.layer.")
            index, tail = rest.split(".", 1)
            source = f"{prefix}.encoder.layer.{expected[int(index)]}.{tail}"
        else:
            source = key  # embeddings, pooler, classifier
        assert torch.equal(tensor, theirs[source]), key
    layer_keys = {k for k in ours if ".encoder.layer." in k}
    assert len(layer_keys) * 2 == len({k for k in theirs if ".encoder.layer." in k})


def test_the_student_folder_is_a_fine_tuned_folder(student, files, tmp_path):
    out, results = student
    with open(os.path.join(out, "README.md"), encoding="utf-8") as f:
        card = f.read()
    assert "## Distillation" in card and "2 of the teacher's 4 encoder layers (0, 2" in card
    assert "temperature 2" in card and "alpha 0.5" in card
    with open(os.path.join(out, "recipe.json")) as f:
        recipe = json.load(f)
    assert recipe["student_layers"] == 2 and os.path.isabs(recipe["teacher"])
    # An eval-only run of run_classification.py scores it as distill did.
    again = run_classification.main(
        cli(
            model_name_or_path=out,
            do_predict=True,
            test_file=files["test"],
            output_dir=tmp_path / "e",
            report_to="none",
        )
    )
    assert again["test_accuracy"] == pytest.approx(results["test_accuracy"])
    assert TrainedClassifier.load(out).config.num_hidden_layers == 2


# -- distillation against labels ----------------------------------------------------------------------------------


def synthetic(path, rows: int, seed: int, flip: float = 0.0) -> str:
    """Reviews whose label is their first character (好 -> 1, 坏 -> 0) before 10 random filler characters; a share
    `flip` of the labels is wrong."""
    rng = random.Random(seed)
    filler = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"
    lines = ["label\ttext"]
    for _ in range(rows):
        label = rng.randint(0, 1)
        text = ("好" if label else "坏") + "".join(rng.choice(filler) for _ in range(10))
        shown = 1 - label if rng.random() < flip else label
        lines.append(f"{shown}\t{text}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_distillation_moves_the_student_toward_a_right_teacher_more_than_noisy_labels_do(
    tmp_path, tiny_model, encoder4
):
    clean = synthetic(tmp_path / "clean.tsv", 320, seed=1)
    noisy = synthetic(tmp_path / "noisy.tsv", 320, seed=2, flip=0.35)
    held_out = synthetic(tmp_path / "held_out.tsv", 200, seed=3)
    teacher = train_teacher(encoder4, tmp_path / "teacher", steps=40, train_file=clean, test_file=held_out)
    with open(os.path.join(teacher, "all_results.json")) as f:
        assert json.load(f)["test_accuracy"] >= 0.97  # the teacher is right
    teacher_probs = TrainedClassifier.load(teacher).predict_rows(
        pd_rows(held_out), TrainedClassifier.load(teacher).data_args()
    )

    def student(alpha: float) -> np.ndarray:
        out = tmp_path / f"alpha-{alpha}"
        # The same fresh start for both (a random 2-layer checkpoint), the same noisy labels, steps and seed.
        argv = cli(teacher=teacher, student=tiny_model, train_file=noisy, alpha=alpha, output_dir=out, max_steps=60)
        distill.main(argv + cli(do_predict=False, **STUDENT_FLAGS))
        classifier = TrainedClassifier.load(str(out))
        return classifier.predict_rows(pd_rows(held_out), classifier.data_args())

    by_labels, distilled = student(0.0), student(0.9)
    distance = {
        name: float(np.abs(p - teacher_probs).mean()) for name, p in (("labels", by_labels), ("kd", distilled))
    }
    agree = {
        name: float((p.argmax(1) == teacher_probs.argmax(1)).mean())
        for name, p in (("labels", by_labels), ("kd", distilled))
    }
    assert distance["kd"] < 0.6 * distance["labels"], distance
    assert agree["kd"] >= agree["labels"], agree


def pd_rows(path):
    from datasets import Dataset

    frame = pd.read_csv(path, sep="\t", dtype=str)
    return Dataset.from_dict({"text": frame["text"].tolist()})


# -- every kind of teacher ----------------------------------------------------------------------------------------


def multi_label_file(path, rows: int) -> str:
    """Texts of random characters; label `good` when 好 is in the text, `big` when 大 is (any number of labels)."""
    rng = random.Random(5)
    out = []
    for _ in range(rows):
        text = "".join(rng.choice("好坏大小人们") for _ in range(8))
        labels = [name for name, char in (("good", "好"), ("big", "大")) if char in text]
        out.append(json.dumps({"text": text, "label": labels}, ensure_ascii=False))
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("kind", ["pair", "custom head", "multi-label"])
def test_teachers_of_every_kind_distil_into_a_working_folder(kind, encoder4, tmp_path):
    if kind == "pair":
        data = {"train_file": subset(shared("lcqmc", "dev.tsv"), tmp_path / "pairs.tsv", 120)}
        teacher_flags = {**data, "text_column": "text_a", "text_pair_column": "text_b"}
    elif kind == "custom head":
        data = {"train_file": subset(shared("chnsenticorp", "train.tsv"), tmp_path / "t.tsv", 120)}
        teacher_flags = {**data, "text_column": "text_a", "head": "mlp", "pooling": "mean"}
    else:
        data = {"train_file": multi_label_file(tmp_path / "multi.jsonl", 120)}
        teacher_flags = {**data, "multi_label": True}
    teacher = train_teacher(encoder4, tmp_path / "teacher", steps=6, **teacher_flags)
    out = tmp_path / "student"
    argv = cli(teacher=teacher, student_layers=1, output_dir=out, max_steps=4, do_predict=False, **data)
    distill.main(argv + cli(**STUDENT_FLAGS))
    student, original = TrainedClassifier.load(str(out)), TrainedClassifier.load(teacher)
    assert student.config.num_hidden_layers == 1
    assert student.labels == original.labels and student.preprocessing == original.preprocessing
    pairs = ["今天天气很好"] if kind == "pair" else None
    probs = student.predict_texts(["这家酒店很好"], pairs)
    assert probs.shape == (1, len(original.labels))


def test_layer_losses_and_augmentation_run_and_are_reported(teacher, files, tmp_path, caplog):
    from transformers import AutoConfig, BertForMaskedLM

    mlm = tmp_path / "mlm"  # a masked-LM checkpoint as save_pretrained writes one (BertForMaskedLM)
    torch.manual_seed(0)
    BertForMaskedLM(AutoConfig.from_pretrained(teacher)).save_pretrained(mlm)
    AutoTokenizer.from_pretrained(teacher).save_pretrained(mlm)
    unlabelled = tmp_path / "unlabelled.tsv"
    unlabelled.write_text(
        "text_a\n" + "\n".join(["房间很干净，服务也好", "价格太贵了，不会再来"] * 10) + "\n", encoding="utf-8"
    )
    argv = cli(teacher=teacher, student_layers=2, train_file=files["train"], output_dir=tmp_path / "s", max_steps=4)
    argv += cli(hidden_weight=1.0, attention_weight=1.0, unlabelled_file=[str(unlabelled)], augment_copies=1)
    argv += cli(augment_model=mlm, do_predict=False, **STUDENT_FLAGS)
    with caplog.at_level("INFO", logger="bertcls"):
        results = distill.main(argv)
    assert results["transfer_unlabelled"] > 20  # 20 unlabelled texts plus the new augmented ones
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("augmentation:"))
    new = int(line.split()[1])
    assert results["transfer_texts"] == 160 + 20 + new and new > 100


# -- bad inputs ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({}, "pass exactly one of --student"),
        ({"student_layers": 4}, "the teacher has 4 layers"),
        ({"student_layers": 2, "student_layer_ids": [0]}, "--student_layer_ids names 1 layers"),
        ({"student_layers": 1, "alpha": 1.5}, "--alpha must be in [0, 1], got 1.5"),
        ({"student_layers": 1, "temperature": 0}, "--temperature must be above 0"),
        ({"student_layers": 1, "augment_copies": 1}, "has no trained masked-LM head"),
        ({"student_layers": 1, "kfold": 3}, "--kfold is not available for distillation"),
        ({"student_layers": 1, "layer_map": [0, 4]}, "--layer_map is for --hidden_weight"),
    ],
)
def test_bad_settings_are_one_line(flags, expected, teacher, files, tmp_path, capsys):
    argv = cli(teacher=teacher, train_file=files["train"], output_dir=tmp_path / "o", **flags)
    with pytest.raises(SystemExit) as exit_info:
        distill.main(argv + cli(**STUDENT_FLAGS))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and expected in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()  # nothing written


def test_a_pretrained_checkpoint_is_not_a_teacher_and_recipes_check_their_keys(tiny_model, files, tmp_path, capsys):
    with pytest.raises(SystemExit):
        distill.main(cli(teacher=tiny_model, student_layers=1, train_file=files["train"], output_dir=tmp_path / "o"))
    assert "is not a fine-tuned classifier" in capsys.readouterr().err
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"teacher": "t", "student_layer": 1}))
    with pytest.raises(SystemExit):
        distill.main([str(recipe)])
    err = capsys.readouterr().err
    assert "unknown key 'student_layer'" in err and "'student_layers'" in err  # the fix names the right key


# -- shipping: export's parity check, predict and serve, through their command lines ------------------------------


@pytest.mark.slow
def test_the_student_exports_with_parity_and_is_served(student, files, tmp_path):
    out, _ = student
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    onnx_dir = tmp_path / "onnx"
    done = subprocess.run(
        [sys.executable, "-m", "bertcls", "export", "--model_name_or_path", out, "--output_dir", str(onnx_dir)],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    with open(onnx_dir / "export_report.json") as f:
        report = json.load(f)
    assert report["onnx_fp32"]["agreement"] == 1.0 and report["rows"] == 60  # the student's own test file
    predictions = tmp_path / "predictions.csv"
    done = subprocess.run(
        [sys.executable, "-m", "bertcls", "predict", "--model_name_or_path", out, "--input_file", files["test"],
         "--output_file", str(predictions)],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    expected = pd.read_csv(predictions, dtype={"prediction": str}, keep_default_na=False)

    import httpx

    command = [sys.executable, "-m", "bertcls", "serve", "--model_name_or_path", str(onnx_dir), "--port", "0"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()  # "serving FOLDER on URL", once it listens
        assert first.startswith("serving "), first + process.stderr.read()
        url = first.split(" on ")[-1].strip()
        with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
            texts = expected["text_a"].tolist()[:8]
            answer = client.post("/predict", json={"texts": texts})
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert answer.status_code == 200, answer.text
    served = answer.json()["predictions"]
    assert [p["label"] for p in served] == expected["prediction"].tolist()[:8]
    assert np.allclose([p["score"] for p in served], expected["score"][:8], atol=1e-5)


def test_a_resumed_distillation_ends_where_the_uninterrupted_one_does(teacher, files, tmp_path):
    import glob
    import shutil

    argv = cli(teacher=teacher, student_layers=2, train_file=files["train"], test_file=files["test"], max_steps=8)
    argv += cli(**{**STUDENT_FLAGS, "save_strategy": "steps"}, save_steps=4)
    whole = distill.main(argv + cli(output_dir=tmp_path / "whole"))
    out = tmp_path / "resumed"
    distill.main(argv + cli(output_dir=out))
    # As if killed after checkpoint-4: the later checkpoint and every final file are gone.
    shutil.rmtree(out / "checkpoint-8")
    for path in glob.glob(str(out / "*")):
        if os.path.isfile(path):
            os.remove(path)
    resumed = distill.main(argv + cli(output_dir=out, resume_from_checkpoint="auto"))
    assert resumed["test_accuracy"] == pytest.approx(whole["test_accuracy"])
    assert resumed["test_loss"] == pytest.approx(whole["test_loss"], rel=1e-5)


def test_adversarial_training_distils_both_passes(teacher, files, tmp_path, monkeypatch):
    calls = []
    real = DistillationLoss.__call__

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DistillationLoss, "__call__", counted)
    argv = cli(teacher=teacher, student_layers=1, train_file=files["train"], output_dir=tmp_path / "s", max_steps=2)
    distill.main(argv + cli(adversarial="fgm", do_predict=False, **STUDENT_FLAGS))
    assert len(calls) == 4  # the clean and the adversarial pass of each of the 2 steps learn from the teacher
