# hookstream — run `make help` for the targets.
GO        ?= go
PKGS      ?= ./...
TEST_FLAGS ?= -race -count=1 -timeout 15m
REDOC_VERSION ?= 3.0.1

.PHONY: help
help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

.PHONY: dev
dev: ## run everything in one process (embedded broker, private PostgreSQL)
	$(GO) run ./cmd/hookstream dev

.PHONY: build
build: ## build bin/hookstream
	$(GO) build -o bin/hookstream ./cmd/hookstream

.PHONY: test
test: ## run every test with the race detector (starts PostgreSQL and a broker itself)
	$(GO) test $(TEST_FLAGS) $(PKGS)

.PHONY: contract
contract: ## the HTTP contract by outside tools: redocly lint of /openapi.json, schemathesis against a running dev (scripts/contract-check.sh)
	scripts/contract-check.sh

.PHONY: test-docker
test-docker: ## the same suite on Apache Kafka and PostgreSQL in Docker (testcontainers); fails without a Docker engine
	HOOKSTREAM_TEST_DOCKER=1 CI=$${CI:-1} $(GO) test $(TEST_FLAGS) $(PKGS)

.PHONY: test-race
test-race: test ## alias of test: the suite always runs with -race

GOLANGCI_LINT_VERSION ?= v2.15.0

.PHONY: lint
lint: ## gofmt, go vet and golangci-lint (.golangci.yml; installed into $(go env GOPATH)/bin when missing)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet $(PKGS)
	@command -v golangci-lint >/dev/null 2>&1 || test -x "$$($(GO) env GOPATH)/bin/golangci-lint" || \
	  $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" golangci-lint run $(PKGS)

.PHONY: docs-assets
docs-assets: ## re-fetch the /docs page's Redoc bundle from npm (REDOC_VERSION)
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent redoc@$(REDOC_VERSION) >/dev/null && \
	  tar -xzf redoc-$(REDOC_VERSION).tgz package/bundles/redoc.standalone.js package/LICENSE && \
	  cp package/bundles/redoc.standalone.js $(CURDIR)/internal/apidocs/assets/redoc.standalone.js && \
	  cp package/LICENSE $(CURDIR)/internal/apidocs/assets/redoc.LICENSE && \
	  rm -rf $$tmp && sha256sum $(CURDIR)/internal/apidocs/assets/redoc.standalone.js

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	@for pkg in ./ingest ./ingest/signature; do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-30s} $$pkg || exit 1; \
	  done; \
	done

.PHONY: bench
bench: ## Go micro-benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
