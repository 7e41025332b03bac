package store

import (
	"container/list"
	"context"
	"errors"
	"hash/fnv"
	"sort"
	"sync"
)

// Pull cache (read diffusion). After a notify, every online member of a
// large group pulls the same few latest messages; without a cache each pull
// is a range scan of messages (with the member's hidden rows) in SQL. The
// cache keeps, per conversation, the latest messages (a suffix: every
// message with seq >= lo, nothing of the conversation newer than what it
// holds), and per member who pulled, the seqs they deleted for themselves.
// PullVisible answers from it when the page it asks for lies in that
// suffix, and from SQL otherwise; the result is the same either way.
//
// Coherence. The cache is only enabled on the embedded SQLite store, where
// this process is the only writer of the database (`imkube dev`: one
// process owns the file; every write of messages and hidden rows goes
// through the group commit). The committer applies each committed save to
// the cache before it answers the save, in commit order: a new message is
// added, a recall marks its target recalled and erases its body, mentions
// and the bodies of its edits, an edit replaces its target's body, a
// delete-for-me adds to that user's hidden seqs. These are exactly the
// changes the save's transaction made to the rows PullVisible reads.
//
// The MySQL store (distributed mode, several message-service replicas
// writing the same conversation: recalls and group events do not all go
// through the lane's owner) has no pull cache: a replica's cache would not
// see another replica's writes, and validating it by seq would cost the
// query it saves (and does not cover delete-for-me, which changes no seq).
// SetPullCache refuses it.
//
// Fills race with writes: a fill reads outside the committer, so a save
// may commit between the fill's read and its install and be applied to the
// cache before the entry exists. Every applied write bumps a generation of
// its conversation's slot; a fill installs its entry (and a member's hidden
// seqs) only if the generation did not move while it read.

// PullCacheConfig bounds the pull cache. MaxMessages 0 turns it off.
type PullCacheConfig struct {
	// MaxMessages and MaxBytes bound one conversation's entry: the oldest
	// messages leave it first.
	MaxMessages int
	MaxBytes    int
	// MaxTotalBytes bounds all entries: the least recently used
	// conversation leaves first.
	MaxTotalBytes int
}

// DefaultPullCache is the embedded store's pull cache.
var DefaultPullCache = PullCacheConfig{MaxMessages: 256, MaxBytes: 256 << 10, MaxTotalBytes: 64 << 20}

type pullCache struct {
	cfg     PullCacheConfig
	mu      sync.Mutex
	entries map[string]*convEntry
	lru     *list.List // of *convEntry, most recent first
	bytes   int
	gens    [256]uint64
	hits    uint64
	misses  uint64
	// afterRead, if set, runs between a fill's reads and its install
	// (tests: a write that races the fill).
	afterRead func()
}

type convEntry struct {
	conv   string
	lo     int64     // every message with seq >= lo is in msgs
	msgs   []Message // ascending seq
	bytes  int
	hidden map[string]map[int64]struct{} // user -> hidden seqs (>= lo), users loaded
	elem   *list.Element
}

// SetPullCache turns the pull cache on with cfg (MaxMessages 0: off). Only
// the embedded SQLite store has one (see above).
func (s *DB) SetPullCache(cfg PullCacheConfig) error {
	if cfg.MaxMessages <= 0 {
		s.pcache.Store(nil)
		return nil
	}
	if s.dialect != SQLite {
		return errors.New("store: the pull cache needs a store this process alone writes (SQLite)")
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultPullCache.MaxBytes
	}
	if cfg.MaxTotalBytes <= 0 {
		cfg.MaxTotalBytes = DefaultPullCache.MaxTotalBytes
	}
	s.pcache.Store(&pullCache{cfg: cfg, entries: map[string]*convEntry{}, lru: list.New()})
	return nil
}

// PullCacheStats returns the pulls answered from the cache and from SQL.
func (s *DB) PullCacheStats() (hits, misses uint64) {
	c := s.pcache.Load()
	if c == nil {
		return 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses
}

func msgSize(m *Message) int {
	return 96 + len(m.Conv) + len(m.MID) + len(m.Sender) + len(m.CMID) + len(m.Kind) + len(m.Body) + len(m.Mentions)
}

func slot(conv string) int {
	h := fnv.New32a()
	h.Write([]byte(conv))
	return int(h.Sum32() % 256)
}

// cacheEffect is what a recall, edit or delete record's transaction
// changed besides storing the record itself.
type cacheEffect struct {
	kind int // effectRecall, effectEdit, effectHide
	conv string
	ref  int64 // recall, edit: the target seq
	body string
	user string  // hide
	seqs []int64 // hide
}

const (
	effectRecall = iota + 1
	effectEdit
	effectHide
)

// applySaved applies a committed save to the cache (called by the
// committer, in commit order, before the save is answered).
func (c *pullCache) applySaved(r *saveReq) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.effect != nil {
		c.applyEffect(r.effect)
	}
	if r.batch != nil {
		for i := range r.batch {
			c.add(r.batch[i].Message)
		}
		return
	}
	c.add(r.m)
}

