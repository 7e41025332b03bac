package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/metric"
)

// Webhooks holds the webhook outbox's instruments. A nil *Webhooks records
// nothing.
type Webhooks struct {
	delivered  metric.Int64Counter
	failed     metric.Int64Counter
	deadLetter metric.Int64Counter
	pending    metric.Int64Gauge
	hooks      *labels
}

// NewWebhooks creates the webhook instruments on mp (nil: no-op).
func NewWebhooks(mp metric.MeterProvider) (*Webhooks, error) {
	b := builder{m: meter(mp)}
	w := &Webhooks{
		delivered:  b.counter("imkube_webhook_delivered", "Webhook deliveries the receiver accepted (2xx), by target (events, push)."),
		failed:     b.counter("imkube_webhook_failed_attempts", "Webhook delivery attempts that failed and will be retried, by target."),
		deadLetter: b.counter("imkube_webhook_dead_letters", "Webhook deliveries given up (retries exhausted or the outbox over its bound), by target."),
		pending:    b.gauge("imkube_webhook_outbox_pending", "Entries waiting in the webhook outbox."),
		hooks:      newLabels("target"),
	}
	if err := b.err(); err != nil {
		return nil, err
	}
	return w, nil
}

// Delivered counts a delivery the receiver accepted.
func (w *Webhooks) Delivered(target string) {
	if w == nil {
		return
	}
	w.delivered.Add(context.Background(), 1, w.hooks.opt(target))
}

// Failed counts a failed attempt that will be retried.
func (w *Webhooks) Failed(target string) {
	if w == nil {
		return
	}
	w.failed.Add(context.Background(), 1, w.hooks.opt(target))
}

// DeadLetter counts n deliveries given up.
func (w *Webhooks) DeadLetter(target string, n int64) {
	if w == nil || n <= 0 {
		return
	}
	w.deadLetter.Add(context.Background(), n, w.hooks.opt(target))
}

// SetPending records the outbox's size.
func (w *Webhooks) SetPending(n int64) {
	if w == nil {
		return
	}
	w.pending.Record(context.Background(), n)
}
