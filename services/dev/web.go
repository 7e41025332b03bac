package dev

import (
	"net/http"

	"github.com/imkube/imkube/services/web"
)

// mountWeb serves the demo page at / and the SDK at /sdk/.
func mountWeb(mux *http.ServeMux) {
	h := web.Handler()
	mux.Handle("GET /", h)
}
