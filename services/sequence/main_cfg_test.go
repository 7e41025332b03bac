package sequence

import (
	"bufio"
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/testenv"
)

func TestParseConfig(t *testing.T) {
	env := map[string]string{
		"IMKUBE_REDIS_ADDR": "127.0.0.1:6379",
		"IMKUBE_MYSQL_DSN":  "u:p@tcp(127.0.0.1:3306)/imkube",
	}
	tests := []struct {
		name    string
		giveEnv map[string]string
		give    []string
		want    func(*ServiceConfig)
		wantErr string
	}{
		{name: "defaults with the required env", want: func(c *ServiceConfig) {}},
		{name: "flags override env", giveEnv: map[string]string{"IMKUBE_SEQ_STEP": "50"},
			give: []string{"--addr", ":9000", "--step", "70", "--sections", "16"},
			want: func(c *ServiceConfig) { c.Addr, c.Step, c.Sections = ":9000", 70, 16 }},
		{name: "env overrides defaults", giveEnv: map[string]string{"IMKUBE_ADDR": ":8080", "IMKUBE_SEQ_SECTIONS": "64"},
			want: func(c *ServiceConfig) { c.Addr, c.Sections = ":8080", 64 }},
		{name: "missing redis names the field", giveEnv: map[string]string{"IMKUBE_REDIS_ADDR": ""}, wantErr: "redis-addr (IMKUBE_REDIS_ADDR) is required"},
		{name: "missing mysql names the field", giveEnv: map[string]string{"IMKUBE_MYSQL_DSN": ""}, wantErr: "mysql-dsn (IMKUBE_MYSQL_DSN) is required"},
		{name: "bad redis mode", give: []string{"--redis-mode", "ring"}, wantErr: "redis-mode (IMKUBE_REDIS_MODE)"},
		{name: "zero step", give: []string{"--step", "0"}, wantErr: "step (IMKUBE_SEQ_STEP) 0"},
		{name: "malformed env integer", giveEnv: map[string]string{"IMKUBE_SEQ_SECTIONS": "many"}, wantErr: "sections (IMKUBE_SEQ_SECTIONS) \"many\": not an integer"},
		{name: "bad addr", give: []string{"--addr", "nowhere"}, wantErr: "addr (IMKUBE_ADDR)"},
		{name: "bad log level", giveEnv: map[string]string{"IMKUBE_LOG_LEVEL": "loud"}, wantErr: "log-level (IMKUBE_LOG_LEVEL) \"loud\""},
		{name: "log level from a flag", give: []string{"--log-level", "debug"}, want: func(c *ServiceConfig) { c.LogLevel = "debug" }},
		{name: "unknown flag", give: []string{"--nope"}, wantErr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := map[string]string{}
			for k, v := range env {
				e[k] = v
			}
			for k, v := range tt.giveEnv {
				e[k] = v
			}
			got, err := parseConfig(tt.give, func(k string) (string, bool) { v, ok := e[k]; return v, ok })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := DefaultServiceConfig()
			want.RedisAddr, want.MySQLDSN = env["IMKUBE_REDIS_ADDR"], env["IMKUBE_MYSQL_DSN"]
			tt.want(&want)
			if got != want {
				t.Fatalf("config = %+v, want %+v", got, want)
			}
		})
	}
}

// The service process end to end: Run serves the API with Redis and MySQL,
// a Client talks to it, and cancelling the context shuts it down.
func TestRunServesAndShutsDown(t *testing.T) {
	cfg := testDatabase(t)
	_, prefix := testRedis(t)
	c := DefaultServiceConfig()
	c.Addr = "127.0.0.1:0"
	c.RedisAddr = testenv.Require(t, "IMKUBE_REDIS_ADDR")
	c.RedisPrefix = prefix
	c.MySQLDSN = cfg.FormatDSN()
	c.Sections = 32

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, c, pw, testLogger(t))
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("no start line: %v (Run: %v)", err, <-done)
	}
	go io.Copy(io.Discard, pr)
	url := regexp.MustCompile(`http://\S+`).FindString(line)

	cl, err := NewClient(ClientConfig{URL: url}, ClientDeps{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 3 {
		got, err := cl.Allocate(ctx, []Request{{Key: "c:run", Count: 2}})
		if err != nil {
			t.Fatal(err)
		}
		if got[0].First != int64(2*i+1) {
			t.Fatalf("call %d got %+v, want first %d", i, got[0], 2*i+1)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after the context ended, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return within 20s of the context ending")
	}
}
