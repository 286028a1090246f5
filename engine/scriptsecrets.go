package engine

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/keyhook/keyhook/hooks"
)

// Script secrets (docs/scripts.md, "Secrets").
//
// A script's secrets are write-only in the admin API: reads, lists and
// exports answer each name with SecretSet instead of its value, and a
// write that sends SecretSet for a name keeps the value stored under it,
// so that a document read back and written again changes nothing. At
// rest each value is sealed under the key-encryption key when there is
// one (engine/kek.go, docs/keys.md), and stored in the clear, marked as
// such, when there is none.

// SecretSet stands for a stored secret value in what the admin API
// answers, and refers to it in what it is sent.
const SecretSet = "(set)"

// Limits of a script's secrets.
const (
	maxScriptSecrets    = 32
	maxScriptSecretSize = 8 << 10
)

var secretNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// clearPrefix marks a secret value stored without a KEK, so that a value
// that happens to start with kekPrefix is never taken for a sealed one.
const clearPrefix = "clear:"

// secretNames is the admin view of secrets: each name with SecretSet.
func secretNames(secrets map[string]string) map[string]string {
	if len(secrets) == 0 {
		return nil
	}
	out := make(map[string]string, len(secrets))
	for k := range secrets {
		out[k] = SecretSet
	}
	return out
}

// resolveSecrets checks the secrets a write sends and resolves SecretSet
// references against stored (nil when the script is new).
func resolveSecrets(sent, stored map[string]string) (map[string]string, error) {
	if len(sent) > maxScriptSecrets {
		return nil, fieldError("secrets", "at most %d", maxScriptSecrets)
	}
	out := make(map[string]string, len(sent))
	for _, name := range slices.Sorted(maps.Keys(sent)) {
		v := sent[name]
		switch {
		case !secretNamePattern.MatchString(name):
			return nil, fieldError("secrets", "names must match [A-Za-z0-9_-]{1,64}")
		case v == SecretSet:
			old, ok := stored[name]
			if !ok {
				return nil, fieldError("secrets."+name, "is %s, a reference to a stored value, and none is stored; send the value", SecretSet)
			}
			out[name] = old
		case v == "":
			return nil, fieldError("secrets."+name, "must not be empty (leave the name out to remove it)")
		case len(v) > maxScriptSecretSize:
			return nil, fieldError("secrets."+name, "must be at most %d bytes", maxScriptSecretSize)
		default:
			out[name] = v
		}
	}
	return out, nil
}

// sealedScripts is the ScriptStore the engine works with: it seals
// script secrets on the way in and opens them on the way out, so that
// the rest of the engine and the dispatcher see plain values and the
// store sees sealed ones only.
type sealedScripts struct {
	ScriptStore
	e *Engine
}

func (s *sealedScripts) Scripts(ctx context.Context) ([]*hooks.Script, error) {
	all, err := s.ScriptStore.Scripts(ctx)
	if err != nil {
		return nil, err
	}
	for _, sc := range all {
		if err := s.open(sc); err != nil {
			return nil, err
		}
	}
	return all, nil
}

func (s *sealedScripts) ScriptByName(ctx context.Context, name string) (*hooks.Script, error) {
	sc, err := s.ScriptStore.ScriptByName(ctx, name)
	if err != nil {
		return nil, err
	}
	return sc, s.open(sc)
}

func (s *sealedScripts) CreateScript(ctx context.Context, sc *hooks.Script) error {
	cp := s.sealed(sc)
	err := s.ScriptStore.CreateScript(ctx, cp)
	sc.Version = cp.Version
	return err
}

func (s *sealedScripts) UpdateScript(ctx context.Context, sc *hooks.Script) error {
	cp := s.sealed(sc)
	err := s.ScriptStore.UpdateScript(ctx, cp)
	sc.Version = cp.Version
	return err
}

// sealed is a copy of sc with its secrets as they are stored.
func (s *sealedScripts) sealed(sc *hooks.Script) *hooks.Script {
	cp := *sc
	if len(sc.Secrets) > 0 {
		cp.Secrets = make(map[string]string, len(sc.Secrets))
		for k, v := range sc.Secrets {
			if s.e.kek != nil {
				cp.Secrets[k] = string(s.e.wrap([]byte(v)))
			} else {
				cp.Secrets[k] = clearPrefix + v
			}
		}
	}
	return &cp
}

// open turns sc's stored secrets into plain values, in place, and notes
// whether any was stored in the clear while there is a KEK.
func (s *sealedScripts) open(sc *hooks.Script) error {
	plain := false
	for k, v := range sc.Secrets {
		if rest, ok := strings.CutPrefix(v, clearPrefix); ok {
			sc.Secrets[k], plain = rest, true
			continue
		}
		out, _, err := s.e.unwrap([]byte(v))
		if err != nil {
			return fmt.Errorf("script %s: secret %s: %w", sc.Name, k, err)
		}
		sc.Secrets[k] = string(out)
	}
	s.e.notePlainSecrets(sc.Name, plain && s.e.kek != nil)
	return nil
}

// ScriptSecretResealer is implemented by script stores that can seal,
// in place, secrets stored before a KEK was set: next replaces old only
// if the script's stored secrets are still old, and its version stays.
type ScriptSecretResealer interface {
	ResealScriptSecrets(ctx context.Context, name string, old, next map[string]string) error
}

// resealScriptSecrets seals, in place, the script secrets stored in the
// clear before a KEK was configured, as resealSigningKeys does for keys.
// One that cannot be sealed stays in the clear and is reported by
// UnencryptedKeys.
func (e *Engine) resealScriptSecrets(ctx context.Context) {
	s, ok := e.st.Scripts.(*sealedScripts)
	if e.kek == nil || !ok {
		return
	}
	r, ok := s.ScriptStore.(ScriptSecretResealer)
	if !ok {
		return
	}
	all, err := s.ScriptStore.Scripts(ctx) // as stored
	if err != nil {
		e.log.Error("could not read the scripts to seal their secrets under the key-encryption key", "err", err)
		return
	}
	for _, sc := range all {
		next, plain := map[string]string{}, false
		for k, v := range sc.Secrets {
			if rest, ok := strings.CutPrefix(v, clearPrefix); ok {
				v, plain = string(e.wrap([]byte(rest))), true
			}
			next[k] = v
		}
		if !plain {
			continue
		}
		if err := r.ResealScriptSecrets(ctx, sc.Name, sc.Secrets, next); err != nil {
			e.log.Error("could not seal a script's secrets under the key-encryption key", "script", sc.Name, "err", err)
			continue
		}
		e.notePlainSecrets(sc.Name, false)
		e.log.Info("sealed a script's secrets under the key-encryption key", "script", sc.Name)
	}
}

// notePlainSecrets records whether the script called name has secrets
// stored in the clear although there is a KEK (stored before it was set).
func (e *Engine) notePlainSecrets(name string, plain bool) {
	e.plainSecretsMu.Lock()
	defer e.plainSecretsMu.Unlock()
	if plain {
		if e.plainSecrets == nil {
			e.plainSecrets = map[string]bool{}
		}
		e.plainSecrets[name] = true
	} else {
		delete(e.plainSecrets, name)
	}
}
