package message

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/internal/rest"
	"github.com/imkube/imkube/internal/sessions"
	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/services/sequence"
)

// SignalStore is what receipts, read sync, read counts and presence need
// from storage.
type SignalStore interface {
	ReadSeq(ctx context.Context, user, conv string) (int64, error)
	LastSeq(ctx context.Context, conv string) (int64, error)
	SetReadRecord(ctx context.Context, user, conv string, seq, inboxSeq int64) (int64, bool, error)
	MessageAt(ctx context.Context, conv string, seq int64) (*store.Message, error)
	GroupReadCounts(ctx context.Context, gid string, seq int64, exclude string) (read, unread int64, err error)
	GroupReaders(ctx context.Context, gid string, seq int64, exclude string) ([]string, error)
	SharedWith(ctx context.Context, user string, others []string) (map[string]bool, error)
}

// signals is the message service's state for receipts, typing and presence.
type signals struct {
	delivered    *receipts
	typing       *gate
	presence     sessions.Presence
	typingFilter func(ctx context.Context, sender string, recipients []string) []string
}

func (s *Service) initSignals(cfg Config, deps Deps) {
	if cfg.TypingInterval <= 0 {
		cfg.TypingInterval = 2 * time.Second
	}
	s.delivered = newReceipts(cfg.ReceiptInterval, 100000, s.sendDelivered)
	s.typing = newGate(cfg.TypingInterval, 100000, func() time.Time { return s.now() })
	s.presence = deps.Presence
	if s.presence == nil {
		s.presence, _ = deps.Sessions.(sessions.Presence)
	}
	s.typingFilter = deps.TypingFilter
}

// read moves user's read cursor in conv. When it moved: the user's other
// devices get read_sync (under write diffusion the move is also a record in
// the user's inbox, so a device that is offline now gets it by sync; a
// read-diffusion group's cursor comes with auth_ok), and the other party of
// a one-to-one chat gets a read receipt (coalesced).
func (s *Service) read(ctx context.Context, user, device, conv string, seq int64) error {
	if _, err := s.mayRead(ctx, user, conv); err != nil {
		return err
	}
	cur, err := s.store.ReadSeq(ctx, user, conv)
	if err != nil {
		return unavailable(err)
	}
	last, err := s.store.LastSeq(ctx, conv)
	if err != nil {
		return unavailable(err)
	}
	if min(seq, last) <= cur {
		return nil // nothing moves: no inbox number is taken
	}
	writeDiffusion, err := s.writeDiffusion(ctx, conv)
	if err != nil {
		return err
	}
	var inboxSeq int64
	if writeDiffusion {
		r, err := s.seq.Allocate(ctx, []sequence.Request{{Key: "i:" + user, Count: 1}})
		if err != nil {
			return unavailable(err)
		}
		inboxSeq = r[0].First
	}
	got, moved, err := s.store.SetReadRecord(ctx, user, conv, seq, inboxSeq)
	if err != nil {
		return unavailable(err)
	}
	if !moved {
		// Another device moved it first; the number taken stays unused
		// (an empty place in the inbox, like after a failure).
		return nil
	}
	if kind, _, _, _ := protocol.ParseConv(conv); kind == 'u' {
		s.receipts.moved(user, conv, got)
	}
	s.sendReadSync(ctx, user, device, conv, got, inboxSeq)
	return nil
}

// writeDiffusion reports whether conv's messages go to inboxes.
func (s *Service) writeDiffusion(ctx context.Context, conv string) (bool, error) {
	kind, gid, _, _ := protocol.ParseConv(conv)
	if kind != 'g' {
		return true, nil
	}
	e, err := s.members(ctx, gid)
	if errors.Is(err, store.ErrNotFound) {
		return false, messageapi.ErrForbidden
	}
	if err != nil {
		return false, unavailable(err)
	}
	return len(e.members) <= s.threshold(), nil
}

// sendReadSync pushes read_sync to user's devices other than device.
func (s *Service) sendReadSync(ctx context.Context, user, device, conv string, seq, inboxSeq int64) {
	live, err := s.sessions.Lookup(ctx, []string{user})
	if err != nil {
		return // the devices get the record by sync
	}
	frame, _ := json.Marshal(protocol.ReadSync{T: protocol.TypeReadSync, Conv: conv, Seq: seq})
	err = s.pushByGateway(ctx, frame, 0, live, func(_, d string) (bool, int64) { return d != device, inboxSeq })
	if err != nil {
		s.log.Warn("read_sync push failed", "err", err)
	}
}

// sendReceipt pushes a read receipt to the other party of a one-to-one chat.
func (s *Service) sendReceipt(user, conv string, seq int64) {
	s.pushReceipt(protocol.ReceiptRead, user, conv, seq)
}

// sendDelivered pushes a delivered receipt to the other party.
func (s *Service) sendDelivered(user, conv string, seq int64) {
	s.pushReceipt(protocol.ReceiptDelivered, user, conv, seq)
}

