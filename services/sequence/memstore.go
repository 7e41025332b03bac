package sequence

import (
	"context"
	"sync"
)

// memStore keeps values in process memory: one mutex per section. A fresh
// memStore has no markers, which is exactly a store that lost everything: the
// allocator recovers every section from its SQL bound before using it.
type memStore struct {
	sections []memSection
}

type memSection struct {
	mu     sync.Mutex
	marked bool // the marker: values of this section are intact
	floor  int64
	token  string // recovery in progress
	vals   map[string]int64
}

var _ valueStore = (*memStore)(nil)

func newMemStore(sections int) *memStore {
	return &memStore{sections: make([]memSection, sections)}
}

func (m *memStore) allocate(_ context.Context, items []item, out []result) error {
	// Items of one section are contiguous runs in practice, but correctness
	// does not depend on it: "blocked" is tracked per section.
	var blocked map[int]bool
	for i, it := range items {
		s := &m.sections[it.section]
		s.mu.Lock()
		if !s.marked {
			s.mu.Unlock()
			out[i] = result{status: statusLost}
			continue
		}
		cur, ok := s.vals[it.key]
		if !ok || cur < s.floor {
			cur = s.floor
		}
		last := cur + it.count
		if last > it.bound || blocked[it.section] {
			s.mu.Unlock()
			if blocked == nil {
				blocked = map[int]bool{}
			}
			blocked[it.section] = true
			out[i] = result{status: statusNeedBound, value: last}
			continue
		}
		if s.vals == nil {
			s.vals = map[string]int64{}
		}
		s.vals[it.key] = last
		s.mu.Unlock()
		out[i] = result{status: statusOK, value: last}
	}
	return nil
}

func (m *memStore) beginRecover(_ context.Context, sections []int) ([]string, []bool, error) {
	tokens := make([]string, len(sections))
	ok := make([]bool, len(sections))
	for i, sec := range sections {
		s := &m.sections[sec]
		s.mu.Lock()
		if !s.marked && s.token == "" {
			s.token = newToken()
			tokens[i], ok[i] = s.token, true
		}
		s.mu.Unlock()
	}
	return tokens, ok, nil
}

func (m *memStore) finishRecover(_ context.Context, sections []int, tokens []string, floors []int64) ([]bool, error) {
	done := make([]bool, len(sections))
	for i, sec := range sections {
		s := &m.sections[sec]
		s.mu.Lock()
		if s.token == tokens[i] {
			s.token = ""
			if !s.marked {
				s.marked, s.floor, done[i] = true, floors[i], true
			}
		}
		s.mu.Unlock()
	}
	return done, nil
}

func (m *memStore) abandonRecover(_ context.Context, sections []int, tokens []string) {
	for i, sec := range sections {
		s := &m.sections[sec]
		s.mu.Lock()
		if s.token == tokens[i] {
			s.token = ""
		}
		s.mu.Unlock()
	}
}

// memSnapshot is the state of a memStore saved on a clean shutdown.
type memSnapshot struct {
	floors map[int]int64 // marked sections and their floors
	vals   map[string]int64
}

func (m *memStore) snapshot() memSnapshot {
	snap := memSnapshot{floors: map[int]int64{}, vals: map[string]int64{}}
	for i := range m.sections {
		s := &m.sections[i]
		s.mu.Lock()
		if s.marked {
			snap.floors[i] = s.floor
			for k, v := range s.vals {
				snap.vals[k] = v
			}
		}
		s.mu.Unlock()
	}
	return snap
}

// restore loads a snapshot into an empty memStore; section(key) maps keys.
func (m *memStore) restore(snap memSnapshot, section func(string) int) {
	for sec, floor := range snap.floors {
		if sec < 0 || sec >= len(m.sections) {
			continue
		}
		s := &m.sections[sec]
		s.marked, s.floor = true, floor
	}
	for k, v := range snap.vals {
		s := &m.sections[section(k)]
		if !s.marked {
			continue
		}
		if s.vals == nil {
			s.vals = map[string]int64{}
		}
		s.vals[k] = v
	}
}
