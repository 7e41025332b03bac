// Package msgapi is the contract between gateways and the message service:
// the upstream and push records they exchange over the bus, and the
// request/response calls a gateway makes for sync, pull and read (in-process
// in dev mode, HTTP in distributed mode).
package messageapi

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/imkube/imkube/api/protocol"
)

// Errors returned by Backend calls.
var (
	ErrForbidden   = errors.New("forbidden")
	ErrBadRequest  = errors.New("bad request")
	ErrUnavailable = errors.New("temporarily unavailable")
	// ErrUnauthenticated: the user has no account (a validly signed token
	// of a user that does not exist).
	ErrUnauthenticated = errors.New("no such account")
	// ErrBanned: the user is banned (admin API).
	ErrBanned = errors.New("banned")
)

// Upstream is a client send, published by a gateway, keyed by conversation.
type Upstream struct {
	Gateway string          `json:"gw"`
	User    string          `json:"user"`
	Device  string          `json:"device"`
	CMID    string          `json:"cmid"`
	Conv    string          `json:"conv"`
	To      protocol.Target `json:"to"`
	Kind    string          `json:"kind"`
	Body    string          `json:"body"`
	// TS is when the gateway received the frame (unix ms).
	TS int64 `json:"ts"`
	UpstreamLifecycle
}

// Upstream operations besides send (Op ""): they travel the same ordered
// stream, keyed by conversation, so a recall or edit has its place among
// the conversation's messages. CMID is then made up by the gateway, unique
// per request, and deduplicates redeliveries like a send's.
const (
	OpRecall = "recall"
	OpEdit   = "edit"
	OpDelete = "delete"
	// OpPresence is an online/offline change of User (Kind PresenceOnline
	// or PresenceOffline, TS when), published by a gateway for the event
	// hook; Conv is "p:<user>", so changes of one user stay in order.
	OpPresence = "presence"
)

// Kinds of an OpPresence record.
const (
	PresenceOnline  = "user.online"
	PresenceOffline = "user.offline"
)

// UpstreamLifecycle are the Upstream fields of issue 16.
type UpstreamLifecycle struct {
	// Op is "" (send), OpRecall, OpEdit or OpDelete.
	Op string `json:"op,omitempty"`
	// ID is the request id of recall/edit/delete, answered by ok{id}.
	ID string `json:"id,omitempty"`
	// Ref is the seq a recall or edit changes.
	Ref int64 `json:"ref,omitempty"`
	// Seqs are the messages a delete hides.
	Seqs []int64 `json:"seqs,omitempty"`
	// ReplyTo and Mentions of a send.
	ReplyTo  int64    `json:"replyTo,omitempty"`
	Mentions []string `json:"mentions,omitempty"`
}

// Push kinds.
const (
	PushFrame = ""     // write Frame to the targets' connections
	PushKick  = "kick" // write Frame, then close the targets' connections
	PushAck   = "ack"  // an ack frame; TS is when the gateway received the send
	// PushPresence is a presence frame for the connections that watch the
	// user it names (no targets: every gateway gets it).
	PushPresence = "presence"
	// PushBroadcast is a frame for every authenticated connection of the
	// gateway (no targets; admin broadcasts).
	PushBroadcast = "broadcast"
	// PushBatch carries several pushes for this gateway in Batch, to be
	// handled in order (the message service's micro-batched lanes publish
	// one per gateway per batch).
	PushBatch = "batch"
)

// Push is one record on a gateway's push stream: one frame, encoded once by
// the message service, for every target connection on that gateway.
type Push struct {
	Kind    string          `json:"kind,omitempty"`
	Frame   json.RawMessage `json:"frame"`
	Targets []Target        `json:"targets"`
	// TS is the message timestamp (unix ms) for delivery-latency metrics;
	// for acks the time the gateway received the send.
	TS int64 `json:"ts,omitempty"`
	// Batch holds the pushes of a PushBatch (each without Batch).
	Batch []Push `json:"batch,omitempty"`
}

// Target selects connections of one user on the receiving gateway.
type Target struct {
	User string `json:"u"`
	// Device, when set, selects only that device.
	Device string `json:"d,omitempty"`
	// ExcludeDevice skips that device (the sender's own).
	ExcludeDevice string `json:"x,omitempty"`
	// InboxSeq, when > 0, is spliced into the frame as "inboxSeq".
	InboxSeq int64 `json:"i,omitempty"`
	// Muted: the user muted the conversation; "muted":true is spliced in.
	Muted bool `json:"m,omitempty"`
}

// FrameForTarget is FrameFor with the target's muted flag spliced in too.
func FrameForTarget(frame []byte, t Target) []byte {
	out := FrameFor(frame, t.InboxSeq)
	if !t.Muted || len(out) < 2 || out[len(out)-1] != '}' {
		return out
	}
	if &out[0] == &frame[0] { // not copied yet: never modify frame
		out = append(make([]byte, 0, len(frame)+16), frame...)
	}
	out = append(out[:len(out)-1], `,"muted":true}`...)
	return out
}

// FrameFor returns frame with "inboxSeq":n added when n > 0. frame must be a
// JSON object without an inboxSeq field; it is not modified.
func FrameFor(frame []byte, n int64) []byte {
	if n <= 0 || len(frame) < 2 || frame[len(frame)-1] != '}' {
		return frame
	}
	out := make([]byte, 0, len(frame)+32)
	out = append(out, frame[:len(frame)-1]...)
	if len(frame) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"inboxSeq":`...)
	out = strconv.AppendInt(out, n, 10)
	return append(out, '}')
}

// Backend answers a gateway's per-user requests. Implemented by the message
// service (in-process) and by Client (HTTP).
type Backend interface {
	// State returns the user's latest inbox seq and the read-diffusion
	// conversations with their last seq.
	State(ctx context.Context, user string) (int64, []protocol.ConvState, error)
	// Sync returns inbox entries after cursor after: at most limit items
	// and, encoded as a sync_result frame, at most maxBytes (0: the
	// service's default), except that one item is always returned when
	// there is one; More says the page was cut.
	Sync(ctx context.Context, user string, after int64, limit, maxBytes int) (*protocol.SyncResult, error)
	// Pull returns messages of conv from..to (to <= 0: open) if user may
	// read it, bounded like Sync.
	Pull(ctx context.Context, user, conv string, from, to int64, limit, maxBytes int) (*protocol.PullResult, error)
	// Read moves the user's read cursor; device (the one that read) is left
	// out of the read_sync sent to the user's other devices.
	Read(ctx context.Context, user, device, conv string, seq int64) error
	// PullBefore returns the newest messages of conv before seq before, in
	// ascending order, bounded like Pull; More says older ones exist.
	PullBefore(ctx context.Context, user, conv string, before int64, limit, maxBytes int) (*protocol.PullResult, error)
	Signals
}

// Signals are the receipts, typing and presence calls of a gateway.
type Signals interface {
	// Delivered tells the other party of a one-to-one chat that user's
	// device received conv up to seq (a delivered receipt); in groups it
	// is accepted and does nothing.
	Delivered(ctx context.Context, user, conv string, seq int64) error
	// Typing tells the other online members of conv that user is typing
	// (at most one per user and conversation per typing interval; excess
	// is dropped without an error).
	Typing(ctx context.Context, user, conv string) error
	// Presence returns the online state of users, each of whom must share
	// a conversation with user (else ErrForbidden).
	Presence(ctx context.Context, user string, users []string) ([]protocol.Presence, error)
}
