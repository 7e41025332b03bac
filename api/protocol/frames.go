// Package protocol defines imkube's client wire protocol v1: JSON text frames
// over WebSocket, each with a type field "t". PROTOCOL.md in this folder is the
// human-readable specification; the names here are contracts.
package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Version is the protocol version reported in auth_ok.
const Version = 1

// Frame types.
const (
	TypeAuth       = "auth"
	TypeSend       = "send"
	TypeSync       = "sync"
	TypePull       = "pull"
	TypeDelivered  = "delivered"
	TypeRead       = "read"
	TypePing       = "ping"
	TypeAuthOK     = "auth_ok"
	TypeAck        = "ack"
	TypeMsg        = "msg"
	TypeNotify     = "notify"
	TypeSyncResult = "sync_result"
	TypePullResult = "pull_result"
	TypeReceipt    = "receipt"
	TypeRecall     = "recall"
	TypePong       = "pong"
	TypeKicked     = "kicked"
	// TypeBroadcast is an operator's announcement to everyone online (not
	// stored: devices offline at the time never see it).
	TypeBroadcast = "broadcast"
	TypeReconnect = "reconnect"
	TypeReauth    = "reauth"
	TypeError     = "error"
)

// Message lifecycle frames (issue 16): client -> server requests answered by
// ok{id} or error{id}. recall is also the kind of the record it produces.
const (
	TypeEdit   = "edit"
	TypeDelete = "delete"
	TypeOK     = "ok"
)

// Kinds of the records the server writes into a conversation; clients may
// not send them.
const (
	KindRecall     = "recall"
	KindEdit       = "edit"
	KindDelete     = "delete"
	KindGroupEvent = "group_event"
	// KindSystem is a message an operator sent through the admin API
	// (from SystemSender).
	KindSystem = "system"
)

// SystemSender is the from of system messages and of admin recalls (user
// ids are numbers, so it is nobody's id).
const SystemSender = "system"

// SystemKind reports whether kind is written only by the server.
func SystemKind(kind string) bool {
	switch kind {
	case KindRecall, KindEdit, KindDelete, KindGroupEvent, KindSystem:
		return true
	}
	return false
}

// Lifecycle limits.
const (
	// MaxDeleteSeqs bounds the seqs of one delete frame.
	MaxDeleteSeqs = 100
	// MaxMentions bounds the mentions of one send.
	MaxMentions = 50
	// MentionAll in mentions addresses every member (group owner/admin only).
	MentionAll = "all"
	// PreviewRunes is the length of a conversation list's last-message preview.
	PreviewRunes = 120
)

// Error codes carried by error frames and REST error bodies.
const (
	CodeBadFrame        = "BAD_FRAME"
	CodeUnauthenticated = "UNAUTHENTICATED"
	CodeForbidden       = "FORBIDDEN"
	CodeNotFound        = "NOT_FOUND"
	CodeTooLarge        = "TOO_LARGE"
	CodeRateLimited     = "RATE_LIMITED"
	CodeUnavailable     = "UNAVAILABLE"
	CodeInternal        = "INTERNAL"
	// CodeBanned: the account is banned (login, refresh and WebSocket auth
	// are refused; connections were closed).
	CodeBanned = "BANNED"
)

// Limits of the protocol that do not depend on configuration.
const (
	MaxCMIDLen   = 64
	MaxKindLen   = 32
	MaxDeviceLen = 64
	MaxIDLen     = 64
	// MaxConvLen bounds a conversation id (the storage column is 80 bytes).
	MaxConvLen   = 80
	MaxLimit     = 500
	DefaultLimit = 100
)

// Inbound is the union of all client->server frames. Decode reads a frame
// into it and checks the fields its type requires.
type Inbound struct {
	T      string  `json:"t"`
	ID     string  `json:"id,omitempty"`
	Token  string  `json:"token,omitempty"`
	Device string  `json:"device,omitempty"`
	CMID   string  `json:"cmid,omitempty"`
	To     *Target `json:"to,omitempty"`
	Kind   string  `json:"kind,omitempty"`
	Body   *string `json:"body,omitempty"`
	After  *int64  `json:"after,omitempty"`
	Limit  int     `json:"limit,omitempty"`
	Conv   string  `json:"conv,omitempty"`
	From   *int64  `json:"from,omitempty"`
	ToSeq  *int64  `json:"-"`
	Seq    *int64  `json:"seq,omitempty"`
	// InboxSeq is used by delivered{inboxSeq}.
	InboxSeq *int64 `json:"inboxSeq,omitempty"`
	// Users is used by presence_sub and presence_unsub.
	Users []string `json:"users,omitempty"`
	Lifecycle
}

