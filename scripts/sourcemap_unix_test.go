//go:build unix

package scripts

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// TestSourceMapsNotRead proves that a sourceMappingURL comment does not
// make goja read a local file, neither when compiling a script nor when a
// script compiles code with the Function constructor: the comment names a
// FIFO without a writer, so any attempt to read it would hang. (goja's
// default parser would read it: a script could make the server read any
// file, or hang on a FIFO or /dev/stdin.)
func TestSourceMapsNotRead(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "map.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// A file: URL is used as is; a plain path would be resolved relative
	// to the script's name (and so to the working directory).
	url := "file://" + fifo
	for name, src := range map[string]string{
		"script":   "function f(url) { return 5 }\n//# sourceMappingURL=" + url,
		"Function": "function f(url) { return Function('return 5\\n//# sourceMappingURL=' + url)() }",
	} {
		t.Run(name, func(t *testing.T) {
			e := newEngine(Options{})
			done := make(chan error, 1)
			go func() {
				if err := e.Check("t", src); err != nil {
					done <- err
					return
				}
				res, err := e.Call(context.Background(), js(src), &hooks.Call{Function: "f", Args: []any{url}})
				if err == nil && res.Return != int64(5) {
					t.Errorf("Return = %v", res.Return)
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the source map file was read")
			}
		})
	}
}
