# rancher-remap — every entry point a fresh machine needs. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
BIN := target/debug/rancher-remap
EXAMPLES := deploy/examples

.PHONY: all build release test fmt lint unit cluster-1.32 envtest run preview bench load-bench clean certs \
        static static-check render-self-signed soak storm fuzz tools chart-lint rules-test \
        audit-bench match-conditions version dist

## Pinned tools (kubectl 1.34, helm 3.19, promtool) in a git-ignored folder of the repository,
## installed on first use by scripts/install-tools; the tests run these, never whatever is on PATH.
TOOLS := $(CURDIR)/build/tools/bin
export RANCHER_REMAP_TOOLS := $(TOOLS)
WITH_TOOLS := PATH="$(TOOLS):$$PATH"
CHART := charts/rancher-remap

all: build

build:
	$(CARGO) build --locked

release:
	$(CARGO) build --locked --release

## test: formatting, lints (warnings are errors), every test (the deploy tests render the
## kustomize overlays and the Helm chart in every role and certificate mode), the chart's lint,
## the alert rules' unit tests, and the shipped static binary — exactly what CI runs. A missing
## tool fails it; nothing is skipped.
test: fmt lint tools chart-lint rules-test unit cluster-1.32 static-check

tools:
	scripts/install-tools $(TOOLS)

