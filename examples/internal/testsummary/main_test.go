package main

import (
	"strings"
	"testing"
)

// stream is go test -json output of two packages: passes whose logs a
// plain go test hides, a skip with its reason, many skipped subtests, a
// failure with its logs, and a package that does not build.
const stream = `{"Action":"start","Package":"example.com/m/web"}
{"Action":"run","Package":"example.com/m/web","Test":"TestOK"}
{"Action":"output","Package":"example.com/m/web","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"example.com/m/web","Test":"TestOK","Output":"    ok_test.go:9: chatter of a passing test\n"}
{"Action":"output","Package":"example.com/m/web","Test":"TestOK","Output":"--- PASS: TestOK (0.00s)\n"}
{"Action":"pass","Package":"example.com/m/web","Test":"TestOK"}
{"Action":"output","Package":"example.com/m/web","Test":"TestNode","Output":"=== RUN   TestNode\n"}
{"Action":"output","Package":"example.com/m/web","Test":"TestNode","Output":"    node_test.go:71: node is not installed\n"}
{"Action":"output","Package":"example.com/m/web","Test":"TestNode","Output":"--- SKIP: TestNode (0.00s)\n"}
{"Action":"skip","Package":"example.com/m/web","Test":"TestNode"}
{"Action":"output","Package":"example.com/m/web","Test":"TestBad","Output":"=== RUN   TestBad\n"}
{"Action":"output","Package":"example.com/m/web","Test":"TestBad","Output":"    bad_test.go:3: got 500\n"}
{"Action":"output","Package":"example.com/m/web","Test":"TestBad","Output":"--- FAIL: TestBad (0.01s)\n"}
{"Action":"fail","Package":"example.com/m/web","Test":"TestBad"}
{"Action":"output","Package":"example.com/m/web","Output":"FAIL\n"}
{"Action":"output","Package":"example.com/m/web","Output":"FAIL\texample.com/m/web\t0.5s\n"}
{"Action":"fail","Package":"example.com/m/web"}
{"Action":"output","Package":"example.com/m/scripts","Test":"FuzzX/seed#1","Output":"    fuzz_test.go:5: known defect 7\n"}
{"Action":"skip","Package":"example.com/m/scripts","Test":"FuzzX/seed#1"}
{"Action":"skip","Package":"example.com/m/scripts","Test":"FuzzX/seed#2"}
{"Action":"skip","Package":"example.com/m/scripts","Test":"FuzzX/seed#3"}
{"Action":"skip","Package":"example.com/m/scripts","Test":"FuzzX/seed#4"}
{"Action":"pass","Package":"example.com/m/scripts","Test":"FuzzX"}
{"Action":"output","Package":"example.com/m/scripts","Output":"PASS\n"}
{"Action":"output","Package":"example.com/m/scripts","Output":"ok  \texample.com/m/scripts\t1.0s\n"}
{"Action":"pass","Package":"example.com/m/scripts"}
{"ImportPath":"example.com/m/broken","Action":"build-output","Output":"broken/x.go:1:1: syntax error\n"}
{"ImportPath":"example.com/m/broken","Action":"build-fail"}
not json: panic output
`

func TestSummary(t *testing.T) {
	var out, rep strings.Builder
	s := newSummary(&out, "example.com/m")
	if err := s.read(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	s.report(&rep)
	wantOut := "    bad_test.go:3: got 500\n--- FAIL: TestBad (0.01s)\nFAIL\nFAIL\texample.com/m/web\t0.5s\n" +
		"ok  \texample.com/m/scripts\t1.0s\nbroken/x.go:1:1: syntax error\nnot json: panic output\n"
	if out.String() != wantOut {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), wantOut)
	}
	wantRep := "SKIPPED: ./scripts FuzzX: 4 subtests (first: FuzzX/seed#1: known defect 7)\n" +
		"SKIPPED: ./web TestNode (node is not installed)\n" +
		"FAILED: ./web TestBad\n" +
		"FAILED: ./broken (build failed)\n"
	if rep.String() != wantRep {
		t.Errorf("report:\n%s\nwant:\n%s", rep.String(), wantRep)
	}
	if !s.fail {
		t.Error("a failure was not noticed")
	}
}

func TestSummaryNothingSkipped(t *testing.T) {
	var out, rep strings.Builder
	s := newSummary(&out, "example.com/m")
	_ = s.read(strings.NewReader(`{"Action":"pass","Package":"example.com/m","Test":"TestA"}` + "\n"))
	s.report(&rep)
	if rep.String() != "SKIPPED: nothing\n" || s.fail {
		t.Errorf("report %q fail %v", rep.String(), s.fail)
	}
}
