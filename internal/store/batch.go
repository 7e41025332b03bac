package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Batched writes of the message service's micro-batched lanes: a batch of
// sends is deduplicated with one query (plus one multi-row INSERT of the new
// claims) and saved in one transaction with multi-row INSERTs.

// Claim is one (sender, cmid) to claim for conv.
type Claim struct{ Sender, CMID, Conv string }

// ClaimResult is ClaimCMID's answer for one Claim.
type ClaimResult struct {
	Fresh bool
	Owner string
}

// claimChunk bounds the claims of one statement.
const claimChunk = 200

// ClaimCMIDs is ClaimCMID for several claims at once: one SELECT finds the
// claims that exist, one multi-row INSERT makes the others. A (sender, cmid)
// that occurs twice in claims is claimed by its first occurrence; the later
// one gets Fresh false and the first one's conversation as Owner.
func (s *DB) ClaimCMIDs(ctx context.Context, claims []Claim) ([]ClaimResult, error) {
	out := make([]ClaimResult, len(claims))
	for i := 0; i < len(claims); i += claimChunk {
		if err := s.claimChunk(ctx, claims[i:min(i+claimChunk, len(claims))], out[i:]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type claimKey struct{ sender, cmid string }

func (s *DB) claimChunk(ctx context.Context, claims []Claim, out []ClaimResult) error {
	owners, err := s.claimOwners(ctx, claims)
	if err != nil {
		return err
	}
	first := map[claimKey]int{}
	var args []any
	var fresh []int
	for i, c := range claims {
		k := claimKey{c.Sender, c.CMID}
		if owner, ok := owners[k]; ok {
			out[i] = ClaimResult{Owner: owner}
			continue
		}
		if j, ok := first[k]; ok { // twice in this chunk: the first one claims
			out[i] = ClaimResult{Owner: claims[j].Conv}
			continue
		}
		first[k] = i
		fresh = append(fresh, i)
		args = append(args, c.Sender, c.CMID, c.Conv)
	}
	if len(fresh) == 0 {
		return nil
	}
	res, err := s.db.ExecContext(ctx, s.insertIgnore()+" INTO cmid_claims (sender, cmid, conv) VALUES "+rows(3, len(fresh)), args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if int(n) == len(fresh) {
		for _, i := range fresh {
			out[i] = ClaimResult{Fresh: true, Owner: claims[i].Conv}
		}
		return nil
	}
	// Some were claimed meanwhile (the same cmid sent to another
	// conversation, whose lane runs in parallel): ask who holds them. A
	// conversation is one lane, so a holder with our conversation is us.
	list := make([]Claim, len(fresh))
	for j, i := range fresh {
		list[j] = claims[i]
	}
	if owners, err = s.claimOwners(ctx, list); err != nil {
		return err
	}
	for _, i := range fresh {
		owner, ok := owners[claimKey{claims[i].Sender, claims[i].CMID}]
		if !ok {
			return fmt.Errorf("claim of cmid %q vanished", claims[i].CMID)
		}
		out[i] = ClaimResult{Fresh: owner == claims[i].Conv, Owner: owner}
	}
	return nil
}

// claimOwners returns the conversations that hold the claims that exist.
func (s *DB) claimOwners(ctx context.Context, claims []Claim) (map[claimKey]string, error) {
	var q strings.Builder
	q.WriteString("SELECT sender, cmid, conv FROM cmid_claims WHERE ")
	args := make([]any, 0, 2*len(claims))
	for i, c := range claims {
		if i > 0 {
			q.WriteString(" OR ")
		}
		q.WriteString("(sender = ? AND cmid = ?)")
		args = append(args, c.Sender, c.CMID)
	}
	r, err := s.query(ctx, q.String(), args...)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	owners := map[claimKey]string{}
	for r.Next() {
		var k claimKey
		var conv string
		if err := r.Scan(&k.sender, &k.cmid, &conv); err != nil {
			return nil, err
		}
		owners[k] = conv
	}
	return owners, r.Err()
}

// Save is one message of SaveMessages with SaveMessage's arguments.
type Save struct {
	Message      Message
	Inbox        []InboxEntry
	Participants []string
}

// SaveMessages stores several messages in one transaction, as SaveMessage
// stores one; the batch succeeds or fails as a unit (ErrDuplicate when any
// (sender, cmid) is already stored: nothing is saved then).
func (s *DB) SaveMessages(ctx context.Context, saves []Save) error {
	if len(saves) == 0 {
		return nil
	}
	if s.dialect == SQLite {
		return s.saveGrouped(&saveReq{ctx: ctx, batch: saves, done: make(chan error, 1)})
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err = s.saveMessagesIn(ctx, tx, saves); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// saveIn writes r in tx.
func (s *DB) saveIn(tx *sql.Tx, r *saveReq) error {
	if r.batch != nil {
		return s.saveMessagesIn(r.ctx, tx, r.batch)
	}
	return s.saveMessageIn(r.ctx, tx, r.m, r.inbox, r.participants, r.apply)
}

// rows returns n groups of cols placeholders: "(?, ?), (?, ?)".
func rows(cols, n int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(one+", ", n), ", ")
}

// upsertMaxRows is upsertMax for n rows.
func (s *DB) upsertMaxRows(table string, cols, key, maxCols []string, n int) string {
	q := s.upsertMax(table, cols, key, maxCols)
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	return strings.Replace(q, "VALUES "+one, "VALUES "+rows(len(cols), n), 1)
}

// saveMessagesIn writes what SaveMessages saves in tx: multi-row INSERTs for
// the messages, their inbox rows, the members' conversation rows and the
// senders' read cursors; one upsert per conversation.
func (s *DB) saveMessagesIn(ctx context.Context, tx *sql.Tx, saves []Save) error {
	const msgChunk = 50
	for i := 0; i < len(saves); i += msgChunk {
		part := saves[i:min(i+msgChunk, len(saves))]
		args := make([]any, 0, 12*len(part))
		for _, sv := range part {
			m := sv.Message
			args = append(args, m.Conv, m.Seq, m.MID, m.Sender, m.CMID, m.Kind, m.Body, m.TS, m.Flags, m.Ref, m.ReplyTo, m.Mentions)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO messages (conv, seq, mid, sender, cmid, kind, body, ts, flags, ref, reply_to, mentions) VALUES "+rows(12, len(part)), args...); err != nil {
			if isUniqueViolation(err) {
				return ErrDuplicate
			}
			return fmt.Errorf("insert messages: %w", err)
		}
	}
	const inboxChunk = 500
	var inbox []any
	flush := func() error {
		if len(inbox) == 0 {
			return nil
		}
		_, err := s.txExec(ctx, tx, inboxInsert(len(inbox)/4), inbox...)
		inbox = inbox[:0]
		if err != nil {
			return fmt.Errorf("insert inbox rows: %w", err)
		}
		return nil
	}
	type convKey struct{ user, conv string }
	lastOf := map[string]Message{}
	var convOrder []string
	userConv := map[convKey]bool{}
	var userConvArgs []any
	readOf := map[convKey]int64{}
	var readOrder []convKey
	for _, sv := range saves {
		m := sv.Message
		for _, e := range sv.Inbox {
			inbox = append(inbox, e.User, e.InboxSeq, m.Conv, m.Seq)
			if len(inbox) == 4*inboxChunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if prev, ok := lastOf[m.Conv]; !ok {
			convOrder = append(convOrder, m.Conv)
			lastOf[m.Conv] = m
		} else if m.Seq > prev.Seq {
			lastOf[m.Conv] = m
		}
		for _, u := range sv.Participants {
			if k := (convKey{u, m.Conv}); u != m.Sender && !userConv[k] {
				userConv[k] = true
				userConvArgs = append(userConvArgs, u, m.Conv)
			}
		}
		if strings.HasPrefix(m.Conv, "d:") || m.Kind == "group_event" || m.Sender == SystemSender {
			continue
		}
		k := convKey{m.Sender, m.Conv}
		if _, ok := readOf[k]; !ok {
			readOrder = append(readOrder, k)
		}
		readOf[k] = max(readOf[k], m.Seq)
	}
	if err := flush(); err != nil {
		return err
	}
	convArgs := make([]any, 0, 3*len(convOrder))
	for _, c := range convOrder {
		m := lastOf[c]
		convArgs = append(convArgs, m.Conv, m.Seq, m.TS)
	}
	if _, err := tx.ExecContext(ctx, s.upsertMaxRows("convs", []string{"conv", "last_seq", "last_ts"}, []string{"conv"}, []string{"last_seq", "last_ts"}, len(convOrder)), convArgs...); err != nil {
		return fmt.Errorf("update conversations: %w", err)
	}
	for _, sv := range saves {
		if err := s.insertMentions(ctx, tx, sv.Message); err != nil {
			return err
		}
	}
	if n := len(userConvArgs) / 2; n > 0 {
		if _, err := tx.ExecContext(ctx, s.insertIgnore()+" INTO user_convs (user_id, conv, read_seq) VALUES "+strings.Repeat("(?, ?, 0), ", n-1)+"(?, ?, 0)", userConvArgs...); err != nil {
			return fmt.Errorf("add conversations: %w", err)
		}
	}
	for _, sv := range saves {
		if err := s.writeOutbox(ctx, tx, sv.Message); err != nil {
			return err
		}
	}
	if len(readOrder) > 0 {
		args := make([]any, 0, 3*len(readOrder))
		for _, k := range readOrder {
			args = append(args, k.user, k.conv, readOf[k])
		}
		if _, err := tx.ExecContext(ctx, s.upsertMaxRows("user_convs", []string{"user_id", "conv", "read_seq"}, []string{"user_id", "conv"}, []string{"read_seq"}, len(readOrder)), args...); err != nil {
			return fmt.Errorf("move sender read cursors: %w", err)
		}
	}
	return nil
}
