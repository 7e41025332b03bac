package media

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// LocalPrefix is the path under which the dev process serves Local's
// signed URLs.
const LocalPrefix = "/media-store/"

// Local is Objects on a folder (imkube dev): objects are files, URLs are
// signed with HMAC-SHA256 over method, key, expiry and, for uploads, the
// content type, owner and size; Handler serves them.
type Local struct {
	dir string
	key []byte
	now func() time.Time
}

var _ Objects = (*Local)(nil)

type localMeta struct {
	ContentType string `json:"contentType"`
	Owner       string `json:"owner"`
}

// NewLocal opens (creating) the store in dir; the signing key is
// dir/signing.key, made on first use.
func NewLocal(dir string) (*Local, error) {
	if err := os.MkdirAll(filepath.Join(dir, "objects"), 0o700); err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	kf := filepath.Join(dir, "signing.key")
	key, err := os.ReadFile(kf)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.WriteFile(kf, key, 0o600); err != nil {
			return nil, fmt.Errorf("media: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("media: %s is shorter than 32 bytes; delete it to make a new one", kf)
	}
	return &Local{dir: dir, key: key, now: time.Now}, nil
}

func (l *Local) path(key string) (string, error) {
	if !ValidKey(key) {
		return "", ErrNotFound
	}
	return filepath.Join(l.dir, "objects", filepath.FromSlash(key)), nil
}

func (l *Local) sign(parts ...string) string {
	m := hmac.New(sha256.New, l.key)
	m.Write([]byte(strings.Join(parts, "\n")))
	return hex.EncodeToString(m.Sum(nil))
}

// PresignPut returns a path on the dev server.
func (l *Local) PresignPut(_ context.Context, key, contentType, owner string, size int64, ttl time.Duration) (string, map[string]string, error) {
	exp := strconv.FormatInt(l.now().Add(ttl).Unix(), 10)
	n := strconv.FormatInt(size, 10)
	q := url.Values{"exp": {exp}, "size": {n}, "sig": {l.sign("PUT", key, exp, contentType, owner, n)}}
	return LocalPrefix + key + "?" + q.Encode(), map[string]string{"Content-Type": contentType, OwnerHeader: owner}, nil
}

// PresignGet returns a path on the dev server.
func (l *Local) PresignGet(_ context.Context, key string, ttl time.Duration, attachment string) (string, error) {
	exp := strconv.FormatInt(l.now().Add(ttl).Unix(), 10)
	q := url.Values{"exp": {exp}, "sig": {l.sign("GET", key, exp, attachment)}}
	if attachment != "" {
		q.Set("name", attachment)
	}
	return LocalPrefix + key + "?" + q.Encode(), nil
}

// Stat reads the object's metadata.
func (l *Local) Stat(_ context.Context, key string) (ObjectInfo, error) {
	p, err := l.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return ObjectInfo{}, ErrNotFound
	} else if err != nil {
		return ObjectInfo{}, err
	}
	m, err := l.meta(p)
	if err != nil {
		return ObjectInfo{}, err
	}
	return ObjectInfo{Size: fi.Size(), ContentType: m.ContentType, Owner: m.Owner}, nil
}

func (l *Local) meta(p string) (localMeta, error) {
	var m localMeta
	b, err := os.ReadFile(p + ".meta")
	if errors.Is(err, fs.ErrNotExist) {
		return m, ErrNotFound
	} else if err != nil {
		return m, err
	}
	return m, json.Unmarshal(b, &m)
}

// Open reads the object.
func (l *Local) Open(_ context.Context, key string) (io.ReadCloser, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	return f, err
}

// Put writes an object (file first, metadata last: an object without
// metadata does not exist for Stat).
func (l *Local) Put(_ context.Context, key, contentType, owner string, r io.Reader, size int64) error {
	_, err := l.write(key, contentType, owner, r, size)
	return err
}

// write stores at most limit bytes of r (more: errTooLarge) atomically.
func (l *Local) write(key, contentType, owner string, r io.Reader, limit int64) (int64, error) {
	p, err := l.path(key)
	if err != nil {
		return 0, fmt.Errorf("media: invalid object key %q", key)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".upload-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, io.LimitReader(r, limit+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	if n > limit {
		return n, errTooLarge
	}
	mb, _ := json.Marshal(localMeta{ContentType: contentType, Owner: owner})
	os.Remove(p + ".meta")
	if err := os.Rename(tmp.Name(), p); err != nil {
		return n, err
	}
	return n, os.WriteFile(p+".meta", mb, 0o600)
}

var errTooLarge = errors.New("media: object larger than allowed")

// Remove deletes the object.
func (l *Local) Remove(_ context.Context, key string) error {
	p, err := l.path(key)
	if err != nil {
		return nil
	}
	for _, f := range []string{p + ".meta", p} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Ready: the folder is there.
func (l *Local) Ready(context.Context) error {
	_, err := os.Stat(filepath.Join(l.dir, "objects"))
	return err
}

// Handler serves the signed URLs under LocalPrefix: PUT stores an upload
// (content type, owner header and size as signed), GET serves an object
// (nosniff, sandboxed, attachment unless an image, audio or video type).
func (l *Local) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, LocalPrefix)
		q := r.URL.Query()
		exp, err := strconv.ParseInt(q.Get("exp"), 10, 64)
		if !ValidKey(key) || err != nil {
			http.Error(w, "invalid or unsigned media URL", http.StatusForbidden)
			return
		}
		if l.now().Unix() > exp {
			http.Error(w, "this media URL has expired: ask for a new one", http.StatusForbidden)
			return
		}
		switch r.Method {
		case http.MethodPut:
			ct, owner := r.Header.Get("Content-Type"), r.Header.Get(OwnerHeader)
			size, err := strconv.ParseInt(q.Get("size"), 10, 64)
			if err != nil || !hmac.Equal([]byte(q.Get("sig")), []byte(l.sign("PUT", key, q.Get("exp"), ct, owner, q.Get("size")))) {
				http.Error(w, "signature does not match: send the headers the upload response named", http.StatusForbidden)
				return
			}
			n, err := l.write(key, ct, owner, r.Body, size)
			switch {
			case errors.Is(err, errTooLarge):
				http.Error(w, fmt.Sprintf("the upload is larger than the %d bytes declared", size), http.StatusRequestEntityTooLarge)
			case err != nil:
				http.Error(w, "could not store the upload", http.StatusInternalServerError)
			case n != size:
				http.Error(w, fmt.Sprintf("the upload has %d bytes, %d were declared", n, size), http.StatusBadRequest)
				_ = l.Remove(r.Context(), key)
			default:
				w.WriteHeader(http.StatusOK)
			}
		case http.MethodGet, http.MethodHead:
			name := q.Get("name")
			if !hmac.Equal([]byte(q.Get("sig")), []byte(l.sign("GET", key, q.Get("exp"), name))) {
				http.Error(w, "invalid or unsigned media URL", http.StatusForbidden)
				return
			}
			p, _ := l.path(key)
			m, err := l.meta(p)
			f, ferr := os.Open(p)
			if err != nil || ferr != nil {
				http.NotFound(w, r)
				return
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				http.NotFound(w, r)
				return
			}
			h := w.Header()
			h.Set("Content-Type", m.ContentType)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
			h.Set("Cache-Control", "private, max-age=300")
			if name != "" {
				h.Set("Content-Disposition", contentDisposition(name))
			}
			http.ServeContent(w, r, "", fi.ModTime(), f)
		default:
			w.Header().Set("Allow", "GET, HEAD, PUT")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
}
