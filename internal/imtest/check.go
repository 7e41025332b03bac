package imtest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// The data-plane checker shared by the suites that push messages through a
// fault (test/e2e/dataplane with processes, test/e2e/pods with real pods):
// per recipient, every message once, in order, and the sender's acks match
// what was delivered.

// ExchangeTimeout bounds each wait of Exchange (the recipient receiving
// everything, the sender's acks); ExchangeResendEvery is how long an unacked
// send waits before the sender resends it (same cmid). Slow environments
// (real pods on 2 cores) raise both.
var (
	ExchangeTimeout     = 3 * time.Minute
	ExchangeResendEvery = 5 * time.Second
)

// BodiesN returns prefix1..prefixN.
func BodiesN(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	return out
}

// Exchange sends n messages from a to b (windowed; cmids prefix+"c<i>",
// bodies prefix+"m<i>"), runs fault once sent == faultAt, waits until every
// send is acked and b has all of them, and fails t unless b received exactly
// those n messages (after what it had before), each once, in order, with
// matching acks. It returns the lost, duplicated and reordered counts.
func Exchange(t testing.TB, a, b *Session, prefix string, n, faultAt int, fault func()) (lost, dup, reordered int) {
	t.Helper()
	lost, dup, reordered, err := ExchangeErr(a, b, prefix, n, faultAt, fault)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s -> %s: %d sent, %d received, lost %d, duplicated %d, reordered %d", a.Account.Username, b.Account.Username, n, n, lost, dup, reordered)
	return lost, dup, reordered
}

// ExchangeErr is Exchange returning what failed instead of failing a test,
// for callers that run many exchanges on goroutines of their own.
func ExchangeErr(a, b *Session, prefix string, n, faultAt int, fault func()) (lost, dup, reordered int, err error) {
	b.mu.Lock()
	start := len(b.Got)
	b.mu.Unlock()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs <- b.Pump(ExchangeTimeout, 0, func() bool { return len(b.Got)-start >= n })
	}()
	sent := 0
	deadline := time.Now().Add(ExchangeTimeout)
	for sent < n || a.Unacked() > 0 {
		if time.Now().After(deadline) {
			return 0, 0, 0, fmt.Errorf("sender: %d sent, %d unacked, errors %v", sent, a.Unacked(), a.Errors)
		}
		for sent < n && a.Unacked() < 50 {
			sent++
			if err := a.Send(fmt.Sprintf("%sc%d", prefix, sent), b.Account.ID, false, fmt.Sprintf("%sm%d", prefix, sent)); err != nil {
				a.Kill() // resent with the same cmid after reconnect
			}
			if sent == faultAt && fault != nil {
				fault()
			}
		}
		done := func() bool { return a.Unacked() < 25 }
		if sent == n {
			done = func() bool { return a.Unacked() == 0 }
		}
		if err := a.Pump(ExchangeTimeout, ExchangeResendEvery, done); err != nil {
			return 0, 0, 0, err
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, 0, 0, err
		}
	}
	b.mu.Lock()
	gotFrames := slices.Clone(b.Got[start:])
	b.mu.Unlock()
	got := make([]string, len(gotFrames))
	for i, m := range gotFrames {
		got[i] = m.Str("body")
	}
	want := BodiesN(prefix+"m", n)
	lost, dup, reordered = Verify(got, want)
	if !slices.Equal(got, want) {
		var seqs []string
		for _, m := range gotFrames {
			seqs = append(seqs, fmt.Sprintf("%s@%d/%d", m.Str("body"), m.Int("inboxSeq"), m.Int("seq")))
		}
		return lost, dup, reordered, fmt.Errorf("%s -> %s: lost %d, duplicated %d, reordered %d: recipient saw %d messages, want %d in order, each once (first differences: %v)\n%v",
			a.Account.Username, b.Account.Username, lost, dup, reordered, len(got), len(want), Diff(got, want), seqs)
	}
	acks := a.Acks()
	for i, m := range gotFrames {
		if ack := acks[fmt.Sprintf("%sc%d", prefix, i+1)]; ack.Str("mid") != m.Str("mid") || ack.Int("seq") != m.Int("seq") {
			return lost, dup, reordered, fmt.Errorf("ack %v does not match delivered %v", ack, m)
		}
	}
	return lost, dup, reordered, nil
}

// Verify counts, for one recipient, the messages that never arrived, those
// the app saw more than once, and those that arrived before an earlier one.
func Verify(got, want []string) (lost, duplicated, reordered int) {
	pos := make(map[string]int, len(want))
	for i, w := range want {
		pos[w] = i
	}
	seen := map[string]int{}
	last := -1
	for _, g := range got {
		seen[g]++
		if seen[g] > 1 {
			duplicated++
			continue
		}
		if p, ok := pos[g]; ok {
			if p < last {
				reordered++
			}
			last = max(last, p)
		}
	}
	for _, w := range want {
		if seen[w] == 0 {
			lost++
		}
	}
	return lost, duplicated, reordered
}

// Diff lists the first differences between got and want.
func Diff(got, want []string) []string {
	var out []string
	for i := 0; i < max(len(got), len(want)) && len(out) < 5; i++ {
		g, w := "", ""
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			out = append(out, fmt.Sprintf("#%d got %q want %q", i+1, g, w))
		}
	}
	return out
}
