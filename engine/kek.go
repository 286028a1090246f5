package engine

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Key encryption at rest (docs/security.md, docs/keys.md).
//
// The database holds the server's signing keys and the key that seals
// client_secret_jwt secrets. Whoever reads it (a backup, a replica, a
// leaked dump) can otherwise sign tokens as the server. With a
// key-encryption key (KEK, Config.KEK: 32 bytes kept outside the
// database) both are stored sealed with AES-256-GCM under it:
//
//   - a signing key's private JWK is stored as kekPrefix + base64(nonce ‖
//     ciphertext ‖ tag);
//   - the sealing key is stored the same way under its usual secret name.
//
// Values stored before a KEK was configured are sealed in place at the
// first start with one (the same key bytes, so tokens and sealed client
// secrets stay valid); UnencryptedKeys reports any that could not be. A
// sealed value without a KEK, or with a different one, stops the server
// at start: it never signs with a key it cannot account for.

// kekPrefix marks a value sealed under the KEK.
const kekPrefix = "kek1:"

// KEKSize is the length of a key-encryption key in bytes (AES-256).
const KEKSize = 32

// ParseKEK decodes a key-encryption key written as standard or URL-safe
// base64, with or without padding and surrounding white space.
func ParseKEK(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	var key []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err = enc.DecodeString(text); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("a key-encryption key must be base64")
	}
	if len(key) != KEKSize {
		return nil, fmt.Errorf("a key-encryption key must be %d bytes, not %d", KEKSize, len(key))
	}
	return key, nil
}

// NewKEK returns a fresh key-encryption key as base64.
func NewKEK() string { return base64.StdEncoding.EncodeToString(randomBytes(KEKSize)) }

// wrap seals plain under the KEK; without one it returns plain.
func (e *Engine) wrap(plain []byte) []byte {
	if e.kek == nil {
		return plain
	}
	return []byte(kekPrefix + e.kek.seal(string(plain)))
}

// unwrap opens a value stored by wrap. sealed reports whether it was
// stored under a KEK.
func (e *Engine) unwrap(stored []byte) (plain []byte, sealed bool, err error) {
	if !strings.HasPrefix(string(stored), kekPrefix) {
		return stored, false, nil
	}
	if e.kek == nil {
		return nil, true, errors.New("it is sealed with a key-encryption key and none is configured (--kek-file or KEYHOOK_KEK)")
	}
	out, err := e.kek.open(strings.TrimPrefix(string(stored), kekPrefix))
	if err != nil {
		return nil, true, errors.New("the configured key-encryption key does not open it (a different key?)")
	}
	return []byte(out), true, nil
}

// loadSealKey reads (or creates) the key that seals client secrets.
func (e *Engine) loadSealKey(ctx context.Context) error {
	fresh := randomBytes(32)
	stored, err := e.st.Secrets.Secret(ctx, sealKeySecretName, e.wrap(fresh))
	if err != nil {
		return fmt.Errorf("loading the sealing key: %w", err)
	}
	key, sealed, err := e.unwrap(stored)
	if err != nil {
		return fmt.Errorf("the client-secret sealing key: %w", err)
	}
	if e.seal, err = newSealer(key); err != nil {
		return fmt.Errorf("the client-secret sealing key: %w", err)
	}
	e.nonceKey = deriveNonceKey(key)
	e.userCodeKey = deriveKey(key, "keyhook device user code key")
	if !sealed && e.kek != nil {
		if err := e.st.Secrets.ResealSecret(ctx, sealKeySecretName, stored, e.wrap(key)); err != nil {
			e.log.Error("could not seal the client-secret sealing key under the key-encryption key", "err", err)
		} else {
			sealed = true
			e.log.Info("sealed the client-secret sealing key under the key-encryption key")
		}
	}
	e.sealKeyPlain = !sealed
	return nil
}

// resealSigningKeys seals, in place, the signing keys stored before a KEK
// was configured.
func (e *Engine) resealSigningKeys(ctx context.Context) {
	if e.kek == nil {
		return
	}
	e.keys.mu.Lock()
	defer e.keys.mu.Unlock()
	for kid, lk := range e.keys.byID {
		if strings.HasPrefix(lk.rec.PrivateJWK, kekPrefix) {
			continue
		}
		next := string(e.wrap([]byte(lk.rec.PrivateJWK)))
		if err := e.st.Keys.ResealSigningKey(ctx, kid, lk.rec.PrivateJWK, next); err != nil {
			e.log.Error("could not seal a signing key under the key-encryption key", "kid", kid, "err", err)
			continue
		}
		cp := *lk.rec
		cp.PrivateJWK = next
		lk.rec = &cp
		e.log.Info("sealed a signing key under the key-encryption key", "kid", kid)
	}
}

// KeyEncryption is what UnencryptedKeys reports.
type KeyEncryption struct {
	// KEK is whether a key-encryption key is configured.
	KEK bool
	// PlainSigningKeys are the kids of signing keys stored unencrypted.
	PlainSigningKeys []string
	// PlainSealKey is whether the client-secret sealing key is stored
	// unencrypted.
	PlainSealKey bool
	// PlainScriptSecrets names the scripts whose secrets are stored
	// unencrypted: set before the KEK was, and not written since
	// (engine/scriptsecrets.go).
	PlainScriptSecrets []string
}

// Unencrypted reports whether any key or script secret is stored in the
// clear.
func (k KeyEncryption) Unencrypted() bool {
	return k.PlainSealKey || len(k.PlainSigningKeys) > 0 || len(k.PlainScriptSecrets) > 0
}

// UnencryptedKeys reports which of the server's keys the database holds in
// the clear (all of them without a KEK).
func (e *Engine) UnencryptedKeys() KeyEncryption {
	out := KeyEncryption{KEK: e.kek != nil, PlainSealKey: e.sealKeyPlain}
	e.plainSecretsMu.Lock()
	out.PlainScriptSecrets = slices.Sorted(maps.Keys(e.plainSecrets))
	e.plainSecretsMu.Unlock()
	e.keys.mu.RLock()
	defer e.keys.mu.RUnlock()
	for kid, lk := range e.keys.byID {
		if !strings.HasPrefix(lk.rec.PrivateJWK, kekPrefix) {
			out.PlainSigningKeys = append(out.PlainSigningKeys, kid)
		}
	}
	return out
}
