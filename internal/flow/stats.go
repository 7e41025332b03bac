package flow

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/alibaba/sentinel-golang/core/base"
	"github.com/alibaba/sentinel-golang/core/circuitbreaker"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Kinds of block, as reported in Stats and the metric's "kind" attribute.
const (
	KindFlow      = "flow"
	KindHotspot   = "hotspot"
	KindBreaker   = "circuit_breaker"
	KindSystem    = "system"
	KindIsolation = "isolation"
	KindUnknown   = "unknown"
)

func kindOf(t base.BlockType) string {
	switch t {
	case base.BlockTypeFlow:
		return KindFlow
	case base.BlockTypeHotSpotParamFlow:
		return KindHotspot
	case base.BlockTypeCircuitBreaking:
		return KindBreaker
	case base.BlockTypeSystemFlow:
		return KindSystem
	case base.BlockTypeIsolation:
		return KindIsolation
	}
	return KindUnknown
}

// Breaker states.
const (
	StateClosed   = "closed"
	StateOpen     = "open"
	StateHalfOpen = "half_open"
)

type blockKey struct{ resource, kind string }

type stats struct {
	mu       sync.Mutex
	blocked  map[blockKey]*atomic.Int64
	breakers map[blockKey]string // resource, strategy -> state

	reloads, reloadFailures atomic.Int64
}

func newStats() *stats {
	return &stats{blocked: map[blockKey]*atomic.Int64{}, breakers: map[blockKey]string{}}
}

// declare gives every rule of rs its series before anything is blocked (a
// zero block count; closed breakers), so dashboards and alerts see a value
// instead of no data.
func (s *stats) declare(rs Rules) {
	s.mu.Lock()
	defer s.mu.Unlock()
	add := func(resource, kind string) {
		if _, ok := s.blocked[blockKey{resource, kind}]; !ok {
			s.blocked[blockKey{resource, kind}] = new(atomic.Int64)
		}
	}
	for _, r := range rs.Flow {
		add(r.Resource, KindFlow)
	}
	for _, r := range rs.Hotspot {
		add(r.Resource, KindHotspot)
	}
	for _, r := range rs.CircuitBreaker {
		add(r.Resource, KindBreaker)
		k := blockKey{r.Resource, r.Strategy.String()}
		if _, ok := s.breakers[k]; !ok {
			s.breakers[k] = StateClosed
		}
	}
}

// block counts one blocked entry. Resources are a small fixed set (rule
// names), so the map stays small.
func (s *stats) block(resource, kind string) {
	k := blockKey{resource, kind}
	s.mu.Lock()
	n, ok := s.blocked[k]
	if !ok {
		n = new(atomic.Int64)
		s.blocked[k] = n
	}
	s.mu.Unlock()
	n.Add(1)
}

// BlockCount is the number of entries of one resource blocked by one kind
// of rule since the process started.
type BlockCount struct {
	Resource string
	Kind     string
	Count    int64
}

// BreakerState is the last known state of one circuit breaker.
type BreakerState struct {
	Resource string
	Strategy string
	State    string
}

// Stats is a snapshot of the controller's counters.
type Stats struct {
	Blocked        []BlockCount
	Breakers       []BreakerState
	Reloads        int64 // rule sets applied
	ReloadFailures int64 // rule files rejected
}

// Blocks returns the number of blocked entries of resource (all kinds).
func (s Stats) Blocks(resource string) int64 {
	var n int64
	for _, b := range s.Blocked {
		if b.Resource == resource {
			n += b.Count
		}
	}
	return n
}

// Breaker returns the state of the breaker of resource with strategy
// ("SlowRequestRatio", "ErrorRatio", "ErrorCount"); closed if it never moved.
func (s Stats) Breaker(resource, strategy string) string {
	for _, b := range s.Breakers {
		if b.Resource == resource && b.Strategy == strategy {
			return b.State
		}
	}
	return StateClosed
}

