package storage

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// migration is one step of the schema. Steps are applied in version order,
// each at most once per database, and never edited once released: change
// the schema by appending a step. The SQL must run on SQLite and PostgreSQL
// alike, so it sticks to TEXT, BIGINT, INTEGER and BOOLEAN; times are BIGINT
// Unix nanoseconds (0 for the zero time) and lists, maps and JSON are TEXT.
type migration struct {
	version int
	name    string
	up      []string
}

// migrations is the schema history.
var migrations = []migration{
	{version: 1, name: "initial schema", up: []string{
		`CREATE TABLE clients (
			id TEXT PRIMARY KEY,
			name TEXT NOT NULL DEFAULT '',
			secret_hash TEXT NOT NULL DEFAULT '',
			secret_sealed TEXT NOT NULL DEFAULT '',
			auth_method TEXT NOT NULL DEFAULT '',
			auth_signing_alg TEXT NOT NULL DEFAULT '',
			grant_types TEXT NOT NULL DEFAULT '',
			redirect_uris TEXT NOT NULL DEFAULT '',
			scope TEXT NOT NULL DEFAULT '',
			jwks TEXT NOT NULL DEFAULT '',
			jwks_uri TEXT NOT NULL DEFAULT '',
			access_token_as_jwt BOOLEAN NOT NULL DEFAULT FALSE,
			run_introspection_before_jwt BOOLEAN NOT NULL DEFAULT FALSE,
			access_token_lifetime BIGINT NOT NULL DEFAULT 0,
			refresh_token_lifetime BIGINT NOT NULL DEFAULT 0,
			id_token_lifetime BIGINT NOT NULL DEFAULT 0,
			introspection_scripts TEXT NOT NULL DEFAULT '',
			update_token_scripts TEXT NOT NULL DEFAULT '',
			attributes TEXT NOT NULL DEFAULT '',
			created_at BIGINT NOT NULL DEFAULT 0,
			updated_at BIGINT NOT NULL DEFAULT 0
		)`,
		`CREATE TABLE tokens (
			id TEXT PRIMARY KEY,
			kind TEXT NOT NULL,
			format TEXT NOT NULL DEFAULT '',
			client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
			subject TEXT NOT NULL DEFAULT '',
			username TEXT NOT NULL DEFAULT '',
			scope TEXT NOT NULL DEFAULT '',
			grant_type TEXT NOT NULL DEFAULT '',
			family_id TEXT NOT NULL DEFAULT '',
			audience TEXT NOT NULL DEFAULT '',
			key_id TEXT NOT NULL DEFAULT '',
			claims TEXT NOT NULL DEFAULT '',
			issued_at BIGINT NOT NULL DEFAULT 0,
			expires_at BIGINT NOT NULL DEFAULT 0,
			auth_time BIGINT NOT NULL DEFAULT 0,
			revoked BOOLEAN NOT NULL DEFAULT FALSE,
			used_at BIGINT NOT NULL DEFAULT 0
		)`,
		`CREATE INDEX tokens_client_id_idx ON tokens (client_id)`,
		`CREATE INDEX tokens_family_id_idx ON tokens (family_id)`,
		`CREATE INDEX tokens_expires_at_idx ON tokens (expires_at)`,
		`CREATE INDEX tokens_key_id_expires_at_idx ON tokens (key_id, expires_at)`,
		`CREATE TABLE signing_keys (
			id TEXT PRIMARY KEY,
			alg TEXT NOT NULL DEFAULT '',
			private_jwk TEXT NOT NULL DEFAULT '',
			created_at BIGINT NOT NULL DEFAULT 0,
			retired_at BIGINT NOT NULL DEFAULT 0
		)`,
		`CREATE TABLE properties (
			name TEXT PRIMARY KEY,
			value TEXT NOT NULL DEFAULT ''
		)`,
		`CREATE TABLE used_jtis (
			client_id TEXT NOT NULL,
			jti TEXT NOT NULL,
			expires_at BIGINT NOT NULL DEFAULT 0,
			PRIMARY KEY (client_id, jti)
		)`,
		`CREATE INDEX used_jtis_expires_at_idx ON used_jtis (expires_at)`,
		`CREATE TABLE scripts (
			name TEXT PRIMARY KEY,
			kind TEXT NOT NULL DEFAULT '',
			source TEXT NOT NULL DEFAULT '',
			enabled BOOLEAN NOT NULL DEFAULT FALSE,
			level INTEGER NOT NULL DEFAULT 0,
			config TEXT NOT NULL DEFAULT '',
			timeout_ms BIGINT NOT NULL DEFAULT 0,
			on_error TEXT NOT NULL DEFAULT '',
			version TEXT NOT NULL DEFAULT '',
			updated_at BIGINT NOT NULL DEFAULT 0
		)`,
		// script_generation has one row whose counter is bumped in the
		// transaction of every script change: ScriptsVersion reads it.
		`CREATE TABLE script_generation (
			id INTEGER PRIMARY KEY,
			generation BIGINT NOT NULL
		)`,
		`INSERT INTO script_generation (id, generation) VALUES (1, 0)`,
		`CREATE TABLE users (
			username TEXT PRIMARY KEY,
			password_hash TEXT NOT NULL DEFAULT '',
			claims TEXT NOT NULL DEFAULT '',
			disabled BOOLEAN NOT NULL DEFAULT FALSE,
			created_at BIGINT NOT NULL DEFAULT 0,
			updated_at BIGINT NOT NULL DEFAULT 0
		)`,
		`CREATE TABLE auth_codes (
			id TEXT PRIMARY KEY,
			client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
			username TEXT NOT NULL DEFAULT '',
			redirect_uri TEXT NOT NULL DEFAULT '',
			scope TEXT NOT NULL DEFAULT '',
			code_challenge TEXT NOT NULL DEFAULT '',
			code_challenge_method TEXT NOT NULL DEFAULT '',
			nonce TEXT NOT NULL DEFAULT '',
			family_id TEXT NOT NULL DEFAULT '',
			auth_time BIGINT NOT NULL DEFAULT 0,
			expires_at BIGINT NOT NULL DEFAULT 0,
			used_at BIGINT NOT NULL DEFAULT 0
		)`,
		`CREATE INDEX auth_codes_client_id_idx ON auth_codes (client_id)`,
		`CREATE INDEX auth_codes_expires_at_idx ON auth_codes (expires_at)`,
		`CREATE TABLE server_secrets (
			name TEXT PRIMARY KEY,
			value TEXT NOT NULL,
			created_at BIGINT NOT NULL DEFAULT 0
		)`,
	}},
	{version: 2, name: "script memory budget and isolation", up: []string{
		`ALTER TABLE scripts ADD COLUMN memory_mb BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE scripts ADD COLUMN isolation TEXT NOT NULL DEFAULT ''`,
	}},
	{version: 3, name: "refresh token reuse interval", up: []string{
		`ALTER TABLE clients ADD COLUMN refresh_token_reuse_interval BIGINT NOT NULL DEFAULT 0`,
		// The sealed answer of a rotation, kept on the rotated refresh
		// token until successor_until (docs/refresh.md).
		`ALTER TABLE tokens ADD COLUMN successor TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE tokens ADD COLUMN successor_until BIGINT NOT NULL DEFAULT 0`,
		`CREATE INDEX tokens_successor_until_idx ON tokens (successor_until)`,
	}},
	{version: 4, name: "login sessions", up: []string{
		// Browser login sessions, by the SHA-256 of the cookie value
		// (docs/browser-flow.md); a deleted user's sessions go with them.
		`CREATE TABLE login_sessions (
			id TEXT PRIMARY KEY,
			username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
			auth_time BIGINT NOT NULL DEFAULT 0,
			user_updated_at BIGINT NOT NULL DEFAULT 0,
			expires_at BIGINT NOT NULL DEFAULT 0
		)`,
		`CREATE INDEX login_sessions_username_idx ON login_sessions (username)`,
		`CREATE INDEX login_sessions_expires_at_idx ON login_sessions (expires_at)`,
	}},
	{version: 5, name: "client CORS origins", up: []string{
		`ALTER TABLE clients ADD COLUMN allowed_cors_origins TEXT NOT NULL DEFAULT ''`,
	}},
	{version: 6, name: "script versions and candidates", up: []string{
		// The immutable history of each script (docs/scripts.md,
		// "Versions, rollback and rollout"): snapshot is the script's
		// admin document as JSON, read-only and write-only members left
		// out. Deleting a script deletes its versions (storage/scripts.go).
		`CREATE TABLE script_versions (
			script TEXT NOT NULL,
			number BIGINT NOT NULL,
			author TEXT NOT NULL DEFAULT '',
			created_at BIGINT NOT NULL DEFAULT 0,
			sha256 TEXT NOT NULL DEFAULT '',
			snapshot TEXT NOT NULL DEFAULT '',
			PRIMARY KEY (script, number)
		)`,
		// The live version's number, and the candidate (JSON) being
		// shadowed or canaried.
		`ALTER TABLE scripts ADD COLUMN version_number BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE scripts ADD COLUMN candidate TEXT NOT NULL DEFAULT ''`,
	}},
	{version: 7, name: "script secrets", up: []string{
		// A JSON object of secret names to values, each sealed under the
		// key-encryption key when there is one (docs/keys.md).
		`ALTER TABLE scripts ADD COLUMN secrets TEXT NOT NULL DEFAULT ''`,
	}},
	{version: 8, name: "script fetch allowed hosts", up: []string{
		// The hosts context.fetch may reach, a JSON list (docs/scripts.md).
		`ALTER TABLE scripts ADD COLUMN allowed_hosts TEXT NOT NULL DEFAULT ''`,
	}},
	{version: 9, name: "script input recording", up: []string{
		// How many inputs of its live version's calls each instance
		// records for replay (docs/scripts.md, "Replay"); the inputs
		// themselves stay in memory.
		`ALTER TABLE scripts ADD COLUMN record_inputs BIGINT NOT NULL DEFAULT 0`,
	}},
	{version: 10, name: "client allowed resources", up: []string{
		// The resource indicators (RFC 8707) a client may ask tokens for,
		// a JSON list, and those an authorization code and a token carry
		// (docs/resource-indicators.md).
		`ALTER TABLE clients ADD COLUMN allowed_resources TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE auth_codes ADD COLUMN resources TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE tokens ADD COLUMN resources TEXT NOT NULL DEFAULT ''`,
	}},
	{version: 11, name: "pushed authorization requests", up: []string{
		// RFC 9126 (docs/par.md): the client metadata, and the pushed
		// requests by the SHA-256 of their request_uri; request is the
		// authorization request as JSON. A deleted client's requests go
		// with it.
		`ALTER TABLE clients ADD COLUMN require_pushed_authorization_requests BOOLEAN NOT NULL DEFAULT FALSE`,
		`CREATE TABLE pushed_requests (
			id TEXT PRIMARY KEY,
			client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
			request TEXT NOT NULL DEFAULT '',
			started BOOLEAN NOT NULL DEFAULT FALSE,
			expires_at BIGINT NOT NULL DEFAULT 0
		)`,
		`CREATE INDEX pushed_requests_client_id_idx ON pushed_requests (client_id)`,
		`CREATE INDEX pushed_requests_expires_at_idx ON pushed_requests (expires_at)`,
	}},
	{version: 12, name: "device authorization", up: []string{
		// Device authorizations (RFC 8628, docs/device-flow.md): the
		// SHA-256 of the device code and a keyed hash of the user code,
		// never either code; a deleted client's go with it.
		`CREATE TABLE device_grants (
			id TEXT PRIMARY KEY,
			user_code_id TEXT NOT NULL UNIQUE,
			client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
			scope TEXT NOT NULL DEFAULT '',
			status TEXT NOT NULL DEFAULT '',
			username TEXT NOT NULL DEFAULT '',
			auth_time BIGINT NOT NULL DEFAULT 0,
			family_id TEXT NOT NULL DEFAULT '',
			poll_interval BIGINT NOT NULL DEFAULT 0,
			last_polled_at BIGINT NOT NULL DEFAULT 0,
			created_at BIGINT NOT NULL DEFAULT 0,
			expires_at BIGINT NOT NULL DEFAULT 0,
			used_at BIGINT NOT NULL DEFAULT 0
		)`,
		`CREATE INDEX device_grants_client_id_idx ON device_grants (client_id)`,
		`CREATE INDEX device_grants_expires_at_idx ON device_grants (expires_at)`,
	}},
	{version: 13, name: "trusted issuers", up: []string{
		// The issuers of JWT bearer grants (RFC 7523, docs/jwt-bearer.md);
		// issuer is the exact iss, one trusted issuer per iss. The lists
		// are JSON arrays. Their assertions' jti values are kept in
		// used_jtis under "iss/" + issuer.
		`CREATE TABLE trusted_issuers (
			name TEXT PRIMARY KEY,
			issuer TEXT NOT NULL UNIQUE,
			jwks TEXT NOT NULL DEFAULT '',
			jwks_uri TEXT NOT NULL DEFAULT '',
			allowed_subjects TEXT NOT NULL DEFAULT '',
			allowed_scopes TEXT NOT NULL DEFAULT '',
			allowed_clients TEXT NOT NULL DEFAULT '',
			max_lifetime BIGINT NOT NULL DEFAULT 0,
			enabled BOOLEAN NOT NULL DEFAULT FALSE,
			created_at BIGINT NOT NULL DEFAULT 0,
			updated_at BIGINT NOT NULL DEFAULT 0
		)`,
	}},
	{version: 14, name: "token exchange", up: []string{
		// RFC 8693 (docs/token-exchange.md): a client's token_exchange
		// policy, a JSON object ("" when none), and the act claim of an
		// exchanged token, a JSON object ("" when none).
		`ALTER TABLE clients ADD COLUMN token_exchange TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE tokens ADD COLUMN act TEXT NOT NULL DEFAULT ''`,
	}},
	{version: 15, name: "dpop", up: []string{
		// DPoP (RFC 9449, docs/dpop.md): the thumbprint of the key a token
		// or code is bound to ('' for a bearer token), and the client metadata
		// dpop_bound_access_tokens (RFC 9449 §5.2).
		`ALTER TABLE tokens ADD COLUMN jkt TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE clients ADD COLUMN dpop_bound_access_tokens BOOLEAN NOT NULL DEFAULT FALSE`,
		// dpop_jkt of the authorization request (RFC 9449 §10).
		`ALTER TABLE auth_codes ADD COLUMN dpop_jkt TEXT NOT NULL DEFAULT ''`,
	}},
	{version: 16, name: "dynamic client registration", up: []string{
		// RFC 7591 and RFC 7592 (docs/registration.md): a registered
		// client's registration access token (a salted hash, '' for
		// clients the admin API created), the scopes it may hold (a JSON
		// list, '' or null for any) and how it registered; the initial
		// access tokens by the SHA-256 of the token.
		`ALTER TABLE clients ADD COLUMN registration_token_hash TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE clients ADD COLUMN registration_allowed_scopes TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE clients ADD COLUMN registration_label TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE clients ADD COLUMN registration_open BOOLEAN NOT NULL DEFAULT FALSE`,
		`CREATE TABLE registration_tokens (
			id TEXT PRIMARY KEY,
			token_hash TEXT NOT NULL UNIQUE,
			label TEXT NOT NULL DEFAULT '',
			allowed_scopes TEXT NOT NULL DEFAULT '',
			max_uses BIGINT NOT NULL DEFAULT 0,
			uses BIGINT NOT NULL DEFAULT 0,
			expires_at BIGINT NOT NULL DEFAULT 0,
			created_at BIGINT NOT NULL DEFAULT 0,
			created_by TEXT NOT NULL DEFAULT ''
		)`,
		`CREATE INDEX registration_tokens_expires_at_idx ON registration_tokens (expires_at)`,
	}},
}

