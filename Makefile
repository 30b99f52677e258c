# The project's front door. `make test` and `make demo` work first thing on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_VERSION := 26.3
STAMP := $(VENV)/.installed

.PHONY: setup test test-peers demo devstack-up bench lint format clean

setup: $(STAMP)

# Everything is pinned in constraints.txt (regenerate with `make lock`); torch comes from PyPI,
# which serves no CPU-only build, so its CUDA runtime wheels are installed but never used on CPU.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==$(PIP_VERSION)
	$(PY) -m pip install -q -c constraints.txt -e '.[test,dev]'
	touch $@

# Test peers that need more than pip: Debian's OCI registry, bubblewrap (runs images as
# containers, devstack/), pigz (parallel gzip), and the Go-built control plane.
TEST_DEBS := docker-registry bubblewrap pigz
test-peers:
	@missing=$$(for deb in $(TEST_DEBS); do dpkg -s $$deb >/dev/null 2>&1 || echo $$deb; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	$(PY) -m devstack.controlplane.build

test: setup test-peers
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check operator tests bench devstack
	$(VENV)/bin/ruff format --check operator tests bench devstack
	$(VENV)/bin/mypy
	MYPYPATH=operator:tests:. $(VENV)/bin/mypy --explicit-package-bases tests bench devstack
	$(VENV)/bin/hadolint serving/Dockerfile Dockerfile

format: setup
	$(VENV)/bin/ruff check --fix operator tests bench devstack
	$(VENV)/bin/ruff format operator tests bench devstack

# One `kubectl apply` to an endpoint that answers, on the local stack (devstack/demo.py).
demo: setup test-peers
	$(PY) -m devstack.demo

# The local stack alone, until Ctrl-C; `$(PY) -m devstack env` points another terminal at it.
devstack-up: setup test-peers
	$(PY) -m devstack up

bench: setup test-peers
	$(PY) bench/qa_throughput.py
	$(PY) bench/engine_profile.py
	$(PY) bench/linear_kernels.py
	$(PY) bench/image_push.py
	$(PY) bench/serving_variants.py
	$(PY) bench/image_build.py
	$(PY) bench/apply_to_ready.py
	$(PY) bench/scale.py --n 100

lock:
	$(PYTHON) -m venv /tmp/qa-operator-lock && /tmp/qa-operator-lock/bin/pip install -q -U pip==$(PIP_VERSION)
	/tmp/qa-operator-lock/bin/pip install --dry-run --ignore-installed --report /tmp/qa-operator-lock.json -q '.[test,dev]'
	$(PYTHON) -c "import json; r=json.load(open('/tmp/qa-operator-lock.json')); \
	  pins=sorted(f\"{i['metadata']['name']}=={i['metadata']['version']}\" for i in r['install'] if i['metadata']['name']!='qa-operator'); \
	  open('constraints.txt','w').write('\n'.join(pins)+'\n')"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
