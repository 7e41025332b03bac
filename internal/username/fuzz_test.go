package username

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzKey checks the properties uniqueness relies on: a key is its own key,
// bounded, valid UTF-8, and every case twin of a valid username has the
// same key (and no other valid username does).
func FuzzKey(f *testing.F) {
	for _, s := range []string{"alice", "ALICE", "vict_x", "VICT_X", "Ａｌｉｃｅ", "ﬃ", "straße", "STRASSE", "İstanbul",
		"K", "\u212a", " bob ", "a\x00b", "\xff\xfe", strings.Repeat("ǅ", 600), "x.y-z_0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k := Key(s)
		if Key(k) != k {
			t.Fatalf("Key(%q) = %q but Key of that is %q", s, k, Key(k))
		}
		if len(k) > MaxKeyBytes || !utf8.ValidString(k) {
			t.Fatalf("Key(%q) = %q: %d bytes, valid UTF-8 %v", s, k, len(k), utf8.ValidString(k))
		}
		if !Valid(s) {
			return
		}
		if Key(strings.ToUpper(s)) != k || Key(strings.ToLower(s)) != k {
			t.Fatalf("case twins of %q have different keys", s)
		}
		if k != strings.ToLower(s) {
			t.Fatalf("Key(%q) = %q, want the ASCII lower case", s, k)
		}
	})
}

func TestKeyMakesLookAlikesOneName(t *testing.T) {
	tests := []struct{ give, want string }{
		{give: "VICT_X", want: "vict_x"},
		{give: "Ｖｉｃｔ_Ｘ", want: "vict_x"},
		{give: " alice ", want: "alice"},
		{give: "STRASSE", want: "strasse"},
		{give: "straße", want: "strasse"},
		{give: "\u212aelvin", want: "kelvin"}, // Kelvin sign
	}
	for _, tt := range tests {
		if got := Key(tt.give); got != tt.want {
			t.Errorf("Key(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
