package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Seed is the import/export document of `keyhook import` and --seed:
// server properties, scripts, clients and users (README "Running it": keyhook import).
type Seed struct {
	Config  map[string]json.RawMessage `json:"config,omitempty"`
	Scripts []*SeedScript              `json:"scripts,omitempty"`
	Clients []*ClientDoc               `json:"clients,omitempty"`
	Users   []*UserDoc                 `json:"users,omitempty"`
}

// SeedScript is a script of a seed file; its source may live in a file
// next to it (resolved by the caller before Import).
type SeedScript struct {
	ScriptDoc
	SourceFile string `json:"source_file,omitempty"`
}

// ImportStats counts what Import did.
type ImportStats struct {
	Created, Replaced int
}

// Import applies a seed idempotently: what exists is replaced, what does
// not is created. Scripts come before the clients that bind them.
func (e *Engine) Import(ctx context.Context, s *Seed) (ImportStats, error) {
	var st ImportStats
	if len(s.Config) > 0 {
		if _, err := e.UpdateProperties(ctx, s.Config); err != nil {
			return st, fmt.Errorf("config: %w", err)
		}
	}
	count := func(created bool) {
		if created {
			st.Created++
		} else {
			st.Replaced++
		}
	}
	for _, sc := range s.Scripts {
		doc := sc.ScriptDoc
		_, err := e.ReplaceScript(ctx, doc.Name, &doc)
		created := errors.Is(err, CodeNotFound)
		if created {
			_, err = e.CreateScript(ctx, &doc)
		}
		if err != nil {
			return st, fmt.Errorf("script %s: %w", doc.Name, err)
		}
		count(created)
	}
	for _, c := range s.Clients {
		doc := *c
		if doc.ClientID == "" {
			return st, fmt.Errorf("clients: client_id is required in a seed")
		}
		_, err := e.ReplaceClient(ctx, doc.ClientID, &doc)
		created := errors.Is(err, CodeNotFound)
		if created {
			doc = *c
			_, err = e.CreateClient(ctx, &doc)
		}
		if err != nil {
			return st, fmt.Errorf("client %s: %w", c.ClientID, err)
		}
		count(created)
	}
	for _, u := range s.Users {
		doc := *u
		_, err := e.ReplaceUser(ctx, doc.Username, &doc)
		created := errors.Is(err, CodeNotFound)
		if created {
			_, err = e.createUser(ctx, &doc, false)
		}
		if err != nil {
			return st, fmt.Errorf("user %s: %w", u.Username, err)
		}
		count(created)
	}
	return st, nil
}

// Export writes the current configuration as a Seed, secrets and
// passwords left out.
func (e *Engine) Export(ctx context.Context) (*Seed, error) {
	s := &Seed{Config: map[string]json.RawMessage{}}
	raw, _ := json.Marshal(e.Properties())
	if err := json.Unmarshal(raw, &s.Config); err != nil {
		return nil, err
	}
	scripts, err := e.ScriptDocs(ctx)
	if err != nil {
		return nil, err
	}
	for _, sc := range scripts {
		sc.Version = ""
		s.Scripts = append(s.Scripts, &SeedScript{ScriptDoc: *sc})
	}
	if s.Clients, err = e.ClientDocs(ctx); err != nil {
		return nil, err
	}
	if s.Users, err = e.UserDocs(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// BootstrapAdminID is the client the bootstrap secret creates.
const BootstrapAdminID = "keyhook-admin"

// Bootstrap creates the keyhook-admin client (client_secret_basic,
// client_credentials, scope keyhook:admin) when it does not exist, with
// secret, or a generated one when secret is empty. It returns the secret
// when it created the client, "" when the client existed.
func (e *Engine) Bootstrap(ctx context.Context, secret string) (string, error) {
	_, err := e.st.Clients.ClientByID(ctx, BootstrapAdminID)
	if err == nil {
		return "", nil
	}
	if !errors.Is(err, ErrNotFound) {
		return "", storeFailure(err)
	}
	out, err := e.CreateClient(ctx, &ClientDoc{
		ClientID: BootstrapAdminID, ClientSecret: secret, ClientName: "keyhook bootstrap admin",
		TokenEndpointAuthMethod: string(AuthSecretBasic), GrantTypes: []string{string(GrantClientCredentials)},
		Scope: AdminScope,
	})
	if errors.Is(err, CodeConflict) {
		return "", nil // another instance created it meanwhile
	}
	if err != nil {
		return "", err
	}
	return out.ClientSecret, nil
}
