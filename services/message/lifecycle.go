package message

// The message lifecycle (issue 16): recall, edit and delete-for-me, replies
// and mentions. Every change a device must converge on is a record with a
// place in a sequence the client follows: recall and edit records are
// messages of the conversation (seq, and inbox rows under write diffusion);
// a delete record is a row in the deleting user's own inbox. Offline
// devices get them by sync/pull, in order, exactly once.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/services/sequence"
)

// LifecycleStore is what recall, edit, delete and the conversation list
// need from storage.
type LifecycleStore interface {
	MessageAt(ctx context.Context, conv string, seq int64) (*store.Message, error)
	SaveRecall(ctx context.Context, m store.Message, inbox []store.InboxEntry) error
	SaveEdit(ctx context.Context, m store.Message, inbox []store.InboxEntry) error
	SaveDelete(ctx context.Context, m store.Message, inbox []store.InboxEntry, user, conv string, seqs []int64) error
	PullVisible(ctx context.Context, user, conv string, from, to, before int64, limit int) ([]store.Message, bool, error)
	ConversationPage(ctx context.Context, user string, after *store.ConvCursor, limit int) ([]store.Conversation, *store.ConvCursor, error)
	SetConvSettings(ctx context.Context, user, conv string, u store.ConvSettings) error
	MutedIn(ctx context.Context, conv string) (map[string]bool, error)
}

// Default lifecycle windows.
const (
	DefaultRecallWindow = 120 * time.Second
	DefaultEditWindow   = 900 * time.Second
)

// deleteBody is the body of a delete record.
type deleteBody struct {
	Conv string  `json:"conv"`
	Seqs []int64 `json:"seqs"`
}

// convMember is the requesting user's place in a conversation.
type convMember struct {
	members       []string // the requester first
	readDiffusion bool
	manager       bool  // group owner or admin
	floor         int64 // first seq the user may see
	muted         bool  // muted in the group (may not send)
	roles         map[string]string
}

// memberOf returns user's place in conv; a rejection when user is not in it.
func (s *Service) memberOf(ctx context.Context, user, conv string) (*convMember, error) {
	kind, a, b, ok := protocol.ParseConv(conv)
	if !ok {
		return nil, reject(protocol.CodeBadFrame, "malformed conversation id")
	}
	if kind == 'u' {
		switch {
		case user != a && user != b:
			return nil, reject(protocol.CodeForbidden, "you are not a member of this conversation")
		case a == b:
			return &convMember{members: []string{user}}, nil
		case user == a:
			return &convMember{members: []string{a, b}}, nil
		}
		return &convMember{members: []string{b, a}}, nil
	}
	e, err := s.members(ctx, a)
	if errors.Is(err, store.ErrNotFound) {
		return nil, reject(protocol.CodeForbidden, "you are not a member of this conversation")
	}
	if err != nil {
		return nil, fmt.Errorf("group members: %w", err)
	}
	me, ok := e.index[user]
	if !ok {
		return nil, reject(protocol.CodeForbidden, "you are not a member of this conversation")
	}
	cm := &convMember{members: make([]string, 0, len(e.members)), manager: me.Role == store.RoleOwner || me.Role == store.RoleAdmin,
		floor: me.JoinedSeq + 1, muted: me.MutedUntil > s.now().UnixMilli() || (e.muteAll && me.Role != store.RoleOwner && me.Role != store.RoleAdmin), roles: make(map[string]string, len(e.members))}
	cm.members = append(cm.members, user)
	for _, m := range e.members {
		cm.roles[m.UserID] = m.Role
		if m.UserID != user {
			cm.members = append(cm.members, m.UserID)
		}
	}
	cm.readDiffusion = len(cm.members) > s.threshold()
	return cm, nil
}

