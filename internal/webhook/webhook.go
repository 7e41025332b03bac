// Package webhook calls the integration hooks of a cluster (IMCluster
// spec.webhooks): the synchronous before-send hook, the after-send and event
// hooks delivered at least once and in order per conversation from a
// persistent outbox, and offline pushes for recipients with no online
// device. Every request is signed: header X-Imkube-Signature is
// "sha256=" + lowercase hex of HMAC-SHA256(secret, request body).
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/store"
)

// Headers of every hook request.
const (
	HeaderSignature = "X-Imkube-Signature"
	HeaderEvent     = "X-Imkube-Event"
	HeaderDelivery  = "X-Imkube-Delivery"
	HeaderTimestamp = "X-Imkube-Timestamp"
)

// Sign returns the X-Imkube-Signature value of body: "sha256=<hex>".
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether sig is the signature of body (constant time).
func Verify(secret, body []byte, sig string) bool {
	return hmac.Equal([]byte(sig), []byte(Sign(secret, body)))
}

// maxReply bounds a hook's answer.
const maxReply = 64 << 10

// client posts signed JSON.
type client struct {
	http   *http.Client
	secret []byte
}

// errStatus: the hook answered with a status other than 2xx.
type errStatus int

func (e errStatus) Error() string { return fmt.Sprintf("hook answered HTTP %d", int(e)) }

func (c *client) post(ctx context.Context, url, event, delivery string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "imkube-webhook/1")
	req.Header.Set(HeaderEvent, event)
	req.Header.Set(HeaderTimestamp, fmt.Sprint(time.Now().UnixMilli()))
	if delivery != "" {
		req.Header.Set(HeaderDelivery, delivery)
	}
	req.Header.Set(HeaderSignature, Sign(c.secret, body))
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, errStatus(resp.StatusCode)
	}
	return reply, nil
}

// SendRequest is the body of the before-send hook (event "message.before_send").
type SendRequest struct {
	Event    string   `json:"event"`
	Sender   string   `json:"sender"`
	Device   string   `json:"device,omitempty"`
	Conv     string   `json:"conv"`
	To       Target   `json:"to"`
	CMID     string   `json:"cmid"`
	Kind     string   `json:"kind"`
	Body     string   `json:"body"`
	Mentions []string `json:"mentions,omitempty"`
	ReplyTo  int64    `json:"replyTo,omitempty"`
	TS       int64    `json:"ts"`
}

// Target is a send's recipient: a user or a group.
type Target struct {
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
}

// Actions of a before-send verdict.
const (
	ActionAllow   = "allow"
	ActionReject  = "reject"
	ActionReplace = "replace"
)

// Verdict is the before-send hook's answer:
// {"action":"allow"} | {"action":"reject","reason":"..."} |
// {"action":"replace","body":"..."}.
type Verdict struct {
	Action string  `json:"action"`
	Reason string  `json:"reason,omitempty"`
	Body   *string `json:"body,omitempty"`
}

// ErrNoHook: the before-send hook is not configured.
var ErrNoHook = errors.New("webhook: no before-send hook configured")

// Deps are the hooks' collaborators.
type Deps struct {
	// Config returns the current webhook settings (hot-reloaded).
	Config func() config.Webhooks
	// Secret signs every request.
	Secret []byte
	// Transport, if set, replaces http.DefaultTransport's clone (tests).
	Transport http.RoundTripper
}

// Hooks calls the configured hooks.
type Hooks struct {
	cfg func() config.Webhooks
	c   *client
}

// New returns the hooks of deps.
func New(deps Deps) *Hooks {
	rt := deps.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 32
		rt = t
	}
	return &Hooks{cfg: deps.Config, c: &client{http: &http.Client{Transport: rt, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, secret: deps.Secret}}
}

// Config returns the current settings.
func (h *Hooks) Config() config.Webhooks { return h.cfg() }

