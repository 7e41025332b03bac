package sequence

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/imkube/imkube/internal/telemetry"
)

// Error codes of the HTTP API.
const (
	CodeBadRequest      = "BAD_REQUEST"
	CodeUnauthenticated = "UNAUTHENTICATED"
	CodeUnavailable     = "UNAVAILABLE"
	CodeInternal        = "INTERNAL"
)

// TokenVerifier checks the internal service token callers present as
// `Authorization: Bearer <token>` (auth.Keys: derived from every configured
// JWT key, compared in constant time, so it rotates with the keys).
type TokenVerifier interface {
	VerifyInternal(tok string) bool
}

// APIError is the JSON body of an error answer.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// StaticToken is a TokenVerifier accepting one token (benchmarks and tests;
// processes use auth.Keys, which accepts the token of every configured key).
type StaticToken string

// VerifyInternal compares in constant time.
func (t StaticToken) VerifyInternal(tok string) bool {
	return t != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(t)) == 1
}

// maxBody fits MaxKeys requests with keys of MaxKeyLen bytes.
const maxBody = MaxKeys * (MaxKeyLen + 64)

// NewHandler serves the sequence API:
//
//	POST /v1/seq  [{"key":"c:1","count":2}] -> [{"key":"c:1","first":5,"last":6}]
//
// Every call must carry the internal service token (`Authorization: Bearer
// <token>`) that v accepts; without it the answer is 401 UNAUTHENTICATED and
// nothing is allocated (a nil v refuses every call). Other errors are
// {"code","message"} with 400 (BAD_REQUEST: empty key, count <= 0
// or over the maximum, too many keys, malformed JSON), 503 (UNAVAILABLE:
// retry later) or 500 (INTERNAL). Every call is counted on m by outcome (nil
// m: nothing recorded). Health and /metrics are the process's, mounted next
// to this handler (health from the allocator's Readier).
func NewHandler(a Allocator, v TokenVerifier, log *slog.Logger, m *telemetry.Sequence) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{a: a, v: v, log: log, m: m}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/seq", h.allocate)
	return mux
}

type handler struct {
	a   Allocator
	v   TokenVerifier
	log *slog.Logger
	m   *telemetry.Sequence
}

func (h *handler) allocate(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || h.v == nil || !h.v.VerifyInternal(tok) {
		h.m.Requested(telemetry.OutcomeUnauthenticated)
		writeError(w, http.StatusUnauthorized, CodeUnauthenticated,
			"internal endpoint: send the internal service token (Authorization: Bearer ...) derived from the cluster's JWT key")
		return
	}
	var reqs []Request
	body := http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&reqs); err != nil {
		h.m.Requested(telemetry.OutcomeBadRequest)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("request body is over %d bytes", maxBody))
			return
		}
		writeError(w, http.StatusBadRequest, CodeBadRequest, "malformed JSON: want [{\"key\":\"..\",\"count\":n}]: "+err.Error())
		return
	}
	if dec.More() {
		h.m.Requested(telemetry.OutcomeBadRequest)
		writeError(w, http.StatusBadRequest, CodeBadRequest, "malformed JSON: trailing data after the array")
		return
	}
	got, err := h.a.Allocate(r.Context(), reqs)
	if err != nil {
		switch {
		case errors.Is(err, ErrBadRequest):
			h.m.Requested(telemetry.OutcomeBadRequest)
			writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
		case errors.Is(err, ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			h.m.Requested(telemetry.OutcomeFailed)
			h.log.Warn("sequence: allocation unavailable", "keys", len(reqs), "err", err)
			writeError(w, http.StatusServiceUnavailable, CodeUnavailable, err.Error())
		default:
			h.m.Requested(telemetry.OutcomeFailed)
			h.log.Error("sequence: allocation failed", "keys", len(reqs), "err", err)
			writeError(w, http.StatusInternalServerError, CodeInternal, "internal error")
		}
		return
	}
	h.m.Requested(telemetry.OutcomeOK)
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