// pushReceipt pushes a receipt of kind to the other party of a one-to-one
// chat; receipts are best effort.
func (s *Service) pushReceipt(kind, user, conv string, seq int64) {
	_, a, b, _ := protocol.ParseConv(conv)
	other := a
	if other == user {
		other = b
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	live, err := s.sessions.Lookup(ctx, []string{other})
	if err != nil {
		return
	}
	frame, _ := json.Marshal(protocol.Receipt{T: protocol.TypeReceipt, Conv: conv, User: user, Kind: kind, Seq: seq})
	if err := s.pushByGateway(ctx, frame, 0, live, func(string, string) (bool, int64) { return true, 0 }); err != nil {
		s.log.Warn("receipt push failed", "kind", kind, "err", err)
	}
}

// Delivered implements messageapi.Backend: in a one-to-one chat the other
// party's devices get a delivered receipt (coalesced like read receipts);
// in groups it is accepted and does nothing (groups count reads).
func (s *Service) Delivered(ctx context.Context, user, conv string, seq int64) error {
	kind, a, b, ok := protocol.ParseConv(conv)
	if !ok {
		return fmt.Errorf("%w: malformed conversation id", messageapi.ErrBadRequest)
	}
	if kind == 'g' {
		_, err := s.mayRead(ctx, user, conv)
		return err
	}
	if user != a && user != b {
		return messageapi.ErrForbidden
	}
	if a == b || seq <= 0 {
		return nil
	}
	last, err := s.store.LastSeq(ctx, conv)
	if err != nil {
		return unavailable(err)
	}
	if seq = min(seq, last); seq > 0 {
		s.delivered.moved(user, conv, seq)
	}
	return nil
}

// Typing implements messageapi.Backend: the other online members of conv
// get typing{conv, user}, at most once per TypingInterval per user and
// conversation. Nothing is stored.
func (s *Service) Typing(ctx context.Context, user, conv string) error {
	kind, a, b, ok := protocol.ParseConv(conv)
	if !ok {
		return fmt.Errorf("%w: malformed conversation id", messageapi.ErrBadRequest)
	}
	if _, err := s.mayRead(ctx, user, conv); err != nil {
		return err
	}
	if !s.typing.allow(user + "\x00" + conv) {
		return nil // excess typing is dropped silently
	}
	var recipients []string
	if kind == 'u' {
		if a != b {
			recipients = []string{a, b}
		}
	} else {
		e, err := s.members(ctx, a)
		if err != nil {
			return unavailable(err)
		}
		recipients = make([]string, 0, len(e.members))
		for _, m := range e.members {
			recipients = append(recipients, m.UserID)
		}
	}
	// Blocking hook: users who blocked the sender never see the sender
	// typing.
	if s.typingFilter != nil {
		recipients = s.typingFilter(ctx, user, recipients)
	}
	recipients, err := s.withoutBlocked(ctx, user, recipients)
	if err != nil {
		return nil // ephemeral: dropped rather than risk reaching a blocker
	}
	if len(recipients) == 0 {
		return nil
	}
	live, err := s.sessions.Lookup(ctx, recipients)
	if err != nil {
		return nil // ephemeral: a lost typing signal is not an error
	}
	frame, _ := json.Marshal(protocol.Typing{T: protocol.TypeTyping, Conv: conv, User: user})
	if err := s.pushByGateway(ctx, frame, 0, live, func(u, _ string) (bool, int64) { return u != user, 0 }); err != nil {
		s.log.Warn("typing push failed", "err", err)
	}
	return nil
}

// Presence implements messageapi.Backend.
func (s *Service) Presence(ctx context.Context, user string, users []string) ([]protocol.Presence, error) {
	if len(users) == 0 || len(users) > protocol.MaxPresenceUsers {
		return nil, fmt.Errorf("%w: users must list 1-%d user ids", messageapi.ErrBadRequest, protocol.MaxPresenceUsers)
	}
	for _, u := range users {
		if !protocol.ValidID(u) {
			return nil, fmt.Errorf("%w: invalid user id %.70q", messageapi.ErrBadRequest, u)
		}
	}
	shared, err := s.store.SharedWith(ctx, user, users)
	if err != nil {
		return nil, unavailable(err)
	}
	// A block either way counts as sharing nothing (the answer does not
	// tell a block apart).
	blocked, err := s.store.BlockedBetween(ctx, user, users)
	if err != nil {
		return nil, unavailable(err)
	}
	for _, u := range users {
		if !shared[u] || blocked[u] {
			return nil, fmt.Errorf("%w: user %s is not your friend and shares no conversation with you", messageapi.ErrForbidden, u)
		}
	}
	live, err := s.sessions.Lookup(ctx, users)
	if err != nil {
		return nil, unavailable(err)
	}
	seen := map[string]int64{}
	if s.presence != nil {
		if seen, err = s.presence.LastSeen(ctx, users); err != nil {
			return nil, unavailable(err)
		}
	}
	now := s.now().UnixMilli()
	out := make([]protocol.Presence, 0, len(users))
	for _, u := range users {
		p := protocol.Presence{User: u, Online: len(live[u]) > 0, LastSeen: seen[u]}
		if p.Online {
			p.LastSeen = now
		}
		out = append(out, p)
	}
	return out, nil
}

// Reads is the read state of one message: how many of the members who can
// see it (other than its sender) have read it and, for one-to-one chats and
// groups up to the write-diffusion threshold, who.
type Reads struct {
	ReadCount   int64    `json:"readCount"`
	UnreadCount int64    `json:"unreadCount"`
	Readers     []string `json:"readers,omitempty"`
}

// Reads answers GET /api/v1/conversations/{conv}/reads?seq=N from the
// members' read cursors (one aggregate query, however many messages).
func (s *Service) Reads(ctx context.Context, user, conv string, seq int64) (*Reads, error) {
	floor, err := s.mayRead(ctx, user, conv)
	if err != nil {
		return nil, err
	}
	if seq < max(floor, 1) {
		return nil, rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "no message %d in this conversation that you can see", seq)
	}
	m, err := s.store.MessageAt(ctx, conv, seq)
	if errors.Is(err, store.ErrNotFound) {
		return nil, rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "no message %d in this conversation", seq)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	kind, a, b, _ := protocol.ParseConv(conv)
	if kind == 'u' {
		out := &Reads{Readers: []string{}}
		if a == b {
			return out, nil
		}
		other := a
		if other == m.Sender {
			other = b
		}
		r, err := s.store.ReadSeq(ctx, other, conv)
		if err != nil {
			return nil, unavailable(err)
		}
		if r >= seq {
			out.ReadCount, out.Readers = 1, []string{other}
		} else {
			out.UnreadCount = 1
		}
		return out, nil
	}
	e, err := s.members(ctx, a)
	if err != nil {
		return nil, unavailable(err)
	}
	out := &Reads{}
	if out.ReadCount, out.UnreadCount, err = s.store.GroupReadCounts(ctx, a, seq, m.Sender); err != nil {
		return nil, unavailable(err)
	}
	if len(e.members) <= s.threshold() {
		if out.Readers, err = s.store.GroupReaders(ctx, a, seq, m.Sender); err != nil {
			return nil, unavailable(err)
		}
	}
	return out, nil
}

