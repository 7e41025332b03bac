package sequence

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	sentinel "github.com/alibaba/sentinel-golang/api"
	"github.com/alibaba/sentinel-golang/core/base"
)

// ClientConfig tunes a Client. A zero field takes its default, except
// BreakerResource.
type ClientConfig struct {
	// URL is the base URL of the sequence service (required), e.g.
	// http://sequence:8080.
	URL string
	// Token is the internal service token sent with every call
	// (auth.Keys.InternalToken); the service refuses calls without it.
	Token string
	// Timeout bounds one HTTP request (default 2s).
	Timeout time.Duration
	// Window is how long the first call of a batch waits for others to join
	// (default 200µs; negative: no wait). Calls also join while all senders
	// are busy, so under load batches grow without any wait.
	Window time.Duration
	// MaxBatch caps the requests of one HTTP call (default and maximum
	// MaxKeys).
	MaxBatch int
	// MaxInflight caps concurrent HTTP calls (default 4).
	MaxInflight int
	// BreakerResource is the Sentinel resource guarding the calls (e.g.
	// flow.ResSequence); "" disables circuit breaking. The rules themselves
	// are process-wide and loaded by whoever owns Sentinel in the process.
	BreakerResource string
}

// ClientDeps are what a Client works with.
type ClientDeps struct {
	// HTTP sends the requests (nil: a pooled client of its own).
	HTTP *http.Client
}

// Client calls the sequence service over HTTP. Concurrent Allocate calls are
// coalesced into one POST /v1/seq (group commit): the first call of a batch
// waits a short window, then for a free sender slot, and every call arriving
// meanwhile joins its batch, up to the size cap. It starts no goroutines:
// the first caller of a batch sends it.
type Client struct {
	url         string
	token       string
	hc          *http.Client
	timeout     time.Duration
	window      time.Duration
	maxBatch    int
	maxInflight int
	resource    string

	slots chan struct{}
	mu    sync.Mutex
	open  *batch // the batch new calls join
}

type batch struct {
	reqs []Request
	full chan struct{} // closed when the batch reached the cap
	done chan struct{} // closed when res/err are set
	res  []Range
	err  error
}

var (
	_ Allocator = (*Client)(nil)
	_ io.Closer = (*Client)(nil)
)

// NewClient returns a client of the sequence service at cfg.URL. Call Close
// on shutdown.
func NewClient(cfg ClientConfig, deps ClientDeps) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sequence client: URL %q: want the service's base URL, e.g. http://sequence:8080", cfg.URL)
	}
	switch {
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("sequence client: timeout = %v: want > 0", cfg.Timeout)
	case cfg.MaxBatch < 0:
		return nil, fmt.Errorf("sequence client: max batch = %d: want 1..%d", cfg.MaxBatch, MaxKeys)
	case cfg.MaxInflight < 0:
		return nil, fmt.Errorf("sequence client: max inflight = %d: want >= 1", cfg.MaxInflight)
	}
	c := &Client{
		url:         strings.TrimRight(cfg.URL, "/") + "/v1/seq",
		token:       cfg.Token,
		hc:          deps.HTTP,
		timeout:     cmp.Or(cfg.Timeout, 2*time.Second),
		window:      max(cmp.Or(cfg.Window, 200*time.Microsecond), 0),
		maxBatch:    min(cmp.Or(cfg.MaxBatch, MaxKeys), MaxKeys),
		maxInflight: cmp.Or(cfg.MaxInflight, 4),
		resource:    cfg.BreakerResource,
	}
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = c.maxInflight * 2
		c.hc = &http.Client{Transport: tr}
	}
	c.slots = make(chan struct{}, c.maxInflight)
	return c, nil
}

