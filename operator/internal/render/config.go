package render

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/flow"
)

// ConfigJSON renders config.json for the cluster (internal/config.Cluster).
func ConfigJSON(c *imv1.IMCluster) string {
	l, g := c.Spec.Limits, c.Spec.Groups
	def := config.DefaultCluster()
	cfg := config.Cluster{
		Limits: config.Limits{
			SendRatePerSecond:         orDefault(l.SendRatePerSecond, def.Limits.SendRatePerSecond),
			SendBurst:                 orDefault(l.SendBurst, def.Limits.SendBurst),
			MaxMessageBytes:           orDefault(l.MaxMessageBytes, def.Limits.MaxMessageBytes),
			ConnectionsPerIPPerSecond: orDefault(l.ConnectionsPerIPPerSecond, def.Limits.ConnectionsPerIPPerSecond),
		},
		Groups: config.Groups{
			ReadDiffusionThreshold: orDefault(g.ReadDiffusionThreshold, def.Groups.ReadDiffusionThreshold),
			MaxMembers:             orDefault(g.MaxMembers, def.Groups.MaxMembers),
		},
		Media:    mediaConfig(c),
		Users:    config.Users{DefaultDMPolicy: cmp.Or(c.Spec.Users.DefaultDMPolicy, def.Users.DefaultDMPolicy)},
		Webhooks: webhooksConfig(c),
	}
	return mustJSON(cfg)
}

func orDefault(v int32, def int) int { return cmp.Or(int(v), def) }

// SentinelRulesJSON renders sentinel-rules.json: the services' default rules
// (internal/flow.DefaultRules: publish flow rule, circuit breakers on the
// internal calls, system safety net) with the cluster's limits in the
// per-user send hotspot rule (gateway.send: rate and burst) and the per-IP
// connect hotspot rule (gateway.connect).
func SentinelRulesJSON(c *imv1.IMCluster) string {
	var cfg config.Cluster
	if err := json.Unmarshal([]byte(ConfigJSON(c)), &cfg); err != nil {
		panic(fmt.Sprintf("render: config.json round trip: %v", err))
	}
	rules := flow.DefaultRules()
	for _, h := range rules.Hotspot {
		switch h.Resource {
		case flow.ResSend:
			h.Threshold, h.BurstCount = int64(cfg.Limits.SendRatePerSecond), int64(cfg.Limits.SendBurst)
		case flow.ResConnect:
			h.Threshold = int64(cfg.Limits.ConnectionsPerIPPerSecond)
		}
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