func (s *Service) signalRoutes(mux *http.ServeMux, keys *auth.Keys) {
	mux.Handle("GET /api/v1/conversations/{conv}/reads", rest.Authenticated(keys, http.HandlerFunc(s.handleReads)))
	mux.Handle("GET /api/v1/presence", rest.Authenticated(keys, http.HandlerFunc(s.handlePresence)))
}

func (s *Service) handleReads(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseInt(r.URL.Query().Get("seq"), 10, 64)
	if err != nil || seq < 1 {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "seq must be a message seq >= 1"))
		return
	}
	res, err := s.Reads(r.Context(), rest.UserID(r.Context()), r.PathValue("conv"), seq)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	rest.WriteJSON(w, http.StatusOK, res)
}

func (s *Service) handlePresence(w http.ResponseWriter, r *http.Request) {
	var users []string
	for _, u := range strings.Split(r.URL.Query().Get("users"), ",") {
		if u = strings.TrimSpace(u); u != "" {
			users = append(users, u)
		}
	}
	items, err := s.Presence(r.Context(), rest.UserID(r.Context()), users)
	if errors.Is(err, messageapi.ErrForbidden) {
		rest.WriteError(w, rest.Errorf(http.StatusForbidden, protocol.CodeForbidden, "%s", strings.TrimPrefix(err.Error(), messageapi.ErrForbidden.Error()+": ")))
		return
	}
	if err != nil {
		s.writeErr(w, err)
		return
	}
	rest.WriteJSON(w, http.StatusOK, map[string]any{"items": items})
}

// gate lets one event per key through per interval and drops the rest. Its
// map is bounded: at maxKeys, keys whose interval has passed are dropped;
// when none has, the event is refused (an overloaded gate drops signals,
// it never grows).
type gate struct {
	interval time.Duration
	maxKeys  int
	now      func() time.Time

	mu   sync.Mutex
	last map[string]time.Time
}

func newGate(interval time.Duration, maxKeys int, now func() time.Time) *gate {
	return &gate{interval: interval, maxKeys: maxKeys, now: now, last: map[string]time.Time{}}
}

// allow reports whether an event for key may pass now.
func (g *gate) allow(key string) bool {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.last[key]; ok && now.Sub(t) < g.interval {
		return false
	}
	if _, ok := g.last[key]; !ok && len(g.last) >= g.maxKeys {
		for k, t := range g.last {
			if now.Sub(t) >= g.interval {
				delete(g.last, k)
			}
		}
		if len(g.last) >= g.maxKeys {
			return false
		}
	}
	g.last[key] = now
	return true
}
