package bench

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/freeport"
	"github.com/imkube/imkube/internal/store"
)

// A system is one server under test: imkube dev, or the Centrifugo peer with
// or without history. start runs it as its own process (pinned to the
// server core) with the users of the run already known to it.
type system interface {
	name() string
	start(ctx context.Context, env *runEnv, users []string, group []string) (*server, error)
	// dial opens an authenticated connection of user that hears its own
	// messages (imkube: its inbox; Centrifugo: its personal channel) and, if
	// group is set, the group's.
	// wd is the dialer to use (its source address).
	dial(ctx context.Context, wd *websocket.Dialer, s *server, user string, onPayload func([]byte)) (*benchConn, error)
	// sendDirect sends payload from c to user; sendGroup to the group.
	sendDirect(c *benchConn, to string, payload []byte) error
	sendGroup(c *benchConn, group string, payload []byte) error
}

// runEnv is what every system of one run shares.
type runEnv struct {
	dir        string // scratch folder of the run
	self       string // the imkube binary (imkube dev is started from it)
	centrifugo string // the Centrifugo binary ("" when not installed)
	pin        bool   // pin servers to CPU 0 with taskset
	// readDiffusion: imkube stores a group message once and pushes a
	// notify frame (the group is over the threshold); else write diffusion.
	readDiffusion bool
	// cpuprofile: the file for a CPU profile of imkube's measured phase.
	cpuprofile string
	// addrs: the source addresses of the generator's connections.
	addrs *sourceAddrs
	dial  dialFlags
}

// server is a running server process.
type server struct {
	cmd     *exec.Cmd
	url     string // http://127.0.0.1:port
	groupID string // imkube: the group's id
	tokens  map[string]string
	// cpuprofile: where profile writes the server's CPU profile ("": none;
	// the server then serves /debug/pprof to loopback clients).
	cpuprofile string
	members    map[string]bool // who subscribes to the group (Centrifugo)
	logFile    string          // the server's output
	stop       func()
}

// cpu returns the CPU time the server process has used (user + system).
func (s *server) cpu() (time.Duration, error) { return procCPU(s.cmd.Process.Pid) }

// rss returns the server's resident memory in bytes.
func (s *server) rss() (int64, error) { return procRSS(s.cmd.Process.Pid) }

// procCPU reads utime+stime from /proc/<pid>/stat (in clock ticks of 1/100 s,
// the value of USER_HZ on Linux).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces: fields after ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("bench: malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("bench: short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	st, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("bench: no VmRSS")
}

