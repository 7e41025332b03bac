package message

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/store"
)

// GroupEventStore is the outbox of group events (written by the user
// service with each group change).
type GroupEventStore interface {
	PendingGroupEvents(ctx context.Context, limit int) ([]store.GroupEvent, error)
	DoneGroupEvent(ctx context.Context, id int64) error
}

// groupEventPoll is how often the outbox is read when it was empty.
const groupEventPoll = 100 * time.Millisecond

// RunGroupEvents turns outbox group events into group_event messages of the
// group conversation until ctx ends. Several message service replicas may
// run it: the (actor, "~ge:<id>") claim makes one message per event, and a
// replica that finds it made already only pushes it again.
func (s *Service) RunGroupEvents(ctx context.Context, events GroupEventStore) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		list, err := events.PendingGroupEvents(ctx, 100)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("read group events", "err", err)
		}
		for _, e := range list {
			if err := s.groupEvent(ctx, e); err != nil {
				if ctx.Err() == nil {
					s.log.Warn("group event not delivered; retrying", "group", e.Group, "id", e.ID, "err", err)
				}
				break // keep the order: retry from this one
			}
			if err := events.DoneGroupEvent(ctx, e.ID); err != nil && ctx.Err() == nil {
				s.log.Warn("group event delivered but still in the outbox", "id", e.ID, "err", err)
			}
		}
		if len(list) == 100 {
			t.Reset(0)
		} else {
			t.Reset(groupEventPoll)
		}
	}
}

// groupEvent stores e as a group_event message: inbox rows for the members
// at this time (write diffusion) and for e.Recipients (removed members,
// members of a dismissed group) in every case, since they cannot pull.
func (s *Service) groupEvent(ctx context.Context, e store.GroupEvent) error {
	conv := protocol.GroupConv(e.Group)
	var current []string
	cm, err := s.members(ctx, e.Group)
	switch {
	case errors.Is(err, store.ErrNotFound): // dismissed
	case err != nil:
		return fmt.Errorf("group members: %w", err)
	default:
		for _, m := range cm.members {
			current = append(current, m.UserID)
		}
	}
	readDiffusion := len(current) > s.threshold()
	seen := map[string]bool{}
	var all, participants []string
	for _, u := range current {
		seen[u] = true
		all = append(all, u)
		if !readDiffusion {
			participants = append(participants, u)
		}
	}
	for _, u := range e.Recipients {
		if !seen[u] {
			seen[u] = true
			all = append(all, u)
			participants = append(participants, u)
		}
	}
	cmid := "~ge:" + strconv.FormatInt(e.ID, 10)
	fresh, _, err := s.store.ClaimCMID(ctx, e.Actor, cmid, conv)
	if err != nil {
		return fmt.Errorf("dedup claim: %w", err)
	}
	var m *store.Message
	var inbox []store.InboxEntry
	if !fresh {
		m, err = s.store.MessageByCMID(ctx, e.Actor, cmid)
		if err == nil {
			inbox, err = s.store.InboxEntries(ctx, m.Conv, m.Seq)
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	if m == nil {
		up := upstreamOf(e.Actor, cmid)
		m, inbox, err = s.newRecord(ctx, conv, up, participants)
		if err != nil {
			return err
		}
		m.Kind, m.Body = protocol.KindGroupEvent, e.Body
		err = s.store.SaveMessage(ctx, *m, inbox, nil)
		if errors.Is(err, store.ErrDuplicate) {
			return fmt.Errorf("group event %d stored by another replica meanwhile", e.ID) // retried: then found
		}
		if err != nil {
			return fmt.Errorf("store group event: %w", err)
		}
	}
	return s.pushEvent(ctx, m, inbox, all)
}

// pushEvent pushes a group event: the msg to users with an inbox row, a
// notify to the other (read diffusion) members.
func (s *Service) pushEvent(ctx context.Context, m *store.Message, inbox []store.InboxEntry, users []string) error {
	seqOf := make(map[string]int64, len(inbox))
	for _, e := range inbox {
		seqOf[e.User] = e.InboxSeq
	}
	live, err := s.sessions.Lookup(ctx, users)
	if err != nil {
		s.log.Warn("session lookup failed; members will sync", "conv", m.Conv, "err", err)
		return nil
	}
	msg, err := json.Marshal(toMsg(m, 0))
	if err != nil {
		return err
	}
	notify, err := json.Marshal(protocol.Notify{T: protocol.TypeNotify, Conv: m.Conv, Seq: m.Seq})
	if err != nil {
		return err
	}
	err = errors.Join(
		s.pushByGateway(ctx, msg, m.TS, live, func(user, _ string) (bool, int64) { return seqOf[user] > 0, seqOf[user] }),
		s.pushByGateway(ctx, notify, m.TS, live, func(user, _ string) (bool, int64) { return seqOf[user] == 0, 0 }))
	if err != nil {
		s.log.Warn("push failed; members will sync", "conv", m.Conv, "err", err)
	}
	return nil
}
