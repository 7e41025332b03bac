package bench

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	common "go.opentelemetry.io/proto/otlp/common/v1"
	res "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// The collector decodes an OTLP/HTTP export and the breakdown puts every
// hop between the points of a trace, joined to the generator's send and
// receive times by the cmid.
func TestCollectorHops(t *testing.T) {
	c, err := startCollector()
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	start := time.Unix(1000, 0)
	ms := func(n int64) uint64 { return uint64(start.UnixNano() + n*int64(time.Millisecond)) }
	str := func(k, v string) *common.KeyValue {
		return &common.KeyValue{Key: k, Value: &common.AnyValue{Value: &common.AnyValue_StringValue{StringValue: v}}}
	}
	tid := []byte("0123456789abcdef")
	var events []*tracepb.Span_Event
	for i, e := range messageEvents { // checked at 10 ms, claimed 11, ..., pushed 14
		events = append(events, &tracepb.Span_Event{Name: e, TimeUnixNano: ms(int64(10 + i))})
	}
	rs := func(instance string, spans ...*tracepb.Span) *tracepb.ResourceSpans {
		return &tracepb.ResourceSpans{Resource: &res.Resource{Attributes: []*common.KeyValue{str("service.instance.id", instance)}},
			ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}}}
	}
	// A send of stream 3, number 7, at 1 ms; gateway 1 from 2 to 4 ms, the
	// message service from 8 ms, gateway 2 from 17 to 18 ms.
	req := &coltrace.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
		rs(pipelineGW1, &tracepb.Span{TraceId: tid, Name: "gateway.send", StartTimeUnixNano: ms(2), EndTimeUnixNano: ms(4),
			Attributes: []*common.KeyValue{str("im.cmid", "Pxyz-3.7.1000000")}}),
		rs("message", &tracepb.Span{TraceId: tid, Name: "message.process", StartTimeUnixNano: ms(8), EndTimeUnixNano: ms(15), Events: events}),
		rs(pipelineGW1, &tracepb.Span{TraceId: tid, Name: "gateway.push", StartTimeUnixNano: ms(16), EndTimeUnixNano: ms(16)}), // the ack
		rs(pipelineGW2+"-xyz", &tracepb.Span{TraceId: tid, Name: "gateway.push", StartTimeUnixNano: ms(17), EndTimeUnixNano: ms(18)}),
		// Another run's send: not counted.
		rs(pipelineGW1, &tracepb.Span{TraceId: []byte("fedcba9876543210"), Name: "gateway.send", StartTimeUnixNano: ms(2), EndTimeUnixNano: ms(4),
			Attributes: []*common.KeyValue{str("im.cmid", "Pother-3.8.1000000")}}),
	}}
	body, _ := proto.Marshal(req)
	resp, err := http.Post(c.url+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("export: %s", resp.Status)
	}
	recv := map[[2]int64]time.Duration{{3, 7}: 21 * time.Millisecond}
	h := c.hops("xyz", start, [2]time.Duration{0, time.Second}, recv)
	if h.sampled != 1 || h.complete != 1 {
		t.Fatalf("sampled %d, complete %d; want 1 and 1", h.sampled, h.complete)
	}
	want := []time.Duration{1, 2, 4, 2, 1, 1, 1, 1, 3, 1, 3} // ms, in hopNames order
	for i, w := range want {
		if len(h.hops[i]) != 1 || h.hops[i][0] != w*time.Millisecond {
			t.Errorf("hop %q = %v, want %v", hopNames[i], h.hops[i], w*time.Millisecond)
		}
	}
	if len(h.total) != 1 || h.total[0] != 20*time.Millisecond {
		t.Errorf("end to end = %v, want 20ms", h.total)
	}
	// Outside the measured window: not counted.
	if h := c.hops("xyz", start, [2]time.Duration{2 * time.Millisecond, time.Second}, recv); h.sampled != 0 {
		t.Errorf("a send before the window was counted")
	}
}