// startProcess starts bin pinned to CPU 0 (taskset, when env.pin) with
// GOMAXPROCS=1, logging to logFile, and waits until url+ready answers 200.
func startProcess(ctx context.Context, env *runEnv, logFile, url, ready string, bin string, args ...string) (*server, error) {
	cmd, stop, err := launch(ctx, env, procSpec{
		name: filepath.Base(bin), bin: bin, args: args, env: append(os.Environ(), "GOMAXPROCS=1"),
		logFile: logFile, ready: url + ready, readyWithin: 60 * time.Second, stopWithin: 10 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	return &server{cmd: cmd, url: url, logFile: logFile, tokens: map[string]string{}, stop: stop}, nil
}

// procSpec is a server process of a benchmark.
type procSpec struct {
	name      string // in errors
	bin       string
	args, env []string
	logFile   string
	ready     string // the URL that answers 200 once it serves
	// readyWithin bounds the start; stopWithin how long stop waits after
	// SIGINT before it kills.
	readyWithin, stopWithin time.Duration
}

// launch starts p.bin (pinned to CPU 0 with taskset when env.pin), logging
// to p.logFile, waits until p.ready answers 200, and returns the command and
// its stop (SIGINT, then SIGKILL after p.stopWithin).
func launch(ctx context.Context, env *runEnv, p procSpec) (*exec.Cmd, func(), error) {
	name, argv := p.bin, p.args
	if env.pin {
		name, argv = "taskset", append([]string{"-c", "0", p.bin}, p.args...)
	}
	cmd := exec.Command(name, argv...)
	cmd.Env = p.env
	log, err := os.Create(p.logFile)
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); log.Close(); close(exited) }()
	stop := func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(p.stopWithin):
			cmd.Process.Kill()
			<-exited
		}
	}
	deadline := time.Now().Add(p.readyWithin)
	for {
		select {
		case <-exited:
			out, _ := os.ReadFile(p.logFile)
			return nil, nil, fmt.Errorf("bench: %s exited at start: %s", p.name, tail(out, 800))
		case <-ctx.Done():
			stop()
			return nil, nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if ok, _ := httpOK(p.ready); ok {
			return cmd, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			out, _ := os.ReadFile(p.logFile)
			return nil, nil, fmt.Errorf("bench: %s not ready at %s within %s: %s", p.name, p.ready, p.readyWithin, tail(out, 800))
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// benchConn is one WebSocket connection of the load generator. Its reader
// goroutine hands every delivered payload to onPayload.
type benchConn struct {
	ws   *websocket.Conn
	wmu  sync.Mutex
	done chan struct{}
	id   int // next command id (Centrifugo)
}

func (c *benchConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

func (c *benchConn) close() {
	c.ws.Close()
	<-c.done
}

// ---- imkube dev ----

type imkubeSystem struct{}

func (imkubeSystem) name() string { return "imkube dev" }

func (imkubeSystem) start(ctx context.Context, env *runEnv, users []string, group []string) (*server, error) {
	dir, err := os.MkdirTemp(env.dir, "imkube-")
	if err != nil {
		return nil, err
	}
	db, err := store.OpenSQLite(ctx, dir)
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		if err := db.CreateUser(ctx, store.User{ID: u, Username: "bench" + u, DisplayName: "b", PasswordHash: "x", CreatedAt: 1}); err != nil {
			db.Close()
			return nil, err
		}
	}
	db.Close()
	keys, err := auth.LoadOrCreateKeys(filepath.Join(dir, "jwt.key"), 24*time.Hour)
	if err != nil {
		return nil, err
	}
	c := config.DefaultCluster()
	c.Limits.SendRatePerSecond, c.Limits.SendBurst, c.Limits.ConnectionsPerIPPerSecond = 1000000, 1000000, 1000000
	c.Groups.ReadDiffusionThreshold, c.Groups.MaxMembers = max(500, len(group)+1), max(10000, len(group)+1)
	if env.readDiffusion {
		c.Groups.ReadDiffusionThreshold = 2
	}
	cj, _ := json.Marshal(c)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cj, 0o600); err != nil {
		return nil, err
	}
	port, err := freeport.Port()
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	args := []string{"dev", "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--data", dir, "--config", filepath.Join(dir, "config.json"), "--log-level", "warn"}
	if env.cpuprofile != "" {
		args = append(args, "--pprof=true")
	}
	s, err := startProcess(ctx, env, filepath.Join(dir, "server.log"), url, "/readyz", env.self, args...)
	if err != nil {
		return nil, err
	}
	s.cpuprofile = env.cpuprofile
	for _, u := range users {
		s.tokens[u], _, _ = keys.Issue(u)
	}
	if len(group) > 1 {
		body, _ := json.Marshal(map[string]any{"name": "bench", "members": group[1:]})
		req, _ := http.NewRequestWithContext(ctx, "POST", url+"/api/v1/groups", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.tokens[group[0]])
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			s.stop()
			return nil, err
		}
		var g struct{ ID string }
		json.NewDecoder(resp.Body).Decode(&g)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			s.stop()
			return nil, fmt.Errorf("bench: create group: %s", resp.Status)
		}
		s.groupID = g.ID
	}
	return s, nil
}

