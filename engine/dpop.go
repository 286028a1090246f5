package engine

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DPoP, demonstrating proof of possession (RFC 9449; docs/dpop.md): a
// client signs a short JWT, the proof, with a key of its own for each
// request; the tokens issued with a proof are bound to that key by its
// RFC 7638 thumbprint (cnf.jkt), and a resource takes them only with a
// fresh proof by the same key.

// Limits of DPoP proofs.
const (
	// DPoPProofWindow is how far a proof's iat may be from the server's
	// clock, either way (RFC 9449 §11.1): a proof is accepted for this
	// long, and its jti is remembered as long.
	DPoPProofWindow = 60 * time.Second
	// MaxDPoPProofBytes bounds the DPoP header (the proof carries a public
	// key, which for RSA 4096 is under 1 KiB).
	MaxDPoPProofBytes = 8 << 10
	// maxDPoPJTIBytes bounds a proof's jti, which is stored for replay
	// detection.
	maxDPoPJTIBytes = 256
	// dpopNonceWindow is how long a server nonce is good for: one made
	// in a window is accepted in it and the next (RFC 9449 §8).
	dpopNonceWindow = 5 * time.Minute
	// typDPoP is the typ of a proof (RFC 9449 §4.2).
	typDPoP = "dpop+jwt"
	// dpopJTIPrefix keeps proof ids apart from client assertion ids in
	// the JTI store: the "client" of a proof's jti is its key.
	dpopJTIPrefix = "dpop:"
	// TokenTypeDPoP is the token_type of a bound access token (RFC 9449 §5).
	TokenTypeDPoP = "DPoP"
)

// Error codes of RFC 9449 §12.2.
const (
	// CodeInvalidDPoPProof answers a missing, malformed, expired,
	// replayed or otherwise wrong proof (RFC 9449 §5, §7.1).
	CodeInvalidDPoPProof ErrorCode = "invalid_dpop_proof"
	// CodeUseDPoPNonce asks for a proof with the nonce of the DPoP-Nonce
	// header (RFC 9449 §8, §9).
	CodeUseDPoPNonce ErrorCode = "use_dpop_nonce"
)

// DPoPSigningAlgs are the algorithms a proof may be signed with
// (dpop_signing_alg_values_supported): asymmetric only (RFC 9449 §4.2).
var DPoPSigningAlgs = []string{"ES256", "RS256", "PS256", "EdDSA"}

var dpopJoseAlgs = func() []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(DPoPSigningAlgs))
	for i, a := range DPoPSigningAlgs {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}()

// DPoPProof is what a request carries for RFC 9449: the values of its
// DPoP headers, its method, and its path, which the server's issuer
// prefixes to make the URI the proof's htu must name. The Host header is
// never used: a proof names the server as clients know it.
type DPoPProof struct {
	Headers []string
	Method  string
	Path    string
}

// Given reports whether the request has a DPoP header.
func (p *DPoPProof) Given() bool { return len(p.Headers) > 0 }

// dpopClaims are the claims of a proof (RFC 9449 §4.2).
type dpopClaims struct {
	JTI   string   `json:"jti"`
	HTM   string   `json:"htm"`
	HTU   string   `json:"htu"`
	IAT   *float64 `json:"iat"`
	ATH   *string  `json:"ath"`
	Nonce *string  `json:"nonce"`
}

func badProof(format string, args ...any) *Error {
	err := Errorf(CodeInvalidDPoPProof, format, args...)
	err.DPoP = true
	return err
}

