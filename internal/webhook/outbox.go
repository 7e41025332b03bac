package webhook

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/internal/telemetry"
)

// OutboxStore is the persistent outbox (store.DB).
type OutboxStore interface {
	PendingOutbox(ctx context.Context, limit int) ([]store.OutboxEntry, error)
	DoneOutbox(ctx context.Context, id int64) error
	RetryOutbox(ctx context.Context, id int64, nextAt int64) error
	CountOutbox(ctx context.Context) (int64, error)
	TrimOutbox(ctx context.Context, max int64) (int64, error)
	TakeLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, owner string) error
}

// OutboxConfig tunes the outbox's delivery.
type OutboxConfig struct {
	// Owner names this replica in the delivery lease (one replica delivers).
	Owner string
	// RetryBase is the first retry delay, doubled per attempt up to
	// RetryMax (defaults 500ms and 5m), with ±20 % jitter.
	RetryBase, RetryMax time.Duration
	// MaxAttempts before an entry is dead-lettered (default 25: about 1.5 h
	// of retries).
	MaxAttempts int
	// MaxEntries bounds the outbox; the oldest beyond it are dead-lettered
	// (default 100000).
	MaxEntries int64
	// Workers deliver different ordering keys in parallel (default 8).
	Workers int
	// Timeout of one delivery (default 5s; a pass ends within half the
	// lease, so another replica never delivers while this one still does).
	Timeout time.Duration
	// Poll is how often an empty outbox is read (default 100ms).
	Poll time.Duration
}

// Outbox delivers the webhook outbox: at least once, in order per key
// (conversation, or push recipient), retrying with exponential backoff.
type Outbox struct {
	cfg     OutboxConfig
	hooks   *Hooks
	store   OutboxStore
	metrics *telemetry.Webhooks
	log     *slog.Logger
}

// NewOutbox returns the outbox delivery of st.
func NewOutbox(cfg OutboxConfig, hooks *Hooks, st OutboxStore, m *telemetry.Webhooks, log *slog.Logger) *Outbox {
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 500 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Minute
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 25
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100000
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Owner == "" {
		cfg.Owner = strconv.FormatUint(rand.Uint64(), 36)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Outbox{cfg: cfg, hooks: hooks, store: st, metrics: m, log: log}
}

const (
	leaseName = "webhook-outbox"
	leaseTTL  = 15 * time.Second
	batch     = 500
)

// Run delivers until ctx ends. Several replicas may run it: the one holding
// the lease delivers, the others wait to take over.
func (o *Outbox) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = o.store.ReleaseLease(rctx, leaseName, o.cfg.Owner)
		o.hooks.c.http.CloseIdleConnections() // no keep-alive goroutines outlive the process's loops
	}()
	var trimmed, renewed time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		next := o.cfg.Poll
		held, err := true, error(nil)
		if time.Since(renewed) >= leaseTTL/3 { // the holder renews every 5 s, not every poll
			held, err = o.store.TakeLease(ctx, leaseName, o.cfg.Owner, leaseTTL)
			if held && err == nil {
				renewed = time.Now()
			} else {
				renewed = time.Time{}
			}
		}
		switch {
		case err != nil:
			if ctx.Err() == nil {
				o.log.Warn("webhook outbox: lease", "err", err)
			}
			next = time.Second
		case !held:
			next = leaseTTL / 3
		default:
			if time.Since(trimmed) > 10*time.Second {
				trimmed = time.Now()
				o.trim(ctx)
			}
			if full := o.pass(ctx); full {
				next = 0
			}
		}
		t.Reset(next)
	}
}

func (o *Outbox) trim(ctx context.Context) {
	n, err := o.store.TrimOutbox(ctx, o.cfg.MaxEntries)
	if err != nil {
		if ctx.Err() == nil {
			o.log.Warn("webhook outbox: trim", "err", err)
		}
		return
	}
	if n > 0 {
		o.log.Error("webhook outbox over its bound: oldest entries dropped", "dropped", n, "max", o.cfg.MaxEntries)
		o.metrics.DeadLetter("outbox", n)
	}
	if c, err := o.store.CountOutbox(ctx); err == nil {
		o.metrics.SetPending(c)
	}
}

