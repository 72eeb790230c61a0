# Every target runs offline: tests and the demo never touch the Hugging Face Hub.
PYTHON ?= python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

DEMO_MODEL := .cache/demo-model

.PHONY: install test test-fast quality style demo bench

install:
	# torch first and pinned: an unpinned torch pulls several GB of CUDA packages on CPU machines.
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"

test:
	$(PYTHON) -m pytest tests

test-fast:
	$(PYTHON) -m pytest tests -m "not slow"

quality:
	ruff check .
	ruff format --check .

style:
	ruff check --fix .
	ruff format .

demo:
	$(PYTHON) -m bertcls.tiny_model --output_dir $(DEMO_MODEL) --vocab_from_files bertcls/demo/train.tsv bertcls/demo/validation.tsv bertcls/demo/test.tsv
	$(PYTHON) run_classification.py recipes/demo.json

# The quick comparison with the classic loop (about 1.5 minutes on 2 CPU cores); README "Performance" has the rest.
# Extra flags: make bench BENCH_ARGS="--threads 1"
bench:
	$(PYTHON) benchmarks/run.py --quick $(BENCH_ARGS)
