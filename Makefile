# Every target runs offline: tests and the demo never touch the Hugging Face Hub.
PYTHON ?= python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

DEMO_MODEL := .cache/demo-model
# `make demo` and `make test` install what they need on first use: this stamp names the interpreter (a new
# virtualenv installs again) and the dependency files (a change to them installs again); otherwise nothing runs.
INSTALLED := .cache/installed-$(shell $(PYTHON) -c "import hashlib, sys; print(hashlib.sha1((sys.prefix + open('setup.cfg').read() + open('pyproject.toml').read()).encode()).hexdigest()[:12])")

.PHONY: install test test-fast quality style demo bench

install:
	# torch first and pinned, unless one is installed (a GPU build stays): an unpinned torch pulls several GB of
	# CUDA packages on CPU machines.
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"
	@mkdir -p .cache && touch $(INSTALLED)

$(INSTALLED): setup.cfg pyproject.toml
	$(MAKE) install

# One test process per core (at most 4; each runs torch on one thread, see tests/conftest.py).
test: $(INSTALLED)
	$(PYTHON) -m pytest tests -n auto --maxprocesses 4

test-fast: $(INSTALLED)
	$(PYTHON) -m pytest tests -n auto --maxprocesses 4 -m "not slow"

quality: $(INSTALLED)
	ruff check .
	ruff format --check .

style:
	ruff check --fix .
	ruff format .

# The demo run's figures (and one table of its analysis.md) go, downscaled, into docs/images/ for the README: the
# committed pictures are what this command draws.
demo: $(INSTALLED)
	$(PYTHON) -m bertcls tiny-model --output_dir $(DEMO_MODEL) --vocab_from_files bertcls/demo/train.tsv bertcls/demo/validation.tsv bertcls/demo/test.tsv
	$(PYTHON) run_classification.py recipes/demo.json
	$(PYTHON) -m bertcls.demo.figures outputs/demo docs/images

# The quick comparison with the classic loop (about 1.5 minutes on 2 CPU cores); docs/performance.md has the rest.
# Extra flags: make bench BENCH_ARGS="--threads 1"
bench: $(INSTALLED)
	$(PYTHON) benchmarks/run.py --quick $(BENCH_ARGS)
