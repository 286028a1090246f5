package engine

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// AlgEd25519 is RFC 9864's fully specified name for EdDSA with Ed25519;
// client assertions may use it or the older polymorphic "EdDSA" (RFC 8037
// §3.1), which keyhook reads as the same algorithm.
const AlgEd25519 = "Ed25519"

// The JWS algorithms a client assertion may use: the HMACs of
// client_secret_jwt and the signatures of private_key_jwt (Ed25519 under
// both its names). Registration, discovery and the check use these lists.
var (
	secretJWTAlgs  = []string{"HS256", "HS384", "HS512"}
	privateKeyAlgs = []string{"RS256", "PS256", "ES256", AlgEd25519, "EdDSA"}
)

// assertionAlgs are the algorithms go-jose parses assertions with (it
// does not know the name Ed25519, which parseAssertion verifies itself).
var assertionAlgs = func() []jose.SignatureAlgorithm {
	var out []jose.SignatureAlgorithm
	for _, a := range append(slices.Clone(secretJWTAlgs), privateKeyAlgs...) {
		if a != AlgEd25519 {
			out = append(out, jose.SignatureAlgorithm(a))
		}
	}
	return out
}()

// sameAlg reports whether two alg names name one algorithm (Ed25519 and
// EdDSA do).
func sameAlg(a, b string) bool {
	norm := func(s string) string {
		if s == AlgEd25519 {
			return string(jose.EdDSA)
		}
		return s
	}
	return norm(a) == norm(b)
}

// signedAssertion is a compact JWS client assertion (RFC 7515 §7.1),
// parsed but not yet verified. go-jose reads every algorithm but RFC
// 9864's Ed25519, which is verified here with crypto/ed25519.
type signedAssertion struct {
	alg, kid string
	tok      *jwt.JSONWebToken // nil for Ed25519
	// For Ed25519: the signing input, the signature and the payload.
	input, sig, payload []byte
}

func parseAssertion(s string) (*signedAssertion, error) {
	h, rest, ok := strings.Cut(s, ".")
	if !ok {
		return nil, errors.New("not a compact JWS")
	}
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return nil, err
	}
	var hdr struct {
		Alg  string          `json:"alg"`
		Kid  string          `json:"kid"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(raw, &hdr); err != nil {
		return nil, err
	}
	if hdr.Alg != AlgEd25519 {
		tok, err := jwt.ParseSigned(s, assertionAlgs)
		if err != nil || len(tok.Headers) != 1 {
			return nil, errors.New("not a valid signed JWT")
		}
		return &signedAssertion{alg: tok.Headers[0].Algorithm, kid: tok.Headers[0].KeyID, tok: tok}, nil
	}
	if hdr.Crit != nil {
		return nil, errors.New("crit is not supported") // RFC 7515 §4.1.11
	}
	p, sigText, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sigText, ".") {
		return nil, errors.New("not a compact JWS")
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	sig, err2 := base64.RawURLEncoding.DecodeString(sigText)
	if err1 != nil || err2 != nil || len(sig) != ed25519.SignatureSize {
		return nil, errors.New("not a valid signed JWT")
	}
	return &signedAssertion{alg: AlgEd25519, kid: hdr.Kid, input: []byte(h + "." + p), sig: sig, payload: payload}, nil
}

// unverifiedClaims reads the claims without checking the signature, to
// find the client whose key verifies it.
func (a *signedAssertion) unverifiedClaims(out *jwt.Claims) error {
	if a.tok != nil {
		return a.tok.UnsafeClaimsWithoutVerification(out)
	}
	return json.Unmarshal(a.payload, out)
}

// claims verifies the signature with key and reads the claims.
func (a *signedAssertion) claims(key any, out *jwt.Claims) error {
	if a.tok != nil {
		return a.tok.Claims(key, out)
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok || !ed25519.Verify(pub, a.input, a.sig) {
		return errors.New("the signature does not verify")
	}
	return json.Unmarshal(a.payload, out)
}
