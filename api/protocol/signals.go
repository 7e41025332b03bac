package protocol

import "fmt"

// Signals: delivery and read receipts, read sync across a user's devices,
// typing and presence. Receipts and read cursors converge (read_sync is an
// inbox record); typing and presence are ephemeral and never stored.

// Frame types of the signals.
const (
	TypeReadSync      = "read_sync"
	TypeTyping        = "typing"
	TypePresence      = "presence"
	TypePresenceSub   = "presence_sub"
	TypePresenceUnsub = "presence_unsub"
	// TypeOK (frames.go) also answers presence_sub and presence_unsub.
)

// Receipt kinds.
const (
	ReceiptRead      = "read"
	ReceiptDelivered = "delivered"
)

// MaxPresenceUsers bounds the users of one presence_sub frame and of one
// GET /api/v1/presence.
const MaxPresenceUsers = 200

// validateSignal checks typing, presence_sub and presence_unsub.
func (in *Inbound) validateSignal() *FrameError {
	switch in.T {
	case TypeTyping:
		if in.Conv == "" {
			return badFrame("typing: missing conv")
		}
		if !ValidConv(in.Conv) {
			return badConv(in.T)
		}
	case TypePresenceSub, TypePresenceUnsub:
		if in.T == TypePresenceSub && len(in.Users) == 0 {
			return badFrame("presence_sub: users must list 1-%d user ids", MaxPresenceUsers)
		}
		if len(in.Users) > MaxPresenceUsers {
			return badFrame("%s: at most %d users per frame", in.T, MaxPresenceUsers)
		}
		for _, u := range in.Users {
			if !ValidID(u) {
				return badFrame("%s: %s", in.T, fmt.Sprintf("invalid user id %.70q", u))
			}
		}
	}
	return nil
}

// ReadSync tells a user's other devices that the user read conv up to Seq.
// Under write diffusion it has a place in the user's inbox (InboxSeq) and is
// returned by sync like a message, so an offline device gets it too.
type ReadSync struct {
	T        string `json:"t"`
	Conv     string `json:"conv"`
	Seq      int64  `json:"seq"`
	InboxSeq int64  `json:"inboxSeq,omitempty"`
}

// Typing tells the other online members of Conv that User is typing.
type Typing struct {
	T    string `json:"t"`
	Conv string `json:"conv"`
	User string `json:"user"`
}

// Presence is a user's online state. LastSeen (unix ms) is when the user
// was last online: now for an online user, when the last device went away
// for an offline one, 0 when never seen.
type Presence struct {
	T        string `json:"t,omitempty"`
	User     string `json:"user"`
	Online   bool   `json:"online"`
	LastSeen int64  `json:"lastSeen"`
}
