// Package ids generates snowflake-style unique ids: 41 bits of milliseconds
// since 2025-01-01, 10 bits of node, 12 bits of sequence, printed in decimal.
package snowflake

import (
	"crypto/rand"
	"encoding/binary"
	"strconv"
	"sync"
	"time"
)

const epochMs = 1735689600000 // 2025-01-01T00:00:00Z

// Generator is safe for concurrent use.
type Generator struct {
	mu     sync.Mutex
	node   int64
	lastMs int64
	seq    int64
	now    func() time.Time
}

// New returns a generator for node (0-1023); node < 0 picks a random node.
func New(node int64) *Generator {
	if node < 0 {
		var b [2]byte
		_, _ = rand.Read(b[:])
		node = int64(binary.BigEndian.Uint16(b[:]))
	}
	return &Generator{node: node & 1023, now: time.Now}
}

// Next returns a new id; ids from one generator strictly increase.
func (g *Generator) Next() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := g.now().UnixMilli() - epochMs
	if ms < g.lastMs {
		ms = g.lastMs // clock went back: keep increasing
	}
	if ms == g.lastMs {
		g.seq++
		if g.seq > 4095 {
			ms++ // borrow from the future rather than block
			g.seq = 0
		}
	} else {
		g.seq = 0
	}
	g.lastMs = ms
	return strconv.FormatInt(ms<<22|g.node<<12|g.seq, 10)
}
