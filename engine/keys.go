package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// keyRing holds the server's signing keys in memory. The current key signs;
// every key in the ring verifies and is published in the JWKS until no
// token signed with it can still be valid (RFC 7517; the JWKS keeps retired keys).
type keyRing struct {
	mu      sync.RWMutex
	current *loadedKey
	byID    map[string]*loadedKey
	// lastMissReload rate-limits reloads triggered by unknown kids.
	lastMissReload time.Time
}

type loadedKey struct {
	// kid and alg never change; rec (retirement) is swapped under
	// keyRing.mu and read only under it.
	kid     string
	rec     *SigningKey
	private jose.JSONWebKey
	public  jose.JSONWebKey
	alg     jose.SignatureAlgorithm
	// signers caches one signer per typ for headers without extras.
	signers sync.Map // typ -> jose.Signer
}

// verifyAlgs are the JWS algorithms accepted for keyhook's own tokens.
var verifyAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA}

// NewSigningKey generates a private key for alg (RS256, PS256, ES256, EdDSA).
func NewSigningKey(alg string, now time.Time) (*SigningKey, error) {
	var key any
	var err error
	switch alg {
	case "RS256", "PS256":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("unsupported signing algorithm %q", alg)
	}
	if err != nil {
		return nil, err
	}
	kid := randomID()
	jwk := jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: "sig"}
	raw, err := jwk.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return &SigningKey{ID: kid, Alg: alg, PrivateJWK: string(raw), CreatedAt: now}, nil
}

// loadKey opens rec's private key (sealed under the KEK or not, see
// engine/kek.go).
func (e *Engine) loadKey(rec *SigningKey) (*loadedKey, error) {
	plain, _, err := e.unwrap([]byte(rec.PrivateJWK))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", rec.ID, err)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(plain); err != nil {
		return nil, fmt.Errorf("signing key %s: %w", rec.ID, err)
	}
	jwk.KeyID, jwk.Algorithm, jwk.Use = rec.ID, rec.Alg, "sig"
	if k, ok := jwk.Key.(*rsa.PrivateKey); ok {
		// Without its precomputed values every signature would first
		// validate and precompute the key again (a third of its cost).
		k.Precompute()
	}
	return &loadedKey{kid: rec.ID, rec: rec, private: jwk, public: jwk.Public(), alg: jose.SignatureAlgorithm(rec.Alg)}, nil
}

// reloadKeys reads every key from the store; the newest unretired one is
// current. With no key at all it creates one.
func (e *Engine) reloadKeys(ctx context.Context) error { return e.loadKeys(ctx, false) }

// loadKeys is reloadKeys; at start (strict) a key that cannot be opened
// stops the server, later it is logged and skipped.
func (e *Engine) loadKeys(ctx context.Context, strict bool) error {
	return e.keysGuard.reload(ctx, func(ctx context.Context) (func() error, error) {
		recs, err := e.st.Keys.SigningKeys(ctx)
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			_, err := e.RotateKey(ctx)
			return nil, err
		}
		return func() error { return e.useKeys(recs, strict) }, nil
	})
}

// useKeys makes recs the key ring: the newest unretired one current.
func (e *Engine) useKeys(recs []*SigningKey, strict bool) error {
	sort.Slice(recs, func(i, j int) bool { return recs[i].CreatedAt.After(recs[j].CreatedAt) })
	e.keys.mu.Lock()
	defer e.keys.mu.Unlock()
	byID := make(map[string]*loadedKey, len(recs))
	var current *loadedKey
	for _, rec := range recs {
		lk, ok := e.keys.byID[rec.ID]
		if !ok {
			var err error
			if lk, err = e.loadKey(rec); err != nil {
				if strict {
					return err
				}
				e.log.Error("skipping unreadable signing key", "kid", rec.ID, "err", err)
				continue
			}
		}
		lk.rec = rec
		byID[rec.ID] = lk
		if current == nil && rec.RetiredAt.IsZero() {
			current = lk
		}
	}
	if current == nil {
		return errors.New("no usable current signing key")
	}
	e.keys.byID, e.keys.current = byID, current
	return nil
}

// RotateKey makes a new key, of the configured algorithm, current; older
// keys stay published until their tokens expire.
func (e *Engine) RotateKey(ctx context.Context) (*SigningKey, error) {
	rec, err := NewSigningKey(e.Properties().AccessTokenSigningAlg, e.now())
	if err != nil {
		return nil, err
	}
	rec.PrivateJWK = string(e.wrap([]byte(rec.PrivateJWK)))
	if err := e.st.Keys.AddSigningKey(ctx, rec); err != nil {
		return nil, storeFailure(err)
	}
	lk, err := e.loadKey(rec)
	if err != nil {
		return nil, err
	}
	e.keysGuard.wrote(func() {
		e.keys.mu.Lock()
		if e.keys.byID == nil {
			e.keys.byID = map[string]*loadedKey{}
		}
		retired := e.now()
		for _, k := range e.keys.byID {
			if k.rec.RetiredAt.IsZero() {
				cp := *k.rec
				cp.RetiredAt = retired
				k.rec = &cp
			}
		}
		e.keys.byID[rec.ID] = lk
		e.keys.current = lk
		e.keys.mu.Unlock()
	})
	e.log.Info("new current signing key", "kid", rec.ID, "alg", rec.Alg)
	return rec, nil
}

