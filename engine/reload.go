package engine

import (
	"context"
	"sync"
)

// reloadAttempts bounds how often one reload reads the store again
// because local writes kept finishing while it read.
const reloadAttempts = 3

// reloadGuard orders the reloads of an in-memory copy of shared state
// (properties, signing keys, scripts) against this instance's own writes,
// which update the copy at once. A reload reads the store without a lock,
// so what it read may predate a local write that finished meanwhile;
// putting it in place would undo that write here until the next refresh.
// Such a read is discarded and the store read again.
type reloadGuard struct {
	mu  sync.Mutex
	gen uint64 // local writes finished
}

// wrote runs update, a local write's change to the copy (nil when the
// write leaves updating it to a reload), after the write reached the
// store; a reload under way then reads again.
func (g *reloadGuard) wrote(update func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if update != nil {
		update()
	}
	g.gen++
}

// reload reads the store with read, which returns how to apply what it
// read (nil: nothing to apply), and applies it unless a local write
// finished meanwhile. After reloadAttempts such reads it gives up: the
// copy keeps the local writes and the next refresh tries again.
func (g *reloadGuard) reload(ctx context.Context, read func(context.Context) (apply func() error, err error)) error {
	for range reloadAttempts {
		g.mu.Lock()
		gen := g.gen
		g.mu.Unlock()
		apply, err := read(ctx)
		if err != nil {
			return err
		}
		g.mu.Lock()
		if g.gen == gen {
			defer g.mu.Unlock()
			if apply == nil {
				return nil
			}
			return apply()
		}
		g.mu.Unlock()
	}
	return nil
}
