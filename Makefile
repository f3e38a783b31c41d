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

.PHONY: all venv provision unit test lint bench bench-fidelity bench-cost bench-real-nodes \
	bench-failures bench-addons bench-sensitivity bench-ab bench-scale bench-headline bench-reliability demo demo-down clean

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
	$(BIN)/pytest -q -n 2 tests/unit

# Unit tests and lint first: they fail in seconds, before any build. The integration
# tests run on TEST_WORKERS pytest-xdist workers, each with its own session cluster; a
# file's tests stay together (tests/conftest.py). Much of the suite waits on
# controllers and grace periods, so two workers on two cores nearly halve it. Tests
# marked `quiet` (a statistical verdict another test's load can flip) run after, alone.
TEST_WORKERS ?= 2
test: unit lint provision
	$(BIN)/pytest -v -rs --durations=25 -n $(TEST_WORKERS) --dist loadfile \
		--no-loadscope-reorder -m "not quiet" tests --ignore=tests/unit
	$(BIN)/pytest -v -rs -m quiet tests --ignore=tests/unit

# The benchmarks, each at the defaults the docs (docs/results/) quote. Each starts and
# stops its own clusters and writes its JSON to benchmarks/results/ as it goes; `make
# test` runs each once at a tiny size. Run them on a quiet machine: beside another large
# cluster the numbers are the neighbour's.
# `make bench`: the quick ones, cost, real nodes and failures (about half an hour).
bench: bench-cost bench-real-nodes bench-failures

# Requests per node and per pod: real nodes, pykubemark, the Go kubemark, KWOK (~65 min);
# then the control plane's CPU per real and per hollow node, paired on one cluster (~20 min).
bench-fidelity: provision
	$(BIN)/python benchmarks/fidelity.py
	$(BIN)/python benchmarks/paired_cpu.py

# Memory and CPU per hollow node and CPU per pod, against the Go kubemark (~15 min).
bench-cost: provision
	$(BIN)/python benchmarks/cost.py

# Memory and CPU of an idle real node, without and with pods (~10 min).
bench-real-nodes: provision
	$(BIN)/python benchmarks/real_nodes.py
	$(BIN)/python benchmarks/real_nodes.py --pods-per-node 5

# The control plane's cost of crash loops and flapping pods and nodes (~15 min).
bench-failures: provision
	$(BIN)/python benchmarks/failures.py

# What metrics-server's scraping costs the fleet, per hollow node (~10 min).
bench-addons: provision
	$(BIN)/python benchmarks/addons_cost.py

# A density run on real and on hollow nodes under five control-plane changes: does a
# change show the same on both? (40 runs, ~1 h)
bench-sensitivity: provision
	$(BIN)/python benchmarks/sensitivity.py

# How honest `ab`'s verdicts are (A/A false alarms per design, a known slowdown found;
# hours at the defaults), and the change-point library `trend` uses (seconds).
bench-ab: provision
	$(BIN)/python benchmarks/changepoints.py
	$(BIN)/python benchmarks/ab.py

# The largest fleet one process holds on one core, kubelet and lite fidelity (~1 h).
bench-scale: provision
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/scale.py --fidelity lite

# Kubernetes' 1.3 headline on this machine: 2000 hollow nodes, density at 30 pods per node
# (60 000 pods), the report under results/ and the summary in benchmarks/results/.
bench-headline: provision
	$(BIN)/python benchmarks/headline.py

# About 2 h in all: restarts at 2000 nodes ~15 min, overload at 500 ~10 min, a network
# cut under 100 nodes ~5 min, etcd throttled under 1000 nodes ~10 min, soak at 2000 ~70 min.
bench-reliability: provision
	$(BIN)/python benchmarks/restarts.py
	$(BIN)/python benchmarks/overload.py
	$(BIN)/python benchmarks/partition.py
	$(BIN)/python benchmarks/slow_etcd.py
	$(BIN)/python benchmarks/soak.py

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
