# faultline: make run starts everything locally; make test runs every test.
# Nothing needs installing first: Go modules and the local ClickHouse engine
# (libchdb from the npm registry) are fetched here on first use.

SHELL := /bin/bash
GO ?= go
CHDB_VERSION ?= 26.7.3-stable.1
CHDB_PACKAGE := @chdb/lib-linux-x64-gnu@$(CHDB_VERSION)
CACHE ?= $(CURDIR)/.cache
CHDB_DIR := $(CACHE)/chdb/$(CHDB_VERSION)
CHDB_LIB := $(CHDB_DIR)/libchdb.so
BIN := bin
CH_BIN := $(BIN)/faultline-clickhouse
GO_SOURCES := $(shell find . -name '*.go' -not -path './.cache/*' -not -path './.data/*' 2>/dev/null)

TELEMETRYGEN_VERSION ?= v0.161.0
TELEMETRYGEN := $(BIN)/telemetrygen
# A stock OpenTelemetry Collector, built from testdata/collector/builder.yaml
# by the Collector builder of the same release as telemetrygen.
OTELCOL_VERSION := $(TELEMETRYGEN_VERSION)
OTELCOL_MANIFEST := testdata/collector/builder.yaml
OTELCOL_BUILDER := $(BIN)/builder
OTELCOL := $(BIN)/otelcol
# The Collector with the contrib ClickHouse exporter, faultline's peer in
# make bench-peer, built the same way from its own manifest.
OTELCOL_CH_MANIFEST := testdata/collector/builder-clickhouse.yaml
OTELCOL_CH := $(BIN)/otelcol-clickhouse

# Deployment checks: kubeconform validates the Kubernetes manifests and the
# Helm chart's output against schemas of one Kubernetes release, which
# cmd/faultline-kubeschema writes from the OpenAPI document in the
# k8s.io/kubernetes module (kubeconform's own download reaches GitHub), with
# the ServiceMonitor's from the prometheus-operator module's CRD.
KUBECONFORM_VERSION ?= v0.8.0
KUBECONFORM := $(BIN)/kubeconform
HELM_VERSION ?= v4.3.1
HELM := $(BIN)/helm
KUBERNETES_VERSION ?= 1.34.4
PROMETHEUS_OPERATOR_VERSION ?= v0.85.0
KUBE_SCHEMA := $(CURDIR)/.cache/kubernetes-json-schema
KUBE_SCHEMA_DONE := $(KUBE_SCHEMA)/v$(KUBERNETES_VERSION)-standalone-strict/servicemonitor-monitoring-v1.json
export FAULTLINE_KUBECONFORM_BIN := $(CURDIR)/$(KUBECONFORM)
export FAULTLINE_HELM_BIN := $(CURDIR)/$(HELM)
export FAULTLINE_KUBE_SCHEMA := $(KUBE_SCHEMA)
export FAULTLINE_KUBERNETES_VERSION := $(KUBERNETES_VERSION)

# The nats-server release go.mod requires (the embedded server's code),
# as a binary for the tests that run a cluster of separate server processes.
NATS_SERVER_VERSION := $(shell awk '$$1 == "github.com/nats-io/nats-server/v2" {print $$2}' go.mod)
NATS_SERVER := $(BIN)/nats-server

export FAULTLINE_CLICKHOUSE_BIN := $(CURDIR)/$(CH_BIN)
export FAULTLINE_NATS_SERVER_BIN := $(CURDIR)/$(NATS_SERVER)
# Tests that run faultline as separate processes start this build of it.
export FAULTLINE_BIN := $(CURDIR)/$(BIN)/faultline
export FAULTLINE_TELEMETRYGEN_BIN := $(CURDIR)/$(TELEMETRYGEN)
export FAULTLINE_OTELCOL_BIN := $(CURDIR)/$(OTELCOL)

# Headless Chromium for the web UI's browser test: Debian's chromium
# package, installed once when missing (apt-get, as root or through sudo).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
export FAULTLINE_CHROMIUM_BIN := $(CHROMIUM)

.PHONY: all build run test test-short test-cluster bench bench-live bench-restart bench-peer bench-soak fmt vet clean deps chdb otelcol chromium kubetools nats-server

all: build

deps:
	@$(GO) mod download

