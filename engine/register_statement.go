package engine

import (
	"encoding/json"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// softwareStatementAlgs are the signature algorithms a software
// statement may use.
var softwareStatementAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA}

// softwareStatementSkew is how far a statement's iat may lie in the
// future, for clocks that differ.
const softwareStatementSkew = time.Minute

// softwareStatementClaims verifies a software statement (RFC 7591 §2.3)
// with the trusted keys (Config.SoftwareStatementKeys) and returns its
// claims, the client metadata it vouches for, without the JWT's own
// claims. A statement that is not a signed JWT, does not verify, has
// expired or names no issuer is invalid_software_statement; one signed
// by a key keyhook does not trust is unapproved_software_statement.
func (e *Engine) softwareStatementClaims(raw any) (map[string]any, error) {
	keys := e.cfg.SoftwareStatementKeys
	if keys == nil || len(keys.Keys) == 0 {
		return nil, Errorf(CodeInvalidSoftwareStatement, "software statements are not accepted")
	}
	s, ok := raw.(string)
	if !ok {
		return nil, Errorf(CodeInvalidSoftwareStatement, "software_statement: must be a signed JWT")
	}
	jws, err := jose.ParseSigned(s, softwareStatementAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, Errorf(CodeInvalidSoftwareStatement, "software_statement: must be a signed JWT (RS256, PS256, ES256 or EdDSA)")
	}
	kid := jws.Signatures[0].Header.KeyID
	found := keys.Key(kid)
	if kid == "" || len(found) == 0 {
		return nil, Errorf(CodeUnapprovedSoftwareStatement, "the software statement's signer is not trusted")
	}
	var payload []byte
	for _, k := range found {
		if payload, err = jws.Verify(k.Key); err == nil {
			break
		}
	}
	if err != nil {
		return nil, Errorf(CodeInvalidSoftwareStatement, "the software statement's signature does not verify")
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil || claims == nil {
		return nil, Errorf(CodeInvalidSoftwareStatement, "the software statement's payload is not a JSON object")
	}
	if iss, _ := claims["iss"].(string); iss == "" {
		return nil, Errorf(CodeInvalidSoftwareStatement, "the software statement has no iss")
	}
	now := e.now()
	if v, ok := claims["exp"]; ok {
		exp, isNum := v.(float64)
		if !isNum || !now.Before(time.Unix(int64(exp), 0)) {
			return nil, Errorf(CodeInvalidSoftwareStatement, "the software statement has expired")
		}
	}
	if v, ok := claims["iat"]; ok {
		iat, isNum := v.(float64)
		if !isNum || time.Unix(int64(iat), 0).After(now.Add(softwareStatementSkew)) {
			return nil, Errorf(CodeInvalidSoftwareStatement, "the software statement is issued in the future")
		}
	}
	for _, c := range []string{"iss", "exp", "iat", "nbf", "jti", "aud", "sub"} {
		delete(claims, c)
	}
	return claims, nil
}
