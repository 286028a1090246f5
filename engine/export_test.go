package engine

// SealForTest seals a client_secret_jwt secret as the engine stores it,
// for tests that store clients past the admin API's checks.
func (e *Engine) SealForTest(secret string) string { return e.seal.seal(secret) }