// checkSendExtras validates a send's replyTo and mentions against the
// conversation.
func (s *Service) checkSendExtras(ctx context.Context, up *messageapi.Upstream) error {
	if up.ReplyTo == 0 && len(up.Mentions) == 0 {
		return nil
	}
	cm, err := s.memberOf(ctx, up.User, up.Conv)
	if err != nil {
		return err
	}
	if up.ReplyTo > 0 {
		m, err := s.store.MessageAt(ctx, up.Conv, up.ReplyTo)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (m.Seq < cm.floor || protocol.SystemKind(m.Kind))) {
			return reject(protocol.CodeNotFound, "replyTo: there is no message %d in this conversation to reply to", up.ReplyTo)
		}
		if err != nil {
			return fmt.Errorf("replyTo lookup: %w", err)
		}
	}
	for _, u := range up.Mentions {
		if u == protocol.MentionAll {
			if up.To.Group == "" {
				return reject(protocol.CodeBadFrame, "mentions: \"all\" is for groups")
			}
			if !cm.manager {
				return reject(protocol.CodeForbidden, "mentions: only the group owner or an admin may mention all")
			}
			continue
		}
		in := false
		if cm.roles != nil {
			_, in = cm.roles[u]
		} else {
			in = u == cm.members[0] || (len(cm.members) > 1 && u == cm.members[1])
		}
		if !in {
			return reject(protocol.CodeBadFrame, "mentions: user %s is not a member of this conversation", u)
		}
	}
	return nil
}

// processOp handles recall, edit and delete.
func (s *Service) processOp(ctx context.Context, up *messageapi.Upstream) error {
	cm, err := s.memberOf(ctx, up.User, up.Conv)
	if err != nil {
		return err
	}
	conv := up.Conv
	if up.Op == messageapi.OpDelete {
		conv = store.DeleteConv(up.User)
	}
	// A redelivered request that was applied before is answered again.
	var fresh bool
	err = s.guarded(func() (err error) {
		fresh, _, err = s.store.ClaimCMID(ctx, up.User, up.CMID, conv)
		return err
	})
	if err != nil {
		return fmt.Errorf("dedup claim: %w", err)
	}
	if !fresh {
		prev, err := s.store.MessageByCMID(ctx, up.User, up.CMID)
		if err == nil {
			return s.redeliverRecord(ctx, up, prev, cm)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("dedup lookup: %w", err)
		}
	}
	switch up.Op {
	case messageapi.OpRecall, messageapi.OpEdit:
		return s.recallOrEdit(ctx, up, cm)
	case messageapi.OpDelete:
		return s.deleteForMe(ctx, up, cm)
	}
	return reject(protocol.CodeBadFrame, "unknown operation %q", up.Op)
}

