package flow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/alibaba/sentinel-golang/core/circuitbreaker"
	sflow "github.com/alibaba/sentinel-golang/core/flow"
	"github.com/alibaba/sentinel-golang/core/hotspot"
	"github.com/alibaba/sentinel-golang/core/system"

	"github.com/imkube/imkube/internal/config"
)

// Resources guarded by imkube. Rules in sentinel-rules.json refer to them.
const (
	// ResSend is the per-user send limit at the gateway (hotspot, arg 0 = user id).
	ResSend = "gateway.send"
	// ResConnect is the per-IP connection rate at the gateway (hotspot, arg 0 = IP).
	ResConnect = "gateway.connect"
	// ResPublish is the gateway's upstream publish (flow rule + breakers).
	ResPublish = "gateway.publish"
	// ResUser, ResMessage and ResSequence are the HTTP calls to those
	// services; ResMySQL the MySQL store (circuit breakers).
	ResUser     = "dep.user"
	ResMessage  = "dep.message"
	ResSequence = "dep.sequence"
	ResMySQL    = "dep.mysql"
	// ResREST is every REST request a process serves (inbound: the system
	// rules apply; a flow rule on it limits the process's REST rate).
	ResREST = "rest"
)

// DefaultParamsMaxCapacity is the number of distinct keys (users, IPs) a
// hotspot rule tracks when the rule does not say; without it Sentinel tracks
// only a few thousand.
const DefaultParamsMaxCapacity = 100000

// Rules is the content of sentinel-rules.json: sentinel-golang v1.0.4 rule
// JSON shapes grouped by kind. Unknown fields are rejected.
type Rules struct {
	Flow           []*sflow.Rule          `json:"flow"`
	Hotspot        []*HotspotRule         `json:"hotspot"`
	CircuitBreaker []*circuitbreaker.Rule `json:"circuitBreaker"`
	System         []*system.Rule         `json:"system"`
}

// HotspotRule is hotspot.Rule with string keys for specificItems (Sentinel's
// map[interface{}]int64 cannot be decoded from JSON). Our hotspot keys (user
// ids, IPs) are strings.
type HotspotRule struct {
	ID                string                  `json:"id,omitempty"`
	Resource          string                  `json:"resource"`
	MetricType        hotspot.MetricType      `json:"metricType"`
	ControlBehavior   hotspot.ControlBehavior `json:"controlBehavior"`
	ParamIndex        int                     `json:"paramIndex"`
	ParamKey          string                  `json:"paramKey,omitempty"`
	Threshold         int64                   `json:"threshold"`
	MaxQueueingTimeMs int64                   `json:"maxQueueingTimeMs,omitempty"`
	BurstCount        int64                   `json:"burstCount"`
	DurationInSec     int64                   `json:"durationInSec"`
	ParamsMaxCapacity int64                   `json:"paramsMaxCapacity"`
	SpecificItems     map[string]int64        `json:"specificItems,omitempty"`
}

func (h *HotspotRule) sentinel() *hotspot.Rule {
	r := &hotspot.Rule{
		ID: h.ID, Resource: h.Resource, MetricType: h.MetricType, ControlBehavior: h.ControlBehavior,
		ParamIndex: h.ParamIndex, ParamKey: h.ParamKey, Threshold: h.Threshold, MaxQueueingTimeMs: h.MaxQueueingTimeMs,
		BurstCount: h.BurstCount, DurationInSec: h.DurationInSec, ParamsMaxCapacity: h.ParamsMaxCapacity,
	}
	if r.ParamsMaxCapacity == 0 {
		r.ParamsMaxCapacity = DefaultParamsMaxCapacity
	}
	if len(h.SpecificItems) > 0 {
		r.SpecificItems = make(map[interface{}]int64, len(h.SpecificItems))
		for k, v := range h.SpecificItems {
			r.SpecificItems[k] = v
		}
	}
	return r
}

// ParseRules decodes and validates sentinel-rules.json content. Any invalid
// rule rejects the whole file (Sentinel itself would silently skip it).
func ParseRules(b []byte) (Rules, error) {
	var rs Rules
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rs); err != nil {
		return Rules{}, fmt.Errorf("sentinel rules: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Rules{}, errors.New("sentinel rules: trailing data after the JSON object")
	}
	return rs, rs.Validate()
}