// Stats returns the block counts, breaker states and reload counters.
func (c *Controller) Stats() Stats {
	s := c.stats
	var out Stats
	s.mu.Lock()
	for k, n := range s.blocked {
		out.Blocked = append(out.Blocked, BlockCount{Resource: k.resource, Kind: k.kind, Count: n.Load()})
	}
	for k, st := range s.breakers {
		out.Breakers = append(out.Breakers, BreakerState{Resource: k.resource, Strategy: k.kind, State: st})
	}
	s.mu.Unlock()
	slices.SortFunc(out.Blocked, func(a, b BlockCount) int {
		return strings.Compare(a.Resource+"\x00"+a.Kind, b.Resource+"\x00"+b.Kind)
	})
	slices.SortFunc(out.Breakers, func(a, b BreakerState) int {
		return strings.Compare(a.Resource+"\x00"+a.Strategy, b.Resource+"\x00"+b.Strategy)
	})
	out.Reloads = s.reloads.Load()
	out.ReloadFailures = s.reloadFailures.Load()
	return out
}

// register exports the counters through OpenTelemetry (the Prometheus
// exporter shows them as imkube_flow_blocked_total{resource,kind},
// imkube_flow_rules_reload_failures_total and
// imkube_flow_breaker_state{resource,strategy} 0 closed, 1 open, 2 half-open).
func (s *stats) register(mp metric.MeterProvider) (metric.Registration, error) {
	m := mp.Meter("github.com/imkube/imkube/internal/flow")
	blocked, err := m.Int64ObservableCounter("imkube.flow.blocked",
		metric.WithDescription("Requests rejected by Sentinel rules, by resource and rule kind"), metric.WithUnit("{request}"))
	if err != nil {
		return nil, err
	}
	failures, err := m.Int64ObservableCounter("imkube.flow.rules.reload.failures",
		metric.WithDescription("sentinel-rules.json contents rejected (the previous rules stayed)"))
	if err != nil {
		return nil, err
	}
	state, err := m.Int64ObservableGauge("imkube.flow.breaker.state",
		metric.WithDescription("Circuit breaker state: 0 closed, 1 open, 2 half-open"))
	if err != nil {
		return nil, err
	}
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		for k, n := range s.blocked {
			o.ObserveInt64(blocked, n.Load(), metric.WithAttributes(attribute.String("resource", k.resource), attribute.String("kind", k.kind)))
		}
		for k, st := range s.breakers {
			v := int64(0)
			switch st {
			case StateOpen:
				v = 1
			case StateHalfOpen:
				v = 2
			}
			o.ObserveInt64(state, v, metric.WithAttributes(attribute.String("resource", k.resource), attribute.String("strategy", k.kind)))
		}
		o.ObserveInt64(failures, s.reloadFailures.Load())
		return nil
	}, blocked, failures, state)
}

// breakerListener records breaker transitions and logs them.
type breakerListener struct {
	s   *stats
	log *slog.Logger
}

func (l breakerListener) set(r circuitbreaker.Rule, state string) {
	l.s.mu.Lock()
	l.s.breakers[blockKey{r.Resource, r.Strategy.String()}] = state
	l.s.mu.Unlock()
}

func (l breakerListener) OnTransformToClosed(_ circuitbreaker.State, r circuitbreaker.Rule) {
	l.set(r, StateClosed)
	l.log.Info("circuit breaker closed", "resource", r.Resource, "strategy", r.Strategy.String())
}

func (l breakerListener) OnTransformToOpen(_ circuitbreaker.State, r circuitbreaker.Rule, snapshot interface{}) {
	l.set(r, StateOpen)
	l.log.Warn("circuit breaker open", "resource", r.Resource, "strategy", r.Strategy.String(), "value", snapshot, "retryAfterMs", r.RetryTimeoutMs)
}

func (l breakerListener) OnTransformToHalfOpen(_ circuitbreaker.State, r circuitbreaker.Rule) {
	l.set(r, StateHalfOpen)
	l.log.Info("circuit breaker half-open (probing)", "resource", r.Resource, "strategy", r.Strategy.String())
}

var _ circuitbreaker.StateChangeListener = breakerListener{}
