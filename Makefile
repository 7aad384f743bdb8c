# mmedit — see README.md. Every target runs single-threaded torch on purpose (OMP_NUM_THREADS=1).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg
BACKBONES := tiny-blip2-opt tiny-minigpt4 tiny-llava
# notebooks executed at once (one torch thread each): the 2 cores of the reference machine
JOBS ?= 2
WORLD_SEED ?= 0

.PHONY: setup chromium test test-fast world backbones notebooks book reproduce smoke clean-world dry-run

setup: $(VENV)/.installed chromium

# Headless Chromium renders the built book in the tests (Debian's package; installed when missing).
chromium:
	@command -v chromium >/dev/null || { echo "installing Debian chromium (book tests)"; \
	  $$(command -v sudo) apt-get install -y -q chromium >/dev/null || \
	  { $$(command -v sudo) apt-get update -q >/dev/null && $$(command -v sudo) apt-get install -y -q chromium >/dev/null; }; }

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# The suite on $(JOBS) workers (pytest-xdist), a test file per worker at a time (--dist loadfile: a file's fixtures
# are built once; the book's smoke notebooks run $(JOBS) at a time inside one of them), then the tests that replay
# a shipped measurement on 2 torch threads, alone (beside another busy worker their threads would fight for cores).
test: setup
	$(PY) -m pytest -q -ra -n $(JOBS) --dist loadfile -m "not alone"
	$(PY) -m pytest -q -ra -m alone

test-fast: setup
	$(PY) -m pytest -q -ra -n $(JOBS) --dist loadfile -m "not slow and not alone"

# The embedded world and each shipped backbone's edit cases (results/world/<backbone>/, ~2 min each, side by side).
world: setup
	pids=""; for b in $(BACKBONES); do \
	  $(PY) -m mmedit_lib world --out results/world/$$b --seed $(WORLD_SEED) --backbone $$b & pids="$$pids $$!"; done; \
	for p in $$pids; do wait $$p || exit 1; done

# Re-train the shipped tiny backbones (deterministic for a seed and thread count; 554 s, 556 s and 540 s on 2 cores).
backbones: setup
	for b in $(BACKBONES); do $(PY) -m mmedit_lib --threads 2 train-backbone $$b --seed 0 || exit 1; done

# Every notebook under papermill into results/executed/, $(JOBS) at a time (runs are reused from results/runs/ when they
# exist, and computed once when two notebooks need the same one).
notebooks: setup world
	$(PY) -m mmedit_lib notebooks --jobs $(JOBS)

# The Jupyter Book (HTML, offline, warnings as errors) from the executed notebooks: book/_build/html.
book: setup
	$(PY) -m mmedit_lib book

# Everything from a fresh clone: the world, every notebook, the book (under an hour on 2 cores; the status page of the
# book has the breakdown per notebook).
reproduce: setup world notebooks book

# The same on a handful of cases (seconds per notebook): results/smoke/, the smoke book in results/smoke/book/.
smoke: setup
	$(PY) -m mmedit_lib notebooks --smoke --jobs $(JOBS)
	$(PY) -m mmedit_lib book --smoke

clean-world:
	rm -rf results/world

# Every editor on the full-size architectures with random weights, measured (not in `test` or CI), at the input a
# loaded checkpoint gets (364 px; MiniGPT-4's chat format): results/dry_run/<backbone>-<dtype>.json/.csv, on one
# thread. minigpt4-7b in bfloat16: 71 min, 22.7 GiB peak RSS (KE's prepare) on a 24 GiB machine: every editor fits,
# SERAC training only layer 31 as EasyEdit does. blip2-opt-2.7b: 40 min, 12.9 GiB peak RSS, SERAC
# with EasyEdit's separate OPT-125m (random weights too).
dry-run: setup
	$(PY) -m mmedit_lib dry-run --backbone blip2-opt-2.7b --random-weights --dtype bfloat16
	$(PY) -m mmedit_lib dry-run --backbone minigpt4-7b --random-weights --dtype bfloat16
