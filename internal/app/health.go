package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/imkube/imkube/internal/bus/rocketmq"
)

// HealthInterval is how often a process publishes imkube_process_ready and
// imkube_dependency_up (half the ServiceMonitor's 30 s scrape interval).
const HealthInterval = 15 * time.Second

// healthCheckTimeout bounds one readiness or reachability check.
const healthCheckTimeout = 2 * time.Second

// reportHealth publishes, every interval until ctx ends, whether the process
// is ready (what /readyz answers) and whether each dependency its components
// use answers its reachability check, so an alert sees a process that waits
// for MySQL or lost Redis even when nothing polls /readyz.
func (s *Server) reportHealth(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.recordHealth(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// recordHealth runs the readiness and dependency checks once and records them.
func (s *Server) recordHealth(ctx context.Context) {
	h := s.Process.health
	rctx, cancel := context.WithTimeout(ctx, healthCheckTimeout)
	h.SetReady(s.readiness(rctx) == nil)
	cancel()
	for dep, err := range s.dependencies(ctx) {
		h.SetDependencyUp(dep, err == nil)
	}
}

// dependencies runs the components' dependency checks; a dependency several
// components use is up only when every check of it passes.
func (s *Server) dependencies(ctx context.Context) map[string]error {
	s.mu.Lock()
	comps := s.comps
	if !s.active {
		comps = nil
	}
	s.mu.Unlock()
	out := map[string]error{}
	for _, c := range comps {
		for _, dep := range slices.Sorted(maps.Keys(c.Deps)) {
			cctx, cancel := context.WithTimeout(ctx, healthCheckTimeout)
			err := c.Deps[dep](cctx)
			cancel()
			out[dep] = errors.Join(out[dep], err)
		}
	}
	return out
}

// DependencyStatus runs the process's dependency checks once and returns
// each dependency's error (nil: reachable), as imkube_dependency_up records.
func (s *Server) DependencyStatus(ctx context.Context) map[string]error {
	return s.dependencies(ctx)
}

// rocketMQCheck is the RocketMQ reachability check of a process whose bus is
// RocketMQ (nil otherwise): a TCP connection to one of the name servers.
func (p *Process) rocketMQCheck(b Bus) func(context.Context) error {
	if _, ok := b.(*rocketmq.Bus); !ok {
		return nil
	}
	return nameServersReachable(p.Config.RocketMQ.NameServers)
}

// nameServersReachable reports whether one of the name servers of list
// (host:port;...) accepts a TCP connection.
func nameServersReachable(list string) func(context.Context) error {
	return func(ctx context.Context) error {
		var errs []error
		for _, addr := range strings.FieldsFunc(list, func(r rune) bool { return r == ';' || r == ',' }) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", strings.TrimSpace(addr))
			if err == nil {
				c.Close()
				return nil
			}
			errs = append(errs, err)
		}
		if len(errs) == 0 {
			return fmt.Errorf("no name servers configured")
		}
		return fmt.Errorf("no name server answers: %w", errors.Join(errs...))
	}
}
