# raftmail — canonical commands (CI runs exactly these through .ci/run).
GO      ?= go
BIN     := bin/raftmail
PKGS    := ./...
TIMEOUT ?= 20m

.PHONY: all build run test test-short lint fmt fuzz bench deps clean chaos image compose-test

all: build

deps:
	$(GO) mod download

build: deps
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/raftmail

# One command for a local 3-node cluster with a demo account (data in ./data).
run: build
	./$(BIN) dev --data ./data

# The whole test suite, race detector on.
test: deps
	$(GO) test -race -count=1 -timeout $(TIMEOUT) $(PKGS)

test-short: deps
	$(GO) test -short -count=1 -timeout $(TIMEOUT) $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzUnmarshal -fuzztime 30s ./raftstore/command/

# Benchmarks (not tests): raftmail beside Postfix + Dovecot (Debian's
# postfix dovecot-imapd dovecot-pop3d dovecot-lmtpd, run as root) and the raw
# raft ceiling, written to docs/benchmarks.md and docs/benchmarks.png.
BENCH_ARGS ?=
bench: build
	./$(BIN) bench compare --bin $(BIN) --corpus ../shared/corpus --out docs/benchmarks.md --chart docs/benchmarks.png $(BENCH_ARGS)

# The in-process Go benchmarks of bench/ (LMTP, SMTP, store, raft ceiling).
bench-go: deps
	$(GO) test -run '^$$' -bench . -benchtime 3s -timeout 30m ./bench/

# The chaos harness (docs/reliability.md): a 3-node cluster and 2 MX frontends
# under SMTP+IMAP load while leaders are killed, nodes paused and the network
# cut; fails unless nothing acknowledged is lost or duplicated. About 2.5
# minutes by default; "make chaos DURATION=30m" for a long run, SEED=N to repeat.
DURATION ?= 2m
SEED     ?= 0
chaos: build
	./$(BIN) chaos --duration $(DURATION) --seed $(SEED)

# The container image (Dockerfile: FROM scratch + the static binary, built
# here because no base image can be pulled) and the compose stack test:
# 3 nodes, 2 MX and 1 submission frontend over mutual TLS; delivers through
# each frontend, kills the leader, delivers again, reads back over IMAP.
image:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags=-s -o bin/raftmail-static ./cmd/raftmail
	docker build -q -t raftmail:dev .

compose-test: image
	$(GO) test -tags compose -count=1 -v -timeout 10m ./deploy/compose/

clean:
	rm -rf bin
