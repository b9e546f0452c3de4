# Sluice. `make run` starts the dev stack, `make test` runs every test.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
CONFIG   ?= config/gateway.yaml
FUZZTIME ?= 20s

.PHONY: all build run test vet race bench bench-shadow bench-ratelimit bench-go fuzz reload-check soak demo-canary demo-rollback clean

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/gateway ./cmd/modelworker

# The dev stack: the gateway, which starts its model workers itself. Ctrl-C
# drains, stops the workers and exits.
run: build
	./bin/gateway -config $(CONFIG)

# The full suite: vet, formatting, and every test with the race detector
# (which needs a C compiler), a real Redis, nginx (the import parity test)
# and Prometheus (the alert rules and a real scrape): installed from Debian
# packages if missing.
test: vet
	@scripts/deps.sh cc=gcc redis-server=redis-server nginx=nginx promtool=prometheus prometheus=prometheus chromium=chromium
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m ./...
	# Allocation budgets, which the race detector would distort.
	$(GO) test -count=1 -run 'DoesNotAllocate' ./internal/proxy

vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

# The reference comparison (see BENCHMARKS.md): the trivial backend and a
# model worker, each behind nginx, HAProxy, Caddy and the gateway in five
# modes, under wrk at 1, 64 and 256 connections, in rounds; bin/gateway and
# bin/modelworker come from build. Prints tables, writes bench/out/latest.json;
# never fails on numbers.
bench: build
	bash bench/run.sh

# The primary's latency with a fast, a slow and a dead shadow, beside no shadow
# (BENCH_SOAK=300s adds a memory soak). Prints; never fails on numbers.
bench-shadow: build
	bash bench/shadow.sh

# Rate limits: admitted counts of a local and a global limit, a Redis outage
# under load, and memory under a flood of distinct keys (BENCH_KEYS_DURATION,
# default 60s). Prints; never fails on numbers.
bench-ratelimit: build
	bash bench/ratelimit.sh

# Go benchmarks with allocations.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Bounded fuzzing of every parser, FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$target"; \
	    $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) -parallel $(or $(FUZZPARALLEL),1) $$pkg; \
	  done; \
	done

# The reload-under-load check alone, with its report (SLUICE_RELOAD_SECONDS to change its length).
reload-check:
	@scripts/deps.sh cc=gcc
	CGO_ENABLED=1 $(GO) test -race -count=1 -run 'TestReloadUnderLoad$$' -v ./internal/gateway/

# The soak: constant-rate load against a dev-like stack while workers die,
# hang and fail, Redis goes away and the config is rewritten; prints the
# report (SOAK_DURATION, default 5m; `make test` runs it for 60 s).
soak:
	bash scripts/soak.sh

# Canary routes, end to end: iris-v2 rolled out over iris-v1 in steps of
# 5, 25, 50 and 100% under steady traffic, with the progress printed each
# second until it is promoted (about 20 s; fails if it is not within 110 s).
demo-canary: build
	bash scripts/demo-canary.sh

# The same with a candidate that fails a fifth of its requests: rolled back
# at the first step, and no request reaches it afterwards.
demo-rollback: build
	bash scripts/demo-rollback.sh

clean:
	rm -rf bin
