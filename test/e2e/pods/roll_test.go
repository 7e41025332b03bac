//go:build pods

package pods

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imkube/imkube/internal/imtest"
)

const (
	rollClients   = 200 // half senders, half recipients, 100 on each gateway pod
	rollDrainRate = 25  // spec.drain.connectionsPerSecond: 100 clients take 4 s
	rollRound     = 10  // messages per pair per round while the pool rolls
	// hostIP is the node's host address (hack/node.sh HOST_IP): the source
	// of the suite's connections, trusted as a proxy so that each sign-up can
	// name its own client address (the per-IP sign-up limit is 20).
	hostIP = "10.245.0.1"
)

// forwardedFor adds X-Forwarded-For: ip to every request.
type forwardedFor string

func (ip forwardedFor) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", string(ip))
	return http.DefaultTransport.RoundTrip(r)
}

// register signs up and logs in username from client address ip (retrying
// refusals of a busy password hasher).
func register(api *imtest.API, username, ip string) (imtest.Account, error) {
	a := &imtest.API{Base: api.Base, HTTP: &http.Client{Timeout: 30 * time.Second, Transport: forwardedFor(ip)}}
	var u struct{ ID string }
	var last string
	for try := 0; try < 10; try++ {
		code, err := a.Do("POST", "/api/v1/users", "", map[string]string{"username": username, "password": "correct-horse-battery", "displayName": username}, &u)
		if err == nil && code == http.StatusCreated {
			break
		}
		last = fmt.Sprintf("register %s: status %d, err %v", username, code, err)
		u.ID = ""
		time.Sleep(time.Second)
	}
	if u.ID == "" {
		return imtest.Account{}, fmt.Errorf("%s", last)
	}
	for try := 0; try < 10; try++ {
		var s struct{ Token string }
		code, err := a.Do("POST", "/api/v1/sessions", "", map[string]string{"username": username, "password": "correct-horse-battery"}, &s)
		if err == nil && code == http.StatusOK && s.Token != "" {
			return imtest.Account{ID: u.ID, Username: username, Token: s.Token}, nil
		}
		last = fmt.Sprintf("login %s: status %d, err %v", username, code, err)
		time.Sleep(time.Second)
	}
	return imtest.Account{}, fmt.Errorf("%s", last)
}

