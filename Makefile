# Two commands do everything: `make repro` (set up, then the default profile) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# the stages' `python -m stages.X` must find the venv's python, activated or not
export PATH := $(abspath $(BIN)):$(PATH)
# `make compare`: dvc exp show without timings, per-step curves, hashes and secondary losses
EXP_DROP := Created|params\.yaml|(data|models|stages|wm)/.*|max_done_probability|real_reward|.*(seconds|per_second|\.std|\.min|\.max|mean_steps|json:step|finalist|best_so_far|json:frames|json:episodes|json:timesteps)|video\..*|.*(train|eval|generation|select)\..*|val\.(kl|loss|reward_mse|done_bce)|dream_reward

.PHONY: setup repro test lint compare page pull clean-venv

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

setup: $(BIN)/.installed

repro: setup
	$(BIN)/dvc repro

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q --durations=25 tests

compare: setup
	$(BIN)/dvc exp show --only-changed --drop '$(EXP_DROP)'

# the results page (results/index.html, one self-contained file); REV=x: the workspace beside x
page: setup
	$(BIN)/python -m tools.page $(if $(REV),--rev $(REV))

pull: setup
	@$(BIN)/dvc pull || { echo "error: dvc pull could not fetch this revision's data (what it missed is above):" \
		"if nobody pushed it to this remote, build it with 'make repro', or fetch it from a remote that" \
		"holds it (README, Sharing weights)" >&2; exit 1; }

clean-venv:
	rm -rf $(VENV)
