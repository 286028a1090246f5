package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestServeSurvivesHostileScripts runs keyhook serve under an address
// space limit (prlimit --as, as a container's memory limit would) and
// dry-runs scripts that allocate gigabytes or loop inside built-ins: each
// fails as memory or timeout, the server lives and keeps answering other
// clients, and after a timeout its CPU (worker processes included)
// returns to idle within a second.
func TestServeSurvivesHostileScripts(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit not installed")
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	const secret = "hostile-test-admin-secret"
	cmd := exec.Command(prlimit, "--as="+strconv.Itoa(4<<30), binary, "serve", "--addr", addr,
		"--bootstrap-admin-secret", secret, "--script-workers", "2")
	s := startCommand(t, cmd, dir, addr, nil)
	defer s.stop(t)

	_, tok := token(t, addr, "keyhook-admin", secret)
	admin, _ := tok["access_token"].(string)
	call := func(method, path string, body any) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, "http://"+addr+"/admin/v1"+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v (did the server die?)", method, path, err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	// A bystander: a client with a script, whose tokens must keep
	// introspecting with its edits.
	if st, m := call(http.MethodPost, "/scripts", map[string]any{"name": "polite", "type": "introspection",
		"source": "function modifyResponse(r) { r.polite = true; return true }"}); st != 201 {
		t.Fatalf("create script: %d %v", st, m)
	}
	if st, m := call(http.MethodPost, "/clients", map[string]any{"client_id": "bystander", "client_secret": "bystander-secret",
		"introspection_scripts": []string{"polite"}}); st != 201 {
		t.Fatalf("create client: %d %v", st, m)
	}
	_, bt := token(t, addr, "bystander", "bystander-secret")
	bystander, _ := bt["access_token"].(string)
	bystanderOK := func() {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/oauth2/introspect", strings.NewReader(url.Values{"token": {bystander}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("keyhook-admin", secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("introspection after the attack: %v (did the server die?)", err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		if m["active"] != true || m["polite"] != true {
			t.Fatalf("bystander's introspection after the attack: %d %v", resp.StatusCode, m)
		}
	}
	bystanderOK()

	for i, tc := range []struct {
		name, body string
		timeoutMS  int
		kinds      string
	}{
		{"repeat 2**28", `r.n = 'x'.repeat(2**28).length`, 5000, "memory"},
		{"doubling", `var s = 'xxxxxxxx'; for (;;) s += s`, 5000, "memory"},
		{"filled array", `r.n = new Array(5e7).fill(0).length`, 5000, "memory"},
		{"typed array of a GiB", `r.n = new Uint8Array(2**30).length`, 5000, "memory"},
		{"typed array of 3 GiB", `r.n = new Float64Array(3 * 2**27).length`, 5000, "memory"},
		{"millions of objects", `var a = []; for (var i = 0; i < 1e7; i++) a.push({i: i}); r.n = a.length`, 5000, "memory"},
		{"huge JSON.parse", `r.n = JSON.parse('[' + '{"a":1},'.repeat(4e6) + '1]').length`, 5000, "memory"},
		{"repeat 1e9", `r.n = 'x'.repeat(1e9).length`, 200, "timeout memory"},
		{"fill 2**25", `r.n = new Array(2**25).fill(0).length`, 200, "timeout memory"},
		{"backtracking regexp", `r.m = /^(a+)+\1$/.test('a'.repeat(40) + 'b')`, 200, "timeout"},
	} {
		name := fmt.Sprintf("hostile-%d", i)
		t.Run(tc.name, func(t *testing.T) {
			if st, m := call(http.MethodPost, "/scripts", map[string]any{"name": name, "type": "introspection", "timeout_ms": tc.timeoutMS,
				"source": "function modifyResponse(r) { " + tc.body + "; return true }"}); st != 201 {
				t.Fatalf("create script: %d %v", st, m)
			}
			start := time.Now()
			st, m := call(http.MethodPost, "/scripts/"+name+"/test", map[string]any{"args": []any{map[string]any{}}})
			took := time.Since(start)
			msg, _ := m["error"].(string)
			kind := ""
			for _, k := range strings.Fields(tc.kinds) {
				if strings.Contains(msg, ": "+k+" in ") {
					kind = k
				}
			}
			if st != 200 || kind == "" {
				t.Fatalf("dry run after %v: %d %v, want a %s failure", took, st, m, tc.kinds)
			}
			if s.cmd.ProcessState != nil {
				t.Fatal("the server exited")
			}
			bystanderOK()
			if kind == "timeout" {
				waitIdle(t, s.cmd.Process.Pid)
			}
		})
	}
}

// waitIdle checks that the server and its children use (almost) no CPU
// in a second, after at most a few seconds for replacement workers to
// start.
func waitIdle(t *testing.T, pid int) {
	t.Helper()
	var used time.Duration
	for range 5 {
		before := processTreeCPU(pid)
		time.Sleep(time.Second)
		if used = processTreeCPU(pid) - before; used < 200*time.Millisecond {
			return
		}
	}
	t.Fatalf("server and workers used %v of CPU in a second, long after the timeout", used)
}

// processTreeCPU is the CPU time used so far by pid and its children.
func processTreeCPU(pid int) time.Duration {
	pids := []string{strconv.Itoa(pid)}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		pids = append(pids, strings.Fields(string(b))...)
	}
	var total time.Duration
	for _, p := range pids {
		b, err := os.ReadFile("/proc/" + p + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * 10 * time.Millisecond
	}
	return total
}