func (s *Service) recallOrEdit(ctx context.Context, up *messageapi.Upstream, cm *convMember) error {
	verb := up.Op
	orig, err := s.store.MessageAt(ctx, up.Conv, up.Ref)
	if errors.Is(err, store.ErrNotFound) || (err == nil && orig.Seq < cm.floor) {
		return reject(protocol.CodeNotFound, "%s: there is no message %d in this conversation", verb, up.Ref)
	}
	if err != nil {
		return fmt.Errorf("%s: lookup: %w", verb, err)
	}
	if protocol.SystemKind(orig.Kind) {
		return reject(protocol.CodeBadFrame, "%s: message %d is a %s record, not a message", verb, up.Ref, orig.Kind)
	}
	age := s.now().Sub(time.UnixMilli(orig.TS))
	kind := protocol.KindRecall
	if up.Op == messageapi.OpRecall {
		switch {
		case orig.Flags&store.FlagRecalled != 0:
			return s.ok(ctx, up) // already recalled: nothing to change
		case orig.Sender == up.User && age <= s.recallWindow:
		case cm.manager:
		case orig.Sender != up.User:
			return reject(protocol.CodeForbidden, "recall: you can recall only your own messages (group owners and admins: any)")
		default:
			return reject(protocol.CodeForbidden, "recall: message %d is too old to recall: messages can be recalled within %s of sending", up.Ref, s.recallWindow)
		}
	} else {
		kind = protocol.KindEdit
		switch {
		case orig.Sender != up.User:
			return reject(protocol.CodeForbidden, "edit: only the sender can edit a message")
		case orig.Flags&store.FlagRecalled != 0:
			return reject(protocol.CodeForbidden, "edit: message %d was recalled", up.Ref)
		case age > s.editWindow:
			return reject(protocol.CodeForbidden, "edit: message %d is too old to edit: messages can be edited within %s of sending", up.Ref, s.editWindow)
		case orig.Flags&store.FlagEdited != 0 && orig.Body == up.Body:
			// A retried edit whose answer was lost (or an edit that
			// changes nothing): the message already reads so.
			return s.ok(ctx, up)
		}
	}
	participants := cm.members
	if cm.readDiffusion {
		participants = nil
	}
	m, inbox, err := s.newRecord(ctx, up.Conv, up, participants)
	if err != nil {
		return err
	}
	m.Kind, m.Ref = kind, up.Ref
	save := s.store.SaveRecall
	if up.Op == messageapi.OpEdit {
		m.Body, save = up.Body, s.store.SaveEdit
	}
	err = s.guarded(func() error { return save(ctx, *m, inbox) }, store.ErrDuplicate, store.ErrRecalled, store.ErrNotFound)
	switch {
	case errors.Is(err, store.ErrRecalled) && up.Op == messageapi.OpRecall:
		return s.ok(ctx, up)
	case errors.Is(err, store.ErrRecalled):
		return reject(protocol.CodeForbidden, "edit: message %d was recalled", up.Ref)
	case errors.Is(err, store.ErrDuplicate):
		prev, lerr := s.store.MessageByCMID(ctx, up.User, up.CMID)
		if lerr != nil {
			return fmt.Errorf("dedup after conflict: %w", lerr)
		}
		return s.redeliverRecord(ctx, up, prev, cm)
	case err != nil:
		return fmt.Errorf("store %s: %w", verb, err)
	}
	return s.deliverRecord(ctx, up, m, inbox, cm)
}

func (s *Service) deleteForMe(ctx context.Context, up *messageapi.Upstream, cm *convMember) error {
	body, err := json.Marshal(deleteBody{Conv: up.Conv, Seqs: up.Seqs})
	if err != nil {
		return err
	}
	m, inbox, err := s.newRecord(ctx, store.DeleteConv(up.User), up, []string{up.User})
	if err != nil {
		return err
	}
	m.Kind, m.Body = protocol.KindDelete, string(body)
	err = s.guarded(func() error { return s.store.SaveDelete(ctx, *m, inbox, up.User, up.Conv, up.Seqs) }, store.ErrDuplicate)
	if errors.Is(err, store.ErrDuplicate) {
		prev, lerr := s.store.MessageByCMID(ctx, up.User, up.CMID)
		if lerr != nil {
			return fmt.Errorf("dedup after conflict: %w", lerr)
		}
		return s.redeliverRecord(ctx, up, prev, cm)
	}
	if err != nil {
		return fmt.Errorf("store delete: %w", err)
	}
	return s.deliverRecord(ctx, up, m, inbox, &convMember{members: []string{up.User}})
}

// newRecord takes the sequence numbers of a record in conv with inbox rows
// for participants.
func (s *Service) newRecord(ctx context.Context, conv string, up *messageapi.Upstream, participants []string) (*store.Message, []store.InboxEntry, error) {
	reqs := make([]sequence.Request, 0, 1+len(participants))
	reqs = append(reqs, sequence.Request{Key: "c:" + conv, Count: 1})
	for _, u := range participants {
		reqs = append(reqs, sequence.Request{Key: "i:" + u, Count: 1})
	}
	ranges, err := s.seq.Allocate(ctx, reqs)
	if err != nil {
		return nil, nil, fmt.Errorf("allocate sequence numbers: %w", err)
	}
	inbox := make([]store.InboxEntry, len(participants))
	for i, u := range participants {
		inbox[i] = store.InboxEntry{User: u, InboxSeq: ranges[i+1].First}
	}
	m := &store.Message{Conv: conv, Seq: ranges[0].First, MID: s.ids.Next(), Sender: up.User, CMID: up.CMID, TS: s.now().UnixMilli()}
	return m, inbox, nil
}

