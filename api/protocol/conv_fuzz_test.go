package protocol

import (
	"strings"
	"testing"
)

// FuzzConv checks that conversation ids are parsed without panics, that an
// accepted id is short, names valid ids and is exactly what DirectConv or
// GroupConv builds from them (one spelling per conversation, so read cursors
// cannot be multiplied by spelling variants), and that a pull or read frame
// carrying it is accepted exactly when the id is.
func FuzzConv(f *testing.F) {
	for _, s := range []string{"u:1:2", "g:42", "u:2:1", "u:1:1", "u::2", "g:", "g:a:b", "u:1:2:3", "x:1", "",
		"u:a b:c", "g:" + strings.Repeat("9", 100), "u:1\x00:2", "g:\u00e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, conv string) {
		kind, a, b, ok := ParseConv(conv)
		if ok != ValidConv(conv) {
			t.Fatalf("ParseConv and ValidConv disagree on %q", conv)
		}
		frame := `{"t":"read","conv":` + quote(conv) + `,"seq":1}`
		if _, ferr := Decode([]byte(frame), 1024); (ferr == nil) != ok {
			t.Fatalf("read frame with conv %q: error %v, id valid %v", conv, ferr, ok)
		}
		if !ok {
			return
		}
		if len(conv) > MaxConvLen {
			t.Fatalf("accepted %d bytes", len(conv))
		}
		switch kind {
		case 'u':
			if !ValidID(a) || !ValidID(b) || DirectConv(a, b) != conv || DirectConv(b, a) != conv {
				t.Fatalf("accepted %q as direct conversation of %q and %q", conv, a, b)
			}
		case 'g':
			if !ValidID(a) || b != "" || GroupConv(a) != conv {
				t.Fatalf("accepted %q as group %q", conv, a)
			}
		default:
			t.Fatalf("accepted %q with kind %q", conv, kind)
		}
	})
}

// quote writes s as a JSON string the way encoding/json does.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&15])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
