# The two commands of the README: `make run` and `make test`.
# Both set up .venv in this checkout first (idempotent) and fetch the dataset.
# `make lint` is what CI runs before the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fmnist-installed

.PHONY: setup data gui-libs bytecode run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

# The dataset: Debian's package when we are root on Debian (no internet needed),
# else torchvision's download on first use.
data: setup
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	   [ ! -d /usr/share/datasets/fashion-mnist ]; then \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) || \
	  echo "note: dataset-fashion-mnist not installed; falling back to download"; \
	fi
	$(BIN)/fmnist-train --prepare-data

# Qt's X11 platform plugin needs libraries a fresh Debian or Ubuntu lacks
# (libxcb-cursor0 and others); fmnist-gui names them itself where we cannot install.
gui-libs: setup
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  pkgs="$$($(BIN)/python -c 'from fmnist_gui.qt.infra.preflight import APT_XCB_PACKAGES as p; print(p)')"; \
	  dpkg -s $$pkgs >/dev/null 2>&1 || \
	  (apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null)) || \
	  echo "note: could not install Qt's X11 libraries ($$pkgs)"; \
	fi

# Bytecode for our own modules (the editable install's sources): Python writes it on
# first import, except where PYTHONDONTWRITEBYTECODE is set; then every launch would
# compile some 100 modules again (0.25 s of the 3 s to Ready). Up-to-date files are skipped.
bytecode: setup
	$(BIN)/python -m compileall -q fmnist_gui plugins/fmnist_builtins >/dev/null

run: data gui-libs bytecode
	$(BIN)/fmnist-gui

test: data
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

# Lint, formatting, types and the import contracts (pyproject.toml configures each).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy fmnist_gui
	$(BIN)/lint-imports --no-logo

bench: data
	$(BIN)/python benchmarks/bench_epoch.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .import_linter_cache .grimp_cache
