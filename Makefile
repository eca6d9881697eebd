# LSIC developer entry points. `make demo` and `make test` are the README's two commands.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
EDGE_VENV := .venv-edge
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EDGE_STAMP := $(EDGE_VENV)/.installed
SOURCE ?= builtin
PROTO := proto/lsic/v1/lsic.proto

.PHONY: setup setup-edge edge-current system-deps proto demo cluster-demo test test-main test-edge test-slow lint bench-rd bench-speed clean

# --- environments -------------------------------------------------------------------------
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[edge,cloud,train,dev]'
	@touch $(STAMP)

setup: $(STAMP)

$(EDGE_STAMP): pyproject.toml
	@test -x $(EDGE_VENV)/bin/python || $(PY) -m venv $(EDGE_VENV)
	$(EDGE_VENV)/bin/pip install -q --upgrade pip setuptools wheel
	$(EDGE_VENV)/bin/pip install -q '.[edge,demo]' pytest pytest-timeout
	@touch $(EDGE_STAMP)

setup-edge: $(EDGE_STAMP)

# Debian packages the tests drive for real: PostgreSQL (metadata backend; tests start their own
# cluster), Chromium (web viewer test), openssl (TLS test certificates).
SYSTEM_PKGS := postgresql chromium openssl
system-deps:
	@missing=""; \
	{ ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; } || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "missing system packages:$$missing (sudo apt-get install$$missing)" >&2; exit 1; fi

# --- generated gRPC code (committed; tests/test_proto.py fails when it is stale) -----------
proto: setup
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=proto --grpc_python_out=proto --pyi_out=proto $(PROTO)

# --- the two commands -----------------------------------------------------------------------
demo: setup
	$(BIN)/python -m lsic.demo --source '$(SOURCE)'

# The deploy/k8s topology as processes: PostgreSQL, S3 (moto), two ingest replicas, two decode
# workers, eight devices.
cluster-demo: system-deps setup
	$(BIN)/python -m lsic.cluster_demo

test: system-deps setup setup-edge
	$(MAKE) --no-print-directory test-main test-edge

test-main: edge-current
	$(BIN)/python -m pytest -q -m "not slow" --ignore=tests/edge

# The checks that take minutes (training runs, 4096-8192 px frames); CI runs them after `make test`.
test-slow: system-deps setup
	$(BIN)/python -m pytest -q -m slow --ignore=tests/edge

# The edge-only environment is a regular install, as on a device (only the encoder's model files),
# so it takes the tree's current code before any test runs in it (test-main decodes there too).
edge-current:
	rm -rf build && $(EDGE_VENV)/bin/pip install -q --no-deps --no-build-isolation --force-reinstall .

# The edge subset in the edge-only environment (no torch), against the full install's cloud service.
test-edge: edge-current
	LSIC_EDGE_ONLY=1 LSIC_CLOUD_BIN=$(abspath $(BIN)/lsic-cloud) $(EDGE_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/edge

lint: setup
	$(BIN)/ruff check .

bench-rd: setup
	$(BIN)/lsic bench rd --data ../shared/data/eval/kodak

bench-speed: setup
	$(BIN)/lsic bench speed

clean:
	rm -rf $(VENV) $(EDGE_VENV) .pytest_cache .ruff_cache
