package hooks

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestLogRingBounded(t *testing.T) {
	for _, tc := range []struct {
		name             string
		perScript, total int
		scripts, lines   int
		wantLen          int
		wantLatest       uint64 // Seq of the latest line of script s0
	}{
		{"one script, defaults", 0, 0, 1, 5000, DefaultLogLinesPerScript, 5000},
		{"many scripts under the total", 100, 1000, 50, 5000, 1000, 4951},
		{"per script bound", 10, 1000, 5, 5000, 50, 4996},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewLogRing(tc.perScript, tc.total)
			for i := range tc.lines {
				r.Add(LogLine{Script: fmt.Sprintf("s%d", i%tc.scripts), Line: "x", Time: time.Unix(int64(i), 0)})
			}
			if got := r.Len(); got != tc.wantLen {
				t.Errorf("Len = %d, want %d", got, tc.wantLen)
			}
			lines := r.Lines("s0", 0, time.Time{}, 0)
			if len(lines) == 0 || lines[len(lines)-1].Seq != tc.wantLatest {
				t.Fatalf("s0's lines end with %v, want seq %d", lines[len(lines)-1:], tc.wantLatest)
			}
			for i := 1; i < len(lines); i++ {
				if lines[i].Seq <= lines[i-1].Seq {
					t.Fatalf("lines out of order: %d after %d", lines[i].Seq, lines[i-1].Seq)
				}
			}
		})
	}
}

func TestLogRingQueries(t *testing.T) {
	r := NewLogRing(0, 0)
	for i := range 10 {
		r.Add(LogLine{Script: "a", Line: fmt.Sprint(i), Time: time.Unix(int64(100+i), 0)})
	}
	for _, tc := range []struct {
		name     string
		afterSeq uint64
		since    time.Time
		limit    int
		want     []string
	}{
		{"all", 0, time.Time{}, 0, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}},
		{"limit keeps the latest", 0, time.Time{}, 3, []string{"7", "8", "9"}},
		{"after a sequence number", 8, time.Time{}, 0, []string{"8", "9"}},
		{"after a time", 0, time.Unix(107, 0), 0, []string{"8", "9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := r.Lines("a", tc.afterSeq, tc.since, tc.limit)
			var lines []string
			for _, l := range got {
				lines = append(lines, l.Line)
			}
			if fmt.Sprint(lines) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", lines, tc.want)
			}
		})
	}
}

// TestLogRingSlowFollower checks that a follower that does not read never
// blocks Add: its lines are dropped and counted.
func TestLogRingSlowFollower(t *testing.T) {
	r := NewLogRing(0, 0)
	f, _ := r.Follow("a")
	defer f.Stop()
	other, _ := r.Follow("b")
	defer other.Stop()
	done := make(chan struct{})
	go func() {
		for range 1000 {
			r.Add(LogLine{Script: "a", Line: "x"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Add blocked on a follower that does not read")
	}
	if got := f.Dropped(); got != 1000-logFollowBuffer {
		t.Errorf("Dropped = %d, want %d", got, 1000-logFollowBuffer)
	}
	if got := len(f.Lines()); got != logFollowBuffer {
		t.Errorf("%d lines waiting, want %d", got, logFollowBuffer)
	}
	if len(other.Lines()) != 0 || other.Dropped() != 0 {
		t.Error("a follower of another script got lines")
	}
}

// TestLogRingFollowers: an instance serves at most MaxLogFollowers
// followers, and a stopped (once, however often Stop is called) or
// forgotten one frees its place.
func TestLogRingFollowers(t *testing.T) {
	for _, tc := range []struct {
		name string
		// free runs once MaxLogFollowers followers (all of "a" but the
		// last, of "b") follow; more is how many more may then.
		free func(r *LogRing, fs []*LogFollower)
		more int
	}{
		{"all places taken", func(*LogRing, []*LogFollower) {}, 0},
		{"one stops", func(_ *LogRing, fs []*LogFollower) { fs[0].Stop() }, 1},
		{"one stops twice", func(_ *LogRing, fs []*LogFollower) { fs[0].Stop(); fs[0].Stop() }, 1},
		{"the script is forgotten", func(r *LogRing, _ []*LogFollower) { r.Forget("b") }, 1},
		{"a forgotten follower stops", func(r *LogRing, fs []*LogFollower) { r.Forget("b"); fs[len(fs)-1].Stop() }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewLogRing(0, 0)
			fs := make([]*LogFollower, MaxLogFollowers)
			for i := range fs {
				script := "a"
				if i == len(fs)-1 {
					script = "b"
				}
				f, err := r.Follow(script)
				if err != nil {
					t.Fatalf("follower %d: %v", i, err)
				}
				fs[i] = f
			}
			tc.free(r, fs)
			more := 0
			for ; more <= MaxLogFollowers; more++ {
				if _, err := r.Follow("a"); err != nil {
					if !errors.Is(err, ErrTooManyFollowers) {
						t.Fatal(err)
					}
					break
				}
			}
			if more != tc.more {
				t.Fatalf("%d more followers allowed, want %d", more, tc.more)
			}
		})
	}
}

// TestLogRingForgetEndsFollowers: the followers of a forgotten script see
// their Lines closed; those of another script go on.
func TestLogRingForgetEndsFollowers(t *testing.T) {
	r := NewLogRing(0, 0)
	gone, _ := r.Follow("gone")
	defer gone.Stop()
	kept, _ := r.Follow("kept")
	defer kept.Stop()
	r.Forget("gone")
	if _, ok := <-gone.Lines(); ok {
		t.Fatal("the follower of a forgotten script got a line, want its Lines closed")
	}
	r.Add(LogLine{Script: "gone", Line: "x"}, LogLine{Script: "kept", Line: "y"})
	if l := <-kept.Lines(); l.Line != "y" {
		t.Fatalf("the other follower got %+v", l)
	}
}
