# The two set-up commands of the README: `make demo` (the main job) and `make test`.
# Each creates .venv if missing and installs everything pinned before it runs.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench

install: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rrl expert --task ur5_pick --episodes 5 --seed 1000
	$(VENV)/bin/rrl expert --task ur5_bowl --episodes 5 --seed 1000
	$(VENV)/bin/rrl expert --task ur5_push --episodes 5 --seed 1000

test: $(STAMP)
	$(PY) -m pytest -q tests
