# mmedit — see README.md. Every target runs single-threaded torch on purpose (OMP_NUM_THREADS=1).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg
BACKBONES := tiny-blip2-opt tiny-minigpt4
WORLD_SEED ?= 0

.PHONY: setup test test-fast world backbones notebooks reproduce clean-world

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

test: setup
	$(PY) -m pytest -q -ra

test-fast: setup
	$(PY) -m pytest -q -ra -m "not slow"

# The embedded world and each shipped backbone's edit cases (results/world/<backbone>/, ~2 min each).
world: setup
	for b in $(BACKBONES); do $(PY) -m mmedit_lib world --out results/world/$$b --seed $(WORLD_SEED) --backbone $$b || exit 1; done

# Re-train the shipped tiny backbones (deterministic for a seed and thread count; 554 s and 556 s on 2 cores).
backbones: setup
	for b in $(BACKBONES); do $(PY) -m mmedit_lib --threads 2 train-backbone $$b --seed 0 || exit 1; done

notebooks: setup world
	mkdir -p results/executed
	for nb in notebooks/*.ipynb; do $(PY) -m papermill --cwd notebooks $$nb results/executed/$$(basename $$nb) -k python3 || exit 1; done

reproduce: setup world notebooks

clean-world:
	rm -rf results/world
