# agentcgroup: `make` builds the shim and the CLI into bin/.
PREFIX ?= /usr/local
GO ?= go
# Static, no cgo: the shim runs beside any containerd; no_grpc keeps the runc
# task service's gRPC server out, as the runc shim is built. The CLI talks
# to containerd over gRPC (replay) and is built without it.
GOFLAGS_STATIC = -trimpath -ldflags '-s -w -extldflags -static'
GOFLAGS_BUILD = $(GOFLAGS_STATIC) -tags no_grpc
BINARIES = bin/containerd-shim-agentcgroup-v1 bin/agentcgroup-oci-runtime bin/agentcgroup bin/agentsim bin/modelserver

.PHONY: all install test unit integration agents demo bench replay generate clean lint fuzz

all: $(BINARIES)

bin/%: FORCE
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $@ ./cmd/$*

bin/agentcgroup: FORCE
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_STATIC) -o $@ ./cmd/agentcgroup

# The agent simulator, a static program for test containers' rootfs, and
# the scripted model server the real agent CLIs talk to.
bin/agentsim bin/modelserver: FORCE
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $@ ./testdata/$(@F)

FORCE:

install: all
	install -D -m 0755 bin/containerd-shim-agentcgroup-v1 $(DESTDIR)$(PREFIX)/bin/containerd-shim-agentcgroup-v1
	install -D -m 0755 bin/agentcgroup-oci-runtime $(DESTDIR)$(PREFIX)/bin/agentcgroup-oci-runtime
	install -D -m 0755 bin/agentcgroup $(DESTDIR)$(PREFIX)/bin/agentcgroup

# The tests: unit tests on the host, then the integration suite as root on a
# cgroup v2 host (this one, or the lab guest, in three chunks: a guest kernel
# that dies costs one chunk's rerun) against real containerd, runc and crun,
# then the systemd cgroup driver's test on a host with systemd as init (this
# one, or the guest booted with systemd); on a host without cgroup v2
# controllers also the fallback test. TESTFLAGS go to every chunk (not
# -test.run); SYSTEMD_TESTFLAGS to the systemd run.
test: unit integration

unit:
	$(GO) vet ./... ./testdata/agentsim ./testdata/modelserver
	$(GO) test ./...

TEST_BINARY = .cache/lab/integration.test

$(TEST_BINARY): FORCE
	$(GO) test -c -tags integration -o $@ ./integration

integration: all $(TEST_BINARY)
	integration/tools.sh
	integration/suite.sh $(TEST_BINARY) 3 'TestHybridHost|TestSystemdDriver' -test.v -test.timeout 30m $(TESTFLAGS)
	AGENTCGROUP_LAB_INIT=systemd integration/run.sh $(TEST_BINARY) -test.v -test.timeout 20m -test.run TestSystemdDriver $(SYSTEMD_TESTFLAGS)
	if ! grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then \
		$(TEST_BINARY) -test.v -test.timeout 10m -test.run TestHybridHost; fi

# The real agent CLIs, all three (make test runs Claude Code alone): each
# drives its script through the shim against the scripted model server.
agents: all $(TEST_BINARY)
	integration/tools.sh
	integration/agents.sh claude codex gemini
	integration/run.sh $(TEST_BINARY) -test.v -test.timeout 40m -test.run '^TestRealAgents$$' -agents claude,codex,gemini

demo: all
	integration/tools.sh
	integration/run.sh integration/demo.sh

# The replay benchmark: real agent traces, four arms, one budget.
# REPLAYFLAGS go to `agentcgroup replay`, e.g. REPLAYFLAGS='--sweep 4,8,12,16'.
# Results go to docs/replay/, or to --out docs/replay/<folder>: docs/benchmarks.md
# gives the flags of each committed folder.
replay: all
	integration/tools.sh
	AGENTCGROUP_LAB_RESULTS=$(CURDIR)/docs/replay integration/run.sh integration/replay.sh $(REPLAYFLAGS)

# Benchmarks, not tests: the detector natively on this host, then the shims
# and the detector on a cgroup v2 host (here or the lab guest).
bench: all $(TEST_BINARY)
	integration/tools.sh
	$(GO) test -run '^$$' -bench . -benchtime 1x ./bpf
	integration/run.sh $(TEST_BINARY) -test.run '^$$' -test.bench . -test.benchtime 1x -test.timeout 90m

clean:
	rm -rf bin

# A short fuzz pass for CI: every fuzz target for FUZZTIME, one after another
# (go test fuzzes one target per package per run). A failing input is written
# to <pkg>/testdata/fuzz/<target>/; commit it, and `go test` replays it from
# then on. With the default the pass takes about a minute.
FUZZTIME ?= 10s
FUZZ_TARGETS = policy:FuzzParseLimit policy:FuzzApply shim:FuzzRuntimeOptions replay/trace:FuzzParse
fuzz:
	set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) ./$${t%%:*}; \
	done
