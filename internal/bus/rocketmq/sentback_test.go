package rocketmq

import (
	"testing"

	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// A message of a batch past MaxReconsumeTimes is skipped when it comes back
// with the count it had (the client sent it to the dead-letter queue), and
// handled again with one more (the send-back failed).
func TestSentBackSkipsOnlyMessagesTheClientHandedToTheDeadLetterQueue(t *testing.T) {
	d := &sentBack{counts: map[string]int32{}}
	msg := func(id string, n int32) *primitive.MessageExt {
		return &primitive.MessageExt{MsgId: id, ReconsumeTimes: n}
	}
	d.note(msg("under", 3), 3) // not past the limit: the client counts it
	if d.sentBack(msg("under", 4)) {
		t.Fatal("a message under the limit was skipped")
	}
	d.note(msg("dlq", 4), 3)
	if !d.sentBack(msg("dlq", 4)) {
		t.Fatal("a message sent to the dead-letter queue was handled again")
	}
	if d.sentBack(msg("dlq", 4)) {
		t.Fatal("skipped twice")
	}
	d.note(msg("failed", 4), 3)
	if d.sentBack(msg("failed", 5)) {
		t.Fatal("a message whose send-back failed was skipped: it would be lost")
	}
}