func (s *Service) redeliverRecord(ctx context.Context, up *messageapi.Upstream, prev *store.Message, cm *convMember) error {
	inbox, err := s.store.InboxEntries(ctx, prev.Conv, prev.Seq)
	if err != nil {
		return fmt.Errorf("inbox lookup: %w", err)
	}
	if prev.Kind == protocol.KindDelete {
		cm = &convMember{members: []string{up.User}}
	}
	return s.deliverRecord(ctx, up, prev, inbox, cm)
}

// deliverRecord pushes a record to every online device of the members,
// the requesting device included (so its cursors see no gap), then answers
// ok.
func (s *Service) deliverRecord(ctx context.Context, up *messageapi.Upstream, m *store.Message, inbox []store.InboxEntry, cm *convMember) error {
	seqOf := make(map[string]int64, len(inbox))
	for _, e := range inbox {
		seqOf[e.User] = e.InboxSeq
	}
	live, err := s.sessions.Lookup(ctx, cm.members)
	if err != nil {
		s.log.Warn("session lookup failed; members will sync", "conv", m.Conv, "err", err)
		return s.ok(ctx, up)
	}
	var frame []byte
	if len(inbox) == 0 && cm.readDiffusion {
		frame, err = json.Marshal(protocol.Notify{T: protocol.TypeNotify, Conv: m.Conv, Seq: m.Seq})
	} else {
		frame, err = json.Marshal(toMsg(m, 0))
	}
	if err != nil {
		return err
	}
	if err := s.pushByGateway(ctx, frame, m.TS, live, func(user, _ string) (bool, int64) { return true, seqOf[user] }); err != nil {
		s.log.Warn("push failed; members will sync", "conv", m.Conv, "err", err)
	}
	return s.ok(ctx, up)
}

func (s *Service) ok(ctx context.Context, up *messageapi.Upstream) error {
	return s.reply(ctx, up, messageapi.PushFrame, protocol.OK{T: protocol.TypeOK, ID: up.ID})
}

// lifecycleFields fills the msg fields of issue 16 from a stored message;
// a delete record is shown as the conversation it applies to, seq 0.
func lifecycleFields(out *protocol.Msg, m *store.Message) {
	out.Edited = m.Flags&store.FlagEdited != 0
	out.Ref, out.ReplyTo = m.Ref, m.ReplyTo
	if m.Mentions != "" {
		out.Mentions = strings.Split(m.Mentions, ",")
	}
	if m.Kind == protocol.KindDelete && strings.HasPrefix(m.Conv, "d:") {
		var d deleteBody
		_ = json.Unmarshal([]byte(m.Body), &d)
		out.Conv, out.Seq, out.Seqs, out.Body = d.Conv, 0, d.Seqs, ""
	}
}

// mutedTargets returns the members of conv who muted it (nil on error: a
// push without the flag only makes a client alert).
func (s *Service) mutedTargets(ctx context.Context, conv string) map[string]bool {
	muted, err := s.store.MutedIn(ctx, conv)
	if err != nil {
		s.log.Warn("muted lookup failed", "conv", conv, "err", err)
		return nil
	}
	return muted
}

// upstreamOf is the request a server-made record is attributed to.
func upstreamOf(user, cmid string) *messageapi.Upstream {
	return &messageapi.Upstream{User: user, CMID: cmid}
}
