package messageapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/rest"
)

// InternalVerifier checks the token services present to each other.
type InternalVerifier interface {
	VerifyInternal(tok string) bool
}

// noAccount tells ErrUnauthenticated from a refused internal token (both 401).
const noAccount = "this token's account does not exist: log in again"

// bannedMsg is the message of CodeBanned.
const bannedMsg = "this account is banned"

// HTTPError maps a Backend error to a REST error.
func HTTPError(err error) *rest.Error {
	var he *rest.Error
	switch {
	case errors.As(err, &he):
		return he
	case errors.Is(err, ErrUnauthenticated):
		return rest.Errorf(http.StatusUnauthorized, protocol.CodeUnauthenticated, "%s", noAccount)
	case errors.Is(err, ErrBanned):
		return rest.Errorf(http.StatusForbidden, protocol.CodeBanned, "%s", bannedMsg)
	case errors.Is(err, ErrForbidden):
		return rest.Errorf(http.StatusForbidden, protocol.CodeForbidden, "you are not a member of this conversation")
	case errors.Is(err, ErrBadRequest):
		return rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "%s", strings.TrimPrefix(err.Error(), ErrBadRequest.Error()+": "))
	case errors.Is(err, ErrUnavailable):
		return rest.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "storage is temporarily unavailable; retry")
	}
	return rest.Errorf(http.StatusInternalServerError, protocol.CodeInternal, "internal error")
}

type stateReq struct {
	User string `json:"user"`
}
type stateResp struct {
	InboxSeq int64                `json:"inboxSeq"`
	Convs    []protocol.ConvState `json:"convs"`
}
type syncReq struct {
	User     string `json:"user"`
	After    int64  `json:"after"`
	Limit    int    `json:"limit"`
	MaxBytes int    `json:"maxBytes,omitempty"`
}
type pullReq struct {
	User  string `json:"user"`
	Conv  string `json:"conv"`
	From  int64  `json:"from"`
	To    int64  `json:"to"`
	Limit int    `json:"limit"`
	// MaxBytes bounds the encoded page (0: the service's default).
	MaxBytes int `json:"maxBytes,omitempty"`
	// Before is PullBefore's bound.
	Before int64 `json:"before,omitempty"`
}
type readReq struct {
	User   string `json:"user"`
	Device string `json:"device,omitempty"`
	Conv   string `json:"conv"`
	Seq    int64  `json:"seq"`
}

// ServeInternal registers the internal endpoints gateways call in
// distributed mode. They trust the user id in the body, so they require the
// internal token.
func ServeInternal(mux *http.ServeMux, v InternalVerifier, b Backend) {
	handle := func(path string, fn func(r *http.Request) (any, error)) {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if v == nil || !v.VerifyInternal(tok) {
				rest.WriteError(w, rest.Errorf(http.StatusUnauthorized, protocol.CodeUnauthenticated, "internal endpoint"))
				return
			}
			out, err := fn(r)
			if err != nil {
				rest.WriteError(w, HTTPError(err))
				return
			}
			rest.WriteJSON(w, http.StatusOK, out)
		})
	}
	handle("/internal/v1/state", func(r *http.Request) (any, error) {
		var q stateReq
		if err := rest.DecodeJSON(r, &q); err != nil {
			return nil, err
		}
		n, convs, err := b.State(r.Context(), q.User)
		return stateResp{InboxSeq: n, Convs: convs}, err
	})
	handle("/internal/v1/sync", func(r *http.Request) (any, error) {
		var q syncReq
		if err := rest.DecodeJSON(r, &q); err != nil {
			return nil, err
		}
		return b.Sync(r.Context(), q.User, q.After, q.Limit, q.MaxBytes)
	})
	handle("/internal/v1/pull", func(r *http.Request) (any, error) {
		var q pullReq
		if err := rest.DecodeJSON(r, &q); err != nil {
			return nil, err
		}
		return b.Pull(r.Context(), q.User, q.Conv, q.From, q.To, q.Limit, q.MaxBytes)
	})
	handle("/internal/v1/pull_before", func(r *http.Request) (any, error) {
		var q pullReq
		if err := rest.DecodeJSON(r, &q); err != nil {
			return nil, err
		}
		return b.PullBefore(r.Context(), q.User, q.Conv, q.Before, q.Limit, q.MaxBytes)
	})
	handle("/internal/v1/read", func(r *http.Request) (any, error) {
		var q readReq
		if err := rest.DecodeJSON(r, &q); err != nil {
			return nil, err
		}
		return struct{}{}, b.Read(r.Context(), q.User, q.Device, q.Conv, q.Seq)
	})
	serveSignals(handle, b)
}