func (c *pullCache) applyEffect(e *cacheEffect) {
	c.gens[slot(e.conv)]++
	x := c.entries[e.conv]
	if x == nil {
		return
	}
	switch e.kind {
	case effectRecall:
		for i := range x.msgs {
			m := &x.msgs[i]
			switch {
			case m.Seq == e.ref:
				x.bytes -= len(m.Body) + len(m.Mentions)
				c.bytes -= len(m.Body) + len(m.Mentions)
				m.Flags |= FlagRecalled
				m.Body, m.Mentions = "", ""
			case m.Ref == e.ref && m.Kind == "edit":
				x.bytes -= len(m.Body)
				c.bytes -= len(m.Body)
				m.Body = ""
			}
		}
	case effectEdit:
		if i := x.find(e.ref); i >= 0 {
			m := &x.msgs[i]
			d := len(e.body) - len(m.Body)
			x.bytes += d
			c.bytes += d
			m.Flags |= FlagEdited
			m.Body = e.body
		}
	case effectHide:
		if h, ok := x.hidden[e.user]; ok {
			for _, n := range e.seqs {
				h[n] = struct{}{}
			}
		}
	}
}

// add puts a committed message into its conversation's entry, if there is
// one. Messages normally come in seq order; one that does not (a group
// event numbered before a lane's message but committed after it) is
// inserted in its place.
func (c *pullCache) add(m Message) {
	c.gens[slot(m.Conv)]++
	x := c.entries[m.Conv]
	if x == nil || m.Seq < x.lo {
		return
	}
	i := sort.Search(len(x.msgs), func(i int) bool { return x.msgs[i].Seq >= m.Seq })
	if i < len(x.msgs) && x.msgs[i].Seq == m.Seq {
		return // cannot happen (unique key); keep what is there
	}
	x.msgs = append(x.msgs, Message{})
	copy(x.msgs[i+1:], x.msgs[i:])
	x.msgs[i] = m
	n := msgSize(&m)
	x.bytes += n
	c.bytes += n
	c.trim(x)
	c.evict()
}

// trim drops the oldest messages of x past the per-conversation bounds.
func (c *pullCache) trim(x *convEntry) {
	k := 0
	for len(x.msgs)-k > 1 && (len(x.msgs)-k > c.cfg.MaxMessages || x.bytes > c.cfg.MaxBytes) {
		n := msgSize(&x.msgs[k])
		x.bytes -= n
		c.bytes -= n
		k++
	}
	if k == 0 {
		return
	}
	x.lo = x.msgs[k-1].Seq + 1
	x.msgs = append(x.msgs[:0:0], x.msgs[k:]...)
	for _, h := range x.hidden {
		for n := range h {
			if n < x.lo {
				delete(h, n)
			}
		}
	}
}

// evict drops least recently used entries past MaxTotalBytes.
func (c *pullCache) evict() {
	for c.bytes > c.cfg.MaxTotalBytes && c.lru.Len() > 0 {
		x := c.lru.Back().Value.(*convEntry)
		c.drop(x)
	}
}

func (c *pullCache) drop(x *convEntry) {
	c.lru.Remove(x.elem)
	delete(c.entries, x.conv)
	c.bytes -= x.bytes + 64*len(x.hidden)
}

func (x *convEntry) find(seq int64) int {
	i := sort.Search(len(x.msgs), func(i int) bool { return x.msgs[i].Seq >= seq })
	if i < len(x.msgs) && x.msgs[i].Seq == seq {
		return i
	}
	return -1
}

