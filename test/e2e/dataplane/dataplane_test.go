//go:build dataplane

package dataplane

import (
	"flag"
	"fmt"
	"io"
	"maps"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/imtest"
)

// exchange sends n messages from a to b through the shared checker
// (imtest.Exchange): every message once, in order, acks matching.
func exchange(t *testing.T, a, b *imtest.Session, n, faultAt int, fault func()) {
	t.Helper()
	imtest.Exchange(t, a, b, "", n, faultAt, fault)
}

func pair(t *testing.T, c *cluster, aURL, bURL []string) (*imtest.Session, *imtest.Session) {
	alice, bob := c.api.Register(t, "alice"), c.api.Register(t, "bob")
	a, b := imtest.NewSession(alice, "a1", aURL...), imtest.NewSession(bob, "b1", bURL...)
	for _, s := range []*imtest.Session{a, b} {
		if err := s.Connect(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
	}
	return a, b
}

func TestThousandMessagesAcrossGatewaysArriveOnceInOrder(t *testing.T) {
	c := newCluster(t, 2)
	a, b := pair(t, c, []string{c.gateways[0].url()}, []string{c.gateways[1].url()})
	exchange(t, a, b, 1000, 0, nil)
	// Unacked sends are retried after 5 s with the same cmid, and a retry
	// re-pushes (at least once on the wire); the app sees each message once.
	t.Logf("%d duplicate frames dropped by the client", b.Dups)
	// The message service exports its consumer lag (the HPA's metric).
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(c.message.internalURL() + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), "\nimkube_message_consumer_lag") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the message service does not export imkube_message_consumer_lag")
		}
		time.Sleep(time.Second)
	}
}

func TestGatewayKilledMidStreamLosesNothing(t *testing.T) {
	c := newCluster(t, 2)
	// Bob is on gateway 2 and fails over to gateway 1 when it dies.
	a, b := pair(t, c, []string{c.gateways[0].url()}, []string{c.gateways[1].url(), c.gateways[0].url()})
	exchange(t, a, b, 500, 200, func() { c.gateways[1].kill9() })
}

func TestMessageServiceKilledMidStreamStoresEachMessageOnce(t *testing.T) {
	c := newCluster(t, 1)
	url := []string{c.gateways[0].url()}
	a, b := pair(t, c, url, url)
	exchange(t, a, b, 300, 120, func() {
		c.message.kill9()
		time.Sleep(2 * time.Second)
		c.message.start()
	})
	// Every acked message is stored exactly once: history has 300 entries.
	var hist struct {
		Items []map[string]any
		More  bool
	}
	conv := b.Got[0].Str("conv")
	total := 0
	for from := int64(1); ; {
		if code, err := c.api.Do("GET", fmt.Sprintf("/api/v1/conversations/%s/messages?fromSeq=%d&limit=200", conv, from), b.Account.Token, nil, &hist); err != nil || code != 200 {
			t.Fatalf("history: %d %v", code, err)
		}
		total += len(hist.Items)
		if !hist.More || len(hist.Items) == 0 {
			break
		}
		from = int64(hist.Items[len(hist.Items)-1]["seq"].(float64)) + 1
	}
	if total != 300 {
		t.Fatalf("stored %d messages, want 300", total)
	}
}

func TestRedisRestartWithDataLossLosesNoMessage(t *testing.T) {
	c := newCluster(t, 2)
	a, b := pair(t, c, []string{c.gateways[0].url()}, []string{c.gateways[1].url()})
	exchange(t, a, b, 300, 100, func() { deps(t, "restart", "redis") })
}

