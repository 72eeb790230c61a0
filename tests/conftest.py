"""Shared fixtures: offline settings, the real datasets in ../shared/data, tiny BERTs built on the fly."""

import os
import sys
from pathlib import Path

# Before transformers/datasets are imported anywhere: never touch the Hub, keep the datasets cache per session.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault(
    "HF_DATASETS_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"bertcls-tests-{os.getpid()}")
)

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("BERTCLS_SHARED_DATA", REPO.parent / "shared" / "data"))
VOCAB = SHARED_DATA / "vocab" / "vocab.txt"

sys.path.insert(0, str(REPO))  # run_classification.py is a script at the top level, not in the package


def shared(*parts) -> str:
    """A path inside ../shared/data. CI (BERTCLS_REQUIRE_SHARED_DATA=1) fails when it is missing; elsewhere skip."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("BERTCLS_REQUIRE_SHARED_DATA"):
            pytest.fail(f"{path} is missing: the tests need ../shared/data beside the checkout")
        pytest.skip(f"{path} not available")
    return str(path)


def make_tiny(path: Path, **overrides) -> str:
    from bertcls.tiny_model import TinyModelArguments, make_tiny_bert

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
    from bertcls.tokenization import load_tokenizer

    return load_tokenizer(tiny_model)


@pytest.fixture
def write(tmp_path):
    """write("name.tsv", "text") -> path: a small data file for one test."""

    def _write(name: str, text: str, encoding: str = "utf-8") -> str:
        path = tmp_path / name
        path.write_bytes(text.encode(encoding))
        return str(path)

    return _write
