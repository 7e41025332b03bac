package bench

import "testing"

// The gateway coalesces read-diffusion notifies: one notify of seq N stands
// for every seq up to N, whether the sender's acks came before or after it.
func TestTrackerCreditsACoalescedNotifyForEverySeqUpToIt(t *testing.T) {
	tr := newTracker()
	tr.measure.Store(true)
	for n := int64(1); n <= 3; n++ {
		tr.acked(n, tr.payload(0, n))
	}
	tr.notified(7, 3) // seqs 1..3 in one notify
	tr.notified(7, 2) // stale: nothing new
	tr.notified(7, 5) // 4 and 5 not acked yet
	tr.acked(4, tr.payload(0, 4))
	tr.acked(5, tr.payload(0, 5))
	tr.acked(6, tr.payload(0, 6)) // not notified yet
	s := tr.streams[[2]int{0, 7}]
	if s == nil || s.got != 5 || s.dup != 0 || s.reordered != 0 {
		t.Fatalf("stream 0 -> 7: %+v, want 5 received in order, no duplicates", s)
	}
	if tr.count.Load() != 5 {
		t.Fatalf("%d deliveries counted, want 5", tr.count.Load())
	}
	tr.notified(7, 6)
	if s.got != 6 {
		t.Fatalf("after notify 6: %d received, want 6", s.got)
	}
}
