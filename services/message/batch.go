package message

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/media"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/internal/sessions"
	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/services/sequence"
)

// Micro-batched lanes: the upstream consumer hands the service the records
// waiting at the head of an ordered lane (up to MaxBatch); a run of plain
// sends among them is deduplicated with one query, takes all its sequence
// numbers in one call, is stored in one transaction (multi-row INSERTs) and
// answered with one push per gateway (acks, error replies and messages, in
// record order). Records of one conversation keep their order: runs are
// processed in order, and so are the records of a run at every step.
// Nothing is pushed before the commit; a run that fails before it fails as a
// unit (the consumer hands it over again, dedup makes that idempotent).

// MaxBatch is the most upstream records handled at once.
const MaxBatch = 64

// batchStore is what the batched path uses when the store has it (else it
// makes one call per record).
type batchStore interface {
	ClaimCMIDs(ctx context.Context, claims []store.Claim) ([]store.ClaimResult, error)
	SaveMessages(ctx context.Context, saves []store.Save) error
}

// HandleUpstreamBatch processes msgs (a bus.BatchHandler): the records
// before the returned index were processed; on error the one at it (and
// those after it) must be delivered again.
func (s *Service) HandleUpstreamBatch(ctx context.Context, msgs []bus.Message) (int, error) {
	ups := make([]*messageapi.Upstream, len(msgs))
	for i, bm := range msgs {
		up, err := decodeUpstream(bm)
		if err != nil {
			s.log.Error("dropping malformed upstream record", "err", err)
			continue
		}
		ups[i] = up
	}
	for i := 0; i < len(msgs); {
		up := ups[i]
		if up == nil {
			i++
			continue
		}
		if up.Op != "" || len(msgs) == 1 {
			if err := s.handleDecoded(ctx, msgs[i], up); err != nil {
				return i, err
			}
			i++
			continue
		}
		// A run of plain sends that never holds one (sender, cmid) twice: a
		// second send with the same cmid starts the next run, which then
		// sees the first one's claim and message like any retry.
		j := i
		seen := map[[2]string]bool{}
		for ; j < len(msgs); j++ {
			if ups[j] == nil {
				continue
			}
			if ups[j].Op != "" {
				break
			}
			k := [2]string{ups[j].User, ups[j].CMID}
			if seen[k] {
				break
			}
			seen[k] = true
		}
		done, err := s.sendRun(ctx, msgs[i:j], ups[i:j])
		if err != nil {
			return i + done, err
		}
		i = j
	}
	return len(msgs), nil
}

// sendRec is one send of a run.
type sendRec struct {
	up    *messageapi.Upstream
	ctx   context.Context
	span  trace.Span
	start time.Time

	members, participants []string
	readDiffusion         bool
	attached              *media.Verified

	rejected error          // answered to its sender with this error
	prev     *store.Message // a retry of a stored message: delivered again
	save     bool
	m        store.Message
	inbox    []store.InboxEntry
	convRows []string
}

// sendRun processes a run of plain sends (nil entries: malformed, skipped).
func (s *Service) sendRun(ctx context.Context, msgs []bus.Message, ups []*messageapi.Upstream) (done int, err error) {
	var recs []*sendRec
	defer func() {
		for _, r := range recs {
			s.metrics.Processed(s.now().Sub(r.start))
			if err != nil {
				r.span.SetStatus(codes.Error, err.Error())
			}
			r.span.End()
		}
	}()
	// 1. Per record: authorisation and the checks of the send. A failure
	// that is not an answer to the sender cuts the run there: the records
	// before it are processed, it and the rest come again.
	cut, cutErr := len(msgs), error(nil)
	ctx = context.WithValue(ctx, directChecksKey{}, map[[2]string]store.DirectCheck{})
	for i, up := range ups {
		if up == nil {
			continue
		}
		r := &sendRec{up: up, start: s.now()}
		r.ctx, r.span = s.tracer.Start(telemetry.Extract(ctx, msgs[i].Header), "message.process", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("im.conv", up.Conv), attribute.String("im.cmid", up.CMID), attribute.Int("im.batch", len(msgs))))
		recs = append(recs, r)
		if err := s.checkSend(r); err != nil {
			var rej *rejection
			if !errors.As(err, &rej) {
				r.span.SetStatus(codes.Error, err.Error())
				cut, cutErr = i, err
				recs = recs[:len(recs)-1]
				r.span.End()
				break
			}
			r.rejected = err
		}
	}
	mark(recs, "checked")
	if err := s.storeRun(ctx, recs); err != nil {
		return 0, err
	}
	if err := s.deliverRun(ctx, recs); err != nil {
		return 0, err
	}
	if cutErr != nil {
		return cut, cutErr
	}
	return len(msgs), nil
}

