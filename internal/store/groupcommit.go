package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// Embedded (SQLite) write path: the database has one connection, so
// concurrent saves of different conversations queue for it anyway. Instead
// of one transaction each, the saves waiting when a transaction starts are
// written in one (group commit), each in its own savepoint so that one
// failing save (a duplicate) fails alone; every caller still returns after
// the commit that made its save durable. Statements of the hot path are
// prepared once (parsing was a large part of a small write).

// errLead hands the leadership of the next batch to a waiting save.
var errLead = errors.New("store: lead the next group commit")

type saveReq struct {
	ctx          context.Context
	m            Message
	inbox        []InboxEntry
	participants []string
	apply        func(tx *sql.Tx) error
	batch        []Save       // SaveMessages: the whole batch in this request's savepoint
	effect       *cacheEffect // what apply changes, for the pull cache (pullcache.go)
	done         chan error   // 1: errLead, then the result; or the result
}

type groupCommit struct {
	mu      sync.Mutex
	pending []*saveReq
	leading bool
}

// maxGroupCommit bounds the saves of one transaction.
const maxGroupCommit = 64

// saveGrouped saves r in the next group commit; the first caller while none
// runs leads it (and hands the next one to a waiting caller).
func (s *DB) saveGrouped(r *saveReq) error {
	g := &s.group
	g.mu.Lock()
	g.pending = append(g.pending, r)
	if g.leading {
		g.mu.Unlock()
		if err := <-r.done; err != errLead {
			return err
		}
		g.mu.Lock()
	}
	g.leading = true
	batch := g.pending[:min(len(g.pending), maxGroupCommit)]
	g.pending = append([]*saveReq(nil), g.pending[len(batch):]...)
	g.mu.Unlock()

	s.commitBatch(batch)

	g.mu.Lock()
	if len(g.pending) > 0 {
		g.pending[0].done <- errLead // it is waiting and its channel is empty
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	return <-r.done
}

// commitBatch writes batch in one transaction and answers every request.
func (s *DB) commitBatch(batch []*saveReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx := context.WithoutCancel(live[0].ctx)
	s.prepareSave(ctx)
	fail := func(err error) {
		for _, r := range live {
			r.done <- err
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		fail(err)
		return
	}
	results := make([]error, len(live))
	for i, r := range live {
		if len(live) == 1 {
			results[i] = s.saveIn(tx, r)
			break
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT save"); err != nil {
			tx.Rollback()
			fail(err)
			return
		}
		if results[i] = s.saveIn(tx, r); results[i] != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO save"); err != nil {
				tx.Rollback()
				fail(fmt.Errorf("roll back one save: %w", err))
				return
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE save"); err != nil {
			tx.Rollback()
			fail(err)
			return
		}
	}
	if len(live) == 1 && results[0] != nil {
		tx.Rollback()
		live[0].done <- results[0]
		return
	}
	if err := tx.Commit(); err != nil {
		fail(err)
		return
	}
	if c := s.pcache.Load(); c != nil { // in commit order, before anyone hears of the commit
		for i, r := range live {
			if results[i] == nil {
				c.applySaved(r)
			}
		}
	}
	for i, r := range live {
		r.done <- results[i]
	}
}

// stmt returns q prepared once on the database (SQLite only: for MySQL it
// would cost a round trip per statement; nil there). It may wait for the
// connection: never call it while holding a transaction (see cached).
func (s *DB) stmt(ctx context.Context, q string) *sql.Stmt {
	if st := s.cached(q); st != nil || s.dialect != SQLite {
		return st
	}
	st, err := s.db.PrepareContext(ctx, q)
	if err != nil {
		return nil // run it unprepared; the error shows there
	}
	if prev, loaded := s.stmts.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt)
	}
	return st
}

// cached returns q if it was prepared, else nil.
func (s *DB) cached(q string) *sql.Stmt {
	if st, ok := s.stmts.Load(q); ok {
		return st.(*sql.Stmt)
	}
	return nil
}

// prepareSave prepares the statements of saveMessageIn (direct chats' inbox
// rows included), before a transaction holds the one connection.
func (s *DB) prepareSave(ctx context.Context) {
	if s.cached(inboxInsert(4)) != nil {
		return
	}
	q := s.saveQueries()
	for _, x := range []string{q.message, q.convs, q.userConv, q.senderRead, inboxInsert(1), inboxInsert(2), inboxInsert(3), inboxInsert(4)} {
		s.stmt(ctx, x)
	}
}

// txExec runs q in tx, through its prepared statement if there is one.
func (s *DB) txExec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	if st := s.cached(q); st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, q, args...)
}

// closeStmts closes the prepared statements.
func (s *DB) closeStmts() {
	for _, m := range []*sync.Map{&s.stmts, &s.rstmts} {
		m.Range(func(k, v any) bool {
			v.(*sql.Stmt).Close()
			m.Delete(k)
			return true
		})
	}
}

// exec runs q on the database (the writer), prepared once where stmt prepares.
func (s *DB) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := s.stmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return s.db.ExecContext(ctx, q, args...)
}

func (s *DB) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if st := s.readStmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.rdb.QueryRowContext(ctx, q, args...)
}

// query and queryRow read on the readers (rdb): outside a transaction only;
// they see every commit that returned before they started.
func (s *DB) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := s.readStmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return s.rdb.QueryContext(ctx, q, args...)
}

// maxReadStmts bounds the statements prepared on the readers.
const maxReadStmts = 256

// readStmt is stmt for the readers.
func (s *DB) readStmt(ctx context.Context, q string) *sql.Stmt {
	if s.dialect != SQLite {
		return nil
	}
	if st, ok := s.rstmts.Load(q); ok {
		return st.(*sql.Stmt)
	}
	// Queries with IN lists come in many shapes: past maxReadStmts the
	// new ones run unprepared instead of growing the cache without bound.
	if s.nrstmts.Load() >= maxReadStmts {
		return nil
	}
	st, err := s.rdb.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	if prev, loaded := s.rstmts.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt)
	}
	s.nrstmts.Add(1)
	return st
}
