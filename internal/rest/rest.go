// Package rest holds the small HTTP helpers shared by the services: JSON
// bodies, coded errors ({code, message}) and bearer-token authentication.
package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/auth"
)

// Error is a REST error body.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds a coded error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError writes err as {code, message}; errors that are not *Error are
// internal and their text is not shown to the client.
func WriteError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Code: protocol.CodeInternal, Message: "internal error"}
	}
	if e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	WriteJSON(w, e.Status, e)
}

// MaxBody is the largest JSON request body accepted.
const MaxBody = 1 << 20

// CodeUnsupportedMediaType answers a JSON endpoint called with another
// Content-Type (415).
const CodeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE"

// IsJSON reports whether the request declares a JSON body:
// "Content-Type: application/json", optionally with charset=utf-8. HTML
// forms cannot send that type without a CORS preflight, so requiring it
// keeps other sites from posting to JSON endpoints from a visitor's browser.
func IsJSON(r *http.Request) bool {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// DecodeJSON reads a JSON body into v, rejecting another Content-Type
// (415), unknown fields, trailing data and oversized bodies with a
// 400/413 *Error.
func DecodeJSON(r *http.Request, v any) error {
	if !IsJSON(r) {
		return Errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "send the body as JSON with Content-Type: application/json")
	}
	body := http.MaxBytesReader(nil, r.Body, MaxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return Errorf(http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, "request body is over %d bytes", MaxBody)
		}
		return Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "invalid JSON body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "invalid JSON body: trailing data")
	}
	return nil
}

type ctxKey struct{}

// UserID returns the authenticated user of a request wrapped by Authenticated.
func UserID(ctx context.Context) string {
	s, _ := ctx.Value(ctxKey{}).(string)
	return s
}

// WithUserID returns ctx carrying an authenticated user id.
func WithUserID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// Verifier checks bearer tokens.
type Verifier interface {
	Verify(token string) (auth.Claims, error)
}

// Authenticated requires a valid "Authorization: Bearer <jwt>" header.
func Authenticated(v Verifier, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || tok == "" {
			WriteError(w, Errorf(http.StatusUnauthorized, protocol.CodeUnauthenticated, "missing bearer token: log in with POST /api/v1/sessions"))
			return
		}
		c, err := v.Verify(tok)
		if err != nil {
			WriteError(w, Errorf(http.StatusUnauthorized, protocol.CodeUnauthenticated, "invalid or expired token: log in again"))
			return
		}
		next.ServeHTTP(w, r.WithContext(WithUserID(r.Context(), c.UserID)))
	})
}

// AccountChecker says whether a user id belongs to an existing account
// (auth.Accounts: a bounded cache in front of the store).
type AccountChecker interface {
	Exists(ctx context.Context, id string) (bool, error)
}

// RequireAccount answers 401 to requests whose bearer token is validly
// signed for a user that has no account (never had one, or lost it), and
// 503 when that cannot be checked. Requests without a valid token go on to
// next, whose Authenticated answers them. It wraps every authenticated REST
// route of a process that holds the accounts.
func RequireAccount(v Verifier, accounts AccountChecker, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			next.ServeHTTP(w, r)
			return
		}
		c, err := v.Verify(tok)
		if err != nil {
			next.ServeHTTP(w, r)
			return
		}
		exists, err := accounts.Exists(r.Context(), c.UserID)
		switch {
		case err != nil:
			WriteError(w, Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "cannot check your account now; retry"))
		case !exists:
			WriteError(w, Errorf(http.StatusUnauthorized, protocol.CodeUnauthenticated, "this token's account does not exist: log in again"))
		default:
			next.ServeHTTP(w, r)
		}
	})
}
