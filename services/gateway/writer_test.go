package gateway

import (
	"errors"
	"slices"
	"testing"
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
