// Package flow is imkube's flow control on Sentinel (sentinel-golang
// v1.0.4): the per-user send limit and per-IP connection rate of the
// gateway (hotspot rules), a flow rule on upstream publishing, circuit
// breakers around the calls to other services and MySQL, and adaptive
// system protection on inbound traffic.
//
// Sentinel's rule managers are process globals, so a process calls Init
// once and shares the returned *Controller. Rules come from
// sentinel-rules.json, reloaded by polling its content (a ConfigMap update
// is an atomic symlink swap, which Sentinel's fsnotify datasource turns into
// "no rules"); invalid content is rejected with a log line and the previous
// rules stay. The per-user limits of config.json override the rate and burst
// of the gateway.send and gateway.connect hotspot rules.
package flow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/alibaba/sentinel-golang/api"
	"github.com/alibaba/sentinel-golang/core/circuitbreaker"
	sconfig "github.com/alibaba/sentinel-golang/core/config"
	sflow "github.com/alibaba/sentinel-golang/core/flow"
	"github.com/alibaba/sentinel-golang/core/hotspot"
	"github.com/alibaba/sentinel-golang/core/system"
	"go.opentelemetry.io/otel/metric"

	"github.com/imkube/imkube/internal/config"
)

// Config configures flow control for one process.
type Config struct {
	// App names the process in Sentinel's logs (e.g. "imkube-gateway").
	App string
	// LogDir receives Sentinel's own log (sentinel-record.log) and, when
	// MetricLogs is set, its per-second metric logs. Required: Sentinel's
	// default is ~/logs/csp, which a read-only root filesystem refuses.
	// Only the first Init of a process sets it.
	LogDir string
	// MetricLogs turns on Sentinel's metric log files in LogDir (bounded to
	// 4 files of 16 MiB). Off by default: block counts are exported as metrics.
	MetricLogs bool
	// RulesFile is sentinel-rules.json (IMKUBE_SENTINEL_RULES_FILE); empty
	// means the built-in DefaultRules.
	RulesFile string
	// PollInterval is how often RulesFile and Limits are checked (default 5 s).
	PollInterval time.Duration
	// Limits, when set, returns the current config.json limits; their send
	// rate/burst and connections per IP override the hotspot rules.
	Limits func() config.Limits
	// MeterProvider, when set, gets the block counters (imkube.flow.blocked).
	MeterProvider metric.MeterProvider
	Log           *slog.Logger
}

// Controller owns the process's Sentinel rules and block statistics.
type Controller struct {
	cfg   Config
	log   *slog.Logger
	stats *stats
	reg   metric.Registration

	mu          sync.Mutex // guards the fields below (rule application)
	fileContent []byte     // last file content seen (valid or not)
	fileRules   Rules      // last valid rules from the file (or defaults)
	applied     Rules
	hasApplied  bool
}

// onceErr runs a fallible function once and remembers its error.
type onceErr struct {
	once sync.Once
	err  error
}

func (o *onceErr) do(f func() error) error {
	o.once.Do(func() { o.err = f() })
	return o.err
}

// sentinelInit makes Sentinel's process-wide initialisation happen once: it
// starts collectors that cannot be stopped and fixes the log directory. It
// is package state because Sentinel's own state is process-wide.
var sentinelInit onceErr

func initSentinel(cfg Config) error {
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return fmt.Errorf("flow: sentinel log dir: %w", err)
	}
	c := sconfig.NewDefaultConfig()
	c.Sentinel.App.Name = cfg.App
	c.Sentinel.Log.Dir = cfg.LogDir
	c.Sentinel.Log.Metric.FlushIntervalSec = 0
	if cfg.MetricLogs {
		c.Sentinel.Log.Metric.FlushIntervalSec = 1
		c.Sentinel.Log.Metric.SingleFileMaxSize = 16 << 20
		c.Sentinel.Log.Metric.MaxFileCount = 4
	}
	if err := api.InitWithConfig(c); err != nil {
		return fmt.Errorf("flow: init sentinel: %w", err)
	}
	return nil
}

