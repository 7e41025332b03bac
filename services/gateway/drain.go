package gateway

import "context"

// Drain is Shutdown without a bound.
//
// Deprecated: kept only so that the composition roots being replaced
// (services/gateway/main.go, services/dev) compile until they call
// Shutdown(ctx); delete it with them.
func (n *Node) Drain() { _ = n.Shutdown(context.Background()) }
