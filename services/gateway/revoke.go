package gateway

import (
	"context"
	"time"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/auth"
)

// revocationChecker is implemented by Tokens that know revoked tokens and
// sessions (auth.Keys with Revocations set).
type revocationChecker interface {
	RevokedReason(c auth.Claims) (string, bool)
	RevocationGeneration() uint64
}

// revocationScan is how often the gateway looks whether revocations were
// added; connections are then checked against the in-memory set (no
// database or network call), so a revoked session's connections close
// within this plus the revocation poll interval.
const revocationScan = 500 * time.Millisecond

// watchRevocations closes the connections whose token or session was
// revoked (logout, password change, signed out, account deleted) with
// kicked{reason} until ctx ends. It scans only after the set changed (and
// once more, for connections that authenticated during the scan).
func (n *Node) watchRevocations(ctx context.Context, rc revocationChecker) error {
	t := time.NewTicker(revocationScan)
	defer t.Stop()
	var seen uint64
	again := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		gen := rc.RevocationGeneration()
		if gen == seen && !again {
			continue
		}
		again = gen != seen
		seen = gen
		var victims []*Client
		var reasons []string
		n.hub.each(func(c *Client) {
			if why, ok := rc.RevokedReason(c.token); ok {
				victims = append(victims, c)
				reasons = append(reasons, why)
			}
		})
		for i, c := range victims {
			why := reasons[i]
			if why == "" {
				why = "revoked"
			}
			if n.hub.remove(c) {
				n.log.Info("closing a connection whose session was revoked", "user", c.user, "device", c.device, "reason", why)
				c.close(DisconnectRevoked, encode(protocol.Kicked{T: protocol.TypeKicked, Reason: why}))
			}
		}
	}
}
