package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/imkube/imkube/api/protocol"
)

// The request bodies of the REST API (the handlers declare them inline;
// these mirror their shapes).
type (
	registerReq struct {
		Username    string `json:"username"`
		Password    string `json:"password"`
		DisplayName string `json:"displayName"`
	}
	loginReq struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	createGroupReq struct {
		Name         string   `json:"name"`
		Members      []string `json:"members"`
		AllowInvites bool     `json:"allowInvites"`
		Announcement string   `json:"announcement"`
	}
	addMembersReq struct {
		UserIDs []string `json:"userIds"`
	}
	patchGroupReq struct {
		Name         *string `json:"name"`
		Announcement *string `json:"announcement"`
		AllowInvites *bool   `json:"allowInvites"`
		Owner        *string `json:"owner"`
	}
	patchMemberReq struct {
		Role       *string `json:"role"`
		MutedUntil *int64  `json:"mutedUntil"`
		Nickname   *string `json:"nickname"`
	}
	pullReq struct {
		User  string `json:"user"`
		Conv  string `json:"conv"`
		From  int64  `json:"from"`
		To    int64  `json:"to"`
		Limit int    `json:"limit"`
	}
)

// targets returns a fresh pointer for every request shape.
func targets() []any {
	return []any{new(registerReq), new(loginReq), new(createGroupReq), new(addMembersReq),
		new(patchGroupReq), new(patchMemberReq), new(pullReq)}
}

func decodeBody(body []byte, v any) error {
	r := httptest.NewRequest(http.MethodPost, "/api/v1/x", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return DecodeJSON(r, v)
}

// FuzzDecodeJSON checks that DecodeJSON never panics, allocates in
// proportion to the body, rejects bad bodies only with 400 BAD_FRAME or 413
// TOO_LARGE, and that an accepted body means the same when written back out.
func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"username":"alice","password":"correct horse"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 256<<10 {
			t.Skip("large bodies are covered by TestDecodeJSONRejectsOversizedBodies")
		}
		for _, v := range targets() {
			var err error
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err = decodeBody(body, v)
			runtime.ReadMemStats(&after)
			if n, limit := after.TotalAlloc-before.TotalAlloc, uint64(64*len(body)+1<<20); n > limit {
				t.Fatalf("%T: decoding %d bytes allocated %d bytes (limit %d)", v, len(body), n, limit)
			}
			if err != nil {
				var he *Error
				if !errors.As(err, &he) {
					t.Fatalf("%T: error %v is not an *rest.Error", v, err)
				}
				if he.Status != http.StatusBadRequest || he.Code != protocol.CodeBadFrame {
					t.Fatalf("%T: got %d %s, want 400 BAD_FRAME", v, he.Status, he.Code)
				}
				continue
			}
			out, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("%T: re-encode: %v", v, err)
			}
			again := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			if err := decodeBody(out, again); err != nil {
				t.Fatalf("%T: re-encoded body %s rejected: %v", v, out, err)
			}
			if !reflect.DeepEqual(v, again) {
				t.Fatalf("%T: round trip changed the value:\n first %+v\n again %+v", v, v, again)
			}
		}
	})
}

func TestDecodeJSONRejectsOversizedBodies(t *testing.T) {
	tests := []struct {
		name string
		give string
		want int
	}{
		{name: "a string just over the limit", give: `{"username":"` + strings.Repeat("a", MaxBody) + `"}`, want: http.StatusRequestEntityTooLarge},
		{name: "whitespace over the limit", give: `{"username":"a"` + strings.Repeat(" ", MaxBody) + `}`, want: http.StatusRequestEntityTooLarge},
		{name: "deep nesting inside the limit", give: `{"username":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`, want: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decodeBody([]byte(tt.give), new(registerReq))
			var he *Error
			if !errors.As(err, &he) || he.Status != tt.want {
				t.Fatalf("DecodeJSON = %v, want status %d", err, tt.want)
			}
		})
	}
}

func TestDecodeJSONRequiresAJSONContentType(t *testing.T) {
	tests := []struct {
		give string
		want int // 0: accepted
	}{
		{give: "application/json"},
		{give: "application/json; charset=utf-8"},
		{give: "Application/JSON; charset=UTF-8"},
		{give: "", want: http.StatusUnsupportedMediaType},
		{give: "text/plain", want: http.StatusUnsupportedMediaType},
		{give: "application/x-www-form-urlencoded", want: http.StatusUnsupportedMediaType},
		{give: "multipart/form-data; boundary=x", want: http.StatusUnsupportedMediaType},
		{give: "application/json; charset=latin1", want: http.StatusUnsupportedMediaType},
		{give: "application/jsonx", want: http.StatusUnsupportedMediaType},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/x", strings.NewReader(`{"username":"a"}`))
		if tt.give != "" {
			r.Header.Set("Content-Type", tt.give)
		}
		var v registerReq
		err := DecodeJSON(r, &v)
		var e *Error
		switch {
		case tt.want == 0 && err != nil:
			t.Errorf("Content-Type %q refused: %v", tt.give, err)
		case tt.want != 0 && (!errors.As(err, &e) || e.Status != tt.want || e.Code != CodeUnsupportedMediaType):
			t.Errorf("Content-Type %q: %v, want %d %s", tt.give, err, tt.want, CodeUnsupportedMediaType)
		}
	}
}
