# make test : create .venv if missing, install the pinned dependencies, the plugin and its native ops, run pytest
# make demo : the same install, then the Pic@Point demo on procedural shapes (tools/demo.py, CPU, < 10 min)
# Both are idempotent: stamps inside .venv skip every step whose inputs did not change.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
OPS_SOURCES := $(shell find third_party/pointnet2_ops -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh' -o -name 'setup.py' 2>/dev/null)

.PHONY: install test demo benchmark clean

$(VENV)/.stamp-venv:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	touch $@

$(VENV)/.stamp-deps: setup.py constraints.txt $(VENV)/.stamp-venv
	$(PIP) install -q -c constraints.txt -e ".[test]"
	touch $@

$(VENV)/.stamp-ops: $(OPS_SOURCES) $(VENV)/.stamp-deps
	$(PIP) install -q --no-build-isolation --no-deps -e third_party/pointnet2_ops
	$(PY) -c "import pointnet2_ops; print('pointnet2_ops backend:', pointnet2_ops.backend(), '| CUDA kernels compiled:', pointnet2_ops.has_cuda_kernels())"
	touch $@

install: $(VENV)/.stamp-ops

test: install
	$(PY) -m pytest tests

demo: install
	$(PY) tools/demo.py

benchmark: install
	$(PY) tools/benchmark_ops.py

clean:
	rm -rf $(VENV) build third_party/pointnet2_ops/build
	find . -name '*.so' -path '*pointnet2_ops*' -delete
