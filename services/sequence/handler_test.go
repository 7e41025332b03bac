package sequence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/internal/telemetry/telemetrytest"
)

// fakeAllocator answers with err, or counts up per key.
type fakeAllocator struct {
	err  error
	last map[string]int64
}

func (f *fakeAllocator) Allocate(_ context.Context, reqs []Request) ([]Range, error) {
	if err := Validate(reqs); err != nil {
		return nil, err
	}
	if f.err != nil {
		return nil, f.err
	}
	if f.last == nil {
		f.last = map[string]int64{}
	}
	out := make([]Range, len(reqs))
	for i, r := range reqs {
		out[i] = Range{Key: r.Key, First: f.last[r.Key] + 1, Last: f.last[r.Key] + r.Count}
		f.last[r.Key] = out[i].Last
	}
	return out, nil
}

// testToken is the internal token the handlers of these tests accept.
const testToken = StaticToken("test-internal-token")

func post(t *testing.T, h http.Handler, body string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/seq", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+string(testToken))
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandlerAllocates(t *testing.T) {
	q := newEmbedded(t, openSQLite(t), Config{Sections: 4})
	defer q.Close()
	h := NewHandler(q, testToken, nil, nil)
	post(t, h, `[{"key":"c:1","count":4}]`)
	rec := post(t, h, `[{"key":"c:1","count":2},{"key":"i:u\"1","count":1}]`)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var got []Range
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := []Range{{Key: "c:1", First: 5, Last: 6}, {Key: `i:u"1`, First: 1, Last: 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("ranges (-want +got):\n%s", diff)
	}
}

func TestHandlerErrors(t *testing.T) {
	many := make([]string, MaxKeys+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"key":"k%d","count":1}`, i)
	}
	tests := []struct {
		name       string
		give       string
		giveErr    error
		wantStatus int
		wantCode   string
	}{
		{name: "empty key", give: `[{"key":"","count":1}]`, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "zero count", give: `[{"key":"a","count":0}]`, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "negative count", give: `[{"key":"a","count":-3}]`, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "count over the maximum", give: fmt.Sprintf(`[{"key":"a","count":%d}]`, MaxCount+1), wantStatus: 400, wantCode: CodeBadRequest},
		{name: "too many keys", give: "[" + strings.Join(many, ",") + "]", wantStatus: 400, wantCode: CodeBadRequest},
		{name: "no keys", give: `[]`, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "malformed JSON", give: `[{"key":"a","count":1}`, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "an object instead of an array", give: `{"key":"a","count":1}`, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "unknown field", give: `[{"key":"a","n":1}]`, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "count not a number", give: `[{"key":"a","count":"1"}]`, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "trailing data", give: `[{"key":"a","count":1}] []`, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "allocator unavailable", give: `[{"key":"a","count":1}]`, giveErr: fmt.Errorf("%w: mysql down", ErrUnavailable), wantStatus: 503, wantCode: CodeUnavailable},
		{name: "allocator broken", give: `[{"key":"a","count":1}]`, giveErr: errors.New("boom"), wantStatus: 500, wantCode: CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := post(t, NewHandler(&fakeAllocator{err: tt.giveErr}, testToken, nil, nil), tt.give)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", rec.Code, tt.wantStatus, rec.Body)
			}
			var e APIError
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("error body %q is not JSON: %v", rec.Body, err)
			}
			if e.Code != tt.wantCode || e.Message == "" {
				t.Fatalf("error = %+v, want code %s and a message", e, tt.wantCode)
			}
			if tt.wantStatus == 500 && strings.Contains(e.Message, "boom") {
				t.Fatalf("internal error text leaked: %q", e.Message)
			}
		})
	}
}

// The handler serves only the API: health and /metrics belong to the
// process, which mounts them next to it.
func TestHandlerServesOnlyTheSequenceAPI(t *testing.T) {
	h := NewHandler(&fakeAllocator{}, testToken, nil, nil)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusNotFound {
			t.Fatalf("GET %s = %d, want 404", path, rec.Code)
		}
	}
}

// Ready is the readiness probe the process mounts: ready while serving, not
// after Close.
func TestSequencerReadyUntilClosed(t *testing.T) {
	q := newEmbedded(t, openSQLite(t), Config{Sections: 4})
	var r Readier = q
	if err := r.Ready(t.Context()); err != nil {
		t.Fatalf("Ready = %v, want nil", err)
	}
	q.Close()
	if err := r.Ready(t.Context()); err == nil {
		t.Fatal("Ready after Close = nil, want an error")
	}
}

// metrics returns instruments on a real telemetry pipeline and a function
// that scrapes its /metrics into series "name{labels}" -> value.
func metrics(t *testing.T) (*telemetry.Sequence, func() map[string]float64) {
	t.Helper()
	tel, err := telemetry.New(t.Context(), telemetry.Config{ServiceName: "imkube-sequence-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	m, err := telemetry.NewSequence(tel.MeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	return m, func() map[string]float64 {
		fams, err := telemetrytest.Scrape(tel.Handler())
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for name, f := range fams {
			for _, s := range f.GetMetric() {
				var ls []string
				for _, l := range s.GetLabel() {
					if !strings.HasPrefix(l.GetName(), "otel_") {
						ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
					}
				}
				key := name
				if len(ls) > 0 {
					key += "{" + strings.Join(ls, ",") + "}"
				}
				got[key] = s.GetCounter().GetValue()
			}
		}
		return got
	}
}

func TestHandlerMetrics(t *testing.T) {
	m, scrape := metrics(t)
	db := openSQLite(t)
	q, err := NewEmbedded(t.Context(), Config{Sections: 4}, Deps{DB: db, Dialect: DialectSQLite, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	h := NewHandler(q, testToken, nil, m)
	post(t, h, `[{"key":"a","count":3},{"key":"b","count":2}]`)
	post(t, h, `[{"key":"","count":3}]`)
	got := scrape()
	for series, want := range map[string]float64{
		`imkube_sequence_requests_total{outcome="ok"}`:          1,
		`imkube_sequence_requests_total{outcome="bad_request"}`: 1,
		"imkube_sequence_allocations_total":                     5,
		"imkube_sequence_bound_raises_total":                    2,
		// Both sections start at bound 0: the first allocation finds them used up.
		"imkube_sequence_section_exhaustions_total": 2,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v (scraped %v)", series, got[series], want, got)
		}
	}
}