// Init initialises Sentinel for this process (once; later calls reuse the
// first log directory) and returns a controller with the rules of
// cfg.RulesFile (or the defaults) and cfg.Limits applied. Call Run to keep
// them reloaded.
func Init(cfg Config) (*Controller, error) {
	if cfg.LogDir == "" {
		return nil, errors.New("flow config: sentinel log dir must be set (never ~/logs/csp)")
	}
	if cfg.App == "" {
		cfg.App = "imkube"
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(cfg.LogDir)
	if err != nil {
		return nil, fmt.Errorf("flow config: sentinel log dir: %w", err)
	}
	cfg.LogDir = abs
	if err := sentinelInit.do(func() error { return initSentinel(cfg) }); err != nil {
		return nil, err
	}
	c := &Controller{cfg: cfg, log: cfg.Log.With("component", "flow"), stats: newStats(), fileRules: DefaultRules()}
	circuitbreaker.ClearStateChangeListeners()
	circuitbreaker.RegisterStateChangeListeners(breakerListener{c.stats, c.log})
	if cfg.MeterProvider != nil {
		reg, err := c.stats.register(cfg.MeterProvider)
		if err != nil {
			return nil, fmt.Errorf("flow: metrics: %w", err)
		}
		c.reg = reg
	}
	if cfg.RulesFile != "" {
		if _, err := os.Stat(cfg.RulesFile); err != nil {
			c.log.Warn("sentinel rules file unreadable; using the built-in rules until it appears", "path", cfg.RulesFile, "err", err)
		}
	}
	if err := c.Reload(); err != nil {
		c.log.Error("sentinel rules rejected; using the built-in rules", "path", cfg.RulesFile, "err", err)
	}
	return c, nil
}

// Run re-reads the rules file and the limits every PollInterval until ctx
// ends, then unregisters the metrics. Rules stay loaded after Run returns.
func (c *Controller) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.PollInterval)
	defer t.Stop()
	defer func() {
		if c.reg != nil {
			_ = c.reg.Unregister()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := c.Reload(); err != nil {
			c.log.Error("sentinel rules rejected; keeping the previous rules", "path", c.cfg.RulesFile, "err", err)
		}
	}
}

// Reload applies the rules file (when its content changed) and the current
// limits. An unreadable file keeps the previous rules and returns nil (the
// file may be between ConfigMap updates); invalid content keeps them and
// returns the reason.
func (c *Controller) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ferr error
	if c.cfg.RulesFile != "" {
		b, err := os.ReadFile(c.cfg.RulesFile)
		switch {
		case err != nil:
			// Keep what we have; Init already said so once.
		case !bytes.Equal(b, c.fileContent):
			c.fileContent = b
			rs, err := ParseRules(b)
			if err != nil {
				c.stats.reloadFailures.Add(1)
				ferr = err
				break
			}
			c.fileRules = rs
		}
	}
	rs := c.fileRules
	if c.cfg.Limits != nil {
		rs = rs.withLimits(c.cfg.Limits())
	}
	if c.hasApplied && reflect.DeepEqual(rs, c.applied) {
		return ferr
	}
	if err := apply(rs); err != nil {
		c.stats.reloadFailures.Add(1)
		return errors.Join(ferr, err)
	}
	c.applied, c.hasApplied = rs, true
	c.stats.declare(rs)
	c.stats.reloads.Add(1)
	c.log.Info("sentinel rules applied", "rules", rs.Summary())
	return ferr
}

// Rules returns the rules in force.
func (c *Controller) Rules() Rules {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applied
}

// apply loads rs into Sentinel's rule managers. rs must be valid.
func apply(rs Rules) error {
	hs := make([]*hotspot.Rule, 0, len(rs.Hotspot))
	for _, h := range rs.Hotspot {
		hs = append(hs, h.sentinel())
	}
	var errs []error
	if _, err := sflow.LoadRules(cloneFlow(rs.Flow)); err != nil {
		errs = append(errs, fmt.Errorf("flow rules: %w", err))
	}
	if _, err := hotspot.LoadRules(hs); err != nil {
		errs = append(errs, fmt.Errorf("hotspot rules: %w", err))
	}
	if _, err := circuitbreaker.LoadRules(cloneBreakers(rs.CircuitBreaker)); err != nil {
		errs = append(errs, fmt.Errorf("circuit breaker rules: %w", err))
	}
	if _, err := system.LoadRules(cloneSystem(rs.System)); err != nil {
		errs = append(errs, fmt.Errorf("system rules: %w", err))
	}
	return errors.Join(errs...)
}

// Sentinel keeps the pointers it is given: hand it copies so our Rules
// values stay immutable.
func cloneFlow(in []*sflow.Rule) []*sflow.Rule {
	out := make([]*sflow.Rule, 0, len(in))
	for _, r := range in {
		c := *r
		out = append(out, &c)
	}
	return out
}

func cloneBreakers(in []*circuitbreaker.Rule) []*circuitbreaker.Rule {
	out := make([]*circuitbreaker.Rule, 0, len(in))
	for _, r := range in {
		c := *r
		out = append(out, &c)
	}
	return out
}

func cloneSystem(in []*system.Rule) []*system.Rule {
	out := make([]*system.Rule, 0, len(in))
	for _, r := range in {
		c := *r
		out = append(out, &c)
	}
	return out
}

// ClearRules removes every Sentinel rule of the process (tests call it
// between cases: rule managers are process globals).
func ClearRules() error {
	return errors.Join(sflow.ClearRules(), hotspot.ClearRules(), circuitbreaker.ClearRules(), system.ClearRules())
}

// SentinelGoroutineFunc is in the stack of the goroutines Sentinel starts
// at Init and never stops (system statistics collectors): tests that check
// for leaks with goleak ignore it with goleak.IgnoreAnyFunction.
const SentinelGoroutineFunc = "github.com/alibaba/sentinel-golang/util.RunWithRecover"
