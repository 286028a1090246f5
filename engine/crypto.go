package engine

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

// randomToken returns 256 bits of randomness, base64url without padding
// (RFC 6819 §5.1.4.2.2: opaque tokens carry at least 256 bits).
func randomToken() string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(32))
}

// randomID returns a shorter random identifier (128 bits) for ids that
// are not credentials: jti, family ids, key ids, client ids.
func randomID() string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(16))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("keyhook: crypto/rand failed: " + err.Error()) // never happens on Linux
	}
	return b
}

// TokenHash is the id under which an opaque token or code is stored: the
// value itself is never stored.
func TokenHash(value string) string {
	sum := sha256.Sum256([]byte(value))
	return hex.EncodeToString(sum[:])
}

// secretHashPrefix tags the client-secret hash format.
const secretHashPrefix = "hmac-sha256$"

// HashSecret hashes a client secret with a random salt. Client secrets are
// machine credentials checked on every token request, so a fast keyed hash
// is used; user passwords use a slow hash instead (see HashPassword).
func HashSecret(secret string) string {
	salt := randomBytes(16)
	return secretHashPrefix + base64.RawStdEncoding.EncodeToString(salt) + "$" +
		base64.RawStdEncoding.EncodeToString(macSecret(salt, secret))
}

func macSecret(salt []byte, secret string) []byte {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// dummySecretHash is compared against when a client is unknown so that
// unknown and known clients take the same time.
var dummySecretHash = HashSecret("keyhook-dummy-secret")

// VerifySecret compares secret with a hash made by HashSecret in constant time.
func VerifySecret(hash, secret string) bool {
	rest, ok := strings.CutPrefix(hash, secretHashPrefix)
	if !ok {
		return false
	}
	saltB64, sumB64, ok := strings.Cut(rest, "$")
	if !ok {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(saltB64)
	sum, err2 := base64.RawStdEncoding.DecodeString(sumB64)
	if err1 != nil || err2 != nil {
		return false
	}
	return subtle.ConstantTimeCompare(macSecret(salt, secret), sum) == 1
}

// sealer encrypts small secrets at rest with AES-256-GCM under a key kept
// in the server's own data (SecretStore), never in the code.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(plain string) string {
	nonce := randomBytes(s.aead.NonceSize())
	return base64.RawStdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(plain), nil))
}

func (s *sealer) open(sealed string) (string, error) {
	raw, err := base64.RawStdEncoding.DecodeString(sealed)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return "", errors.New("sealed secret is malformed")
	}
	plain, err := s.aead.Open(nil, raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():], nil)
	if err != nil {
		return "", err
	}
	return string(plain), nil
}
