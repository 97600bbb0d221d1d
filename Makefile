# pgscribe: `make run` starts the proxy in front of 127.0.0.1:5432; `make test` runs every test.
SHELL := /bin/bash
NODE ?= node
# Extra flags for `make run`, e.g. make run ARGS='--log-format json'
ARGS ?=
# Test files to run (default: every tier: unit, e2e, regress; see test/README.md);
# e.g. make test TESTS=build/test/unit/framer.test.js
TESTS ?= build/test/unit/*.test.js build/test/e2e/*.test.js build/test/regress/*.test.js

.PHONY: all install build compile test test-unit run clean bench bench-replay replay-demo bench-log bench-cache stress dashboard-shot safety-check fuzz fuzz-admin fuzz-upstream fuzz-redis

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

# tap is configured (package.json "tap") without its TypeScript and mock plugins: the tests run
# compiled (build/) and mock nothing, and the two import hooks cost every test process about
# 1.7 s of CPU. tap rebuilds its Test class when the configured plugins differ from the built
# ones, but a rebuild at the start of a run still starts that run's test files with the old
# hooks: so it is built here, after every install (npm ci, in CI, installs the default build).
node_modules/.tap-built: node_modules/.package-lock.json
	npx tap build
	touch $@

install: node_modules/.package-lock.json node_modules/.tap-built

# tsc copies no .html: the admin dashboard page goes next to its compiled module by hand.
# dist/ starts empty: a module that moved (src/config.ts -> src/config/) must not leave its old
# compiled file behind, where require('./config') would still find it first.
build: install
	rm -rf dist
	npx tsc -p tsconfig.json
	chmod +x dist/main.js
	mkdir -p dist/admin && cp src/admin/dashboard.html dist/admin/dashboard.html

# Tests and benchmarks are compiled together (src, test, bench) into build/.
compile: build
	rm -rf build
	npx tsc -p tsconfig.test.json
	mkdir -p build/src/admin && cp src/admin/dashboard.html build/src/admin/dashboard.html

# A test file may take 600 s: issue 14's scenario files run every scenario straight and through
# pgscribe in four modes, and next to another heavy file on 2 cores one took over 300 s.
# The TAP stream is kept in build/test-output.tap; on a failure the last lines printed name every
# failing test (file, subtest, assertion) with the first failure's diagnostics, because a CI log is
# often read from its tail only.
test: compile
	@set -o pipefail; npx tap --disable-coverage --timeout=600 --jobs=2 $(TESTS) 2>&1 | tee build/test-output.tap; \
	status=$$?; \
	if [ $$status -ne 0 ]; then \
	  echo "== make test failed (exit $$status); the first failure's diagnostics:"; \
	  grep -m1 -A24 '^ *not ok' build/test-output.tap | sed -n '1,25p'; \
	  echo "== every failing test and assertion (line numbers in build/test-output.tap):"; \
	  grep -n '^ *not ok' build/test-output.tap | cut -c1-200 | head -n 40; \
	fi; \
	exit $$status

# The unit tier alone: no PostgreSQL, no proxy process; seconds, not minutes.
test-unit: compile
	npx tap --disable-coverage --timeout=300 --jobs=2 build/test/unit/*.test.js

# Throughput/latency/CPU through pgscribe vs direct vs a bare Node relay vs pgbouncer.
# Knobs: DURATION (s per run), CLIENTS, REPEATS, WORKLOADS, TARGETS (see bench/run.ts).
# Old build vs this one in the same run: BASELINE_MAIN=/path/to/other/dist/main.js runs every
# selected pgscribe-* target also as <target>@base with that build (same flags, interleaved in
# each repeat) and adds "tps vs @base" and "CPU vs @base" columns, e.g.
#   mkdir -p /tmp/base && cp -r dist package.json /tmp/base/   (before the change)
#   make bench BASELINE_MAIN=/tmp/base/dist/main.js TARGETS=direct,pgscribe-log   (after it)
bench: compile
	$(NODE) build/bench/run.js
	$(NODE) build/bench/replay.js

# pgscribe replay's rate (statements/s) and peak RSS on a synthetic 1 GiB --log-replay log
# (bench/replay.ts). Knobs: LOG_MB (default 1024), SESSIONS, SESSION_TX.
bench-replay: compile
	$(NODE) build/bench/replay.js

# The README's replay run and its report page's screenshot (bench/replay-demo.sh).
replay-demo: compile
	sh bench/replay-demo.sh

# File logger lines/s and MB/s vs fs.createWriteStream.
bench-log: compile
	$(NODE) build/bench/log-writer.js

# Cache layer round trips/s: in the event loop thread vs 1, 2, 4 worker threads (hit and
# lead+complete paths, 100 B and 64 KiB answers). Knobs: OPS, CONCURRENCY, REPEATS, WORKERS.
bench-cache: compile
	$(NODE) build/bench/cache-layer.js

# The README's dashboard screenshot, from a real pgbench run (headless chromium).
dashboard-shot: compile
	$(NODE) build/bench/dashboard-shot.js

# sysbench oltp_read_write + pgbench through pgscribe; DURATION in seconds (default 300).
stress: compile
	$(NODE) build/bench/stress.js

# Randomized checker: concurrent clients (roles, tenants, search paths, DO blocks, writes through
# views/partitions/triggers/cascades) through pgscribe --cache --singleflight --cache-ttl 60000;
# every answer judged against what PostgreSQL could have given; exit 1 on any violation.
# Knobs: DURATION (s, 300), CLIENTS (24), SEED, PGSCRIBE_ARGS, WORKERS (0|2), REDIS=1,
# BASELINE_MAIN (another build), NO_CATALOG=1 (no --catalog-user postgres), ELSEWHERE=1
# (see bench/safety-check.ts). Results: logs/safety-<time>.json.
safety-check: compile
	$(NODE) build/bench/safety-check.js

# The protocol fuzzer (bench/fuzz/): mutated startup packets, message pipelines and garbage cut at
# random offsets while valid sessions check their answers; exit 1 on a hang, a wrong answer, an
# exit or RSS past the bound. Knobs: DURATION (s, 600), SEED, CONCURRENCY (8), VALID (4),
# RSS_BOUND_MB (256), PGSCRIBE_ARGS, FUZZ_ONLY=<case seed> (replay one case). Results: logs/fuzz-protocol-<time>.json.
fuzz: compile
	$(NODE) build/bench/fuzz-protocol.js

# The admin HTTP server's fuzzer (bench/fuzz/admin-http.ts): malformed requests, slowloris, huge
# headers and bodies while /health is checked every 200 ms. Knobs: DURATION (600), SEED,
# CONCURRENCY (8), RSS_BOUND_MB (256). Results: logs/fuzz-admin-<time>.json.
fuzz-admin: compile
	$(NODE) build/bench/fuzz-admin.js

# The hostile-upstream fuzzer (bench/fuzz/upstream.ts): a fake upstream between pgscribe and
# PostgreSQL corrupts marked sessions (bad lengths, messages out of order, storms, oversized
# messages, cuts, stalls, closes), plays a hostile authentication phase or answers the SSLRequest
# with garbage, while valid sessions check their answers; exit 1 on a hang, a wrong answer, an exit,
# a stack trace or RSS past the bound. Knobs: DURATION (s, 600), SEED, CONCURRENCY (8), VALID (4),
# RSS_BOUND_MB (256), PGSCRIBE_ARGS, FUZZ_ONLY=<case seed> (replay one case). Results: logs/fuzz-upstream-<time>.json.
fuzz-upstream: compile
	$(NODE) build/bench/fuzz-upstream.js

# The hostile-Redis fuzzer (bench/fuzz/redis.ts): a man in the middle between pgscribe and a real
# redis-server flips bytes, lies about lengths, nests, speaks RESP3, stalls, reorders, drops and
# invents replies, resets, and swaps cache entries, while valid sessions judge every answer; exit 1
# on a wrong answer, a hang, a stack trace, an exit or RSS past the bound. Knobs: DURATION (s, 600),
# SEED, SESSIONS (6), RSS_BOUND_MB (256), PGSCRIBE_ARGS, FUZZ_ONLY=<case seed> (every connection
# gets that case's plan), FUZZ_KIND=<kind>. Results: logs/fuzz-redis-<time>.json.
fuzz-redis: compile
	$(NODE) build/bench/fuzz-redis.js

run: build
	$(NODE) dist/main.js $(ARGS)

clean:
	rm -rf dist build .tap
