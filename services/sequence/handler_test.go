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

func post(t *testing.T, h http.Handler, body string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/seq", strings.NewReader(body)))
	return rec
}

func TestHandlerAllocates(t *testing.T) {
	q := newEmbedded(t, openSQLite(t), WithSections(4))
	defer q.Close()
	h := NewHandler(q, nil)
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
			rec := post(t, NewHandler(&fakeAllocator{err: tt.giveErr}, nil), tt.give)
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

func TestHandlerHealth(t *testing.T) {
	q := newEmbedded(t, openSQLite(t), WithSections(4))
	h := NewHandler(q, nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("%s = %d, want 200", path, rec.Code)
		}
	}
	q.Close()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz after Close = %d, want 503", rec.Code)
	}
}

func TestHandlerMetrics(t *testing.T) {
	q := newEmbedded(t, openSQLite(t), WithSections(4))
	defer q.Close()
	h := NewHandler(q, nil)
	post(t, h, `[{"key":"a","count":3},{"key":"b","count":2}]`)
	post(t, h, `[{"key":"","count":3}]`)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`imkube_seq_requests_total{outcome="ok"} 1`,
		`imkube_seq_requests_total{outcome="bad_request"} 1`,
		"imkube_seq_values_total 5",
		"imkube_seq_sql_writes_total 2",
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, rec.Body)
		}
	}
}
