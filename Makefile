# logreg-vecbench: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Where `make bench` writes; the committed reference run lives in results/reference and plots/reference.
PROFILE ?= default
OUT ?= local
RESULTS := results/$(OUT)
PLOTS := plots/$(OUT)
# Extra arguments for `python -m bench run`, e.g. make bench ARGS="--implementations fully_vectorized,numba_loop"
ARGS ?=
# The runs `make compare` puts side by side: A is the one B is compared with.
A ?= results/reference
B ?= $(RESULTS)
# `make bench` also runs the robustness study (about a minute); ROBUSTNESS=no leaves it out.
ROBUSTNESS ?= yes
# Processes `make unit` (and so `make test`) runs the tests in, a test file at a time each (most of
# their time is Numba compiling, which one process does on one core).
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help venv test lint typecheck unit bench bench-quick bench-full bench-resume plot report \
        robustness pytest-bench reference readme predict kernels compare compare-previous peers test-peers test-browser \
        screenshot clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install the project with its test tools

lint: $(STAMP) ## Run ruff, and import-linter on the layer contracts (pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP) ## Run mypy (strict)
	$(VENV)/bin/mypy

unit: $(STAMP) ## Run the tests only, in TEST_WORKERS processes (benchmark bodies run once, untimed)
	$(PY) -m pytest -q --benchmark-disable -n $(TEST_WORKERS) --dist loadfile

test: lint typecheck unit ## Lint, type-check and run the tests (the browser tests skip, with the reason, without chromium)

test-browser: $(STAMP) ## Open the reference REPORT.html in Debian's chromium (apt-get install chromium) and check it
	@test -x /usr/bin/chromium || { echo "no /usr/bin/chromium: apt-get install chromium" >&2; exit 2; }
	REQUIRE_BROWSER=1 $(PY) -m pytest -q tests/test_browser.py

screenshot: $(STAMP) ## Redraw the README's picture of the reference REPORT.html (needs chromium)
	REPORT_SCREENSHOT=plots/reference/report_page.png $(PY) -m pytest -q tests/test_browser.py -k screenshot

# Implementations that need an optional package (the peers), read from the registry.
PEER_NAMES = $(PY) -c 'from implementations import REGISTRY; print(" ".join(n for n, i in REGISTRY.items() if i.requirements))'

# Where to find PyTorch's CPU-only wheel, e.g. make peers TORCH_INDEX=https://download.pytorch.org/whl/cpu
# (PyPI's torch for Linux is the CUDA build, several GB). Empty: pip's own configuration decides.
TORCH_INDEX ?=

peers: $(STAMP) ## Install the optional peers (JAX, PyTorch) into .venv; TORCH_INDEX=... for the CPU-only wheel
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -e '.[dev,peers]'

test-peers: $(STAMP) ## Run the peers' own tests and the registry-wide correctness tests for them (needs `make peers`)
	@$(PY) -c 'from implementations import REGISTRY; import sys; \
	    bad = [f"{n}: {i.unavailable}" for n, i in REGISTRY.items() if i.unavailable]; \
	    sys.exit("peers missing, run make peers first: " + "; ".join(bad) if bad else 0)'
	$(PY) -m pytest -q --benchmark-disable tests/test_peers.py
	$(PY) -m pytest -q --benchmark-disable -k "$$($(PEER_NAMES) | sed 's/ / or /g')" \
	    tests/test_propagate.py tests/test_optimize.py tests/test_properties.py tests/test_validation.py \
	    tests/benchmarks

bench: $(STAMP) ## Time the default grid (PROFILE=...) and the robustness study, draw the plots, write REPORT.md and REPORT.html
	$(PY) -m bench run --profile $(PROFILE) --out $(RESULTS) $(ARGS)
	$(if $(filter yes,$(ROBUSTNESS)),$(PY) -m bench robustness --out $(RESULTS))
	$(PY) -m bench plot --results $(RESULTS) --out $(PLOTS)
	$(PY) -m bench report --results $(RESULTS) --out $(RESULTS) --plots $(PLOTS)

bench-quick: ## The same on the quick grid without the robustness study, under two minutes (results/quick, plots/quick)
	$(MAKE) bench PROFILE=quick OUT=quick ROBUSTNESS=no

bench-full: ## The same on the full grid, long (results/full, plots/full)
	$(MAKE) bench PROFILE=full OUT=full

bench-resume: $(STAMP) ## Finish an interrupted `make bench` without re-timing finished cells
	$(MAKE) bench ARGS="--resume $(ARGS)"

robustness: $(STAMP) ## Measure what moves a timing (allocator, power-of-two sizes, baseline style, alignment, process), about a minute
	$(PY) -m bench robustness --out $(RESULTS)

plot: $(STAMP) ## Redraw the plots from results/$(OUT) without timing anything
	$(PY) -m bench plot --results $(RESULTS) --out $(PLOTS)

report: $(STAMP) ## Rewrite REPORT.md and REPORT.html from results/$(OUT) without timing anything
	$(PY) -m bench report --results $(RESULTS) --out $(RESULTS) --plots $(PLOTS)

# `make predict`: the sizes and steps to price, and the run whose models price them.
M ?= 60000
NX ?= 784
ITER ?= 2000
RUN ?= results/reference

predict: $(STAMP) ## Predict seconds for ITER steps at M x NX from a run's cost models: make predict M=60000 NX=784 ITER=2000 [RUN=...]
	$(PY) -m bench predict --results $(RUN) --m $(M) --n-x $(NX) --iterations $(ITER)

kernels: $(STAMP) ## Time each kernel's goal by hand at one shape, 1-2 min: make kernels [ARGS="--m 16384 --n-x 4096 --out k.csv"]
	$(PY) -m bench kernels $(ARGS)

compare: $(STAMP) ## Compare two runs side by side: make compare A=results/reference B=results/local [ARGS=--fail-if-slower 10]
	$(PY) -m bench compare $(A) $(B) $(ARGS)

# The run the last `make bench` moved aside into results/$(OUT)/previous/ (the newest kept run).
PREVIOUS = $(lastword $(sort $(wildcard $(RESULTS)/previous/*/results.csv)))

compare-previous: $(STAMP) ## Does this machine reproduce? After `make bench` twice: the kept run against the new one
	@test -n "$(PREVIOUS)" || { echo "no earlier run in $(RESULTS)/previous: run make bench twice first" >&2; exit 2; }
	$(PY) -m bench compare $(dir $(PREVIOUS)) $(RESULTS) $(ARGS)

pytest-bench: $(STAMP) ## Run the pytest-benchmark suite and save its JSON under results/pytest-benchmark
	$(PY) -m pytest tests/benchmarks --benchmark-only --benchmark-storage=results/pytest-benchmark \
	    --benchmark-autosave --benchmark-group-by=group --benchmark-columns=min,median,iqr,rounds,iterations

reference: ## Re-measure the committed reference run, then the README's findings (the old run is kept, untracked, in previous/)
	$(MAKE) bench OUT=reference
	$(MAKE) readme

readme: $(STAMP) ## Rewrite the README's findings from the committed reference run (no timing)
	$(PY) -m bench report --results results/reference --out results/reference --plots plots/reference --readme README.md

clean: ## Remove the virtual environment and local (uncommitted) results
	rm -rf $(VENV) results/local plots/local .pytest_cache .mypy_cache .ruff_cache .hypothesis