// JWKS is the public JWK Set of every key that may still verify a token.
func (e *Engine) JWKS() jose.JSONWebKeySet {
	e.keys.mu.RLock()
	defer e.keys.mu.RUnlock()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(e.keys.byID))}
	for _, k := range e.keys.byID {
		set.Keys = append(set.Keys, k.public)
	}
	sort.Slice(set.Keys, func(i, j int) bool { return set.Keys[i].KeyID < set.Keys[j].KeyID })
	return set
}

func (e *Engine) currentKey() *loadedKey {
	e.keys.mu.RLock()
	defer e.keys.mu.RUnlock()
	return e.keys.current
}

func (e *Engine) keyByID(ctx context.Context, kid string) *loadedKey {
	e.keys.mu.RLock()
	k := e.keys.byID[kid]
	e.keys.mu.RUnlock()
	if k != nil {
		return k
	}
	// Another instance may have rotated: reload, at most once a second.
	e.keys.mu.Lock()
	stale := e.now().Sub(e.keys.lastMissReload) > time.Second
	if stale {
		e.keys.lastMissReload = e.now()
	}
	e.keys.mu.Unlock()
	if !stale || e.reloadKeys(ctx) != nil {
		return nil
	}
	e.keys.mu.RLock()
	defer e.keys.mu.RUnlock()
	return e.keys.byID[kid]
}

// signJWT signs claims with the current key. header may hold fields
// beyond alg, kid and typ, which the server sets itself and ignores here.
func (e *Engine) signJWT(typ string, header map[string]any, claims map[string]any) (string, string, error) {
	k := e.currentKey()
	if k == nil {
		return "", "", errors.New("no signing key")
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", "", err
	}
	var extra map[string]any
	for name, v := range header {
		if !slices.Contains(protectedHeaderNames, name) {
			if extra == nil {
				extra = map[string]any{}
			}
			extra[name] = v
		}
	}
	var signer jose.Signer
	if len(extra) == 0 {
		if s, ok := k.signers.Load(typ); ok {
			signer = s.(jose.Signer)
		}
	}
	if signer == nil {
		opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
		for name, v := range extra {
			opts = opts.WithHeader(jose.HeaderKey(name), v)
		}
		signer, err = jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.private}, opts)
		if err != nil {
			return "", "", err
		}
		if len(extra) == 0 {
			k.signers.Store(typ, signer)
		}
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", "", err
	}
	out, err := jws.CompactSerialize()
	return out, k.kid, err
}

// verifiedJTI checks a JWT signed by one of the server's keys and returns
// its jti; any failure is "" without detail for the caller. A JWT once
// verified is remembered (by its SHA-256) with the key that signed it, and
// trusted again while that key is still the server's: the signature of a
// given string under a given key does not change.
func (e *Engine) verifiedJTI(ctx context.Context, raw string) string {
	sum := sha256.Sum256([]byte(raw))
	if v, ok := e.verified.Get(sum); ok {
		e.keys.mu.RLock()
		k := e.keys.byID[v.kid]
		e.keys.mu.RUnlock()
		if k == v.key {
			return v.jti
		}
	}
	payload, _, k := e.verifyOwnJWT(ctx, raw)
	if k == nil {
		return ""
	}
	var claims struct {
		JTI any `json:"jti"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return ""
	}
	jti, _ := claims.JTI.(string)
	if jti != "" {
		e.verified.Add(sum, verifiedJWT{jti: jti, kid: k.kid, key: k})
	}
	return jti
}

// verifyOwnJWT checks that raw is a compact JWS signed by one of the
// server's keys, with that key's alg; it returns the payload, the
// header's typ and the key, or a nil key when any of it fails.
func (e *Engine) verifyOwnJWT(ctx context.Context, raw string) ([]byte, string, *loadedKey) {
	jws, err := jose.ParseSigned(raw, verifyAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, "", nil
	}
	hdr := jws.Signatures[0].Header
	k := e.keyByID(ctx, hdr.KeyID)
	if k == nil || jose.SignatureAlgorithm(hdr.Algorithm) != k.alg {
		return nil, "", nil
	}
	payload, err := jws.Verify(k.public)
	if err != nil {
		return nil, "", nil
	}
	typ, _ := hdr.ExtraHeaders[jose.HeaderType].(string)
	return payload, typ, k
}

// verifiedJWTs bounds the JWTs verifiedJTI remembers (~200 bytes each).
const verifiedJWTs = 20_000

// verifiedJWT is a JWT whose signature verifiedJTI checked.
type verifiedJWT struct {
	jti, kid string
	key      *loadedKey
}
