//go:build dataplane

// Package dataplane runs imkube in distributed mode, each service its own
// process, on the real Redis, MariaDB and RocketMQ of hack/deps.sh, and
// injects faults: killed gateways and message services, restarted
// dependencies. It stops and starts the shared dependencies, so it runs
// alone after the other suites (`make test-dataplane`, part of `make test`).
package dataplane

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/admin"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/imkube/imkube/internal/freeport"
	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/internal/mysqltest"
	"github.com/imkube/imkube/internal/testenv"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imkube-dataplane")
	if err != nil {
		panic(err)
	}
	binary = os.Getenv("IMKUBE_BIN")
	if binary == "" {
		binary = filepath.Join(dir, "imkube")
		cmd := exec.Command("go", "build", "-o", binary, "../../../cmd/imkube")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build imkube:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one service process.
type proc struct {
	t    *testing.T
	name string
	args []string
	env  []string
	addr string
	// internal is the address of the internal port (/readyz, /metrics)
	// when the process has one (IMKUBE_INTERNAL_ADDR), else empty.
	internal string
	log      string
	cmd      *exec.Cmd
	done     chan struct{}
}

// freeAddr picks the address a child process will listen on, outside the
// ephemeral range so that no outgoing connection takes it first.
func freeAddr(t *testing.T) string {
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func (p *proc) url() string { return "http://" + p.addr }

// internalURL serves /readyz and /metrics: the internal port, or the
// process's one port when it has none.
func (p *proc) internalURL() string {
	if p.internal != "" {
		return "http://" + p.internal
	}
	return p.url()
}

func (p *proc) start() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd = exec.Command(binary, append(p.args, "--addr", p.addr)...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); f.Close(); close(p.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.internalURL() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("%s exited during start; log:\n%s", p.name, tail(p.log))
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s not ready in 60s; log:\n%s", p.name, tail(p.log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill9 ends the process at once, as a crash would.
func (p *proc) kill9() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop ends the process gracefully.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.kill9()
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// cluster is one isolated platform: its own MySQL database, Redis key
// prefix, RocketMQ topics and consumer groups.
type cluster struct {
	t        *testing.T
	user     *proc
	sequence *proc
	message  *proc
	gateways []*proc
	api      *imtest.API
	// cfgFile is the cluster config.json the services hot-reload (every 5 s).
	cfgFile string
}

func newCluster(t *testing.T, gateways int) *cluster {
	t.Helper()
	ns := testenv.Require(t, "IMKUBE_ROCKETMQ_NAMESRV")
	broker := testenv.Require(t, "IMKUBE_ROCKETMQ_BROKER")
	redis := testenv.Require(t, "IMKUBE_REDIS_ADDR")
	dsn := mysqltest.NewDatabase(t)
	b := make([]byte, 4)
	rand.Read(b)
	id := hex.EncodeToString(b)
	dir := t.TempDir()
	if keep := os.Getenv("IMKUBE_DATAPLANE_LOGS"); keep != "" {
		dir = filepath.Join(keep, t.Name())
		os.MkdirAll(dir, 0o755)
	}
	key := filepath.Join(dir, "jwt.key")
	os.WriteFile(key, []byte(hex.EncodeToString(append(b, make([]byte, 28)...))+"\n"), 0o600)
	// Tests send as fast as they can: raise the per-user limits through the
	// cluster config, as an operator would.
	cfgFile := filepath.Join(dir, "config.json")
	os.WriteFile(cfgFile, []byte(`{"limits":{"sendRatePerSecond":100000,"sendBurst":100000,"maxMessageBytes":16384,"connectionsPerIPPerSecond":100000}}`), 0o644)
	upTopic, pushTopic := "T_UP_"+id, "T_PUSH_"+id
	createTopics(t, ns, broker, upTopic, pushTopic)

	c := &cluster{t: t, cfgFile: cfgFile}
	mk := func(name string, args ...string) *proc {
		return &proc{t: t, name: name, args: args, addr: freeAddr(t), log: filepath.Join(dir, name+".log")}
	}
	c.user, c.sequence, c.message = mk("user", "user"), mk("sequence", "sequence"), mk("message", "message")
	for i := range gateways {
		c.gateways = append(c.gateways, mk(fmt.Sprintf("gateway%d", i+1), "gateway"))
	}
	env := []string{
		"IMKUBE_REDIS_ADDR=" + redis, "IMKUBE_MYSQL_DSN=" + dsn, "IMKUBE_ROCKETMQ_NAMESRV=" + ns,
		"IMKUBE_JWT_KEY_FILE=" + key, "IMKUBE_REDIS_PREFIX=t" + id + ":", "IMKUBE_SEQ_REDIS_PREFIX=t" + id + ":seq:",
		"IMKUBE_UPSTREAM_TOPIC=" + upTopic, "IMKUBE_PUSH_TOPIC=" + pushTopic, "IMKUBE_BUS_GROUP_PREFIX=t" + id + "-",
		"IMKUBE_USER_URL=" + c.user.url(), "IMKUBE_MESSAGE_URL=" + c.message.url(), "IMKUBE_SEQUENCE_URL=" + c.sequence.url(),
		"IMKUBE_HEARTBEAT_INTERVAL=1s", "IMKUBE_LOG_LEVEL=info", "IMKUBE_CONFIG_FILE=" + cfgFile,
		"IMKUBE_SIGNUP_BURST=100000", // every test account signs up from this machine
		"IMKUBE_PRESENCE_GRACE=2s",   // presence tests wait for "offline"
		"IMKUBE_WEBHOOK_SECRET=" + webhookSecret,
	}
	for _, p := range append([]*proc{c.user, c.sequence, c.message}, c.gateways...) {
		p.env = append(p.env, env...)
		p.env = append(p.env, "IMKUBE_INSTANCE_NAME="+p.name+"-"+id, "IMKUBE_SENTINEL_LOG_DIR="+filepath.Join(dir, "sentinel-"+p.name))
		if strings.HasPrefix(p.name, "gateway") {
			p.env = append(p.env, "IMKUBE_GATEWAY_ID="+p.name+"-"+id)
		}
	}
	for _, p := range append([]*proc{c.user, c.sequence, c.message}, c.gateways...) {
		p.start()
		t.Cleanup(p.stop)
	}
	c.api = imtest.NewAPI(c.gateways[0].url())
	t.Cleanup(func() {
		// Nothing secret in the logs: no DSN credentials, no tokens, no key.
		keyText, _ := os.ReadFile(key)
		for _, p := range append([]*proc{c.user, c.sequence, c.message}, c.gateways...) {
			b, _ := os.ReadFile(p.log)
			for name, secret := range map[string]string{"MySQL credentials": ":imkube@", "a JWT": "eyJhbGci", "the JWT key": strings.TrimSpace(string(keyText))} {
				if strings.Contains(string(b), secret) {
					t.Errorf("%s log contains %s", p.name, name)
				}
			}
		}
		if t.Failed() {
			for _, p := range append([]*proc{c.user, c.sequence, c.message}, c.gateways...) {
				t.Logf("--- %s log (tail) ---\n%s", p.name, tail(p.log))
			}
		}
	})
	return c
}

func createTopics(t *testing.T, ns, broker string, topics ...string) {
	a, err := admin.NewAdmin(admin.WithResolver(primitive.NewPassthroughResolver(strings.Split(ns, ";"))))
	if err != nil {
		t.Fatalf("rocketmq admin: %v", err)
	}
	defer a.Close()
	for _, topic := range topics {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := a.CreateTopic(ctx, admin.WithTopicCreate(topic), admin.WithBrokerAddrCreate(broker), admin.WithReadQueueNums(8), admin.WithWriteQueueNums(8))
		cancel()
		if err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
	}
	t.Cleanup(func() {
		a, err := admin.NewAdmin(admin.WithResolver(primitive.NewPassthroughResolver(strings.Split(ns, ";"))))
		if err != nil {
			return
		}
		defer a.Close()
		for _, topic := range topics {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			a.DeleteTopic(ctx, admin.WithTopicDelete(topic), admin.WithBrokerAddrDelete(broker), admin.WithNameSrvAddr(strings.Split(ns, ";")))
			cancel()
		}
	})
}

// deps runs hack/deps.sh (stop/start of a shared dependency).
func deps(t *testing.T, args ...string) {
	t.Helper()
	script := testenv.Require(t, "IMKUBE_DEPS_SCRIPT")
	cmd := exec.Command(script, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("deps.sh %v: %v\n%s", args, err, out)
	}
}
