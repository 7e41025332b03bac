package sequence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Dialects accepted by the constructors.
const (
	DialectSQLite = "sqlite" // modernc.org/sqlite, driver name "sqlite"
	DialectMySQL  = "mysql"  // github.com/go-sql-driver/mysql (MySQL, MariaDB)
)

// Rows of the bounds table with a negative section hold metadata.
const (
	metaSections = -1 // bound = number of sections the table was made for
	metaSnapshot = -2 // present: a clean-shutdown snapshot of values is saved
)

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,54}$`)

// boundStore persists section upper bounds in SQL:
//
//	<table>(section INT PRIMARY KEY, bound BIGINT NOT NULL)
//
// A section without a row has bound 0. Every write is conditional on the
// bound it replaces, so replicas never overwrite each other.
type boundStore struct {
	db      *sql.DB
	dialect string
	table   string
	snap    string // <table>_snapshot, used by the embedded mode only
}

func newBoundStore(ctx context.Context, db *sql.DB, dialect, table string, sections int) (*boundStore, error) {
	if db == nil {
		return nil, errors.New("sequence: db is nil")
	}
	if dialect != DialectSQLite && dialect != DialectMySQL {
		return nil, fmt.Errorf("sequence: dialect %q: want %q or %q", dialect, DialectSQLite, DialectMySQL)
	}
	if !tableName.MatchString(table) {
		return nil, fmt.Errorf("sequence: table %q: want letters, digits and underscores", table)
	}
	b := &boundStore{db: db, dialect: dialect, table: table, snap: table + "_snapshot"}
	// IF NOT EXISTS makes concurrent starts of several replicas safe.
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+table+
		" (section INT NOT NULL PRIMARY KEY, bound BIGINT NOT NULL)"); err != nil {
		return nil, fmt.Errorf("sequence: create table %s: %w", table, err)
	}
	if _, err := db.ExecContext(ctx, b.insertIgnore()+" INTO "+table+" (section, bound) VALUES (?, ?)",
		metaSections, sections); err != nil {
		return nil, fmt.Errorf("sequence: record section count: %w", err)
	}
	var got int64
	if err := db.QueryRowContext(ctx, "SELECT bound FROM "+table+" WHERE section = ?", metaSections).Scan(&got); err != nil {
		return nil, fmt.Errorf("sequence: read section count: %w", err)
	}
	if got != int64(sections) {
		// Another count would move keys to other sections and break the
		// guarantee.
		return nil, fmt.Errorf("sequence: sections = %d, but table %s was created for %d sections; the count cannot change", sections, table, got)
	}
	return b, nil
}

func (b *boundStore) insertIgnore() string {
	if b.dialect == DialectMySQL {
		return "INSERT IGNORE"
	}
	return "INSERT OR IGNORE"
}

// loadAll returns the bound of every section that has a row.
func (b *boundStore) loadAll(ctx context.Context) (map[int]int64, error) {
	rows, err := b.db.QueryContext(ctx, "SELECT section, bound FROM "+b.table+" WHERE section >= 0")
	if err != nil {
		return nil, fmt.Errorf("read bounds: %w", err)
	}
	defer rows.Close()
	m := map[int]int64{}
	for rows.Next() {
		var s int
		var v int64
		if err := rows.Scan(&s, &v); err != nil {
			return nil, fmt.Errorf("read bounds: %w", err)
		}
		m[s] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read bounds: %w", err)
	}
	return m, nil
}

// read returns the committed bounds of sections (0 for sections without a
// row), in the order given.
func (b *boundStore) read(ctx context.Context, sections []int) ([]int64, error) {
	got := make(map[int]int64, len(sections))
	const chunk = 500
	for lo := 0; lo < len(sections); lo += chunk {
		part := sections[lo:min(lo+chunk, len(sections))]
		args := make([]any, len(part))
		for i, s := range part {
			args[i] = s
		}
		q := "SELECT section, bound FROM " + b.table + " WHERE section IN (?" + strings.Repeat(", ?", len(part)-1) + ")"
		rows, err := b.db.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("read bounds: %w", err)
		}
		for rows.Next() {
			var s int
			var v int64
			if err := rows.Scan(&s, &v); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read bounds: %w", err)
			}
			got[s] = v
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("read bounds: %w", err)
		}
	}
	out := make([]int64, len(sections))
	for i, s := range sections {
		out[i] = got[s]
	}
	return out, nil
}

// raise is one conditional bound change: old -> new.
type raise struct {
	section  int
	old, new int64
}

// raise applies all changes in one transaction (one commit) and reports
// which ones took effect; a change whose old bound is no longer current
// (another replica raised it) is skipped. When it returns, the changes
// reported done are committed.
func (b *boundStore) raise(ctx context.Context, rs []raise) ([]bool, error) {
	order := make([]int, len(rs))
	for i := range order {
		order[i] = i
	}
	// A fixed lock order avoids deadlocks between replicas.
	sort.Slice(order, func(x, y int) bool { return rs[order[x]].section < rs[order[y]].section })
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("raise bounds: begin: %w", err)
	}
	defer tx.Rollback()
	done := make([]bool, len(rs))
	for _, i := range order {
		r := rs[i]
		var res sql.Result
		if r.old == 0 {
			// A section without a row has bound 0; a concurrent insert by
			// another replica makes this one a no-op.
			res, err = tx.ExecContext(ctx, b.insertIgnore()+" INTO "+b.table+" (section, bound) VALUES (?, ?)", r.section, r.new)
		} else {
			res, err = tx.ExecContext(ctx, "UPDATE "+b.table+" SET bound = ? WHERE section = ? AND bound = ?", r.new, r.section, r.old)
		}
		if err != nil {
			return nil, fmt.Errorf("raise bound of section %d: %w", r.section, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("raise bound of section %d: %w", r.section, err)
		}
		done[i] = n == 1
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("raise bounds: commit: %w", err)
	}
	return done, nil
}

// saveSnapshot replaces the saved snapshot with snap (embedded mode, clean
// shutdown).
func (b *boundStore) saveSnapshot(ctx context.Context, snap memSnapshot, section func(string) int) error {
	if _, err := b.db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+b.snap+
		" (section INT NOT NULL, k VARCHAR(255) NOT NULL, v BIGINT NOT NULL, PRIMARY KEY (section, k))"); err != nil {
		return fmt.Errorf("create table %s: %w", b.snap, err)
	}
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	defer tx.Rollback()
	for _, q := range []string{"DELETE FROM " + b.snap, "DELETE FROM " + b.table + " WHERE section = " + fmt.Sprint(metaSnapshot)} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("save snapshot: %w", err)
		}
	}
	type row struct {
		s int
		k string
		v int64
	}
	rows := make([]row, 0, len(snap.floors)+len(snap.vals))
	for s, f := range snap.floors {
		rows = append(rows, row{s, "", f}) // "" is the floor: keys are never empty
	}
	for k, v := range snap.vals {
		rows = append(rows, row{section(k), k, v})
	}
	const chunk = 300
	for lo := 0; lo < len(rows); lo += chunk {
		part := rows[lo:min(lo+chunk, len(rows))]
		args := make([]any, 0, 3*len(part))
		for _, r := range part {
			args = append(args, r.s, r.k, r.v)
		}
		q := "INSERT INTO " + b.snap + " (section, k, v) VALUES (?, ?, ?)" + strings.Repeat(", (?, ?, ?)", len(part)-1)
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("save snapshot: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+b.table+" (section, bound) VALUES (?, 1)", metaSnapshot); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	return nil
}

// takeSnapshot loads and deletes the saved snapshot in one transaction, so it
// is used at most once: after a crash following this start, the values are
// recovered from the bounds again.
func (b *boundStore) takeSnapshot(ctx context.Context) (memSnapshot, bool, error) {
	var none memSnapshot
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return none, false, fmt.Errorf("load snapshot: %w", err)
	}
	defer tx.Rollback()
	var flag int64
	err = tx.QueryRowContext(ctx, "SELECT bound FROM "+b.table+" WHERE section = ?", metaSnapshot).Scan(&flag)
	if errors.Is(err, sql.ErrNoRows) {
		return none, false, nil
	}
	if err != nil {
		return none, false, fmt.Errorf("load snapshot: %w", err)
	}
	snap := memSnapshot{floors: map[int]int64{}, vals: map[string]int64{}}
	rows, err := tx.QueryContext(ctx, "SELECT section, k, v FROM "+b.snap)
	if err != nil {
		return none, false, fmt.Errorf("load snapshot: %w", err)
	}
	for rows.Next() {
		var s int
		var k string
		var v int64
		if err := rows.Scan(&s, &k, &v); err != nil {
			rows.Close()
			return none, false, fmt.Errorf("load snapshot: %w", err)
		}
		if k == "" {
			snap.floors[s] = v
		} else {
			snap.vals[k] = v
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return none, false, fmt.Errorf("load snapshot: %w", err)
	}
	for _, q := range []string{"DELETE FROM " + b.snap, "DELETE FROM " + b.table + " WHERE section = " + fmt.Sprint(metaSnapshot)} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return none, false, fmt.Errorf("load snapshot: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return none, false, fmt.Errorf("load snapshot: %w", err)
	}
	return snap, true, nil
}
