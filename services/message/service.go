// Package message is the message service: it consumes client sends from the
// upstream stream in conversation order, authorises them, deduplicates on
// (sender, cmid), takes sequence numbers, stores the message and its inbox
// rows in one transaction, acknowledges the sender and pushes the message to
// every online device with ONE push per gateway. It also answers sync, pull,
// read and the conversation REST API.
package message

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/time/rate"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/internal/sessions"
	"github.com/imkube/imkube/internal/snowflake"
	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/internal/webhook"
	"github.com/imkube/imkube/services/sequence"
)

// Store is what the message service needs from storage.
type Store interface {
	UserExists(ctx context.Context, id string) (bool, error)
	MessageByCMID(ctx context.Context, sender, cmid string) (*store.Message, error)
	ClaimCMID(ctx context.Context, sender, cmid, conv string) (fresh bool, owner string, err error)
	SaveMessage(ctx context.Context, m store.Message, inbox []store.InboxEntry, participants []string) error
	InboxEntries(ctx context.Context, conv string, seq int64) ([]store.InboxEntry, error)
	GroupStore
	Sync(ctx context.Context, user string, after int64, limit int) ([]store.Item, bool, error)
	InboxSeq(ctx context.Context, user string) (int64, error)
	Pull(ctx context.Context, conv string, from, to int64, limit int) ([]store.Message, bool, error)
	SetRead(ctx context.Context, user, conv string, seq int64) (int64, bool, error)
	Conversations(ctx context.Context, user string) ([]store.Conversation, error)
	LifecycleStore
	SignalStore
	SocialStore
}

// Service is the message service.
type Service struct {
	store  Store
	groups GroupStore
	cache  *memberCache
	// threshold returns the group size above which read diffusion is used.
	threshold func() int
	seq       sequence.Allocator
	sessions  sessions.Store
	push      bus.PushPublisher
	ids       *snowflake.Generator
	log       *slog.Logger
	now       func() time.Time
	metrics   *telemetry.Message
	tracer    trace.Tracer
	guard     func(fn func() error) error
	receipts  *receipts
	accounts  Accounts
	media     Media
	// recallWindow and editWindow: how long after sending the sender may
	// recall or edit a message.
	recallWindow, editWindow time.Duration
	// defaultDMPolicy is the DM policy of users who chose none.
	defaultDMPolicy func() string
	signals
	hooks      BeforeSender
	offline    *webhook.Pusher
	admin      AdminStore
	broadcasts *rate.Limiter
	revoke     func(r auth.Revoked)
}

// Accounts says whether a user id has an account (auth.Accounts).
type Accounts interface {
	Exists(ctx context.Context, id string) (bool, error)
}

// Config tunes the message service.
type Config struct {
	// ReadDiffusionThreshold returns the current group size above which
	// messages are stored once and members pull (default 500).
	ReadDiffusionThreshold func() int
	// ReceiptInterval is the shortest time between two read receipts of one
	// reader in one conversation (default 1 s); moves in between are merged.
	// Delivered receipts follow the same rule.
	ReceiptInterval time.Duration
	// RecallWindow (default 120 s) and EditWindow (default 900 s): how long
	// after sending the sender may recall or edit a message.
	RecallWindow, EditWindow time.Duration
	// TypingInterval is the shortest time between two typing signals of
	// one user in one conversation (default 2 s); excess is dropped.
	TypingInterval time.Duration
	// DefaultDMPolicy returns the DM policy of users who chose none:
	// "anyone" (the default) or "friends".
	DefaultDMPolicy func() string
}