func (imkubeSystem) dial(ctx context.Context, wd *websocket.Dialer, s *server, user string, onPayload func([]byte)) (*benchConn, error) {
	ws, _, err := wd.DialContext(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/ws", nil)
	if err != nil {
		return nil, err
	}
	auth, _ := json.Marshal(map[string]string{"t": "auth", "token": s.tokens[user], "device": "bench"})
	ws.WriteMessage(websocket.TextMessage, auth)
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, data, err := ws.ReadMessage()
	if err != nil || !bytes.HasPrefix(data, []byte(`{"t":"auth_ok"`)) {
		ws.Close()
		return nil, fmt.Errorf("bench: imkube auth of %s: %s %v", user, data, err)
	}
	ws.SetReadDeadline(time.Time{})
	c := &benchConn{ws: ws, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			switch {
			case bytes.HasPrefix(data, []byte(`{"t":"msg"`)):
				if p := stringField(data, `"body":"`); p != nil {
					onPayload(p)
				}
			case bytes.HasPrefix(data, []byte(`{"t":"error"`)):
				if serverErrors.Add(1) <= 5 { // say why messages go missing
					fmt.Fprintf(os.Stderr, "bench: imkube error frame to %s: %s\n", user, data)
				}
			case bytes.HasPrefix(data, []byte(`{"t":"notify"`)): // read diffusion: "#seq"
				onPayload(append([]byte{'#'}, numberField(data, `"seq":`)...))
			case bytes.HasPrefix(data, []byte(`{"t":"ack"`)) && bytes.Contains(data, []byte(`"cmid":"g`)): // "!seq!payload"
				p := append([]byte{'!'}, numberField(data, `"seq":`)...)
				onPayload(append(append(p, '!'), stringField(data, `"cmid":"g`)...))
			}
		}
	}()
	return c, nil
}

func (imkubeSystem) sendDirect(c *benchConn, to string, payload []byte) error {
	c.id++
	return c.write(fmt.Appendf(nil, `{"t":"send","cmid":"b%d","to":{"user":%q},"kind":"text","body":%q}`, c.id, to, payload))
}

func (imkubeSystem) sendGroup(c *benchConn, group string, payload []byte) error {
	// The cmid carries the payload: under read diffusion recipients get
	// only the seq, which the sender's ack maps back to it.
	return c.write(fmt.Appendf(nil, `{"t":"send","cmid":"g%s","to":{"group":%q},"kind":"text","body":%q}`, payload, group, payload))
}

// serverErrors counts the error frames imkube sent the generator.
var serverErrors atomic.Int64

// stringField returns the raw value of the first JSON string field that
// starts at key (payloads are plain ASCII without escapes).
func stringField(b []byte, key string) []byte {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil
	}
	b = b[i+len(key):]
	j := bytes.IndexByte(b, '"')
	if j < 0 {
		return nil
	}
	return b[:j]
}

// numberField returns the digits of the first JSON number field at key.
func numberField(b []byte, key string) []byte {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil
	}
	b = b[i+len(key):]
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	return b[:j]
}

// ---- Centrifugo ----

// centrifugoSystem is the real Centrifugo server (memory engine), JSON
// protocol over WebSocket. Every user subscribes to its personal channel
// "u<id>" (and the group channel "g"); senders publish from the client
// (allow_publish_for_client).
type centrifugoSystem struct{ history bool }

func (c centrifugoSystem) name() string {
	if c.history {
		return "centrifugo history"
	}
	return "centrifugo no history"
}

const centrifugoSecret = "imkube-bench-hmac-secret-not-for-production"

func (c centrifugoSystem) start(ctx context.Context, env *runEnv, users []string, group []string) (*server, error) {
	if env.centrifugo == "" {
		return nil, errors.New("bench: centrifugo is not installed (hack/centrifugo.sh install)")
	}
	dir, err := os.MkdirTemp(env.dir, "centrifugo-")
	if err != nil {
		return nil, err
	}
	port, err := freeport.Port()
	if err != nil {
		return nil, err
	}
	ns := map[string]any{"allow_subscribe_for_client": true, "allow_publish_for_client": true}
	if c.history {
		ns["history_size"], ns["history_ttl"], ns["force_recovery"] = 1000, "300s", true
	}
	cfg := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "warn"},
		"client": map[string]any{
			"token":           map[string]any{"hmac_secret_key": centrifugoSecret},
			"allowed_origins": []string{"*"},
		},
		"channel":  map[string]any{"without_namespace": ns},
		"http_api": map[string]any{"key": "bench"},
		"health":   map[string]any{"enabled": true},
	}
	cj, _ := json.MarshalIndent(cfg, "", "  ")
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, cj, 0o600); err != nil {
		return nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	s, err := startProcess(ctx, env, filepath.Join(dir, "server.log"), url, "/health", env.centrifugo, "--config", path)
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		s.tokens[u] = hs256(centrifugoSecret, fmt.Sprintf(`{"sub":%q,"exp":%d}`, u, time.Now().Add(24*time.Hour).Unix()))
	}
	if len(group) > 1 {
		s.groupID = "g"
		s.members = map[string]bool{}
		for _, u := range group[1:] { // the sender publishes without subscribing, as in imkube
			s.members[u] = true
		}
	}
	return s, nil
}

