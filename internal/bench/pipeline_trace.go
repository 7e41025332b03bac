package bench

import (
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// The per-hop breakdown of `imkube bench pipeline`: the services export
// their spans over OTLP/HTTP (IMKUBE_OTLP_ENDPOINT) to this collector. One
// sampled send is one trace: gateway.send (gateway 1 receives the frame and
// publishes it to RocketMQ), message.process (the message service consumes
// it; its events mark the end of each step of the lane), gateway.push
// (gateway 2 consumes the push and queues the frame to the connection). The
// client's send and receive times come from the generator; every process
// runs on this machine, so their clocks agree.

// hopNames are the hops between consecutive points of a trace.
var hopNames = []string{
	"client -> gateway 1 (WebSocket, read, decode, checks)",
	"gateway 1: publish to RocketMQ (until the broker's answer)",
	"RocketMQ -> message service (consume)",
	"message: checks (authorise, direct chat)",
	"message: dedup (claim cmids)",
	"message: sequence numbers (sequence service)",
	"message: store (MariaDB transaction)",
	"message: push (session lookup, publish to RocketMQ)",
	"RocketMQ -> gateway 2 (push consume)",
	"gateway 2: to the connection's queue",
	"gateway 2 writer -> client",
}

// The events of message.process that end each step (services/message).
var messageEvents = []string{"checked", "claimed", "sequenced", "stored", "pushed"}

type span struct {
	trace    string
	name     string
	instance string // service.instance.id
	start    int64  // unix ns
	end      int64
	cmid     string
	batch    int64 // im.batch: the records the message service took at once
	events   map[string]int64
}

// collector receives OTLP/HTTP exports (protobuf) and keeps the spans of
// the message path.
type collector struct {
	url   string
	srv   *http.Server
	mu    sync.Mutex
	spans []span
	errs  int
}

func startCollector() (*collector, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &collector{url: "http://" + l.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", c.traces)
	mux.HandleFunc("POST /v1/metrics", func(w http.ResponseWriter, r *http.Request) { // not used: accepted and dropped
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	})
	c.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go c.srv.Serve(l)
	return c, nil
}

func (c *collector) close() { c.srv.Close() }

func (c *collector) traces(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	var req coltrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &req)
	}
	if err != nil {
		c.mu.Lock()
		c.errs++
		c.mu.Unlock()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var got []span
	for _, rs := range req.ResourceSpans {
		instance := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.instance.id" {
				instance = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				switch s.Name {
				case "gateway.send", "message.process", "gateway.push":
				default:
					continue
				}
				sp := span{trace: string(s.TraceId), name: s.Name, instance: instance, start: int64(s.StartTimeUnixNano), end: int64(s.EndTimeUnixNano)}
				for _, a := range s.Attributes {
					switch a.Key {
					case "im.cmid":
						sp.cmid = a.GetValue().GetStringValue()
					case "im.batch":
						sp.batch = a.GetValue().GetIntValue()
					}
				}
				for _, e := range s.Events {
					if sp.events == nil {
						sp.events = map[string]int64{}
					}
					if _, ok := sp.events[e.Name]; !ok {
						sp.events[e.Name] = int64(e.TimeUnixNano)
					}
				}
				got = append(got, sp)
			}
		}
	}
	c.mu.Lock()
	c.spans = append(c.spans, got...)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Write(out)
}

// hopTable is the per-hop latency of the sampled sends.
type hopTable struct {
	traces, complete, sampled int
	hops                      [][]time.Duration // per hop
	total                     []time.Duration
	batches                   []int // the batch each sampled send was handled in (1: the one-by-one path)
	decodeErrs                int
}