// Validate checks every rule with Sentinel's own validation plus the enum
// ranges Sentinel does not check; the error names the first bad rule.
func (rs Rules) Validate() error {
	var errs []error
	for i, r := range rs.Flow {
		if r == nil {
			errs = append(errs, fmt.Errorf("flow[%d]: null rule", i))
			continue
		}
		err := sflow.IsValidRule(r)
		if err == nil && (r.TokenCalculateStrategy > sflow.MemoryAdaptive || r.ControlBehavior > sflow.Throttling) {
			err = errors.New("unknown tokenCalculateStrategy or controlBehavior")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("flow[%d] (%s): %w", i, r.Resource, err))
		}
	}
	for i, h := range rs.Hotspot {
		if h == nil {
			errs = append(errs, fmt.Errorf("hotspot[%d]: null rule", i))
			continue
		}
		err := hotspot.IsValidRule(h.sentinel())
		switch {
		case err != nil:
		case h.MetricType > hotspot.QPS || h.ControlBehavior > hotspot.Throttling:
			err = errors.New("unknown metricType or controlBehavior")
		case h.ParamsMaxCapacity < 0:
			err = errors.New("negative paramsMaxCapacity")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("hotspot[%d] (%s): %w", i, h.Resource, err))
		}
	}
	for i, r := range rs.CircuitBreaker {
		if r == nil {
			errs = append(errs, fmt.Errorf("circuitBreaker[%d]: null rule", i))
			continue
		}
		err := circuitbreaker.IsValidRule(r)
		if err == nil && r.Strategy > circuitbreaker.ErrorCount {
			err = errors.New("unknown strategy")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("circuitBreaker[%d] (%s): %w", i, r.Resource, err))
		}
	}
	for i, r := range rs.System {
		if r == nil {
			errs = append(errs, fmt.Errorf("system[%d]: null rule", i))
			continue
		}
		err := system.IsValidSystemRule(r)
		if err == nil && r.Strategy != system.NoAdaptive && r.Strategy != system.BBR && r.Strategy != 0 {
			err = errors.New("unknown strategy (-1 none, 1 bbr)")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("system[%d] (%s): %w", i, r.MetricType, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("sentinel rules: %w", errors.Join(errs...))
	}
	return nil
}

// DefaultRules are the rules in force when no rules file is configured (and
// the base the limits of config.json are merged into).
func DefaultRules() Rules {
	lim := config.DefaultCluster().Limits
	rs := Rules{
		Flow: []*sflow.Rule{{
			// Per gateway pod; the bus itself is protected by its breaker.
			Resource: ResPublish, TokenCalculateStrategy: sflow.Direct, ControlBehavior: sflow.Reject,
			Threshold: 20000, StatIntervalInMs: 1000,
		}},
		Hotspot: []*HotspotRule{
			sendRule(lim),
			connectRule(lim),
		},
		System: []*system.Rule{{
			// A safety net only: more than 20,000 inbound entries in flight in
			// one process. Load/CPU rules belong in sentinel-rules.json, tuned
			// to the pod's CPU limit.
			MetricType: system.Concurrency, TriggerCount: 20000, Strategy: system.NoAdaptive,
		}},
	}
	for _, res := range []string{ResPublish, ResUser, ResMessage, ResSequence, ResMySQL} {
		rs.CircuitBreaker = append(rs.CircuitBreaker,
			&circuitbreaker.Rule{
				Resource: res, Strategy: circuitbreaker.SlowRequestRatio, RetryTimeoutMs: 5000,
				MinRequestAmount: 20, StatIntervalMs: 10000, StatSlidingWindowBucketCount: 10,
				MaxAllowedRtMs: 2000, Threshold: 0.5,
			},
			&circuitbreaker.Rule{
				Resource: res, Strategy: circuitbreaker.ErrorRatio, RetryTimeoutMs: 5000,
				MinRequestAmount: 20, StatIntervalMs: 10000, StatSlidingWindowBucketCount: 10,
				Threshold: 0.5,
			})
	}
	return rs
}

func sendRule(l config.Limits) *HotspotRule {
	return &HotspotRule{
		Resource: ResSend, MetricType: hotspot.QPS, ControlBehavior: hotspot.Reject, ParamIndex: 0,
		Threshold: int64(l.SendRatePerSecond), BurstCount: int64(l.SendBurst), DurationInSec: 1,
		ParamsMaxCapacity: DefaultParamsMaxCapacity,
	}
}

func connectRule(l config.Limits) *HotspotRule {
	return &HotspotRule{
		Resource: ResConnect, MetricType: hotspot.QPS, ControlBehavior: hotspot.Reject, ParamIndex: 0,
		Threshold: int64(l.ConnectionsPerIPPerSecond), BurstCount: 0, DurationInSec: 1,
		ParamsMaxCapacity: DefaultParamsMaxCapacity,
	}
}

// withLimits returns rs with the config.json limits applied: the rate and
// burst of gateway.send and the rate of gateway.connect come from l (the
// IMCluster limits are the one place to change them); other fields of those
// rules (paramsMaxCapacity, specificItems) stay as the file says. A missing
// rule is added.
func (rs Rules) withLimits(l config.Limits) Rules {
	out := rs
	out.Hotspot = nil
	seen := map[string]bool{}
	for _, h := range rs.Hotspot {
		c := *h
		switch h.Resource {
		case ResSend:
			c.MetricType, c.ControlBehavior, c.DurationInSec = hotspot.QPS, hotspot.Reject, 1
			c.Threshold, c.BurstCount = int64(l.SendRatePerSecond), int64(l.SendBurst)
		case ResConnect:
			c.MetricType, c.ControlBehavior, c.DurationInSec = hotspot.QPS, hotspot.Reject, 1
			c.Threshold = int64(l.ConnectionsPerIPPerSecond)
		}
		seen[h.Resource] = true
		out.Hotspot = append(out.Hotspot, &c)
	}
	if !seen[ResSend] {
		out.Hotspot = append(out.Hotspot, sendRule(l))
	}
	if !seen[ResConnect] {
		out.Hotspot = append(out.Hotspot, connectRule(l))
	}
	return out
}

// Summary is a one-line description of rs for logs.
func (rs Rules) Summary() string {
	var res []string
	for _, r := range rs.Flow {
		res = append(res, "flow:"+r.Resource)
	}
	for _, r := range rs.Hotspot {
		res = append(res, fmt.Sprintf("hotspot:%s=%d+%d/%ds", r.Resource, r.Threshold, r.BurstCount, r.DurationInSec))
	}
	for _, r := range rs.CircuitBreaker {
		res = append(res, "breaker:"+r.Resource+"/"+r.Strategy.String())
	}
	for _, r := range rs.System {
		res = append(res, "system:"+r.MetricType.String())
	}
	slices.Sort(res)
	return strings.Join(res, " ")
}
