"""Shared fixtures: offline settings, the real datasets in ../shared/data, tiny BERTs built on the fly."""

import os
import sys
from pathlib import Path

# Before transformers/datasets are imported anywhere: never touch the Hub, keep the datasets cache per session.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# One thread per process: the tiny test models gain nothing from more, and on a 2-core machine shared with anything
# else (a second process of the DDP tests, another job) OpenMP's spinning threads made one test 8x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault(
    "HF_DATASETS_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"bertcls-tests-{os.getpid()}")
)

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("BERTCLS_SHARED_DATA", REPO.parent / "shared" / "data"))
VOCAB = SHARED_DATA / "vocab" / "vocab.txt"

sys.path.insert(0, str(REPO))  # run_classification.py is a script at the top level, not in the package


def shared(*parts) -> str:
    """A path inside ../shared/data. Missing data fails the test (never a silent skip: a green run must mean the
    tests ran)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests need ../shared/data beside the checkout (or BERTCLS_SHARED_DATA)")
    return str(path)


def make_tiny(path: Path, **overrides) -> str:
    from bertcls.model.tiny import TinyModelArguments, make_tiny_bert

    settings = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, **overrides}
    return make_tiny_bert(
        TinyModelArguments(output_dir=str(path), vocab_file=shared("vocab", "vocab.txt"), **settings)
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A 2-layer, 32-wide random BERT with the real bert-base-chinese vocabulary (21128 tokens)."""
    return make_tiny(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tokenizer(tiny_model):
    from bertcls.model.checkpoints import load_tokenizer

    return load_tokenizer(tiny_model)


@pytest.fixture
def write(tmp_path):
    """write("name.tsv", "text") -> path: a small data file for one test."""

    def _write(name: str, text: str, encoding: str = "utf-8") -> str:
        path = tmp_path / name
        path.write_bytes(text.encode(encoding))
        return str(path)

    return _write


def cli(**flags) -> list[str]:
    """Command-line flags from keywords: cli(max_steps=2, do_eval=False) -> ["--max_steps", "2", "--do_eval", "false"]."""
    argv = []
    for name, value in flags.items():
        argv.append(f"--{name}")
        if isinstance(value, bool):
            argv.append(str(value).lower())
        elif isinstance(value, (list, tuple)):
            argv.extend(str(v) for v in value)
        else:
            argv.append(str(value))
    return argv


def first_rows(source: str, rows: int, folder) -> str:
    """A file of the header and the first `rows` lines of `source` (byte for byte), in `folder`. --max_*_samples
    draw a sample; tests that compare outputs with the first rows of a file give the run those rows as a file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{Path(source).parent.name}-{Path(source).stem}-{rows}{Path(source).suffix}"
    if not target.exists():
        with open(source, "rb") as f:
            lines = [f.readline() for _ in range(rows + 1)]
        target.write_bytes(b"".join(lines))
    return str(target)


def chnsenticorp(model, out, train=600, validation=200, test=300, **flags) -> list[str]:
    """run_classification.py flags for a ChnSentiCorp subset (the first rows of each split, as files beside out)."""
    d, data = shared("chnsenticorp"), Path(out).parent / "chnsenticorp-head"
    return cli(
        model_name_or_path=model,
        train_file=first_rows(f"{d}/train.tsv", train, data),
        validation_file=first_rows(f"{d}/dev.tsv", validation, data),
        test_file=first_rows(f"{d}/test.tsv", test, data),
        text_column="text_a",
        output_dir=out,
        **flags,
    )