// gatewayRoll is the rolling update of the 2-replica GatewayPool with 200
// connected clients sending (issue 15): the pool drains at a measurable
// rate, a pod-template change (heartbeatInterval) rolls it, and
//   - every pair's messages arrive once and in order (imtest.Exchange);
//   - each old pod's evacuation, timed by its clients' reconnect frames,
//     runs within 20% of spec.drain.connectionsPerSecond;
//   - no client is asked to reconnect twice: once a new pod is ready the
//     client Service no longer sends connections to old ones (the serving
//     label), so a client evacuated from the first old pod never lands on
//     the second.
//
// The clients connect straight to the two pods (100 each, so each knows
// where it started) and reconnect through the Service.
func (s *suite) gatewayRoll() {
	t := s.t
	deploy := poolName + "-gateway"
	// 1. A drain rate low enough to time, and the host as trusted proxy.
	s.must("patch", "gwp", poolName, "--type", "merge", "-p",
		fmt.Sprintf(`{"spec":{"drain":{"connectionsPerSecond":%d},"trustedProxies":["%s/32"]}}`, rollDrainRate, hostIP))
	s.gatewayTemplateHas("IMKUBE_DRAIN_RATE", strconv.Itoa(rollDrainRate))
	old := s.settledGateways()
	if len(old) != 2 {
		t.Fatalf("want 2 gateway pods, have %d", len(old))
	}

	// 2. 200 clients, 100 per pod; reconnects go through the Service.
	url := s.gatewayURL()
	api := imtest.NewAPI(url)
	suffix := strconv.FormatInt(time.Now().Unix()%1_000_000, 36)
	start := time.Now()
	accounts := make([]imtest.Account, rollClients)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	work := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				acc, err := register(api, fmt.Sprintf("roll%s-%d", suffix, i), fmt.Sprintf("198.51.100.%d", i+1))
				mu.Lock()
				accounts[i] = acc
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range rollClients {
		work <- i
	}
	close(work)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d sign-ups failed, first: %v", len(errs), errs[0])
	}
	t.Logf("%d accounts in %.0fs", rollClients, time.Since(start).Seconds())
	sessions := make([]*imtest.Session, rollClients)
	home := make([]string, rollClients) // the pod each client starts on
	for i := range sessions {
		// Pair p: sender 2p, recipient 2p+1, on different pods.
		pod := old[(i/2+i%2)%2]
		home[i] = pod.Metadata.Name
		sessions[i] = imtest.NewSession(accounts[i], "d", fmt.Sprintf("http://%s:8080", pod.Status.PodIP))
	}
	work = make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := sessions[i].Connect(30 * time.Second); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
				sessions[i].URLs = []string{url}
			}
		}()
	}
	for i := range sessions {
		work <- i
	}
	close(work)
	wg.Wait()
	defer func() {
		for _, c := range sessions {
			c.Close()
		}
	}()
	if len(errs) > 0 {
		t.Fatalf("%d connects failed, first: %v", len(errs), errs[0])
	}
	conns := s.connections()
	for _, p := range old {
		if conns[p.Metadata.Name] < rollClients/2 {
			t.Fatalf("gateway connections %v: want at least %d on each pod", conns, rollClients/2)
		}
	}

	// 3. Roll (heartbeatInterval is in the pod template) while every pair
	// keeps sending rounds of messages.
	rolled := make(chan struct{})
	var rollErr string
	var rollTook time.Duration
	go func() {
		defer close(rolled)
		time.Sleep(3 * time.Second) // traffic first
		begin := time.Now()
		if r := s.kubectl("patch", "gwp", poolName, "--type", "merge", "-p", `{"spec":{"heartbeatInterval":"20s"}}`); r.err != nil {
			rollErr = fmt.Sprintf("patch heartbeatInterval: %v %s", r.err, r.stderr)
			return
		}
		for end := time.Now().Add(6 * time.Minute); ; time.Sleep(time.Second) {
			if time.Now().After(end) {
				rollErr = "the pool did not roll within 6 minutes"
				return
			}
			names := map[string]bool{}
			settled := true
			for _, p := range s.podsOfQuiet(deploy) {
				names[p.Metadata.Name] = true
				settled = settled && p.ready() && p.Metadata.DeletionTimestamp == nil
			}
			if settled && len(names) == 2 && !names[old[0].Metadata.Name] && !names[old[1].Metadata.Name] {
				break
			}
		}
		rollTook = time.Since(begin)
	}()
	// Plain goroutines, not parallel subtests: go test runs only
	// GOMAXPROCS of those at once, and every pair must send during the roll.
	var pairErrs []string
	for p := range rollClients / 2 {
		a, b := sessions[2*p], sessions[2*p+1]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round, last := 1, false; !last; round++ {
				select {
				case <-rolled:
					last = true // one more round after the roll
				default:
				}
				if _, _, _, err := imtest.ExchangeErr(a, b, fmt.Sprintf("s6bp%dr%d-", p, round), rollRound, 0, nil); err != nil {
					mu.Lock()
					pairErrs = append(pairErrs, fmt.Sprintf("pair %d round %d: %v", p, round, err))
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	<-rolled
	if rollErr != "" {
		t.Fatalf("%s\n%s", rollErr, s.dump())
	}
	if len(pairErrs) > 0 {
		t.Fatalf("%d of %d pairs lost, duplicated or reordered messages; first: %s", len(pairErrs), rollClients/2, pairErrs[0])
	}
	t.Logf("%d pairs sent rounds of %d messages throughout the roll: 0 lost, duplicated or reordered", rollClients/2, rollRound)
	t.Logf("the pool rolled in %.0fs", rollTook.Seconds())

	// 4. Each client was asked to move exactly once; each old pod's pace.
	byPod := map[string][]time.Time{}
	var twice, never []string
	for i, c := range sessions {
		times := c.Reconnects()
		switch n := len(times); {
		case n == 0:
			never = append(never, c.Account.Username)
		case n > 1:
			twice = append(twice, fmt.Sprintf("%s %d times", c.Account.Username, n))
		}
		if len(times) > 0 {
			byPod[home[i]] = append(byPod[home[i]], times[0])
		}
	}
	if len(twice) > 0 {
		t.Errorf("%d clients were asked to reconnect more than once: %v", len(twice), twice[:min(5, len(twice))])
	}
	if len(never) > 0 {
		t.Errorf("%d clients were never asked to reconnect (closed without the drain?): %v", len(never), never[:min(5, len(never))])
	}
	for pod, times := range byPod {
		slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
		span := times[len(times)-1].Sub(times[0])
		if len(times) < 2 || span <= 0 {
			t.Errorf("%s: %d reconnect frames over %s: cannot time the drain", pod, len(times), span)
			continue
		}
		rate := float64(len(times)-1) / span.Seconds()
		t.Logf("%s evacuated %d clients in %.2fs: %.1f/s (spec %d/s)", pod, len(times), span.Seconds(), rate, rollDrainRate)
		if rate < 0.8*rollDrainRate || rate > 1.2*rollDrainRate {
			t.Errorf("%s: evacuation rate %.1f/s, want %d/s within 20%%", pod, rate, rollDrainRate)
		}
	}
}

// gatewayTemplateHas waits until the gateway Deployment's template has env
// name=value and the pool has rolled to it.
func (s *suite) gatewayTemplateHas(name, value string) {
	s.t.Helper()
	deploy := poolName + "-gateway"
	s.eventually(2*time.Minute, "gateway template "+name+"="+value, func() (bool, string) {
		r := s.kubectl("get", "deployment", deploy, "-o", `jsonpath={.spec.template.spec.containers[0].env[?(@.name=="`+name+`")].value}`)
		got := strings.TrimSpace(r.stdout)
		return got == value, fmt.Sprintf("%s=%q", name, got)
	})
	r := s.exec(6*time.Minute, "", "kubectl", "-n", namespace, "rollout", "status", "deployment/"+deploy, "--timeout", "5m")
	if r.err != nil {
		s.t.Fatalf("rollout status %s: %v\n%s\n%s", deploy, r.err, r.stderr, s.dump())
	}
}

// settledGateways waits until the gateway pods are all ready and none is
// terminating, and returns them.
func (s *suite) settledGateways() []pod {
	s.t.Helper()
	var out []pod
	s.eventually(3*time.Minute, "gateway pods settled", func() (bool, string) {
		out = s.podsOf(poolName + "-gateway")
		var st []string
		ok := true
		for _, p := range out {
			ok = ok && p.ready() && p.Metadata.DeletionTimestamp == nil
			st = append(st, fmt.Sprintf("%s ready=%v deleting=%v", p.Metadata.Name, p.ready(), p.Metadata.DeletionTimestamp != nil))
		}
		return ok, strings.Join(st, ", ")
	})
	return out
}

// podsOfQuiet is podsOf for other goroutines: no t.Fatal (nil on errors).
func (s *suite) podsOfQuiet(deploy string) []pod {
	r := s.kubectl("get", "deployment", deploy, "-o", `jsonpath={.spec.selector.matchLabels}`)
	if r.err != nil {
		return nil
	}
	var sel map[string]string
	if json.Unmarshal([]byte(r.stdout), &sel) != nil {
		return nil
	}
	var keys []string
	for k, v := range sel {
		keys = append(keys, k+"="+v)
	}
	var l struct{ Items []pod }
	r = s.kubectl("get", "pods", "-l", strings.Join(keys, ","), "-o", "json")
	if r.err != nil || json.Unmarshal([]byte(r.stdout), &l) != nil {
		return nil
	}
	return l.Items
}
