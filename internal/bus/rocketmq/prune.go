package rocketmq

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Pruner removes what dead gateways leave in the brokers: each push consumer
// group "imkube-push-<gateway id>" gets a subscription group record and a
// %RETRY% topic there (and a %DLQ% topic if pushes were dropped). Whoever
// knows the live gateways (the operator, from the gateway pods) calls Prune
// periodically, for gateways gone for a minute or more: a pull that the broker
// held for a dead consumer (long polling, up to ~20 s) re-creates the group
// record when it wakes up. The client library has no call for deleting a group, so
// Pruner speaks the few Remoting admin commands it needs itself.
type Pruner struct {
	// NameServers are the name server addresses; PushTopic (default
	// TopicPush) finds the brokers; PushGroupPrefix (default "imkube-push-")
	// selects the groups. Timeout bounds each request (default 10s).
	NameServers     []string
	PushTopic       string
	PushGroupPrefix string
	Timeout         time.Duration

	opaque atomic.Int32
}

// Prune deletes the push groups, and their retry and dead-letter topics, of
// the gateways for which alive returns false (gateway ids with dots come
// back with underscores, see Bus.PushGroup). It returns the groups removed.
func (p *Pruner) Prune(ctx context.Context, alive func(gatewayID string) bool) ([]string, error) {
	topic := p.PushTopic
	if topic == "" {
		topic = TopicPush
	}
	prefix := p.PushGroupPrefix
	if prefix == "" {
		prefix = "imkube-push-"
	}
	if len(p.NameServers) == 0 {
		return nil, errors.New("rocketmq pruner: no name servers")
	}
	brokers, err := p.brokers(ctx, topic)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, broker := range brokers {
		groups, err := p.groups(ctx, broker)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, g := range groups {
			gw, ok := strings.CutPrefix(g, prefix)
			if !ok || gw == "" || alive(gw) {
				continue
			}
			if err := p.deleteGroup(ctx, broker, g); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, g)
		}
	}
	sort.Strings(removed)
	return removed, errors.Join(errs...)
}

// DeleteGroup deletes one consumer group (offsets included) and its retry
// and dead-letter topics from every broker serving PushTopic.
func (p *Pruner) DeleteGroup(ctx context.Context, group string) error {
	topic := p.PushTopic
	if topic == "" {
		topic = TopicPush
	}
	brokers, err := p.brokers(ctx, topic)
	if err != nil {
		return err
	}
	var errs []error
	for _, b := range brokers {
		errs = append(errs, p.deleteGroup(ctx, b, group))
	}
	return errors.Join(errs...)
}

func (p *Pruner) deleteGroup(ctx context.Context, broker, group string) error {
	if _, err := p.invoke(ctx, broker, codeDeleteSubscriptionGroup, map[string]string{"groupName": group, "cleanOffset": "true"}); err != nil {
		return fmt.Errorf("delete group %s on %s: %w", group, broker, err)
	}
	var errs []error
	for _, t := range []string{"%RETRY%" + group, "%DLQ%" + group} {
		if _, err := p.invoke(ctx, broker, codeDeleteTopicInBroker, map[string]string{"topic": t}); err != nil {
			errs = append(errs, fmt.Errorf("delete topic %s on %s: %w", t, broker, err))
		}
		for _, ns := range p.NameServers {
			if _, err := p.invoke(ctx, ns, codeDeleteTopicInNamesrv, map[string]string{"topic": t}); err != nil {
				errs = append(errs, fmt.Errorf("delete topic %s on name server %s: %w", t, ns, err))
			}
		}
	}
	return errors.Join(errs...)
}

var (
	brokerAddrsRe = regexp.MustCompile(`"brokerAddrs"\s*:\s*\{([^}]*)\}`)
	masterAddrRe  = regexp.MustCompile(`(?:^|,)\s*"?0"?\s*:\s*"([^"]+)"`)
	groupNameRe   = regexp.MustCompile(`"groupName"\s*:\s*"([^"]+)"`)
)

// brokers returns the master addresses serving topic (the route's JSON has
// unquoted numeric keys, hence the regular expressions).
func (p *Pruner) brokers(ctx context.Context, topic string) ([]string, error) {
	var lastErr error
	for _, ns := range p.NameServers {
		body, err := p.invoke(ctx, ns, codeGetRouteInfoByTopic, map[string]string{"topic": topic})
		if err != nil {
			lastErr = err
			continue
		}
		var out []string
		for _, m := range brokerAddrsRe.FindAllSubmatch(body, -1) {
			if a := masterAddrRe.FindSubmatch(m[1]); a != nil {
				out = append(out, string(a[1]))
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no broker serves topic %s", topic)
		}
		return out, nil
	}
	return nil, fmt.Errorf("route of topic %s: %w", topic, lastErr)
}

func (p *Pruner) groups(ctx context.Context, broker string) ([]string, error) {
	body, err := p.invoke(ctx, broker, codeGetAllSubscriptionGroupConfig, nil)
	if err != nil {
		return nil, fmt.Errorf("list groups on %s: %w", broker, err)
	}
	seen := map[string]bool{}
	var out []string
	for _, m := range groupNameRe.FindAllSubmatch(body, -1) {
		if g := string(m[1]); !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	return out, nil
}

// Remoting request codes (org.apache.rocketmq.remoting.protocol.RequestCode).
const (
	codeGetRouteInfoByTopic           = 105
	codeGetAllSubscriptionGroupConfig = 201
	codeDeleteSubscriptionGroup       = 207
	codeDeleteTopicInBroker           = 215
	codeDeleteTopicInNamesrv          = 216
)

type remotingHeader struct {
	Code      int               `json:"code"`
	Language  string            `json:"language"`
	Version   int               `json:"version"`
	Opaque    int32             `json:"opaque"`
	Flag      int               `json:"flag"`
	Remark    string            `json:"remark,omitempty"`
	ExtFields map[string]string `json:"extFields,omitempty"`
}

// invoke sends one request over a fresh connection and returns the body of a
// successful response.
func (p *Pruner) invoke(ctx context.Context, addr string, code int, ext map[string]string) ([]byte, error) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	header, err := json.Marshal(remotingHeader{Code: code, Language: "GO", Version: 399, Opaque: p.opaque.Add(1), ExtFields: ext})
	if err != nil {
		return nil, err
	}
	var frame bytes.Buffer
	_ = binary.Write(&frame, binary.BigEndian, int32(4+len(header)))
	_ = binary.Write(&frame, binary.BigEndian, int32(len(header))) // serialize type 0 = JSON
	frame.Write(header)
	if _, err := conn.Write(frame.Bytes()); err != nil {
		return nil, err
	}
	var size int32
	if err := binary.Read(conn, binary.BigEndian, &size); err != nil {
		return nil, err
	}
	if size < 4 || size > 64<<20 {
		return nil, fmt.Errorf("bad response frame size %d", size)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return nil, err
	}
	hlen := int(binary.BigEndian.Uint32(buf[:4]) & 0xFFFFFF)
	if buf[0] != 0 || 4+hlen > len(buf) {
		return nil, fmt.Errorf("unsupported response encoding %d", buf[0])
	}
	var resp remotingHeader
	if err := json.Unmarshal(buf[4:4+hlen], &resp); err != nil {
		return nil, fmt.Errorf("response header: %w", err)
	}
	if resp.Code != 0 {
		return nil, fmt.Errorf("code %d: %s", resp.Code, resp.Remark)
	}
	return buf[4+hlen:], nil
}
