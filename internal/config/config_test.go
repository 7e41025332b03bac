package config

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

func envOf(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// Malformed values, from the environment or from a flag, are errors that
// name both the flag and the variable; nothing is silently replaced by a
// default (IMKUBE_MAX_CONNECTIONS=10k used to become 100000).
func TestMalformedValuesAreErrorsNamingFlagAndVariable(t *testing.T) {
	tests := []struct {
		name    string
		role    Role
		giveEnv map[string]string
		give    []string
		want    []string
	}{
		{name: "an integer with a unit in the environment", role: RoleGateway,
			giveEnv: map[string]string{"IMKUBE_MAX_CONNECTIONS": "10k"}, want: []string{"max-connections (IMKUBE_MAX_CONNECTIONS)", `"10k"`, "not an integer"}},
		{name: "an integer with a unit in a flag", role: RoleGateway,
			give: []string{"--max-connections", "10k"}, want: []string{"max-connections (IMKUBE_MAX_CONNECTIONS)", `"10k"`}},
		{name: "a duration without a unit in the environment", role: RoleGateway,
			giveEnv: map[string]string{"IMKUBE_DRAIN_TIMEOUT": "30"}, want: []string{"drain-timeout (IMKUBE_DRAIN_TIMEOUT)", "not a duration"}},
		{name: "a malformed duration in a flag", role: RoleGateway,
			give: []string{"--idle-timeout", "soon"}, want: []string{"idle-timeout (IMKUBE_IDLE_TIMEOUT)", `"soon"`}},
		{name: "a malformed token lifetime", role: RoleUser,
			giveEnv: map[string]string{"IMKUBE_TOKEN_TTL": "1 day"}, want: []string{"token-ttl (IMKUBE_TOKEN_TTL)"}},
		{name: "a malformed node id", role: RoleMessage,
			giveEnv: map[string]string{"IMKUBE_NODE_ID": "one"}, want: []string{"node-id (IMKUBE_NODE_ID)", `"one"`}},
		{name: "malformed sections in the environment", role: RoleSequence,
			giveEnv: map[string]string{"IMKUBE_SEQ_SECTIONS": "many"}, want: []string{`sections (IMKUBE_SEQ_SECTIONS) "many": not an integer`}},
		{name: "malformed step in a flag", role: RoleSequence,
			give: []string{"--step", "1e3"}, want: []string{"step (IMKUBE_SEQ_STEP)", `"1e3"`}},
		{name: "two bad values are both reported", role: RoleGateway,
			giveEnv: map[string]string{"IMKUBE_MAX_CONNECTIONS": "x", "IMKUBE_HEARTBEAT_INTERVAL": "y"},
			want:    []string{"max-connections (IMKUBE_MAX_CONNECTIONS)", "heartbeat-interval (IMKUBE_HEARTBEAT_INTERVAL)"}},
		{name: "an unknown flag", role: RoleUser, give: []string{"--nope"}, want: []string{"flag provided but not defined", "imkube user --help"}},
		{name: "a flag of another role", role: RoleUser, give: []string{"--gateway-id", "g"}, want: []string{"flag provided but not defined: -gateway-id"}},
		{name: "a stray argument", role: RoleDev, give: []string{"extra"}, want: []string{`unexpected arguments ["extra"]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.role, tt.give, envOf(tt.giveEnv))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestBadConfigurationIsRefusedNamingTheField(t *testing.T) {
	tests := []struct {
		name string
		give []string
		want []string // substrings of the error; empty: no error
	}{
		{"everything missing", []string{"--log-level", "info", "--redis-mode", "standalone"}, []string{"redis-addr (IMKUBE_REDIS_ADDR)", "mysql-dsn (IMKUBE_MYSQL_DSN)", "rocketmq-namesrv (IMKUBE_ROCKETMQ_NAMESRV)", "jwt-key-file (IMKUBE_JWT_KEY_FILE)", "sequence-url (IMKUBE_SEQUENCE_URL)"}},
		{"a bad log level", []string{"--log-level", "loud"}, []string{"log-level (IMKUBE_LOG_LEVEL)"}},
		{"a bad redis mode", []string{"--log-level", "info", "--redis-mode", "ring", "--redis-addr", "r:1", "--mysql-dsn", "u:p@tcp(db:3306)/imkube", "--rocketmq-namesrv", "n:1", "--jwt-key-file", "k", "--sequence-url", "http://seq:8083"}, []string{"redis-mode (IMKUBE_REDIS_MODE)"}},
		{"a malformed DSN", []string{"--redis-addr", "r:1", "--mysql-dsn", "d", "--rocketmq-namesrv", "n:1", "--jwt-key-file", "k", "--sequence-url", "http://seq:8083"}, []string{"mysql-dsn (IMKUBE_MYSQL_DSN) is malformed"}},
		{"a peer URL without a scheme", []string{"--redis-addr", "r:1", "--mysql-dsn", "u:p@tcp(db:3306)/imkube", "--rocketmq-namesrv", "n:1", "--jwt-key-file", "k", "--sequence-url", "seq:8083"}, []string{"sequence-url (IMKUBE_SEQUENCE_URL)"}},
		{"a complete configuration", []string{"--log-level", "info", "--redis-mode", "standalone", "--redis-addr", "r:1", "--mysql-dsn", "u:p@tcp(db:3306)/imkube", "--rocketmq-namesrv", "n:1", "--jwt-key-file", "k", "--sequence-url", "http://seq:8083", "--node-id", "7"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(RoleMessage, tt.give, envOf(nil))
			if err == nil {
				err = c.Validate(RoleMessage)
			}
			if len(tt.want) == 0 {
				if err != nil || c.Message.NodeID != 7 {
					t.Fatalf("valid configuration refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// The sequence service's settings (formerly its own parser): defaults, then
// env, then flags; errors name the field.
func TestSequenceSettings(t *testing.T) {
	env := map[string]string{
		"HOSTNAME":          "seq-0",
		"IMKUBE_REDIS_ADDR": "127.0.0.1:6379",
		"IMKUBE_MYSQL_DSN":  "u:p@tcp(127.0.0.1:3306)/imkube",
		// POST /v1/seq takes the internal token derived from these keys.
		"IMKUBE_JWT_KEY_FILE": "/etc/imkube/auth/jwt-key",
	}
	tests := []struct {
		name    string
		giveEnv map[string]string
		give    []string
		want    func(*Config)
		wantErr string
	}{
		{name: "defaults with the required env", want: func(c *Config) {}},
		{name: "flags override env", giveEnv: map[string]string{"IMKUBE_SEQ_STEP": "50"},
			give: []string{"--addr", ":9000", "--step", "70", "--sections", "16"},
			want: func(c *Config) { c.Addr, c.Sequence.Step, c.Sequence.Sections = ":9000", 70, 16 }},
		{name: "env overrides defaults", giveEnv: map[string]string{"IMKUBE_ADDR": ":8080", "IMKUBE_SEQ_SECTIONS": "64"},
			want: func(c *Config) { c.Addr, c.Sequence.Sections = ":8080", 64 }},
		{name: "the sequence prefix is its own variable", giveEnv: map[string]string{"IMKUBE_SEQ_REDIS_PREFIX": "p:", "IMKUBE_REDIS_PREFIX": "other:"},
			want: func(c *Config) { c.Sequence.RedisPrefix = "p:" }},
		{name: "missing redis names the field", giveEnv: map[string]string{"IMKUBE_REDIS_ADDR": ""}, wantErr: "redis-addr (IMKUBE_REDIS_ADDR) is required"},
		{name: "missing mysql names the field", giveEnv: map[string]string{"IMKUBE_MYSQL_DSN": ""}, wantErr: "mysql-dsn (IMKUBE_MYSQL_DSN) is required"},
		{name: "missing key file names the field", giveEnv: map[string]string{"IMKUBE_JWT_KEY_FILE": ""}, wantErr: "jwt-key-file (IMKUBE_JWT_KEY_FILE) is required"},
		{name: "bad redis mode", give: []string{"--redis-mode", "ring"}, wantErr: "redis-mode (IMKUBE_REDIS_MODE)"},
		{name: "braces in the prefix", give: []string{"--redis-prefix", "{x}"}, wantErr: "redis-prefix (IMKUBE_SEQ_REDIS_PREFIX)"},
		{name: "zero step", give: []string{"--step", "0"}, wantErr: "step (IMKUBE_SEQ_STEP) 0"},
		{name: "malformed env integer", giveEnv: map[string]string{"IMKUBE_SEQ_SECTIONS": "many"}, wantErr: "sections (IMKUBE_SEQ_SECTIONS) \"many\": not an integer"},
		{name: "bad addr", give: []string{"--addr", "nowhere"}, wantErr: "addr (IMKUBE_ADDR)"},
		{name: "bad log level", giveEnv: map[string]string{"IMKUBE_LOG_LEVEL": "loud"}, wantErr: "log-level (IMKUBE_LOG_LEVEL) \"loud\""},
		{name: "log level from a flag", give: []string{"--log-level", "debug"}, want: func(c *Config) { c.LogLevel = "debug" }},
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
			got, err := Load(RoleSequence, tt.give, envOf(e))
			if err == nil {
				err = got.Validate(RoleSequence)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := Defaults(RoleSequence, "seq-0")
			want.Redis.Addr, want.MySQL.DSN = env["IMKUBE_REDIS_ADDR"], env["IMKUBE_MYSQL_DSN"]
			want.Auth.JWTKeyFile = env["IMKUBE_JWT_KEY_FILE"]
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("config = %+v, want %+v", got, want)
			}
		})
	}
}

// --help lists exactly the settings the role reads.
func TestHelpListsExactlyTheRolesSettings(t *testing.T) {
	tests := []struct {
		role      Role
		want, not []string
	}{
		{RoleGateway, []string{"--gateway-id", "IMKUBE_MAX_CONNECTIONS", "--rocketmq-namesrv", "--redis-addr", "--jwt-key-file", "IMKUBE_REDIS_PASSWORD"}, []string{"--mysql-dsn", "--mysql-database", "--sections", "--sequence-url", "--data", "--token-ttl"}},
		{RoleMessage, []string{"--mysql-dsn", "IMKUBE_MYSQL_DATABASE", "--sequence-url", "--node-id", "--rocketmq-namesrv"}, []string{"--gateway-id", "--sections", "--data", "--max-connections"}},
		{RoleUser, []string{"--mysql-dsn", "--mysql-database", "--token-ttl", "--node-id", "--jwt-key-file"}, []string{"--redis-addr", "--rocketmq-namesrv", "--gateway-id"}},
		{RoleSequence, []string{"--sections", "--step", "IMKUBE_SEQ_REDIS_PREFIX", "--mysql-dsn", "--mysql-database", "--redis-addr", "--jwt-key-file"}, []string{"--rocketmq-namesrv", "IMKUBE_REDIS_PREFIX\n", "--config-file"}},
		{RoleDev, []string{"--addr", "--data", "--config", "--max-connections", "--notify-interval"}, []string{"--redis-addr", "--mysql-dsn", "--gateway-id"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.role), func(t *testing.T) {
			_, err := Load(tt.role, []string{"--help"}, envOf(nil))
			if !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("--help: err = %v, want flag.ErrHelp", err)
			}
			var b bytes.Buffer
			Usage(&b, tt.role)
			out := b.String()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("usage of %s lacks %q:\n%s", tt.role, w, out)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out, n) {
					t.Errorf("usage of %s lists %q, which it does not read", tt.role, n)
				}
			}
			// Every listed flag is accepted by Load.
			for _, s := range SettingsOf(tt.role) {
				if s.Flag() == "" {
					continue
				}
				if _, err := Load(tt.role, []string{"--" + s.Flag() + "=" + sample(s)}, envOf(nil)); err != nil {
					t.Errorf("--%s: %v", s.Flag(), err)
				}
			}
		})
	}
}

func sample(s Setting) string {
	var c Config
	switch s.bind(&c).(type) {
	case intVal, int64Val:
		return "3"
	case durVal:
		return "3s"
	case boolVal:
		return "true"
	}
	return "x"
}

// Logger filters the base logger it is given (it used to ignore base).
func TestLoggerUsesTheBaseHandlerAtTheConfiguredLevel(t *testing.T) {
	var b bytes.Buffer
	base := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := Defaults(RoleUser, "h")
	c.LogLevel = "warn"
	log := c.Logger(base, "user")
	log.Info("hidden")
	log.Warn("shown")
	if out := b.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "shown") || !strings.Contains(out, "svc=user") {
		t.Fatalf("log output %q: want only the warning, tagged svc=user", out)
	}
}

// mysql-database replaces the database of the DSN (the rest stays), and the
// server DSN (no database) is what creates it.
func TestMySQLDatabaseReplacesTheDSNsDatabase(t *testing.T) {
	c, err := Load(RoleMessage, nil, envOf(map[string]string{
		"IMKUBE_MYSQL_DSN":      "imkube:pw@tcp(db:3306)/imkube?parseTime=true",
		"IMKUBE_MYSQL_DATABASE": "imkube_chat_demo",
	}))
	if err != nil {
		t.Fatal(err)
	}
	dsn, server, err := c.MySQL.DSNs()
	if err != nil {
		t.Fatal(err)
	}
	if dsn != "imkube:pw@tcp(db:3306)/imkube_chat_demo?parseTime=true" || server != "imkube:pw@tcp(db:3306)/?parseTime=true" {
		t.Errorf("DSNs() = %q, %q", dsn, server)
	}
	c.MySQL.Database = "chat;drop"
	if err := c.Validate(RoleMessage); err == nil || !strings.Contains(err.Error(), "mysql-database (IMKUBE_MYSQL_DATABASE)") {
		t.Errorf("Validate with a bad database name: %v", err)
	}
}

func TestPingIntervalMustBeBelowTheIdleTimeout(t *testing.T) {
	for _, tt := range []struct {
		give    []string
		wantBad bool
	}{
		{[]string{"--ping-interval", "90s"}, true}, // the idle timeout is 60 s
		{[]string{"--ping-interval", "75s", "--idle-timeout", "75s"}, true},
		{[]string{"--ping-interval", "25s", "--idle-timeout", "75s"}, false},
		{nil, false}, // a third of the idle timeout
	} {
		c, err := Load(RoleGateway, tt.give, envOf(nil))
		if err != nil {
			t.Fatalf("%v: %v", tt.give, err)
		}
		err = c.Validate(RoleGateway)
		bad := err != nil && strings.Contains(err.Error(), "ping-interval (IMKUBE_PING_INTERVAL)")
		if bad != tt.wantBad {
			t.Errorf("%v: validation %v, want the ping interval refused: %v", tt.give, err, tt.wantBad)
		}
	}
}

// `imkube dev` takes the gateway's connection bound and notify interval
// (benchmarks and small deployments tune them), checked as the gateway's.
func TestDevTakesTheGatewaysConnectionSettings(t *testing.T) {
	c, err := Load(RoleDev, []string{"--max-connections", "500"}, envOf(map[string]string{"IMKUBE_NOTIFY_INTERVAL": "0"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(RoleDev); err != nil || c.Gateway.MaxConnections != 500 || c.Gateway.NotifyInterval != 0 {
		t.Fatalf("dev: %v; max connections %d, notify interval %s", err, c.Gateway.MaxConnections, c.Gateway.NotifyInterval)
	}
	for _, give := range [][]string{{"--max-connections", "0"}, {"--notify-interval", "-5s"}, {"--notify-interval", "11s"}} {
		c, err := Load(RoleDev, give, envOf(nil))
		if err == nil {
			err = c.Validate(RoleDev)
		}
		if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(give[0], "--")) {
			t.Errorf("dev %v: %v, want an error naming the flag", give, err)
		}
	}
}
