package sequence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
)

// Error codes of the HTTP API.
const (
	CodeBadRequest  = "BAD_REQUEST"
	CodeUnavailable = "UNAVAILABLE"
	CodeInternal    = "INTERNAL"
)

// APIError is the JSON body of an error answer.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// maxBody fits MaxKeys requests with keys of MaxKeyLen bytes.
const maxBody = MaxKeys * (MaxKeyLen + 64)

// Readier is implemented by allocators that can tell whether they serve
// (the *Sequencer does: not closed, Redis answers).
type Readier interface {
	Ready(ctx context.Context) error
}

// NewHandler serves the sequence API:
//
//	POST /v1/seq  [{"key":"c:1","count":2}] -> [{"key":"c:1","first":5,"last":6}]
//
// plus /healthz and /readyz. Errors are {"code","message"} with 400
// (BAD_REQUEST: empty key, count <= 0 or over the maximum, too many keys,
// malformed JSON), 503 (UNAVAILABLE: retry later) or 500 (INTERNAL).
func NewHandler(a Allocator, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h := &handler{a: a, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/seq", h.allocate)
	mux.HandleFunc("GET /metrics", h.metrics)
	return mux
}

type handler struct {
	a   Allocator
	log *slog.Logger

	calls  [3]atomic.Int64 // by outcome: ok, bad request, failed
	values atomic.Int64
}

// metrics serves the counters in the Prometheus text format.
func (h *handler) metrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	var b strings.Builder
	b.WriteString("# HELP imkube_seq_requests_total POST /v1/seq calls by outcome.\n# TYPE imkube_seq_requests_total counter\n")
	for i, o := range []string{"ok", "bad_request", "failed"} {
		fmt.Fprintf(&b, "imkube_seq_requests_total{outcome=%q} %d\n", o, h.calls[i].Load())
	}
	fmt.Fprintf(&b, "# HELP imkube_seq_values_total Sequence values handed out.\n# TYPE imkube_seq_values_total counter\nimkube_seq_values_total %d\n", h.values.Load())
	if s, ok := h.a.(interface{ Stats() Stats }); ok {
		st := s.Stats()
		fmt.Fprintf(&b, "# HELP imkube_seq_sql_writes_total Section bound writes to SQL by this process.\n# TYPE imkube_seq_sql_writes_total counter\nimkube_seq_sql_writes_total %d\n", st.SQLWrites)
		fmt.Fprintf(&b, "# HELP imkube_seq_recoveries_total Sections recovered after their values were lost.\n# TYPE imkube_seq_recoveries_total counter\nimkube_seq_recoveries_total %d\n", st.Recoveries)
	}
	_, _ = io.WriteString(w, b.String())
}

func (h *handler) allocate(w http.ResponseWriter, r *http.Request) {
	var reqs []Request
	body := http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&reqs); err != nil {
		h.calls[1].Add(1)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("request body is over %d bytes", maxBody))
			return
		}
		writeError(w, http.StatusBadRequest, CodeBadRequest, "malformed JSON: want [{\"key\":\"..\",\"count\":n}]: "+err.Error())
		return
	}
	if dec.More() {
		h.calls[1].Add(1)
		writeError(w, http.StatusBadRequest, CodeBadRequest, "malformed JSON: trailing data after the array")
		return
	}
	got, err := h.a.Allocate(r.Context(), reqs)
	if err != nil {
		switch {
		case errors.Is(err, ErrBadRequest):
			h.calls[1].Add(1)
			writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
		case errors.Is(err, ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			h.calls[2].Add(1)
			h.log.Warn("sequence: allocation unavailable", "keys", len(reqs), "err", err)
			writeError(w, http.StatusServiceUnavailable, CodeUnavailable, err.Error())
		default:
			h.calls[2].Add(1)
			h.log.Error("sequence: allocation failed", "keys", len(reqs), "err", err)
			writeError(w, http.StatusInternalServerError, CodeInternal, "internal error")
		}
		return
	}
	h.calls[0].Add(1)
	var n int64
	for _, r := range got {
		n += r.Last - r.First + 1
	}
	h.values.Add(n)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	buf := make([]byte, 0, 16+len(got)*48)
	buf = appendRanges(buf, got)
	_, _ = w.Write(buf)
}

// appendRanges encodes ranges as JSON without reflection (hot path).
func appendRanges(buf []byte, rs []Range) []byte {
	buf = append(buf, '[')
	for i, r := range rs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"key":`...)
		k, _ := json.Marshal(r.Key)
		buf = append(buf, k...)
		buf = append(buf, `,"first":`...)
		buf = appendInt(buf, r.First)
		buf = append(buf, `,"last":`...)
		buf = appendInt(buf, r.Last)
		buf = append(buf, '}')
	}
	return append(buf, ']', '\n')
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(APIError{Code: code, Message: msg})
}

func appendInt(buf []byte, v int64) []byte { return strconv.AppendInt(buf, v, 10) }
