package telemetry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Gateway holds the gateway's instruments. A nil *Gateway records nothing.
type Gateway struct {
	connections metric.Int64UpDownCounter
	connects    metric.Int64Counter
	disconnects metric.Int64Counter
	framesIn    *cheapCounter
	framesOut   *cheapCounter
	sendAck     metric.Float64Histogram
	delivery    metric.Float64Histogram
	pushes      metric.Int64Counter
	bytesOut    *cheapCounter
	evacuated   metric.Int64Counter
	drain       metric.Float64Histogram

	reasons *labels
}

// NewGateway creates the gateway instruments on mp (nil: no-op).
func NewGateway(mp metric.MeterProvider) (*Gateway, error) {
	b := builder{m: meter(mp)}
	g := &Gateway{
		connections: b.upDown("imkube_gateway_connections", "Open client connections on this gateway pod."),
		connects:    b.counter("imkube_gateway_connects", "Client connections accepted (after authentication)."),
		disconnects: b.counter("imkube_gateway_disconnects", "Client connections closed, by reason."),
		framesIn:    b.cheapCounter("imkube_gateway_frames_in", "Frames received from clients, by frame type.", "type"),
		framesOut:   b.cheapCounter("imkube_gateway_frames_out", "Frames written to clients, by frame type.", "type"),
		sendAck:     b.seconds("imkube_gateway_send_ack_seconds", "Time from receiving a send frame to writing its ack."),
		delivery:    b.seconds("imkube_gateway_delivery_seconds", "Time from a message's server timestamp to writing it to a recipient."),
		pushes:      b.counter("imkube_gateway_pushes", "Push records received from the message service."),
		bytesOut:    b.cheapCounter("imkube_gateway_bytes_out", "Bytes of frames written to clients.", ""),
		evacuated:   b.counter("imkube_gateway_drain_evacuated", "Connections asked to reconnect elsewhere by a draining gateway."),
		drain:       b.seconds("imkube_gateway_drain_seconds", "Duration of a gateway's drain, from SIGTERM until its last connection closed (or the window ended)."),
		reasons:     newLabels("reason"),
	}
	if err := b.err(); err != nil {
		return nil, err
	}
	// The open-connection gauge exists from the start, at 0: a gateway
	// without clients must show 0, not no series. The autoscalers' query
	// (KEDA's Prometheus trigger, which treats an empty result as a lost
	// target) and the deletion cost read it; a new pool had no series until
	// its first client, and its ScaledObject reported TriggerError.
	g.connections.Add(context.Background(), 0)
	return g, nil
}

// Connected counts an accepted connection and raises the open-connection gauge.
func (g *Gateway) Connected() {
	if g == nil {
		return
	}
	ctx := context.Background()
	g.connects.Add(ctx, 1)
	g.connections.Add(ctx, 1)
}

// Disconnected counts a closed connection by reason and lowers the gauge.
// Call it exactly once per Connected.
func (g *Gateway) Disconnected(reason string) {
	if g == nil {
		return
	}
	ctx := context.Background()
	g.disconnects.Add(ctx, 1, g.reasons.opt(reason))
	g.connections.Add(ctx, -1)
}

// FrameIn counts a frame received from a client; typ is the protocol frame
// type (unknown types beyond a small bound are recorded as "other").
func (g *Gateway) FrameIn(typ string) {
	if g == nil {
		return
	}
	g.framesIn.add(typ, 1)
}

// FrameOut counts a frame written to a client and its size in bytes.
func (g *Gateway) FrameOut(typ string, bytes int) {
	if g == nil {
		return
	}
	g.framesOut.add(typ, 1)
	g.bytesOut.add("", int64(max(bytes, 0)))
}

// SendAcked records the time from receiving a send frame to writing its ack.
func (g *Gateway) SendAcked(d time.Duration) {
	if g == nil {
		return
	}
	g.sendAck.Record(context.Background(), secondsOf(d))
}

// Delivered records the time from the message's server timestamp to the
// frame being written to the recipient: g.Delivered(time.Since(msgTime)).
func (g *Gateway) Delivered(d time.Duration) {
	if g == nil {
		return
	}
	g.delivery.Record(context.Background(), secondsOf(d))
}

// Pushed counts a push record received from the bus.
func (g *Gateway) Pushed() {
	if g == nil {
		return
	}
	g.pushes.Add(context.Background(), 1)
}

// Evacuated counts a connection asked to reconnect elsewhere by the drain.
func (g *Gateway) Evacuated() {
	if g == nil {
		return
	}
	g.evacuated.Add(context.Background(), 1)
}

// Drained records how long the drain took.
func (g *Gateway) Drained(d time.Duration) {
	if g == nil {
		return
	}
	g.drain.Record(context.Background(), d.Seconds())
}
