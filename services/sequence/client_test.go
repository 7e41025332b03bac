package sequence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alibaba/sentinel-golang/core/circuitbreaker"
)

// countingServer serves h and counts the POSTs it received.
func countingServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			n.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func newTestClient(t *testing.T, cfg ClientConfig) *Client {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = string(testToken)
	}
	c, err := NewClient(cfg, ClientDeps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClientCoalescesConcurrentCalls(t *testing.T) {
	q := newEmbedded(t, openSQLite(t), Config{Sections: 8})
	defer q.Close()
	srv, posts := countingServer(t, NewHandler(q, testToken, nil, nil))
	// One sender and a long window: every call below joins one batch.
	c := newTestClient(t, ClientConfig{URL: srv.URL, Window: time.Hour, MaxInflight: 1, MaxBatch: 64})

	const callers = 64
	var wg sync.WaitGroup
	got := make([][]Range, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = c.Allocate(context.Background(), []Request{{Key: "c:x", Count: 1}, {Key: fmt.Sprintf("i:%d", i), Count: 2}})
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for i := range callers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if got[i][1] != (Range{Key: fmt.Sprintf("i:%d", i), First: 1, Last: 2}) {
			t.Fatalf("caller %d got %+v, want its own key 1..2", i, got[i][1])
		}
		if v := got[i][0].First; seen[v] {
			t.Fatalf("c:x value %d handed to two callers", v)
		}
		seen[got[i][0].First] = true
	}
	// 64 callers x 2 requests = 128 = two full batches of 64.
	if n := posts.Load(); n != 2 {
		t.Fatalf("%d HTTP calls for %d concurrent Allocate calls, want 2 (batches capped at 64 requests)", n, callers)
	}
}

func TestClientSingleCallIsNotDelayedByOthers(t *testing.T) {
	q := newEmbedded(t, openSQLite(t), Config{Sections: 8})
	defer q.Close()
	srv, posts := countingServer(t, NewHandler(q, testToken, nil, nil))
	c := newTestClient(t, ClientConfig{URL: srv.URL})
	for i := range 3 {
		got, err := c.Allocate(context.Background(), []Request{{Key: "c:y", Count: 1}})
		if err != nil {
			t.Fatal(err)
		}
		if got[0].First != int64(i+1) {
			t.Fatalf("call %d got %+v, want %d", i, got[0], i+1)
		}
	}
	if n := posts.Load(); n != 3 {
		t.Fatalf("%d HTTP calls for 3 sequential calls, want 3", n)
	}
}

func TestClientErrors(t *testing.T) {
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	tests := []struct {
		name       string
		handler    http.Handler
		give       []Request
		wantErr    error
		wantNoPOST bool
	}{
		{name: "invalid request is refused before sending", handler: NewHandler(&fakeAllocator{}, testToken, nil, nil),
			give: []Request{{Key: "", Count: 1}}, wantErr: ErrBadRequest, wantNoPOST: true},
		{name: "service unavailable", handler: NewHandler(&fakeAllocator{err: ErrUnavailable}, testToken, nil, nil),
			give: []Request{{Key: "a", Count: 1}}, wantErr: ErrUnavailable},
		{name: "service internal error is retryable", handler: NewHandler(&fakeAllocator{err: errors.New("boom")}, testToken, nil, nil),
			give: []Request{{Key: "a", Count: 1}}, wantErr: ErrUnavailable},
		{name: "service hangs past the timeout", handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body) // then the server notices the client leaving
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}), give: []Request{{Key: "a", Count: 1}}, wantErr: ErrUnavailable},
		{name: "service answers garbage", handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`[{"key":"other","first":1,"last":1}]`))
		}), give: []Request{{Key: "a", Count: 1}}, wantErr: ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, posts := countingServer(t, tt.handler)
			c := newTestClient(t, ClientConfig{URL: srv.URL, Timeout: 200 * time.Millisecond})
			_, err := c.Allocate(context.Background(), tt.give)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantNoPOST && posts.Load() != 0 {
				t.Fatalf("%d HTTP calls, want none", posts.Load())
			}
		})
	}
}

func TestClientUnreachableService(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	c := newTestClient(t, ClientConfig{URL: url})
	if _, err := c.Allocate(context.Background(), []Request{{Key: "a", Count: 1}}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

// The Sentinel rules are process-wide: the test uses a resource of its own
// and removes its rule afterwards.
func TestClientCircuitBreakerOpensOnErrors(t *testing.T) {
	const resource = "test.sequence.breaker"
	if _, err := circuitbreaker.LoadRulesOfResource(resource, []*circuitbreaker.Rule{{
		Resource:         resource,
		Strategy:         circuitbreaker.ErrorCount,
		RetryTimeoutMs:   60_000,
		MinRequestAmount: 1,
		StatIntervalMs:   10_000,
		Threshold:        3,
	}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = circuitbreaker.ClearRulesOfResource(resource) })

	srv, posts := countingServer(t, NewHandler(&fakeAllocator{err: ErrUnavailable}, testToken, nil, nil))
	c := newTestClient(t, ClientConfig{URL: srv.URL, BreakerResource: resource})
	for range 10 {
		_, err := c.Allocate(context.Background(), []Request{{Key: "a", Count: 1}})
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	}
	if n := posts.Load(); n >= 10 {
		t.Fatalf("%d of 10 calls reached the failing service, want the breaker to stop them", n)
	}
}
