package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandlerServesDemoAndSDK(t *testing.T) {
	tests := []struct {
		name       string
		give       string
		wantStatus int
		wantType   string
		wantBody   string
	}{
		{name: "the demo page is served at the root", give: "/", wantStatus: 200, wantType: "text/html", wantBody: "/sdk/imkube.js"},
		{name: "the demo script is served as JavaScript", give: "/app.js", wantStatus: 200, wantType: "javascript", wantBody: "ImkubeClient"},
		{name: "the stylesheet is served as CSS", give: "/style.css", wantStatus: 200, wantType: "text/css"},
		{name: "the SDK entry module is served under /sdk/", give: "/sdk/imkube.js", wantStatus: 200, wantType: "javascript", wantBody: "export"},
		{name: "the SDK client module is served under /sdk/", give: "/sdk/client.js", wantStatus: 200, wantType: "javascript", wantBody: "class ImkubeClient"},
		{name: "an unknown file is not found", give: "/nope.js", wantStatus: 404},
	}
	h := Handler()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.give, nil))
			res := rec.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", res.StatusCode, tt.wantStatus)
			}
			if ct := res.Header.Get("Content-Type"); !strings.Contains(ct, tt.wantType) {
				t.Errorf("Content-Type = %q, want it to contain %q", ct, tt.wantType)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body does not contain %q", tt.wantBody)
			}
		})
	}
}

func TestHandlerRejectsWrites(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST / = %d, want 405", rec.Code)
	}
}

func TestThePageMayNotBeFramedNorRunForeignScripts(t *testing.T) {
	h := Handler()
	for _, path := range []string{"/", "/app.js", "/sdk/imkube.js"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		csp := rec.Header().Get("Content-Security-Policy")
		for _, want := range []string{"frame-ancestors 'none'", "script-src 'self'", "connect-src 'self'", "object-src 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: Content-Security-Policy %q lacks %q", path, csp, want)
			}
		}
		if got := rec.Header().Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("%s: X-Frame-Options %q, want DENY", path, got)
		}
	}
}
