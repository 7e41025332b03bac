package message

import (
	"testing"
	"time"
)

func TestGateLetsOneEventPerKeyPerIntervalAndStaysBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	g := newGate(2*time.Second, 2, func() time.Time { return now })
	tests := []struct {
		give    string
		advance time.Duration
		want    bool
	}{
		{"alice|c1", 0, true},
		{"alice|c1", time.Second, false},           // within 2 s: dropped
		{"alice|c2", 0, true},                      // another conversation has its own allowance
		{"bob|c1", 0, false},                       // the map is full and nothing has expired
		{"alice|c1", time.Second, true},            // 2 s after the first
		{"bob|c1", 2 * time.Second, true},          // expired keys make room
		{"bob|c1", 1999 * time.Millisecond, false}, // just inside the interval
		{"bob|c1", time.Millisecond, true},         // exactly the interval
	}
	for i, tt := range tests {
		now = now.Add(tt.advance)
		if got := g.allow(tt.give); got != tt.want {
			t.Fatalf("step %d: allow(%q) = %v, want %v", i, tt.give, got, tt.want)
		}
		if len(g.last) > 2 {
			t.Fatalf("step %d: the gate holds %d keys, bound 2", i, len(g.last))
		}
	}
}