// pass delivers what is due in one read of the outbox; it reports whether
// the read was full (more may be waiting).
func (o *Outbox) pass(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, leaseTTL/2)
	defer cancel()
	list, err := o.store.PendingOutbox(ctx, batch)
	if err != nil {
		if ctx.Err() == nil {
			o.log.Warn("webhook outbox: read", "err", err)
		}
		return false
	}
	// Group by key, in id order; a key whose head is not due waits whole.
	var keys []string
	byKey := map[string][]store.OutboxEntry{}
	for _, e := range list {
		if _, ok := byKey[e.Key]; !ok {
			keys = append(keys, e.Key)
		}
		byKey[e.Key] = append(byKey[e.Key], e)
	}
	now := time.Now().UnixMilli()
	sem := make(chan struct{}, o.cfg.Workers)
	var wg sync.WaitGroup
	progress := false
	var mu sync.Mutex
	for _, k := range keys {
		entries := byKey[k]
		if entries[0].NextAt > now {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if o.deliverKey(ctx, entries) {
				mu.Lock()
				progress = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return len(list) == batch && progress
}

// deliverKey delivers entries of one key in order until one fails; it
// reports whether any was done.
func (o *Outbox) deliverKey(ctx context.Context, entries []store.OutboxEntry) bool {
	done := false
	for _, e := range entries {
		if ctx.Err() != nil {
			return done
		}
		err := o.deliver(ctx, e)
		if err == nil {
			o.metrics.Delivered(e.Target)
			if derr := o.store.DoneOutbox(ctx, e.ID); derr != nil {
				o.log.Warn("webhook delivered but still in the outbox (it will be sent again)", "id", e.ID, "err", derr)
				return done
			}
			done = true
			continue
		}
		if ctx.Err() != nil {
			return done
		}
		if e.Attempts+1 >= o.cfg.MaxAttempts {
			o.log.Error("webhook dead-lettered: retries exhausted", "id", e.ID, "target", e.Target, "kind", e.Kind, "key", e.Key, "attempts", e.Attempts+1, "err", err)
			o.metrics.DeadLetter(e.Target, 1)
			if derr := o.store.DoneOutbox(ctx, e.ID); derr != nil {
				o.log.Warn("webhook outbox: drop dead letter", "id", e.ID, "err", derr)
				return done
			}
			done = true
			continue
		}
		o.metrics.Failed(e.Target)
		delay := o.backoff(e.Attempts)
		o.log.Warn("webhook delivery failed; retrying", "id", e.ID, "target", e.Target, "kind", e.Kind, "attempt", e.Attempts+1, "retryIn", delay, "err", err)
		if rerr := o.store.RetryOutbox(ctx, e.ID, time.Now().Add(delay).UnixMilli()); rerr != nil {
			o.log.Warn("webhook outbox: record retry", "id", e.ID, "err", rerr)
		}
		return done // keep the order: later entries of this key wait
	}
	return done
}

func (o *Outbox) backoff(attempts int) time.Duration {
	d := o.cfg.RetryBase
	for i := 0; i < attempts && d < o.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, o.cfg.RetryMax)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// errNoURL: the target's URL was removed from the config.
type errNoURL string

func (e errNoURL) Error() string { return "webhook " + string(e) + " has no URL configured" }

func (o *Outbox) deliver(ctx context.Context, e store.OutboxEntry) error {
	cfg := o.hooks.Config()
	url := cfg.Events.URL
	if e.Target == store.OutboxPush {
		url = cfg.OfflinePush.URL
	}
	if url == "" {
		return errNoURL(e.Target)
	}
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	_, err := o.hooks.c.post(ctx, url, e.Kind, strconv.FormatInt(e.ID, 10), []byte(e.Payload))
	return err
}
