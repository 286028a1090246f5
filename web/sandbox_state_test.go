package web_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestScriptStateIsBounded creates, calls and deletes 2,000 scripts
// (10,000 with KEYHOOK_TEST_LONG=1) through the admin API: afterwards
// the /metrics series of scripts are those of the scripts that exist,
// and the heap has not grown with the number of scripts that came and
// went (compiled programs, runtimes, breaker state and metric children
// are all dropped). Each round makes a fresh runtime (about 15 ms of
// CPU), which is what bounds n in CI.
func TestScriptStateIsBounded(t *testing.T) {
	n := 2000
	if os.Getenv("KEYHOOK_TEST_LONG") != "" {
		n = 10000
	}
	// The database is on a memory file system when there is one: this
	// test is about the scripts' state, and 30,000 durable admin writes
	// on a disk would take minutes.
	var opts []harnessOpt
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "keyhook-test")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		opts = append(opts, withDSN("sqlite:"+filepath.Join(dir, "keyhook.db")))
	}
	h := newHarness(t, opts...)
	round := func(i int) {
		name := fmt.Sprintf("churn-%d", i)
		// timeout_ms 5000: the dry run's answer is what is checked, not
		// its deadline, which a loaded machine can miss at 100 ms.
		h.createScript(map[string]any{"name": name, "type": "introspection", "isolation": "inline", "timeout_ms": 5000,
			"source": fmt.Sprintf("function modifyResponse(r) { r.n = %d; return true }", i)})
		r := h.admin(http.MethodPost, "/scripts/"+name+"/test", map[string]any{"args": []any{map[string]any{}}})
		if r.status != http.StatusOK || r.json["result"] != true {
			t.Fatalf("dry run of %s: %d %s", name, r.status, r.body)
		}
		if r := h.admin(http.MethodDelete, "/scripts/"+name, nil); r.status != http.StatusNoContent {
			t.Fatalf("delete %s: %d %s", name, r.status, r.body)
		}
	}
	scriptSeries := func() int {
		sc := bufio.NewScanner(bytes.NewReader(h.metrics()))
		sc.Buffer(nil, 1<<20)
		count := 0
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "keyhook_script_") && strings.Contains(line, `script="churn-`) {
				count++
			}
		}
		return count
	}
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for i := range 200 { // warm up: pools, caches and buffers at their working size
		round(i)
	}
	before := heap()
	for i := 200; i < n; i++ {
		round(i)
	}
	after := heap()
	if s := scriptSeries(); s != 0 {
		t.Errorf("%d metric series of deleted scripts remain", s)
	}
	t.Logf("heap %d KiB before, %d KiB after %d more scripts came and went", before>>10, after>>10, n-200)
	if after > before+16<<20 {
		t.Errorf("heap grew by %d KiB over %d scripts created, called and deleted", (after-before)>>10, n-200)
	}
}
