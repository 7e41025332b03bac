package user

import (
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/rest"
)

// textRule is the limit of one user-supplied text field.
type textRule struct {
	code      string // error code
	what      string // how the message names the field
	min, max  int    // in characters
	multiline bool   // newlines and tabs allowed (other control characters never are)
}

// textRules are every limit on the text fields of accounts and groups, in
// one place: each request that sets one of these fields checks it with
// checkText. docs/limits.md lists them.
var textRules = map[string]textRule{
	"displayName":  {code: "INVALID_DISPLAY_NAME", what: "displayName", min: 1, max: 64},
	"groupName":    {code: protocol.CodeBadFrame, what: "name", min: 1, max: 64},
	"announcement": {code: protocol.CodeBadFrame, what: "announcement", max: 2000, multiline: true},
	"nickname":     {code: protocol.CodeBadFrame, what: "nickname", max: 64},
	"remark":       {code: protocol.CodeBadFrame, what: "remark", max: 64},
	"joinMessage":  {code: protocol.CodeBadFrame, what: "message", max: 500, multiline: true},
}

// checkText returns a 400 error when v breaks the rule of field: valid
// UTF-8, the length in characters, and no control characters (C0, DEL, C1;
// multi-line fields may hold newlines and tabs).
func checkText(field, v string) error {
	r := textRules[field]
	n := utf8.RuneCountInString(v)
	ok := utf8.ValidString(v) && n >= r.min && n <= r.max && !strings.ContainsFunc(v, func(c rune) bool {
		return unicode.IsControl(c) && !(r.multiline && (c == '\n' || c == '\t'))
	})
	if ok {
		return nil
	}
	kind := "printable characters"
	if r.multiline {
		kind = "characters without control characters (newlines and tabs allowed)"
	}
	if r.min > 0 {
		return rest.Errorf(http.StatusBadRequest, r.code, "%s must be %d-%d %s", r.what, r.min, r.max, kind)
	}
	return rest.Errorf(http.StatusBadRequest, r.code, "%s must be at most %d %s", r.what, r.max, kind)
}
