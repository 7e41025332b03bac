package platform_test

import (
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/imkube/imkube/services/platform"
)

func TestBadConfigurationIsRefusedNamingTheField(t *testing.T) {
	for _, v := range []string{"IMKUBE_REDIS_ADDR", "IMKUBE_MYSQL_DSN", "IMKUBE_ROCKETMQ_NAMESRV", "IMKUBE_JWT_KEY_FILE", "IMKUBE_LOG_LEVEL", "IMKUBE_REDIS_MODE"} {
		t.Setenv(v, "")
	}
	all := platform.NeedRedis | platform.NeedMySQL | platform.NeedRocketMQ | platform.NeedKeys
	tests := []struct {
		name string
		give []string
		want []string // substrings of the error; empty: no error
	}{
		{"everything missing", []string{"--log-level", "info", "--redis-mode", "standalone"}, []string{"redis-addr (IMKUBE_REDIS_ADDR)", "mysql-dsn (IMKUBE_MYSQL_DSN)", "rocketmq-namesrv (IMKUBE_ROCKETMQ_NAMESRV)", "jwt-key-file (IMKUBE_JWT_KEY_FILE)"}},
		{"a bad log level", []string{"--log-level", "loud"}, []string{"log-level (IMKUBE_LOG_LEVEL)"}},
		{"a bad redis mode", []string{"--log-level", "info", "--redis-mode", "ring", "--redis-addr", "r:1", "--mysql-dsn", "d", "--rocketmq-namesrv", "n:1", "--jwt-key-file", "k"}, []string{"redis-mode (IMKUBE_REDIS_MODE)"}},
		{"a complete configuration", []string{"--log-level", "info", "--redis-mode", "standalone", "--redis-addr", "r:1", "--mysql-dsn", "d", "--rocketmq-namesrv", "n:1", "--jwt-key-file", "k", "--extra", "x"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var extra *string
			p, err := platform.ParseFlags("svc", tt.give, io.Discard, "127.0.0.1:0", all, slog.New(slog.DiscardHandler), func(fs *flag.FlagSet) {
				extra = fs.String("extra", "", "a service flag")
			})
			if len(tt.want) == 0 {
				if err != nil || p == nil || *extra != "x" {
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