// hs256 returns a JWT with claims signed by HMAC-SHA256 with secret.
func hs256(secret, claims string) string {
	enc := base64.RawURLEncoding
	msg := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(claims))
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return msg + "." + enc.EncodeToString(m.Sum(nil))
}

func (centrifugoSystem) dial(ctx context.Context, wd *websocket.Dialer, s *server, user string, onPayload func([]byte)) (*benchConn, error) {
	ws, _, err := wd.DialContext(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/connection/websocket", nil)
	if err != nil {
		return nil, err
	}
	cmds := fmt.Sprintf(`{"id":1,"connect":{"token":%q,"name":"imkube-bench"}}`+"\n"+`{"id":2,"subscribe":{"channel":"u%s"}}`, s.tokens[user], user)
	want := 2
	if s.members[user] {
		cmds += "\n" + `{"id":3,"subscribe":{"channel":"g"}}`
		want = 3
	}
	ws.WriteMessage(websocket.TextMessage, []byte(cmds))
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for got := 0; got < want; {
		_, data, err := ws.ReadMessage()
		if err != nil {
			ws.Close()
			return nil, fmt.Errorf("bench: centrifugo connect of %s: %v", user, err)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			if bytes.Contains(line, []byte(`"error"`)) {
				ws.Close()
				return nil, fmt.Errorf("bench: centrifugo connect of %s: %s", user, line)
			}
			if bytes.HasPrefix(line, []byte(`{"id":`)) {
				got++
			}
		}
	}
	ws.SetReadDeadline(time.Time{})
	c := &benchConn{ws: ws, done: make(chan struct{}), id: 3}
	go func() {
		defer close(c.done)
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			for len(data) > 0 {
				line := data
				if i := bytes.IndexByte(data, '\n'); i >= 0 {
					line, data = data[:i], data[i+1:]
				} else {
					data = nil
				}
				switch {
				case len(line) == 2 && string(line) == "{}": // server ping: answer with a pong
					c.write([]byte("{}"))
				case bytes.HasPrefix(line, []byte(`{"push":`)):
					if p := stringField(line, `"data":"`); p != nil {
						onPayload(p)
					}
				}
			}
		}
	}()
	return c, nil
}

func (centrifugoSystem) sendDirect(c *benchConn, to string, payload []byte) error {
	c.wmu.Lock()
	c.id++
	id := c.id
	c.wmu.Unlock()
	return c.write(fmt.Appendf(nil, `{"id":%d,"publish":{"channel":"u%s","data":%q}}`, id, to, payload))
}

func (centrifugoSystem) sendGroup(c *benchConn, group string, payload []byte) error {
	c.wmu.Lock()
	c.id++
	id := c.id
	c.wmu.Unlock()
	return c.write(fmt.Appendf(nil, `{"id":%d,"publish":{"channel":%q,"data":%q}}`, id, group, payload))
}

// centrifugoPath finds the Centrifugo binary: $IMKUBE_CENTRIFUGO, else the
// one hack/centrifugo.sh installed; "" when there is none.
func centrifugoPath() string {
	if p := os.Getenv("IMKUBE_CENTRIFUGO"); p != "" {
		return p
	}
	cache := os.Getenv("IMKUBE_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "imkube")
	}
	p := filepath.Join(cache, "tools", "centrifugo-"+CentrifugoVersion, "centrifugo")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// CentrifugoVersion is the peer the benchmarks compare with (hack/centrifugo.sh).
const CentrifugoVersion = "v6.9.1"

// profile fetches a CPU profile of d from the server into s.cpuprofile in
// the background; the channel answers when it is written (at once when the
// server is not profiled).
func (s *server) profile(ctx context.Context, d time.Duration) <-chan error {
	done := make(chan error, 1)
	if s.cpuprofile == "" {
		done <- nil
		return done
	}
	go func() {
		done <- func() error {
			req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", s.url, max(int(d.Seconds()), 1)), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("bench: cpu profile: %w", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("bench: cpu profile: %s", resp.Status)
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return fmt.Errorf("bench: cpu profile: %w", err)
			}
			return os.WriteFile(s.cpuprofile, b, 0o644)
		}()
	}()
	return done
}