// migrationLockID is the PostgreSQL advisory lock that serializes the
// migrations of instances starting at once ("keyhook" in ASCII).
const migrationLockID int64 = 0x6b6579686f6f6b

// schemaMigration records one applied migration.
type schemaMigration struct {
	Version   int    `gorm:"column:version;primaryKey;autoIncrement:false"`
	Name      string `gorm:"column:name"`
	AppliedAt int64  `gorm:"column:applied_at"`
}

func (schemaMigration) TableName() string { return "schema_migrations" }

// migrate applies the migrations the database lacks, all in one
// transaction. Concurrent callers serialize: on PostgreSQL on an advisory
// lock, on SQLite on the write lock that BEGIN IMMEDIATE takes. The applied
// versions are read only once the lock is held, so the loser of a race sees
// the winner's work and applies nothing.
func (s *Store) migrate(ctx context.Context) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if s.dialect == DialectPostgres {
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", migrationLockID).Error; err != nil {
				return fmt.Errorf("lock: %w", err)
			}
		}
		if err := tx.Exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY,
			name TEXT NOT NULL,
			applied_at BIGINT NOT NULL
		)`).Error; err != nil {
			return err
		}
		var rows []schemaMigration
		if err := tx.Order("version").Find(&rows).Error; err != nil {
			return err
		}
		applied := make(map[int]string, len(rows))
		for _, r := range rows {
			applied[r.Version] = r.Name
		}
		for _, m := range migrations {
			if name, ok := applied[m.version]; ok {
				if name != m.name {
					return fmt.Errorf("version %d is %q in the database but %q here", m.version, name, m.name)
				}
				continue
			}
			for _, stmt := range m.up {
				if err := tx.Exec(stmt).Error; err != nil {
					return fmt.Errorf("version %d (%s): %w", m.version, m.name, err)
				}
			}
			rec := schemaMigration{Version: m.version, Name: m.name, AppliedAt: time.Now().UnixNano()}
			if err := tx.Create(&rec).Error; err != nil {
				return err
			}
		}
		// Versions beyond ours were applied by a newer release; this one
		// keeps working as long as those migrations stayed additive.
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: migrate: %w", err)
	}
	return nil
}