// Client calls a message service's internal API over HTTP.
type Client struct {
	base  string
	token string
	http  *http.Client
}

var _ Backend = (*Client)(nil)

// NewClient returns a Backend for the message service at baseURL; rt (nil:
// the default) carries the requests, e.g. wrapped in a circuit breaker.
func NewClient(baseURL, internalToken string, rt http.RoundTripper) *Client {
	return &Client{base: strings.TrimSuffix(baseURL, "/"), token: internalToken, http: &http.Client{Timeout: 10 * time.Second, Transport: rt}}
}

func (c *Client) call(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: message service: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%w: message service: %v", ErrUnavailable, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return json.Unmarshal(b, out)
	case resp.StatusCode == http.StatusForbidden:
		var e rest.Error
		if json.Unmarshal(b, &e) == nil && e.Code == protocol.CodeBanned {
			return ErrBanned
		}
		return ErrForbidden
	case resp.StatusCode == http.StatusUnauthorized:
		var e rest.Error
		if json.Unmarshal(b, &e) == nil && e.Message == noAccount {
			return ErrUnauthenticated
		}
		return fmt.Errorf("message service refused the internal token: %s", b)
	case resp.StatusCode == http.StatusBadRequest:
		var e rest.Error
		_ = json.Unmarshal(b, &e)
		return fmt.Errorf("%w: %s", ErrBadRequest, e.Message)
	case resp.StatusCode >= 500:
		return fmt.Errorf("%w: message service answered %d", ErrUnavailable, resp.StatusCode)
	}
	return fmt.Errorf("message service answered %d: %s", resp.StatusCode, b)
}

// State implements Backend.
func (c *Client) State(ctx context.Context, user string) (int64, []protocol.ConvState, error) {
	var r stateResp
	err := c.call(ctx, "/internal/v1/state", stateReq{User: user}, &r)
	return r.InboxSeq, r.Convs, err
}

// Sync implements Backend.
func (c *Client) Sync(ctx context.Context, user string, after int64, limit, maxBytes int) (*protocol.SyncResult, error) {
	var r protocol.SyncResult
	if err := c.call(ctx, "/internal/v1/sync", syncReq{User: user, After: after, Limit: limit, MaxBytes: maxBytes}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Pull implements Backend.
func (c *Client) Pull(ctx context.Context, user, conv string, from, to int64, limit, maxBytes int) (*protocol.PullResult, error) {
	var r protocol.PullResult
	if err := c.call(ctx, "/internal/v1/pull", pullReq{User: user, Conv: conv, From: from, To: to, Limit: limit, MaxBytes: maxBytes}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Read implements Backend.
func (c *Client) Read(ctx context.Context, user, device, conv string, seq int64) error {
	var r struct{}
	return c.call(ctx, "/internal/v1/read", readReq{User: user, Device: device, Conv: conv, Seq: seq}, &r)
}

// PullBefore implements Backend.
func (c *Client) PullBefore(ctx context.Context, user, conv string, before int64, limit, maxBytes int) (*protocol.PullResult, error) {
	var r protocol.PullResult
	if err := c.call(ctx, "/internal/v1/pull_before", pullReq{User: user, Conv: conv, Before: before, Limit: limit, MaxBytes: maxBytes}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