// Allocate implements Allocator. Errors wrap ErrBadRequest (invalid request,
// checked before anything is sent) or ErrUnavailable (the service, the
// network or the circuit breaker refused: retry later).
func (c *Client) Allocate(ctx context.Context, reqs []Request) ([]Range, error) {
	if err := Validate(reqs); err != nil {
		return nil, err
	}
	if len(reqs) > c.maxBatch {
		// Too big to share: its own call.
		b := &batch{reqs: reqs, done: make(chan struct{})}
		c.send(ctx, b)
		return b.res, b.err
	}
	c.mu.Lock()
	b, leader := c.open, false
	if b != nil && len(b.reqs)+len(reqs) > c.maxBatch {
		close(b.full)
		c.open, b = nil, nil
	}
	if b == nil {
		b = &batch{full: make(chan struct{}), done: make(chan struct{})}
		c.open, leader = b, true
	}
	off := len(b.reqs)
	b.reqs = append(b.reqs, reqs...)
	if len(b.reqs) >= c.maxBatch {
		close(b.full)
		c.open = nil
	}
	c.mu.Unlock()

	if leader {
		c.lead(ctx, b)
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
	if b.err != nil {
		return nil, b.err
	}
	out := make([]Range, len(reqs))
	copy(out, b.res[off:off+len(reqs)])
	return out, nil
}

// lead waits for the window (or a full batch) and a sender slot, closes the
// batch and sends it. It ignores ctx until the send: other callers depend on
// this batch.
func (c *Client) lead(ctx context.Context, b *batch) {
	if c.window > 0 {
		t := time.NewTimer(c.window)
		select {
		case <-t.C:
		case <-b.full:
			t.Stop()
		}
	}
	c.slots <- struct{}{} // calls keep joining b while every slot is busy
	c.mu.Lock()
	if c.open == b {
		c.open = nil
	}
	c.mu.Unlock()
	defer func() { <-c.slots }()
	c.send(context.WithoutCancel(ctx), b)
}

// send performs the HTTP call for b, sets b.res/b.err and closes b.done.
func (c *Client) send(ctx context.Context, b *batch) {
	defer close(b.done)
	if c.resource != "" {
		e, blocked := sentinel.Entry(c.resource, sentinel.WithTrafficType(base.Outbound))
		if blocked != nil {
			b.err = fmt.Errorf("%w: circuit breaker %s is open (%s)", ErrUnavailable, c.resource, blocked.BlockType())
			return
		}
		defer e.Exit()
		defer func() {
			if b.err != nil && !errors.Is(b.err, ErrBadRequest) {
				sentinel.TraceError(e, b.err)
			}
		}()
	}
	b.res, b.err = c.post(ctx, b.reqs)
}

func (c *Client) post(ctx context.Context, reqs []Request) ([]Range, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	body := appendRequests(make([]byte, 0, 16+len(reqs)*32), reqs)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("sequence client: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("%w: POST %s: %w", ErrUnavailable, c.url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(len(reqs))*(2*MaxKeyLen+128)+4096))
	if err != nil {
		return nil, fmt.Errorf("%w: POST %s: reading the answer: %w", ErrUnavailable, c.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e APIError
		_ = json.Unmarshal(data, &e)
		err := fmt.Errorf("sequence service: %s %s: %s", resp.Status, e.Code, e.Message)
		if resp.StatusCode == http.StatusUnauthorized {
			// A key rotation under way (this process and the service hold
			// different key sets) or a misconfiguration: retryable, and
			// the message says which.
			return nil, fmt.Errorf("%w: sequence service refused the internal token (do both sides hold the same JWT key file?): %w", ErrUnavailable, err)
		}
		if resp.StatusCode == http.StatusBadRequest {
			return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var got []Range
	if err := json.Unmarshal(data, &got); err != nil {
		return nil, fmt.Errorf("%w: sequence service answered malformed JSON: %w", ErrUnavailable, err)
	}
	if len(got) != len(reqs) {
		return nil, fmt.Errorf("%w: sequence service answered %d ranges for %d requests", ErrUnavailable, len(got), len(reqs))
	}
	for i, r := range got {
		if r.Key != reqs[i].Key || r.Last-r.First+1 != reqs[i].Count {
			return nil, fmt.Errorf("%w: sequence service answered %+v for %+v", ErrUnavailable, r, reqs[i])
		}
	}
	return got, nil
}

// appendRequests encodes reqs as JSON without reflection.
func appendRequests(buf []byte, reqs []Request) []byte {
	buf = append(buf, '[')
	for i, r := range reqs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"key":`...)
		k, _ := json.Marshal(r.Key)
		buf = append(buf, k...)
		buf = append(buf, `,"count":`...)
		buf = appendInt(buf, r.Count)
		buf = append(buf, '}')
	}
	return append(buf, ']')
}

// Close releases idle connections. Calls in flight finish normally.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}
