// Package store persists users, messages, inboxes and conversation state in
// SQL. One implementation serves two dialects: the embedded SQLite database of
// `imkube dev` (modernc.org/sqlite, pure Go) and MySQL/MariaDB in distributed
// mode (github.com/go-sql-driver/mysql). Schema migrations are embedded and
// applied at start.
package store

import (
	"errors"
)

// Dialects.
const (
	SQLite = "sqlite"
	MySQL  = "mysql"
)

// Sentinel errors.
var (
	ErrNotFound  = errors.New("not found")
	ErrConflict  = errors.New("already exists")
	ErrDuplicate = errors.New("duplicate message")
)

// User is an account.
type User struct {
	ID           string `json:"id"`
	Username     string `json:"username"`
	DisplayName  string `json:"displayName"`
	PasswordHash string `json:"-"`
	CreatedAt    int64  `json:"createdAt"`
	// DMPolicy is "anyone", "friends" or "" (the cluster default).
	DMPolicy string `json:"-"`
	// Deleted: the account was deleted (kept so that its messages still
	// name a sender).
	Deleted bool `json:"deleted,omitempty"`
}

// Message is one stored message: (Conv, Seq) is its position, (Sender, CMID)
// identifies the client's send for deduplication.
type Message struct {
	Conv   string
	Seq    int64
	MID    string
	Sender string
	CMID   string
	Kind   string
	Body   string
	TS     int64
	Flags  int
	// Ref is the seq a recall or edit record changes.
	Ref int64
	// ReplyTo is the seq this message replies to (0: none).
	ReplyTo int64
	// Mentions are the mentioned user ids (or "all"), comma-separated.
	Mentions string
}

// Message flags.
const (
	FlagRecalled = 1 << iota
	FlagEdited
)

// InboxEntry places a message into a user's inbox (write diffusion).
type InboxEntry struct {
	User     string
	InboxSeq int64
}

// Item is a message as seen by one user; InboxSeq is set for inbox reads.
type Item struct {
	Message
	InboxSeq int64
	// Record is RecordMessage, or RecordRead for a read cursor of the
	// inbox's owner (Conv and Seq set, no message).
	Record int
	// Hidden: the user deleted this message for themselves.
	Hidden bool
}

// Inbox record kinds.
const (
	RecordMessage = 0
	RecordRead    = 1
	// RecordEvent (social.go) is a social event of the inbox's owner.
)

// Conversation is a user's view of one conversation.
type Conversation struct {
	Conv    string `json:"conv"`
	LastSeq int64  `json:"lastSeq"`
	ReadSeq int64  `json:"readSeq"`
	Unread  int64  `json:"unread"`
	LastTS  int64  `json:"lastTs"`
	// Mentions counts messages after ReadSeq that mention the user.
	Mentions int64        `json:"mentions"`
	Pinned   bool         `json:"pinned"`
	Muted    bool         `json:"muted"`
	Last     *LastMessage `json:"last,omitempty"`
}

// LastMessage summarises a conversation's latest message.
type LastMessage struct {
	Seq     int64  `json:"seq"`
	From    string `json:"from"`
	Kind    string `json:"kind"`
	Preview string `json:"preview"`
	TS      int64  `json:"ts"`
}
