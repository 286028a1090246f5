# keyhook — the two commands: `make run` and `make test`.
GO      ?= go
# make run ADDR=host:port, or KEYHOOK_ADDR / KEYHOOK_DB in the environment.
ADDR    ?= $(or $(KEYHOOK_ADDR),127.0.0.1:8080)
DB      ?= $(or $(KEYHOOK_DB),sqlite:keyhook.db)
BENCH_PG ?= $(KEYHOOK_TEST_PG)

.PHONY: run build test vet bench clean fuzz soak script-test

build:
	$(GO) build -o keyhook .

# Build and start the server on the embedded SQLite file, seeded with
# examples/ when the database is new (a restart keeps what admins changed).
run: build
	./keyhook serve --addr '$(ADDR)' --db '$(DB)' --seed examples/seed.yaml

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt needed"; exit 1; }

# The PostgreSQL tests use KEYHOOK_TEST_PG. When it is not set (set it
# empty to leave PostgreSQL out), make test uses the local server if
# pg_isready finds one on 127.0.0.1:5432.
LOCAL_PG ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
TEST_PG = $(if $(filter undefined,$(origin KEYHOOK_TEST_PG)),$(shell pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && echo '$(LOCAL_PG)'),$(KEYHOOK_TEST_PG))

# Everything CI runs: the fuzz runs and the soak first, then the tests
# through gotestsum (go tool gotestsum, pinned in go.mod), which prints a
# line per package and ends with every skipped test and the reason it
# gave (no PostgreSQL, no Chromium, no node…), so nothing is skipped
# silently.
test: vet
	$(MAKE) fuzz
	$(GO) run ./examples/soak -duration 15s -sample 5s -max-rss-growth 10
	@echo 'make test: KEYHOOK_TEST_PG=$(or $(TEST_PG),(none: the PostgreSQL tests skip))'
	KEYHOOK_TEST_PG='$(TEST_PG)' $(GO) tool gotestsum --format pkgname -- \
		-race -count=1 -timeout 10m ./...

# Each example script on its fixtures, with no server (keyhook script
# test; docs/scripts.md, "Testing scripts offline"). make test runs them
# too, as TestExampleScriptFixtures.
script-test: build
	@set -e; for f in examples/scripts/*.js; do ./keyhook script test "$$f"; done

# The fuzz targets of scripts/, web/ and engine/ (the script boundary, form
# and Basic parsing, the JSON answer encoder, client assertions, JWT access
# tokens), each for a number of executions of about 5 to 10 s here (-fuzz
# takes one target per run); their seeds also run with the tests above.
# Counts, not -fuzztime durations: Go 1.26's fuzzer can report "context
# deadline exceeded" as a failure when a duration ends while a worker is
# mid-input (golang/go#75804, fixed in Go 1.27); a count has no deadline.
fuzz:
	$(GO) test ./scripts -run '^$$' -fuzz '^FuzzExport$$' -fuzztime 10000x
	$(GO) test ./scripts -run '^$$' -fuzz '^FuzzArgumentView$$' -fuzztime 30000x
	$(GO) test ./web -run '^$$' -fuzz '^FuzzTokenForm$$' -fuzztime 8000x
	$(GO) test ./web -run '^$$' -fuzz '^FuzzBasicHeader$$' -fuzztime 6000x
	$(GO) test ./web -run '^$$' -fuzz '^FuzzAppendJSONString$$' -fuzztime 15000x
	$(GO) test ./engine -run '^$$' -fuzz '^FuzzClientAssertion$$' -fuzztime 30000x
	$(GO) test ./engine -run '^$$' -fuzz '^FuzzJWTAccessToken$$' -fuzztime 20000x

# 10 minutes of mixed load against keyhook serve, with a hostile script on
# one client: fails on a 5xx, growing memory or goroutines, or a token that
# does not introspect as expected at the end (docs/security.md).
# make test runs it for 15 s, with the memory check off.
soak:
	$(GO) run ./examples/soak -duration 10m

# Go benchmarks and an HTTP load run; prints a table.
bench:
	$(GO) run ./examples/bench

clean:
	rm -f keyhook keyhook.db keyhook.db-wal keyhook.db-shm keyhook.db-keyhook-tokens
