//go:build dataplane

package dataplane

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/imtest"
)

// messageGrace is the message pods' terminationGracePeriodSeconds (the
// operator's render): a graceful stop must end well within it.
const messageGrace = 50 * time.Second

// metricSum scrapes p's /metrics and sums the samples of one metric (0 when
// it has none yet). It may run on any goroutine: failures are Errorf.
func metricSum(t *testing.T, p *proc, name string) float64 {
	t.Helper()
	resp, err := http.Get(p.internalURL() + "/metrics")
	if err != nil {
		t.Errorf("scrape %s: %v", p.name, err)
		return 0
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Errorf("%s: %q: %v", p.name, line, err)
		}
		sum += v
	}
	return sum
}

// addMessage starts one more message service of c (another replica of the
// consumer group), as a rolling update's new pod would be.
func addMessage(t *testing.T, c *cluster, name string) *proc {
	p := &proc{t: t, name: name, args: []string{"message"}, addr: freeAddr(t), log: filepath.Join(filepath.Dir(c.message.log), name+".log")}
	for _, kv := range c.message.env {
		if v, ok := strings.CutPrefix(kv, "IMKUBE_INSTANCE_NAME="); ok {
			kv = "IMKUBE_INSTANCE_NAME=" + name + strings.TrimPrefix(v, "message")
		}
		p.env = append(p.env, kv)
	}
	p.start()
	t.Cleanup(p.stop)
	return p
}

// A message service stopped with SIGTERM mid-burst while another one keeps
// consuming: every message arrives once and in order, and no upstream record
// is consumed twice (the surviving replica's dedup counter stays 0: the
// stopped one finished its records in progress and committed their offsets
// before its queues moved). Clients never resend here, so a dedup hit can
// only be a re-consumed record. The process exits well within its grace
// period and logs no error. (A kill -9 is allowed redeliveries:
// TestMessageServiceKilledMidStreamStoresEachMessageOnce.)
func TestMessageServiceRollingStopConsumesNothingTwice(t *testing.T) {
	c := newCluster(t, 1)
	second := addMessage(t, c, "message2")
	defer func(d time.Duration) { imtest.ExchangeResendEvery = d }(imtest.ExchangeResendEvery)
	imtest.ExchangeResendEvery = time.Hour

	url := c.gateways[0].url()
	type pr struct{ a, b *imtest.Session }
	var pairs []pr
	for i := range 10 {
		from, to := c.api.Register(t, fmt.Sprintf("rollsender%d", i)), c.api.Register(t, fmt.Sprintf("rollrecipient%d", i))
		a, b := imtest.NewSession(from, "d", url), imtest.NewSession(to, "d", url)
		for _, s := range []*imtest.Session{a, b} {
			if err := s.Connect(30 * time.Second); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
		}
		pairs = append(pairs, pr{a, b})
	}
	// exchangeAll runs one exchange on every pair at once (goroutines, not
	// t.Parallel: -parallel is GOMAXPROCS, 2 on a small machine, and a
	// fault that waits for traffic must not stall the only running pairs).
	exchangeAll := func(prefix string, n, faultAt int, fault func()) {
		var wg sync.WaitGroup
		for _, p := range pairs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lost, dup, reordered, err := imtest.ExchangeErr(p.a, p.b, prefix, n, faultAt, fault)
				if err != nil {
					t.Error(err)
					return
				}
				if lost+dup+reordered != 0 {
					t.Errorf("%s: lost %d, duplicated %d, reordered %d", p.a.Account.Username, lost, dup, reordered)
				}
			}()
		}
		wg.Wait()
	}
	// Warm-up: the burst starts once message2 consumes: the rebalance
	// gives it half of the queues, and the client (third_party: patched to
	// unlock a queue it loses) hands them over within seconds. Each pair is
	// one conversation, hashed to one of the topic's queues.
	warmStart := time.Now()
	deadline := warmStart.Add(3 * time.Minute)
	round := 0
	for ; metricSum(t, second, "imkube_message_processing_seconds_count") == 0; round++ {
		if time.Now().After(deadline) {
			t.Fatalf("message2 processed nothing in 3 minutes of traffic: the rebalance gave it no queue")
		}
		exchangeAll(fmt.Sprintf("w%d-", round), 5, 0, nil)
		if t.Failed() {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	warm := metricSum(t, second, "imkube_message_processing_seconds_count")
	t.Logf("message2 took its first records %s after the warm-up began (%d rounds of 5 messages per pair)", time.Since(warmStart).Round(time.Second), round)
	var (
		once sync.Once
		took time.Duration
	)
	sigterm := func() {
		once.Do(func() {
			// Mid-burst, and only once message2 is consuming records
			// of the burst.
			deadline := time.Now().Add(60 * time.Second)
			for metricSum(t, second, "imkube_message_processing_seconds_count") < warm+20 {
				if time.Now().After(deadline) {
					t.Errorf("message2 processed fewer than 20 records of the burst in 60s")
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			start := time.Now()
			second.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-second.done:
				took = time.Since(start)
			case <-time.After(2 * messageGrace):
				t.Errorf("message2 still running %s after SIGTERM", 2*messageGrace)
				second.kill9()
			}
		})
	}
	// Each pair's sender calls the fault at its 60th message; the first
	// one waits there for message2 to take 20 records, the others wait
	// on the Once: 10 x 60 messages in flight or done, half of the
	// queues message2's.
	exchangeAll("", 150, 60, sigterm)
	if t.Failed() {
		return
	}
	t.Logf("message2 exited %s after SIGTERM", took)
	if took > messageGrace {
		t.Errorf("message2 took %s to stop, more than its grace period %s", took, messageGrace)
	}
	if code := second.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("message2 exited with %d after SIGTERM, want 0", code)
	}
	log, _ := os.ReadFile(second.log)
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("message2 logged an error: %s", line)
		}
	}
	if !strings.Contains(string(log), "rocketmq consumer stopped") {
		t.Errorf("message2 never logged its consumer's graceful stop")
	}
	if hits := metricSum(t, c.message, "imkube_message_dedup_hits_total"); hits != 0 {
		t.Errorf("the surviving message service deduplicated %v re-consumed records, want 0", hits)
	}
}
