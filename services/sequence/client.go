package sequence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	sentinel "github.com/alibaba/sentinel-golang/api"
	"github.com/alibaba/sentinel-golang/core/base"
)

// DefaultBreakerResource is the Sentinel resource of the client's HTTP calls;
// the operator's sentinel-rules.json has an error-ratio circuit breaker on it.
const DefaultBreakerResource = "http.sequence"

// ClientOption configures NewClient.
type ClientOption func(*Client)

// WithHTTPClient sets the HTTP client (default: a pooled client of its own).
func WithHTTPClient(hc *http.Client) ClientOption { return func(c *Client) { c.hc = hc } }

// WithTimeout bounds one HTTP request (default 2s).
func WithTimeout(d time.Duration) ClientOption { return func(c *Client) { c.timeout = d } }

// WithWindow sets how long the first call of a batch waits for others to join
// (default 200µs). Calls also join while all senders are busy, so under load
// batches grow without any wait.
func WithWindow(d time.Duration) ClientOption { return func(c *Client) { c.window = d } }

// WithMaxBatch caps the requests of one HTTP call (default and maximum
// MaxKeys).
func WithMaxBatch(n int) ClientOption { return func(c *Client) { c.maxBatch = n } }

// WithMaxInflight caps concurrent HTTP calls (default 4).
func WithMaxInflight(n int) ClientOption { return func(c *Client) { c.maxInflight = n } }

// WithBreakerResource sets the Sentinel resource guarding the calls (default
// "http.sequence"); "" disables circuit breaking. The rules themselves are
// process-wide and loaded by whoever owns Sentinel in the process.
func WithBreakerResource(name string) ClientOption { return func(c *Client) { c.resource = name } }

// Client calls the sequence service over HTTP. Concurrent Allocate calls are
// coalesced into one POST /v1/seq (group commit): the first call of a batch
// waits a short window, then for a free sender slot, and every call arriving
// meanwhile joins its batch, up to the size cap. It starts no goroutines:
// the first caller of a batch sends it.
type Client struct {
	url         string
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

var _ Allocator = (*Client)(nil)

// NewClient returns an Allocator that calls the sequence service at baseURL
// (e.g. http://sequence:8080). The result is a *Client.
func NewClient(baseURL string, opts ...ClientOption) Allocator {
	c := &Client{
		url:         strings.TrimRight(baseURL, "/") + "/v1/seq",
		timeout:     2 * time.Second,
		window:      200 * time.Microsecond,
		maxBatch:    MaxKeys,
		maxInflight: 4,
		resource:    DefaultBreakerResource,
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = max(c.maxInflight, 1) * 2
		c.hc = &http.Client{Transport: tr}
	}
	c.maxBatch = min(max(c.maxBatch, 1), MaxKeys)
	c.maxInflight = max(c.maxInflight, 1)
	c.slots = make(chan struct{}, c.maxInflight)
	return c
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
