//go:build dataplane

package dataplane

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/internal/testenv"
	"github.com/imkube/imkube/operator/gatewaypool"
	"github.com/imkube/imkube/operator/imcluster"
)

// isolationEnv are the settings that keep clusters apart on shared
// dependencies; the operator must render every one of them.
var isolationEnv = []string{"IMKUBE_UPSTREAM_TOPIC", "IMKUBE_PUSH_TOPIC", "IMKUBE_BUS_GROUP_PREFIX",
	"IMKUBE_REDIS_PREFIX", "IMKUBE_SEQ_REDIS_PREFIX", "IMKUBE_MYSQL_DATABASE"}

// renderedCluster starts the processes of IMCluster namespace/name with the
// environment the operator renders into its Deployments (and a GatewayPool's),
// on the real dependencies: only what differs between a pod and a process on
// this host is replaced (file paths, peer URLs, the DSN Secret, the pod name).
// Every cluster gets the same DSN, Redis and RocketMQ.
func renderedCluster(t *testing.T, namespace, name string, gateways int) (*cluster, map[string]string) {
	t.Helper()
	ns := testenv.Require(t, "IMKUBE_ROCKETMQ_NAMESRV")
	broker := testenv.Require(t, "IMKUBE_ROCKETMQ_BROKER")
	redis := testenv.Require(t, "IMKUBE_REDIS_ADDR")
	dsn := testenv.Require(t, "IMKUBE_MYSQL_DSN")
	c := &imv1.IMCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: imv1.IMClusterSpec{Dependencies: imv1.DependenciesSpec{
			RocketMQ: imv1.RocketMQSpec{NameServers: strings.Split(ns, ";"), BrokerAddresses: []string{broker}},
			Redis:    imv1.RedisSpec{Addresses: []string{redis}, Mode: imv1.RedisStandalone},
			MySQL: imv1.MySQLSpec{DSNSecretRef: corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "mysql"}, Key: "dsn"}},
		}},
	}
	pool := &imv1.GatewayPool{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "edge"},
		Spec: imv1.GatewayPoolSpec{ClusterRef: imv1.ClusterReference{Name: name}}}
	rendered := map[string][]corev1.EnvVar{}
	for _, d := range imcluster.DesiredDeployments(c, "test") {
		rendered[d.Spec.Template.Spec.Containers[0].Name] = d.Spec.Template.Spec.Containers[0].Env
	}
	rendered["gateway"] = gatewaypool.DesiredDeployment(pool, c, "test").Spec.Template.Spec.Containers[0].Env

	b := make([]byte, 4)
	rand.Read(b)
	id := hex.EncodeToString(b)
	dir := t.TempDir()
	key := filepath.Join(dir, "jwt.key")
	os.WriteFile(key, []byte(hex.EncodeToString(append(b, make([]byte, 28)...))+"\n"), 0o600)
	cfgFile := filepath.Join(dir, "config.json")
	os.WriteFile(cfgFile, []byte(`{"limits":{"sendRatePerSecond":100000,"sendBurst":100000,"maxMessageBytes":16384,"connectionsPerIPPerSecond":100000}}`), 0o644)

	cl := &cluster{t: t}
	mk := func(role, name string) *proc {
		return &proc{t: t, name: name, args: []string{role}, addr: freeAddr(t), log: filepath.Join(dir, name+".log")}
	}
	cl.user, cl.sequence, cl.message = mk("user", "user"), mk("sequence", "sequence"), mk("message", "message")
	for i := range gateways {
		cl.gateways = append(cl.gateways, mk("gateway", fmt.Sprintf("gateway%d", i+1)))
	}
	local := map[string]string{
		"IMKUBE_JWT_KEY_FILE": key, "IMKUBE_CONFIG_FILE": cfgFile, "IMKUBE_SENTINEL_RULES_FILE": "",
		"IMKUBE_USER_URL": cl.user.url(), "IMKUBE_MESSAGE_URL": cl.message.url(), "IMKUBE_SEQUENCE_URL": cl.sequence.url(),
		"IMKUBE_MYSQL_DSN": dsn, "HOME": dir,
	}
	iso := map[string]string{}
	for _, p := range append([]*proc{cl.user, cl.sequence, cl.message}, cl.gateways...) {
		role := p.args[0]
		env := rendered[role]
		if env == nil {
			t.Fatalf("no rendered Deployment for %s", role)
		}
		for _, e := range env {
			v, ok := local[e.Name]
			switch {
			case ok:
			case e.Name == "IMKUBE_GATEWAY_ID":
				v = p.name + "-" + id // the pod name
			case e.Name == "IMKUBE_INTERNAL_ADDR":
				p.internal = freeAddr(t) // each pod has its own :9090
				v = p.internal
			case e.ValueFrom != nil:
				t.Fatalf("%s: %s comes from %v: teach renderedCluster its local value", role, e.Name, e.ValueFrom)
			default:
				v = e.Value
			}
			p.env = append(p.env, e.Name+"="+v)
			for _, k := range isolationEnv {
				if e.Name == k {
					iso[k] = v
				}
			}
		}
		p.env = append(p.env, "IMKUBE_INSTANCE_NAME="+p.name+"-"+id, "IMKUBE_SENTINEL_LOG_DIR="+filepath.Join(dir, "sentinel-"+p.name),
			"IMKUBE_LOG_LEVEL=info")
	}
	for _, k := range isolationEnv {
		if iso[k] == "" {
			t.Fatalf("the operator renders no %s: clusters on shared dependencies would share it", k)
		}
	}
	// The operator creates the cluster's topics; its database is created by
	// the services (mysql-database) and dropped here.
	createTopics(t, ns, broker, iso["IMKUBE_UPSTREAM_TOPIC"], iso["IMKUBE_PUSH_TOPIC"])
	t.Cleanup(func() { dropDatabase(dsn, iso["IMKUBE_MYSQL_DATABASE"]) })
	for _, p := range append([]*proc{cl.user, cl.sequence, cl.message}, cl.gateways...) {
		p.start()
		t.Cleanup(p.stop)
	}
	cl.api = imtest.NewAPI(cl.gateways[0].url())
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range append([]*proc{cl.user, cl.sequence, cl.message}, cl.gateways...) {
				t.Logf("--- %s/%s %s log (tail) ---\n%s", namespace, name, p.name, tail(p.log))
			}
		}
	})
	return cl, iso
}

