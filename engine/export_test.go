package engine

import "context"

// SealForTest seals a client_secret_jwt secret as the engine stores it,
// for tests that store clients past the admin API's checks.
func (e *Engine) SealForTest(secret string) string { return e.seal.seal(secret) }

// ClientForTest reads a client through the engine's client cache.
func (e *Engine) ClientForTest(ctx context.Context, id string) (*Client, error) {
	return e.client(ctx, id)
}

// CurrentKIDForTest is the key id new tokens are signed with.
func (e *Engine) CurrentKIDForTest() string { return e.currentKey().kid }
