# agentcgroup: `make` builds the shim and the CLI into bin/.
PREFIX ?= /usr/local
GO ?= go
# Static, no cgo: the shim runs beside any containerd; no_grpc keeps the runc
# task service's gRPC server out, as the runc shim is built.
GOFLAGS_BUILD = -trimpath -tags no_grpc -ldflags '-s -w -extldflags -static'
BINARIES = bin/containerd-shim-agentcgroup-v1 bin/agentcgroup

.PHONY: all install test unit integration demo bench generate clean lint

all: $(BINARIES)

bin/%: FORCE
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $@ ./cmd/$*

FORCE:

install: all
	install -D -m 0755 bin/containerd-shim-agentcgroup-v1 $(DESTDIR)$(PREFIX)/bin/containerd-shim-agentcgroup-v1
	install -D -m 0755 bin/agentcgroup $(DESTDIR)$(PREFIX)/bin/agentcgroup

# The tests: unit tests on the host, then the integration suite as root in
# the cgroup v2 guest against real containerd, runc and crun.
test: unit integration

unit:
	$(GO) vet ./...
	$(GO) test ./...

integration: all
	integration/tools.sh
	$(GO) test -c -tags integration -o .cache/lab/integration.test ./integration
	integration/lab.sh -- .cache/lab/integration.test -test.v -test.timeout 40m $(TESTFLAGS)

demo: all
	integration/tools.sh
	integration/lab.sh -- integration/demo.sh

bench: all
	integration/tools.sh
	$(GO) test -c -tags integration -o .cache/lab/integration.test ./integration
	integration/lab.sh -- .cache/lab/integration.test -test.run '^$$' -test.bench . -test.benchtime 1x -test.timeout 30m

clean:
	rm -rf bin
