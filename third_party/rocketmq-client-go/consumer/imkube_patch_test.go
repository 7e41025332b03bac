package consumer

import (
	"testing"

	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// imkube patch: takeMessages waits for putMessage instead of polling, and
// gives up when the queue is dropped.
func TestImkubePatchTakeMessagesWakesOnPutAndEndsOnDrop(t *testing.T) {
	pq := newProcessQueue(true)
	got := make(chan []*primitive.MessageExt)
	go func() { got <- pq.takeMessages(8) }()
	pq.putMessage(&primitive.MessageExt{QueueOffset: 1})
	if msgs := <-got; len(msgs) != 1 || msgs[0].QueueOffset != 1 {
		t.Fatalf("took %v, want the message put while waiting", msgs)
	}
	go func() { got <- pq.takeMessages(8) }()
	pq.WithDropped(true)
	if msgs := <-got; msgs != nil {
		t.Fatalf("took %v from a dropped queue", msgs)
	}
}