$(CHDB_LIB):
	@command -v npm >/dev/null || { echo "make: npm is needed to fetch $(CHDB_PACKAGE) (the local ClickHouse engine)."; \
	  echo "      To use an existing ClickHouse instead, set FAULTLINE_CLICKHOUSE_ADDR=host:9000 and run bin/faultline run."; exit 1; }
	@mkdir -p $(CHDB_DIR).tmp
	@echo "fetching $(CHDB_PACKAGE) (about 180 MB, once) into $(CHDB_DIR)"
	@cd $(CHDB_DIR).tmp && npm pack --silent $(CHDB_PACKAGE) >/dev/null 2>npm.log || { \
	  cat npm.log; echo; \
	  echo "make: could not fetch $(CHDB_PACKAGE) from the npm registry (see the npm error above)."; \
	  echo "      It provides libchdb.so, the ClickHouse engine that make run and make test start locally."; \
	  echo "      Without it, point faultline at an existing ClickHouse: FAULTLINE_CLICKHOUSE_ADDR=host:9000 bin/faultline run"; \
	  rm -rf $(CHDB_DIR).tmp; exit 1; }
	@cd $(CHDB_DIR).tmp && tar -xzf chdb-lib-linux-x64-gnu-*.tgz package/libchdb.so && mv package/libchdb.so . && rm -rf package *.tgz npm.log
	@rm -rf $(CHDB_DIR) && mv $(CHDB_DIR).tmp $(CHDB_DIR)

chdb: $(CHDB_LIB)

$(CH_BIN): $(CHDB_LIB) $(GO_SOURCES) go.mod go.sum
	@mkdir -p $(BIN)
	CGO_ENABLED=1 CGO_LDFLAGS="-L$(CHDB_DIR) -Wl,-rpath,$(CHDB_DIR)" $(GO) build -tags chdb -o $@ ./cmd/faultline-clickhouse

$(BIN)/faultline: $(GO_SOURCES) go.mod go.sum
	@mkdir -p $(BIN)
	$(GO) build -ldflags "-X main.version=$$(git describe --tags --always --dirty 2>/dev/null || echo dev)" -o $@ ./cmd/faultline

build: $(BIN)/faultline $(CH_BIN)

# The OpenTelemetry project's load generator, for the gateway's tests.
$(TELEMETRYGEN):
	@mkdir -p $(BIN)
	GOBIN=$(CURDIR)/$(BIN) $(GO) install github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@$(TELEMETRYGEN_VERSION)

# Rebuilt when go.mod moves to another release.
$(NATS_SERVER): go.mod
	@mkdir -p $(BIN)
	GOBIN=$(CURDIR)/$(BIN) $(GO) install github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION)
	@touch $@

$(OTELCOL_BUILDER):
	@mkdir -p $(BIN)
	GOBIN=$(CURDIR)/$(BIN) $(GO) install go.opentelemetry.io/collector/cmd/builder@$(OTELCOL_VERSION)

# The Collector users run, for the gateway's interop test: the builder
# writes a Go module under .cache/otelcol (the manifest's output_path,
# outside the tree git sees) and compiles it; only the binary is kept.
# It runs $(GO) from PATH, so its directory goes first.
$(OTELCOL): $(OTELCOL_MANIFEST) | $(OTELCOL_BUILDER)
	@grep -q 'otlpreceiver $(OTELCOL_VERSION)$$' $(OTELCOL_MANIFEST) || { \
	  echo "make: $(OTELCOL_MANIFEST) must name $(OTELCOL_VERSION), the builder's version"; exit 1; }
	@mkdir -p .cache $(BIN) && rm -rf .cache/otelcol
	@echo "building a stock OpenTelemetry Collector $(OTELCOL_VERSION) into $@ (once)"
	@PATH="$$(dirname "$$(command -v $(GO))"):$$PATH" $(OTELCOL_BUILDER) --config=$(OTELCOL_MANIFEST) >.cache/otelcol.log 2>&1 || { \
	  cat .cache/otelcol.log; echo "make: building the Collector failed (log above)"; exit 1; }
	@mv .cache/otelcol/otelcol $@

otelcol: $(OTELCOL)

$(KUBECONFORM):
	@mkdir -p $(BIN)
	GOBIN=$(CURDIR)/$(BIN) $(GO) install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)

$(HELM):
	@mkdir -p $(BIN)
	GOBIN=$(CURDIR)/$(BIN) $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

