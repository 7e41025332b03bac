// Package username defines what makes two usernames the same account.
// A username is stored as typed (its display case) together with its Key:
// Unicode NFKC normalisation, then case folding, then NFKC again (the
// NFKC_Casefold of Unicode's identifier rules). Keys are unique, so "Alice",
// "ALICE" and the full-width "Ａｌｉｃｅ" are one account, and logging in with
// any of them finds it.
package username

import (
	"regexp"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Length limits of a username, in characters.
const (
	MinLen = 3
	MaxLen = 32
)

// MaxKeyBytes bounds a key; longer input is not a username and is cut (a
// lookup then finds nothing), so a key never grows without bound.
const MaxKeyBytes = 128

var valid = regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,32}$`)

// Valid reports whether s may be registered: 3-32 characters of ASCII
// letters, digits, '_', '.' and '-'.
func Valid(s string) bool { return valid.MatchString(s) }

// Key returns the normalised form of s that decides uniqueness.
func Key(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) > 4*MaxKeyBytes {
		s = s[:4*MaxKeyBytes] // NFKC and folding expand at most a few times
	}
	// Cutting a long key can leave a string that normalises differently
	// (trailing space, a split sequence): repeat until it is stable.
	k := fold(s)
	for range 4 {
		next := fold(k)
		if next == k {
			break
		}
		k = next
	}
	return k
}

func fold(s string) string {
	k := norm.NFKC.String(cases.Fold().String(norm.NFKC.String(s)))
	if len(k) > MaxKeyBytes {
		k = k[:MaxKeyBytes]
		for !utf8.ValidString(k) {
			k = k[:len(k)-1]
		}
	}
	return strings.TrimSpace(k)
}

// Reserved are the names no one may register by default (compared by Key):
// names that look like the platform speaking.
var Reserved = []string{"admin", "administrator", "root", "system", "support", "help", "security",
	"imkube", "official", "staff", "moderator", "mod", "null", "undefined", "anonymous", "everyone", "all"}