// checkDPoP checks the proof of a request (RFC 9449 §4.3) and answers
// the thumbprint of its key. accessToken, when not empty, is the token
// the proof must name by its hash (ath, RFC 9449 §4.2). The proof's jti
// is recorded in the JTI store, shared by every instance, so that a
// proof is taken once.
func (e *Engine) checkDPoP(ctx context.Context, p *DPoPProof, accessToken string) (string, error) {
	if len(p.Headers) != 1 {
		return "", badProof("send exactly one DPoP header")
	}
	raw := strings.TrimSpace(p.Headers[0])
	if raw == "" || len(raw) > MaxDPoPProofBytes {
		return "", badProof("the DPoP proof is empty or longer than %d bytes", MaxDPoPProofBytes)
	}
	jws, err := jose.ParseSignedCompact(raw, dpopJoseAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return "", badProof("the DPoP proof is not a JWS signed with one of %s", strings.Join(DPoPSigningAlgs, ", "))
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != typDPoP {
		return "", badProof("the DPoP proof's typ must be %s", typDPoP)
	}
	jwk := h.JSONWebKey
	if jwk == nil || !jwk.Valid() || !jwk.IsPublic() {
		return "", badProof("the DPoP proof's jwk header must be a public key")
	}
	if _, symmetric := jwk.Key.([]byte); symmetric {
		return "", badProof("the DPoP proof's jwk header must be a public key")
	}
	payload, err := jws.Verify(jwk)
	if err != nil {
		return "", badProof("the DPoP proof's signature does not verify with its jwk")
	}
	var cl dpopClaims
	if err := json.Unmarshal(payload, &cl); err != nil {
		return "", badProof("the DPoP proof's claims are malformed")
	}
	if cl.JTI == "" || len(cl.JTI) > maxDPoPJTIBytes {
		return "", badProof("the DPoP proof needs a jti of at most %d bytes", maxDPoPJTIBytes)
	}
	if cl.HTM != p.Method {
		return "", badProof("the DPoP proof's htm is not the request's method")
	}
	want, _ := normalHTU(e.cfg.Issuer + p.Path)
	if got, ok := normalHTU(cl.HTU); !ok || got != want {
		return "", badProof("the DPoP proof's htu is not this endpoint's URI (%s)", want)
	}
	now := e.now()
	if cl.IAT == nil || math.IsNaN(*cl.IAT) || math.Abs(*cl.IAT) > 1e11 {
		return "", badProof("the DPoP proof needs an iat")
	}
	iat := time.Unix(int64(*cl.IAT), 0)
	if iat.Before(now.Add(-DPoPProofWindow)) || iat.After(now.Add(DPoPProofWindow)) {
		return "", badProof("the DPoP proof's iat is more than %d seconds away from the server's clock", int(DPoPProofWindow/time.Second))
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		want := base64.RawURLEncoding.EncodeToString(sum[:])
		if cl.ATH == nil || subtle.ConstantTimeCompare([]byte(*cl.ATH), []byte(want)) != 1 {
			return "", badProof("the DPoP proof's ath is not the hash of the access token")
		}
	}
	if e.cfg.DPoPNonce && (cl.Nonce == nil || !e.validDPoPNonce(*cl.Nonce, now)) {
		err := Errorf(CodeUseDPoPNonce, "the DPoP proof must carry the nonce of the DPoP-Nonce header")
		err.DPoP, err.DPoPNonce = true, e.dpopNonce(now)
		return "", err
	}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", badProof("the DPoP proof's jwk has no thumbprint")
	}
	jkt := base64.RawURLEncoding.EncodeToString(tp)
	// Remembered until no clock could take the proof any more.
	until := iat
	if now.After(until) {
		until = now
	}
	err = e.st.JTIs.UseJTI(ctx, dpopJTIPrefix+jkt, cl.JTI, until.Add(DPoPProofWindow))
	if errors.Is(err, ErrConflict) {
		return "", badProof("the DPoP proof was used before (jti)")
	}
	if err != nil {
		return "", storeFailure(err)
	}
	return jkt, nil
}

// normalHTU is u without query and fragment, normalised as RFC 3986
// §6.2.2 and §6.2.3 say (RFC 9449 §4.3): scheme and host in lower case,
// no default port, an empty path as "/", percent-encodings decoded where
// they need not be and upper-case where they must. Only absolute http(s)
// URIs without user information are URIs of this server.
func normalHTU(u string) (string, bool) {
	p, err := url.Parse(u)
	if err != nil || p.Opaque != "" || p.User != nil || p.Host == "" {
		return "", false
	}
	scheme := strings.ToLower(p.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", false
	}
	host, port := strings.ToLower(p.Hostname()), p.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	switch {
	case port != "":
		host = net.JoinHostPort(host, port)
	case strings.Contains(host, ":"):
		host = "[" + host + "]"
	}
	path := (&url.URL{Path: p.Path}).EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, true
}

// Server nonces (RFC 9449 §8) need no shared state: a nonce is an HMAC
// of the current window's number under a key derived from the
// client-secret sealing key, which every instance on one database holds.

func (e *Engine) dpopNonceFor(window int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(window))
	m := hmac.New(sha256.New, e.nonceKey)
	m.Write([]byte("keyhook dpop nonce\x00"))
	m.Write(b[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:24])
}

func (e *Engine) dpopNonce(now time.Time) string {
	return e.dpopNonceFor(now.Unix() / int64(dpopNonceWindow/time.Second))
}

