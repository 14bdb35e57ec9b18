# Envoyage: `make up` runs the whole stack locally, `make test` runs every test.
# Everything installs into .tools/ (git-ignored); no root needed.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: help tools install build up down restart logs status test test-unit test-integration \
        test-add test-switch test-remove bench compose-up compose-down proto proto-check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

tools: ## install Node 26, Envoy, nats-server and the nats CLI into .tools/ (skips what is there)
	@scripts/install-tools.sh

# npm ci only when the lock file changed since the last install.
node_modules/.package-lock.json: package-lock.json | tools
	npm ci --no-audit --no-fund

install: tools node_modules/.package-lock.json ## tools and npm dependencies

build: install ## compile every workspace (tsc -b) and bundle the replica
	npm run build

up: build ## start the stack (NATS, API, 2 xDS replicas, Envoy, upstreams A, B); NATS_CLUSTER=3, ENVOY_ADS=sotw
	@scripts/stack.sh up

down: ## stop exactly what make up started
	@scripts/stack.sh down

restart: ## stop one process of the stack (P=xds-1, as make status names it) and start it again as it ran
	@scripts/stack.sh restart-check $(P)
	@$(MAKE) --no-print-directory build
	@scripts/stack.sh restart $(P)

logs: ## follow every log of the local stack
	@scripts/stack.sh logs

status: ## what the local stack runs, and where
	@scripts/stack.sh status

test: install ## every test: unit, API, xDS protocol, end to end with a real Envoy
	npm test

test-unit: build ## unit and component tests only
	npm run test:unit

test-integration: build ## end-to-end tests only
	npm run test:integration

bench: install ## benchmarks side by side with go-control-plane → bench/RESULTS.md (QUICK=1: a few minutes)
	npm run bench $(if $(QUICK),-- --quick)

test-add: ## on the running stack: web.example.com → upstream A, verified through Envoy
	@scripts/demo.sh add

test-switch: ## on the running stack: web.example.com → upstream B (remove, re-add), no Envoy restart
	@scripts/demo.sh switch

test-remove: ## on the running stack: web.example.com removed, Envoy answers 404
	@scripts/demo.sh remove

# Where the demo targets look for when Envoy was started (scripts/stack.sh keeps its state there too).
RUN_DIR := $(or $(ENVOYAGE_RUN_DIR),.run)

compose-up: ## Docker users: build and start docker-compose.yaml (same ports as make up)
	docker compose up -d --build --wait
	@mkdir -p $(RUN_DIR) && date +%s > $(RUN_DIR)/envoy.started

compose-down: ## Docker users: stop docker-compose.yaml
	docker compose down
	@rm -f $(RUN_DIR)/envoy.started

proto: install ## regenerate shared/proto from the protos in @grpc/grpc-js-xds
	npm run proto:generate

proto-check: install ## fail if the committed generated code differs from a fresh generation
	npm run proto:check

clean: ## remove build output (not .tools, not .run)
	npm run clean
