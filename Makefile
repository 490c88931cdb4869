# Quickstart: `make demo` and `make test` each set up .venv when missing, then run.
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch stack installed into a new venv (override, e.g. TORCH_PKGS="torch==2.11.0 ...").
TORCH_PKGS ?= torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0
PYTEST_ARGS ?= -q

# The core and each modality plugin are separate distributions (a plugin is installed like any
# third-party one); a change to any packaging file re-installs.
PACKAGING := setup.py pyproject.toml $(wildcard plugins/*/setup.py)
PLUGINS := $(patsubst %/setup.py,%,$(wildcard plugins/*/setup.py))
# What `make lint` checks (ruff's settings are in pyproject.toml).
LINT_PATHS := bridle plugins tools tests benchmarks

.PHONY: setup test lint demo demo-image demo-instruments demo-video apt clean

$(VENV)/.installed: $(PACKAGING)
	@# Reuse a torch stack the system Python already has (e.g. a GPU machine's CUDA build).
	@test -x $(PY) || { if python3 -c "import torch, torchvision, torchaudio" 2>/dev/null; \
	  then python3 -m venv --system-site-packages $(VENV); else python3 -m venv $(VENV); fi; }
	$(PY) -m pip install -q --upgrade pip
	@$(PY) -c "import torch, torchvision, torchaudio" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PKGS)
	$(PY) -m pip install -q -e ".[dev]" $(addprefix -e ,$(PLUGINS))
	@# HEAR 2021 validator (tests/plugins/audio/test_hear.py): plain `pip install hearvalidator` picks an old
	@# release on Python >= 3.9; 2021.0.6 needs only torch and numpy at run time.
	$(PY) -m pip install -q --no-deps --ignore-requires-python hearvalidator==2021.0.6
	@touch $@

setup: $(VENV)/.installed apt

# Debian packages that make real test audio (espeak-ng speech, sox tones, sound themes, fluidsynth +
# the FluidR3 GM soundfont for the instruments demo).
apt:
	@missing=""; for b in espeak-ng sox fluidsynth; do command -v $$b >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$(cat requirements-apt.txt)) >/dev/null \
	    || echo "warning: could not apt-get install $$(cat requirements-apt.txt | tr '\n' ' ')"; \
	  else echo "note: install $$(cat requirements-apt.txt | tr '\n' ' ') for the audio tests/demo"; fi; \
	fi

# Lint and format check (no file is changed): `ruff format` and `ruff check --fix` fix what they report.
lint: $(VENV)/.installed
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)

test: setup lint
	@# One torch thread per process: loader workers and subprocess tests share 2 cores without oversubscription.
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest $(PYTEST_ARGS) tests

demo: setup
	$(PY) tools/demo.py --output-dir output/demo

# The image twin of `make demo`: scikit-learn's real handwritten digits (offline, no apt package).
demo-image: setup
	$(PY) tools/demo_image.py --output-dir output/demo_image

# Video: moving handwritten digits written as H.264 clips; which digit and which direction (offline).
demo-video: setup
	$(PY) tools/demo_video.py --output-dir output/demo_video

# A second real-audio set the audio recipe was not tuned on: GM instrument families (fluidsynth + FluidR3 GM).
demo-instruments: setup
	$(PY) tools/demo_instruments.py --output-dir output/demo_instruments

clean:
	rm -rf output build *.egg-info plugins/*/*.egg-info