## chart-lint: helm lint --strict with each of the chart's ci/*-values.yaml (both roles in every
## certificate mode; chart-testing's `ct lint` reads the same files), and the chart without values
## must fail, saying what to set (the deploy and chart tests render the same and check it).
chart-lint: tools
	for values in $(CHART)/ci/*-values.yaml; do \
	  $(TOOLS)/helm lint --strict --quiet $(CHART) -f $$values || exit 1; \
	done
	! $(TOOLS)/helm lint --strict --quiet $(CHART) > /dev/null 2>&1

## version: copies the version from Cargo.toml (where it is written once) into the chart, the
## installs' image tags and the docs (the docs tests fail when one of them differs).
version:
	scripts/sync-version

## match-conditions: copies the mutating webhook's matchConditions from their one source, the
## chart's files/mutate-match-conditions.yaml, into deploy/destination/mutating-webhook.yaml
## (the deploy tests fail when the two differ).
match-conditions:
	scripts/sync-match-conditions

## rules-test: the alerts (the plain rules file, which the chart's PrometheusRule is made
## from) checked and unit-tested with promtool.
RULES := $(CHART)/files/rancher-remap.rules.yaml
rules-test: tools
	$(TOOLS)/promtool check rules $(RULES)
	$(TOOLS)/promtool test rules tests/monitoring/rancher-remap.rules.test.yaml

fmt:
	$(CARGO) fmt --all -- --check

## lint: clippy's warnings, and no function over 80 lines of code (clippy.toml), tests and benches too;
## rustdoc's warnings (a doc link to an item that moved or is private).
lint:
	$(CARGO) clippy --locked --all-targets -- -D warnings -D clippy::too_many_lines
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --no-deps --document-private-items

## envtest: the real control plane the cluster suite (tests/it/cluster_suite) starts — kube-apiserver,
## etcd and kube-controller-manager in KUBEBUILDER_ASSETS, envtest's convention (`setup-envtest
## use 1.36 -p path` prints such a directory), and KUBEBUILDER_ASSETS_1_32 for the second
## release. Each one unset, the compressed assets kept beside the repository are unpacked into
## build/envtest (v1.36) or build/envtest-1.32; without them `make test` fails, naming the
## variable. The suite needs root (a private mount namespace gives the apiserver its own
## /etc/hosts and resolv.conf).
ENVTEST_SHARED := ../shared/envtest
ifeq ($(origin KUBEBUILDER_ASSETS),undefined)
KUBEBUILDER_ASSETS := $(CURDIR)/build/envtest
UNPACK_1_36 := 1
endif
ifeq ($(origin KUBEBUILDER_ASSETS_1_32),undefined)
KUBEBUILDER_ASSETS_1_32 := $(CURDIR)/build/envtest-1.32
UNPACK_1_32 := 1
endif
export KUBEBUILDER_ASSETS
envtest:
ifdef UNPACK_1_36
	@[ -d $(ENVTEST_SHARED) ] || { echo "KUBEBUILDER_ASSETS is not set: point it at a directory holding kube-apiserver, etcd and kube-controller-manager 1.36 (setup-envtest use 1.36 -p path)" >&2; exit 1; }
	scripts/unpack-envtest $(ENVTEST_SHARED) $(KUBEBUILDER_ASSETS)
endif
ifdef UNPACK_1_32
	@[ -d $(ENVTEST_SHARED)-1.32 ] || { echo "KUBEBUILDER_ASSETS_1_32 is not set: point it at kube-apiserver, etcd and kube-controller-manager 1.32 (setup-envtest use 1.32 -p path)" >&2; exit 1; }
	scripts/unpack-envtest $(ENVTEST_SHARED)-1.32 $(KUBEBUILDER_ASSETS_1_32)
endif

## cluster-1.32: the cluster suite again against v1.32, from KUBEBUILDER_ASSETS_1_32 (the
## unpacked assets above unless given).
cluster-1.32: tools envtest
	KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS_1_32) $(CARGO) test --locked --test it cluster_suite::

## unit: every test, the cluster suite (against KUBEBUILDER_ASSETS) in a run of its own so that
## its control plane does not load the timing-sensitive tests; the deploy tests run the pinned tools through RANCHER_REMAP_TOOLS (exported
## above; PATH stays as it is, so that cargo's build-script fingerprints do not change).
unit: tools envtest
	$(CARGO) test --locked -- --skip cluster_suite::
	$(CARGO) test --locked --test it cluster_suite::

## preview: the offline rewrite of the example migrated objects with the example mappings.
preview: build
	$(BIN) rewrite --mappings-file $(EXAMPLES)/mappings-configmap.yaml -f $(EXAMPLES)/migrated-objects.json

## certs: development certificates in certs/ (kept when present).
certs/tls.crt: | build
	$(BIN) certs --out certs --service rancher-remap --namespace rancher-remap \
	  $$([ -f certs/ca.crt ] && [ -f certs/ca.key ] && echo --reuse-ca) > certs/ca-bundle.b64

certs: certs/tls.crt

## run: the webhook on https://127.0.0.1:8443 (admin on 127.0.0.1:9090) with the example mappings.
run: build certs
	$(BIN) serve --listen 127.0.0.1:8443 --admin-listen 127.0.0.1:9090 \
	  --tls-cert certs/tls.crt --tls-key certs/tls.key \
	  --mappings-file $(EXAMPLES)/mappings-configmap.yaml --cluster-id c-m-4kq8z9rt --log-format text

## static: the binary the Dockerfile ships — static (glibc, static-pie), stripped.
HOST := $(shell rustc -vV | sed -n 's/^host: //p')
STATIC_BIN := target/$(HOST)/dist/rancher-remap
static:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --locked --profile dist --target $(HOST)

## dist: a release in dist/: static binaries (amd64; arm64 where the toolchain allows), the
## packaged chart (helm package, OCI-ready), the image as an OCI image layout archive built from
## the static binary (no container engine, no base image), COMMIT and SHA256SUMS (see
## scripts/dist; tests/it/dist.rs checks the image through the same function).
dist: tools
	HELM=$(TOOLS)/helm scripts/dist

## static-check: it is static, under 30 MiB, and serves (see scripts/check-static-binary).
static-check: static
	scripts/check-static-binary $(STATIC_BIN)

## render-self-signed: deploy/$(OVERLAY) with certificates from `rancher-remap certs` instead of
## cert-manager, in build/self-signed/$(OVERLAY)/install.yaml. RENEW=1: a new serving pair from
## the same CA (the caBundle stays). build/self-signed/$(OVERLAY)/kustomization.yaml is yours
## (images:, patches:): written once, never rewritten.
OVERLAY ?= destination
render-self-signed: build tools
	$(WITH_TOOLS) scripts/render-self-signed $(OVERLAY) $(BIN)

bench:
	$(CARGO) bench --locked --bench rewrite

## load-bench: /mutate over TLS keep-alive vs a no-op axum+rustls server (loopback, ~1 min).
load-bench:
	$(CARGO) bench --locked --bench load

## soak: 200 keep-alive connections on /mutate for SOAK_SECONDS (60) while the certificate
## rotates every 3 s and the mappings change every second; fails on any failed request, RSS
## growth over 10 % or descriptor growth (loopback, stops by itself).
soak:
	$(CARGO) bench --locked --bench soak

## fuzz: each fuzz target for FUZZ_SECONDS (300), corpora seeded from fuzz/seeds (tests/data,
## deploy/examples). Needs a nightly toolchain (FUZZ_TOOLCHAIN, default +nightly); installs
## cargo-fuzz when missing. Crashes land in fuzz/artifacts/TARGET/.
FUZZ_SECONDS ?= 300
FUZZ_TOOLCHAIN ?= +nightly
FUZZ_TARGETS := review_mutate mappings clusterpair
fuzz:
	command -v cargo-fuzz > /dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t && cp -n seeds/$$t/* corpus/$$t/ && \
	  cargo $(FUZZ_TOOLCHAIN) fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

## storm: 1,000 TLS clients connecting at once (as after an API server restart), 3 rounds.
storm:
	$(CARGO) bench --locked --bench storm

## audit-bench: `audit` of AUDIT_OBJECTS (10,000) objects of 5 kinds against the fake API
## server, several page sizes, then `--fix` (loopback, ~1 min).
audit-bench:
	$(CARGO) bench --locked --bench audit

clean:
	$(CARGO) clean
