//go:build dataplane

package dataplane

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/internal/webhook"
)

const (
	webhookSecret     = "dataplane-webhook-secret-0123456789"
	dataplaneAdminKey = "dataplane-admin-key-0123456789"
)

// The after-send event hook is fed from an outbox in MySQL, written in the
// message's transaction: a message service killed (kill -9) while the
// receiver is failing loses no event, and the receiver gets every message
// of the conversation at least once, in order, once it recovers.
func TestEventHookAtLeastOnceInOrderAcrossMessageServiceKill(t *testing.T) {
	c := newCluster(t, 1)
	url := []string{c.gateways[0].url()}
	a, b := pair(t, c, url, url)

	var mu sync.Mutex
	failing := true
	var calls int
	var delivered []string // bodies of events answered 2xx, in arrival order
	badSig := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var e struct{ Event, Body string }
		json.Unmarshal(body, &e)
		mu.Lock()
		defer mu.Unlock()
		calls++
		if !webhook.Verify([]byte(webhookSecret), body, r.Header.Get(webhook.HeaderSignature)) {
			badSig++
		}
		if failing {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if e.Event == "message.stored" {
			delivered = append(delivered, e.Body)
		}
	}))
	t.Cleanup(srv.Close)
	cfg := fmt.Sprintf(`{"limits":{"sendRatePerSecond":100000,"sendBurst":100000,"maxMessageBytes":16384,"connectionsPerIPPerSecond":100000},"webhooks":{"events":{"url":%q}}}`, srv.URL)
	if err := os.WriteFile(c.cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// The message service reloads config.json within 5 s: probe until the
	// (failing) receiver is called.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		imtest.Exchange(t, a, b, fmt.Sprintf("probe%d-", i), 1, 0, nil)
		time.Sleep(500 * time.Millisecond)
		mu.Lock()
		n := calls
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the events hook was never called after config.json named it")
		}
	}

	// Push tokens go through the gateway's REST proxy to the message service.
	if code, err := c.api.Do("PUT", "/api/v1/devices/b1/push-token", b.Account.Token, map[string]string{"provider": "fcm", "token": "tok"}, nil); code != http.StatusNoContent {
		t.Fatalf("push token through the gateway: %d %v", code, err)
	}

	const n = 200
	adminAddr := freeAddr(t)
	imtest.Exchange(t, a, b, "w", n, n/2, func() {
		c.message.kill9()
		time.Sleep(2 * time.Second)
		// The restarted message service also serves the admin API.
		c.message.env = append(c.message.env, "IMKUBE_ADMIN_ADDR="+adminAddr, "IMKUBE_ADMIN_KEY="+dataplaneAdminKey)
		c.message.start()
	})
	mu.Lock()
	failing = false
	mu.Unlock()

	want := imtest.BodiesN("wm", n)
	var got []string
	deadline = time.Now().Add(90 * time.Second) // a killed holder's lease runs out after 15 s
	for {
		mu.Lock()
		got = got[:0]
		seen := map[string]bool{}
		for _, body := range delivered {
			if strings.HasPrefix(body, "wm") && !seen[body] {
				seen[body] = true
				got = append(got, body)
			}
		}
		sigs := badSig
		mu.Unlock()
		if sigs > 0 {
			t.Fatalf("%d hook requests with a bad signature", sigs)
		}
		if len(got) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events delivered for %d of %d messages; missing %v", len(got), n, imtest.Diff(got, want))
		}
		time.Sleep(200 * time.Millisecond)
	}
	lost, _, reordered := imtest.Verify(got, want)
	if lost+reordered > 0 {
		t.Fatalf("events: lost %d, reordered %d (first differences %v)", lost, reordered, imtest.Diff(got, want))
	}
	mu.Lock()
	raw := 0
	for _, body := range delivered {
		if strings.HasPrefix(body, "wm") {
			raw++
		}
	}
	mu.Unlock()
	t.Logf("%d events delivered in order (%d deliveries: at least once)", n, raw)
	carol := c.api.Register(t, "carol")
	adminReachesGateways(t, c, adminAddr, &carol)
}

// The admin API of a separate message-service process reaches users on
// another process's gateway: a system message (stored, pushed through
// RocketMQ) and a broadcast (to every gateway Redis knows alive).
func adminReachesGateways(t *testing.T, c *cluster, adminAddr string, to *imtest.Account) {
	t.Helper()
	conn, _ := imtest.Connect(t, c.gateways[0].url(), to.Token, "admin-check")
	defer conn.Close()
	admin := imtest.NewAPI("http://" + adminAddr)
	if code, _ := admin.Do("POST", "/admin/v1/broadcast", "", map[string]string{"body": "x"}, nil); code != http.StatusUnauthorized {
		t.Fatalf("admin API without the key: %d, want 401", code)
	}
	if code, err := admin.Do("POST", "/admin/v1/messages", dataplaneAdminKey, map[string]any{"users": []string{to.ID}, "body": "from the operator"}, nil); code != 200 {
		t.Fatalf("system message: %d %v", code, err)
	}
	if f := conn.Expect("msg", "presence"); f.Str("kind") != "system" || f.Str("body") != "from the operator" {
		t.Fatalf("system message frame %v", f)
	}
	if code, err := admin.Do("POST", "/admin/v1/broadcast", dataplaneAdminKey, map[string]string{"body": "hello everyone"}, nil); code != http.StatusAccepted {
		t.Fatalf("broadcast: %d %v", code, err)
	}
	if f := conn.Expect("broadcast", "presence", "msg"); f.Str("body") != "hello everyone" {
		t.Fatalf("broadcast frame %v", f)
	}
}