func dropDatabase(dsn, name string) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return
	}
	cfg.DBName = ""
	if db, err := sql.Open("mysql", cfg.FormatDSN()); err == nil {
		db.Exec("DROP DATABASE IF EXISTS `" + name + "`")
		db.Close()
	}
}

// Two IMClusters with the same name in two namespaces, configured exactly as
// the operator renders them, on one RocketMQ, Redis and MySQL: the same
// usernames register in both, both chat, and nothing crosses (users,
// sessions, sequences, messages).
func TestTwoClustersOnSharedDependenciesShareNothing(t *testing.T) {
	b := make([]byte, 3)
	rand.Read(b)
	run := hex.EncodeToString(b)
	one, isoOne := renderedCluster(t, "team-a-"+run, "chat", 1)
	two, isoTwo := renderedCluster(t, "team-b-"+run, "chat", 1)
	for _, k := range isolationEnv {
		if isoOne[k] == isoTwo[k] {
			t.Errorf("both clusters get %s=%q", k, isoOne[k])
		}
	}

	// Same usernames in both: registering in the second would fail with a
	// conflict if the user tables were shared.
	a1, b1 := pair(t, one, []string{one.gateways[0].url()}, []string{one.gateways[0].url()})
	a2, b2 := pair(t, two, []string{two.gateways[0].url()}, []string{two.gateways[0].url()})
	if a1.Account.ID == a2.Account.ID {
		t.Errorf("alice has the same id %s in both clusters", a1.Account.ID)
	}

	// Both chat; each exchange checks its recipient sees exactly m1..mN once,
	// in order, with sequences from 1 (shared sequences would skip numbers).
	exchange(t, a1, b1, 200, 0, nil)
	exchange(t, a2, b2, 150, 0, nil)
	for _, s := range []*imtest.Session{b1, b2} {
		if first := s.Got[0].Int("seq"); first != 1 {
			t.Errorf("%s's first message has seq %d, want 1 (sequences shared across clusters?)", s.Account.Username, first)
		}
	}

	// After both: a fresh device of each bob syncs exactly its own
	// cluster's messages (a push or an inbox row of the other cluster would
	// show up here).
	for _, tt := range []struct {
		c    *cluster
		bob  imtest.Account
		want int
	}{{one, b1.Account, 200}, {two, b2.Account, 150}} {
		s := imtest.NewSession(tt.bob, "b2", tt.c.gateways[0].url())
		if err := s.Connect(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		got := s.Bodies()
		s.Close()
		if len(got) != tt.want || got[len(got)-1] != fmt.Sprintf("m%d", tt.want) {
			t.Errorf("a new device of bob syncs %d messages (last %q), want %d: messages crossed clusters", len(got), got[len(got)-1], tt.want)
		}
	}
}
