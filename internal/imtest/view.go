package imtest

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// View is one device's picture of its conversations, built the way a
// client builds it: from pushed msg frames, or from sync/pull items, with
// recall, edit and delete records applied. Two devices of one user that saw
// the same history by different paths must render the same View.
type View struct {
	msgs   map[string]map[int64]*viewMsg // conv -> seq -> message
	hidden map[string]map[int64]bool     // conv -> deleted for me
}

type viewMsg struct {
	from, kind, body string
	recalled, edited bool
	ref, replyTo     int64
	mentions         string
}

// NewView returns an empty View.
func NewView() *View {
	return &View{msgs: map[string]map[int64]*viewMsg{}, hidden: map[string]map[int64]bool{}}
}

// Apply applies a msg frame or a sync/pull item; other frames are ignored.
// It is idempotent: applying an item twice changes nothing.
func (v *View) Apply(f Frame) {
	if f.T() != "" && f.T() != "msg" {
		return
	}
	conv, seq, kind := f.Str("conv"), f.Int("seq"), f.Str("kind")
	if kind == "delete" {
		list, _ := f["seqs"].([]any)
		for _, n := range list {
			if x, ok := n.(float64); ok {
				v.hide(conv, int64(x))
			}
		}
		return
	}
	m := v.msgs[conv]
	if m == nil {
		m = map[int64]*viewMsg{}
		v.msgs[conv] = m
	}
	if _, seen := m[seq]; !seen {
		var mentions []string
		if list, ok := f["mentions"].([]any); ok {
			for _, x := range list {
				mentions = append(mentions, x.(string))
			}
		}
		m[seq] = &viewMsg{from: f.Str("from"), kind: kind, body: f.Str("body"), recalled: f.Bool("recalled"), edited: f.Bool("edited"),
			ref: f.Int("ref"), replyTo: f.Int("replyTo"), mentions: strings.Join(mentions, ",")}
	}
	target := m[f.Int("ref")]
	switch {
	case target == nil:
	case kind == "recall":
		target.recalled, target.body, target.mentions = true, "", ""
		for _, e := range m {
			if e.kind == "edit" && e.ref == f.Int("ref") {
				e.body = ""
			}
		}
	case kind == "edit" && !target.recalled:
		target.body, target.edited = f.Str("body"), true
	}
}

func (v *View) hide(conv string, seq int64) {
	if v.hidden[conv] == nil {
		v.hidden[conv] = map[int64]bool{}
	}
	v.hidden[conv][seq] = true
}

// Render lists the visible messages, one line each, by conversation and seq.
func (v *View) Render() []string {
	var out []string
	for conv, m := range v.msgs {
		for seq, e := range m {
			if v.hidden[conv][seq] {
				continue
			}
			out = append(out, fmt.Sprintf("%s/%06d %s %s %q recalled=%t edited=%t ref=%d replyTo=%d mentions=%s",
				conv, seq, e.from, e.kind, e.body, e.recalled, e.edited, e.ref, e.replyTo, e.mentions))
		}
	}
	slices.Sort(out)
	return out
}

// SyncView connects nothing: it syncs c's whole inbox from cursor 0 and
// returns the View built from the items.
func SyncView(c *Conn) *View {
	c.t.Helper()
	v := NewView()
	var after int64
	for i := 0; ; i++ {
		id := fmt.Sprintf("sv%d", i)
		c.SendJSON(map[string]any{"t": "sync", "id": id, "after": after, "limit": 500})
		var res Frame
		for res == nil {
			f := c.Next()
			if f.T() == "sync_result" && f.Str("id") == id {
				res = f
			}
		}
		for _, it := range res.Items() {
			v.Apply(it)
		}
		after = res.Int("inboxSeq")
		if !res.Bool("more") {
			return v
		}
	}
}

// DrainInto applies c's frames to v until v renders like want or d passes;
// it returns v's rendering.
func DrainInto(c *Conn, v *View, want []string, d time.Duration) []string {
	deadline := time.Now().Add(d)
	for !slices.Equal(v.Render(), want) {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		f, err := c.NextErr(left)
		if err != nil {
			break
		}
		v.Apply(f)
	}
	return v.Render()
}
