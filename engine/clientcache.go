package engine

import (
	"context"
	"sync"
	"time"
)

// clientCache keeps clients read on the hot paths (client authentication,
// the owner of an introspected token) for a short time. Admin changes made
// through this engine drop the entry at once; changes made on another
// instance are seen within the TTL, the same bound as properties.
// Cached clients are shared and must not be modified.
type clientCache struct {
	ttl time.Duration
	mu  sync.RWMutex
	m   map[string]cachedClient
	// forgotten counts local changes: a read that began before one may
	// have read the client before it changed, and is not cached.
	forgotten uint64
}

type cachedClient struct {
	c       *Client
	fetched time.Time
}

func newClientCache(ttl time.Duration) *clientCache {
	return &clientCache{ttl: ttl, m: map[string]cachedClient{}}
}

// client reads a client through the cache; errors (ErrNotFound included)
// are not cached.
func (e *Engine) client(ctx context.Context, id string) (*Client, error) {
	cc := e.clients
	now := time.Now()
	cc.mu.RLock()
	hit, ok := cc.m[id]
	gen := cc.forgotten
	cc.mu.RUnlock()
	if ok && now.Sub(hit.fetched) < cc.ttl {
		return hit.c, nil
	}
	c, err := e.st.Clients.ClientByID(ctx, id)
	if err != nil {
		return nil, err
	}
	cc.mu.Lock()
	if len(cc.m) > 10000 { // bound memory under a flood of distinct ids
		cc.m = map[string]cachedClient{}
	}
	if cc.forgotten == gen {
		cc.m[id] = cachedClient{c: c, fetched: now}
	}
	cc.mu.Unlock()
	return c, nil
}

// forgetClient drops a client after a local change, and the discovery
// document built from the clients.
func (e *Engine) forgetClient(id string) {
	e.invalidateMetadata()
	e.clients.mu.Lock()
	delete(e.clients.m, id)
	e.clients.forgotten++
	e.clients.mu.Unlock()
}
