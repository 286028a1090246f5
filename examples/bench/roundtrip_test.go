package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"
)

func TestMain(m *testing.M) {
	if os.Getenv(echoChildEnv) != "" {
		serveEchoChild() // this test binary, started as an echo child
		return
	}
	os.Exit(m.Run())
}

// TestRoundTripFloorAnswersThroughChildren: the floor's answer is the
// ceiling's, after a trip through child processes, for concurrent
// requests (answers must not cross between calls in flight).
func TestRoundTripFloorAnswersThroughChildren(t *testing.T) {
	children := startEchoChildren(2)
	e := echo.New()
	e.POST("/*", roundTripHandler(children))
	srv := httptest.NewServer(e)
	defer srv.Close()
	want, _ := json.Marshal(ceilingAnswer)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for range 16 {
		wg.Go(func() {
			for range 20 {
				resp, err := http.Post(srv.URL+"/introspect", "application/x-www-form-urlencoded", strings.NewReader("token=x"))
				if err != nil {
					errs <- err.Error()
					return
				}
				var got, exp map[string]any
				err = json.NewDecoder(resp.Body).Decode(&got)
				resp.Body.Close()
				_ = json.Unmarshal(want, &exp)
				if err != nil || resp.StatusCode != http.StatusOK || !reflect.DeepEqual(got, exp) {
					errs <- "bad answer"
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	var answered int64
	for _, c := range children {
		answered += c.answered.Load()
		if n := c.inFlight.Load(); n != 0 {
			t.Errorf("%d calls still in flight", n)
		}
	}
	if answered != 16*20 {
		t.Fatalf("the children answered %d calls, want %d", answered, 16*20)
	}
}
