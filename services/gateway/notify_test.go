package gateway_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/services/gateway"
)

// A burst of read-diffusion notifies reaches a connection as the first one
// at once and then one per conversation carrying the highest seq, within
// the interval: never one per message, and the last is never dropped.
func TestNotifiesAreCoalescedPerConversationAndTheLastOneArrives(t *testing.T) {
	const every = 300 * time.Millisecond
	e := newEnv(t, gateway.Config{NotifyInterval: every})
	a, _ := imtest.Connect(t, e.url, e.token(t, "1"), "phone")
	b, _ := imtest.Connect(t, e.url, e.token(t, "2"), "phone")
	start := time.Now()
	for seq := 1; seq <= 30; seq++ {
		e.push(t, fmt.Sprintf(`{"t":"notify","conv":"g1","seq":%d}`, seq), messageapi.Target{User: "1", Device: "phone"}, messageapi.Target{User: "2", Device: "phone", Muted: true})
		if seq <= 5 {
			e.push(t, fmt.Sprintf(`{"t":"notify","conv":"g2","seq":%d}`, seq), messageapi.Target{User: "1", Device: "phone"})
		}
	}
	last := map[string]int64{}
	count := map[string]int{}
	for len(last) < 2 || last["g1"] != 30 || last["g2"] != 5 {
		f := a.Expect("notify")
		if s := f.Int("seq"); s <= last[f.Str("conv")] {
			t.Fatalf("seq went back: %v after %d", f, last[f.Str("conv")])
		}
		last[f.Str("conv")] = f.Int("seq")
		count[f.Str("conv")]++
	}
	if count["g1"] != 2 || count["g2"] != 2 {
		t.Fatalf("want the first notify and one coalesced notify per conversation, got %v", count)
	}
	if el := time.Since(start); el > 10*every {
		t.Fatalf("the coalesced notify took %v (interval %v)", el, every)
	}
	a.Quiet(2 * every)
	// Another connection has its own interval; its frames keep "muted".
	if f := b.Expect("notify"); f.Int("seq") != 1 || !f.Bool("muted") {
		t.Fatalf("first notify of b: %v", f)
	}
	if f := b.Expect("notify"); f.Int("seq") != 30 || !f.Bool("muted") {
		t.Fatalf("coalesced notify of b: %v", f)
	}
	b.Quiet(2 * every)
	// After a quiet interval the next notify goes out at once again; one
	// that carries no news (an older seq) is dropped.
	time.Sleep(every)
	e.push(t, `{"t":"notify","conv":"g1","seq":29}`, messageapi.Target{User: "1", Device: "phone"})
	e.push(t, `{"t":"notify","conv":"g1","seq":31}`, messageapi.Target{User: "1", Device: "phone"})
	if f := a.Expect("notify"); f.Int("seq") != 31 {
		t.Fatalf("got %v", f)
	}
}

// Other frames are never held back or merged, and a negative interval
// turns coalescing off.
func TestNotifyCoalescingLeavesOtherFramesAndCanBeTurnedOff(t *testing.T) {
	e := newEnv(t, gateway.Config{NotifyInterval: -1})
	a, _ := imtest.Connect(t, e.url, e.token(t, "1"), "phone")
	for seq := 1; seq <= 5; seq++ {
		e.push(t, fmt.Sprintf(`{"t":"notify","conv":"g1","seq":%d}`, seq), messageapi.Target{User: "1", Device: "phone"})
	}
	for seq := int64(1); seq <= 5; seq++ {
		if f := a.Expect("notify"); f.Int("seq") != seq {
			t.Fatalf("want seq %d, got %v", seq, f)
		}
	}
	e2 := newEnv(t, gateway.Config{NotifyInterval: time.Hour})
	c, _ := imtest.Connect(t, e2.url, e2.token(t, "1"), "phone")
	for i := 1; i <= 3; i++ {
		e2.push(t, fmt.Sprintf(`{"t":"msg","conv":"d1","seq":%d}`, i), messageapi.Target{User: "1", Device: "phone"})
	}
	for i := int64(1); i <= 3; i++ {
		if f := c.Expect("msg"); f.Int("seq") != i {
			t.Fatalf("want msg %d, got %v", i, f)
		}
	}
}

// A conversation held back after another one is flushed at the end of its
// own interval, not at the other's.
func TestAHeldNotifyWaitsAtMostItsOwnInterval(t *testing.T) {
	const every = time.Second
	e := newEnv(t, gateway.Config{NotifyInterval: every})
	a, _ := imtest.Connect(t, e.url, e.token(t, "1"), "phone")
	to := messageapi.Target{User: "1", Device: "phone"}
	start := time.Now()
	e.push(t, `{"t":"notify","conv":"g2","seq":1}`, to) // sent; g2's interval ends at 1 s
	a.Expect("notify")
	time.Sleep(500 * time.Millisecond)
	e.push(t, `{"t":"notify","conv":"g1","seq":1}`, to) // sent; g1's ends at 1.5 s
	a.Expect("notify")
	e.push(t, `{"t":"notify","conv":"g1","seq":2}`, to) // held until 1.5 s
	time.Sleep(100 * time.Millisecond)
	e.push(t, `{"t":"notify","conv":"g2","seq":2}`, to) // held until 1 s
	f := a.Expect("notify")
	if f.Str("conv") != "g2" || f.Int("seq") != 2 {
		t.Fatalf("first flushed: %v", f)
	}
	if el := time.Since(start); el > 1400*time.Millisecond {
		t.Fatalf("g2's held notify came after %v, its interval ended at 1 s", el)
	}
	if f := a.Expect("notify"); f.Str("conv") != "g1" || f.Int("seq") != 2 {
		t.Fatalf("then: %v", f)
	}
}
