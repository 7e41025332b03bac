package protocol

import (
	"encoding/json"
	"reflect"
	"runtime"
	"testing"
	"unicode/utf8"
)

// fuzzMaxFrame is the gateway's default frame limit: nothing larger reaches
// Decode.
const fuzzMaxFrame = 64 << 10

// fuzzMaxBody is the default body limit.
const fuzzMaxBody = 16 << 10

// allocated returns the bytes allocated while running f.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// reencode writes a decoded frame back to JSON the way a client would
// (pull's "to" is a number, which Inbound keeps in ToSeq).
func reencode(t *testing.T, in *Inbound) []byte {
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatalf("re-encode %+v: %v", in, err)
	}
	if in.ToSeq == nil {
		return b
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["to"], _ = json.Marshal(*in.ToSeq)
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var clientTypes = map[string]bool{
	TypeAuth: true, TypeSend: true, TypeSync: true, TypePull: true, TypeDelivered: true, TypeRead: true, TypePing: true,
}

// FuzzDecode checks that Decode never panics, allocates in proportion to
// the frame, answers every bad frame with a client-facing code, and that a
// frame it accepts means the same after being written back out.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"t":"send","cmid":"c1","to":{"user":"u2"},"kind":"text","body":"hi"}`))
	f.Add([]byte(`{"t":"pull","id":"r2","conv":"u:1:2","from":1,"to":5,"limit":10}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fuzzMaxFrame {
			t.Skip("larger than the gateway's frame limit")
		}
		var in *Inbound
		var ferr *FrameError
		n := allocated(func() { in, ferr = Decode(data, fuzzMaxBody) })
		if limit := uint64(64*len(data) + 1<<20); n > limit {
			t.Fatalf("Decode of %d bytes allocated %d bytes (limit %d)", len(data), n, limit)
		}

		if ferr != nil {
			switch ferr.Code {
			case CodeBadFrame, CodeTooLarge, CodeUnauthenticated:
			default:
				t.Fatalf("error code %q is not a frame error code", ferr.Code)
			}
			if ferr.Message == "" {
				t.Fatal("error without a message")
			}
			if ferr.Code == CodeTooLarge && (in == nil || in.Body == nil || len(*in.Body) <= fuzzMaxBody) {
				t.Fatalf("TOO_LARGE for a body within the limit: %+v", in)
			}
			return
		}
		if in == nil {
			t.Fatal("no frame and no error")
		}
		if !clientTypes[in.T] {
			t.Fatalf("accepted frame type %q", in.T)
		}
		if in.T == TypeSend && (in.Body == nil || len(*in.Body) > fuzzMaxBody || in.To == nil) {
			t.Fatalf("accepted an invalid send: %+v", in)
		}
		for _, s := range []string{in.T, in.ID, in.Token, in.Device, in.CMID, in.Kind, in.Conv} {
			if !utf8.ValidString(s) {
				t.Fatalf("accepted a field with invalid UTF-8: %q", s)
			}
		}

		// Round trip: the accepted frame, written back out, decodes to the same.
		out := reencode(t, in)
		again, ferr2 := Decode(out, fuzzMaxBody)
		if ferr2 != nil {
			t.Fatalf("re-encoded frame %s rejected: %v", out, ferr2)
		}
		if !reflect.DeepEqual(in, again) {
			t.Fatalf("round trip changed the frame:\n first %+v\n again %+v\n via %s", in, again, out)
		}
	})
}
