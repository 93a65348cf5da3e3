# The loops people run. CI runs .ci/run, which covers all of these.
PG_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: run fmt lint peers test test-pg conformance openapi console ci

run:
	cargo run --release -- serve

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

# Real MCP peers the integration tests start (server-everything, from npm).
peers:
	npm ci --prefix tests/peers --no-audit --no-fund --loglevel=error

test: peers
	cargo test --workspace

test-pg: peers
	TEST_DATABASE_URL=$(PG_URL) cargo test --test api

# The official MCP conformance suite, through the proxy, against the rmcp fixture.
conformance:
	bash .ci/conformance

# Regenerate the committed OpenAPI document after changing the API, and the console's types.
openapi:
	UPDATE_OPENAPI=1 cargo test --test api openapi
	npm ci --prefix web --no-audit --no-fund --loglevel=error
	npm run --prefix web -s types

# The console: tsc over its modules, then both journeys in chromium (screenshots in
# target/screenshots).
console:
	npm ci --prefix web --no-audit --no-fund --loglevel=error
	npm run --prefix web -s check
	bash .ci/console

ci:
	bash .ci/run