func (e *Engine) validDPoPNonce(n string, now time.Time) bool {
	w := now.Unix() / int64(dpopNonceWindow/time.Second)
	for _, x := range []int64{w, w - 1} {
		if hmac.Equal([]byte(n), []byte(e.dpopNonceFor(x))) {
			return true
		}
	}
	return false
}

// DPoPNonce is the nonce proofs must carry now, or "" when the server
// asks for none (Config.DPoPNonce). It changes every few minutes; a
// server sends it as DPoP-Nonce (RFC 9449 §8.2).
func (e *Engine) DPoPNonce() string {
	if !e.cfg.DPoPNonce {
		return ""
	}
	return e.dpopNonce(e.now())
}

// deriveNonceKey is the key of the server nonces, from the sealing key.
func deriveNonceKey(sealKey []byte) []byte { return deriveKey(sealKey, "keyhook dpop nonce key") }

// deriveKey is a key for one purpose, derived from the client-secret
// sealing key: HMAC-SHA256 of the purpose's name.
func deriveKey(sealKey []byte, purpose string) []byte {
	m := hmac.New(sha256.New, sealKey)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// tokenDPoP checks the proof of a token request (RFC 9449 §5) and
// answers the thumbprint the tokens are bound to ("" when none). A
// client registered with dpop_bound_access_tokens must send one (RFC
// 9449 §5.2).
func (e *Engine) tokenDPoP(ctx context.Context, c *Client, req *TokenRequest) (string, error) {
	if !req.DPoP.Given() {
		if c.DPoPBoundAccessTokens {
			return "", badProof("this client must send a DPoP proof (dpop_bound_access_tokens)")
		}
		return "", nil
	}
	return e.checkDPoP(ctx, &req.DPoP, "")
}

// cnfClaim is the confirmation claim of a bound token (RFC 7800 §3.1,
// RFC 9449 §6.1).
func cnfClaim(jkt string) map[string]any { return map[string]any{"jkt": jkt} }

// ResourceAccess is how a request to a protected resource of this server
// (userinfo, introspection, the admin API) presents its access token:
// Authorization: Bearer (RFC 6750 §2.1) or DPoP with a proof (RFC 9449
// §7.1).
type ResourceAccess struct {
	// Scheme is "Bearer" or "DPoP", in any case.
	Scheme string
	Token  string
	DPoP   DPoPProof
}

// ResourceToken finds the active access token a request presents. A
// token bound to a DPoP key is taken only with the DPoP scheme and a
// proof by that key naming this request and the token; a bearer token
// is taken only as Bearer.
func (e *Engine) ResourceToken(ctx context.Context, ra *ResourceAccess) (*Token, error) {
	dpop := strings.EqualFold(ra.Scheme, TokenTypeDPoP)
	if !dpop && !strings.EqualFold(ra.Scheme, "Bearer") {
		return nil, Errorf(CodeInvalidToken, "an access token is required")
	}
	if ra.Token == "" {
		err := Errorf(CodeInvalidToken, "an access token is required")
		err.DPoP = dpop
		return nil, err
	}
	jkt := ""
	if dpop {
		if !ra.DPoP.Given() {
			return nil, badProof("a DPoP access token needs a DPoP proof")
		}
		var err error
		if jkt, err = e.checkDPoP(ctx, &ra.DPoP, ra.Token); err != nil {
			return nil, err
		}
	}
	t, err := e.lookupToken(ctx, ra.Token)
	if err != nil {
		return nil, err
	}
	if t == nil || t.Kind != KindAccess || !t.Active(e.now()) {
		err := Errorf(CodeInvalidToken, "the access token is not active")
		err.DPoP = dpop
		return nil, err
	}
	if !e.forThisServer(t) {
		// RFC 8707 §2: a token asked for resources is for them; the
		// resource server it was handed to must not be able to use it
		// here (userinfo, the admin API).
		err := Errorf(CodeInvalidToken, "the access token is for other resources than this server")
		err.DPoP = dpop
		return nil, err
	}
	switch {
	case !dpop && t.JKT != "":
		// RFC 9449 §7.2: a bound token presented as a bearer token.
		err := Errorf(CodeInvalidToken, "the access token is bound to a DPoP key: send it as Authorization: DPoP with a proof")
		err.DPoP = true
		return nil, err
	case dpop && t.JKT != jkt:
		err := Errorf(CodeInvalidToken, "the access token is not bound to the DPoP proof's key")
		err.DPoP = true
		return nil, err
	}
	return t, nil
}
