package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/flow"
	"github.com/imkube/imkube/internal/messageapi"
)

// handleLifecycle forwards recall, edit and delete to the message service on
// the upstream stream, keyed by the conversation, so they take their place
// among its messages. The message service answers ok{id} or error{id}. They
// count against the sender's send rate.
func (c *Client) handleLifecycle(ctx context.Context, in *protocol.Inbound) {
	n := c.node
	if n.deps.Limiter != nil {
		if ok, wait := n.deps.Limiter.AllowSend(c.user); !ok {
			c.reply(ctx, encode(protocol.Error{T: protocol.TypeError, ID: in.ID, Code: protocol.CodeRateLimited, Message: "too many requests; retry later",
				Retryable: true, RetryAfterMs: max(wait.Milliseconds(), 1)}))
			return
		}
	}
	// The cmid deduplicates redeliveries of this one request ('~' marks an
	// id made up by a gateway).
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	up := messageapi.Upstream{Gateway: n.cfg.ID, User: c.user, Device: c.device, CMID: "~" + in.T + ":" + hex.EncodeToString(rnd[:]), Conv: in.Conv,
		TS: time.Now().UnixMilli()}
	up.Op, up.ID, up.Seqs = in.T, in.ID, in.Seqs
	if in.Seq != nil {
		up.Ref = *in.Seq
	}
	if in.Body != nil {
		up.Body = *in.Body
	}
	if err := c.publishUpstream(ctx, "gateway."+in.T, &up); err != nil {
		f := protocol.Error{T: protocol.TypeError, ID: in.ID, Code: protocol.CodeUnavailable, Retryable: true,
			Message: in.T + " not accepted (messaging backend unavailable); retry"}
		if wait := flow.RetryAfter(err); wait > 0 {
			f.RetryAfterMs = max(wait.Milliseconds(), 1)
		}
		c.reply(ctx, encode(f))
	}
}

// handlePullBefore answers pull{conv, before, limit}: the newest messages
// before seq before.
func (c *Client) handlePullBefore(ctx context.Context, in *protocol.Inbound) bool {
	res, err := c.node.deps.Backend.PullBefore(ctx, c.user, in.Conv, *in.Before, in.Limit, c.pageBytes(in.ID))
	if err != nil {
		c.reply(ctx, c.backendErr(in.ID, err))
		return !errors.Is(err, messageapi.ErrBadRequest)
	}
	res.ID = in.ID
	c.reply(ctx, encode(res))
	return true
}
