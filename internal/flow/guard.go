package flow

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/alibaba/sentinel-golang/api"
	"github.com/alibaba/sentinel-golang/core/base"
	"github.com/alibaba/sentinel-golang/core/circuitbreaker"
	sflow "github.com/alibaba/sentinel-golang/core/flow"
	"github.com/alibaba/sentinel-golang/core/hotspot"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/rest"
)

var (
	// ErrBlocked is wrapped by errors of calls rejected by a flow, hotspot or
	// system rule: the caller answers RATE_LIMITED / UNAVAILABLE, retryable.
	ErrBlocked = errors.New("rejected by flow control")
	// ErrOpen is wrapped by errors of calls rejected because the resource's
	// circuit breaker is open: answer UNAVAILABLE, retryable.
	ErrOpen = errors.New("circuit breaker open")
)

// BlockedError describes a call Sentinel did not let through.
type BlockedError struct {
	Resource   string
	Kind       string        // KindFlow, KindHotspot, KindBreaker, KindSystem, ...
	RetryAfter time.Duration // a good time to wait before retrying (>= 1 ms)
}

func (e *BlockedError) Error() string {
	if e.Kind == KindBreaker {
		return fmt.Sprintf("%s: %v; retry in %v", e.Resource, ErrOpen, e.RetryAfter)
	}
	return fmt.Sprintf("%s: %v (%s rule); retry in %v", e.Resource, ErrBlocked, e.Kind, e.RetryAfter)
}

// Unwrap makes errors.Is(err, ErrOpen) / errors.Is(err, ErrBlocked) work.
func (e *BlockedError) Unwrap() error {
	if e.Kind == KindBreaker {
		return ErrOpen
	}
	return ErrBlocked
}

// RetryAfter returns how long to wait after err, or 0 when err is not a
// flow-control rejection.
func RetryAfter(err error) time.Duration {
	var be *BlockedError
	if errors.As(err, &be) {
		return be.RetryAfter
	}
	return 0
}

func (c *Controller) blocked(resource string, b *base.BlockError) *BlockedError {
	kind := kindOf(b.BlockType())
	c.stats.block(resource, kind)
	wait := time.Second
	switch r := b.TriggeredRule().(type) {
	case *hotspot.Rule:
		if r.DurationInSec > 0 {
			wait = time.Duration(r.DurationInSec) * time.Second
		}
	case *circuitbreaker.Rule:
		if r.RetryTimeoutMs > 0 {
			wait = time.Duration(r.RetryTimeoutMs) * time.Millisecond
		}
	case *sflow.Rule:
		if r.StatIntervalInMs > 0 {
			wait = time.Duration(r.StatIntervalInMs) * time.Millisecond
		}
	}
	return &BlockedError{Resource: resource, Kind: kind, RetryAfter: max(wait, time.Millisecond)}
}

// allowKey passes one inbound entry of a hotspot resource keyed by key.
func (c *Controller) allowKey(resource, key string) (bool, time.Duration) {
	e, b := api.Entry(resource, api.WithArgs(key), api.WithTrafficType(base.Inbound))
	if b != nil {
		return false, c.blocked(resource, b).RetryAfter
	}
	e.Exit()
	return true, 0
}

// AllowSend implements the gateway's SendLimiter: the per-user hotspot rule
// on gateway.send (rate sendRatePerSecond, burst sendBurst of config.json)
// plus the system rules (sends are inbound traffic).
func (c *Controller) AllowSend(user string) (ok bool, retryAfter time.Duration) {
	return c.allowKey(ResSend, user)
}

// AllowConnect applies the per-IP connection rate (hotspot rule on
// gateway.connect, connectionsPerIPPerSecond of config.json) and the system
// rules. The gateway calls it before the WebSocket upgrade and answers 429
// with Retry-After: 1 when it returns false.
func (c *Controller) AllowConnect(ip string) bool {
	ok, _ := c.allowKey(ResConnect, ip)
	return ok
}

// ignored marks an error that Guard returns without counting it against the
// dependency (e.g. "not found", "forbidden": the dependency works).
type ignored struct{ err error }

