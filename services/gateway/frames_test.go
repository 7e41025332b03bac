package gateway

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestWriteFramesProducesFramesAWebSocketClientReads(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 65535, 65536, 200000, 10}
	var frames [][]byte
	for i, n := range sizes {
		frames = append(frames, bytes.Repeat([]byte{'a' + byte(i)}, n))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{WriteBufferPool: &sync.Pool{}}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &Client{node: &Node{cfg: Config{WriteTimeout: 5 * time.Second}}, conn: conn}
		if err := c.writeFrames(frames...); err != nil {
			t.Error(err)
		}
		c.writePing()
		conn.ReadMessage() // until the client closes
		conn.Close()
	}))
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for i, want := range frames {
		typ, got, err := ws.ReadMessage()
		if err != nil || typ != websocket.TextMessage || !bytes.Equal(got, want) {
			t.Fatalf("frame %d (%d bytes): type %d, %d bytes, err %v", i, len(want), typ, len(got), err)
		}
	}
}
