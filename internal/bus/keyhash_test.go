package bus_test

import (
	"fmt"
	"testing"

	"github.com/imkube/imkube/internal/bus"
)

// Conversations whose ids differ in a few digits spread over the queues:
// FNV-1a % 8 alone put 20 of them on 2 of 8 queues.
func TestKeyHashSpreadsSimilarKeys(t *testing.T) {
	for _, n := range []uint32{8, 16} {
		used := map[uint32]int{}
		for i := range 20 {
			used[bus.KeyHash(fmt.Sprintf("u:%d:%d", 710000000+i, 710000020+i))%n]++
		}
		if len(used) < int(n)/2+2 { // random: 7.3 of 8, 11.6 of 16 expected
			t.Errorf("20 conversations over %d queues use %d of them: %v", n, len(used), used)
		}
	}
	if bus.KeyHash("u:1:2") != bus.KeyHash("u:1:2") {
		t.Fatal("KeyHash is not stable")
	}
}
