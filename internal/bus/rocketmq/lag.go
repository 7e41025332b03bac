package rocketmq

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// LagReader reads a consumer group's lag as the brokers see it: per queue,
// the broker's max offset minus the offset the group committed (the
// GET_CONSUME_STATS admin command, what `mqadmin consumerProgress` shows).
// Unlike the consumer's own view (Bus.UpstreamLag, from its last pull), it
// keeps growing while the consumers are stalled, dead or not started, so an
// autoscaler fed by it scales up when the consumers fall behind for any
// reason.
type LagReader struct {
	// NameServers find the brokers serving the topic; Timeout bounds each
	// request (default 10s).
	NameServers []string
	Timeout     time.Duration

	p Pruner // the Remoting client (brokers, invoke)
}

// codeGetConsumeStats is RequestCode.GET_CONSUME_STATS.
const codeGetConsumeStats = 208

var (
	// One OffsetWrapper of ConsumeStats.offsetTable: {"brokerOffset":N,
	// "consumerOffset":N,...}. The table's keys are JSON objects (not valid
	// JSON), hence the regular expressions.
	offsetWrapperRe  = regexp.MustCompile(`\{[^{}]*"brokerOffset"[^{}]*\}`)
	brokerOffsetRe   = regexp.MustCompile(`"brokerOffset"\s*:\s*(-?\d+)`)
	consumerOffsetRe = regexp.MustCompile(`"consumerOffset"\s*:\s*(-?\d+)`)
)

// Lag returns the messages of topic not yet consumed (committed) by group,
// summed over every queue of every broker serving the topic. A group that
// never committed an offset counts every message in the queue.
func (l *LagReader) Lag(ctx context.Context, topic, group string) (int64, error) {
	if len(l.NameServers) == 0 {
		return 0, errors.New("rocketmq lag: no name servers")
	}
	if topic == "" || group == "" {
		return 0, errors.New("rocketmq lag: topic and group are required")
	}
	l.p.NameServers, l.p.Timeout = l.NameServers, l.Timeout
	brokers, err := l.p.brokers(ctx, topic)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, b := range brokers {
		body, err := l.p.invoke(ctx, b, codeGetConsumeStats, map[string]string{"consumerGroup": group, "topic": topic})
		if err != nil {
			return 0, fmt.Errorf("consume stats of %s on %s: %w", group, b, err)
		}
		n, err := parseConsumeStats(body)
		if err != nil {
			return 0, fmt.Errorf("consume stats of %s on %s: %w", group, b, err)
		}
		total += n
	}
	return total, nil
}

// parseConsumeStats sums max(0, brokerOffset-consumerOffset) over the queues
// of a ConsumeStats body.
func parseConsumeStats(body []byte) (int64, error) {
	var total int64
	for _, w := range offsetWrapperRe.FindAll(body, -1) {
		b := brokerOffsetRe.FindSubmatch(w)
		c := consumerOffsetRe.FindSubmatch(w)
		if b == nil || c == nil {
			return 0, fmt.Errorf("offset entry without brokerOffset or consumerOffset: %.200s", w)
		}
		bo, err1 := strconv.ParseInt(string(b[1]), 10, 64)
		co, err2 := strconv.ParseInt(string(c[1]), 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return 0, err
		}
		co = max(co, 0)
		if bo > co {
			total += bo - co
		}
	}
	return total, nil
}