# The modules are fetched through the Go module proxy outside this module
# (go mod download in a temporary directory), so go.mod stays as it is.
$(KUBE_SCHEMA_DONE): cmd/faultline-kubeschema/main.go
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	  k8s=$$(cd $$tmp && GOFLAGS= $(GO) mod download -json k8s.io/kubernetes@v$(KUBERNETES_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p') && \
	  po=$$(cd $$tmp && GOFLAGS= $(GO) mod download -json github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p') && \
	  test -n "$$k8s" -a -n "$$po" || { echo "make: could not fetch k8s.io/kubernetes@v$(KUBERNETES_VERSION) or prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION) from the Go module proxy"; exit 1; } && \
	  $(GO) run ./cmd/faultline-kubeschema -version $(KUBERNETES_VERSION) -out $(KUBE_SCHEMA) \
	    -spec $$k8s/api/openapi-spec/swagger.json \
	    -crd $$po/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml

kubetools: $(KUBECONFORM) $(HELM) $(KUBE_SCHEMA_DONE)

$(OTELCOL_CH): $(OTELCOL_CH_MANIFEST) | $(OTELCOL_BUILDER)
	@grep -q 'clickhouseexporter $(OTELCOL_VERSION)$$' $(OTELCOL_CH_MANIFEST) || { \
	  echo "make: $(OTELCOL_CH_MANIFEST) must name $(OTELCOL_VERSION), the builder's version"; exit 1; }
	@mkdir -p .cache $(BIN) && rm -rf .cache/otelcol-clickhouse
	@echo "building an OpenTelemetry Collector $(OTELCOL_VERSION) with the ClickHouse exporter into $@ (once, a few minutes)"
	@PATH="$$(dirname "$$(command -v $(GO))"):$$PATH" $(OTELCOL_BUILDER) --config=$(OTELCOL_CH_MANIFEST) >.cache/otelcol-clickhouse.log 2>&1 || { \
	  cat .cache/otelcol-clickhouse.log; echo "make: building the Collector failed (log above)"; exit 1; }
	@mv .cache/otelcol-clickhouse/otelcol-clickhouse $@

nats-server: $(NATS_SERVER)

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "make: $(CHROMIUM) is missing and there is no apt-get to install Debian's chromium;"; \
	  echo "      install Chromium and run make test CHROMIUM=/path/to/chromium"; exit 1; }
	@echo "installing Debian's chromium (about a minute, once) for the web UI's browser test"
	@{ $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; } || { \
	  echo "make: apt-get install chromium failed (see above); install Chromium and run make test CHROMIUM=/path/to/chromium"; exit 1; }

chromium: $(CHROMIUM)

# The whole system on embedded defaults: NATS in process, local ClickHouse,
# schema applied, gateway, workers, admin endpoints and the web UI (its URL
# is in the banner). Ctrl-C stops it all.
run: build
	$(BIN)/faultline run

test: build $(TELEMETRYGEN) $(OTELCOL) $(NATS_SERVER) $(CHROMIUM) kubetools
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) test -race -timeout 15m -count=1 ./...

# The cluster runs: the ClickHouse tests on a local cluster of 2 shards x 2
# replicas (four servers; make test runs them too), then the multi-node run
# (one to two minutes): a three-server JetStream cluster,
# two gateways, three workers and two correlators as separate processes,
# SIGKILLs of a NATS server and a worker while data flows. make test runs
# its smaller parts (a stream leader killed under a gateway; provisioning
# without quorum) but not this one.
test-cluster: build $(NATS_SERVER)
	$(GO) test -race -count=1 -run '^TestSharded' ./sinks/clickhouse/
	FAULTLINE_TEST_CLUSTER=1 $(GO) test -race -timeout 10m -count=1 -v \
	  -run '^(TestNATSClusterFailover|TestLeaderKilled|TestProvisionWaitsForQuorum)$$' ./cmd/faultline ./pipeline/gateway ./pipeline/broker

test-short: build
	$(GO) test -short -count=1 ./...

	$(GO) test -race -count=1 -run '^(TestTelemetryWriteReadBackAndDedup|TestDoraViews|TestUIQueries|TestGrafanaDashboards)$$/^sharded$$' ./sinks/clickhouse/

bench: build
	$(GO) run ./cmd/faultline-bench -bin $(BIN)

# Detection and alert latency on live telemetry (about five minutes).
bench-live: build
	$(GO) run ./cmd/faultline-bench -bin $(BIN) -live

# A correlator restart over a year of deploys: time to ready and to a
# correlated new incident, and peak RSS, with and without the checkpoint.
bench-restart: build
	$(GO) run ./cmd/faultline-bench -bin $(BIN) -restart

# faultline (gateway, JetStream, worker as separate processes) against the
# OpenTelemetry Collector with the ClickHouse exporter, same load and same
# ClickHouse, in paired runs (about ten minutes); BENCH_PEER_FLAGS for more,
# e.g. BENCH_PEER_FLAGS="-peer-rounds 3".
bench-peer: build $(TELEMETRYGEN) $(OTELCOL_CH)
	$(GO) run ./cmd/faultline-bench -bin $(BIN) -peer $(BENCH_PEER_FLAGS)

# Cost per interval over 100M log records through gateway, JetStream,
# worker and ClickHouse (hours on a busy machine; up to 4 GB of stream on
# disk plus ClickHouse's data). SOAK='-soak-records N -soak-interval M'
# runs a shorter one.
bench-soak: build
	$(GO) run ./cmd/faultline-bench -bin $(BIN) -soak $(SOAK)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN) .data
