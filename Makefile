# make test : create .venv if missing, install the pinned dependencies, the plugin and its native ops, run pytest
# make demo : the same install, then the Pic@Point demo on procedural shapes (tools/demo.py, CPU, < 10 min)
# Both are idempotent: stamps inside .venv skip every step whose inputs did not change.
# make gpu-check  : on a machine with an NVIDIA GPU: build the ops for it, run the whole suite, run the
#                   GPU benchmark, print one table (tools/gpu_check.sh; uses .venv when present, else python3)
# make gpu-wheels : download into .whl/ the wheels gpu-check installs on a GPU machine without network
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
OPS_SOURCES := $(shell find third_party/pointnet2_ops -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh' -o -name 'setup.py' 2>/dev/null)

.PHONY: install test demo benchmark gpu-check gpu-wheels clean

$(VENV)/.stamp-venv:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	touch $@

$(VENV)/.stamp-deps: setup.py constraints.txt $(VENV)/.stamp-venv
	$(PIP) install -q -c constraints.txt -e ".[test]"
	touch $@

$(VENV)/.stamp-ops: $(OPS_SOURCES) $(VENV)/.stamp-deps
	$(PIP) install -q --no-build-isolation --no-deps -e third_party/pointnet2_ops
	$(PY) -m pointnet2_ops  # prints the backend; under CI=true fails without the native ops
	touch $@

install: $(VENV)/.stamp-ops

test: install
	$(PY) -m pytest tests

demo: install
	$(PY) tools/demo.py

benchmark: install
	$(PY) tools/benchmark_ops.py

gpu-check:
	tools/gpu_check.sh

gpu-wheels:
	tools/gpu_wheels.sh

clean:
	rm -rf $(VENV) build third_party/pointnet2_ops/build
	find . -name '*.so' -path '*pointnet2_ops*' -delete
