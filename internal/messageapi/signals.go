package messageapi

import (
	"context"
	"net/http"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/rest"
)

type signalReq struct {
	User  string   `json:"user"`
	Conv  string   `json:"conv,omitempty"`
	Seq   int64    `json:"seq,omitempty"`
	Users []string `json:"users,omitempty"`
}

type presenceResp struct {
	Items []protocol.Presence `json:"items"`
}

// serveSignals registers the internal endpoints of Signals.
func serveSignals(handle func(path string, fn func(r *http.Request) (any, error)), b Backend) {
	handle("/internal/v1/delivered", func(r *http.Request) (any, error) {
		var q signalReq
		if err := rest.DecodeJSON(r, &q); err != nil {
			return nil, err
		}
		return struct{}{}, b.Delivered(r.Context(), q.User, q.Conv, q.Seq)
	})
	handle("/internal/v1/typing", func(r *http.Request) (any, error) {
		var q signalReq
		if err := rest.DecodeJSON(r, &q); err != nil {
			return nil, err
		}
		return struct{}{}, b.Typing(r.Context(), q.User, q.Conv)
	})
	handle("/internal/v1/presence", func(r *http.Request) (any, error) {
		var q signalReq
		if err := rest.DecodeJSON(r, &q); err != nil {
			return nil, err
		}
		items, err := b.Presence(r.Context(), q.User, q.Users)
		return presenceResp{Items: items}, err
	})
}

// Delivered implements Backend.
func (c *Client) Delivered(ctx context.Context, user, conv string, seq int64) error {
	var r struct{}
	return c.call(ctx, "/internal/v1/delivered", signalReq{User: user, Conv: conv, Seq: seq}, &r)
}

// Typing implements Backend.
func (c *Client) Typing(ctx context.Context, user, conv string) error {
	var r struct{}
	return c.call(ctx, "/internal/v1/typing", signalReq{User: user, Conv: conv}, &r)
}

// Presence implements Backend.
func (c *Client) Presence(ctx context.Context, user string, users []string) ([]protocol.Presence, error) {
	var r presenceResp
	if err := c.call(ctx, "/internal/v1/presence", signalReq{User: user, Users: users}, &r); err != nil {
		return nil, err
	}
	return r.Items, nil
}
