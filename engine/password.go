package engine

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters (RFC 9106 §4, second recommended option, with less
// memory so a small server can verify a few logins at once).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// HashPassword hashes a user password with argon2id.
func HashPassword(password string) string {
	salt := randomBytes(16)
	sum := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(sum))
}

// dummyPasswordHash is verified against for unknown users so that unknown
// and known users take the same time.
var dummyPasswordHash = HashPassword("keyhook-dummy-password")

// argonHash is a parsed argon2id hash.
type argonHash struct {
	mem, t     uint32
	p          uint8
	salt, want []byte
}

func parseArgonHash(hash string) (*argonHash, bool) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return nil, false
	}
	var version int
	var h argonHash
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return nil, false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &h.mem, &h.t, &h.p); err != nil {
		return nil, false
	}
	var err1, err2 error
	h.salt, err1 = base64.RawStdEncoding.DecodeString(parts[4])
	h.want, err2 = base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || h.mem > 1<<20 || h.t > 16 || h.p == 0 {
		return nil, false
	}
	return &h, true
}

// passwordMemoryKiB is the memory verifying against hash takes, in KiB
// (0 for a hash that is not verified at all).
func passwordMemoryKiB(hash string) uint32 {
	h, ok := parseArgonHash(hash)
	if !ok {
		return 0
	}
	return h.mem
}

// VerifyPassword checks password against a hash made by HashPassword.
func VerifyPassword(hash, password string) bool {
	h, ok := parseArgonHash(hash)
	if !ok {
		return false
	}
	got := argon2.IDKey([]byte(password), h.salt, h.t, h.mem, h.p, uint32(len(h.want)))
	return subtle.ConstantTimeCompare(got, h.want) == 1
}
