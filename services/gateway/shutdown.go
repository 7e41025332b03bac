package gateway

import "context"

// Shutdown drains the node (see Drain) bounded by ctx.
func (n *Node) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() { n.Drain(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
