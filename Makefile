# p11-card — see README.md. `make demo` and `make test` work on a fresh Debian 12 machine.
#
#   make deps     install the Debian packages the build, the rig and the tests use
#   make build    bin/p11-card and (once p11/ exists) bin/p11-card-pkcs11.so
#   make install  the CLI, the module and a p11-kit module file (PREFIX, DESTDIR); uninstall
#   make test     deps, build, vet, unit tests with -race, then the rig tests (hwtest)
#   make fuzz     every Fuzz* target for FUZZTIME (default 10s) each
#   make bench    p11-card, OpenSC and ykcs11 side by side on one virtual card (bench-out/)
#   make soak     the reliability tests at a bigger size
#   make demo     a virtual PIV card in a private pcscd, shown by p11-card and the module
#   make rig-up / rig-down   the virtual card rig on its own
#   make clean

# Go lives in /usr/local/go on our machines; PATH may not have it.
export PATH := $(PATH):/usr/local/go/bin
# The Go build cache lives under $HOME; some CI environments start without one.
ifeq ($(HOME),)
export HOME := $(shell getent passwd $$(id -u) | cut -d: -f6)
endif
GO ?= go
BIN := bin
FUZZTIME ?= 10s
RIG_DIR ?= /run/p11-card-rig
# Time limits: unit tests, and the rig tests (pcscd, vpcd, client tools).
UNIT_TIMEOUT ?= 10m
HWTEST_TIMEOUT ?= 20m

# Debian packages: PC/SC, the vpcd driver, the reference modules and tools we compare
# with and drive from tests, and cgo's compiler.
DEBS := pcscd libpcsclite-dev vsmartcard-vpcd libusb-1.0-0-dev opensc yubico-piv-tool \
	ykcs11 scdaemon p11-kit gnutls-bin libengine-pkcs11-openssl libnss3-tools softhsm2 pcsc-tools strace \
	pkg-config gcc libc6-dev openssh-client gnupg openssl util-linux mount

