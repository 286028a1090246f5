package main

// The HTTP client the remote command groups (client, script, user, config,
// token) share: the admin API of a running server (docs/admin-api.md),
// authenticated with an admin token fetched by client_credentials (RFC 6749
// section 4.4) and kept in a private cache file until shortly before it
// expires (cmd_tokencache.go).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// remote is a server's admin API and the credentials to call it.
type remote struct {
	url, clientID, clientSecret, output string
	cachePath                           string
	stdout, stderr                      io.Writer
	hc                                  *http.Client
	token                               string
	// cache holds admin tokens between runs; cached says r.token came
	// from it (a server that refuses it gets a fresh one, once).
	cache  tokenCache
	cached bool
}

// remoteFlags adds --url, --client-id, --client-secret and -o to fs.
func (r *remote) flags(fs *pflag.FlagSet) {
	fs.StringVar(&r.url, "url", "http://127.0.0.1:8080", "base URL of the keyhook server")
	fs.StringVar(&r.clientID, "client-id", "keyhook-admin", "admin client that calls the admin API")
	fs.StringVar(&r.clientSecret, "client-secret", "", "its secret")
	fs.StringVarP(&r.output, "output", "o", "text", "output: text (tables) or json (the server's JSON)")
	fs.StringVar(&r.cachePath, "token-cache", "", "file caching admin tokens between runs (default keyhook/admin-tokens.json in the user cache directory; off: none)")
}

// remoteCommand is a command of a remote group: run gets r with its flags
// read from the command line and the environment.
func remoteCommand(env lookupEnv, stdout io.Writer, cmd *cobra.Command, run func(c *cobra.Command, r *remote, args []string) error) *cobra.Command {
	r := &remote{stdout: stdout, hc: &http.Client{Timeout: 30 * time.Second}}
	r.flags(cmd.Flags())
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if err := applyEnv(c.Flags(), env); err != nil {
			return err
		}
		if r.output != "text" && r.output != "json" {
			return badValue(c, "output", fmt.Errorf("%q is neither text nor json", r.output))
		}
		r.url = strings.TrimRight(r.url, "/")
		r.stderr = c.ErrOrStderr()
		switch r.cachePath {
		case "":
			r.cachePath = defaultTokenCache(env)
		case "off":
			r.cachePath = ""
		}
		r.cache = tokenCache{path: r.cachePath, now: time.Now}
		return run(c, r, args)
	}
	return cmd
}

// serverError turns an error answer into its error_description (RFC 6749
// section 5.2), or its status when there is none.
func serverError(status int, body []byte) error {
	return &apiError{status, serverMessage(status, body)}
}

// apiError is an error answer of the server.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func serverMessage(status int, body []byte) string {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(body, &e)
	switch {
	case e.Description != "":
		return e.Description
	case e.Error != "":
		return e.Error
	}
	return fmt.Sprintf("server answered %d %s", status, strings.TrimSpace(string(body)))
}

// clientCredentials gets an access token for id and secret.
func (r *remote) clientCredentials(ctx context.Context, id, secret, scope string) (map[string]any, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := r.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, serverError(resp.StatusCode, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("token answer: %v", err)
	}
	return m, nil
}

// call sends body (JSON unless nil) to the admin API path and answers the
// JSON body of a 2xx, or the server's error.
func (r *remote) call(ctx context.Context, method, path string, body any) ([]byte, error) {
	b, err := r.send(ctx, method, path, body)
	var ae *apiError
	if r.cached && errors.As(err, &ae) && ae.status == http.StatusUnauthorized {
		// The cached token was revoked, or the server's database is
		// another one: forget it and try once with a fresh token.
		r.forgetToken()
		b, err = r.send(ctx, method, path, body)
	}
	return b, err
}

// adminToken sets r.token: the cached one for this server, client and
// secret when it is good for a while yet, else a new one, then cached.
func (r *remote) adminToken(ctx context.Context) error {
	key := tokenCacheKey(r.url, r.clientID, r.clientSecret)
	if r.token = r.cache.get(key); r.token != "" {
		r.cached = true
		return nil
	}
	m, err := r.clientCredentials(ctx, r.clientID, r.clientSecret, "")
	if err != nil {
		return fmt.Errorf("admin token for %s: %v", r.clientID, err)
	}
	r.token, _ = m["access_token"].(string)
	exp, _ := m["expires_in"].(float64)
	if err := r.cache.put(key, r.token, int64(exp)); err != nil {
		fmt.Fprintf(r.stderr, "keyhook: warning: admin token not cached: %v\n", err)
	}
	return nil
}

// forgetToken drops the token the server refused, here and in the cache.
func (r *remote) forgetToken() {
	r.token, r.cached = "", false
	_ = r.cache.put(tokenCacheKey(r.url, r.clientID, r.clientSecret), "", 0)
}

// send makes one admin API call with r's token (fetched first if need be).
func (r *remote) send(ctx context.Context, method, path string, body any) ([]byte, error) {
	if r.token == "" {
		if err := r.adminToken(ctx); err != nil {
			return nil, err
		}
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.url+"/admin/v1"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		ct := "application/json"
		if method == http.MethodPatch {
			ct = "application/merge-patch+json"
		}
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := r.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return nil, serverError(resp.StatusCode, b)
	}
	return b, nil
}

// do sends req; a server that cannot be reached is said short, without
// the request that failed.
func (r *remote) do(req *http.Request) (*http.Response, error) {
	resp, err := r.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach %s: %v", r.url, err)
	}
	return resp, nil
}

// print writes a JSON answer: as is with -o json, else as a table of
// columns (a list) or as member: value lines (an object).
func (r *remote) print(raw []byte, columns ...string) error {
	if r.output == "json" || len(raw) == 0 {
		if len(raw) > 0 {
			var buf bytes.Buffer
			if json.Indent(&buf, raw, "", "  ") == nil {
				raw = buf.Bytes()
			}
			_, err := fmt.Fprintf(r.stdout, "%s\n", bytes.TrimSpace(raw))
			return err
		}
		return nil
	}
	tw := tabwriter.NewWriter(r.stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	var list []map[string]any
	if json.Unmarshal(raw, &list) == nil {
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(columns, "\t")))
		for _, m := range list {
			var cells []string
			for _, c := range columns {
				cells = append(cells, cell(m[c]))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		_, err = fmt.Fprintf(r.stdout, "%s\n", raw)
		return err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(tw, "%s:\t%s\n", k, cell(m[k]))
	}
	return nil
}

// cell is a value in a table: strings bare, lists comma-separated, the
// rest as JSON on one line.
func cell(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return strings.Join(strings.Fields(v), " ")
	case []any:
		var s []string
		for _, e := range v {
			s = append(s, cell(e))
		}
		return strings.Join(s, ",")
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// jsonUnmarshal reads a server answer.
func jsonUnmarshal(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("server answer: %v", err)
	}
	return nil
}

// badValue is a bad value of flag name: a usage error when it is on the
// command line, an error naming its environment variable when it came
// from there.
func badValue(c *cobra.Command, name string, err error) error {
	if c.Flags().Changed(name) {
		return &usageError{c, fmt.Errorf("--%s: %v", name, err)}
	}
	return fmt.Errorf("%s: %v", envName(name), err)
}

// given tells whether flag name was set, on the command line or by its
// environment variable (applyEnv does not mark those as changed).
func given(c *cobra.Command, env lookupEnv, name string) bool {
	if c.Flags().Changed(name) {
		return true
	}
	v, ok := env(envName(name))
	return ok && v != ""
}
