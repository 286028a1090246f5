package storage

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/hooks"
)

// ts is a test time with nanoseconds, in the form the store returns.
func ts(sec int64) time.Time { return time.Unix(sec, 123456789).UTC() }

func mustOpen(t *testing.T, dsn string) *Store {
	t.Helper()
	st, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// freshDSN returns a DSN for a new, empty database of st's dialect.
func freshDSN(t *testing.T, st *Store) string {
	t.Helper()
	if st.Dialect() == DialectSQLite {
		return "sqlite:" + filepath.Join(t.TempDir(), "fresh.db")
	}
	dsn, drop, err := NewTestDSN(context.Background(), st.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Errorf("drop: %v", err)
		}
	})
	return dsn
}

func testClient(id string) *engine.Client {
	return &engine.Client{
		ID:                        id,
		Name:                      "Client " + id,
		SecretHash:                "hash",
		SecretSealed:              "sealed",
		AuthMethod:                engine.AuthSecretBasic,
		AuthSigningAlg:            "HS256",
		GrantTypes:                []engine.GrantType{engine.GrantClientCredentials, engine.GrantRefreshToken},
		RedirectURIs:              []string{"https://a.example/cb", "https://b.example/cb"},
		Scope:                     "read write",
		JWKS:                      `{"keys":[]}`,
		JWKSURI:                   "https://a.example/jwks",
		AccessTokenAsJWT:          true,
		RunIntrospectionBeforeJWT: true,
		AccessTokenLifetime:       3600,
		RefreshTokenLifetime:      86400,
		IDTokenLifetime:           600,
		RefreshTokenReuseInterval: 30,
		IntrospectionScripts:      []string{"s1"},
		UpdateTokenScripts:        []string{"s2", "s3"},
		Attributes:                map[string]string{"tier": "gold"},
		AllowedCORSOrigins:        []string{"https://a.example", "http://localhost:3000"},
		AllowedResources:          []string{"https://api.example", "urn:example:ledger"},
		DPoPBoundAccessTokens:     true,
		CreatedAt:                 ts(1000),
		UpdatedAt:                 ts(2000),
	}
}

func testToken(id, clientID string, kind engine.TokenKind, family string, expires time.Time) *engine.Token {
	return &engine.Token{
		ID:        id,
		Kind:      kind,
		Format:    engine.FormatOpaque,
		ClientID:  clientID,
		Subject:   "sub",
		Username:  "alice",
		Scope:     "read",
		GrantType: engine.GrantPassword,
		FamilyID:  family,
		Audience:  []string{"api"},
		Resources: []string{"https://api.example", "urn:example:ledger"},
		KeyID:     "kid1",
		JKT:       "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
		Claims:    map[string]any{"n": int64(7)},
		IssuedAt:  ts(100),
		ExpiresAt: expires,
	}
}

func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got  %#v\n want %#v", what, got, want)
	}
}

func isErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %v, want %v", what, err, want)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// runContract checks the behaviour the engine relies on. open returns a
// Store on a new, empty database for each call.
func runContract(t *testing.T, open func(t *testing.T) *Store) {
	ctx := context.Background()
	tests := []struct {
		name string
		fn   func(t *testing.T, st *Store)
	}{
		{"stores, ping and dialect", func(t *testing.T, st *Store) {
			v := reflect.ValueOf(st.Stores())
			for i := range v.NumField() {
				if v.Field(i).IsNil() {
					t.Errorf("Stores().%s is nil", v.Type().Field(i).Name)
				}
			}
			noErr(t, "Ping", st.Ping(ctx))
			if d := st.Dialect(); d != DialectSQLite && d != DialectPostgres {
				t.Errorf("Dialect = %q", d)
			}
		}},

		{"migrations recorded and idempotent", func(t *testing.T, st *Store) {
			check := func(st *Store) {
				t.Helper()
				var rows []schemaMigration
				noErr(t, "read schema_migrations", st.db.Order("version").Find(&rows).Error)
				if len(rows) != len(migrations) {
					t.Fatalf("%d migrations recorded, want %d", len(rows), len(migrations))
				}
				for i, m := range migrations {
					if rows[i].Version != m.version || rows[i].Name != m.name || rows[i].AppliedAt == 0 {
						t.Errorf("row %d = %+v, want version %d %q", i, rows[i], m.version, m.name)
					}
				}
			}
			check(st)
			noErr(t, "CreateClient", st.CreateClient(ctx, testClient("keep")))
			for range 2 {
				again := mustOpen(t, st.dsn)
				check(again)
				_, err := again.ClientByID(ctx, "keep")
				noErr(t, "data survives reopening", err)
			}
		}},

		{"concurrent Opens of a new database", func(t *testing.T, st *Store) {
			dsn := freshDSN(t, st)
			const n = 4
			stores := make([]*Store, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { stores[i], errs[i] = Open(ctx, dsn) })
			}
			wg.Wait()
			for i := range n {
				if errs[i] != nil {
					t.Errorf("Open %d: %v", i, errs[i])
					continue
				}
				defer stores[i].Close()
			}
			if t.Failed() {
				return
			}
			var count int64
			noErr(t, "count", stores[0].db.Model(&schemaMigration{}).Count(&count).Error)
			if count != int64(len(migrations)) {
				t.Errorf("%d migrations recorded, want %d", count, len(migrations))
			}
			v, err := stores[1].ScriptsVersion(ctx)
			noErr(t, "ScriptsVersion", err)
			equal(t, "generation row inserted once", v, "0")
		}},

		{"clients", func(t *testing.T, st *Store) {
			_, err := st.ClientByID(ctx, "a")
			isErr(t, "ClientByID absent", err, engine.ErrNotFound)
			all, err := st.Clients(ctx)
			noErr(t, "Clients", err)
			equal(t, "no clients", len(all), 0)

			a := testClient("a")
			noErr(t, "CreateClient", st.CreateClient(ctx, a))
			got, err := st.ClientByID(ctx, "a")
			noErr(t, "ClientByID", err)
			equal(t, "round trip", got, a)

			isErr(t, "CreateClient dup", st.CreateClient(ctx, testClient("a")), engine.ErrConflict)

			// nil and empty collections, zero times and false flags round-trip.
			b := &engine.Client{ID: "b", AuthMethod: engine.AuthNone, RedirectURIs: []string{}, Attributes: map[string]string{}}
			noErr(t, "CreateClient minimal", st.CreateClient(ctx, b))
			got, err = st.ClientByID(ctx, "b")
			noErr(t, "ClientByID", err)
			equal(t, "minimal round trip", got, b)

			a2 := testClient("a")
			a2.Name, a2.Scope, a2.AccessTokenAsJWT = "renamed", "read", false
			a2.GrantTypes, a2.Attributes = nil, nil
			a2.UpdatedAt = ts(3000)
			noErr(t, "UpdateClient", st.UpdateClient(ctx, a2))
			got, err = st.ClientByID(ctx, "a")
			noErr(t, "ClientByID", err)
			equal(t, "updated", got, a2)
			// Updating with unchanged values still finds the row.
			noErr(t, "UpdateClient unchanged", st.UpdateClient(ctx, a2))
			isErr(t, "UpdateClient absent", st.UpdateClient(ctx, testClient("zz")), engine.ErrNotFound)

			all, err = st.Clients(ctx)
			noErr(t, "Clients", err)
			equal(t, "Clients", all, []*engine.Client{a2, b})

			noErr(t, "DeleteClient", st.DeleteClient(ctx, "a"))
			isErr(t, "DeleteClient again", st.DeleteClient(ctx, "a"), engine.ErrNotFound)
			_, err = st.ClientByID(ctx, "a")
			isErr(t, "deleted", err, engine.ErrNotFound)
		}},

		{"client delete cascades tokens and codes", func(t *testing.T, st *Store) {
			noErr(t, "CreateClient", st.CreateClient(ctx, testClient("c")))
			noErr(t, "CreateClient", st.CreateClient(ctx, testClient("other")))
			noErr(t, "CreateTokens", st.CreateTokens(ctx,
				testToken("t1", "c", engine.KindAccess, "f", ts(5000)),
				testToken("t2", "c", engine.KindRefresh, "f", ts(5000)),
				testToken("t3", "other", engine.KindAccess, "g", ts(5000))))
			noErr(t, "CreateCode", st.CreateCode(ctx, &engine.AuthCode{ID: "code1", ClientID: "c", ExpiresAt: ts(5000)}))
			noErr(t, "DeleteClient", st.DeleteClient(ctx, "c"))
			for _, id := range []string{"t1", "t2"} {
				_, err := st.TokenByID(ctx, id)
				isErr(t, "token of deleted client", err, engine.ErrNotFound)
			}
			_, err := st.CodeByID(ctx, "code1")
			isErr(t, "code of deleted client", err, engine.ErrNotFound)
			_, err = st.TokenByID(ctx, "t3")
			noErr(t, "other client's token stays", err)
		}},

		{"tokens", func(t *testing.T, st *Store) {
			noErr(t, "CreateClient", st.CreateClient(ctx, testClient("c")))
			_, err := st.TokenByID(ctx, "nope")
			isErr(t, "TokenByID absent", err, engine.ErrNotFound)

			full := testToken("t1", "c", engine.KindAccess, "fam", ts(5000))
			full.Format, full.KeyID, full.AuthTime, full.Revoked, full.UsedAt = engine.FormatJWT, "kid9", ts(50), true, ts(60)
			full.Audience = []string{"a", "b"}
			full.Claims = map[string]any{
				"int":    int64(42),
				"big":    int64(1<<53 + 1),
				"neg":    int64(-3),
				"float":  1.5,
				"str":    "x",
				"bool":   true,
				"null":   nil,
				"list":   []any{int64(1), 2.25, "z", []any{int64(3)}},
				"nested": map[string]any{"deep": map[string]any{"n": int64(9), "f": 0.1}},
			}
			bare := &engine.Token{ID: "t2", Kind: engine.KindRefresh, ClientID: "c", ExpiresAt: ts(5000)}
			noErr(t, "CreateTokens", st.CreateTokens(ctx, full, bare))
			got, err := st.TokenByID(ctx, "t1")
			noErr(t, "TokenByID", err)
			equal(t, "full round trip", got, full)
			got, err = st.TokenByID(ctx, "t2")
			noErr(t, "TokenByID", err)
			equal(t, "bare round trip (zero times, nil collections)", got, bare)

			noErr(t, "CreateTokens none", st.CreateTokens(ctx))

			// One issuance is atomic: a duplicate id stores none of it.
			err = st.CreateTokens(ctx, testToken("t3", "c", engine.KindAccess, "", ts(5000)),
				testToken("t1", "c", engine.KindAccess, "", ts(5000)))
			isErr(t, "CreateTokens dup", err, engine.ErrConflict)
			_, err = st.TokenByID(ctx, "t3")
			isErr(t, "rolled back", err, engine.ErrNotFound)

			if err := st.CreateTokens(ctx, testToken("t4", "no-such-client", engine.KindAccess, "", ts(5000))); err == nil {
				t.Error("CreateTokens for an unknown client succeeded")
			}
		}},

		{"rotate refresh token", func(t *testing.T, st *Store) {
			noErr(t, "CreateClient", st.CreateClient(ctx, testClient("c")))
			now := ts(1000)
			revoked := testToken("revoked", "c", engine.KindRefresh, "f", ts(2000))
			revoked.Revoked = true
			used := testToken("used", "c", engine.KindRefresh, "f", ts(2000))
			used.UsedAt = ts(900)
			noErr(t, "CreateTokens", st.CreateTokens(ctx,
				testToken("rt", "c", engine.KindRefresh, "f", ts(2000)),
				testToken("access", "c", engine.KindAccess, "f", ts(2000)),
				testToken("expired", "c", engine.KindRefresh, "f", now),
				revoked, used))

			for _, id := range []string{"absent", "access", "expired", "revoked", "used"} {
				ok, err := st.RotateRefreshToken(ctx, id, now, nil, testToken("next-"+id, "c", engine.KindRefresh, "f", ts(3000)))
				noErr(t, "rotate "+id, err)
				if ok {
					t.Errorf("rotate %s: reported true", id)
				}
				_, err = st.TokenByID(ctx, "next-"+id)
				isErr(t, "no successor of "+id, err, engine.ErrNotFound)
			}

			// A failing insert rolls the mark back.
			_, err := st.RotateRefreshToken(ctx, "rt", now, nil, testToken("access", "c", engine.KindAccess, "f", ts(3000)))
			isErr(t, "rotate into dup", err, engine.ErrConflict)
			old, err := st.TokenByID(ctx, "rt")
			noErr(t, "TokenByID", err)
			if !old.UsedAt.IsZero() {
				t.Errorf("failed rotation left UsedAt = %v", old.UsedAt)
			}

			ok, err := st.RotateRefreshToken(ctx, "rt", now, nil,
				testToken("rt2", "c", engine.KindRefresh, "f", ts(3000)),
				testToken("at2", "c", engine.KindAccess, "f", ts(3000)))
			noErr(t, "rotate", err)
			if !ok {
				t.Fatal("rotate of an active token reported false")
			}
			old, err = st.TokenByID(ctx, "rt")
			noErr(t, "TokenByID", err)
			equal(t, "UsedAt", old.UsedAt, now)
			for _, id := range []string{"rt2", "at2"} {
				_, err := st.TokenByID(ctx, id)
				noErr(t, "successor "+id, err)
			}
			ok, err = st.RotateRefreshToken(ctx, "rt", now, nil, testToken("rt3", "c", engine.KindRefresh, "f", ts(3000)))
			noErr(t, "rotate again", err)
			if ok {
				t.Error("second rotation reported true")
			}
			if old.Successor != nil {
				t.Errorf("rotation without a successor kept %+v", old.Successor)
			}
		}},

		{"rotation keeps the successor until the purge after its end", func(t *testing.T, st *Store) {
			noErr(t, "CreateClient", st.CreateClient(ctx, testClient("c")))
			noErr(t, "CreateTokens", st.CreateTokens(ctx, testToken("rt", "c", engine.KindRefresh, "f", ts(5000))))
			succ := &engine.Successor{Sealed: "sealed-answer", Until: ts(1060)}
			ok, err := st.RotateRefreshToken(ctx, "rt", ts(1000), succ, testToken("rt2", "c", engine.KindRefresh, "f", ts(5000)))
			noErr(t, "rotate", err)
			equal(t, "rotated", ok, true)
			old, err := st.TokenByID(ctx, "rt")
			noErr(t, "TokenByID", err)
			equal(t, "successor", old.Successor, succ)
			_, err = st.PurgeTokens(ctx, ts(1059))
			noErr(t, "PurgeTokens", err)
			old, _ = st.TokenByID(ctx, "rt")
			equal(t, "successor kept until its end", old.Successor, succ)
			_, err = st.PurgeTokens(ctx, ts(1061))
			noErr(t, "PurgeTokens", err)
			old, err = st.TokenByID(ctx, "rt")
			noErr(t, "rotated token stays", err)
			if old.Successor != nil {
				t.Errorf("successor after its end: %+v", old.Successor)
			}
		}},

		{"rotate refresh token race", func(t *testing.T, st *Store) {
			noErr(t, "CreateClient", st.CreateClient(ctx, testClient("c")))
			noErr(t, "CreateTokens", st.CreateTokens(ctx, testToken("rt", "c", engine.KindRefresh, "f", ts(2000))))
			const n = 10
			oks := make([]bool, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					oks[i], errs[i] = st.RotateRefreshToken(ctx, "rt", ts(1000), nil,
						testToken(fmt.Sprintf("next%d", i), "c", engine.KindRefresh, "f", ts(3000)))
				})
			}
			close(start)
			wg.Wait()
			winners := 0
			for i := range n {
				noErr(t, "rotate", errs[i])
				_, err := st.TokenByID(ctx, fmt.Sprintf("next%d", i))
				if oks[i] {
					winners++
					noErr(t, "winner's successor", err)
				} else {
					isErr(t, "loser's successor", err, engine.ErrNotFound)
				}
			}
			equal(t, "winners", winners, 1)
		}},

		{"revoke", func(t *testing.T, st *Store) {
			noErr(t, "CreateClient", st.CreateClient(ctx, testClient("c")))
			noErr(t, "CreateTokens", st.CreateTokens(ctx,
				testToken("a1", "c", engine.KindAccess, "fa", ts(2000)),
				testToken("a2", "c", engine.KindRefresh, "fa", ts(2000)),
				testToken("b1", "c", engine.KindAccess, "fb", ts(2000)),
				testToken("n1", "c", engine.KindAccess, "", ts(2000)),
				testToken("n2", "c", engine.KindAccess, "", ts(2000))))
			revoked := func(id string) bool {
				t.Helper()
				tok, err := st.TokenByID(ctx, id)
				noErr(t, "TokenByID "+id, err)
				return tok.Revoked
			}
			noErr(t, "RevokeToken", st.RevokeToken(ctx, "n1"))
			noErr(t, "RevokeToken absent", st.RevokeToken(ctx, "absent"))
			equal(t, "n1 revoked", revoked("n1"), true)
			equal(t, "n2 untouched", revoked("n2"), false)
			noErr(t, "RevokeFamily", st.RevokeFamily(ctx, "fa"))
			equal(t, "a1", revoked("a1"), true)
			equal(t, "a2", revoked("a2"), true)
			equal(t, "b1", revoked("b1"), false)
			noErr(t, "RevokeFamily empty", st.RevokeFamily(ctx, ""))
			equal(t, "no family is no family", revoked("n2"), false)
		}},

		{"purge tokens and latest expiry", func(t *testing.T, st *Store) {
			noErr(t, "CreateClient", st.CreateClient(ctx, testClient("c")))
			mk := func(id, kid string, exp time.Time) *engine.Token {
				tok := testToken(id, "c", engine.KindAccess, "", exp)
				tok.KeyID = kid
				return tok
			}
			noErr(t, "CreateTokens", st.CreateTokens(ctx,
				mk("e1", "k1", ts(100)), mk("e2", "k1", ts(300)), mk("e3", "k2", ts(200)), mk("e4", "", ts(500))))
			latest, err := st.LatestExpiry(ctx, "k1")
			noErr(t, "LatestExpiry", err)
			equal(t, "LatestExpiry k1", latest, ts(300))
			latest, err = st.LatestExpiry(ctx, "unknown")
			noErr(t, "LatestExpiry", err)
			if !latest.IsZero() {
				t.Errorf("LatestExpiry of an unused kid = %v, want zero", latest)
			}
			n, err := st.PurgeTokens(ctx, ts(200)) // strictly before
			noErr(t, "PurgeTokens", err)
			equal(t, "purged", n, int64(1))
			n, err = st.PurgeTokens(ctx, ts(400))
			noErr(t, "PurgeTokens", err)
			equal(t, "purged", n, int64(2))
			_, err = st.TokenByID(ctx, "e4")
			noErr(t, "survivor", err)
		}},

		{"signing keys", func(t *testing.T, st *Store) {
			keys, err := st.SigningKeys(ctx)
			noErr(t, "SigningKeys", err)
			equal(t, "no keys", len(keys), 0)
			k1 := &engine.SigningKey{ID: "k1", Alg: "RS256", PrivateJWK: `{"kty":"RSA"}`, CreatedAt: ts(100)}
			k2 := &engine.SigningKey{ID: "k2", Alg: "ES256", PrivateJWK: `{"kty":"EC"}`, CreatedAt: ts(200)}
			noErr(t, "AddSigningKey", st.AddSigningKey(ctx, k1))
			noErr(t, "AddSigningKey", st.AddSigningKey(ctx, k2))
			keys, err = st.SigningKeys(ctx)
			noErr(t, "SigningKeys", err)
			k1r := *k1
			k1r.RetiredAt = ts(200)
			equal(t, "keys", keys, []*engine.SigningKey{&k1r, k2})

			// A failed add retires nothing.
			dup := &engine.SigningKey{ID: "k1", Alg: "RS256", CreatedAt: ts(300)}
			isErr(t, "AddSigningKey dup", st.AddSigningKey(ctx, dup), engine.ErrConflict)
			keys, err = st.SigningKeys(ctx)
			noErr(t, "SigningKeys", err)
			equal(t, "keys after failed add", keys, []*engine.SigningKey{&k1r, k2})

			noErr(t, "DeleteSigningKey", st.DeleteSigningKey(ctx, "k1"))
			noErr(t, "DeleteSigningKey absent", st.DeleteSigningKey(ctx, "k1"))
			keys, err = st.SigningKeys(ctx)
			noErr(t, "SigningKeys", err)
			equal(t, "keys after delete", keys, []*engine.SigningKey{k2})

			// Resealing replaces only the value it read (compare and swap).
			noErr(t, "ResealSigningKey", st.ResealSigningKey(ctx, "k2", `{"kty":"EC"}`, "kek1:sealed"))
			noErr(t, "ResealSigningKey stale", st.ResealSigningKey(ctx, "k2", `{"kty":"EC"}`, "kek1:other"))
			keys, err = st.SigningKeys(ctx)
			noErr(t, "SigningKeys", err)
			equal(t, "resealed once", keys[0].PrivateJWK, "kek1:sealed")
		}},

		{"properties", func(t *testing.T, st *Store) {
			p, err := st.Properties(ctx)
			noErr(t, "Properties", err)
			equal(t, "empty", p, map[string]string{})
			noErr(t, "SetProperties", st.SetProperties(ctx, map[string]string{"a": `1`, "b": `"x"`}))
			noErr(t, "SetProperties", st.SetProperties(ctx, map[string]string{"b": `{"y":2}`, "c": `[]`}))
			noErr(t, "SetProperties none", st.SetProperties(ctx, nil))
			p, err = st.Properties(ctx)
			noErr(t, "Properties", err)
			equal(t, "upserted", p, map[string]string{"a": `1`, "b": `{"y":2}`, "c": `[]`})
		}},

		{"jtis", func(t *testing.T, st *Store) {
			noErr(t, "UseJTI", st.UseJTI(ctx, "c", "j1", ts(100)))
			isErr(t, "UseJTI replay", st.UseJTI(ctx, "c", "j1", ts(100)), engine.ErrConflict)
			noErr(t, "same jti, other client", st.UseJTI(ctx, "d", "j1", ts(300)))
			noErr(t, "UseJTI", st.UseJTI(ctx, "c", "j2", ts(200)))
			n, err := st.PurgeJTIs(ctx, ts(250))
			noErr(t, "PurgeJTIs", err)
			equal(t, "purged", n, int64(2))
			noErr(t, "purged jti usable again", st.UseJTI(ctx, "c", "j1", ts(400)))
		}},

		{"secrets agree across stores", func(t *testing.T, st *Store) {
			v, err := st.Secret(ctx, "seal", []byte("first"))
			noErr(t, "Secret", err)
			equal(t, "fresh stored", string(v), "first")
			v, err = st.Secret(ctx, "seal", []byte("second"))
			noErr(t, "Secret", err)
			equal(t, "existing kept", string(v), "first")
			bin := []byte{0, 1, 2, 255}
			v, err = st.Secret(ctx, "bin", bin)
			noErr(t, "Secret", err)
			equal(t, "binary", v, bin)

			other := mustOpen(t, st.dsn)
			v, err = other.Secret(ctx, "seal", []byte("third"))
			noErr(t, "Secret", err)
			equal(t, "other store agrees", string(v), "first")

			noErr(t, "ResealSecret", other.ResealSecret(ctx, "seal", []byte("first"), []byte("sealed")))
			noErr(t, "ResealSecret stale", st.ResealSecret(ctx, "seal", []byte("first"), []byte("other")))
			v, err = st.Secret(ctx, "seal", []byte("fresh"))
			noErr(t, "Secret", err)
			equal(t, "resealed once", string(v), "sealed")

			const n = 8
			got := make([]string, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				s := st
				if i%2 == 1 {
					s = other
				}
				wg.Go(func() {
					b, err := s.Secret(ctx, "race", []byte(fmt.Sprintf("v%d", i)))
					got[i], errs[i] = string(b), err
				})
			}
			wg.Wait()
			for i := range n {
				noErr(t, "Secret race", errs[i])
				if got[i] != got[0] {
					t.Errorf("instance %d got %q, instance 0 got %q", i, got[i], got[0])
				}
			}
		}},

		{"codes", func(t *testing.T, st *Store) {
			noErr(t, "CreateClient", st.CreateClient(ctx, testClient("c")))
			code := &engine.AuthCode{
				ID: "h1", ClientID: "c", Username: "alice", RedirectURI: "https://a.example/cb",
				Scope: "openid", CodeChallenge: "chal", CodeChallengeMethod: "S256", Nonce: "n",
				FamilyID: "fam", AuthTime: ts(50), ExpiresAt: ts(200),
				Resources: []string{"https://api.example", "https://files.example/v1"}, DPoPJKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
			}
			noErr(t, "CreateCode", st.CreateCode(ctx, code))
			isErr(t, "CreateCode dup", st.CreateCode(ctx, code), engine.ErrConflict)
			_, err := st.CodeByID(ctx, "absent")
			isErr(t, "CodeByID absent", err, engine.ErrNotFound)
			ok, err := st.RedeemCode(ctx, "absent", ts(100))
			noErr(t, "RedeemCode absent", err)
			if ok {
				t.Error("RedeemCode of an absent code reported true")
			}
			got, err := st.CodeByID(ctx, "h1")
			noErr(t, "CodeByID", err)
			equal(t, "unused code", got, code)

			ok, err = st.RedeemCode(ctx, "h1", ts(100), testToken("from-h1", "c", engine.KindAccess, "fam", ts(3000)))
			noErr(t, "RedeemCode", err)
			if !ok {
				t.Error("first RedeemCode reported false")
			}
			want := *code
			want.UsedAt = ts(100)
			got, err = st.CodeByID(ctx, "h1")
			noErr(t, "CodeByID used", err)
			equal(t, "used code", got, &want)
			_, err = st.TokenByID(ctx, "from-h1")
			noErr(t, "token stored with the redemption", err)
			ok, err = st.RedeemCode(ctx, "h1", ts(150), testToken("again-h1", "c", engine.KindAccess, "fam", ts(3000)))
			noErr(t, "RedeemCode again", err)
			if ok {
				t.Error("second RedeemCode reported true")
			}
			got, _ = st.CodeByID(ctx, "h1")
			equal(t, "used code keeps first use", got, &want)
			_, err = st.TokenByID(ctx, "again-h1")
			isErr(t, "token of a lost redemption", err, engine.ErrNotFound)

			noErr(t, "CreateCode", st.CreateCode(ctx, &engine.AuthCode{ID: "race", ClientID: "c", ExpiresAt: ts(300)}))
			const n = 10
			oks := make([]bool, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					ok, err := st.RedeemCode(ctx, "race", ts(100), testToken(fmt.Sprintf("race-%d", i), "c", engine.KindAccess, "race", ts(3000)))
					if err != nil {
						t.Error(err)
					}
					oks[i] = ok
				})
			}
			wg.Wait()
			winners := 0
			for i, ok := range oks {
				_, err := st.TokenByID(ctx, fmt.Sprintf("race-%d", i))
				if ok {
					winners++
					noErr(t, "winner's token", err)
				} else {
					isErr(t, "loser's token", err, engine.ErrNotFound)
				}
			}
			equal(t, "RedeemCode winners", winners, 1)

			n2, err := st.PurgeCodes(ctx, ts(250))
			noErr(t, "PurgeCodes", err)
			equal(t, "purged", n2, int64(1))
		}},

		{"scripts", func(t *testing.T, st *Store) {
			version := func() string {
				t.Helper()
				v, err := st.ScriptsVersion(ctx)
				noErr(t, "ScriptsVersion", err)
				return v
			}
			v0 := version()
			_, err := st.ScriptByName(ctx, "s")
			isErr(t, "ScriptByName absent", err, engine.ErrNotFound)

			s := &hooks.Script{
				Name: "s", Kind: hooks.KindIntrospection, Source: "function f(){}", Enabled: true,
				Level: 3, Config: map[string]string{"k": "v"}, Timeout: 1500 * time.Millisecond,
				OnError: hooks.OnErrorDeny, Version: "caller's", MemoryMB: 64, Isolation: hooks.IsolationInline,
				AllowedHosts: []string{"api.example.com", "*.example.org"},
				RecordInputs: 25,
			}
			noErr(t, "CreateScript", st.CreateScript(ctx, s))
			if s.Version == "" || s.Version == "caller's" {
				t.Errorf("CreateScript left Version = %q", s.Version)
			}
			v1 := version()
			if v1 == v0 {
				t.Error("ScriptsVersion unchanged by create")
			}
			got, err := st.ScriptByName(ctx, "s")
			noErr(t, "ScriptByName", err)
			equal(t, "round trip", got, s)

			dup := *s
			isErr(t, "CreateScript dup", st.CreateScript(ctx, &dup), engine.ErrConflict)
			equal(t, "failed create leaves version", version(), v1)

			firstVersion := s.Version
			s.Source, s.Enabled, s.Config, s.Timeout, s.MemoryMB, s.Isolation = "function g(){}", false, nil, 0, 0, ""
			s.AllowedHosts = nil
			s.RecordInputs = 0
			noErr(t, "UpdateScript", st.UpdateScript(ctx, s))
			if s.Version == firstVersion {
				t.Error("UpdateScript kept the script version")
			}
			v2 := version()
			if v2 == v1 {
				t.Error("ScriptsVersion unchanged by update")
			}
			got, err = st.ScriptByName(ctx, "s")
			noErr(t, "ScriptByName", err)
			equal(t, "updated", got, s)

			isErr(t, "UpdateScript absent", st.UpdateScript(ctx, &hooks.Script{Name: "zz"}), engine.ErrNotFound)
			equal(t, "failed update leaves version", version(), v2)

			s2 := &hooks.Script{Name: "a", Kind: hooks.KindUpdateToken, OnError: hooks.OnErrorSkip}
			noErr(t, "CreateScript", st.CreateScript(ctx, s2))
			all, err := st.Scripts(ctx)
			noErr(t, "Scripts", err)
			equal(t, "Scripts", all, []*hooks.Script{s2, s})

			v3 := version()
			noErr(t, "DeleteScript", st.DeleteScript(ctx, "a"))
			if version() == v3 {
				t.Error("ScriptsVersion unchanged by delete")
			}
			isErr(t, "DeleteScript absent", st.DeleteScript(ctx, "a"), engine.ErrNotFound)
		}},

		{"script secrets", func(t *testing.T, st *Store) {
			// Values as the engine stores them (sealed or marked clear).
			s := &hooks.Script{Name: "vault", Kind: hooks.KindIntrospection, Source: "function f(){}", OnError: hooks.OnErrorSkip,
				Secrets: map[string]string{"api_key": "clear:v1", "other": "kek1:abc"}}
			noErr(t, "CreateScript", st.CreateScript(ctx, s))
			got, err := st.ScriptByName(ctx, "vault")
			noErr(t, "ScriptByName", err)
			equal(t, "secrets round trip", got.Secrets, s.Secrets)

			sealed := map[string]string{"api_key": "kek1:def", "other": "kek1:abc"}
			gen := func() string { v, _ := st.ScriptsVersion(ctx); return v }
			g := gen()
			for _, tc := range []struct {
				name string
				old  map[string]string
				want map[string]string
			}{
				{"changed meanwhile: left as it is", map[string]string{"api_key": "clear:v0"}, s.Secrets},
				{"still the old ones: sealed", s.Secrets, sealed},
			} {
				noErr(t, "ResealScriptSecrets", st.ResealScriptSecrets(ctx, "vault", tc.old, sealed))
				got, err := st.ScriptByName(ctx, "vault")
				noErr(t, "ScriptByName", err)
				equal(t, tc.name, got.Secrets, tc.want)
				equal(t, tc.name+": version kept", got.Version, s.Version)
			}
			equal(t, "resealing leaves the scripts' generation", gen(), g)

			s.Secrets = nil
			noErr(t, "UpdateScript", st.UpdateScript(ctx, s))
			got, err = st.ScriptByName(ctx, "vault")
			noErr(t, "ScriptByName", err)
			if len(got.Secrets) != 0 {
				t.Errorf("secrets after an update without them: %v", got.Secrets)
			}
		}},

		{"users", func(t *testing.T, st *Store) {
			_, err := st.UserByName(ctx, "alice")
			isErr(t, "UserByName absent", err, engine.ErrNotFound)
			u := &engine.User{
				Username: "alice", PasswordHash: "$argon2id$...",
				Claims:    map[string]any{"email": "a@example.com", "age": int64(30), "score": 9.5, "groups": []any{"x"}},
				CreatedAt: ts(10), UpdatedAt: ts(20),
			}
			noErr(t, "CreateUser", st.CreateUser(ctx, u))
			isErr(t, "CreateUser dup", st.CreateUser(ctx, u), engine.ErrConflict)
			got, err := st.UserByName(ctx, "alice")
			noErr(t, "UserByName", err)
			equal(t, "round trip", got, u)

			u.Disabled, u.Claims, u.UpdatedAt = true, nil, ts(30)
			noErr(t, "UpdateUser", st.UpdateUser(ctx, u))
			got, err = st.UserByName(ctx, "alice")
			noErr(t, "UserByName", err)
			equal(t, "updated", got, u)
			isErr(t, "UpdateUser absent", st.UpdateUser(ctx, &engine.User{Username: "bob"}), engine.ErrNotFound)

			b := &engine.User{Username: "aaron"}
			noErr(t, "CreateUser", st.CreateUser(ctx, b))
			all, err := st.Users(ctx)
			noErr(t, "Users", err)
			equal(t, "Users", all, []*engine.User{b, u})

			noErr(t, "DeleteUser", st.DeleteUser(ctx, "alice"))
			isErr(t, "DeleteUser again", st.DeleteUser(ctx, "alice"), engine.ErrNotFound)
		}},

		{"login sessions", func(t *testing.T, st *Store) {
			noErr(t, "CreateUser", st.CreateUser(ctx, &engine.User{Username: "alice"}))
			_, err := st.SessionByID(ctx, "s1")
			isErr(t, "SessionByID absent", err, engine.ErrNotFound)
			s1 := &engine.Session{ID: "s1", Username: "alice", AuthTime: ts(100), UserUpdatedAt: ts(50), ExpiresAt: ts(200)}
			s2 := &engine.Session{ID: "s2", Username: "alice", AuthTime: ts(150), ExpiresAt: ts(400)}
			noErr(t, "CreateSession", st.CreateSession(ctx, s1))
			noErr(t, "CreateSession", st.CreateSession(ctx, s2))
			isErr(t, "CreateSession dup", st.CreateSession(ctx, s1), engine.ErrConflict)
			if err := st.CreateSession(ctx, &engine.Session{ID: "s3", Username: "nobody", ExpiresAt: ts(400)}); err == nil {
				t.Error("CreateSession for a user that does not exist succeeded")
			}
			got, err := st.SessionByID(ctx, "s1")
			noErr(t, "SessionByID", err)
			equal(t, "round trip", got, s1)

			n, err := st.PurgeSessions(ctx, ts(300))
			noErr(t, "PurgeSessions", err)
			equal(t, "purged", n, int64(1))
			_, err = st.SessionByID(ctx, "s1")
			isErr(t, "SessionByID purged", err, engine.ErrNotFound)

			noErr(t, "DeleteSession", st.DeleteSession(ctx, "s2"))
			noErr(t, "DeleteSession absent", st.DeleteSession(ctx, "s2"))
			noErr(t, "CreateSession", st.CreateSession(ctx, s2))
			noErr(t, "DeleteUser", st.DeleteUser(ctx, "alice"))
			_, err = st.SessionByID(ctx, "s2")
			isErr(t, "SessionByID of a deleted user", err, engine.ErrNotFound)
		}},

		{"device grants", func(t *testing.T, st *Store) {
			noErr(t, "CreateClient", st.CreateClient(ctx, testClient("c")))
			g := &engine.DeviceGrant{ID: "d1", UserCodeID: "u1", ClientID: "c", Scope: "api", Status: engine.DevicePending,
				FamilyID: "fam", Interval: 5, CreatedAt: ts(100), ExpiresAt: ts(700)}
			noErr(t, "CreateDeviceGrant", st.CreateDeviceGrant(ctx, g))
			isErr(t, "CreateDeviceGrant same id", st.CreateDeviceGrant(ctx, g), engine.ErrConflict)
			other := *g
			other.ID = "d2"
			isErr(t, "CreateDeviceGrant same user code", st.CreateDeviceGrant(ctx, &other), engine.ErrConflict)
			if err := st.CreateDeviceGrant(ctx, &engine.DeviceGrant{ID: "d3", UserCodeID: "u3", ClientID: "ghost"}); err == nil {
				t.Error("CreateDeviceGrant for a client that does not exist succeeded")
			}
			got, err := st.DeviceGrantByID(ctx, "d1")
			noErr(t, "DeviceGrantByID", err)
			equal(t, "round trip", got, g)
			got, err = st.DeviceGrantByUserCode(ctx, "u1")
			noErr(t, "DeviceGrantByUserCode", err)
			equal(t, "by user code", got, g)
			_, err = st.DeviceGrantByUserCode(ctx, "absent")
			isErr(t, "DeviceGrantByUserCode absent", err, engine.ErrNotFound)
			for _, c := range []struct {
				client string
				at     int64
				want   int64
			}{{"c", 699, 1}, {"c", 700, 0}, {"other", 100, 0}} {
				n, err := st.CountDeviceGrants(ctx, c.client, ts(c.at))
				noErr(t, "CountDeviceGrants", err)
				if n != c.want {
					t.Errorf("CountDeviceGrants(%s, %d) = %d, want %d", c.client, c.at, n, c.want)
				}
			}

			// Polls: the first passes, one 2 s later is too soon and adds
			// 5 s to the interval, the next must wait 10 s from then.
			for _, p := range []struct {
				at       int64
				ok       bool
				interval int64
			}{{110, true, 5}, {112, false, 10}, {121, false, 15}, {136, true, 15}, {150, false, 20}} {
				ok, err := st.PollDeviceGrant(ctx, "d1", ts(p.at), 5*time.Second)
				noErr(t, "PollDeviceGrant", err)
				got, _ := st.DeviceGrantByID(ctx, "d1")
				if ok != p.ok || got.Interval != p.interval || !got.LastPolledAt.Equal(ts(p.at)) {
					t.Errorf("poll at %d: ok %v interval %d last %v, want %v %d", p.at, ok, got.Interval, got.LastPolledAt, p.ok, p.interval)
				}
			}
			// Concurrent polls within one interval: one passes.
			var wg sync.WaitGroup
			var passed atomic.Int32
			for range 4 {
				wg.Go(func() {
					if ok, err := st.PollDeviceGrant(ctx, "d1", ts(400), 5*time.Second); err == nil && ok {
						passed.Add(1)
					}
				})
			}
			wg.Wait()
			equal(t, "concurrent polls passed", passed.Load(), int32(1))

			ok, err := st.DecideDeviceGrant(ctx, "d1", engine.DeviceApproved, "alice", ts(300), ts(800))
			noErr(t, "DecideDeviceGrant expired", err)
			equal(t, "decision after expiry", ok, false)
			ok, err = st.DecideDeviceGrant(ctx, "d1", engine.DeviceApproved, "alice", ts(300), ts(310))
			noErr(t, "DecideDeviceGrant", err)
			equal(t, "decision", ok, true)
			ok, _ = st.DecideDeviceGrant(ctx, "d1", engine.DeviceDenied, "mallory", ts(300), ts(311))
			equal(t, "second decision", ok, false)
			got, _ = st.DeviceGrantByID(ctx, "d1")
			equal(t, "decided", []any{got.Status, got.Username, got.AuthTime}, []any{engine.DeviceApproved, "alice", ts(300)})

			ok, err = st.RedeemDeviceGrant(ctx, "d1", ts(320), testToken("from-d1", "c", engine.KindAccess, "fam", ts(3000)))
			noErr(t, "RedeemDeviceGrant", err)
			equal(t, "first redemption", ok, true)
			ok, err = st.RedeemDeviceGrant(ctx, "d1", ts(321), testToken("again-d1", "c", engine.KindAccess, "fam", ts(3000)))
			noErr(t, "RedeemDeviceGrant again", err)
			equal(t, "second redemption", ok, false)
			_, err = st.TokenByID(ctx, "from-d1")
			noErr(t, "token stored with the redemption", err)
			_, err = st.TokenByID(ctx, "again-d1")
			isErr(t, "token of a lost redemption", err, engine.ErrNotFound)
			got, _ = st.DeviceGrantByID(ctx, "d1")
			equal(t, "used at", got.UsedAt, ts(320))

			other.UserCodeID = "u2"
			other.ExpiresAt = ts(2000)
			noErr(t, "CreateDeviceGrant", st.CreateDeviceGrant(ctx, &other))
			n, err := st.PurgeDeviceGrants(ctx, ts(1000))
			noErr(t, "PurgeDeviceGrants", err)
			equal(t, "purged", n, int64(1))
			_, err = st.DeviceGrantByID(ctx, "d2")
			noErr(t, "unexpired grant kept", err)
			noErr(t, "DeleteClient", st.DeleteClient(ctx, "c"))
			_, err = st.DeviceGrantByID(ctx, "d2")
			isErr(t, "grant of a deleted client", err, engine.ErrNotFound)
		}},

		{"trusted issuers", func(t *testing.T, st *Store) {
			ti := &engine.TrustedIssuer{Name: "partner", Issuer: "https://idp.example", JWKS: `{"keys":[]}`,
				AllowedSubjects: []string{"alice", "*"}, AllowedScopes: []string{"read"}, AllowedClients: []string{"app"},
				MaxLifetime: 300, Enabled: true, CreatedAt: ts(100), UpdatedAt: ts(200)}
			noErr(t, "CreateTrustedIssuer", st.CreateTrustedIssuer(ctx, ti))
			got, err := st.TrustedIssuerByName(ctx, "partner")
			noErr(t, "TrustedIssuerByName", err)
			equal(t, "round trip", got, ti)
			got, err = st.TrustedIssuerByIssuer(ctx, "https://idp.example")
			noErr(t, "TrustedIssuerByIssuer", err)
			equal(t, "by issuer", got.Name, "partner")
			_, err = st.TrustedIssuerByIssuer(ctx, "https://IDP.example")
			isErr(t, "issuer compared exactly", err, engine.ErrNotFound)

			dupName := *ti
			dupName.Issuer = "https://other.example"
			isErr(t, "same name", st.CreateTrustedIssuer(ctx, &dupName), engine.ErrConflict)
			dupIss := *ti
			dupIss.Name = "again"
			isErr(t, "same issuer", st.CreateTrustedIssuer(ctx, &dupIss), engine.ErrConflict)

			second := &engine.TrustedIssuer{Name: "b-second", Issuer: "https://second.example", JWKSURI: "https://second.example/jwks"}
			noErr(t, "CreateTrustedIssuer second", st.CreateTrustedIssuer(ctx, second))
			taking := *second
			taking.Issuer = "https://idp.example"
			isErr(t, "update taking another's issuer", st.UpdateTrustedIssuer(ctx, &taking), engine.ErrConflict)
			changed := *ti
			changed.Enabled, changed.AllowedClients, changed.UpdatedAt = false, nil, ts(300)
			noErr(t, "UpdateTrustedIssuer", st.UpdateTrustedIssuer(ctx, &changed))
			got, _ = st.TrustedIssuerByName(ctx, "partner")
			equal(t, "updated", got, &changed)
			missing := *ti
			missing.Name = "missing"
			isErr(t, "update missing", st.UpdateTrustedIssuer(ctx, &missing), engine.ErrNotFound)

			all, err := st.TrustedIssuers(ctx)
			noErr(t, "TrustedIssuers", err)
			equal(t, "listed by name", []string{all[0].Name, all[1].Name}, []string{"b-second", "partner"})
			noErr(t, "DeleteTrustedIssuer", st.DeleteTrustedIssuer(ctx, "partner"))
			isErr(t, "delete again", st.DeleteTrustedIssuer(ctx, "partner"), engine.ErrNotFound)
			_, err = st.TrustedIssuerByName(ctx, "partner")
			isErr(t, "deleted", err, engine.ErrNotFound)
		}},

		{"registration tokens and registered clients", func(t *testing.T, st *Store) {
			// A registered client keeps its registration; nil and empty
			// allowed scopes stay apart (any scope / none).
			for _, tc := range []struct {
				id  string
				reg *engine.ClientRegistration
			}{
				{"reg-any", &engine.ClientRegistration{AccessTokenHash: "h1", Label: "partners"}},
				{"reg-none", &engine.ClientRegistration{AccessTokenHash: "h2", AllowedScopes: []string{}, Open: true}},
				{"reg-some", &engine.ClientRegistration{AccessTokenHash: "h3", AllowedScopes: []string{"a", "b"}}},
			} {
				c := testClient(tc.id)
				c.Registration = tc.reg
				noErr(t, "CreateClient", st.CreateClient(ctx, c))
				got, err := st.ClientByID(ctx, tc.id)
				noErr(t, "ClientByID", err)
				equal(t, tc.id+" round trip", got, c)
			}

			_, err := st.RegistrationTokenByHash(ctx, "nope")
			isErr(t, "by hash absent", err, engine.ErrNotFound)
			_, err = st.RegistrationToken(ctx, "nope")
			isErr(t, "by id absent", err, engine.ErrNotFound)
			one := &engine.RegistrationToken{ID: "t1", TokenHash: "hash1", Label: "l", MaxUses: 1,
				ExpiresAt: ts(1000), CreatedAt: ts(10), CreatedBy: "admin"}
			two := &engine.RegistrationToken{ID: "t2", TokenHash: "hash2", AllowedScopes: []string{"read"}, MaxUses: 3,
				ExpiresAt: ts(2000), CreatedAt: ts(20)}
			noErr(t, "create", st.CreateRegistrationToken(ctx, one))
			noErr(t, "create", st.CreateRegistrationToken(ctx, two))
			isErr(t, "create dup hash", st.CreateRegistrationToken(ctx, &engine.RegistrationToken{ID: "t3", TokenHash: "hash1"}), engine.ErrConflict)
			got, err := st.RegistrationTokenByHash(ctx, "hash2")
			noErr(t, "by hash", err)
			equal(t, "round trip", got, two)
			all, err := st.RegistrationTokens(ctx)
			noErr(t, "list", err)
			equal(t, "newest first", all, []*engine.RegistrationToken{two, one})

			// Of concurrent uses of a one-use token exactly one counts.
			var wg sync.WaitGroup
			var won atomic.Int32
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if ok, err := st.UseRegistrationToken(ctx, "t1", ts(500)); err == nil && ok {
						won.Add(1)
					}
				}()
			}
			wg.Wait()
			equal(t, "uses won", won.Load(), int32(1))
			ok, err := st.UseRegistrationToken(ctx, "t2", ts(2000))
			noErr(t, "use at expiry", err)
			equal(t, "used at its expiry", ok, false)
			got, _ = st.RegistrationToken(ctx, "t1")
			equal(t, "uses", got.Uses, int64(1))

			n, err := st.PurgeRegistrationTokens(ctx, ts(1500))
			noErr(t, "purge", err)
			equal(t, "purged", n, int64(1))
			noErr(t, "delete", st.DeleteRegistrationToken(ctx, "t2"))
			isErr(t, "delete again", st.DeleteRegistrationToken(ctx, "t2"), engine.ErrNotFound)
		}},
		{"login sessions trimmed per user", func(t *testing.T, st *Store) {
			for _, u := range []string{"alice", "bob"} {
				noErr(t, "CreateUser", st.CreateUser(ctx, &engine.User{Username: u}))
			}
			// alice: a1 oldest … a5 newest, and kept, older than all.
			for i, id := range []string{"a1", "a2", "a3", "a4", "a5", "kept"} {
				at := ts(int64(100 + 10*i))
				if id == "kept" {
					at = ts(50)
				}
				noErr(t, "CreateSession", st.CreateSession(ctx, &engine.Session{ID: id, Username: "alice", AuthTime: at, ExpiresAt: ts(1000)}))
			}
			noErr(t, "CreateSession", st.CreateSession(ctx, &engine.Session{ID: "b1", Username: "bob", AuthTime: ts(10), ExpiresAt: ts(1000)}))
			alive := func() []string {
				var out []string
				for _, id := range []string{"a1", "a2", "a3", "a4", "a5", "kept", "b1"} {
					if _, err := st.SessionByID(ctx, id); err == nil {
						out = append(out, id)
					}
				}
				return out
			}
			for _, tc := range []struct {
				limit int
				n     int64
				want  []string
			}{
				{10, 0, []string{"a1", "a2", "a3", "a4", "a5", "kept", "b1"}},
				{6, 0, []string{"a1", "a2", "a3", "a4", "a5", "kept", "b1"}},
				{4, 2, []string{"a3", "a4", "a5", "kept", "b1"}},
				{1, 3, []string{"kept", "b1"}},
			} {
				n, err := st.TrimSessions(ctx, "alice", "kept", tc.limit)
				noErr(t, "TrimSessions", err)
				equal(t, fmt.Sprintf("trimmed to %d", tc.limit), n, tc.n)
				equal(t, fmt.Sprintf("alive after trimming to %d", tc.limit), alive(), tc.want)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

func TestContractSQLite(t *testing.T) {
	runContract(t, func(t *testing.T) *Store {
		return mustOpen(t, "sqlite:"+filepath.Join(t.TempDir(), "keyhook.db"))
	})
}

func TestContractPostgres(t *testing.T) {
	base := pgBase(t)
	runContract(t, func(t *testing.T) *Store {
		dsn, drop, err := NewTestDSN(context.Background(), base)
		if err != nil {
			t.Fatal(err)
		}
		// Registered first, so it runs after mustOpen's Close.
		t.Cleanup(func() {
			if err := drop(); err != nil {
				t.Errorf("drop: %v", err)
			}
		})
		return mustOpen(t, dsn)
	})
}

// pgBase is the PostgreSQL server to test on, from KEYHOOK_TEST_PG.
func pgBase(t *testing.T) string {
	base := strings.TrimSpace(os.Getenv("KEYHOOK_TEST_PG"))
	if base == "" {
		t.Skip("KEYHOOK_TEST_PG not set")
	}
	return base
}

func TestTimeEncoding(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want int64
	}{
		{time.Time{}, 0},
		{time.Unix(1, 5), 1_000_000_005},
		{time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), math.MaxInt64},
		{time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), math.MinInt64 + 1},
	} {
		if got := toNanos(tc.in); got != tc.want {
			t.Errorf("toNanos(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
	if !fromNanos(0).IsZero() {
		t.Error("fromNanos(0) is not the zero time")
	}
	now := time.Now()
	if got := fromNanos(toNanos(now)); !got.Equal(now) {
		t.Errorf("round trip %v → %v", now, got)
	}
}