// BeforeSend asks the before-send hook about req within its timeout.
// ErrNoHook when none is configured; any other error is a failure of the
// hook (timeout, transport, non-2xx status, an answer that is not a verdict)
// for the caller to weigh against failOpen.
func (h *Hooks) BeforeSend(ctx context.Context, req SendRequest) (Verdict, error) {
	cfg := h.cfg()
	if cfg.BeforeSend.URL == "" {
		return Verdict{}, ErrNoHook
	}
	req.Event = "message.before_send"
	body, err := json.Marshal(req)
	if err != nil {
		return Verdict{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.BeforeSendTimeout())
	defer cancel()
	reply, err := h.c.post(ctx, cfg.BeforeSend.URL, req.Event, req.Sender+"/"+req.CMID, body)
	if err != nil {
		return Verdict{}, err
	}
	var v Verdict
	if err := json.Unmarshal(reply, &v); err != nil {
		return Verdict{}, fmt.Errorf("before-send hook answer is not JSON: %w", err)
	}
	switch v.Action {
	case ActionAllow, ActionReject:
	case ActionReplace:
		if v.Body == nil {
			return Verdict{}, errors.New(`before-send hook answered "replace" without a "body"`)
		}
	default:
		return Verdict{}, fmt.Errorf("before-send hook answered unknown action %q", v.Action)
	}
	return v, nil
}

// Event is the body of an event hook request.
type Event struct {
	Event    string   `json:"event"`
	Conv     string   `json:"conv"`
	Seq      int64    `json:"seq"`
	MID      string   `json:"mid"`
	From     string   `json:"from"`
	Kind     string   `json:"kind"`
	Body     string   `json:"body"`
	Mentions []string `json:"mentions,omitempty"`
	ReplyTo  int64    `json:"replyTo,omitempty"`
	Ref      int64    `json:"ref,omitempty"`
	TS       int64    `json:"ts"`
}

// eventKind maps a stored message to its event kind ("" for none).
func eventKind(m store.Message) string {
	switch {
	case strings.HasPrefix(m.Conv, "d:"):
		return "" // delete for me: a private record of one user
	case m.Kind == "recall":
		return config.EventMessageRecalled
	case m.Kind == "edit":
		return config.EventMessageEdited
	case m.Kind == "group_event":
		return config.EventGroup
	}
	return config.EventMessageStored
}

// OutboxHook returns the store hook that writes an event of every stored
// message the events hook wants into the message's transaction.
func OutboxHook(cfg func() config.Webhooks) store.OutboxHook {
	return func(m store.Message) (store.OutboxEntry, bool) {
		kind := eventKind(m)
		if kind == "" || !cfg().WantsEvent(kind) {
			return store.OutboxEntry{}, false
		}
		e := Event{Event: kind, Conv: m.Conv, Seq: m.Seq, MID: m.MID, From: m.Sender, Kind: m.Kind, Body: m.Body,
			ReplyTo: m.ReplyTo, Ref: m.Ref, TS: m.TS}
		if m.Mentions != "" {
			e.Mentions = strings.Split(m.Mentions, ",")
		}
		b, err := json.Marshal(e)
		if err != nil {
			return store.OutboxEntry{}, false
		}
		return store.OutboxEntry{Target: store.OutboxEvents, Key: m.Conv, Kind: kind, Payload: string(b), Created: m.TS}, true
	}
}

// FriendEvent is the body of a friend.event hook request: one per user the
// change concerns, with the data their devices get.
type FriendEvent struct {
	Event string          `json:"event"`
	Kind  string          `json:"kind"` // friend_request, friend_added, friend_removed
	User  string          `json:"user"`
	Data  json.RawMessage `json:"data"`
	TS    int64           `json:"ts"`
}

// SocialOutboxHook returns the store hook that writes a friend.event of
// every social event delivered into an inbox, when the events hook wants it.
func SocialOutboxHook(cfg func() config.Webhooks) store.SocialOutboxHook {
	return func(e store.SocialEvent) (store.OutboxEntry, bool) {
		if !strings.HasPrefix(e.Kind, "friend_") || !cfg().WantsEvent(config.EventFriend) {
			return store.OutboxEntry{}, false
		}
		data := json.RawMessage(e.Body)
		if !json.Valid(data) {
			data = json.RawMessage("null")
		}
		b, err := json.Marshal(FriendEvent{Event: config.EventFriend, Kind: e.Kind, User: e.User, Data: data, TS: e.CreatedAt})
		if err != nil {
			return store.OutboxEntry{}, false
		}
		return store.OutboxEntry{Target: store.OutboxEvents, Key: "user:" + e.User, Kind: config.EventFriend, Payload: string(b), Created: e.CreatedAt}, true
	}
}