// pullCached answers PullVisible from the cache; ok false when the page
// does not lie in the cached suffix (the caller asks SQL).
func (s *DB) pullCached(ctx context.Context, c *pullCache, user, conv string, from, to, before int64, limit int) ([]Message, bool, bool, error) {
	x, hidden, err := s.cacheEntry(ctx, c, user, conv)
	if err != nil || x == nil {
		return nil, false, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[conv] != x { // evicted meanwhile
		c.misses++
		return nil, false, false, nil
	}
	if hidden == nil {
		hidden = x.hidden[user]
	}
	visible := func(m *Message) bool {
		_, h := hidden[m.Seq]
		return !h
	}
	if before <= 0 {
		if from < x.lo {
			c.misses++
			return nil, false, false, nil
		}
		var out []Message
		i := sort.Search(len(x.msgs), func(i int) bool { return x.msgs[i].Seq >= from })
		for ; i < len(x.msgs) && x.msgs[i].Seq <= to; i++ {
			if !visible(&x.msgs[i]) {
				continue
			}
			if len(out) == limit {
				c.hits++
				return out, true, true, nil
			}
			out = append(out, x.msgs[i])
		}
		c.hits++
		return out, false, true, nil
	}
	// Backwards: the newest limit visible messages with from <= seq <= to;
	// answered when they and the one that decides "more" are all cached, or
	// when the cache reaches down to from.
	var rev []Message
	i := sort.Search(len(x.msgs), func(i int) bool { return x.msgs[i].Seq > to }) - 1
	for ; i >= 0 && x.msgs[i].Seq >= from; i-- {
		if !visible(&x.msgs[i]) {
			continue
		}
		if len(rev) == limit {
			c.hits++
			return reverse(rev), true, true, nil
		}
		rev = append(rev, x.msgs[i])
	}
	if from < x.lo {
		c.misses++
		return nil, false, false, nil
	}
	c.hits++
	return reverse(rev), false, true, nil
}

func reverse(ms []Message) []Message {
	for i, j := 0, len(ms)-1; i < j; i, j = i+1, j-1 {
		ms[i], ms[j] = ms[j], ms[i]
	}
	return ms
}

// cacheEntry returns conv's entry, filling it from SQL when missing, and
// makes sure user's hidden seqs are loaded (returned when they could not be
// installed: a write raced the load).
func (s *DB) cacheEntry(ctx context.Context, c *pullCache, user, conv string) (*convEntry, map[int64]struct{}, error) {
	sl := slot(conv)
	c.mu.Lock()
	x := c.entries[conv]
	gen := c.gens[sl]
	var lo int64
	if x != nil {
		c.lru.MoveToFront(x.elem)
		if _, ok := x.hidden[user]; ok {
			c.mu.Unlock()
			return x, nil, nil
		}
		lo = x.lo // read under mu: trim moves it
	}
	c.mu.Unlock()
	if x == nil {
		// Fill: the latest MaxMessages messages (reader connection).
		rows, err := s.query(ctx, "SELECT "+msgCols+" FROM messages m WHERE m.conv = ? ORDER BY m.seq DESC LIMIT ?", conv, c.cfg.MaxMessages)
		if err != nil {
			return nil, nil, err
		}
		msgs, _, err := scanPage(rows, c.cfg.MaxMessages)
		if err != nil {
			return nil, nil, err
		}
		reverse(msgs)
		x = &convEntry{conv: conv, msgs: msgs, hidden: map[string]map[int64]struct{}{}}
		if len(msgs) == c.cfg.MaxMessages {
			x.lo = msgs[0].Seq
		}
		for i := range msgs {
			x.bytes += msgSize(&msgs[i])
		}
		lo = x.lo
	}
	hidden := map[int64]struct{}{}
	rows, err := s.query(ctx, "SELECT seq FROM hidden WHERE user_id = ? AND conv = ? AND seq >= ?", user, conv, lo)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return nil, nil, err
		}
		hidden[n] = struct{}{}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if c.afterRead != nil {
		c.afterRead()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[sl] != gen { // a write of this slot raced the reads: do not install
		return nil, nil, nil
	}
	if x.elem == nil {
		if old := c.entries[conv]; old != nil { // another fill won
			if old.lo < lo { // our hidden seqs may not reach down to its lo
				return nil, nil, nil
			}
			x = old
		} else {
			x.elem = c.lru.PushFront(x)
			c.entries[conv] = x
			c.bytes += x.bytes
			c.trim(x)
		}
	}
	if _, ok := x.hidden[user]; !ok && c.entries[conv] == x {
		x.hidden[user] = hidden
		c.bytes += 64
	}
	c.evict()
	if c.entries[conv] != x {
		return nil, nil, nil
	}
	return x, hidden, nil
}