// Deps are the message service's collaborators.
type Deps struct {
	Store    Store                // required
	Sequence sequence.Allocator   // required
	Sessions sessions.Store       // required
	Push     bus.PushPublisher    // required
	IDs      *snowflake.Generator // required
	Log      *slog.Logger
	// Metrics (nil: none) and Tracer (nil: no spans).
	Metrics *telemetry.Message
	Tracer  trace.Tracer
	// StoreGuard, if set, wraps the store calls of the message path (a
	// circuit breaker: while MySQL is down or slow, messages wait in the bus
	// instead of piling up connections). fn reports outcomes that are not
	// failures of the store (not found, duplicate) through ignore.
	StoreGuard func(fn func() error) error
	// Accounts, if set, is asked at State whether the user has an account
	// (nil: a cache in front of Store.UserExists).
	Accounts Accounts
	// Media checks media messages (nil: image, file, audio and video sends
	// are refused).
	Media Media
	// Clock, if set, replaces time.Now (tests of the recall and edit windows).
	Clock func() time.Time
	// Presence, if set, holds last-seen times (nil: Sessions, when it
	// implements sessions.Presence).
	Presence sessions.Presence
	// TypingFilter, if set, removes from recipients the users who must not
	// see that sender is typing (the hook for blocking).
	TypingFilter func(ctx context.Context, sender string, recipients []string) []string
	// Hooks, if set, is the before-send hook (nil: none).
	Hooks BeforeSender
	// Offline, if set, batches offline pushes (nil: none).
	Offline *webhook.Pusher
	// Admin, if set, backs the admin API and bans (nil: AdminRoutes refuses
	// to mount and State does not check bans).
	Admin AdminStore
	// Revoke, if set, makes a revocation effective in this process at once
	// (forced logout; other processes poll the store).
	Revoke func(r auth.Revoked)
}

// New returns a message service.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Sequence == nil || deps.Sessions == nil || deps.Push == nil || deps.IDs == nil {
		return nil, errors.New("message: Deps.Store, Sequence, Sessions, Push and IDs are required")
	}
	if cfg.ReadDiffusionThreshold == nil {
		cfg.ReadDiffusionThreshold = func() int { return 500 }
	}
	if deps.Tracer == nil {
		deps.Tracer = tracenoop.NewTracerProvider().Tracer("")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ReceiptInterval <= 0 {
		cfg.ReceiptInterval = time.Second
	}
	s := &Service{store: deps.Store, groups: deps.Store, cache: newMemberCache(10000), threshold: cfg.ReadDiffusionThreshold,
		seq: sequence.Chunked(deps.Sequence), sessions: deps.Sessions, push: deps.Push, ids: deps.IDs, log: deps.Log, now: time.Now,
		metrics: deps.Metrics, tracer: deps.Tracer, guard: deps.StoreGuard}
	s.accounts, s.media = deps.Accounts, deps.Media
	if deps.Clock != nil {
		s.now = deps.Clock
	}
	s.recallWindow, s.editWindow = cfg.RecallWindow, cfg.EditWindow
	s.defaultDMPolicy = cfg.DefaultDMPolicy
	if s.defaultDMPolicy == nil {
		s.defaultDMPolicy = func() string { return DMAnyone }
	}
	if s.recallWindow <= 0 {
		s.recallWindow = DefaultRecallWindow
	}
	if s.editWindow <= 0 {
		s.editWindow = DefaultEditWindow
	}
	if s.accounts == nil {
		s.accounts = auth.NewAccounts(auth.AccountsConfig{}, deps.Store.UserExists)
	}
	s.receipts = newReceipts(cfg.ReceiptInterval, 100000, s.sendReceipt)
	s.initSignals(cfg, deps)
	s.hooks, s.offline, s.admin, s.revoke = deps.Hooks, deps.Offline, deps.Admin, deps.Revoke
	s.broadcasts = rate.NewLimiter(rate.Every(BroadcastEvery), BroadcastBurst)
	return s, nil
}

var _ messageapi.Backend = (*Service)(nil)

// Run consumes the upstream stream until ctx ends; then receipts still
// waiting for their interval are dropped.
func (s *Service) Run(ctx context.Context, c bus.UpstreamConsumer) error {
	defer s.receipts.stop()
	defer s.delivered.stop()
	if bc, ok := c.(bus.BatchUpstreamConsumer); ok {
		return bc.ConsumeUpstreamBatch(ctx, MaxBatch, s.HandleUpstreamBatch)
	}
	return c.ConsumeUpstream(ctx, s.HandleUpstream)
}

// HandleUpstream processes one client send. A returned error means the
// message was not (fully) processed and must be delivered again; everything
// it does is idempotent.
func (s *Service) HandleUpstream(ctx context.Context, bm bus.Message) error {
	up, err := decodeUpstream(bm)
	if err != nil {
		s.log.Error("dropping malformed upstream record", "err", err)
		return nil
	}
	return s.handleDecoded(ctx, bm, up)
}

// decodeUpstream returns the record of bm (bus.Decode: a copy, since
// handling changes some fields), refusing one without user or cmid.
func decodeUpstream(bm bus.Message) (*messageapi.Upstream, error) {
	up, err := bus.Decode[messageapi.Upstream](bm)
	if err != nil {
		return nil, err
	}
	if up.User == "" || up.CMID == "" {
		return nil, errors.New("upstream record without user or cmid")
	}
	return up, nil
}

