package message

import (
	"testing"

	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/messageapi"
)

// A record published in this process is handed over as the publisher's
// value; handling it changes fields (media verification rewrites Body), so
// the service works on a copy and a record handed over again is unchanged.
func TestDecodeUpstreamCopiesAValueAndDecodesABody(t *testing.T) {
	published := &messageapi.Upstream{User: "u1", CMID: "c1", Conv: "d:u1:u2", Body: "original"}
	got, err := decodeUpstream(bus.Message{Value: published})
	if err != nil {
		t.Fatal(err)
	}
	got.Body = "changed"
	if published.Body != "original" {
		t.Fatalf("handling changed the published record: %q", published.Body)
	}
	got, err = decodeUpstream(bus.Message{Body: []byte(`{"user":"u1","cmid":"c1","conv":"d:u1:u2","body":"b"}`)})
	if err != nil || got.Body != "b" || got.User != "u1" {
		t.Fatalf("decoded body: %+v, %v", got, err)
	}
	for _, bad := range []bus.Message{
		{Body: []byte(`{"user":`)},
		{Body: []byte(`{"cmid":"c1"}`)},
		{Value: &messageapi.Upstream{User: "u1"}},
	} {
		if _, err := decodeUpstream(bad); err == nil {
			t.Errorf("decodeUpstream(%q, %v): no error", bad.Body, bad.Value)
		}
	}
}