// Lifecycle are the inbound fields of recall, edit, delete, the reply and
// mentions of send, and pull's backwards paging.
type Lifecycle struct {
	// Seqs are the messages of a delete.
	Seqs []int64 `json:"seqs,omitempty"`
	// ReplyTo is the seq (same conversation) a send replies to.
	ReplyTo *int64 `json:"replyTo,omitempty"`
	// Mentions are user ids, or ["all"], a send mentions.
	Mentions []string `json:"mentions,omitempty"`
	// Before pages a pull backwards: messages with seq < Before.
	Before *int64 `json:"before,omitempty"`
}

// Target is the recipient of a send: exactly one of User and Group.
type Target struct {
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
}

// FrameError is a decoding or validation failure, answered with an error frame.
type FrameError struct {
	Code    string
	Message string
}

func (e *FrameError) Error() string { return e.Code + ": " + e.Message }

func badFrame(format string, args ...any) *FrameError {
	return &FrameError{Code: CodeBadFrame, Message: fmt.Sprintf(format, args...)}
}

// ErrTooDeep is returned for JSON nested deeper than MaxDepth.
var ErrTooDeep = errors.New("json nested too deeply")

// MaxDepth bounds the nesting of a frame; legitimate frames need 2.
const MaxDepth = 8

// Decode parses one client frame and validates the fields its type needs.
// maxBody is the limit for send bodies in bytes. The returned *FrameError
// carries the code to answer with; the connection stays usable.
func Decode(data []byte, maxBody int) (*Inbound, *FrameError) {
	if !utf8.Valid(data) {
		return nil, badFrame("frame is not valid UTF-8")
	}
	if err := checkDepth(data, MaxDepth); err != nil {
		return nil, badFrame("frame is not valid JSON: %v", err)
	}
	var raw struct {
		Inbound
		To   json.RawMessage `json:"to,omitempty"`
		Body json.RawMessage `json:"body,omitempty"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, badFrame("frame is not valid JSON: %v", err)
	}
	in := raw.Inbound
	if len(raw.Body) > 0 && string(raw.Body) != "null" {
		body, err := decodeBody(raw.Body)
		if err != nil {
			return nil, err
		}
		in.Body = &body
	}
	if len(raw.To) > 0 {
		// "to" is a target object in send and a seq number in pull.
		if raw.T == TypePull {
			var n int64
			if err := json.Unmarshal(raw.To, &n); err != nil {
				return nil, badFrame("pull: to must be a sequence number")
			}
			in.ToSeq = &n
		} else {
			var tg Target
			if err := json.Unmarshal(raw.To, &tg); err != nil {
				return nil, badFrame("to must be an object {user} or {group}")
			}
			in.To = &tg
		}
	}
	if err := in.validate(maxBody); err != nil {
		return &in, err
	}
	return &in, nil
}

// decodeBody reads a send body: a string, or a JSON object (media
// messages: {objectKey, name, size, contentType, ...}), kept as its compact
// JSON text. Bodies are strings everywhere else (msg, sync, pull).
func decodeBody(raw json.RawMessage) (string, *FrameError) {
	if raw[0] == '{' {
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return "", badFrame("send: body is not valid JSON: %v", err)
		}
		return b.String(), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", badFrame("send: body must be a string or a JSON object")
	}
	return s, nil
}

func (in *Inbound) validate(maxBody int) *FrameError {
	switch in.T {
	case "":
		return badFrame("missing field t (frame type)")
	case TypeAuth:
		if in.Token == "" {
			return &FrameError{Code: CodeUnauthenticated, Message: "auth: missing token"}
		}
		if in.Device == "" || len(in.Device) > MaxDeviceLen {
			return badFrame("auth: device must be 1-%d characters", MaxDeviceLen)
		}
	case TypeSend:
		if in.CMID == "" || len(in.CMID) > MaxCMIDLen {
			return badFrame("send: cmid must be 1-%d characters", MaxCMIDLen)
		}
		if in.To == nil || (in.To.User == "") == (in.To.Group == "") {
			return badFrame("send: to must name exactly one of user or group")
		}
		if !ValidID(in.To.User + in.To.Group) {
			return badFrame("send: invalid recipient id (1-%d characters of letters, digits, '_', '.', '-')", MaxIDLen)
		}
		if in.Kind == "" || len(in.Kind) > MaxKindLen {
			return badFrame("send: kind must be 1-%d characters", MaxKindLen)
		}
		if in.Body == nil {
			return badFrame("send: missing body")
		}
		if len(*in.Body) > maxBody {
			return &FrameError{Code: CodeTooLarge, Message: fmt.Sprintf("send: body is %d bytes, the limit is %d", len(*in.Body), maxBody)}
		}
		if err := in.validateSendExtras(); err != nil {
			return err
		}
	case TypeRecall, TypeEdit, TypeDelete:
		if err := in.validateLifecycle(maxBody); err != nil {
			return err
		}
	case TypeSync:
		if in.After == nil || *in.After < 0 {
			return badFrame("sync: after must be a number >= 0")
		}
		if err := in.checkLimit(); err != nil {
			return err
		}
	case TypePull:
		if in.Conv == "" {
			return badFrame("pull: missing conv")
		}
		if !ValidConv(in.Conv) {
			return badConv(in.T)
		}
		if in.Before != nil {
			if in.From != nil || in.ToSeq != nil || *in.Before < 1 {
				return badFrame("pull: give either from (and to) or before >= 1")
			}
			return in.checkLimit()
		}
		if in.From == nil || *in.From < 0 {
			return badFrame("pull: from must be a number >= 0")
		}
		if in.ToSeq != nil && *in.ToSeq < *in.From {
			return badFrame("pull: to must be >= from")
		}
		if err := in.checkLimit(); err != nil {
			return err
		}
	case TypeRead:
		if in.Conv == "" || in.Seq == nil || *in.Seq < 0 {
			return badFrame("read: conv and seq >= 0 are required")
		}
		if !ValidConv(in.Conv) {
			return badConv(in.T)
		}
	case TypeDelivered:
		if in.InboxSeq == nil && (in.Conv == "" || in.Seq == nil) {
			return badFrame("delivered: inboxSeq or conv+seq required")
		}
		if in.Conv != "" && !ValidConv(in.Conv) {
			return badConv(in.T)
		}
		if in.Seq != nil && *in.Seq < 0 {
			return badFrame("delivered: seq must be >= 0")
		}
	case TypePing:
	case TypeTyping, TypePresenceSub, TypePresenceUnsub:
		return in.validateSignal()
	default:
		return badFrame("unknown frame type %q", in.T)
	}
	return nil
}

func badConv(typ string) *FrameError {
	return badFrame("%s: conv must be u:<userId>:<userId> (the two ids sorted) or g:<groupId>, at most %d bytes", typ, MaxConvLen)
}

func (in *Inbound) checkLimit() *FrameError {
	if in.Limit < 0 || in.Limit > MaxLimit {
		return badFrame("%s: limit must be 1-%d", in.T, MaxLimit)
	}
	if in.Limit == 0 {
		in.Limit = DefaultLimit
	}
	return nil
}

// checkDepth rejects JSON whose nesting exceeds max without building it.
func checkDepth(data []byte, max int) error {
	depth := 0
	inStr, esc := false, false
	for _, c := range data {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
			if depth > max {
				return ErrTooDeep
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// Msg is a delivered message, in msg frames and in sync/pull results.
type Msg struct {
	T        string `json:"t,omitempty"`
	MID      string `json:"mid"`
	Conv     string `json:"conv"`
	Seq      int64  `json:"seq"`
	From     string `json:"from"`
	Kind     string `json:"kind"`
	Body     string `json:"body"`
	TS       int64  `json:"ts"`
	Recalled bool   `json:"recalled,omitempty"`
	// InboxSeq is the recipient's inbox position (write diffusion only).
	InboxSeq int64 `json:"inboxSeq,omitempty"`
	MsgLifecycle
}

// MsgLifecycle are the msg fields of issue 16.
type MsgLifecycle struct {
	// Edited: Body is the latest edit.
	Edited bool `json:"edited,omitempty"`
	// Ref is the seq a recall or edit record applies to.
	Ref int64 `json:"ref,omitempty"`
	// ReplyTo is the seq this message replies to.
	ReplyTo int64 `json:"replyTo,omitempty"`
	// Mentions are the mentioned user ids, or ["all"].
	Mentions []string `json:"mentions,omitempty"`
	// Seqs are the messages a delete record hides (kind "delete", only in
	// the deleting user's own inbox; Seq is 0 then).
	Seqs []int64 `json:"seqs,omitempty"`
	// Muted is set in pushes to a recipient who muted the conversation
	// (spliced in by the gateway per recipient).
	Muted bool `json:"muted,omitempty"`
}

// MarshalJSON writes a read_sync record (an inbox item that is not a
// message, see ReadSync) with only the fields it has.
func (m Msg) MarshalJSON() ([]byte, error) {
	if m.T == TypeReadSync {
		return json.Marshal(ReadSync{T: m.T, Conv: m.Conv, Seq: m.Seq, InboxSeq: m.InboxSeq})
	}
	if m.T == TypeEvent {
		data := json.RawMessage(m.Body)
		if !json.Valid(data) {
			data = json.RawMessage("null")
		}
		return json.Marshal(Event{T: m.T, Kind: m.Kind, Data: data, TS: m.TS, InboxSeq: m.InboxSeq})
	}
	type plain Msg
	return json.Marshal(plain(m))
}

// ConvState is the news of one read-diffusion conversation (in auth_ok).
type ConvState struct {
	Conv    string `json:"conv"`
	LastSeq int64  `json:"lastSeq"`
	// ReadSeq is the user's own read cursor, so a device that was offline
	// while another device read converges (read diffusion has no inbox).
	ReadSeq int64 `json:"readSeq"`
}

// AuthOK answers a successful auth.
type AuthOK struct {
	T        string      `json:"t"`
	User     string      `json:"user"`
	Device   string      `json:"device"`
	InboxSeq int64       `json:"inboxSeq"`
	Protocol int         `json:"protocol"`
	Convs    []ConvState `json:"convs,omitempty"`
}

// Ack confirms a committed send.
type Ack struct {
	T    string `json:"t"`
	CMID string `json:"cmid"`
	MID  string `json:"mid"`
	Conv string `json:"conv"`
	Seq  int64  `json:"seq"`
	TS   int64  `json:"ts"`
	// InboxSeq is the message's place in the sender's own inbox (write
	// diffusion), so the sender's cursor does not see a gap.
	InboxSeq int64 `json:"inboxSeq,omitempty"`
}

// Notify tells a member of a read-diffusion group that conv has news up to Seq.
type Notify struct {
	T    string `json:"t"`
	Conv string `json:"conv"`
	Seq  int64  `json:"seq"`
	// Muted is set (spliced in per recipient, like Msg.Muted) for a member
	// who muted the conversation.
	Muted bool `json:"muted,omitempty"`
}

// SyncResult answers sync.
type SyncResult struct {
	T        string `json:"t"`
	ID       string `json:"id,omitempty"`
	Items    []Msg  `json:"items"`
	InboxSeq int64  `json:"inboxSeq"`
	More     bool   `json:"more"`
}

// PullResult answers pull.
type PullResult struct {
	T     string `json:"t"`
	ID    string `json:"id,omitempty"`
	Conv  string `json:"conv"`
	Items []Msg  `json:"items"`
	More  bool   `json:"more"`
}

// Receipt tells a conversation's members that User has read (or received) up to Seq.
type Receipt struct {
	T    string `json:"t"`
	Conv string `json:"conv"`
	User string `json:"user"`
	Kind string `json:"kind"`
	Seq  int64  `json:"seq"`
}

// OK answers a recall, edit or delete that was applied, and presence_sub and
// presence_unsub.
type OK struct {
	T  string `json:"t"`
	ID string `json:"id"`
}

// TypeEvent is a social event of the user's own inbox (friend requests,
// friends added and removed): pushed and returned by sync like a message.
const TypeEvent = "event"

// Social event kinds.
const (
	EventFriendRequest = "friend_request"
	EventFriendAdded   = "friend_added"
	EventFriendRemoved = "friend_removed"
)

// Event is one social event record of the user's inbox (in a push and as a
// sync_result item); in a Msg it is T TypeEvent with Body the data.
type Event struct {
	T        string          `json:"t"`
	Kind     string          `json:"kind"`
	Data     json.RawMessage `json:"data"`
	TS       int64           `json:"ts"`
	InboxSeq int64           `json:"inboxSeq,omitempty"`
}

// Kicked is sent before the server closes a replaced or removed session.
// Reason: replaced (same device connected again), logged_out,
// password_changed, session_revoked, account_deleted.
type Kicked struct {
	T      string `json:"t"`
	Reason string `json:"reason"`
}

// Broadcast is an operator's announcement to every online connection.
type Broadcast struct {
	T    string `json:"t"`
	ID   string `json:"id"`
	From string `json:"from"` // SystemSender
	Kind string `json:"kind"` // KindSystem
	Body string `json:"body"`
	TS   int64  `json:"ts"`
}

// Reconnect asks the client to reconnect after AfterMs (e.g. gateway drain).
type Reconnect struct {
	T       string `json:"t"`
	AfterMs int64  `json:"afterMs"`
}

// Reauth tells the client that its token is about to expire: refresh it
// (POST /api/v1/sessions/refresh with the current token, which is still
// valid) and reconnect with the new one. The server closes the connection
// right after it.
type Reauth struct {
	T string `json:"t"`
}

// Error is an error frame.
type Error struct {
	T            string `json:"t"`
	ID           string `json:"id,omitempty"`
	CMID         string `json:"cmid,omitempty"`
	Code         string `json:"code"`
	Message      string `json:"message"`
	Retryable    bool   `json:"retryable"`
	RetryAfterMs int64  `json:"retryAfterMs,omitempty"`
}

// Simple is a frame with only a type (pong).
type Simple struct {
	T string `json:"t"`
}

// Retryable reports whether clients should retry a request that failed with code.
func Retryable(code string) bool {
	return code == CodeUnavailable || code == CodeRateLimited || code == CodeInternal
}

// DirectConv returns the conversation id of the one-to-one chat of a and b.
func DirectConv(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "u:" + a + ":" + b
}

// GroupConv returns the conversation id of a group.
func GroupConv(group string) string { return "g:" + group }

// ValidID reports whether id can be a user or group id: 1-MaxIDLen bytes
// of ASCII letters, digits, '_', '.' and '-'.
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// ValidConv reports whether conv is a well-formed conversation id:
// u:<a>:<b> with a <= b, or g:<groupId>, ids as ValidID, at most MaxConvLen
// bytes. It says nothing about whether the conversation exists.
func ValidConv(conv string) bool {
	_, _, _, ok := ParseConv(conv)
	return ok
}

// ParseConv splits a conversation id. For direct conversations it returns the
// two user ids; for groups the group id in a. ok is false unless conv is
// well-formed (see ValidConv).
func ParseConv(conv string) (kind byte, a, b string, ok bool) {
	if len(conv) > MaxConvLen {
		return 0, "", "", false
	}
	switch {
	case strings.HasPrefix(conv, "u:"):
		a, b, found := strings.Cut(conv[2:], ":")
		if !found || !ValidID(a) || !ValidID(b) || a > b {
			return 0, "", "", false
		}
		return 'u', a, b, true
	case strings.HasPrefix(conv, "g:"):
		g := conv[2:]
		if !ValidID(g) {
			return 0, "", "", false
		}
		return 'g', g, "", true
	}
	return 0, "", "", false
}

func (in *Inbound) validateSendExtras() *FrameError {
	if in.ReplyTo != nil && *in.ReplyTo < 1 {
		return badFrame("send: replyTo must be a seq >= 1")
	}
	if len(in.Mentions) > MaxMentions {
		return badFrame("send: at most %d mentions", MaxMentions)
	}
	seen := make(map[string]bool, len(in.Mentions))
	for _, m := range in.Mentions {
		if m != MentionAll && !ValidID(m) {
			return badFrame("send: mentions must be user ids or \"all\"")
		}
		if seen[m] {
			return badFrame("send: user %s is mentioned twice", m)
		}
		seen[m] = true
	}
	if seen[MentionAll] && len(in.Mentions) > 1 {
		return badFrame("send: mentions [\"all\"] stands alone")
	}
	if SystemKind(in.Kind) {
		return badFrame("send: kind %q is written by the server only", in.Kind)
	}
	return nil
}

func (in *Inbound) validateLifecycle(maxBody int) *FrameError {
	if in.ID == "" || len(in.ID) > MaxCMIDLen {
		return badFrame("%s: id must be 1-%d characters", in.T, MaxCMIDLen)
	}
	if !ValidConv(in.Conv) {
		return badConv(in.T)
	}
	switch in.T {
	case TypeRecall, TypeEdit:
		if in.Seq == nil || *in.Seq < 1 {
			return badFrame("%s: seq must be a number >= 1", in.T)
		}
		if in.T == TypeEdit {
			if in.Body == nil {
				return badFrame("edit: missing body")
			}
			if len(*in.Body) > maxBody {
				return &FrameError{Code: CodeTooLarge, Message: fmt.Sprintf("edit: body is %d bytes, the limit is %d", len(*in.Body), maxBody)}
			}
		}
	case TypeDelete:
		if len(in.Seqs) == 0 || len(in.Seqs) > MaxDeleteSeqs {
			return badFrame("delete: seqs must list 1-%d messages", MaxDeleteSeqs)
		}
		seen := make(map[int64]bool, len(in.Seqs))
		for _, n := range in.Seqs {
			if n < 1 || seen[n] {
				return badFrame("delete: seqs must be distinct numbers >= 1")
			}
			seen[n] = true
		}
	}
	return nil
}
