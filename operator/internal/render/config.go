package render

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
)

// Sentinel resource names the services guard (see docs/operator.md).
const (
	ResourceGatewaySend    = "gateway.send"
	ResourceGatewayConnect = "gateway.connect"
)

// clusterConfig is config.json of the service runtime contract.
type clusterConfig struct {
	Limits struct {
		SendRatePerSecond         int32 `json:"sendRatePerSecond"`
		SendBurst                 int32 `json:"sendBurst"`
		MaxMessageBytes           int32 `json:"maxMessageBytes"`
		ConnectionsPerIPPerSecond int32 `json:"connectionsPerIPPerSecond"`
	} `json:"limits"`
	Groups struct {
		ReadDiffusionThreshold int32 `json:"readDiffusionThreshold"`
		MaxMembers             int32 `json:"maxMembers"`
	} `json:"groups"`
}

// The rule shapes below are the JSON forms of sentinel-golang v1.0.4
// (hotspot.Rule, circuitbreaker.Rule, flow.Rule, system.Rule).

type hotspotRule struct {
	ID                string `json:"id"`
	Resource          string `json:"resource"`
	MetricType        int    `json:"metricType"`      // 1 = QPS
	ControlBehavior   int    `json:"controlBehavior"` // 0 = Reject
	ParamIndex        int    `json:"paramIndex"`
	Threshold         int64  `json:"threshold"`
	BurstCount        int64  `json:"burstCount"`
	DurationInSec     int64  `json:"durationInSec"`
	ParamsMaxCapacity int64  `json:"paramsMaxCapacity"`
}

type circuitBreakerRule struct {
	ID                           string  `json:"id"`
	Resource                     string  `json:"resource"`
	Strategy                     int     `json:"strategy"` // 1 = ErrorRatio
	RetryTimeoutMs               uint32  `json:"retryTimeoutMs"`
	MinRequestAmount             uint64  `json:"minRequestAmount"`
	StatIntervalMs               uint32  `json:"statIntervalMs"`
	StatSlidingWindowBucketCount uint32  `json:"statSlidingWindowBucketCount"`
	Threshold                    float64 `json:"threshold"`
}

type sentinelRules struct {
	Flow           []json.RawMessage    `json:"flow"`
	Hotspot        []hotspotRule        `json:"hotspot"`
	CircuitBreaker []circuitBreakerRule `json:"circuitBreaker"`
	System         []json.RawMessage    `json:"system"`
}

// ConfigJSON renders config.json for the cluster.
func ConfigJSON(c *imv1.IMCluster) string {
	var cfg clusterConfig
	l, g := c.Spec.Limits, c.Spec.Groups
	cfg.Limits.SendRatePerSecond = cmp.Or(l.SendRatePerSecond, 10)
	cfg.Limits.SendBurst = cmp.Or(l.SendBurst, 20)
	cfg.Limits.MaxMessageBytes = cmp.Or(l.MaxMessageBytes, 16384)
	cfg.Limits.ConnectionsPerIPPerSecond = cmp.Or(l.ConnectionsPerIPPerSecond, 20)
	cfg.Groups.ReadDiffusionThreshold = cmp.Or(g.ReadDiffusionThreshold, 500)
	cfg.Groups.MaxMembers = cmp.Or(g.MaxMembers, 10000)
	return mustJSON(cfg)
}

// SentinelRulesJSON renders sentinel-rules.json: per-user send rate and burst
// (hotspot on gateway.send, parameter 0 = user id), new connections per client
// IP (hotspot on gateway.connect, parameter 0 = IP), and error-ratio circuit
// breakers on the internal HTTP calls to the user, message and sequence
// services (resources "http.<service>").
func SentinelRulesJSON(c *imv1.IMCluster) string {
	l := c.Spec.Limits
	rules := sentinelRules{
		Flow: []json.RawMessage{},
		Hotspot: []hotspotRule{
			{
				ID: "send-rate-per-user", Resource: ResourceGatewaySend, MetricType: 1, ControlBehavior: 0,
				Threshold: int64(cmp.Or(l.SendRatePerSecond, 10)), BurstCount: int64(cmp.Or(l.SendBurst, 20)),
				DurationInSec: 1, ParamsMaxCapacity: 100000,
			},
			{
				ID: "connections-per-ip", Resource: ResourceGatewayConnect, MetricType: 1, ControlBehavior: 0,
				Threshold: int64(cmp.Or(l.ConnectionsPerIPPerSecond, 20)), DurationInSec: 1, ParamsMaxCapacity: 100000,
			},
		},
		System: []json.RawMessage{},
	}
	for _, svc := range []string{User, Message, Sequence} {
		rules.CircuitBreaker = append(rules.CircuitBreaker, circuitBreakerRule{
			ID: "errors-" + svc, Resource: "http." + svc, Strategy: 1,
			RetryTimeoutMs: 3000, MinRequestAmount: 20, StatIntervalMs: 10000,
			StatSlidingWindowBucketCount: 10, Threshold: 0.5,
		})
	}
	return mustJSON(rules)
}

// ConfigData is the data of the cluster ConfigMap.
func ConfigData(c *imv1.IMCluster) map[string]string {
	return map[string]string{
		ConfigFileKey:   ConfigJSON(c),
		SentinelFileKey: SentinelRulesJSON(c),
	}
}

// ConfigHash fingerprints the ConfigMap data and the auth Secret name; it is
// the pod template annotation that rolls pods when either changes.
func ConfigHash(c *imv1.IMCluster) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s", ConfigJSON(c), SentinelRulesJSON(c), AuthSecretName(c))
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func mustJSON(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil { // only plain structs of numbers and strings are marshalled
		panic(fmt.Sprintf("render: marshal %T: %v", v, err))
	}
	return string(b) + "\n"
}
