package dashboards_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/mysqltest"
	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/internal/telemetry/telemetrytest"
	"github.com/imkube/imkube/internal/testenv"
)

var (
	assembledOnce sync.Once
	assembled     map[string]*dto.MetricFamily
)

func tok() string {
	b := make([]byte, 5)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// assembledFamilies starts the four distributed roles through internal/app
// on the real MySQL and Redis of hack/deps.sh (the bus in-process, so no
// other test's records are consumed), records one value on every instrument
// set each role built, and returns the union of their /metrics, plus the
// operator's instruments. Built once per test binary.
func assembledFamilies(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	assembledOnce.Do(func() { assembled = buildAssembled(t) })
	if assembled == nil {
		t.Fatal("assembling the distributed roles failed (see the first test's log)")
	}
	return assembled
}

func buildAssembled(t *testing.T) map[string]*dto.MetricFamily {
	dsn := mysqltest.NewDatabase(t)
	redis := testenv.Require(t, "IMKUBE_REDIS_ADDR")
	key := filepath.Join(t.TempDir(), "jwt.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := bus.NewInProc(bus.InProcOptions{})
	t.Cleanup(func() { b.Close() })
	base := func(role config.Role) config.Config {
		c := config.Defaults(role, "dash-"+tok())
		c.Addr, c.MySQL.DSN, c.Redis.Addr, c.Auth.JWTKeyFile = "127.0.0.1:0", dsn, redis, key
		c.Redis.Prefix, c.Sequence.RedisPrefix, c.Sequence.Sections = "dash:"+tok()+":", "dash:seq:"+tok()+":", 16
		c.RocketMQ.NameServers = "127.0.0.1:1"
		c.Flow.LogDir = t.TempDir()
		c.Message.SequenceURL = "http://127.0.0.1:1"
		c.Gateway.UserURL, c.Gateway.MessageURL = "http://127.0.0.1:1", "http://127.0.0.1:1"
		return c
	}
	out := map[string]*dto.MetricFamily{}
	for _, role := range []config.Role{config.RoleSequence, config.RoleUser, config.RoleMessage, config.RoleGateway} {
		cfg := base(role)
		s, err := app.Start(context.Background(), cfg, []config.Role{role},
			app.Options{BcryptCost: 4, Adapters: app.NewDistributed(cfg, nil).WithBus(nopClose{b})})
		if err != nil {
			t.Fatalf("start %s: %v", role, err)
		}
		t.Cleanup(func() { s.Close() })
		for _, set := range s.Instruments() {
			if err := telemetrytest.Exercise(set); err != nil {
				t.Fatal(err)
			}
		}
		fams, err := telemetrytest.Scrape(s.Metrics())
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(out, fams)
	}
	// The operator is assembled by operator.Main, which builds this set.
	tel, err := telemetry.New(context.Background(), telemetry.Config{ServiceName: "imkube-operator"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.Shutdown(context.Background()) })
	op, err := telemetry.NewOperator(tel.MeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	telemetrytest.Exercise(op)
	fams, err := telemetrytest.Scrape(tel.Handler())
	if err != nil {
		t.Fatal(err)
	}
	for n, f := range fams {
		if _, ok := out[n]; !ok {
			out[n] = f
		}
	}
	return out
}

type nopClose struct{ *bus.InProc }

func (nopClose) Close() error { return nil }