// handleDecoded is HandleUpstream after decoding.
func (s *Service) handleDecoded(ctx context.Context, bm bus.Message, up *messageapi.Upstream) error {
	start := s.now()
	ctx, span := s.tracer.Start(telemetry.Extract(ctx, bm.Header), "message.process", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("im.conv", up.Conv), attribute.String("im.cmid", up.CMID)))
	defer span.End()
	err := s.process(ctx, up)
	s.metrics.Processed(s.now().Sub(start))
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	var rej *rejection
	if errors.As(err, &rej) {
		e := protocol.Error{T: protocol.TypeError, CMID: up.CMID, Code: rej.code, Message: rej.msg, Retryable: protocol.Retryable(rej.code)}
		if up.Op != "" { // recall, edit, delete: answered by request id
			e.ID, e.CMID = up.ID, ""
		}
		return s.reply(ctx, up, messageapi.PushFrame, e)
	}
	return err
}

type rejection struct{ code, msg string }

func (r *rejection) Error() string { return r.code + ": " + r.msg }

func reject(code, format string, args ...any) error {
	return &rejection{code: code, msg: fmt.Sprintf(format, args...)}
}

func (s *Service) process(ctx context.Context, up *messageapi.Upstream) error {
	if up.Op == messageapi.OpPresence {
		return s.presenceEvent(ctx, up)
	}
	if up.Op != "" {
		return s.processOp(ctx, up)
	}
	participants, readDiffusion, err := s.authorise(ctx, up)
	if err != nil {
		return err
	}
	if err := s.checkSendExtras(ctx, up); err != nil {
		return err
	}
	attached, err := s.checkMedia(ctx, up)
	if err != nil {
		return err
	}
	markCtx(ctx, "checked")
	// members receive the message; participants get inbox rows (none under
	// read diffusion).
	members := participants
	if readDiffusion {
		participants = nil
	}
	// Dedup decides before sequence numbers are taken: the (sender, cmid)
	// is claimed for this conversation first, so the same cmid sent to two
	// conversations at once takes numbers in one of them only.
	var fresh bool
	var owner string
	err = s.guarded(func() (err error) {
		fresh, owner, err = s.store.ClaimCMID(ctx, up.User, up.CMID, up.Conv)
		return err
	})
	if err != nil {
		return fmt.Errorf("dedup claim: %w", err)
	}
	markCtx(ctx, "claimed")
	if owner != up.Conv {
		s.metrics.DedupHit()
		return reject(protocol.CodeBadFrame, "cmid %q was already used for another conversation", up.CMID)
	}
	if !fresh { // a retry: answer with the stored message, if the first attempt got that far
		var prev *store.Message
		err = s.guarded(func() (err error) {
			prev, err = s.store.MessageByCMID(ctx, up.User, up.CMID)
			return err
		}, store.ErrNotFound)
		if err == nil {
			s.metrics.DedupHit()
			return s.redeliver(ctx, up, prev, members)
		} else if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("dedup lookup: %w", err)
		}
	}

	// Not stored yet: the before-send hook decides (a retry of a stored
	// message was answered above without asking it again).
	if err := s.beforeSend(ctx, up); err != nil {
		return err
	}
	reqs := make([]sequence.Request, 0, 1+len(participants))
	reqs = append(reqs, sequence.Request{Key: "c:" + up.Conv, Count: 1})
	for _, u := range participants {
		reqs = append(reqs, sequence.Request{Key: "i:" + u, Count: 1})
	}
	ranges, err := s.seq.Allocate(ctx, reqs)
	if err != nil {
		return fmt.Errorf("allocate sequence numbers: %w", err)
	}
	markCtx(ctx, "sequenced")
	m := store.Message{
		Conv: up.Conv, Seq: ranges[0].First, MID: s.ids.Next(), Sender: up.User, CMID: up.CMID,
		Kind: up.Kind, Body: up.Body, TS: s.now().UnixMilli(), ReplyTo: up.ReplyTo, Mentions: strings.Join(up.Mentions, ","),
	}
	inbox := make([]store.InboxEntry, len(participants))
	for i, u := range participants {
		inbox[i] = store.InboxEntry{User: u, InboxSeq: ranges[i+1].First}
	}
	convRows := participants
	if up.To.Group != "" {
		convRows = nil // members got their conversation row when they joined
	}
	if attached != nil {
		if err := s.media.Reference(ctx, up.Conv, attached); err != nil {
			return fmt.Errorf("reference media: %w", err)
		}
	}
	storeStart := s.now()
	err = s.guarded(func() error { return s.store.SaveMessage(ctx, m, inbox, convRows) }, store.ErrDuplicate)
	s.metrics.Stored(s.now().Sub(storeStart))
	if err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			prev, lerr := s.store.MessageByCMID(ctx, up.User, up.CMID)
			if lerr != nil {
				return fmt.Errorf("dedup after conflict: %w", lerr)
			}
			s.metrics.DedupHit()
			return s.redeliver(ctx, up, prev, members)
		}
		return fmt.Errorf("store message: %w", err)
	}
	markCtx(ctx, "stored")
	switch {
	case up.To.User != "":
		s.metrics.Accepted("direct")
	case readDiffusion:
		s.metrics.Accepted("read")
	default:
		s.metrics.Accepted("write")
	}
	if err := s.deliver(ctx, up, &m, inbox, members); err != nil {
		return err
	}
	markCtx(ctx, "pushed")
	return nil
}