func TestRocketMQDownAnswersUnavailableAndStoresNothing(t *testing.T) {
	c := newCluster(t, 1)
	url := []string{c.gateways[0].url()}
	a, b := pair(t, c, url, url)
	exchange(t, a, b, 10, 0, nil)
	deps(t, "stop", "rocketmq")
	stopped := true
	defer func() {
		if stopped {
			deps(t, "start", "rocketmq")
		}
	}()
	raw, _ := imtest.Connect(t, c.gateways[0].url(), a.Account.Token, "a2")
	start := time.Now()
	raw.SendJSON(map[string]any{"t": "send", "cmid": "while-down", "to": map[string]string{"user": b.Account.ID}, "kind": "text", "body": "lost?"})
	e := raw.Expect("error", "msg")
	if e.Str("code") != "UNAVAILABLE" || !e.Bool("retryable") || e.Str("cmid") != "while-down" {
		t.Fatalf("send while RocketMQ is down: %v", e)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("UNAVAILABLE took %v", took)
	}
	deps(t, "start", "rocketmq")
	stopped = false
	// Nothing half-stored: the failed send is not in the history; a retry
	// with the same cmid is stored once.
	var hist struct{ Items []map[string]any }
	conv := b.Got[0].Str("conv")
	c.api.Do("GET", "/api/v1/conversations/"+conv+"/messages?fromSeq=1&limit=100", b.Account.Token, nil, &hist)
	for _, it := range hist.Items {
		if it["body"] == "lost?" {
			t.Fatal("a send answered UNAVAILABLE was stored")
		}
	}
	// The client retries with the same cmid until the bus is back, as the
	// SDK does: on an error, and when no answer came within its timeout (a
	// send published while the consumers rebalance after the broker's
	// restart is answered only when they are back, up to ~20 s later).
	deadline := time.Now().Add(3 * time.Minute)
	for acked := false; !acked; {
		raw.SendJSON(map[string]any{"t": "send", "cmid": "while-down", "to": map[string]string{"user": b.Account.ID}, "kind": "text", "body": "lost?"})
		for answered := false; !answered; {
			f, err := raw.NextErr(10 * time.Second)
			switch {
			case err != nil && strings.Contains(err.Error(), "connection closed"):
				t.Fatalf("connection closed while retrying: %v", err)
			case err != nil:
				answered = true // timed out: send again
			case f.T() == "ack":
				acked, answered = true, true
			case f.T() == "error":
				answered = true
				time.Sleep(time.Second)
			}
		}
		if !acked && time.Now().After(deadline) {
			t.Fatal("no ack within 3 minutes of RocketMQ coming back")
		}
	}
	c.api.Do("GET", "/api/v1/conversations/"+conv+"/messages?fromSeq=1&limit=100", b.Account.Token, nil, &hist)
	n := 0
	for _, it := range hist.Items {
		if it["body"] == "lost?" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("retried send stored %d times, want once", n)
	}
}

func TestMySQLDownDelaysAcksButLosesNothing(t *testing.T) {
	c := newCluster(t, 1)
	url := []string{c.gateways[0].url()}
	a, b := pair(t, c, url, url)
	exchange(t, a, b, 50, 20, func() {
		deps(t, "stop", "mysql")
		go func() {
			time.Sleep(10 * time.Second)
			if out, err := exec.Command(os.Getenv("IMKUBE_DEPS_SCRIPT"), "start", "mysql").CombinedOutput(); err != nil {
				t.Errorf("restart mysql: %v\n%s", err, out)
			}
		}()
	})
}

func TestManyUsersThroughTwoGatewaysSurviveASequenceServiceRestart(t *testing.T) {
	c := newCluster(t, 2)
	g1, g2 := c.gateways[0].url(), c.gateways[1].url()
	var once sync.Once
	restart := func() {
		once.Do(func() {
			c.sequence.stop()
			c.sequence.start()
		})
	}
	type pr struct{ a, b *imtest.Session }
	var pairs []pr
	for i := range 3 {
		from, to := c.api.Register(t, fmt.Sprintf("sender%d", i)), c.api.Register(t, fmt.Sprintf("recipient%d", i))
		a, b := imtest.NewSession(from, "d", g1, g2), imtest.NewSession(to, "d", g2, g1)
		for _, s := range []*imtest.Session{a, b} {
			if err := s.Connect(30 * time.Second); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
		}
		pairs = append(pairs, pr{a, b})
	}
	t.Run("pairs", func(t *testing.T) {
		for i, p := range pairs {
			t.Run(fmt.Sprintf("pair%d", i), func(t *testing.T) {
				t.Parallel()
				exchange(t, p.a, p.b, 200, 80, restart)
			})
		}
	})
}

var soak = flag.Duration("soak", 0, "run TestSoak for this long, injecting random faults (not in CI): go test -tags dataplane -run Soak -soak 10m -timeout 0 ./test/e2e/dataplane/")

// TestSoak repeats random faults during traffic for -soak; it runs only when
// asked for.
func TestSoak(t *testing.T) {
	if *soak == 0 {
		t.Skip("soak mode is opt-in: -soak 10m")
	}
	c := newCluster(t, 2)
	faults := map[string]func(){
		"gateway kill -9":  func() { c.gateways[1].kill9(); c.gateways[1].start() },
		"message kill -9":  func() { c.message.kill9(); c.message.start() },
		"sequence restart": func() { c.sequence.stop(); c.sequence.start() },
		"redis restart":    func() { deps(t, "restart", "redis") },
	}
	names := slices.Sorted(maps.Keys(faults))
	end := time.Now().Add(*soak)
	for round := 0; time.Now().Before(end); round++ {
		name := names[mrand.IntN(len(names))]
		t.Logf("round %d: %s", round, name)
		from, to := c.api.Register(t, fmt.Sprintf("soaka%d", round)), c.api.Register(t, fmt.Sprintf("soakb%d", round))
		a, b := imtest.NewSession(from, "d", c.gateways[0].url(), c.gateways[1].url()), imtest.NewSession(to, "d", c.gateways[1].url(), c.gateways[0].url())
		for _, s := range []*imtest.Session{a, b} {
			if err := s.Connect(time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		exchange(t, a, b, 200, 1+mrand.IntN(199), faults[name])
		a.Close()
		b.Close()
	}
}
