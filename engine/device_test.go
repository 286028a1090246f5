package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhook/keyhook/engine"
)

// faultyDevices is a device store whose calls can be made to fail, or
// to lose their race, one method at a time.
type faultyDevices struct {
	engine.DeviceStore
	conflicts  atomic.Int32 // CreateDeviceGrant answers ErrConflict this many more times
	pollFails  atomic.Bool
	lookupFail atomic.Bool
	// raced: RedeemDeviceGrant lets a concurrent redemption win first.
	raced atomic.Bool
	// gate, when set, holds every DeviceGrantByUserCode until it is
	// closed; entered counts those held.
	gate    chan struct{}
	entered atomic.Int32
}

var errDown = errors.New("database down")

func (s *faultyDevices) CreateDeviceGrant(ctx context.Context, g *engine.DeviceGrant) error {
	if s.conflicts.Add(-1) >= 0 {
		return engine.ErrConflict
	}
	return s.DeviceStore.CreateDeviceGrant(ctx, g)
}

func (s *faultyDevices) PollDeviceGrant(ctx context.Context, id string, now time.Time, step time.Duration) (bool, error) {
	if s.pollFails.Load() {
		return false, errDown
	}
	return s.DeviceStore.PollDeviceGrant(ctx, id, now, step)
}

func (s *faultyDevices) DeviceGrantByUserCode(ctx context.Context, id string) (*engine.DeviceGrant, error) {
	if s.lookupFail.Load() {
		return nil, errDown
	}
	if s.gate != nil {
		s.entered.Add(1)
		<-s.gate
	}
	return s.DeviceStore.DeviceGrantByUserCode(ctx, id)
}

func (s *faultyDevices) RedeemDeviceGrant(ctx context.Context, id string, now time.Time, tokens ...*engine.Token) (bool, error) {
	if s.raced.Load() {
		if _, err := s.DeviceStore.RedeemDeviceGrant(ctx, id, now); err != nil {
			return false, err
		}
	}
	return s.DeviceStore.RedeemDeviceGrant(ctx, id, now, tokens...)
}

// familyWatch records the families revoked.
type familyWatch struct {
	engine.TokenStore
	revoked atomic.Int32
}

func (s *familyWatch) RevokeFamily(ctx context.Context, id string) error {
	s.revoked.Add(1)
	return s.TokenStore.RevokeFamily(ctx, id)
}

type deviceFixture struct {
	e       *engine.Engine
	devices *faultyDevices
	tokens  *familyWatch
	clock   *testClock
}

