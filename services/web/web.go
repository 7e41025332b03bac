// Package web embeds imkube's JavaScript SDK and demo chat page and serves
// them: the demo at / and the SDK modules at /sdk/.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed demo sdk
var files embed.FS

// ContentSecurityPolicy is sent with every response: the page runs only its
// own scripts and styles, talks only to its own origin (REST and the
// WebSocket; 'self' covers ws:/wss: of the same host), and may not be framed
// by other sites (clickjacking).
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the demo page at / (index.html, app.js, style.css) and the
// SDK's ES modules at /sdk/. Mount it on the root of a mux; more specific
// routes (/ws, /api/v1/, /healthz) take precedence.
func Handler() http.Handler {
	demo, _ := fs.Sub(files, "demo") // cannot fail: the folder is embedded
	sdk, _ := fs.Sub(files, "sdk")
	demoFS := http.FileServerFS(demo)
	sdkFS := http.StripPrefix("/sdk", http.FileServerFS(sdk))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// The page is small and changes with the binary: always revalidate.
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", ContentSecurityPolicy)
		w.Header().Set("X-Frame-Options", "DENY") // frame-ancestors for older browsers
		w.Header().Set("Referrer-Policy", "no-referrer")
		if strings.HasPrefix(r.URL.Path, "/sdk/") {
			sdkFS.ServeHTTP(w, r)
			return
		}
		demoFS.ServeHTTP(w, r)
	})
}
