"""bertcls predict on files: nothing it writes destroys an input, the output format follows the extension, and a
batch job keeps rows in = rows out (a blank text keeps its row, with an empty prediction)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bertcls.shipping import predict

from .shipping import fine_tuned

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory):
    return fine_tuned("single", tiny_model, tmp_path_factory)


@pytest.fixture
def rows(run, tmp_path):
    """Eight rows of the run's test file, in a file of this test's own."""
    with open(run / "recipe.json") as f:
        frame = pd.read_csv(json.load(f)["test_file"], sep="\t", quoting=3, dtype=str).iloc[:8]
    path = tmp_path / "rows.tsv"
    frame.to_csv(path, sep="\t", index=False)
    return path, frame


def call(model, input_file, output_file, *flags):
    argv = ["--model_name_or_path", str(model), "--input_file", str(input_file), "--output_file", str(output_file)]
    return predict.main([*argv, *flags])


def refused(capsys, *args) -> str:
    with pytest.raises(SystemExit) as exit_info:
        call(*args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback (most recent call last)" not in err and len(errors) == 1, err
    return errors[0]


def test_outputs_that_would_destroy_an_input_are_refused(run, rows, tmp_path, capsys):
    path, _ = rows
    model = tmp_path / "model"
    shutil.copytree(run, model)
    data, weights = path.read_bytes(), (model / "model.safetensors").read_bytes()
    assert "is the input file" in refused(capsys, model, path, path)
    assert "is the input file" in refused(capsys, model, path, tmp_path / "." / "rows.tsv")  # another spelling
    assert "lies in the model folder" in refused(capsys, model, path, model / "model.safetensors")
    assert "lies in the model folder" in refused(capsys, model, path, model / "preds.csv")
    assert "unknown output format '.xlsx'" in refused(capsys, model, path, tmp_path / "preds.xlsx")
    assert "unknown output format '(no extension)'" in refused(capsys, model, path, tmp_path / "preds")
    assert path.read_bytes() == data and (model / "model.safetensors").read_bytes() == weights
    assert not (model / "preds.csv").exists()


def test_the_output_format_follows_the_extension(run, rows, tmp_path):
    path, frame = rows
    call(run, path, tmp_path / "p.csv")
    expected = pd.read_csv(tmp_path / "p.csv", dtype={"prediction": str, "label": str})
    readers = {
        "tsv": lambda p: pd.read_csv(p, sep="\t", dtype={"prediction": str, "label": str}),
        "jsonl": lambda p: pd.read_json(p, lines=True, dtype={"prediction": str, "label": str}),
        "json": lambda p: pd.DataFrame(json.loads(p.read_text(encoding="utf-8"))),
        "parquet": pd.read_parquet,
    }
    for ext, read in readers.items():
        call(run, path, tmp_path / f"p.{ext}")
        got = read(tmp_path / f"p.{ext}")
        assert list(got.columns) == list(expected.columns), ext
        assert got["text_a"].tolist() == frame["text_a"].tolist(), ext
        assert got["prediction"].astype(str).tolist() == expected["prediction"].tolist(), ext
        assert np.allclose(got["prob_1"].astype(float), expected["prob_1"], atol=1e-6), ext


def test_blank_texts_keep_their_rows_with_an_empty_prediction(run, rows, tmp_path, caplog, capsys):
    path, frame = rows
    call(run, path, tmp_path / "all.csv")
    full = pd.read_csv(tmp_path / "all.csv", dtype={"prediction": str, "label": str}, keep_default_na=False)
    blanked = frame.copy()
    blanked.loc[[2, 5], "text_a"] = ["", "   "]
    holes = tmp_path / "holes.tsv"
    blanked.to_csv(holes, sep="\t", index=False)
    call(run, holes, tmp_path / "holes.csv")
    out = pd.read_csv(tmp_path / "holes.csv", dtype={"prediction": str, "label": str}, keep_default_na=False)
    assert len(out) == len(frame) == 8  # rows in = rows out
    assert out["prediction"].tolist()[2] == "" and out["prediction"].tolist()[5] == ""
    assert out.loc[[2, 5], ["score", "prob_0", "prob_1"]].eq("").all().all()  # empty cells, not a made-up 0
    kept = [0, 1, 3, 4, 6, 7]
    assert out.loc[kept, "prediction"].tolist() == full.loc[kept, "prediction"].tolist()
    assert np.allclose(out.loc[kept, "prob_1"].astype(float), full.loc[kept, "prob_1"], atol=1e-6)
    printed = capsys.readouterr().out
    assert "8 predictions written" in printed and "(2 rows with a blank text left empty)" in printed
    assert "scored 6 of 6 rows" in printed  # blank rows are not scored

    err = refused(capsys, run, holes, tmp_path / "strict.csv", "--blank_texts", "error")
    assert "empty text in column 'text_a'" in err and "lines 4, 7" in err, err
    assert not (tmp_path / "strict.csv").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--batch_siz", "4"], "unknown argument(s) --batch_siz 4"),
        (["--batch_size", "0"], "--batch_size must be at least 1, got 0"),
        (["--blank_texts", "skip"], "invalid choice: 'skip'"),
    ],
)
def test_flag_errors_are_one_line(flags, message, run, rows, tmp_path, capsys):
    assert message in refused(capsys, run, rows[0], tmp_path / "p.csv", *flags)


def test_backend_auto_picks_the_faster_form_within_the_agreement_gate(run, rows, tmp_path, caplog):
    """--backend auto on a run's folder: torch fp32 or torch bf16 autocast (where the CPU has bf16), measured on the
    user's own rows; bf16's agreement is pinned against the two backends' own predictions."""
    from bertcls.model.classifier import AUTO_MIN_AGREEMENT, TrainedClassifier, pick_fastest
    from bertcls.model.runtime import cpu_has_bf16
    from bertcls.shipping import serve

    _, frame = rows
    texts = frame["text_a"].tolist()
    fp32 = TrainedClassifier.load(str(run), device="cpu")
    chosen, report = pick_fastest(fp32, texts)
    assert chosen.backend.name == report["chosen"]
    if not cpu_has_bf16():
        assert report == {"chosen": "torch", "why": "no bf16 instructions on this CPU"}
    else:
        bf16 = TrainedClassifier.load(str(run), device="cpu", backend="torch_bf16")
        agree = (fp32.predict_texts(texts).argmax(-1) == bf16.predict_texts(texts).argmax(-1)).mean()
        assert report["bf16_agreement"] == pytest.approx(agree) and report["rows"] == len(texts)
        speeds = report["rows_per_s"]
        faster = speeds["torch_bf16"] > speeds["torch"]
        assert report["chosen"] == ("torch_bf16" if faster and agree >= AUTO_MIN_AGREEMENT else "torch")
    exported_like = TrainedClassifier.load(str(run), device="cpu")
    exported_like.backend.name = "onnx"  # an export folder is never re-measured
    assert pick_fastest(exported_like, texts)[1]["chosen"] == "onnx"
    # The same choice through the tools' flags: predict measures on its input file, serve on the run's test rows.
    with caplog.at_level("INFO", logger="bertcls"):
        out = call(run, rows[0], tmp_path / "auto.csv", "--backend", "auto", "--device", "cpu")
    assert len(out) == len(frame) and (cpu_has_bf16() == ("--backend auto:" in caplog.text))
    served = serve.load(serve.ServeArguments(model_name_or_path=str(run), backend="auto", device="cpu"))
    assert served.backend.name in ("torch", "torch_bf16")
