# regsweep: `make demo` runs it on a sample tree, `make test` runs every test
# (installing and starting the real servers it needs).

GO        ?= go
BIN       := bin/regsweep
STATE     ?= $(or $(REGSWEEP_TESTENV_DIR),/tmp/regsweep-testenv)
DEMO_DIR  ?= $(or $(TMPDIR),/tmp)/regsweep-demo
export REGSWEEP_TESTENV_DIR := $(STATE)

.PHONY: build demo test unit testenv-install testenv-up testenv-down bench fuzz vet clean

build:
	$(GO) build -o $(BIN) ./cmd/regsweep

demo: build
	rm -rf $(DEMO_DIR) $(DEMO_DIR)-cache
	$(GO) run ./internal/cmd/demotree $(DEMO_DIR)
	$(BIN) inventory --fs-root $(DEMO_DIR)
	$(BIN) gc --fs-root $(DEMO_DIR) --delete-untagged --grace 0s --upload-grace 0s --max-delete-fraction 0.9 --cache-dir $(DEMO_DIR)-cache

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# Unit tests only: no servers.
unit:
	$(GO) test -count=1 ./layout/ ./storage/ ./storage/filesystem/ ./walker/ ./backend/ ./reports/ ./manifest/ ./mark/ ./sweep/ ./lock/ ./cmd/...

testenv-install:
	bash testenv/install.sh

testenv-up: testenv-install
	bash testenv/up.sh

testenv-down:
	bash testenv/down.sh

test: vet testenv-up
	. $(STATE)/env.sh && $(GO) test -count=1 -timeout 25m ./...

fuzz:
	$(GO) test -run XXX -fuzz FuzzParse -fuzztime 30s ./layout/

bench: build testenv-up
	. $(STATE)/env.sh && $(GO) run ./internal/cmd/bench

clean:
	rm -rf bin $(DEMO_DIR)