// checkSend runs the per-record checks of process for a plain send.
func (s *Service) checkSend(r *sendRec) error {
	participants, readDiffusion, err := s.authorise(r.ctx, r.up)
	if err != nil {
		return err
	}
	if err := s.checkSendExtras(r.ctx, r.up); err != nil {
		return err
	}
	if r.attached, err = s.checkMedia(r.ctx, r.up); err != nil {
		return err
	}
	r.members, r.participants, r.readDiffusion = participants, participants, readDiffusion
	if readDiffusion {
		r.participants = nil
	}
	return nil
}

// storeRun deduplicates the records that passed their checks, numbers and
// stores the new ones: one claim query, one sequence call, one transaction.
func (s *Service) storeRun(ctx context.Context, recs []*sendRec) error {
	var live []*sendRec
	for _, r := range recs {
		if r.rejected == nil {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return nil
	}
	bs, batched := s.store.(batchStore)
	results := make([]store.ClaimResult, len(live))
	err := s.guarded(func() error {
		if batched {
			claims := make([]store.Claim, len(live))
			for i, r := range live {
				claims[i] = store.Claim{Sender: r.up.User, CMID: r.up.CMID, Conv: r.up.Conv}
			}
			res, err := bs.ClaimCMIDs(ctx, claims)
			copy(results, res)
			return err
		}
		for i, r := range live {
			fresh, owner, err := s.store.ClaimCMID(r.ctx, r.up.User, r.up.CMID, r.up.Conv)
			if err != nil {
				return err
			}
			results[i] = store.ClaimResult{Fresh: fresh, Owner: owner}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dedup claim: %w", err)
	}
	mark(live, "claimed")
	var fresh []*sendRec
	for i, r := range live {
		res := results[i]
		if res.Owner != r.up.Conv {
			s.metrics.DedupHit()
			r.rejected = reject(protocol.CodeBadFrame, "cmid %q was already used for another conversation", r.up.CMID)
			continue
		}
		if !res.Fresh { // a retry: answer with the stored message, if the first attempt got that far
			var prev *store.Message
			err := s.guarded(func() (err error) {
				prev, err = s.store.MessageByCMID(r.ctx, r.up.User, r.up.CMID)
				return err
			}, store.ErrNotFound)
			if err == nil {
				s.metrics.DedupHit()
				r.prev = prev
				continue
			} else if !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("dedup lookup: %w", err)
			}
		}
		if err := s.beforeSend(r.ctx, r.up); err != nil {
			var rej *rejection
			if !errors.As(err, &rej) {
				return err
			}
			r.rejected = err
			continue
		}
		fresh = append(fresh, r)
	}
	if len(fresh) == 0 {
		return nil
	}

	// One call numbers the run: per conversation and per inbox, values in
	// record order.
	index := map[string]int{}
	var reqs []sequence.Request
	add := func(key string) {
		if i, ok := index[key]; ok {
			reqs[i].Count++
			return
		}
		index[key] = len(reqs)
		reqs = append(reqs, sequence.Request{Key: key, Count: 1})
	}
	for _, r := range fresh {
		add("c:" + r.up.Conv)
		for _, u := range r.participants {
			add("i:" + u)
		}
	}
	ranges, err := s.seq.Allocate(ctx, reqs)
	if err != nil {
		return fmt.Errorf("allocate sequence numbers: %w", err)
	}
	if len(ranges) != len(reqs) {
		return fmt.Errorf("allocate sequence numbers: %d ranges for %d keys", len(ranges), len(reqs))
	}
	mark(fresh, "sequenced")
	next := make([]int64, len(ranges))
	for i, rg := range ranges {
		next[i] = rg.First
	}
	take := func(key string) int64 {
		i := index[key]
		v := next[i]
		next[i]++
		return v
	}
	saves := make([]store.Save, len(fresh))
	for i, r := range fresh {
		up := r.up
		r.m = store.Message{
			Conv: up.Conv, Seq: take("c:" + up.Conv), MID: s.ids.Next(), Sender: up.User, CMID: up.CMID,
			Kind: up.Kind, Body: up.Body, TS: s.now().UnixMilli(), ReplyTo: up.ReplyTo, Mentions: strings.Join(up.Mentions, ","),
		}
		r.inbox = make([]store.InboxEntry, len(r.participants))
		for j, u := range r.participants {
			r.inbox[j] = store.InboxEntry{User: u, InboxSeq: take("i:" + u)}
		}
		r.convRows = r.participants
		if up.To.Group != "" {
			r.convRows = nil // members got their conversation row when they joined
		}
		if r.attached != nil {
			if err := s.media.Reference(r.ctx, up.Conv, r.attached); err != nil {
				return fmt.Errorf("reference media: %w", err)
			}
		}
		saves[i] = store.Save{Message: r.m, Inbox: r.inbox, Participants: r.convRows}
	}

	storeStart := s.now()
	if batched && len(saves) > 1 {
		err = s.guarded(func() error { return bs.SaveMessages(ctx, saves) }, store.ErrDuplicate)
		s.metrics.Stored(s.now().Sub(storeStart))
		if err == nil {
			for _, r := range fresh {
				r.save = true
			}
			mark(fresh, "stored")
			return nil
		}
		if !errors.Is(err, store.ErrDuplicate) {
			return fmt.Errorf("store messages: %w", err)
		}
		// Another attempt stored one of them meanwhile: one by one, so the
		// duplicate is answered as a retry and the others are stored.
		storeStart = s.now()
	}
	for _, r := range fresh {
		err := s.guarded(func() error { return s.store.SaveMessage(r.ctx, r.m, r.inbox, r.convRows) }, store.ErrDuplicate)
		if errors.Is(err, store.ErrDuplicate) {
			prev, lerr := s.store.MessageByCMID(r.ctx, r.up.User, r.up.CMID)
			if lerr != nil {
				return fmt.Errorf("dedup after conflict: %w", lerr)
			}
			s.metrics.DedupHit()
			r.prev = prev
			continue
		}
		if err != nil {
			return fmt.Errorf("store message: %w", err)
		}
		r.save = true
	}
	s.metrics.Stored(s.now().Sub(storeStart))
	mark(fresh, "stored")
	return nil
}

// deliverRun answers every record of a stored run in order, buffering the
// pushes: one push per gateway for the run.
func (s *Service) deliverRun(ctx context.Context, recs []*sendRec) error {
	if len(recs) == 0 {
		return nil
	}
	buf := &pushBuffer{byGateway: map[string][]messageapi.Push{}, muted: map[string]map[string]bool{}}
	var users []string
	seen := map[string]bool{}
	for _, r := range recs {
		if r.rejected != nil {
			continue
		}
		for _, u := range r.members {
			if !seen[u] {
				seen[u] = true
				users = append(users, u)
			}
		}
	}
	if len(users) > 0 {
		buf.live, buf.liveErr = s.sessions.Lookup(ctx, users)
	}
	// The run's pushes carry the trace context of its last sampled record
	// (else of its last record): a sampled trace then shows the push.
	bctx := recs[len(recs)-1].ctx
	for _, r := range recs {
		if r.span.SpanContext().IsSampled() {
			bctx = r.ctx
		}
	}
	for _, r := range recs {
		rctx := context.WithValue(r.ctx, pushBufferKey{}, buf)
		var err error
		switch {
		case r.rejected != nil:
			var rej *rejection
			errors.As(r.rejected, &rej)
			r.span.SetStatus(codes.Error, r.rejected.Error())
			err = s.reply(rctx, r.up, messageapi.PushFrame, protocol.Error{T: protocol.TypeError, CMID: r.up.CMID, Code: rej.code, Message: rej.msg, Retryable: protocol.Retryable(rej.code)})
		case r.prev != nil:
			err = s.redeliver(rctx, r.up, r.prev, r.members)
		case r.save:
			switch {
			case r.up.To.User != "":
				s.metrics.Accepted("direct")
			case r.readDiffusion:
				s.metrics.Accepted("read")
			default:
				s.metrics.Accepted("write")
			}
			err = s.deliver(rctx, r.up, &r.m, r.inbox, r.members)
		}
		if err != nil {
			return err
		}
	}
	err := buf.flush(bctx, s)
	if err == nil {
		mark(recs, "pushed")
	}
	return err
}

// pushBuffer collects the pushes of a run per gateway (publish appends to it
// when the context carries one) and holds the run's session and muted
// lookups.
type pushBuffer struct {
	order     []string
	byGateway map[string][]messageapi.Push
	live      map[string][]sessions.Session
	liveErr   error
	muted     map[string]map[string]bool
}

type pushBufferKey struct{}

func bufferOf(ctx context.Context) *pushBuffer {
	b, _ := ctx.Value(pushBufferKey{}).(*pushBuffer)
	return b
}

func (b *pushBuffer) add(gateway string, p *messageapi.Push) {
	if _, ok := b.byGateway[gateway]; !ok {
		b.order = append(b.order, gateway)
	}
	b.byGateway[gateway] = append(b.byGateway[gateway], *p)
}

// flush publishes one push per gateway, to the gateways at once (each
// publish waits for the broker; a gateway's pushes stay in order, they are
// one record).
func (b *pushBuffer) flush(ctx context.Context, s *Service) error {
	errs := make([]error, len(b.order))
	var wg sync.WaitGroup
	for i, gw := range b.order {
		list := b.byGateway[gw]
		p := &list[0]
		if len(list) > 1 {
			p = &messageapi.Push{Kind: messageapi.PushBatch, Batch: list}
		}
		if len(b.order) == 1 {
			return s.publishNow(ctx, gw, p)
		}
		wg.Go(func() { errs[i] = s.publishNow(ctx, gw, p) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// lookupLive returns the live sessions of members: from the run's lookup
// when ctx carries a push buffer, else from the session store.
func (s *Service) lookupLive(ctx context.Context, members []string) (map[string][]sessions.Session, error) {
	b := bufferOf(ctx)
	if b == nil {
		return s.sessions.Lookup(ctx, members)
	}
	if b.liveErr != nil {
		return nil, b.liveErr
	}
	out := make(map[string][]sessions.Session, len(members))
	for _, u := range members {
		if l, ok := b.live[u]; ok {
			out[u] = l
		}
	}
	return out, nil
}

// mutedIn is mutedTargets, once per conversation and run.
func (s *Service) mutedIn(ctx context.Context, conv string) map[string]bool {
	b := bufferOf(ctx)
	if b == nil {
		return s.mutedTargets(ctx, conv)
	}
	if m, ok := b.muted[conv]; ok {
		return m
	}
	m := s.mutedTargets(ctx, conv)
	b.muted[conv] = m
	return m
}

// mark adds the event name (the end of a step of the lane) to the spans of
// recs that are sampled: `imkube bench pipeline` reads the per-hop latency
// from them. The records of a run share their timestamp.
func mark(recs []*sendRec, name string) {
	var at trace.EventOption
	for _, r := range recs {
		if !r.span.IsRecording() {
			continue
		}
		if at == nil {
			at = trace.WithTimestamp(time.Now())
		}
		r.span.AddEvent(name, at)
	}
}

// markCtx is mark for the span of ctx (the one-by-one path).
func markCtx(ctx context.Context, name string) {
	if sp := trace.SpanFromContext(ctx); sp.IsRecording() {
		sp.AddEvent(name)
	}
}

type directChecksKey struct{}

// directCheck is Store.CheckDirect, asked once per pair and run when ctx
// carries a run's cache (the sends of a run are checked at one moment).
func (s *Service) directCheck(ctx context.Context, sender, recipient string) (store.DirectCheck, error) {
	cache, _ := ctx.Value(directChecksKey{}).(map[[2]string]store.DirectCheck)
	if c, ok := cache[[2]string{sender, recipient}]; ok {
		return c, nil
	}
	c, err := s.store.CheckDirect(ctx, sender, recipient)
	if err == nil && cache != nil {
		cache[[2]string{sender, recipient}] = c
	}
	return c, err
}
