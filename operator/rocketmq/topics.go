// Package rocketmq ensures the RocketMQ topics of an IMCluster exist, through
// the admin API of github.com/apache/rocketmq-client-go/v2. Controllers use the
// small TopicEnsurer interface so tests can fake it.
package rocketmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2/admin"
)

// Topic is a topic and its queue count per broker.
type Topic struct {
	Name   string
	Queues int
}

// Target says where RocketMQ is.
type Target struct {
	// Namespace is the namespace of the IMCluster the addresses come from: a
	// host name without a dot is a Service there (see InNamespace), whatever
	// namespace the operator runs in.
	Namespace   string
	NameServers []string
	// BrokerAddresses are the master brokers topics are created on; when empty
	// missing topics are reported, not created.
	BrokerAddresses []string
}

// ErrTopicMissing is returned when a topic does not exist and cannot be created.
var ErrTopicMissing = errors.New("rocketmq topic missing")

// TopicEnsurer makes sure topics exist. It returns the names of the topics it
// created.
type TopicEnsurer interface {
	EnsureTopics(ctx context.Context, target Target, topics []Topic) (created []string, err error)
}

// adminAPI is the part of admin.Admin the ensurer uses.
type adminAPI interface {
	FetchAllTopicList(ctx context.Context) (*admin.TopicList, error)
	CreateTopic(ctx context.Context, opts ...admin.OptionCreate) error
	Close() error
}

// Admin is the TopicEnsurer backed by RocketMQ's admin API. It keeps one admin
// client per set of name servers (the client library leaks goroutines when
// clients are created and shut down repeatedly); Close releases them.
type Admin struct {
	log     *slog.Logger
	timeout time.Duration
	newAPI  func(nameServers []string) (adminAPI, error)

	mu      sync.Mutex
	clients map[string]adminAPI
}

var _ TopicEnsurer = (*Admin)(nil)

// NewAdmin returns an ensurer that talks to real name servers and brokers.
func NewAdmin(log *slog.Logger) *Admin {
	return &Admin{
		log:     log,
		timeout: 10 * time.Second,
		newAPI: func(ns []string) (adminAPI, error) {
			r := newDNSResolver(ns)
			if len(r.Resolve()) == 0 {
				return nil, fmt.Errorf("no name server address resolves: %s", strings.Join(ns, ";"))
			}
			return admin.NewAdmin(admin.WithResolver(r))
		},
		clients: map[string]adminAPI{},
	}
}

// InNamespace qualifies the host of every host:port in addrs that names a
// Service of namespace ns the short way: a bare `name` (no dot, not an IP,
// not localhost) becomes `name.<ns>.svc`, as the services' own resolver would
// read it from a pod of ns. Addresses with a dot (`name.other`,
// `mq.example.com`) and IP addresses are kept.
func InNamespace(addrs []string, ns string) []string {
	if ns == "" {
		return addrs
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			host, port = a, ""
		}
		if host != "" && !strings.Contains(host, ".") && net.ParseIP(host) == nil && host != "localhost" {
			host += "." + ns + ".svc"
		}
		if port != "" {
			out[i] = net.JoinHostPort(host, port)
		} else {
			out[i] = host
		}
	}
	return out
}

// resolved is the target with its addresses qualified in its namespace.
func (t Target) resolved() Target {
	t.NameServers = InNamespace(t.NameServers, t.Namespace)
	t.BrokerAddresses = InNamespace(t.BrokerAddresses, t.Namespace)
	return t
}

// clientKey keys the admin clients by namespace and name servers: the same
// short names in two namespaces are two RocketMQs.
func clientKey(t Target) string { return t.Namespace + "/" + strings.Join(t.NameServers, ";") }

func (a *Admin) client(t Target) (adminAPI, error) {
	nameServers := t.NameServers
	key := clientKey(t)
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.clients[key]; ok {
		return c, nil
	}
	c, err := a.newAPI(nameServers)
	if err != nil {
		return nil, fmt.Errorf("rocketmq admin for %s: %w", key, err)
	}
	a.clients[key] = c
	return c, nil
}

// EnsureTopics lists the topics known to the name servers and creates the
// missing ones on every broker in target.BrokerAddresses.
func (a *Admin) EnsureTopics(ctx context.Context, target Target, topics []Topic) ([]string, error) {
	if len(target.NameServers) == 0 {
		return nil, errors.New("rocketmq: no name servers")
	}
	target = target.resolved()
	c, err := a.client(target)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	list, err := c.FetchAllTopicList(ctx)
	if err != nil {
		a.drop(target) // start afresh (and resolve again) next time
		return nil, fmt.Errorf("rocketmq: list topics from %s: %w", strings.Join(target.NameServers, ";"), err)
	}
	var missing []Topic
	for _, t := range topics {
		if !slices.Contains(list.TopicList, t.Name) {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	if len(target.BrokerAddresses) == 0 {
		names := make([]string, len(missing))
		for i, t := range missing {
			names[i] = t.Name
		}
		return nil, fmt.Errorf("%w: %s (set spec.dependencies.rocketmq.brokerAddresses to let the operator create them)",
			ErrTopicMissing, strings.Join(names, ", "))
	}
	var created []string
	var errs []error
	for _, t := range missing {
		ok := true
		for _, broker := range target.BrokerAddresses {
			err := c.CreateTopic(ctx,
				admin.WithTopicCreate(t.Name),
				admin.WithBrokerAddrCreate(broker),
				admin.WithReadQueueNums(t.Queues),
				admin.WithWriteQueueNums(t.Queues),
			)
			if err != nil {
				ok = false
				errs = append(errs, fmt.Errorf("rocketmq: create topic %s on %s: %w", t.Name, broker, err))
			}
		}
		if ok {
			a.log.Info("created rocketmq topic", "topic", t.Name, "queues", t.Queues, "brokers", target.BrokerAddresses)
			created = append(created, t.Name)
		}
	}
	return created, errors.Join(errs...)
}

func (a *Admin) drop(t Target) {
	key := clientKey(t)
	a.mu.Lock()
	c, ok := a.clients[key]
	delete(a.clients, key)
	a.mu.Unlock()
	if ok {
		if err := c.Close(); err != nil {
			a.log.Warn("closing rocketmq admin client", "target", key, "err", err)
		}
	}
}

// Close shuts the admin clients down.
func (a *Admin) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for k, c := range a.clients {
		errs = append(errs, c.Close())
		delete(a.clients, k)
	}
	return errors.Join(errs...)
}
