# Pulse — Function-as-a-Service on your own hardware, on Docker Swarm.
# `make help` lists the targets.

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/pulsefaas/pulse/watchdog.Version=$(VERSION) -X main.version=$(VERSION)
BIN     := bin
export CGO_ENABLED := 0

.PHONY: help all fmt vet test build bench up down install-netdata fuzz clean lab-image lab-up lab-down

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

all: fmt vet test build ## fmt and vet checks, tests, static binaries

fmt: ## fail if gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet: ## go vet every package (and the watchdog with its mode tags)
	$(GO) vet ./...
	$(GO) vet -tags watchdog_nofork,watchdog_nohttp ./watchdog

test: fmt vet ## the whole suite: fmt, vet, unit tests with -race, integration tests on the real engine (one package at a time: the engine tests share 2 cores)
	@# The packages compile first on every core (-exec true runs no test):
	@# with -p 1 below, compiling would take one package at a time too.
	CGO_ENABLED=1 $(GO) test -race -count=1 -exec true ./... >/dev/null
	CGO_ENABLED=1 $(GO) test -race -count=1 -p 1 -timeout 25m ./...

build: ## static, stripped binaries into bin/
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...
	@ls -l $(BIN)

bench: build ## benchmarks (watchdog, functions, gateway, collector, autoscale, soak, cluster on the lab, async; ~70 min): JSON in bench/results/, tables in bench/README.md
	$(GO) run ./bench/run -suite watchdog
	$(GO) run ./bench/run -suite functions
	$(GO) run ./bench/run -suite gateway
	$(GO) run ./bench/run -suite collector
	$(GO) run ./bench/run -suite autoscale -scale-trials 5
	$(GO) run ./bench/run -suite soak
	$(GO) run ./bench/run -suite cluster
	$(GO) run ./bench/run -suite async

up: ## install and run Pulse here with the playbook (ansible/site.yml on localhost; installs Ansible from Debian if missing): swarm, pulsed + HAProxy gateway, Netdata + alarms, the example functions
	@command -v ansible-playbook >/dev/null || { echo "up: installing Ansible (Debian's)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ansible >/dev/null; }
	cd ansible && ansible-playbook site.yml -e pulse_build_dir=$(abspath $(BIN))

install-netdata: build ## Netdata with Pulse's plugin, alarms and hook here: the playbook's netdata role alone (root; restarts Netdata when its files changed)
	cd ansible && ansible-playbook site.yml --tags netdata -e pulse_build_dir=$(abspath $(BIN))

down: ## remove the example functions, stop pulsed and its HAProxy (Netdata stays)
	BIN=$(BIN) scripts/down.sh

lab-image: ## build (or find cached) the lab's node image: Debian, Docker Engine, sshd (root; ~1.5 min cold, 35 s on the debootstrapped root another variant cached in /var/cache/pulse-lab, 0.2 s cached; PULSE_LAB_VARIANT=bare: no Docker)
	lab/node-image.sh

lab-up: ## start the lab: 3 nodes with their own addresses, sshd and Docker Engine (PULSE_LAB_NODES=N; PULSE_LAB_VARIANT=bare: no Docker, apt through apt-cacher-ng; root)
	lab/lab.sh up

lab-down: ## remove the lab's nodes, volumes and network (the node images and /var/cache/pulse-lab stay as a cache)
	lab/lab.sh down

fuzz: ## run every fuzz target for a short while (FUZZTIME=20s each)
	@for p in $$(grep -rl --include=*_test.go '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$($(GO) test -list 'Fuzz.*' $$p | grep ^Fuzz); do \
			echo "fuzz $$p $$f"; $(GO) test $$p -run XXX -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-20s} || exit 1; done; done

clean: ## remove build output
	rm -rf $(BIN)