// hops builds the table from the traces of sends of this run (cmid
// "P<nonce>-<payload>") made within window (since start); recv has the
// arrival of every (stream, number) at its recipient.
func (c *collector) hops(nonce string, start time.Time, window [2]time.Duration, recv map[[2]int64]time.Duration) *hopTable {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := os.Getenv("IMKUBE_BENCH_SPANS"); f != "" { // the raw spans, for a closer look
		if fh, err := os.Create(f); err == nil {
			for _, s := range c.spans {
				fmt.Fprintf(fh, "%x %s %s %d %d %s %d\n", s.trace, s.name, s.instance, s.start, s.end, s.cmid, s.batch)
			}
			fh.Close()
		}
	}
	byTrace := map[string][]span{}
	for _, s := range c.spans {
		byTrace[s.trace] = append(byTrace[s.trace], s)
	}
	t := &hopTable{hops: make([][]time.Duration, len(hopNames)), decodeErrs: c.errs}
	base := start.UnixNano()
	prefix := "P" + nonce + "-"
	gw2 := pipelineGW2 + "-" + nonce
	for _, spans := range byTrace {
		var send, proc, push *span
		for i := range spans {
			s := &spans[i]
			switch {
			case s.name == "gateway.send" && strings.HasPrefix(s.cmid, prefix):
				send = s
			case s.name == "message.process" && (proc == nil || s.start < proc.start):
				proc = s // the first attempt
			case s.name == "gateway.push" && s.instance == gw2 && (push == nil || s.start < push.start):
				push = s
			}
		}
		if send == nil {
			continue
		}
		payload := strings.TrimPrefix(send.cmid, prefix)
		var src, n, ns int64
		if _, err := fmt.Sscanf(payload, "%d.%d.%d", &src, &n, &ns); err != nil {
			continue
		}
		if time.Duration(ns) < window[0] || time.Duration(ns) > window[1] {
			continue
		}
		t.sampled++
		points := make([]int64, len(hopNames)+1)
		points[0] = base + ns
		points[1], points[2] = send.start, send.end
		if proc != nil {
			t.batches = append(t.batches, int(max(proc.batch, 1)))
			points[3] = proc.start
			for i, e := range messageEvents {
				points[4+i] = proc.events[e]
			}
		}
		if push != nil {
			points[9], points[10] = push.start, push.end
		}
		if at, ok := recv[[2]int64{src, n}]; ok {
			points[11] = base + int64(at)
			t.total = append(t.total, time.Duration(points[11]-points[0]))
		}
		t.traces++
		complete := true
		for i := range hopNames {
			if points[i] == 0 || points[i+1] == 0 {
				complete = false
				continue
			}
			t.hops[i] = append(t.hops[i], time.Duration(points[i+1]-points[i]))
		}
		if complete {
			t.complete++
		}
	}
	return t
}

func (t *hopTable) print(out io.Writer) {
	fmt.Fprintf(out, "per-hop latency of imkube distributed from %d sampled sends of the measured phase (%d with every hop; a batch's push joins the trace of its last sampled record only)\n", t.sampled, t.complete)
	if t.decodeErrs > 0 {
		fmt.Fprintf(out, "(%d OTLP exports could not be decoded)\n", t.decodeErrs)
	}
	fmt.Fprintf(out, "%-58s %8s %8s %8s %7s\n", "hop", "p50 ms", "p99 ms", "max ms", "traces")
	row := func(name string, d []time.Duration) {
		if len(d) == 0 {
			fmt.Fprintf(out, "%-58s %8s %8s %8s %7d\n", name, "-", "-", "-", 0)
			return
		}
		slices.Sort(d)
		p := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
		fmt.Fprintf(out, "%-58s %8.2f %8.2f %8.2f %7d\n", name, ms(p(0.5)), ms(p(0.99)), ms(d[len(d)-1]), len(d))
	}
	for i, name := range hopNames {
		row(name, t.hops[i])
	}
	row("end to end (client send -> client receive)", t.total)
	if b := t.batches; len(b) > 0 {
		slices.Sort(b)
		fmt.Fprintf(out, "message service batch of a sampled send: p50 %d, p99 %d, max %d records\n", b[len(b)/2], b[min(len(b)-1, len(b)*99/100)], b[len(b)-1])
	}
}
