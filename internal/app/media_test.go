package app_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/bus"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/imtest"
	"github.com/imkube/imkube/internal/media"
	"github.com/imkube/imkube/internal/media/mediatest"
	"github.com/imkube/imkube/internal/testenv"
)

// mediaBackends run the same media tests on the dev process's embedded
// store and on the real S3-compatible server of hack/s3.sh.
var mediaBackends = []struct {
	name    string
	objects func(t *testing.T) media.Objects
}{
	{"embedded", func(*testing.T) media.Objects { return nil }},
	{"s3", func(t *testing.T) media.Objects { return mediatest.S3(t) }},
}

// clock is a settable clock for the media service.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

type mediaEnv struct {
	s     *app.Server
	api   *imtest.API
	clock *clock
}

func startMedia(t *testing.T, objects media.Objects) *mediaEnv {
	t.Helper()
	c := &clock{}
	s, err := app.StartDev(context.Background(), "127.0.0.1:0", t.TempDir(), app.Options{BcryptCost: 4, Cluster: fastCluster(),
		Objects: objects, Clock: c.now})
	if err != nil {
		t.Fatalf("start dev server: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return &mediaEnv{s: s, api: imtest.NewAPI(s.URL), clock: c}
}

type uploaded struct {
	ObjectKey string
	UploadURL string
	Method    string
	Headers   map[string]string
	ExpiresAt int64
}

func pngBytes(t *testing.T, w, h int) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// upload asks for an upload and PUTs data to it.
func (e *mediaEnv) upload(t *testing.T, who imtest.Account, kind, contentType, name string, data []byte) uploaded {
	t.Helper()
	var u uploaded
	code, err := e.api.Do("POST", "/api/v1/uploads", who.Token, map[string]any{"kind": kind, "contentType": contentType, "size": len(data), "name": name}, &u)
	if err != nil || code != http.StatusCreated || u.ObjectKey == "" || u.Method != "PUT" || !strings.HasPrefix(u.UploadURL, "http") {
		t.Fatalf("POST /api/v1/uploads: %d %v %+v", code, err, u)
	}
	req, _ := http.NewRequest("PUT", u.UploadURL, bytes.NewReader(data))
	for k, v := range u.Headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT upload: %d %s", resp.StatusCode, b)
	}
	return u
}

// fetch GETs /api/v1/media/key as who, following the redirect.
func (e *mediaEnv) fetch(who imtest.Account, key, query string) (int, []byte) {
	req, _ := http.NewRequest("GET", e.s.URL+"/api/v1/media/"+key+query, nil)
	req.Header.Set("Authorization", "Bearer "+who.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func sendMedia(c *imtest.Conn, cmid, to, kind string, body map[string]any) {
	c.SendJSON(map[string]any{"t": "send", "cmid": cmid, "to": map[string]string{"user": to}, "kind": kind, "body": body})
}

func mediaBody(u uploaded, name, ct string, size int) map[string]any {
	return map[string]any{"objectKey": u.ObjectKey, "name": name, "size": size, "contentType": ct}
}

func TestMediaMessageReachesTheRecipientWhoFetchesTheSameBytes(t *testing.T) {
	for _, be := range mediaBackends {
		t.Run(be.name, func(t *testing.T) {
			e := startMedia(t, be.objects(t))
			alice, bob, carol := e.api.Register(t, "alice"), e.api.Register(t, "bob"), e.api.Register(t, "carol")
			ca, _ := imtest.Connect(t, e.s.URL, alice.Token, "d1")
			cb, _ := imtest.Connect(t, e.s.URL, bob.Token, "d1")

			img := pngBytes(t, 800, 600)
			u := e.upload(t, alice, "image", "image/png", "cat.png", img)
			doc := []byte("%PDF-1.4 a small document")
			f := e.upload(t, alice, "file", "application/pdf", "report.pdf", doc)

			sendMedia(ca, "c1", bob.ID, "image", mediaBody(u, "cat.png", "image/png", len(img)))
			ca.Expect("ack")
			m := cb.Expect("msg")
			var body media.Body
			if err := json.Unmarshal([]byte(m.Str("body")), &body); err != nil || m.Str("kind") != "image" {
				t.Fatalf("msg %v: %v", m, err)
			}
			if body.ObjectKey != u.ObjectKey || body.Size != int64(len(img)) || body.Width != 800 || body.Height != 600 || body.ThumbKey == "" {
				t.Fatalf("image body %+v: want the key, size, 800x600 and a thumbKey", body)
			}
			sendMedia(ca, "c2", bob.ID, "file", mediaBody(f, "report.pdf", "application/pdf", len(doc)))
			ca.Expect("ack")
			cb.Expect("msg")

			for _, tt := range []struct {
				key  string
				want []byte
			}{{u.ObjectKey, img}, {f.ObjectKey, doc}} {
				if code, got := e.fetch(bob, tt.key, ""); code != http.StatusOK || !bytes.Equal(got, tt.want) {
					t.Fatalf("recipient fetches %s: %d, %d bytes; want 200 and the %d uploaded bytes", tt.key, code, len(got), len(tt.want))
				}
				if code, _ := e.fetch(carol, tt.key, ""); code != http.StatusForbidden {
					t.Fatalf("non-member fetches %s: %d, want 403", tt.key, code)
				}
			}
			// The thumbnail is made asynchronously.
			deadline := time.Now().Add(20 * time.Second)
			for {
				code, b := e.fetch(bob, u.ObjectKey, "?thumb=1")
				if code == http.StatusOK {
					cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
					if err != nil || format != "jpeg" || cfg.Width != 320 || cfg.Height != 240 {
						t.Fatalf("thumbnail: %s %dx%d %v, want a 320x240 jpeg", format, cfg.Width, cfg.Height, err)
					}
					break
				}
				if code != http.StatusNotFound || time.Now().After(deadline) {
					t.Fatalf("thumbnail: %d", code)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if code, _ := e.fetch(carol, u.ObjectKey, "?thumb=1"); code != http.StatusForbidden {
				t.Fatalf("non-member fetches the thumbnail: %d, want 403", code)
			}
		})
	}
}

func TestForgedMediaSendsAreRefusedAndStoreNothing(t *testing.T) {
	for _, be := range mediaBackends {
		t.Run(be.name, func(t *testing.T) {
			e := startMedia(t, be.objects(t))
			alice, bob := e.api.Register(t, "alice"), e.api.Register(t, "bob")
			cb, _ := imtest.Connect(t, e.s.URL, bob.Token, "d1")
			data := []byte("alice's private file")
			mine := e.upload(t, alice, "file", "text/plain", "a.txt", data)
			bobs := e.upload(t, bob, "file", "text/plain", "b.txt", data)
			var notPut uploaded
			if code, _ := e.api.Do("POST", "/api/v1/uploads", bob.Token, map[string]any{"kind": "file", "contentType": "text/plain", "size": 5, "name": "x.txt"}, &notPut); code != http.StatusCreated {
				t.Fatalf("upload: %d", code)
			}
			tests := []struct {
				name string
				kind string
				body map[string]any
				want string
			}{
				{"someone else's upload", "file", mediaBody(mine, "a.txt", "text/plain", len(data)), "not an upload of yours"},
				{"a key that does not exist", "file", mediaBody(uploaded{ObjectKey: "m/" + bob.ID + "/aaaaaaaaaaaaaaaaaaaaaaaaaa"}, "a.txt", "text/plain", 1), "not an upload of yours"},
				{"a malformed key", "file", mediaBody(uploaded{ObjectKey: "../etc/passwd"}, "a.txt", "text/plain", 1), "not an object key"},
				{"the wrong size", "file", mediaBody(bobs, "b.txt", "text/plain", len(data)+1), "differs from the upload"},
				{"the wrong type", "file", mediaBody(bobs, "b.txt", "text/html", len(data)), "differs from the upload"},
				{"the wrong kind", "image", mediaBody(bobs, "b.txt", "text/plain", len(data)), "requested as a file upload"},
				{"an upload never PUT", "file", mediaBody(notPut, "x.txt", "text/plain", 5), "was not uploaded"},
				{"a text body", "file", nil, "body must be a JSON object"},
			}
			for i, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					cmid := fmt.Sprintf("f%d", i)
					if tt.body == nil {
						cb.SendJSON(map[string]any{"t": "send", "cmid": cmid, "to": map[string]string{"user": alice.ID}, "kind": tt.kind, "body": "hello"})
					} else {
						sendMedia(cb, cmid, alice.ID, tt.kind, tt.body)
					}
					f := cb.Expect("error")
					if f.Str("code") != "BAD_FRAME" || f.Str("cmid") != cmid || !strings.Contains(f.Str("message"), tt.want) {
						t.Fatalf("error %v: want BAD_FRAME for %s mentioning %q", f, cmid, tt.want)
					}
				})
			}
			items, _, err := e.s.Store.Pull(context.Background(), "u:"+min(alice.ID, bob.ID)+":"+max(alice.ID, bob.ID), 1, 0, 10)
			if err != nil || len(items) != 0 {
				t.Fatalf("stored messages after refused sends: %v %v, want none", items, err)
			}
			// Refused sends referenced nothing: alice's object is still hers alone.
			if code, _ := e.fetch(bob, mine.ObjectKey, ""); code != http.StatusForbidden {
				t.Fatalf("bob fetches alice's upload after a forged send: %d, want 403", code)
			}
			// The connection stays usable.
			sendMedia(cb, "ok", alice.ID, "file", mediaBody(bobs, "b.txt", "text/plain", len(data)))
			cb.Expect("ack")
		})
	}
}

func TestUploadRequestsAreCheckedAgainstTheLimits(t *testing.T) {
	e := startMedia(t, nil)
	alice := e.api.Register(t, "alice")
	tests := []struct {
		name string
		give map[string]any
		want int
		code string
	}{
		{"an image over the size limit", map[string]any{"kind": "image", "contentType": "image/png", "size": 11 << 20, "name": "a.png"}, 413, "TOO_LARGE"},
		{"a type the kind does not allow", map[string]any{"kind": "image", "contentType": "text/html", "size": 10, "name": "a.html"}, 400, "BAD_FRAME"},
		{"an unknown kind", map[string]any{"kind": "sticker", "contentType": "image/png", "size": 10, "name": "a.png"}, 400, "BAD_FRAME"},
		{"a zero size", map[string]any{"kind": "file", "contentType": "text/plain", "size": 0, "name": "a.txt"}, 400, "BAD_FRAME"},
		{"a name with a slash", map[string]any{"kind": "file", "contentType": "text/plain", "size": 3, "name": "../a.txt"}, 400, "BAD_FRAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res struct{ Code string }
			code, err := e.api.Do("POST", "/api/v1/uploads", alice.Token, tt.give, &res)
			if err != nil || code != tt.want || res.Code != tt.code {
				t.Fatalf("got %d %s %v, want %d %s", code, res.Code, err, tt.want, tt.code)
			}
		})
	}
	if code, _ := e.api.Do("POST", "/api/v1/uploads", "", map[string]any{"kind": "file", "contentType": "text/plain", "size": 3, "name": "a.txt"}, nil); code != http.StatusUnauthorized {
		t.Fatalf("anonymous upload: %d, want 401", code)
	}
	// Pending uploads per user are bounded (default 20).
	var last int
	for i := 0; i < 21; i++ {
		last, _ = e.api.Do("POST", "/api/v1/uploads", alice.Token, map[string]any{"kind": "file", "contentType": "text/plain", "size": 3, "name": "a.txt"}, nil)
		if i < 20 && last != http.StatusCreated {
			t.Fatalf("upload %d: %d", i, last)
		}
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("21st pending upload: %d, want 429", last)
	}
}

func TestOrphanUploadsAreSweptAfterTheTTLAndSentOnesStay(t *testing.T) {
	for _, be := range mediaBackends {
		t.Run(be.name, func(t *testing.T) {
			e := startMedia(t, be.objects(t))
			alice, bob := e.api.Register(t, "alice"), e.api.Register(t, "bob")
			ca, _ := imtest.Connect(t, e.s.URL, alice.Token, "d1")
			data := []byte("kept or swept")
			sent := e.upload(t, alice, "file", "text/plain", "s.txt", data)
			orphan := e.upload(t, alice, "file", "text/plain", "o.txt", data)
			sendMedia(ca, "c1", bob.ID, "file", mediaBody(sent, "s.txt", "text/plain", len(data)))
			ca.Expect("ack")
			ctx := context.Background()
			if n, err := e.s.Media().Sweep(ctx); err != nil || n != 0 {
				t.Fatalf("sweep before the TTL: %d %v, want 0", n, err)
			}
			e.clock.add(25 * time.Hour) // default orphanTTL 24h
			if n, err := e.s.Media().Sweep(ctx); err != nil || n != 1 {
				t.Fatalf("sweep after the TTL: %d %v, want 1", n, err)
			}
			if _, err := e.s.Media().Objects().Stat(ctx, orphan.ObjectKey); err != media.ErrNotFound {
				t.Fatalf("orphan object after the sweep: %v, want ErrNotFound", err)
			}
			if code, _ := e.fetch(alice, orphan.ObjectKey, ""); code != http.StatusForbidden {
				t.Fatalf("fetch of a swept upload: %d, want 403", code)
			}
			if code, got := e.fetch(bob, sent.ObjectKey, ""); code != http.StatusOK || !bytes.Equal(got, data) {
				t.Fatalf("sent object after the sweep: %d %q", code, got)
			}
			// A swept upload can no longer be sent.
			sendMedia(ca, "c2", bob.ID, "file", mediaBody(orphan, "o.txt", "text/plain", len(data)))
			if f := ca.Expect("error"); f.Str("code") != "BAD_FRAME" {
				t.Fatalf("send of a swept upload: %v", f)
			}
		})
	}
}

func TestDecompressionBombGetsNoThumbnailButIsDelivered(t *testing.T) {
	for _, be := range mediaBackends {
		t.Run(be.name, func(t *testing.T) {
			e := startMedia(t, be.objects(t))
			alice, bob := e.api.Register(t, "alice"), e.api.Register(t, "bob")
			ca, _ := imtest.Connect(t, e.s.URL, alice.Token, "d1")
			b := bombPNG(t, 100000, 100000)
			u := e.upload(t, alice, "image", "image/png", "bomb.png", b)
			sendMedia(ca, "c1", bob.ID, "image", mediaBody(u, "bomb.png", "image/png", len(b)))
			ca.Expect("ack")
			items, _, err := e.s.Store.Pull(context.Background(), "u:"+min(alice.ID, bob.ID)+":"+max(alice.ID, bob.ID), 1, 0, 10)
			if err != nil || len(items) != 1 || strings.Contains(items[0].Body, "thumbKey") {
				t.Fatalf("stored: %+v %v; want one message without thumbKey", items, err)
			}
			if code, _ := e.fetch(bob, u.ObjectKey, "?thumb=1"); code != http.StatusNotFound {
				t.Fatalf("thumbnail of a bomb: %d, want 404", code)
			}
		})
	}
}

// bombPNG returns a small PNG whose header claims width x height pixels.
func bombPNG(t *testing.T, width, height uint32) []byte {
	b := pngBytes(t, 8, 8)
	binary.BigEndian.PutUint32(b[16:], width)
	binary.BigEndian.PutUint32(b[20:], height)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// distributedMedia starts user, sequence, message and gateway roles as
// separate processes (real MySQL and Redis, in-process bus) with the
// message service on store, and returns the gateway's URL.
func distributedMedia(t *testing.T, store config.ObjectStore) string {
	t.Helper()
	ucfg := distributed(t, config.RoleUser)
	users, err := app.Start(context.Background(), ucfg, []config.Role{config.RoleUser}, app.Options{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeWithin(t, users) })
	seqCfg := distributed(t, config.RoleSequence)
	seqCfg.MySQL.DSN = ucfg.MySQL.DSN
	seq, err := app.Start(context.Background(), seqCfg, []config.Role{config.RoleSequence}, app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeWithin(t, seq) })
	b := bus.NewInProc(bus.InProcOptions{})
	t.Cleanup(func() { b.Close() })
	mcfg := distributed(t, config.RoleMessage)
	mcfg.MySQL.DSN, mcfg.Auth.JWTKeyFile, mcfg.Message.SequenceURL = ucfg.MySQL.DSN, ucfg.Auth.JWTKeyFile, seq.URL
	mcfg.Message.ObjectStore = store
	if err := mcfg.Validate(config.RoleMessage); err != nil {
		t.Fatal(err)
	}
	msgs, err := app.Start(context.Background(), mcfg, []config.Role{config.RoleMessage},
		app.Options{Adapters: app.NewDistributed(mcfg, nil).WithBus(nopClose{b})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeWithin(t, msgs) })
	gcfg := distributed(t, config.RoleGateway)
	gcfg.Redis.Prefix, gcfg.Auth.JWTKeyFile = mcfg.Redis.Prefix, ucfg.Auth.JWTKeyFile
	gcfg.Gateway.UserURL, gcfg.Gateway.MessageURL = users.URL, msgs.URL
	gcfg.Gateway.ID = "gw-" + token()
	gw, err := app.Start(context.Background(), gcfg, []config.Role{config.RoleGateway},
		app.Options{Adapters: app.NewDistributed(gcfg, nil).WithBus(nopClose{b})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeWithin(t, gw) })
	return gw.URL
}

// In distributed mode the object store is configured like in a pod
// (IMKUBE_S3_*), clients upload to it directly, and the gateway proxies the
// media REST calls to the message service.
func TestDistributedMediaGoesStraightToTheObjectStore(t *testing.T) {
	endpoint := testenv.Require(t, "IMKUBE_TEST_S3_ENDPOINT")
	gw := distributedMedia(t, config.ObjectStore{Endpoint: endpoint, Bucket: os.Getenv("IMKUBE_TEST_S3_BUCKET"),
		Region: os.Getenv("IMKUBE_TEST_S3_REGION"), PathStyle: true,
		AccessKey: os.Getenv("IMKUBE_TEST_S3_ACCESS_KEY"), SecretKey: os.Getenv("IMKUBE_TEST_S3_SECRET_KEY")})
	e := &mediaEnv{s: &app.Server{URL: gw}, api: imtest.NewAPI(gw)}
	alice, bob, carol := e.api.Register(t, "alice"), e.api.Register(t, "bob"), e.api.Register(t, "carol")
	ca, _ := imtest.Connect(t, gw, alice.Token, "a1")
	cb, _ := imtest.Connect(t, gw, bob.Token, "b1")
	data := pngBytes(t, 64, 64)
	u := e.upload(t, alice, "image", "image/png", "p.png", data)
	if !strings.HasPrefix(u.UploadURL, endpoint+"/") {
		t.Fatalf("uploadUrl %s: want the object store %s (never the platform)", u.UploadURL, endpoint)
	}
	sendMedia(ca, "c1", bob.ID, "image", mediaBody(u, "p.png", "image/png", len(data)))
	ca.Expect("ack")
	cb.Expect("msg")
	if code, got := e.fetch(bob, u.ObjectKey, ""); code != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("recipient fetch through the gateway: %d, %d bytes", code, len(got))
	}
	if code, _ := e.fetch(carol, u.ObjectKey, ""); code != http.StatusForbidden {
		t.Fatalf("non-member: %d, want 403", code)
	}
}

func TestWithoutAnObjectStoreMediaIsOffWithAClearAnswer(t *testing.T) {
	gw := distributedMedia(t, config.ObjectStore{})
	api := imtest.NewAPI(gw)
	alice, bob := api.Register(t, "alice"), api.Register(t, "bob")
	var res struct{ Code, Message string }
	code, err := api.Do("POST", "/api/v1/uploads", alice.Token, map[string]any{"kind": "file", "contentType": "text/plain", "size": 3, "name": "a.txt"}, &res)
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(res.Message, "no object store") {
		t.Fatalf("upload without a store: %d %+v %v", code, res, err)
	}
	ca, _ := imtest.Connect(t, gw, alice.Token, "a1")
	sendMedia(ca, "c1", bob.ID, "file", map[string]any{"objectKey": "m/" + alice.ID + "/aaaaaaaaaaaaaaaaaaaaaaaaaa", "name": "a.txt", "size": 3, "contentType": "text/plain"})
	if f := ca.Expect("error"); f.Str("code") != "BAD_FRAME" || !strings.Contains(f.Str("message"), "media storage") {
		t.Fatalf("media send without a store: %v", f)
	}
}
