package telemetry

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Message holds the message service's instruments. A nil *Message records nothing.
type Message struct {
	lag        metric.Int64Gauge
	processing metric.Float64Histogram
	dedupHits  metric.Int64Counter
	store      metric.Float64Histogram
	messages   metric.Int64Counter

	diffusions *labels
}

// Diffusion label values for Message.Accepted.
const (
	DiffusionDirect = "direct" // one-to-one conversation
	DiffusionWrite  = "write"  // group, fanned out to every member's inbox
	DiffusionRead   = "read"   // large group, read from the group timeline
)

// NewMessage creates the message service instruments on mp (nil: no-op).
func NewMessage(mp metric.MeterProvider) (*Message, error) {
	b := builder{m: meter(mp)}
	m := &Message{
		lag:        b.gauge("imkube_message_consumer_lag", "Upstream messages not yet consumed by this pod's queues, from its own last pull (the autoscalers use the broker-side imkube_broker_consumer_lag of the operator)."),
		processing: b.seconds("imkube_message_processing_seconds", "Time to process one upstream message (dedup, sequence, store, push)."),
		dedupHits:  b.counter("imkube_message_dedup_hits", "Upstream messages dropped as duplicates of an already stored message."),
		store:      b.seconds("imkube_message_store_seconds", "Time to write one message to the store."),
		messages:   b.counter("imkube_message_messages", "Messages stored, by diffusion mode."),
		diffusions: newLabels("diffusion"),
	}
	if err := b.err(); err != nil {
		return nil, err
	}
	return m, nil
}

// SetConsumerLag records the current consumer lag of this pod's queues.
func (m *Message) SetConsumerLag(lag int64) {
	if m == nil {
		return
	}
	m.lag.Record(context.Background(), max(lag, 0))
}

// Processed records the processing time of one upstream message.
func (m *Message) Processed(d time.Duration) {
	if m == nil {
		return
	}
	m.processing.Record(context.Background(), secondsOf(d))
}

// DedupHit counts an upstream message dropped as a duplicate.
func (m *Message) DedupHit() {
	if m == nil {
		return
	}
	m.dedupHits.Add(context.Background(), 1)
}

// Stored records the time of one store write.
func (m *Message) Stored(d time.Duration) {
	if m == nil {
		return
	}
	m.store.Record(context.Background(), secondsOf(d))
}

// Accepted counts a stored message by diffusion mode (DiffusionDirect,
// DiffusionWrite or DiffusionRead).
func (m *Message) Accepted(diffusion string) {
	if m == nil {
		return
	}
	m.messages.Add(context.Background(), 1, m.diffusions.opt(diffusion))
}

// Sequence holds the sequence service's instruments. A nil *Sequence records nothing.
type Sequence struct {
	allocations metric.Int64Counter
	boundRaises metric.Int64Counter
	recoveries  metric.Int64Counter
	requests    metric.Int64Counter
	exhaustions metric.Int64Counter
	outcomes    *labels
}

// Request outcome label values for Sequence.Requested.
const (
	OutcomeOK              = "ok"              // values handed out
	OutcomeBadRequest      = "bad_request"     // the caller's fault (400)
	OutcomeUnauthenticated = "unauthenticated" // no or a wrong internal token (401)
	OutcomeFailed          = "failed"          // unavailable or internal (503, 500)
)

// NewSequence creates the sequence service instruments on mp (nil: no-op).
func NewSequence(mp metric.MeterProvider) (*Sequence, error) {
	b := builder{m: meter(mp)}
	s := &Sequence{
		allocations: b.counter("imkube_sequence_allocations", "Sequence numbers allocated."),
		boundRaises: b.counter("imkube_sequence_bound_raises", "Persisted section bounds raised (a durable write each)."),
		recoveries:  b.counter("imkube_sequence_recoveries", "Sections recovered after their current values were lost."),
		requests:    b.counter("imkube_sequence_requests", "Sequence API calls (POST /v1/seq), by outcome (ok, bad_request, unauthenticated, failed)."),
		exhaustions: b.counter("imkube_sequence_section_exhaustions", "Allocations that found their section's persisted bound used up and waited for a synchronous bound raise (the raise ahead of need did not keep up)."),
		outcomes:    newLabels("outcome"),
	}
	if err := b.err(); err != nil {
		return nil, err
	}
	return s, nil
}

// Allocated counts n allocated sequence numbers.
func (s *Sequence) Allocated(n int) {
	if s == nil {
		return
	}
	s.allocations.Add(context.Background(), int64(max(n, 0)))
}

// BoundRaised counts one persisted bound raise.
func (s *Sequence) BoundRaised() {
	if s == nil {
		return
	}
	s.boundRaises.Add(context.Background(), 1)
}

// Recovered counts n sections recovered after a loss of their values.
func (s *Sequence) Recovered(n int) {
	if s == nil {
		return
	}
	s.recoveries.Add(context.Background(), int64(max(n, 0)))
}

// SectionsExhausted counts n sections an allocation found exhausted (their
// persisted bound reached), so that it waited for a durable bound raise.
func (s *Sequence) SectionsExhausted(n int) {
	if s == nil || n <= 0 {
		return
	}
	s.exhaustions.Add(context.Background(), int64(n))
}

// Requested counts one sequence API call with outcome (OutcomeOK,
// OutcomeBadRequest, OutcomeUnauthenticated or OutcomeFailed).
func (s *Sequence) Requested(outcome string) {
	if s == nil {
		return
	}
	s.requests.Add(context.Background(), 1, s.outcomes.opt(outcome))
}

