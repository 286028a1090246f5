package main

// The admin token cache of the remote commands: a token fetched by
// client_credentials is reused by later runs until shortly before it
// expires (docs/configuration.md, "Managing a running server").

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// tokenCacheMargin is how long before its expiry a cached token is no
// longer used: a run must not start with a token that expires mid-way.
const tokenCacheMargin = 60 * time.Second

// maxTokenCache bounds what the cache reads: it holds a few tokens, and a
// file grown past this is not ours to trust.
const maxTokenCache = 1 << 20

// cachedToken is an admin token in the cache file.
type cachedToken struct {
	AccessToken string `json:"access_token"`
	ExpiresAt   int64  `json:"expires_at"` // Unix seconds
}

// tokenCache is the file at path (no cache when path is empty), keyed by
// a digest of server URL, client id and secret: another server, client or
// secret never gets this token, and the secret is not in the file.
type tokenCache struct {
	path string
	now  func() time.Time
}

// defaultTokenCache is the cache path when --token-cache is not given:
// keyhook/admin-tokens.json under XDG_CACHE_HOME or HOME/.cache, read from
// env (so tests use none unless they set one).
func defaultTokenCache(env lookupEnv) string {
	if d, ok := env("XDG_CACHE_HOME"); ok && filepath.IsAbs(d) {
		return filepath.Join(d, "keyhook", "admin-tokens.json")
	}
	if h, ok := env("HOME"); ok && filepath.IsAbs(h) {
		return filepath.Join(h, ".cache", "keyhook", "admin-tokens.json")
	}
	return ""
}

func tokenCacheKey(url, clientID, secret string) string {
	sum := sha256.Sum256([]byte(url + "\x00" + clientID + "\x00" + secret))
	return hex.EncodeToString(sum[:])
}

// read is the file's tokens. A file others may read or write, or that is
// not a regular file, is not used: it could hand this run another's token
// or leak ours.
func (tc *tokenCache) read() (map[string]cachedToken, error) {
	f, err := os.Open(tc.path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]cachedToken{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: not a private file (want mode 0600), not used", tc.path)
	}
	if fi.Size() > maxTokenCache {
		return nil, fmt.Errorf("%s: over %d bytes, not used", tc.path, maxTokenCache)
	}
	m := map[string]cachedToken{}
	if err := json.NewDecoder(f).Decode(&m); err != nil {
		return map[string]cachedToken{}, nil // unreadable: start afresh
	}
	return m, nil
}

// get is the cached token for key, when it is good for a while yet.
func (tc *tokenCache) get(key string) string {
	if tc.path == "" {
		return ""
	}
	m, err := tc.read()
	if err != nil {
		return ""
	}
	t, ok := m[key]
	if !ok || time.Unix(t.ExpiresAt, 0).Before(tc.now().Add(tokenCacheMargin)) {
		return ""
	}
	return t.AccessToken
}

// put stores token for key until it expires (expiresIn seconds from now;
// a token without expires_in is not cached), dropping expired entries. A
// token is a convenience: a cache that cannot be written is an error the
// caller reports as a warning.
func (tc *tokenCache) put(key, token string, expiresIn int64) error {
	if tc.path == "" {
		return nil
	}
	m, err := tc.read()
	if err != nil {
		return err
	}
	now := tc.now()
	for k, t := range m {
		if time.Unix(t.ExpiresAt, 0).Before(now) {
			delete(m, k)
		}
	}
	if token == "" {
		delete(m, key)
	} else if expiresIn > 0 {
		m[key] = cachedToken{AccessToken: token, ExpiresAt: now.Unix() + expiresIn}
	}
	return tc.write(m)
}

// write replaces the file through a private temporary file in a private
// directory, so that no reader sees half a file and no other user can
// swap it.
func (tc *tokenCache) write(m map[string]cachedToken) error {
	dir := filepath.Dir(tc.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".admin-tokens-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), tc.path)
}