func newDeviceFixture(t *testing.T, throttle engine.Throttle) *deviceFixture {
	t.Helper()
	ctx := context.Background()
	st := openStores(t)
	f := &deviceFixture{devices: &faultyDevices{DeviceStore: st.Devices}, tokens: &familyWatch{TokenStore: st.Tokens},
		clock: &testClock{t: time.Now()}}
	st.Devices, st.Tokens = f.devices, f.tokens
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var err error
	f.e, err = engine.New(ctx, engine.Config{Issuer: "http://keyhook.test", Logger: log, Now: f.clock.now,
		LoginThrottle: throttle, ClientAuthThrottle: engine.Throttle{Free: -1}}, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.CreateUser(ctx, &engine.UserDoc{Username: "alice", Password: "alice-pw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.CreateClient(ctx, &engine.ClientDoc{ClientID: "tv", TokenEndpointAuthMethod: "none",
		GrantTypes: []string{string(engine.GrantDeviceCode)}, Scope: "api"}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *deviceFixture) authorize(t *testing.T) *engine.DeviceAuthorizationResponse {
	t.Helper()
	r, err := f.e.DeviceAuthorization(context.Background(), &engine.DeviceAuthorizationRequest{
		Credentials: engine.ClientCredentials{ClientID: "tv"}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *deviceFixture) poll(code string) (*engine.TokenResponse, error) {
	return f.e.Token(context.Background(), &engine.TokenRequest{GrantType: engine.GrantDeviceCode, DeviceCode: code,
		Credentials: engine.ClientCredentials{ClientID: "tv"}})
}

// approve signs alice in at the page and allows the device.
func (f *deviceFixture) approve(t *testing.T, userCode string) {
	t.Helper()
	ctx := context.Background()
	_, in, err := f.e.DeviceLogin(ctx, userCode, "browser", "alice", "alice-pw", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.DeviceDecide(ctx, userCode, "browser", in.SessionValue, true); err != nil {
		t.Fatal(err)
	}
}

func TestNormalizeUserCode(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"WDJB-MJHT", "WDJBMJHT", true},
		{"wdjb-mjht", "WDJBMJHT", true},
		{" wdjb mjht ", "WDJBMJHT", true},
		{"W-D-J-B-M-J-H-T", "WDJBMJHT", true},
		{"WDJB-MJH", "", false},
		{"WDJB-MJHTX", "", false},
		{"WDJB-MJHA", "", false}, // a vowel
		{"WDJB-MJH1", "", false},
		{"ＷDJB-MJHT", "", false}, // full-width
		{"WDJB\x00MJHT", "", false},
		{"", "", false},
		{string(make([]byte, 65)), "", false},
	} {
		got, ok := engine.NormalizeUserCode(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("NormalizeUserCode(%q) = %q %v, want %q %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestDeviceCodes: the codes' shape, their uniqueness, and the retry on
// a user code that collides.
func TestDeviceCodes(t *testing.T) {
	f := newDeviceFixture(t, engine.Throttle{Free: -1})
	shape := regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)
	seen := map[string]bool{}
	letters := map[rune]bool{}
	for range 200 {
		r := f.authorize(t)
		if !shape.MatchString(r.UserCode) || len(r.DeviceCode) != 43 || seen[r.UserCode] || seen[r.DeviceCode] {
			t.Fatalf("codes %+v", r)
		}
		seen[r.UserCode], seen[r.DeviceCode] = true, true
		for _, c := range r.UserCode {
			letters[c] = true
		}
	}
	if len(letters) != 21 { // 20 letters and the dash
		t.Fatalf("user codes drew %d distinct characters", len(letters))
	}
	f.devices.conflicts.Store(2)
	f.authorize(t)
	f.devices.conflicts.Store(5)
	_, err := f.e.DeviceAuthorization(context.Background(), &engine.DeviceAuthorizationRequest{
		Credentials: engine.ClientCredentials{ClientID: "tv"}})
	wantCode(t, err, engine.CodeTemporarilyUnavailable)
}

// TestDeviceGrantFailures: a store that fails or a redemption that loses
// its race.
func TestDeviceGrantFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("poll fails", func(t *testing.T) {
		f := newDeviceFixture(t, engine.Throttle{Free: -1})
		r := f.authorize(t)
		f.devices.pollFails.Store(true)
		_, err := f.poll(r.DeviceCode)
		wantCode(t, err, engine.CodeTemporarilyUnavailable)
	})

	t.Run("lookup fails: not a wrong code", func(t *testing.T) {
		f := newDeviceFixture(t, engine.Throttle{Free: 1})
		r := f.authorize(t)
		f.devices.lookupFail.Store(true)
		for range 5 {
			_, err := f.e.DeviceLookup(ctx, r.UserCode, "browser")
			wantCode(t, err, engine.CodeTemporarilyUnavailable)
		}
		f.devices.lookupFail.Store(false)
		if _, err := f.e.DeviceLookup(ctx, r.UserCode, "browser"); err != nil {
			t.Fatalf("after the store came back: %v", err)
		}
	})

	t.Run("redemption raced", func(t *testing.T) {
		f := newDeviceFixture(t, engine.Throttle{Free: -1})
		r := f.authorize(t)
		f.approve(t, r.UserCode)
		f.devices.raced.Store(true)
		_, err := f.poll(r.DeviceCode)
		wantInvalidGrant(t, err)
		if f.tokens.revoked.Load() != 1 {
			t.Fatalf("family revoked %d times", f.tokens.revoked.Load())
		}
	})

	t.Run("decided codes are no longer valid", func(t *testing.T) {
		f := newDeviceFixture(t, engine.Throttle{Free: -1})
		r := f.authorize(t)
		f.approve(t, r.UserCode)
		if _, err := f.e.DeviceLookup(ctx, r.UserCode, "browser"); !errors.Is(err, engine.ErrUserCodeInvalid) {
			t.Fatalf("lookup of an allowed code: %v", err)
		}
		_, _, err := f.e.DeviceLogin(ctx, r.UserCode, "browser", "alice", "alice-pw", "")
		if !errors.Is(err, engine.ErrUserCodeInvalid) {
			t.Fatalf("sign-in with an allowed code: %v", err)
		}
	})

	t.Run("decision without a session", func(t *testing.T) {
		f := newDeviceFixture(t, engine.Throttle{Free: -1})
		r := f.authorize(t)
		for _, s := range []string{"", "forged-session"} {
			if _, err := f.e.DeviceDecide(ctx, r.UserCode, "browser", s, true); !errors.Is(err, engine.ErrLoginNeeded) {
				t.Fatalf("decision with session %q: %v", s, err)
			}
		}
		_, err := f.poll(r.DeviceCode)
		wantCode(t, err, engine.CodeAuthorizationPending)
	})
}

// TestDeviceUserCodeThrottle: wrong codes count per browser; a throttled
// lookup is refused unchecked and a right code forgives nothing.
func TestDeviceUserCodeThrottle(t *testing.T) {
	ctx := context.Background()
	f := newDeviceFixture(t, engine.Throttle{Free: 2, MaxBackoff: time.Minute})
	r := f.authorize(t)
	for i := range 3 {
		if _, err := f.e.DeviceLookup(ctx, "BBBB-BBBB", "b1"); !errors.Is(err, engine.ErrUserCodeInvalid) {
			t.Fatalf("wrong code %d: %v", i, err)
		}
	}
	_, err := f.e.DeviceLookup(ctx, r.UserCode, "b1")
	wantCode(t, err, engine.CodeSlowDown)
	var oe *engine.Error
	if errors.As(err, &oe); oe.RetryAfter != time.Second {
		t.Fatalf("Retry-After %v", oe.RetryAfter)
	}
	// Another browser is not held back.
	if _, err := f.e.DeviceLookup(ctx, r.UserCode, "b2"); err != nil {
		t.Fatalf("another browser: %v", err)
	}
	f.clock.advance(time.Second)
	if _, err := f.e.DeviceLookup(ctx, r.UserCode, "b1"); err != nil {
		t.Fatalf("after the back-off: %v", err)
	}
	// The right code forgave nothing: the next wrong one locks again, longer.
	if _, err := f.e.DeviceLookup(ctx, "BBBB-BBBB", "b1"); !errors.Is(err, engine.ErrUserCodeInvalid) {
		t.Fatal(err)
	}
	_, err = f.e.DeviceLookup(ctx, r.UserCode, "b1")
	if errors.As(err, &oe); oe == nil || oe.RetryAfter != 2*time.Second {
		t.Fatalf("second lock-out: %v", err)
	}
}

// TestReviewDeviceUserCodeBursts: once an address (or the instance) has
// failed enough codes to be throttled, a burst of concurrent guesses
// after the back-off is checked one at a time, not all at once. The
// browser key is the attacker's to choose (a fresh CSRF cookie per
// guess), so the address and the instance are the only bounds; were
// they not serial, every back-off would end in a burst as large as the
// attacker's concurrency (docs/device-flow.md, "Guessing user codes").
func TestReviewDeviceUserCodeBursts(t *testing.T) {
	for _, tc := range []struct {
		name string
		// addr: every guess from one address; else each from its own.
		addr bool
		free int
	}{
		{"one address", true, 2},
		{"the instance", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newDeviceFixture(t, engine.Throttle{Free: tc.free, MaxBackoff: time.Minute})
			f.authorize(t)
			n := 0
			ctx := func() context.Context {
				n++
				a := "198.51.100.7"
				if !tc.addr {
					a = fmt.Sprintf("2001:db8:%x::1", n)
				}
				return engine.WithClientAddress(context.Background(), a)
			}
			// Wrong codes, each from a fresh browser, until throttled.
			for i := 0; ; i++ {
				_, err := f.e.DeviceLookup(ctx(), "BBBB-BBBB", fmt.Sprintf("warm-%d", i))
				if err != nil && !errors.Is(err, engine.ErrUserCodeInvalid) {
					wantCode(t, err, engine.CodeSlowDown)
					break
				}
				if i > 1000 {
					t.Fatal("never throttled")
				}
			}
			f.clock.advance(2 * time.Minute) // past the longest back-off

			const burst = 8
			f.devices.gate = make(chan struct{})
			var returned atomic.Int32
			done := make(chan struct{})
			for i := range burst {
				c := ctx()
				go func() {
					_, _ = f.e.DeviceLookup(c, "CCCC-CCCC", fmt.Sprintf("burst-%d", i))
					returned.Add(1)
					done <- struct{}{}
				}()
			}
			// Every guess is either held in the store (checked) or has
			// returned refused unchecked.
			deadline := time.Now().Add(10 * time.Second)
			for int(f.devices.entered.Load()+returned.Load()) < burst {
				if time.Now().After(deadline) {
					t.Fatalf("%d entered, %d returned", f.devices.entered.Load(), returned.Load())
				}
				time.Sleep(time.Millisecond)
			}
			checked := f.devices.entered.Load()
			close(f.devices.gate)
			for range burst {
				<-done
			}
			if checked != 1 {
				t.Fatalf("%d of %d concurrent guesses were checked after the back-off, want 1", checked, burst)
			}
		})
	}
}

// TestReviewDeviceUserCodeTyposDoNotAddUp: the instance-wide limit on
// wrong user codes is per 15 minutes (docs/device-flow.md): honest typos
// spread over days, a few an hour, never lock the page for everyone. The
// count was kept as long as no 15 minutes passed without a wrong code,
// so on a busy instance it grew without end, and past the free ones
// every typo locked every user out for up to the longest back-off.
func TestReviewDeviceUserCodeTyposDoNotAddUp(t *testing.T) {
	f := newDeviceFixture(t, engine.Throttle{Free: 1, MaxBackoff: 5 * time.Minute}) // 100 free for the instance
	for i := range 150 {
		f.clock.advance(10 * time.Minute)
		ctx := engine.WithClientAddress(context.Background(), fmt.Sprintf("2001:db8:%x::1", i))
		if _, err := f.e.DeviceLookup(ctx, "BBBB-BBBB", fmt.Sprintf("typo-%d", i)); !errors.Is(err, engine.ErrUserCodeInvalid) {
			t.Fatalf("typo %d, 10 minutes after the last: %v", i, err)
		}
	}
	// Right after the latest typo, someone else types a right code.
	r := f.authorize(t)
	ctx := engine.WithClientAddress(context.Background(), "198.51.100.9")
	if _, err := f.e.DeviceLookup(ctx, r.UserCode, "honest"); err != nil {
		t.Fatalf("a right code after typos spread over a day: %v", err)
	}
	// A burst of wrong codes within the window is still held back.
	for i := 0; ; i++ {
		ctx := engine.WithClientAddress(context.Background(), fmt.Sprintf("2001:db8:1:%x::1", i))
		_, err := f.e.DeviceLookup(ctx, "BBBB-BBBB", fmt.Sprintf("burst-%d", i))
		if err != nil && !errors.Is(err, engine.ErrUserCodeInvalid) {
			wantCode(t, err, engine.CodeSlowDown)
			if i < 99 || i > 101 {
				t.Fatalf("held back after %d wrong codes, want about 100", i)
			}
			break
		}
		if i > 200 {
			t.Fatal("never held back")
		}
	}
}
