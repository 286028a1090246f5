package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// memUsers is a UserStore of a map; the methods a test does not need
// panic through the nil embedded interface.
type memUsers struct {
	UserStore
	mu sync.Mutex
	m  map[string]*User
}

func (s *memUsers) UserByName(_ context.Context, name string) (*User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.m[name]; ok {
		return u, nil
	}
	return nil, ErrNotFound
}

func (s *memUsers) CreateUser(_ context.Context, u *User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[u.Username] = u
	return nil
}

// testClock is a clock only the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func limitsEngine(users *memUsers, clk *testClock, hashMB int) *Engine {
	return &Engine{
		st: Stores{Users: users}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: clk.now,
		hashes: newHashBudget(hashMB, 20*time.Millisecond),
		logins: newGuard(Throttle{}, clk.now), clientAuths: newGuard(Throttle{}, clk.now),
	}
}

// TestPasswordHashBudget holds the whole hashing budget and checks that
// every sign-in then waits and is refused as temporarily_unavailable with
// a Retry-After: the known and the unknown user, a user without a password
// and a disabled one all do the same hashing work (so take the same time),
// and setting a password is bounded too. Released, the answers are the
// usual ones.
func TestPasswordHashBudget(t *testing.T) {
	clk := &testClock{t: time.Unix(1_800_000_000, 0)}
	users := &memUsers{m: map[string]*User{
		"alice":    {Username: "alice", PasswordHash: HashPassword("alice-pw")},
		"nopass":   {Username: "nopass"},
		"disabled": {Username: "disabled", PasswordHash: HashPassword("d-pw"), Disabled: true},
	}}
	e := limitsEngine(users, clk, 19) // room for exactly one hash
	ctx := context.Background()
	cases := []struct {
		user, pass string
		ok         bool
	}{
		{"alice", "alice-pw", true}, {"alice", "wrong", false}, {"mallory", "x", false},
		{"nopass", "", false}, {"disabled", "d-pw", false},
	}
	if !e.hashes.sem.TryAcquire(e.hashes.size) {
		t.Fatal("budget not free")
	}
	for _, tc := range cases {
		t.Run("held/"+tc.user+"/"+tc.pass, func(t *testing.T) {
			_, err := e.authenticateUser(ctx, methodPassword, tc.user, tc.pass)
			var oe *Error
			if !errors.As(err, &oe) || oe.Code != CodeTemporarilyUnavailable || oe.RetryAfter <= 0 {
				t.Fatalf("err = %v, want temporarily_unavailable with RetryAfter", err)
			}
		})
	}
	t.Run("held/create user", func(t *testing.T) {
		if _, err := e.CreateUser(ctx, &UserDoc{Username: "bob", Password: "bob-pw"}); !errors.Is(err, CodeTemporarilyUnavailable) {
			t.Fatalf("err = %v", err)
		}
	})
	e.hashes.sem.Release(e.hashes.size)
	for _, tc := range cases {
		t.Run("free/"+tc.user+"/"+tc.pass, func(t *testing.T) {
			u, err := e.authenticateUser(ctx, methodPassword, tc.user, tc.pass)
			if tc.ok && (err != nil || u.Username != tc.user) || !tc.ok && !errors.Is(err, CodeInvalidGrant) {
				t.Fatalf("u = %v, err = %v", u, err)
			}
		})
	}
	// A budget below one hash still admits one at a time.
	if b := newHashBudget(1, time.Millisecond); b.size != argonMemory {
		t.Fatalf("size %d", b.size)
	}
	// Hashes beyond the budget queue, they never run beside each other.
	var mu sync.Mutex
	running, most := 0, 0
	var wg sync.WaitGroup
	b := newHashBudget(2*argonMemory/1024, 10*time.Second)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := b.acquire(ctx, argonMemory)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			running++
			most = max(most, running)
			mu.Unlock()
			VerifyPassword(dummyPasswordHash, "x")
			mu.Lock()
			running--
			mu.Unlock()
			release()
		}()
	}
	wg.Wait()
	if most > 2 {
		t.Fatalf("%d hashes at once in a budget of 2", most)
	}
}

// TestThrottle checks the back-off schedule, forgiveness, one-at-a-time
// admission past the free failures and the memory bound.
func TestThrottle(t *testing.T) {
	clk := &testClock{t: time.Unix(1_800_000_000, 0)}
	th := newThrottle(2, true, 4*time.Second, 100, clk.now)
	fail := func() {
		t.Helper()
		f, wait := th.admit("k")
		if wait > 0 {
			t.Fatalf("refused, wait %v", wait)
		}
		th.end(f, true, false)
	}
	waitOf := func() time.Duration {
		f, w := th.admit("k")
		th.end(f, false, false)
		return w
	}
	t.Run("honest attempts at once are never held back", func(t *testing.T) {
		for _, serial := range []bool{true, false} {
			th := newThrottle(2, serial, 4*time.Second, 100, clk.now)
			var admitted []*failures
			for range 50 {
				f, w := th.admit("busy")
				if w != 0 {
					t.Fatalf("serial %v: attempt %d refused, wait %v", serial, len(admitted), w)
				}
				admitted = append(admitted, f)
			}
			for _, f := range admitted {
				th.end(f, false, true)
			}
		}
	})
	fail()
	fail()
	if w := waitOf(); w != 0 {
		t.Fatal("locked within the free failures")
	}
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		t.Run(fmt.Sprint("back-off ", want), func(t *testing.T) {
			fail()
			if w := waitOf(); w != want {
				t.Fatalf("wait %v, want %v", w, want)
			}
			clk.advance(want / 2)
			if w := waitOf(); w != want/2 {
				t.Fatalf("halfway: wait %v", w)
			}
			clk.advance(want / 2)
		})
	}
	t.Run("one at a time past the free failures", func(t *testing.T) {
		f1, w1 := th.admit("k")
		_, w2 := th.admit("k")
		if w1 != 0 || w2 != throttleBusyRetry {
			t.Fatalf("waits %v %v", w1, w2)
		}
		th.end(f1, false, true) // a success forgives
		a, _ := th.admit("k")
		b, _ := th.admit("k")
		if a == nil || b == nil {
			t.Fatal("a forgiven key is still limited")
		}
		th.end(a, false, false)
		th.end(b, false, false)
	})
	t.Run("failures are forgotten after a quiet while", func(t *testing.T) {
		fail()
		fail()
		fail()
		clk.advance(throttleForget + time.Second)
		if w := waitOf(); w != 0 {
			t.Fatalf("wait %v", w)
		}
	})
	t.Run("memory is bounded", func(t *testing.T) {
		for i := 0; i < 10_000; i++ {
			f, _ := th.admit(fmt.Sprintf("rotating-%d", i))
			th.end(f, true, false)
		}
		if n := th.keys.Len(); n > 100 {
			t.Fatalf("%d keys remembered", n)
		}
	})
	t.Run("addresses", func(t *testing.T) {
		for in, want := range map[string]string{
			"192.0.2.1": "192.0.2.1", "::ffff:192.0.2.1": "192.0.2.1", "2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
			"fe80::1%eth0": "fe80::/64", "": "", "not-an-ip": "not-an-ip",
		} {
			if got := addressKey(in); got != want {
				t.Errorf("addressKey(%q) = %q, want %q", in, got, want)
			}
		}
	})
}
