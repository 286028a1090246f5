// Command bench is `make bench`: Go benchmarks of the hot paths (issuance,
// introspection, one hook call, signing alone) and an HTTP load run of
// the same cases against a real `keyhook serve` on SQLite (and on
// PostgreSQL when KEYHOOK_TEST_PG is set), beside a bare echo server
// answering the same 12-field JSON, started in the same run. Every HTTP
// case is printed as a ratio to that ceiling: absolute figures drift on
// shared machines, ratios measured side by side much less (README
// "Performance").
//
// The load comes from wrk when it is on PATH, else from a Go load
// generator in this program; the ceiling is measured with the same one.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

var (
	loadFor = flag.Duration("load", 2*time.Second, "length of each HTTP load run")
	conns   = flag.Int("conns", 64, "concurrent HTTP connections")
	rounds  = flag.Int("rounds", 5, "interleaved HTTP load rounds; each case reports its median")
	bin     = flag.String("bin", "", "keyhook binary to load (default: build this checkout)")
	noGo    = flag.Bool("no-go", false, "skip the Go benchmarks")
	noHTTP  = flag.Bool("no-http", false, "skip the HTTP load runs")
	noWrk   = flag.Bool("no-wrk", false, "use the Go load generator even when wrk is installed")
	only    = flag.String("only", "", "run only the HTTP cases whose name contains this")
	stores  = flag.String("stores", "sqlite,postgres", "stores of the HTTP load runs (postgres needs KEYHOOK_TEST_PG)")
	verbose = flag.Bool("v", false, "print every HTTP load run to stderr")
	workDir = flag.String("keep", "", "keep the servers' files in this directory")
)

// row is one line of the table: a Go benchmark or an HTTP case.
type row struct {
	name, store string
	// Go benchmarks
	nsPerOp, bytes, allocs string
	// HTTP load
	rps, p50, p99, ratio, target, rss string
}

func main() {
	flag.Parse()
	if os.Getenv(echoChildEnv) != "" {
		serveEchoChild()
		return
	}
	if addr := os.Getenv(ceilingEnv); addr != "" {
		if n, _ := strconv.Atoi(os.Getenv(roundTripEnv)); n > 0 {
			serveRoundTrip(addr, n)
			return
		}
		serveCeiling(addr)
		return
	}
	ctx := context.Background()
	dir := *workDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "keyhook-bench"); err != nil {
			fail(err)
		}
		defer os.RemoveAll(dir)
	}
	start := time.Now()
	var all []row
	var notes []string
	if !*noGo {
		r, n, err := goRows(ctx, dir)
		if err != nil {
			fail(err)
		}
		all, notes = append(all, r...), append(notes, n...)
	}
	if !*noHTTP {
		exe := *bin
		if exe == "" {
			exe = filepath.Join(dir, "keyhook")
			if out, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput(); err != nil {
				fail(fmt.Errorf("go build: %v\n%s", err, out))
			}
		}
		for _, store := range strings.Split(*stores, ",") {
			var dsn string
			var drop func()
			switch store {
			case "sqlite":
				dsn = "sqlite:" + filepath.Join(dir, "bench.db")
			case "postgres":
				base := os.Getenv("KEYHOOK_TEST_PG")
				if base == "" {
					notes = append(notes, "postgres: skipped (KEYHOOK_TEST_PG is not set)")
					continue
				}
				var err error
				if dsn, drop, err = newPGDatabase(ctx, base); err != nil {
					fail(err)
				}
			default:
				fail(fmt.Errorf("unknown store %q", store))
			}
			r, n, err := httpRows(ctx, exe, store, dsn, dir)
			if drop != nil {
				drop()
			}
			if err != nil {
				fail(fmt.Errorf("%s: %w", store, err))
			}
			all, notes = append(all, r...), append(notes, n...)
		}
	}
	gen := "the Go load generator"
	if useWrk() {
		gen = "wrk"
	}
	fmt.Printf("keyhook bench, %s, %d cores (GOMAXPROCS %d), %s; HTTP: %s, %d connections, %d rounds of %v per case; %v in all\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), gen, *conns, *rounds, *loadFor,
		time.Since(start).Round(time.Second))
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "case\tstore\tns/op\tB/op\tallocs/op\treq/s\tp50\tp99\tratio to ceiling\ttarget\tpeak RSS\t")
	for _, r := range all {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.name, r.store, r.nsPerOp, r.bytes, r.allocs,
			r.rps, r.p50, r.p99, r.ratio, r.target, r.rss)
	}
	w.Flush()
	if len(notes) > 0 {
		fmt.Println()
		for _, n := range notes {
			fmt.Println("- " + n)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// median of xs (which it sorts).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	return xs[len(xs)/2]
}
