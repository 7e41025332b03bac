package message

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/services/sequence"
)

// SocialStore is what the message service needs of the social graph: the
// one-query check of a direct message, blocks among users, and the outbox
// of social events.
type SocialStore interface {
	CheckDirect(ctx context.Context, sender, recipient string) (store.DirectCheck, error)
	BlockedBetween(ctx context.Context, user string, others []string) (map[string]bool, error)
	PendingSocialEvents(ctx context.Context, limit int) ([]store.SocialEvent, error)
	ClaimSocialEvent(ctx context.Context, id int64, now, until int64) (bool, error)
	DeliverSocialEvent(ctx context.Context, e store.SocialEvent, inboxSeq int64) (bool, error)
}

// DM policies (users.dm_policy; "" is the cluster default).
const (
	DMAnyone  = "anyone"
	DMFriends = "friends"
)

// checkDirect refuses a one-to-one message the recipient does not take:
// NOT_FOUND when the recipient has no account, FORBIDDEN "blocked" when
// either blocked the other (nothing is stored), FORBIDDEN "not a friend"
// when the recipient takes messages from friends only.
func (s *Service) checkDirect(ctx context.Context, sender, recipient string) error {
	c, err := s.directCheck(ctx, sender, recipient)
	if err != nil {
		return fmt.Errorf("recipient lookup: %w", err)
	}
	if !c.Exists {
		return reject(protocol.CodeNotFound, "user %s does not exist", recipient)
	}
	if sender == recipient {
		return nil
	}
	if c.Blocked {
		return reject(protocol.CodeForbidden, "blocked")
	}
	policy := c.Policy
	if policy == "" {
		policy = s.defaultDMPolicy()
	}
	if policy == DMFriends && !c.Friends {
		return reject(protocol.CodeForbidden, "not a friend")
	}
	return nil
}

// withoutBlocked returns users without those who blocked user or whom user
// blocked. Callers use it for ephemeral signals: on an error they drop the
// signal rather than risk it reaching a blocker.
func (s *Service) withoutBlocked(ctx context.Context, user string, users []string) ([]string, error) {
	blocked, err := s.store.BlockedBetween(ctx, user, users)
	if err != nil {
		return nil, err
	}
	if len(blocked) == 0 {
		return users, nil
	}
	out := make([]string, 0, len(users))
	for _, u := range users {
		if !blocked[u] {
			out = append(out, u)
		}
	}
	return out, nil
}

// socialEventPoll is how often the outbox is read when it was empty.
const socialEventPoll = 100 * time.Millisecond

// socialEventLease is how long a replica holds an event it delivers; a
// replica that dies holding one delays it by this much.
const socialEventLease = 30 * time.Second

// RunSocialEvents turns outbox social events (friend requests, friends
// added or removed: written by the user service with the change) into
// records of their user's inbox and pushes them to the user's online
// devices, until ctx ends. Several replicas may run it: each event is
// claimed (leased) before an inbox number is taken, and a replica that
// finds an event claimed by another stops its pass there, so events keep
// their order (an event goes into an inbox only after every earlier one).
func (s *Service) RunSocialEvents(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		list, err := s.store.PendingSocialEvents(ctx, 100)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("read social events", "err", err)
		}
		for _, e := range list {
			now := s.now()
			mine, err := s.store.ClaimSocialEvent(ctx, e.ID, now.UnixMilli(), now.Add(socialEventLease).UnixMilli())
			if err == nil && !mine {
				break // another replica delivers it (and the ones after it)
			}
			if err == nil {
				err = s.socialEvent(ctx, e)
			}
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("social event not delivered; retrying", "user", e.User, "id", e.ID, "err", err)
				}
				break // keep the order: retry from this one
			}
		}
		if len(list) == 100 {
			t.Reset(0)
		} else {
			t.Reset(socialEventPoll)
		}
	}
}

func (s *Service) socialEvent(ctx context.Context, e store.SocialEvent) error {
	ranges, err := s.seq.Allocate(ctx, []sequence.Request{{Key: "i:" + e.User, Count: 1}})
	if err != nil {
		return fmt.Errorf("allocate inbox number: %w", err)
	}
	inboxSeq := ranges[0].First
	done, err := s.store.DeliverSocialEvent(ctx, e, inboxSeq)
	if err != nil || !done {
		return err
	}
	live, err := s.sessions.Lookup(ctx, []string{e.User})
	if err != nil {
		s.log.Warn("session lookup failed; the user will sync", "err", err)
		return nil
	}
	frame, err := json.Marshal(eventFrame(e.Kind, e.Body, e.CreatedAt, 0))
	if err != nil {
		return err
	}
	if err := s.pushByGateway(ctx, frame, 0, live, func(string, string) (bool, int64) { return true, inboxSeq }); err != nil {
		s.log.Warn("event push failed; the user will sync", "err", err)
	}
	return nil
}

// eventFrame is the {"t":"event"} frame of a stored event (body: its data
// as JSON).
func eventFrame(kind, body string, ts, inboxSeq int64) protocol.Event {
	data := json.RawMessage(body)
	if !json.Valid(data) {
		data = json.RawMessage("null")
	}
	return protocol.Event{T: protocol.TypeEvent, Kind: kind, Data: data, TS: ts, InboxSeq: inboxSeq}
}
