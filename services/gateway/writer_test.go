package gateway

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestWriterBoundsItsQueueAndWritesInOrder(t *testing.T) {
	errBroken := errors.New("broken pipe")
	tests := []struct {
		name      string
		give      []string // frames enqueued before close
		flush     bool
		failOn    string // WriteFn fails on this frame
		want      []string
		wantErr   error
		wantTaken []bool // enqueue results
	}{
		{name: "frames within the bound are written, then the last one", give: []string{"aaaa", "bbbb"}, flush: true,
			want: []string{"aaaa", "bbbb", "bye"}, wantTaken: []bool{true, true}},
		{name: "a frame over the bound is refused and the others kept", give: []string{"aaaa", "bbbbbbb", "cc"}, flush: true,
			want: []string{"aaaa", "cc", "bye"}, wantTaken: []bool{true, false, true}},
		{name: "closing without flush drops the queue but not the last frame", give: []string{"aaaa"}, flush: false,
			want: []string{"bye"}, wantTaken: []bool{true}},
		{name: "a failed write ends the writer with its error", give: []string{"aaaa", "bbbb"}, flush: true, failOn: "bbbb",
			want: []string{"aaaa"}, wantErr: errBroken, wantTaken: []bool{true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			write := func(b []byte) error {
				if string(b) == tt.failOn {
					return errBroken
				}
				got = append(got, string(b))
				return nil
			}
			w := newWriter(writerConfig{WriteFn: write, WriteManyFn: func(frames ...[]byte) error {
				for _, f := range frames {
					if err := write(f); err != nil {
						return err
					}
				}
				return nil
			}, MaxQueueSize: 10})
			var taken []bool
			for _, f := range tt.give {
				taken = append(taken, w.enqueue([]byte(f)))
			}
			w.close(tt.flush, []byte("bye"))
			if !w.enqueue([]byte("late")) {
				t.Error("enqueue after close refused the frame; want it dropped quietly")
			}
			if err := w.run(); !errors.Is(err, tt.wantErr) {
				t.Fatalf("run = %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(taken, tt.wantTaken) || !slices.Equal(got, tt.want) {
				t.Fatalf("enqueue %v wrote %q; want %v and %q", taken, got, tt.wantTaken, tt.want)
			}
		})
	}
}

func TestWriterRepliesWaitForRoomInsteadOfOverflowing(t *testing.T) {
	release := make(chan struct{})
	var got []string
	w := newWriter(writerConfig{WriteFn: func(b []byte) error {
		<-release
		got = append(got, string(b))
		return nil
	}, MaxQueueSize: 10})
	done := make(chan error, 1)
	go func() { done <- w.run() }()
	ctx := context.Background()
	if err := w.enqueueWait(ctx, []byte("aaaaaaaa")); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- w.enqueueWait(ctx, []byte("bbbbbbbbbbbbbbbb")) }() // larger than the bound: waits for an empty queue
	select {
	case err := <-waited:
		t.Fatalf("reply queued over the bound (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	w.close(true, nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"aaaaaaaa", "bbbbbbbbbbbbbbbb"}) {
		t.Fatalf("wrote %q", got)
	}

	cctx, cancel := context.WithCancel(ctx)
	full := newWriter(writerConfig{WriteFn: func([]byte) error { return nil }, MaxQueueSize: 4})
	full.enqueue([]byte("xxxx"))
	cancel()
	if err := full.enqueueWait(cctx, []byte("y")); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait on a full queue with an ended context = %v", err)
	}
}

func TestWriterCoalescesQueuedFramesAndPingsOnlyWhenAsked(t *testing.T) {
	var batches [][]string
	pings := 0
	release := make(chan struct{})
	w := newWriter(writerConfig{
		WriteFn: func(b []byte) error { <-release; batches = append(batches, []string{string(b)}); return nil },
		WriteManyFn: func(frames ...[]byte) error {
			var got []string
			for _, f := range frames {
				got = append(got, string(f))
			}
			batches = append(batches, got)
			return nil
		},
		PingFn:       func() error { pings++; return nil },
		MaxQueueSize: 100,
	})
	w.start()
	w.enqueue([]byte("a")) // the writing goroutine takes it and waits on release
	for w.queued() != 0 {
		time.Sleep(time.Millisecond)
	}
	w.enqueue([]byte("b"))
	w.enqueue([]byte("c"))
	if w.ping(time.Now(), time.Hour) {
		t.Error("ping asked for before the interval passed")
	}
	close(release)
	w.close(true, nil)
	<-w.done
	if want := [][]string{{"a"}, {"b", "c"}}; !slices.EqualFunc(batches, want, slices.Equal) {
		t.Fatalf("writes %q, want %q (queued frames in one write)", batches, want)
	}
	if pings != 0 {
		t.Fatalf("%d pings, want none", pings)
	}

	p := newWriter(writerConfig{WriteFn: func([]byte) error { return nil }, PingFn: func() error { pings++; return nil }, MaxQueueSize: 10})
	p.start()
	if !p.ping(time.Now().Add(time.Hour), time.Minute) {
		t.Fatal("ping not asked for after the interval")
	}
	p.close(true, nil)
	<-p.done
	if pings != 1 {
		t.Fatalf("%d pings, want 1", pings)
	}
}
