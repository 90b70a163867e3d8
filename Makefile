# rancher-remap — every entry point a fresh machine needs. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
BIN := target/debug/rancher-remap
EXAMPLES := deploy/examples

.PHONY: all build release test fmt lint unit run preview bench clean

all: build

build:
	$(CARGO) build --locked

release:
	$(CARGO) build --locked --release

## test: formatting, lints (warnings are errors), and every test — exactly what CI runs.
test: fmt lint unit

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --locked --all-targets -- -D warnings

unit:
	$(CARGO) test --locked

## preview: the offline rewrite of the example migrated objects with the example mappings.
preview: build
	$(BIN) rewrite --mappings-file $(EXAMPLES)/mappings-configmap.yaml -f $(EXAMPLES)/migrated-objects.json

## run: what a fresh machine can start.
run: preview

bench:
	$(CARGO) bench --locked --bench rewrite

clean:
	$(CARGO) clean
