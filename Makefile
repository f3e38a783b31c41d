# The two commands: `make demo` and `make test`. Both install what they need: the
# default Kubernetes release, built from Go modules once per machine (cached in
# ~/.cache/pykubemark), Debian packages for real nodes, and a virtualenv with pinned
# dependencies. `make unit` runs the pure-logic tests alone, in seconds.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NODES  ?= 200
PODS_PER_NODE ?= 5
DEMO_OUT ?= results/demo-$(shell date +%Y%m%d-%H%M%S)
KUBECTL = $(BIN)/pykubemark kubectl --name demo --

.PHONY: all venv provision unit test lint bench bench-headline bench-reliability demo demo-down clean

all: test

$(BIN)/pykubemark: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,uvloop]'
	@touch $@

venv: $(BIN)/pykubemark

provision: venv
	$(BIN)/pykubemark provision

lint: venv
	$(BIN)/ruff check src tests benchmarks

unit: venv
	$(BIN)/pytest -q tests/unit

# Unit tests and lint first: they fail in seconds, before any build.
test: unit lint provision
	$(BIN)/pytest -v -rs --durations=25 tests --ignore=tests/unit

# The benchmarks at their default sizes (tens of minutes; `make test` runs each once at a
# tiny size). Each starts and stops its own cluster; results land in benchmarks/results/.
bench: provision
	$(BIN)/python benchmarks/timestamps.py
	$(BIN)/python benchmarks/fidelity.py
	$(BIN)/python benchmarks/cost.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/kubelet_api.py

# Kubernetes' 1.3 headline on this machine: 2000 hollow nodes, density at 30 pods per node
# (60 000 pods), the report under results/ and the summary in benchmarks/results/.
bench-headline: provision
	$(BIN)/python benchmarks/headline.py --nodes 2000 --pods-per-node 30

# Issue 11's sizes, about 1 h 45 min in all: restarts ~15 min, overload ~10 min, soak ~70 min.
bench-reliability: provision
	$(BIN)/python benchmarks/restarts.py --nodes 2000
	$(BIN)/python benchmarks/overload.py --nodes 500
	$(BIN)/python benchmarks/soak.py --nodes 2000 --duration 3600

demo: provision
	-$(BIN)/pykubemark down --name demo >/dev/null 2>&1
	$(BIN)/pykubemark up --name demo --nodes $(NODES)
	$(KUBECTL) get nodes -o wide | head -4
	@# exit 1 means an SLO failed: the report says which; anything else is an error
	$(BIN)/pykubemark run density --cluster demo --pods-per-node $(PODS_PER_NODE) \
		--out $(DEMO_OUT) || [ $$? -eq 1 ]
	$(BIN)/pykubemark status --name demo
	@echo "Report: $(DEMO_OUT)/report.html"
	@echo "The cluster keeps running: pykubemark kubectl --name demo -- get nodes; stop it with make demo-down"

demo-down: venv
	$(BIN)/pykubemark down --name demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