// Flow holds the flow-control (Sentinel) instruments. A nil *Flow records nothing.
//
// internal/flow registers the same metric (imkube_flow_blocked_total{resource,kind})
// itself from its own block statistics; use Flow only in a process that does
// not, or the two would collide on /metrics.
type Flow struct {
	blocked metric.Int64Counter
	labels  *labels
}

// NewFlow creates the flow-control instruments on mp (nil: no-op).
func NewFlow(mp metric.MeterProvider) (*Flow, error) {
	b := builder{m: meter(mp)}
	f := &Flow{
		blocked: b.counter("imkube_flow_blocked", "Requests blocked by a Sentinel rule, by resource and rule kind."),
		labels:  newLabels("resource", "kind"),
	}
	if err := b.err(); err != nil {
		return nil, err
	}
	return f, nil
}

// Blocked counts a request blocked on resource (e.g. "gateway.send") by a rule
// of the given kind (as internal/flow names them: flow, hotspot,
// circuit_breaker, system, isolation).
func (f *Flow) Blocked(resource, kind string) {
	if f == nil {
		return
	}
	f.blocked.Add(context.Background(), 1, f.labels.opt(resource, kind))
}

// Operator holds the operator's instruments. A nil *Operator records nothing.
type Operator struct {
	reconciles metric.Int64Counter
	duration   metric.Float64Histogram
	labels     *labels
	durLabels  *labels

	lagMu sync.Mutex
	lag   map[consumerGroupKey]int64 // imkube_broker_consumer_lag, observed on scrape
}

// consumerGroupKey names one series of imkube_broker_consumer_lag: the
// IMCluster (namespace and name) and its consumer group on a topic. The
// namespace label is imcluster_namespace because Prometheus sets namespace
// to the operator's own namespace when it scrapes the operator.
type consumerGroupKey struct {
	namespace, imcluster, group, topic string
}

// Reconcile result label values for Operator.Reconciled.
const (
	ResultSuccess = "success"
	ResultRequeue = "requeue"
	ResultError   = "error"
)

// NewOperator creates the operator instruments on mp (nil: no-op).
func NewOperator(mp metric.MeterProvider) (*Operator, error) {
	b := builder{m: meter(mp)}
	o := &Operator{
		reconciles: b.counter("imkube_operator_reconcile", "Reconciles, by controller and result (success, requeue, error)."),
		duration:   b.seconds("imkube_operator_reconcile_seconds", "Reconcile duration, by controller."),
		labels:     newLabels("controller", "result"),
		durLabels:  newLabels("controller"),
		lag:        map[consumerGroupKey]int64{},
	}
	g, err := b.m.Int64ObservableGauge("imkube_broker_consumer_lag",
		metric.WithDescription("Messages of the topic not yet consumed by the IMCluster's consumer group, as the brokers see it "+
			"(max offset minus committed offset, summed over queues): the message autoscaler's metric."))
	b.add("imkube_broker_consumer_lag", err)
	if err == nil {
		_, err = b.m.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
			o.lagMu.Lock()
			defer o.lagMu.Unlock()
			for k, v := range o.lag {
				obs.ObserveInt64(g, v, metric.WithAttributes(
					attribute.String("imcluster_namespace", k.namespace), attribute.String("imcluster", k.imcluster),
					attribute.String("group", k.group), attribute.String("topic", k.topic)))
			}
			return nil
		}, g)
		b.add("imkube_broker_consumer_lag callback", err)
	}
	if err := b.err(); err != nil {
		return nil, err
	}
	return o, nil
}

// SetConsumerLag records the broker-side lag of the consumer group of the
// IMCluster namespace/imcluster on topic (the only series of that cluster).
func (o *Operator) SetConsumerLag(namespace, imcluster, group, topic string, lag int64) {
	if o == nil {
		return
	}
	o.lagMu.Lock()
	defer o.lagMu.Unlock()
	o.clear(namespace, imcluster)
	o.lag[consumerGroupKey{namespace, imcluster, group, topic}] = lag
}

// ClearConsumerLag drops the lag series of an IMCluster (deleted, or its lag
// cannot be read: no series rather than a stale value).
func (o *Operator) ClearConsumerLag(namespace, imcluster string) {
	if o == nil {
		return
	}
	o.lagMu.Lock()
	defer o.lagMu.Unlock()
	o.clear(namespace, imcluster)
}

func (o *Operator) clear(namespace, imcluster string) {
	for k := range o.lag {
		if k.namespace == namespace && k.imcluster == imcluster {
			delete(o.lag, k)
		}
	}
}

// ConsumerLagClusters returns the namespace/name of every IMCluster with a
// lag series.
func (o *Operator) ConsumerLagClusters() []string {
	if o == nil {
		return nil
	}
	o.lagMu.Lock()
	defer o.lagMu.Unlock()
	var out []string
	for k := range o.lag {
		out = append(out, k.namespace+"/"+k.imcluster)
	}
	return out
}

// Reconciled counts one reconcile of controller ("imcluster", "gatewaypool")
// with result (ResultSuccess, ResultRequeue, ResultError) and records its duration.
func (o *Operator) Reconciled(controller, result string, d time.Duration) {
	if o == nil {
		return
	}
	ctx := context.Background()
	o.reconciles.Add(ctx, 1, o.labels.opt(controller, result))
	o.duration.Record(ctx, secondsOf(d), o.durLabels.opt(controller))
}

// ResultOf classifies a reconcile outcome for Reconciled.
func ResultOf(requeue bool, err error) string {
	switch {
	case err != nil:
		return ResultError
	case requeue:
		return ResultRequeue
	}
	return ResultSuccess
}
