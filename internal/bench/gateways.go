// Package bench holds the `imkube bench` scenarios that drive a whole
// platform (the sequence benchmark lives with the sequence service).
package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/store"
)

// BenchFanoutGateways is `imkube bench fanout-gateways`: one group, N
// members, some online across two in-process gateways (a push crosses
// gateways); it raises the publish rate until the p99
// delivery latency exceeds the target and reports deliveries/s, latency,
// rows written per message and bytes allocated per delivery, for write
// diffusion (a group at the threshold) and read diffusion (a large group).
func BenchFanoutGateways(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("bench fanout-gateways", flag.ContinueOnError)
	fs.SetOutput(stdout)
	members := fs.Int("members", 10000, "members of the read-diffusion group")
	writeMembers := fs.Int("write-members", 500, "members of the write-diffusion group (= the threshold)")
	online := fs.Int("online", 2000, "online members (split across 2 gateways)")
	stage := fs.Duration("stage", 3*time.Second, "duration of each rate step")
	target := fs.Duration("p99", 200*time.Millisecond, "stop raising the rate when p99 delivery latency exceeds this")
	maxRate := fs.Int("max-rate", 2000, "highest publish rate tried (messages/s)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *online >= *members || *online < 1 {
		return fmt.Errorf("bench fanout-gateways: online (%d) must not exceed members", *online)
	}
	dir, err := os.MkdirTemp("", "imkube-bench-fanout-gateways")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c := config.DefaultCluster()
	c.Limits.SendRatePerSecond, c.Limits.SendBurst, c.Limits.ConnectionsPerIPPerSecond = 1000000, 1000000, 1000000
	c.Groups.ReadDiffusionThreshold, c.Groups.MaxMembers = *writeMembers, max(*members, *writeMembers)
	s, err := app.StartDev(ctx, "127.0.0.1:0", dir, app.Options{Cluster: &c, BcryptCost: 4, Log: log})
	if err != nil {
		return err
	}
	defer s.Close()
	url2, _, err := s.AddGateway("bench-gw2")
	if err != nil {
		return err
	}
	keys, err := auth.LoadKeys(filepath.Join(dir, "jwt.key"), time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imkube bench fanout-gateways: %d online of %d (read diffusion) / %d (write diffusion) members, 2 gateways, %d cores, stage %v, p99 target %v\n\n",
		*online, *members, *writeMembers, runtime.NumCPU(), *stage, *target)
	ids := make([]string, *members)
	for i := range ids {
		ids[i] = strconv.Itoa(800000000 + i)
		u := store.User{ID: ids[i], Username: "bench" + ids[i], DisplayName: "b", PasswordHash: "x", CreatedAt: 1}
		if err := s.Store.CreateUser(ctx, u); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%-6s %8s %14s %10s %10s %12s %14s\n", "mode", "rate/s", "deliveries/s", "p50 ms", "p99 ms", "rows/msg", "bytes/delivery")
	for _, mode := range []struct {
		name string
		n    int
	}{{"write", *writeMembers}, {"read", *members}} {
		on := min(*online, mode.n-1)
		if err := fanoutMode(ctx, s, url2, keys, ids[:mode.n], on, mode.name, *stage, *target, *maxRate, stdout); err != nil {
			return err
		}
	}
	return nil
}

func fanoutMode(ctx context.Context, s *app.Server, url2 string, keys *auth.Keys, ids []string, online int, mode string,
	stage, target time.Duration, maxRate int, out io.Writer) error {
	owner, members := ids[0], ids[1:]
	tok, _, _ := keys.Issue(owner)
	body, _ := json.Marshal(map[string]any{"name": "bench-" + mode, "members": members})
	req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+"/api/v1/groups", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	var g struct{ ID, Conv string }
	json.NewDecoder(resp.Body).Decode(&g)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		return fmt.Errorf("create group: %s", resp.Status)
	}

	var sent sync.Map // seq -> send time
	var mu sync.Mutex
	var lat []time.Duration
	var deliveries atomic.Int64
	dial := func(base, user string) (*websocket.Conn, error) {
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
		if err != nil {
			return nil, err
		}
		t, _, _ := keys.Issue(user)
		ws.WriteJSON(map[string]string{"t": "auth", "token": t, "device": "bench"})
		var ok map[string]any
		if err := ws.ReadJSON(&ok); err != nil || ok["t"] != "auth_ok" {
			ws.Close()
			return nil, fmt.Errorf("auth %s: %v %v", user, ok, err)
		}
		return ws, nil
	}
	var wg sync.WaitGroup
	clients := make([]*websocket.Conn, 0, online)
	for i := range online {
		base := s.URL
		if i%2 == 1 {
			base = url2
		}
		ws, err := dial(base, members[i])
		if err != nil {
			return err
		}
		clients = append(clients, ws)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, data, err := ws.ReadMessage()
				if err != nil {
					return
				}
				var f struct {
					T   string
					Seq int64
				}
				json.Unmarshal(data, &f)
				if f.T != "msg" && f.T != "notify" {
					continue
				}
				if v, ok := sent.Load(f.Seq); ok {
					d := time.Since(v.(time.Time))
					deliveries.Add(1)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			}
		}()
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
		wg.Wait()
	}()
	sender, err := dial(s.URL, owner)
	if err != nil {
		return err
	}
	defer sender.Close()
	// The sender learns each message's seq from its ack.
	pendingByCMID := sync.Map{}
	go func() {
		for {
			var f struct {
				T, CMID string
				Seq     int64
			}
			if err := sender.ReadJSON(&f); err != nil {
				return
			}
			if f.T == "ack" {
				if v, ok := pendingByCMID.Load(f.CMID); ok {
					sent.Store(f.Seq, v)
				}
			}
		}
	}()
	n := 0
	for rate := 5; rate <= maxRate; rate *= 2 {
		mu.Lock()
		lat = lat[:0]
		mu.Unlock()
		deliveries.Store(0)
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		msgs := 0
		for time.Since(start) < stage {
			<-tick.C
			n++
			msgs++
			cmid := fmt.Sprintf("%s-%d", mode, n)
			pendingByCMID.Store(cmid, time.Now())
			sender.WriteJSON(map[string]any{"t": "send", "cmid": cmid, "to": map[string]string{"group": g.ID}, "kind": "text", "body": "bench message"})
		}
		tick.Stop()
		time.Sleep(500 * time.Millisecond) // let the last deliveries land
		elapsed := time.Since(start)
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		mu.Lock()
		l := slices.Clone(lat)
		mu.Unlock()
		slices.Sort(l)
		d := deliveries.Load()
		rows, _ := s.Store.CountInboxRows(ctx, g.Conv)
		pct := func(p float64) float64 {
			if len(l) == 0 {
				return 0
			}
			return float64(l[min(len(l)-1, int(p*float64(len(l))))].Microseconds()) / 1000
		}
		perMsg := 1 + float64(rows)/float64(max(n, 1))
		fmt.Fprintf(out, "%-6s %8d %14.0f %10.1f %10.1f %12.1f %14.0f\n", mode, rate, float64(d)/elapsed.Seconds(), pct(0.5), pct(0.99),
			perMsg, float64(after.TotalAlloc-before.TotalAlloc)/float64(max(d, 1)))
		if time.Duration(pct(0.99)*float64(time.Millisecond)) > target || d < int64(msgs*online)/2 {
			break
		}
	}
	return nil
}
