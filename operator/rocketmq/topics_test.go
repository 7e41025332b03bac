package rocketmq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/admin"

	"github.com/imkube/imkube/internal/testenv"
)

// fakeAPI is a name server + brokers in memory.
type fakeAPI struct {
	mu      sync.Mutex
	topics  []string
	created []string // "topic@broker"
	listErr error
	closed  bool
}

func (f *fakeAPI) FetchAllTopicList(context.Context) (*admin.TopicList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	return &admin.TopicList{TopicList: slices.Clone(f.topics)}, nil
}

func (f *fakeAPI) CreateTopic(_ context.Context, opts ...admin.OptionCreate) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = append(f.created, "call") // the options are opaque: count calls
	return nil
}

func (f *fakeAPI) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func TestInNamespaceQualifiesShortServiceNames(t *testing.T) {
	tests := []struct {
		name string
		give string
		want string
	}{
		{name: "a bare name is a Service of the namespace", give: "imkube-rocketmq-namesrv:9876", want: "imkube-rocketmq-namesrv.chat.svc:9876"},
		{name: "name.namespace is kept", give: "mq.infra:9876", want: "mq.infra:9876"},
		{name: "a full name is kept", give: "mq.example.com:9876", want: "mq.example.com:9876"},
		{name: "an IPv4 address is kept", give: "10.0.0.7:9876", want: "10.0.0.7:9876"},
		{name: "an IPv6 address is kept", give: "[fd00::7]:9876", want: "[fd00::7]:9876"},
		{name: "localhost is kept", give: "localhost:9876", want: "localhost:9876"},
		{name: "a name without a port", give: "broker", want: "broker.chat.svc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := InNamespace([]string{tt.give}, "chat"); got[0] != tt.want {
				t.Errorf("InNamespace(%q, chat) = %q, want %q", tt.give, got[0], tt.want)
			}
		})
	}
}

// The operator may run in another namespace than the IMCluster: the admin
// client must reach name.<cluster namespace>.svc, and the same short names
// in two namespaces are two admin clients.
func TestEnsureTopicsResolvesNamesInTheClustersNamespace(t *testing.T) {
	a := NewAdmin(slog.New(slog.NewTextHandler(io.Discard, nil)))
	var dialled [][]string
	apis := map[string]*fakeAPI{}
	a.newAPI = func(ns []string) (adminAPI, error) {
		dialled = append(dialled, ns)
		api := &fakeAPI{}
		apis[ns[0]] = api
		return api, nil
	}
	topics := []Topic{{Name: "T", Queues: 8}}
	for _, ns := range []string{"chat", "support", "chat"} {
		target := Target{Namespace: ns, NameServers: []string{"namesrv:9876"}, BrokerAddresses: []string{"broker:10911"}}
		if _, err := a.EnsureTopics(context.Background(), target, topics); err != nil {
			t.Fatal(err)
		}
	}
	want := [][]string{{"namesrv.chat.svc:9876"}, {"namesrv.support.svc:9876"}}
	if !slices.EqualFunc(dialled, want, slices.Equal) {
		t.Errorf("admin clients for %v, want %v (one per namespace, names in the cluster's namespace)", dialled, want)
	}
	if got := len(apis["namesrv.chat.svc:9876"].created); got != 2 {
		t.Errorf("topic created %d times through the chat client, want 2 (once per call: the fake never lists it)", got)
	}
}

func newFakeAdmin(api *fakeAPI) *Admin {
	a := NewAdmin(slog.New(slog.NewTextHandler(io.Discard, nil)))
	a.newAPI = func([]string) (adminAPI, error) { return api, nil }
	return a
}

