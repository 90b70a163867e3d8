# rancher-remap — every entry point a fresh machine needs. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
BIN := target/debug/rancher-remap
EXAMPLES := deploy/examples

.PHONY: all build release test fmt lint unit run preview bench load-bench clean certs

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

## certs: development certificates in certs/ (kept when present).
certs/tls.crt: | build
	$(BIN) certs --out certs --service rancher-remap --namespace rancher-remap > /dev/null

certs: certs/tls.crt

## run: the webhook on https://127.0.0.1:8443 (admin on 127.0.0.1:9090) with the example mappings.
run: build certs
	$(BIN) serve --listen 127.0.0.1:8443 --admin-listen 127.0.0.1:9090 \
	  --tls-cert certs/tls.crt --tls-key certs/tls.key \
	  --mappings-file $(EXAMPLES)/mappings-configmap.yaml --log-format text

bench:
	$(CARGO) bench --locked --bench rewrite

## load-bench: /mutate over TLS keep-alive vs a no-op axum+rustls server (loopback, ~1 min).
load-bench:
	$(CARGO) bench --locked --bench load

clean:
	$(CARGO) clean
