# keyhook — the two commands: `make run` and `make test`.
GO      ?= go
ADDR    ?= 127.0.0.1:8080
DB      ?= sqlite:keyhook.db
BENCH_PG ?= $(KEYHOOK_TEST_PG)

.PHONY: run build test vet bench clean

build:
	$(GO) build -o keyhook .

# Build and start the server on the embedded SQLite file, seeded with examples/.
run: build
	./keyhook serve --addr $(ADDR) --db $(DB) --seed examples/seed.yaml

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt needed"; exit 1; }

# Everything CI runs.
test: vet
	$(GO) test -race -count=1 -timeout 10m ./...

# Go benchmarks and an HTTP load run; prints a table.
bench:
	$(GO) run ./examples/bench

clean:
	rm -f keyhook keyhook.db keyhook.db-wal keyhook.db-shm
