# regsweep: `make demo` runs it on a sample tree, `make test` runs every test
# (installing and starting the real servers it needs).

GO        ?= go
BIN       := bin/regsweep
STATE     ?= $(or $(REGSWEEP_TESTENV_DIR),/tmp/regsweep-testenv)
DEMO_DIR  ?= $(or $(TMPDIR),/tmp)/regsweep-demo
export REGSWEEP_TESTENV_DIR := $(STATE)

.PHONY: build demo test unit testenv-install testenv-up testenv-down bench fuzz vet clean man completion

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
	$(GO) test -count=1 ./layout/ ./blobindex/ ./retention/ ./storage/ ./storage/filesystem/ ./walker/ ./backend/ ./reports/ ./manifest/ ./mark/ ./sweep/ ./lock/ ./config/ ./cmd/...

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
	$(MAKE) --no-print-directory fuzz-targets FUZZTIME=30s

# Every fuzz target but layout's (above), FUZZTIME each; `make soak` runs
# them for minutes.
FUZZTIME ?= 30s
.PHONY: fuzz-targets soak
fuzz-targets:
	$(GO) test -run XXX -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./manifest/
	$(GO) test -run XXX -fuzz '^FuzzParseRoundTrip$$' -fuzztime $(FUZZTIME) ./manifest/
	$(GO) test -run XXX -fuzz '^FuzzParseLink$$' -fuzztime $(FUZZTIME) ./walker/
	$(GO) test -run XXX -fuzz '^FuzzLinkETagMatches$$' -fuzztime $(FUZZTIME) ./walker/
	$(GO) test -run XXX -fuzz '^FuzzParseRegistryConfig$$' -fuzztime $(FUZZTIME) ./backend/
	$(GO) test -run XXX -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./config/
	$(GO) test -run XXX -fuzz '^FuzzParseListPage$$' -fuzztime $(FUZZTIME) ./storage/s3/
	$(GO) test -run XXX -fuzz '^FuzzIndexPack$$' -fuzztime $(FUZZTIME) ./manifestcache/
	$(GO) test -run XXX -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./retention/

# The long variants: the randomised model test over many more cases
# (REGSWEEP_MODEL_CASES), then every fuzz target for SOAK_FUZZTIME.
SOAK_CASES    ?= 30000
SOAK_FUZZTIME ?= 3m
soak:
	REGSWEEP_MODEL_CASES=$(SOAK_CASES) $(GO) test -count=1 -timeout 0 -run TestModel -v ./internal/model/
	$(GO) test -run XXX -fuzz '^FuzzParse$$' -fuzztime $(SOAK_FUZZTIME) ./layout/
	$(MAKE) --no-print-directory fuzz-targets FUZZTIME=$(SOAK_FUZZTIME)

# `make bench`: S3 (MinIO) and the filesystem (10k- and 100k-blob trees,
# with syscall counts). The long parts are opt-in: `make bench-1m` (a
# 1M-blob tree, ~2.7M files, ~22 GB of disk) and `make bench-latency` (a
# simulated network filesystem: BENCH_LATENCY added to each directory read,
# stat and open, through FUSE). BENCH_FLAGS adds flags (go run
# ./internal/cmd/bench -h lists them).
BENCH_LATENCY ?= 500us
BENCH_FLAGS   ?=
BENCH_REFS     = REGSWEEP_TEST_REGISTRY_V28=$(TOOLS_DIR)/registry28 REGSWEEP_TEST_REGISTRY_V3=$(TOOLS_DIR)/registry
.PHONY: bench-1m bench-latency
bench: build testenv-up
	. $(STATE)/env.sh && $(GO) run ./internal/cmd/bench $(BENCH_FLAGS)

bench-1m: build testenv-install
	$(BENCH_REFS) $(GO) run ./internal/cmd/bench -parts fs -fs-scales 100k,1m -fs-count-scales '' $(BENCH_FLAGS)

bench-latency: build testenv-install
	$(BENCH_REFS) $(GO) run ./internal/cmd/bench -parts fs -fs-scales '' -fs-count-scales '' -fs-latency $(BENCH_LATENCY) $(BENCH_FLAGS)

# Man pages (section 1) for every command, from the command tree itself.
# The pages' date is the last commit's, so rebuilding them changes nothing.
man: build
	rm -rf man
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)} $(BIN) genman --dir man

# Shell completion scripts, for packaging.
completion: build
	mkdir -p completions
	$(BIN) completion bash > completions/regsweep.bash
	$(BIN) completion zsh > completions/_regsweep
	$(BIN) completion fish > completions/regsweep.fish

clean:
	rm -rf bin man completions $(DEMO_DIR)

# ---- container image (issue 7): ko builds it without a Docker engine ----
# `make image KO_DOCKER_REPO=registry.example.com/regsweep` builds a static
# (CGO_ENABLED=0), non-root image on IMAGE_BASE and pushes it; without
# KO_DOCKER_REPO it writes bin/regsweep-image.tar instead. The pushed
# reference (with its digest) goes to IMAGE_REFS. ko: testenv/install.sh.
TOOLS_DIR       ?= $(or $(REGSWEEP_TOOLS),$(HOME)/.cache/regsweep-testenv/bin)
KO              ?= $(or $(wildcard $(TOOLS_DIR)/ko),ko)
IMAGE_BASE      ?= cgr.dev/chainguard/static:latest
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
IMAGE_VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE_TAGS      ?= $(IMAGE_VERSION)
IMAGE_REFS      ?= bin/image.ref
IMAGE_TARBALL   ?= bin/regsweep-image.tar

.PHONY: image
image:
	@command -v $(KO) >/dev/null 2>&1 || { echo "ko is not installed: run make testenv-install (or bash testenv/install.sh)" >&2; exit 1; }
	@mkdir -p $(dir $(IMAGE_REFS)) $(dir $(IMAGE_TARBALL))
	KO_CONFIG_PATH=deploy/image KO_DEFAULTBASEIMAGE=$(IMAGE_BASE) REGSWEEP_VERSION=$(IMAGE_VERSION) \
		KO_DOCKER_REPO=$(or $(KO_DOCKER_REPO),regsweep) \
		$(KO) build --bare --platform=$(IMAGE_PLATFORMS) --tags=$(IMAGE_TAGS) --image-refs=$(IMAGE_REFS) \
		$(if $(KO_DOCKER_REPO),,--push=false --tarball=$(IMAGE_TARBALL)) ./cmd/regsweep
	@echo "image: $$(cat $(IMAGE_REFS))"
