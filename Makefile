# pgscribe: `make run` starts the proxy in front of 127.0.0.1:5432; `make test` runs every test.
SHELL := /bin/bash
NODE ?= node
# Extra flags for `make run`, e.g. make run ARGS='--log-format json'
ARGS ?=
# Test files to run (default: all); e.g. make test TESTS=build/test/framer.test.js
TESTS ?= build/test/*.test.js

.PHONY: all install build test run clean

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

install: node_modules/.package-lock.json

build: install
	npx tsc -p tsconfig.json
	chmod +x dist/main.js

test: build
	rm -rf build
	npx tsc -p tsconfig.test.json
	npx tap --disable-coverage --timeout=300 --jobs=2 $(TESTS)

run: build
	$(NODE) dist/main.js $(ARGS)

clean:
	rm -rf dist build .tap