// authorise checks the send and returns the users who get the message
// (sender first) and whether it goes out by read diffusion.
func (s *Service) authorise(ctx context.Context, up *messageapi.Upstream) ([]string, bool, error) {
	if up.To.Group != "" {
		return s.authoriseGroup(ctx, &upstreamInfo{user: up.User, conv: up.Conv, group: up.To.Group})
	}
	list, err := s.authoriseDirect(ctx, up)
	return list, false, err
}

func (s *Service) authoriseDirect(ctx context.Context, up *messageapi.Upstream) ([]string, error) {
	switch {
	case up.To.User != "":
		if up.Conv != protocol.DirectConv(up.User, up.To.User) {
			return nil, reject(protocol.CodeBadFrame, "conversation id does not match the recipient")
		}
		if err := s.checkDirect(ctx, up.User, up.To.User); err != nil {
			return nil, err
		}
		if up.To.User == up.User {
			return []string{up.User}, nil
		}
		return []string{up.User, up.To.User}, nil
	}
	return nil, reject(protocol.CodeBadFrame, "send needs a recipient")
}

// guarded runs a store call through the store guard; errors matching one of
// benign are outcomes, not store failures.
func (s *Service) guarded(fn func() error, benign ...error) error {
	if s.guard == nil {
		return fn()
	}
	var outcome error
	err := s.guard(func() error {
		outcome = fn()
		for _, b := range benign {
			if errors.Is(outcome, b) {
				return nil
			}
		}
		return outcome
	})
	if err != nil && outcome == nil {
		return err // the guard refused the call (breaker open)
	}
	return outcome
}

// redeliver answers a retried send with the original ack and pushes the
// message again (clients drop duplicates by mid): the first attempt may have
// crashed between commit and push.
func (s *Service) redeliver(ctx context.Context, up *messageapi.Upstream, prev *store.Message, members []string) error {
	if prev.Conv != up.Conv {
		return reject(protocol.CodeBadFrame, "cmid %q was already used for another conversation", up.CMID)
	}
	inbox, err := s.store.InboxEntries(ctx, prev.Conv, prev.Seq)
	if err != nil {
		return fmt.Errorf("inbox lookup: %w", err)
	}
	return s.deliver(ctx, up, prev, inbox, members)
}

func (s *Service) reply(ctx context.Context, up *messageapi.Upstream, kind string, frame any) error {
	b, err := json.Marshal(frame)
	if err != nil {
		return err
	}
	p := messageapi.Push{Kind: kind, Frame: b, Targets: []messageapi.Target{{User: up.User, Device: up.Device}}}
	if kind == messageapi.PushAck {
		p.TS = up.TS
	}
	return s.publish(ctx, up.Gateway, &p)
}

func (s *Service) publish(ctx context.Context, gateway string, p *messageapi.Push) error {
	if gateway == "" {
		return nil
	}
	if buf := bufferOf(ctx); buf != nil { // a batch: published once per gateway after it
		buf.add(gateway, p)
		return nil
	}
	return s.publishNow(ctx, gateway, p)
}

