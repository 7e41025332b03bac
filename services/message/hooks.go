package message

// Integration hooks (issue 17): the before-send hook on the message path and
// offline push notices for recipients with no online device. The event
// hooks need nothing here: the store writes their outbox entry in the
// message's transaction (webhook.OutboxHook).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/internal/sessions"
	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/internal/webhook"
)

// BeforeSender is the before-send hook (webhook.Hooks).
type BeforeSender interface {
	BeforeSend(ctx context.Context, req webhook.SendRequest) (webhook.Verdict, error)
	Config() config.Webhooks
}

// maxReplacedBody bounds a body the before-send hook puts in place.
const maxReplacedBody = 1 << 20

// beforeSend asks the before-send hook about a client send that is about to
// be stored: the hook may reject it (FORBIDDEN with its reason) or replace
// its body. When the hook fails (timeout, error), failOpen stores the send
// unchanged; otherwise it is refused with UNAVAILABLE (retryable: nothing
// was stored).
func (s *Service) beforeSend(ctx context.Context, up *messageapi.Upstream) error {
	if s.hooks == nil {
		return nil
	}
	v, err := s.hooks.BeforeSend(ctx, webhook.SendRequest{Sender: up.User, Device: up.Device, Conv: up.Conv,
		To: webhook.Target{User: up.To.User, Group: up.To.Group}, CMID: up.CMID, Kind: up.Kind, Body: up.Body,
		Mentions: up.Mentions, ReplyTo: up.ReplyTo, TS: up.TS})
	switch {
	case errors.Is(err, webhook.ErrNoHook):
		return nil
	case err != nil:
		if s.hooks.Config().BeforeSend.FailOpen {
			s.log.Warn("before-send hook failed; storing the message unchanged (failOpen)", "conv", up.Conv, "err", err)
			return nil
		}
		s.log.Warn("before-send hook failed; refusing the message (failOpen is false)", "conv", up.Conv, "err", err)
		return reject(protocol.CodeUnavailable, "the message could not be checked right now; retry with the same cmid")
	}
	switch v.Action {
	case webhook.ActionReject:
		reason := v.Reason
		if reason == "" {
			reason = "the message was rejected"
		}
		return reject(protocol.CodeForbidden, "%s", reason)
	case webhook.ActionReplace:
		switch {
		case slices.Contains(config.MediaKinds, up.Kind):
			s.log.Warn("before-send hook replaced the body of a media message; ignored", "conv", up.Conv, "kind", up.Kind)
		case len(*v.Body) > maxReplacedBody:
			s.log.Warn("before-send hook replaced the body with one over 1 MiB; ignored", "conv", up.Conv)
		default:
			up.Body = *v.Body
		}
	}
	return nil
}

// noticeOffline hands a notice of m to the offline push for every member
// other than the sender with no live session.
func (s *Service) noticeOffline(sender string, m *store.Message, members []string, live map[string][]sessions.Session, muted map[string]bool) {
	if s.offline == nil || !s.offline.Enabled() {
		return
	}
	for _, u := range members {
		if u == sender || len(live[u]) > 0 {
			continue
		}
		s.offline.Add(u, webhook.Notice{MID: m.MID, Conv: m.Conv, Seq: m.Seq, From: m.Sender, Kind: m.Kind, Preview: m.Body, TS: m.TS, Muted: muted[u]})
	}
}

// presenceEvent writes a user.online / user.offline event into the webhook
// outbox (key "user:<id>": in order per user) when the events hook wants it.
func (s *Service) presenceEvent(ctx context.Context, up *messageapi.Upstream) error {
	if s.hooks == nil || s.admin == nil || !s.hooks.Config().WantsEvent(up.Kind) {
		return nil
	}
	if up.Kind != messageapi.PresenceOnline && up.Kind != messageapi.PresenceOffline {
		return nil
	}
	b, err := json.Marshal(map[string]any{"event": up.Kind, "user": up.User, "ts": up.TS})
	if err != nil {
		return err
	}
	err = s.admin.AddOutbox(ctx, store.OutboxEntry{Target: store.OutboxEvents, Key: "user:" + up.User, Kind: up.Kind, Payload: string(b), Created: up.TS})
	if err != nil {
		return fmt.Errorf("record presence event: %w", err) // redelivered
	}
	return nil
}