func (i ignored) Error() string { return i.err.Error() }
func (i ignored) Unwrap() error { return i.err }

// Ignore wraps err so that Guard returns it (unwrapped) without counting it
// as a failure of the dependency for the error-ratio breakers.
func Ignore(err error) error {
	if err == nil {
		return nil
	}
	return ignored{err}
}

// Guard runs fn as one call of resource (an outbound dependency: flow rule
// and circuit breakers apply). When a rule rejects the call, fn does not
// run and the error is a *BlockedError wrapping ErrBlocked or ErrOpen, which
// callers answer with UNAVAILABLE (retryable, RetryAfter(err)). An error of
// fn counts as a failure of the dependency unless wrapped with Ignore; Guard
// returns fn's error as it was. The entry is always exited, also on panic.
func (c *Controller) Guard(resource string, fn func() error) error {
	return c.guard(resource, base.Outbound, fn)
}

// GuardInbound is Guard for inbound work (a request this process serves):
// the system adaptive-protection rules apply too.
func (c *Controller) GuardInbound(resource string, fn func() error) error {
	return c.guard(resource, base.Inbound, fn)
}

func (c *Controller) guard(resource string, tt base.TrafficType, fn func() error) error {
	e, b := api.Entry(resource, api.WithTrafficType(tt))
	if b != nil {
		return c.blocked(resource, b)
	}
	defer e.Exit()
	err := fn()
	var ig ignored
	if errors.As(err, &ig) {
		return ig.err
	}
	if err != nil {
		api.TraceError(e, err)
	}
	return err
}

// Middleware guards every request of next as inbound traffic of resource
// (flow and system rules). A rejected request gets 429 RATE_LIMITED (flow,
// hotspot) or 503 UNAVAILABLE (system, breaker) with Retry-After.
func (c *Controller) Middleware(resource string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, b := api.Entry(resource, api.WithTrafficType(base.Inbound))
		if b != nil {
			WriteBlocked(w, c.blocked(resource, b))
			return
		}
		defer e.Exit()
		next.ServeHTTP(w, r)
	})
}

// WriteBlocked answers a REST request rejected by flow control: 429
// RATE_LIMITED for flow/hotspot rules, 503 UNAVAILABLE for system rules and
// open breakers, with Retry-After in whole seconds (at least 1).
func WriteBlocked(w http.ResponseWriter, be *BlockedError) {
	status, code, msg := http.StatusTooManyRequests, protocol.CodeRateLimited, "too many requests; retry later"
	if be.Kind == KindBreaker || be.Kind == KindSystem {
		status, code, msg = http.StatusServiceUnavailable, protocol.CodeUnavailable, "temporarily overloaded; retry later"
	}
	w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds(be.RetryAfter)))
	rest.WriteJSON(w, status, &rest.Error{Status: status, Code: code, Message: msg})
}

// RetryAfterSeconds rounds d up to whole seconds for a Retry-After header
// (at least 1).
func RetryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// Transport returns an http.RoundTripper that guards every request sent
// through base (nil: http.DefaultTransport) as a call of resource: transport
// errors and 5xx answers count as failures of the dependency, and a request
// rejected by a rule fails with a *BlockedError (no request is sent).
func (c *Controller) Transport(resource string, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return guardedTransport{c: c, res: resource, base: base}
}

type guardedTransport struct {
	c    *Controller
	res  string
	base http.RoundTripper
}

// errServer is counted against the dependency but not returned.
var errServer = errors.New("server error status")

func (t guardedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var resp *http.Response
	ran := false
	err := t.c.Guard(t.res, func() error {
		ran = true
		var err error
		resp, err = t.base.RoundTrip(req)
		if err != nil {
			return err
		}
		if resp.StatusCode >= 500 {
			return errServer
		}
		return nil
	})
	if !ran && req.Body != nil {
		req.Body.Close() // a RoundTripper always closes the body
	}
	if errors.Is(err, errServer) {
		return resp, nil
	}
	return resp, err
}