func TestEnsureTopics(t *testing.T) {
	want := []Topic{{Name: "IM_UPSTREAM", Queues: 8}, {Name: "IM_PUSH", Queues: 8}}
	tests := []struct {
		name        string
		giveTopics  []string
		giveBrokers []string
		giveListErr error
		wantCreated []string
		wantCalls   int
		wantErr     string
	}{
		{name: "existing topics are left alone", giveTopics: []string{"IM_UPSTREAM", "IM_PUSH"}, giveBrokers: []string{"b:10911"}},
		{name: "missing topics are created on every broker", giveTopics: []string{"IM_UPSTREAM"},
			giveBrokers: []string{"b0:10911", "b1:10911"}, wantCreated: []string{"IM_PUSH"}, wantCalls: 2},
		{name: "missing topics without brokers are reported", giveTopics: []string{"IM_PUSH"},
			wantErr: "IM_UPSTREAM (set spec.dependencies.rocketmq.brokerAddresses"},
		{name: "an unreachable name server is an error", giveListErr: errors.New("dial tcp: connection refused"),
			wantErr: "list topics from ns:9876: dial tcp: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &fakeAPI{topics: tt.giveTopics, listErr: tt.giveListErr}
			a := newFakeAdmin(api)
			created, err := a.EnsureTopics(context.Background(), Target{NameServers: []string{"ns:9876"}, BrokerAddresses: tt.giveBrokers}, want)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(created, tt.wantCreated) {
				t.Errorf("created = %v, want %v", created, tt.wantCreated)
			}
			if len(api.created) != tt.wantCalls {
				t.Errorf("CreateTopic calls = %d, want %d", len(api.created), tt.wantCalls)
			}
			if err := a.Close(); err != nil || !api.closed {
				t.Errorf("Close: err %v, closed %v", err, api.closed)
			}
		})
	}
}

// TestEnsureTopicsOnRealRocketMQ creates a fresh topic on the RocketMQ that
// hack/deps.sh runs, then checks a second call finds it.
func TestEnsureTopicsOnRealRocketMQ(t *testing.T) {
	ns := testenv.Require(t, "IMKUBE_ROCKETMQ_NAMESRV")
	broker := testenv.Require(t, "IMKUBE_ROCKETMQ_BROKER")
	a := NewAdmin(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { _ = a.Close() })
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	topic := Topic{Name: "IMKUBE_OPERATOR_TEST_" + strings.ToUpper(hex.EncodeToString(b)), Queues: 4}
	target := Target{NameServers: strings.Split(ns, ";"), BrokerAddresses: []string{broker}}
	ctx := context.Background()

	created, err := a.EnsureTopics(ctx, target, []Topic{topic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := a.client(target.resolved())
		if err != nil {
			return
		}
		if ad, ok := c.(admin.Admin); ok {
			_ = ad.DeleteTopic(context.Background(), admin.WithTopicDelete(topic.Name),
				admin.WithBrokerAddrDelete(broker), admin.WithNameSrvAddr(target.NameServers))
		}
	})
	if !slices.Equal(created, []string{topic.Name}) {
		t.Fatalf("created = %v, want [%s]", created, topic.Name)
	}
	// The broker registers new topics with the name server on its next
	// heartbeat (every few seconds): poll, bounded.
	for i := 0; ; i++ {
		created, err = a.EnsureTopics(ctx, Target{NameServers: target.NameServers}, []Topic{topic})
		if err == nil {
			break
		}
		if !errors.Is(err, ErrTopicMissing) || i == 60 {
			t.Fatalf("topic not visible on the name server: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(created) != 0 {
		t.Errorf("second call created %v, want nothing", created)
	}
}

func TestDNSResolverTurnsNamesIntoIPs(t *testing.T) {
	r := newDNSResolver([]string{"10.1.2.3:9876", "namesrv.chat.svc:9876", "nowhere:9876", "no-port"})
	r.lookup = func(_ context.Context, host string) ([]string, error) {
		if host == "namesrv.chat.svc" {
			return []string{"10.9.9.1", "fd00::1"}, nil
		}
		return nil, errors.New("no such host")
	}
	want := []string{"10.1.2.3:9876", "10.9.9.1:9876", "[fd00::1]:9876"}
	if got := r.Resolve(); !slices.Equal(got, want) {
		t.Errorf("Resolve() = %v, want %v", got, want)
	}
}

func TestUnresolvableNameServersAreAnError(t *testing.T) {
	a := NewAdmin(slog.New(slog.NewTextHandler(io.Discard, nil)))
	_, err := a.EnsureTopics(context.Background(), Target{NameServers: []string{"does-not-exist.invalid:9876"}}, []Topic{{Name: "T", Queues: 1}})
	if err == nil || !strings.Contains(err.Error(), "no name server address resolves") {
		t.Errorf("err = %v", err)
	}
}
