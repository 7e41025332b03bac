package media_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/media"
	"github.com/imkube/imkube/internal/media/mediatest"
)

// backend is one Objects with the base its path URLs resolve against.
type backend struct {
	name    string
	objects media.Objects
	base    string
}

// backends are the same tests' two stores: the dev process's local store
// (served by an httptest server) and the real S3-compatible server.
func backends(t *testing.T) []func(t *testing.T) backend {
	return []func(t *testing.T) backend{
		func(t *testing.T) backend {
			l, err := media.NewLocal(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(l.Handler())
			t.Cleanup(srv.Close)
			return backend{name: "local", objects: l, base: srv.URL}
		},
		func(t *testing.T) backend { return backend{name: "s3", objects: mediatest.S3(t)} },
	}
}

func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	for i, mk := range backends(t) {
		t.Run([]string{"local", "s3"}[i], func(t *testing.T) { fn(t, mk(t)) })
	}
}

func randomKey(owner string) string {
	var b [16]byte
	rand.Read(b[:])
	return "m/" + owner + "/" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func (b backend) url(u string) string {
	if strings.HasPrefix(u, "/") {
		return b.base + u
	}
	return u
}

func do(t *testing.T, method, url string, headers map[string]string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func TestPresignedUploadThenDownloadReturnsTheSameBytes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		key, data := randomKey("u1"), []byte("hello, object store")
		u, h, err := b.objects.PresignPut(ctx, key, "text/plain", "u1", int64(len(data)), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if code, body := do(t, "PUT", b.url(u), h, data); code != http.StatusOK {
			t.Fatalf("PUT: %d %s", code, body)
		}
		info, err := b.objects.Stat(ctx, key)
		if err != nil || info.Size != int64(len(data)) || info.ContentType != "text/plain" || info.Owner != "u1" {
			t.Fatalf("Stat = %+v, %v; want %d bytes, text/plain, owner u1", info, err, len(data))
		}
		g, err := b.objects.PresignGet(ctx, key, time.Minute, "")
		if err != nil {
			t.Fatal(err)
		}
		if code, body := do(t, "GET", b.url(g), nil, nil); code != http.StatusOK || !bytes.Equal(body, data) {
			t.Fatalf("GET: %d %q, want 200 %q", code, body, data)
		}
		if err := b.objects.Remove(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, err := b.objects.Stat(ctx, key); err != media.ErrNotFound {
			t.Fatalf("Stat after Remove: %v, want ErrNotFound", err)
		}
	})
}

func TestUploadWithoutTheSignedHeadersIsRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		key := randomKey("u1")
		u, h, err := b.objects.PresignPut(ctx, key, "image/png", "u1", 3, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		forged := map[string]string{"Content-Type": h["Content-Type"], media.OwnerHeader: "u2"}
		if code, _ := do(t, "PUT", b.url(u), forged, []byte("abc")); code != http.StatusForbidden {
			t.Fatalf("PUT with another owner: %d, want 403", code)
		}
		if _, err := b.objects.Stat(ctx, key); err != media.ErrNotFound {
			t.Fatalf("Stat after a refused PUT: %v, want ErrNotFound", err)
		}
		// An unsigned request gets nothing.
		g, _ := b.objects.PresignGet(ctx, key, time.Minute, "")
		unsigned, _, _ := strings.Cut(b.url(g), "?")
		if code, _ := do(t, "GET", unsigned, nil, nil); code != http.StatusForbidden {
			t.Fatalf("unsigned GET: %d, want 403", code)
		}
	})
}

func TestExpiredPresignedURLIsRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		key, data := randomKey("u1"), []byte("soon gone")
		if err := b.objects.Put(ctx, key, "text/plain", "u1", bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.objects.Remove(context.Background(), key) })
		g, err := b.objects.PresignGet(ctx, key, time.Second, "")
		if err != nil {
			t.Fatal(err)
		}
		if code, _ := do(t, "GET", b.url(g), nil, nil); code != http.StatusOK {
			t.Fatalf("GET before expiry: %d, want 200", code)
		}
		time.Sleep(2100 * time.Millisecond)
		if code, body := do(t, "GET", b.url(g), nil, nil); code != http.StatusForbidden {
			t.Fatalf("GET after expiry: %d %s, want 403", code, body)
		}
	})
}

func testImage(w, h int) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	return img
}

// PNG returns a w x h PNG.
func PNG(t testing.TB, w, h int) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, testImage(w, h)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// bomb returns a small PNG whose header claims width x height pixels.
func bomb(t testing.TB, width, height uint32) []byte {
	b := PNG(t, 8, 8)
	// IHDR data starts at 16: width, height; its CRC covers type+data (12..29).
	binary.BigEndian.PutUint32(b[16:], width)
	binary.BigEndian.PutUint32(b[20:], height)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

func TestThumbnailIsABoundedJPEGForPNGAndJPEG(t *testing.T) {
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, testImage(1000, 500), nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		give  []byte
		wantW int
		wantH int
	}{
		{"a PNG is scaled to 320 on its longest side", PNG(t, 640, 960), 213, 320},
		{"a JPEG is scaled to 320 on its longest side", jb.Bytes(), 320, 160},
		{"a small image keeps its size", PNG(t, 40, 30), 40, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := media.Thumbnail(bytes.NewReader(tt.give), 10<<20, 40_000_000)
			if err != nil {
				t.Fatal(err)
			}
			cfg, format, err := image.DecodeConfig(bytes.NewReader(out))
			if err != nil || format != "jpeg" || cfg.Width != tt.wantW || cfg.Height != tt.wantH {
				t.Fatalf("thumbnail: %s %dx%d %v, want jpeg %dx%d", format, cfg.Width, cfg.Height, err, tt.wantW, tt.wantH)
			}
		})
	}
}

func TestThumbnailRefusesADecompressionBombBeforeDecoding(t *testing.T) {
	b := bomb(t, 100000, 100000)
	if _, _, err := image.DecodeConfig(bytes.NewReader(b)); err != nil {
		t.Fatalf("the bomb's header must parse: %v", err)
	}
	_, err := media.Thumbnail(bytes.NewReader(b), 10<<20, 40_000_000)
	if err == nil || !strings.Contains(err.Error(), "too many pixels") {
		t.Fatalf("Thumbnail(bomb) = %v, want the too-many-pixels error", err)
	}
	if _, err := media.Thumbnail(strings.NewReader("not an image"), 10<<20, 40_000_000); err == nil {
		t.Fatal("Thumbnail of garbage succeeded")
	}
}
