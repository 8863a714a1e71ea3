# One set of commands for people and CI. `make up` and `make test` install what they need into
# .venv on first use (and again whenever pyproject.toml changes).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
API_PORT ?= 8081
BROKER_PORT ?= 8082
# Extras installed by `make up` and `make test` respectively.
UP_EXTRAS ?= sklearn
TEST_EXTRAS ?= test
PYTEST_ARGS ?=

.PHONY: up test check fmt bench venv clean grpc-stubs images

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"

$(VENV)/.installed-%: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[$*]"
	touch $@

venv: $(VENV)/.installed-$(TEST_EXTRAS)

## up: install if needed, start the local plane (knserve up) and serve the example iris model.
up: $(VENV)/.installed-$(UP_EXTRAS)
	$(BIN)/knserve up --port $(PORT) --api-port $(API_PORT) --broker-port $(BROKER_PORT) --example

## test: install if needed and run the whole suite (slow end-to-end cases included).
test: $(VENV)/.installed-$(TEST_EXTRAS)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# mypy cannot follow setuptools' folder -> knserve.<folder> mapping, so it reads the packages
# through a tree of links that spells the import names.
TYPECHECK := build/typecheck
PACKAGES := runtime functions eventing knative

## check: lint, format check, the layering contracts (import-linter, [tool.importlinter]) and the
## types (mypy, [tool.mypy]).
check: $(VENV)/.installed-$(TEST_EXTRAS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	@mkdir -p $(TYPECHECK)/knserve
	@for p in $(PACKAGES); do ln -sfn "$(CURDIR)/$$p" $(TYPECHECK)/knserve/$$p; done
	cd $(TYPECHECK) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml $(addprefix -p knserve.,$(PACKAGES))

fmt: $(VENV)/.installed-$(TEST_EXTRAS)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench: every performance runner in turn, then one table of the headline figures (numbers and
## ratios, never assertions); BENCH_ARGS="--runs 3" repeats the set, "--only runtime,eventing" picks.
BENCH_ARGS ?=
bench: $(VENV)/.installed-$(TEST_EXTRAS)
	$(BIN)/python -m benchmarks all $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info

## grpc-stubs: regenerate runtime/grpc_v2's Python stubs from its .proto files (grpcio-tools).
grpc-stubs: $(VENV)/.installed-$(TEST_EXTRAS)
	$(BIN)/python -m knserve.runtime.grpc_v2.generate

## images: build REGISTRY/knserve/{runtime,function-base,operator}:TAG (TAG defaults to the
## package version, never latest; RUNTIME_EXTRAS, ENGINE=podman|docker, PUSH=1) with podman or
## docker, whichever can build; `knserve export --registry --tag` names the same images.
images:
	REGISTRY="$(REGISTRY)" TAG="$(TAG)" RUNTIME_EXTRAS="$(RUNTIME_EXTRAS)" ENGINE="$(ENGINE)" \
		PUSH="$(PUSH)" sh knative/deploy/build-images.sh