// publishNow publishes p on the push stream of gateway.
func (s *Service) publishNow(ctx context.Context, gateway string, p *messageapi.Push) error {
	if err := s.push.PublishPush(ctx, gateway, bus.Message{Key: gateway, Value: p, Header: telemetry.Inject(ctx, nil)}); err != nil {
		return fmt.Errorf("push to gateway %s: %w", gateway, err)
	}
	return nil
}

// deliver acks the sender and pushes the message to the members' online
// devices: one push per gateway, carrying the recipient list. Under write
// diffusion the push is the full msg frame (the gateway splices each
// recipient's inboxSeq in); under read diffusion (no inbox rows) it is a
// light notify frame and clients pull.
func (s *Service) deliver(ctx context.Context, up *messageapi.Upstream, m *store.Message, inbox []store.InboxEntry, members []string) error {
	seqOf := make(map[string]int64, len(inbox))
	for _, e := range inbox {
		seqOf[e.User] = e.InboxSeq
	}
	ack := protocol.Ack{T: protocol.TypeAck, CMID: up.CMID, MID: m.MID, Conv: m.Conv, Seq: m.Seq, TS: m.TS, InboxSeq: seqOf[up.User]}
	if err := s.reply(ctx, up, messageapi.PushAck, ack); err != nil {
		return err
	}
	live, err := s.lookupLive(ctx, members)
	if err != nil {
		// Stored and acked: recipients catch up by sync. Not worth a redelivery.
		s.log.Warn("session lookup failed; recipients will sync", "conv", m.Conv, "err", err)
		return nil
	}
	var frame []byte
	if len(inbox) == 0 && up.To.Group != "" {
		frame, err = json.Marshal(protocol.Notify{T: protocol.TypeNotify, Conv: m.Conv, Seq: m.Seq})
	} else {
		frame, err = json.Marshal(toMsg(m, 0))
	}
	if err != nil {
		return err
	}
	// msg and notify frames both carry "muted":true to members who muted
	// the conversation (one indexed lookup of the muted members).
	muted := s.mutedIn(ctx, m.Conv)
	err = s.pushByGatewayMuted(ctx, frame, m.TS, live, func(user, device string) (bool, int64) {
		return user != up.User || device != up.Device, seqOf[user]
	}, muted)
	// Offline members of read-diffusion groups get notices too; the pusher
	// bounds the users waiting at once (webhook.PushConfig.MaxUsers).
	s.noticeOffline(up.User, m, members, live, muted)
	if err != nil {
		// Pushes are a fast path; log and let recipients catch up by sync
		// rather than redelivering to gateways that did get it.
		s.log.Warn("push failed; recipients will sync", "conv", m.Conv, "err", err)
	}
	return nil
}

// pushByGateway publishes frame once per gateway that holds any of the live
// sessions, with one target per device that include accepts (and the
// inboxSeq it returns spliced in by the gateway).
func (s *Service) pushByGateway(ctx context.Context, frame []byte, ts int64, live map[string][]sessions.Session, include func(user, device string) (bool, int64)) error {
	return s.pushByGatewayMuted(ctx, frame, ts, live, include, nil)
}

// pushByGatewayMuted is pushByGateway with "muted":true for the users in muted.
func (s *Service) pushByGatewayMuted(ctx context.Context, frame []byte, ts int64, live map[string][]sessions.Session, include func(user, device string) (bool, int64), muted map[string]bool) error {
	byGateway := map[string][]messageapi.Target{}
	for user, list := range live {
		for _, sess := range list {
			if ok, inboxSeq := include(user, sess.Device); ok {
				byGateway[sess.Gateway] = append(byGateway[sess.Gateway], messageapi.Target{User: user, Device: sess.Device, InboxSeq: inboxSeq, Muted: muted[user]})
			}
		}
	}
	var errs []error
	for gw, targets := range byGateway {
		if err := s.publish(ctx, gw, &messageapi.Push{Frame: frame, Targets: targets, TS: ts}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func toMsg(m *store.Message, inboxSeq int64) protocol.Msg {
	out := protocol.Msg{T: protocol.TypeMsg, MID: m.MID, Conv: m.Conv, Seq: m.Seq, From: m.Sender, Kind: m.Kind,
		Body: m.Body, TS: m.TS, InboxSeq: inboxSeq, Recalled: m.Flags&store.FlagRecalled != 0}
	lifecycleFields(&out, m)
	return out
}
