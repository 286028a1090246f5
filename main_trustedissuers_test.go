package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportTrustedIssuers: keyhook import reads a trusted_issuers
// section (docs/jwt-bearer.md), export writes it back, and a bad entry
// is refused naming its file, line and member.
func TestImportTrustedIssuers(t *testing.T) {
	const good = `trusted_issuers:
  - name: partner
    issuer: https://idp.partner.example
    jwks_uri: https://idp.partner.example/jwks.json
    allowed_subjects: ["*"]
    allowed_scopes: [orders.read]
    allowed_clients: [partner-gateway]
`
	const bad = `trusted_issuers:
  - name: ok
    issuer: https://ok.example
    jwks_uri: https://ok.example/jwks.json
  - name: wrong
    issuer: https://wrong.example
    jwks_uri: https://wrong.example/jwks.json
    allowed_scopes: ["keyhook:admin"]
`
	dir := t.TempDir()
	goodFile, badFile := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(goodFile, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badFile, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	dsn := "sqlite:" + filepath.Join(dir, "keyhook.db")
	if code, _, stderr := runCLI(t, nil, "import", "--db", dsn, goodFile); code != 0 {
		t.Fatalf("import: %d %s", code, stderr)
	}
	code, exp, stderr := runCLI(t, nil, "export", "--db", dsn)
	if code != 0 || !strings.Contains(exp, "trusted_issuers:") || !strings.Contains(exp, "https://idp.partner.example/jwks.json") ||
		!strings.Contains(exp, "partner-gateway") {
		t.Fatalf("export: %d %s\n%s", code, stderr, exp)
	}
	code, _, stderr = runCLI(t, nil, "import", "--db", dsn, badFile)
	if code != 1 || !strings.Contains(stderr, "trusted_issuers[1].allowed_scopes") {
		t.Fatalf("bad import: %d %s", code, stderr)
	}
	code, exp, _ = runCLI(t, nil, "export", "--db", dsn)
	if code != 0 || strings.Contains(exp, "ok.example") {
		t.Fatalf("a refused import left its first entry:\n%s", exp)
	}
}
