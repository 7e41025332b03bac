package webhook

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/imkube/imkube/internal/store"
)

// Notice is one message for an offline recipient.
type Notice struct {
	MID     string `json:"mid"`
	Conv    string `json:"conv"`
	Seq     int64  `json:"seq"`
	From    string `json:"from"`
	Kind    string `json:"kind"`
	Preview string `json:"preview"`
	TS      int64  `json:"ts"`
	// Muted: the recipient muted the conversation (push silently, or not).
	Muted bool `json:"muted,omitempty"`
}

// PushRequest is the body of an offline push call (event "push.offline"):
// one recipient, the devices it registered, the messages of the batch.
type PushRequest struct {
	Event    string            `json:"event"`
	User     string            `json:"user"`
	Devices  []store.PushToken `json:"devices"`
	Messages []Notice          `json:"messages"`
}

// PushStore is what offline pushes need from storage.
type PushStore interface {
	PushTokens(ctx context.Context, users []string) (map[string][]store.PushToken, error)
	AddOutbox(ctx context.Context, e store.OutboxEntry) error
}

// PushConfig tunes offline push batching.
type PushConfig struct {
	// Window: the messages of one recipient within it make one call (1s).
	Window time.Duration
	// MaxBatch messages per call (50); a full batch is sent at once.
	MaxBatch int
	// MaxUsers waiting at once (10000); beyond, notices are dropped (the
	// messages are stored; only the push is lost) and logged.
	MaxUsers int
	// PreviewRunes of a message body in a notice (100).
	PreviewRunes int
}

// Pusher batches offline pushes per recipient and hands each batch to the
// outbox (target push, key "push:<user>": retried like events).
type Pusher struct {
	cfg    PushConfig
	hooks  *Hooks
	store  PushStore
	online func(ctx context.Context, users []string) (map[string]bool, error)
	log    *slog.Logger

	mu      sync.Mutex
	pending map[string]*pushBatch
	kick    chan struct{}
	dropped int64
}

type pushBatch struct {
	first time.Time
	items []Notice
}

// NewPusher returns a Pusher; online, if set, is asked again when a batch is
// sent (a recipient who came online meanwhile gets no push).
func NewPusher(cfg PushConfig, hooks *Hooks, st PushStore, online func(ctx context.Context, users []string) (map[string]bool, error), log *slog.Logger) *Pusher {
	if cfg.Window <= 0 {
		cfg.Window = time.Second
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 50
	}
	if cfg.MaxUsers <= 0 {
		cfg.MaxUsers = 10000
	}
	if cfg.PreviewRunes <= 0 {
		cfg.PreviewRunes = 100
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pusher{cfg: cfg, hooks: hooks, store: st, online: online, log: log, pending: map[string]*pushBatch{}, kick: make(chan struct{}, 1)}
}

// Enabled reports whether an offline push URL is configured.
func (p *Pusher) Enabled() bool { return p != nil && p.hooks.Config().OfflinePush.URL != "" }

// Add queues n for user (who has no online device).
func (p *Pusher) Add(user string, n Notice) {
	if !p.Enabled() {
		return
	}
	if r := []rune(n.Preview); len(r) > p.cfg.PreviewRunes {
		n.Preview = string(r[:p.cfg.PreviewRunes])
	}
	p.mu.Lock()
	b := p.pending[user]
	if b == nil {
		if len(p.pending) >= p.cfg.MaxUsers {
			p.dropped++
			p.mu.Unlock()
			p.log.Warn("offline push dropped: too many recipients waiting", "user", user, "max", p.cfg.MaxUsers)
			return
		}
		b = &pushBatch{first: time.Now()}
		p.pending[user] = b
	}
	b.items = append(b.items, n)
	full := len(b.items) >= p.cfg.MaxBatch
	p.mu.Unlock()
	if full {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// Run sends batches whose window ended (or that are full) until ctx ends;
// then what is waiting is handed to the outbox.
func (p *Pusher) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Window / 5)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			p.flush(fctx, true)
			cancel()
			return nil
		case <-t.C:
		case <-p.kick:
		}
		p.flush(ctx, false)
	}
}

func (p *Pusher) flush(ctx context.Context, all bool) {
	now := time.Now()
	due := map[string][]Notice{}
	var users []string
	p.mu.Lock()
	for u, b := range p.pending {
		if all || len(b.items) >= p.cfg.MaxBatch || now.Sub(b.first) >= p.cfg.Window {
			items := b.items
			if len(items) > p.cfg.MaxBatch {
				b.items = items[p.cfg.MaxBatch:]
				items = items[:p.cfg.MaxBatch]
			} else {
				delete(p.pending, u)
			}
			due[u] = items
			users = append(users, u)
		}
	}
	p.mu.Unlock()
	if len(users) == 0 {
		return
	}
	// A recipient's messages in the order they were stored: notices are
	// added as each conversation's lane delivers them, and lanes run in
	// parallel, so a message stored later in another conversation can be
	// added first (the sender had its ack before the other lane added its
	// notice). Message ids increase in storage order (snowflakes).
	for _, items := range due {
		slices.SortStableFunc(items, byMID)
	}
	var online map[string]bool
	if p.online != nil {
		var err error
		if online, err = p.online(ctx, users); err != nil {
			p.log.Warn("offline push: presence lookup failed; pushing anyway", "err", err)
		}
	}
	tokens, err := p.store.PushTokens(ctx, users)
	if err != nil {
		p.log.Warn("offline push: token lookup failed; pushes of this batch dropped", "users", len(users), "err", err)
		return
	}
	for _, u := range users {
		if online[u] || len(tokens[u]) == 0 {
			continue
		}
		b, err := json.Marshal(PushRequest{Event: "push.offline", User: u, Devices: tokens[u], Messages: due[u]})
		if err != nil {
			continue
		}
		if err := p.store.AddOutbox(ctx, store.OutboxEntry{Target: store.OutboxPush, Key: "push:" + u, Kind: "push.offline", Payload: string(b)}); err != nil {
			p.log.Warn("offline push: outbox write failed; push dropped", "user", u, "err", err)
		}
	}
}

// byMID orders notices by message id (snowflake: time, then node and
// sequence), by timestamp when an id is not a number.
func byMID(a, b Notice) int {
	x, errA := strconv.ParseInt(a.MID, 10, 64)
	y, errB := strconv.ParseInt(b.MID, 10, 64)
	if errA != nil || errB != nil {
		return cmp.Compare(a.TS, b.TS)
	}
	return cmp.Compare(x, y)
}