HAVE_MODULE := $(wildcard p11/*.go)

# The module's relative relocations packed (DT_RELR, binutils 2.38 and glibc 2.36 on): one
# 8-byte word per run of pointers instead of 24 bytes each, which takes the loader's table
# from 370 KB to 6 KB and a process's resident memory down by 260 KB. A module linked so
# loads only with glibc 2.36 or later; a toolchain without it builds the module as before.
# hwtest builds its module with the same flags (P11CARD_MODULE_LDFLAGS).
MODULE_LDFLAGS := $(shell printf 'int f(void){return 0;}' | $(CC) -x c -shared -fPIC -o /dev/null \
	-Wl,--fatal-warnings -Wl,-z,pack-relative-relocs - 2>/dev/null && echo -extldflags=-Wl,-z,pack-relative-relocs)
export P11CARD_MODULE_LDFLAGS := $(MODULE_LDFLAGS)

.PHONY: all deps build install uninstall test unit hwtest fuzz bench soak rig-up rig-down demo clean
all: build

deps:
	@missing=""; \
	for p in $(DEBS); do \
		dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	echo "deps: installing$$missing"; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "deps: run as root, or: sudo apt-get install$$missing" >&2; exit 1; \
	fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq >/dev/null && \
	apt-get install -y -qq --no-install-recommends $$missing >/dev/null
	@command -v $(GO) >/dev/null || { echo "deps: no Go toolchain: install Go 1.26 in /usr/local/go" >&2; exit 1; }

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/p11-card ./cmd/p11-card
ifneq ($(HAVE_MODULE),)
	$(GO) build -buildmode=c-shared -ldflags='$(MODULE_LDFLAGS)' -o $(BIN)/p11-card-pkcs11.so ./p11
endif

# make install puts the CLI in BINDIR, the module in LIBDIR and, in P11KIT_MODULES (p11-kit's
# directory for the administrator's modules), a file naming it: every p11-kit-aware program
# (GnuTLS, p11-kit's proxy) then loads it. DESTDIR stages the tree for a package.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
P11KIT_MODULES ?= /etc/pkcs11/modules

install: build
	install -D -m 755 $(BIN)/p11-card $(DESTDIR)$(BINDIR)/p11-card
ifneq ($(HAVE_MODULE),)
	install -D -m 755 $(BIN)/p11-card-pkcs11.so $(DESTDIR)$(LIBDIR)/p11-card-pkcs11.so
	install -d -m 755 $(DESTDIR)$(P11KIT_MODULES)
	printf 'module: %s\n' '$(LIBDIR)/p11-card-pkcs11.so' >$(DESTDIR)$(P11KIT_MODULES)/p11-card.module
	chmod 644 $(DESTDIR)$(P11KIT_MODULES)/p11-card.module
endif

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/p11-card $(DESTDIR)$(LIBDIR)/p11-card-pkcs11.so \
		$(DESTDIR)$(P11KIT_MODULES)/p11-card.module

unit:
	$(GO) vet ./...
	$(GO) vet -tags hwtest ./...
	$(GO) test -race -timeout $(UNIT_TIMEOUT) ./...

hwtest: build
	P11CARD_RIG_REQUIRED=1 $(GO) test -race -tags hwtest -count=1 -run '^TestRig' -timeout $(HWTEST_TIMEOUT) ./p11/internal/core/ ./pcsc/
	P11CARD_RIG_REQUIRED=1 $(GO) test -tags hwtest -count=1 -timeout $(HWTEST_TIMEOUT) ./hwtest/...

test: deps
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory build unit hwtest; rc=$$?; \
	secs=$$(( $$(date +%s) - start )); \
	echo "make test: $$( [ $$rc = 0 ] && echo passed || echo FAILED ) in $$((secs / 60))m$$((secs % 60))s"; \
	exit $$rc

fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "fuzz: $$pkg $$f for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

# Our module, OpenSC's and ykcs11 side by side on one virtual card, BENCH_RUNS processes per
# cell; the table goes to stdout and, with JSON, to $(BENCH_OUT).
BENCH_RUNS ?= 11
BENCH_OUT ?= $(CURDIR)/bench-out
bench: deps build
	@mkdir -p $(BENCH_OUT)
	@P11CARD_RIG_REQUIRED=1 P11CARD_BENCH=$(BENCH_RUNS) P11CARD_BENCH_OUT=$(BENCH_OUT) \
		$(GO) test -tags hwtest -count=1 -run '^TestBench$$' -timeout 20m ./hwtest/ >$(BENCH_OUT)/bench.log 2>&1 \
		|| { cat $(BENCH_OUT)/bench.log; exit 1; }
	@cat $(BENCH_OUT)/bench.md
	@echo; echo "bench: $(BENCH_OUT)/bench.md and $(BENCH_OUT)/bench.json (log: $(BENCH_OUT)/bench.log)"

# The reliability tests at a bigger size (32 goroutines × 200 mixed operations under -race,
# 1000 random removals, 1000 runs against a lying card: about 20 minutes).
soak: deps build
	P11CARD_RIG_REQUIRED=1 P11CARD_SOAK=1 $(GO) test -race -tags hwtest -count=1 -timeout 30m -run '^TestRig' -v ./p11/internal/core/
	P11CARD_RIG_REQUIRED=1 P11CARD_SOAK=1 $(GO) test -tags hwtest -count=1 -timeout 60m -run '^TestModuleRandomRemoval$$|^TestModuleHostileCard$$' -v ./hwtest/

rig-up: build
	$(BIN)/p11-card rig up --dir $(RIG_DIR)

rig-down:
	@if [ -x $(BIN)/p11-card ]; then $(BIN)/p11-card rig down --dir $(RIG_DIR); else echo "rig-down: no bin/p11-card, nothing to stop"; fi

DEMO_ENV := PCSCLITE_CSOCK_NAME=$(RIG_DIR)/pcscd/pcscd.comm
DEMO_DIR := $(RIG_DIR)/demo
# The virtual card's factory defaults (p11-card help rig); change them on a real card.
DEMO_PIN := 123456
DEMO_MGMT := 010203040506070801020304050607080102030405060708

demo: deps build
	@$(BIN)/p11-card rig status --dir $(RIG_DIR) >/dev/null 2>&1 || $(BIN)/p11-card rig up --dir $(RIG_DIR)
	@$(BIN)/p11-card rig remove --dir $(RIG_DIR) --reader 0 >/dev/null
	$(BIN)/p11-card rig insert --dir $(RIG_DIR) --reader 0 --card piv
	@mkdir -p $(DEMO_DIR)
	$(DEMO_ENV) $(BIN)/p11-card readers
ifneq ($(HAVE_MODULE),)
	@echo; echo "== the module's slots and the factory-fresh card's public objects (pkcs11-tool)"
	$(DEMO_ENV) pkcs11-tool --module $(BIN)/p11-card-pkcs11.so -L -O
	@echo; echo "== a P-256 key generated on the card in PIV slot 9A (CKA_ID 01), authorised by the management key"
	echo $(DEMO_MGMT) | $(DEMO_ENV) $(BIN)/p11-card keygen --id 01 --alg p256
	@echo; echo "== a signature with it after logging in with the PIN, checked by pkcs11-tool"
	@printf 'signed on the virtual card\n' >$(DEMO_DIR)/msg
	$(DEMO_ENV) pkcs11-tool --module $(BIN)/p11-card-pkcs11.so --login --pin $(DEMO_PIN) --sign \
		--id 01 -m ECDSA-SHA256 --input-file $(DEMO_DIR)/msg --output-file $(DEMO_DIR)/sig
	$(DEMO_ENV) pkcs11-tool --module $(BIN)/p11-card-pkcs11.so --verify --id 01 -m ECDSA-SHA256 \
		--input-file $(DEMO_DIR)/msg --signature-file $(DEMO_DIR)/sig
	@echo; echo "== OpenSSH sees the card's keys (ssh-keygen -D)"
	$(DEMO_ENV) ssh-keygen -D $(BIN)/p11-card-pkcs11.so
	@echo; echo "== p11-card test: every signing key signs and verifies through the module"
	echo $(DEMO_PIN) | $(DEMO_ENV) $(BIN)/p11-card test --module $(BIN)/p11-card-pkcs11.so
endif
	@echo
	@echo "The rig is still up. Use it from this shell with:"
	@echo "    export PCSCLITE_CSOCK_NAME=$(RIG_DIR)/pcscd/pcscd.comm"
	@echo "Stop it with: make rig-down"

clean:
	rm -rf $(BIN) build
	$(GO) clean -testcache
