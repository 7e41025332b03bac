package media

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/rest"
	"github.com/imkube/imkube/internal/store"
)

// Store is what Service needs of the upload records (*store.DB).
type Store interface {
	CreateUpload(ctx context.Context, u store.Upload, maxPending int) error
	UploadByKey(ctx context.Context, key string) (*store.Upload, error)
	ReferenceUpload(ctx context.Context, key, conv string) error
	MediaConvs(ctx context.Context, key string) ([]string, error)
	SetThumb(ctx context.Context, key, thumbKey, state string) error
	OrphanUploads(ctx context.Context, before time.Time, limit int) ([]store.Upload, error)
	PendingThumbs(ctx context.Context, before time.Time, limit int) ([]store.Upload, error)
	DeleteUpload(ctx context.Context, key string) (bool, error)
}

// Config tunes the service.
type Config struct {
	// Settings returns the current media settings (limits, orphan TTL).
	Settings func() config.Media
	// UploadTTL is how long an upload URL is valid (default 15 min).
	UploadTTL time.Duration
	// DownloadTTL is how long a download URL is valid (default 5 min).
	DownloadTTL time.Duration
	// SweepInterval is the time between two orphan sweeps (default 1 min).
	SweepInterval time.Duration
	// Workers make thumbnails (default 2); Queue bounds the waiting jobs
	// (default 256; a full queue leaves the job to the sweeper's retry).
	Workers, Queue int
	// Now is the clock (tests move it).
	Now func() time.Time
}

// Deps are the service's collaborators.
type Deps struct {
	Objects Objects // required
	Store   Store   // required
	// MayRead returns nil when user may read conv (required).
	MayRead func(ctx context.Context, user, conv string) error
	Log     *slog.Logger
}

// Service is the media path: uploads, the check of media message bodies,
// downloads, thumbnails and the orphan sweep.
type Service struct {
	cfg     Config
	objects Objects
	store   Store
	mayRead func(ctx context.Context, user, conv string) error
	log     *slog.Logger
	jobs    chan string
}

// New returns a service.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.Objects == nil || deps.Store == nil || deps.MayRead == nil {
		return nil, errors.New("media: Deps.Objects, Store and MayRead are required")
	}
	if cfg.Settings == nil {
		m := config.DefaultMedia()
		cfg.Settings = func() config.Media { return m }
	}
	if cfg.UploadTTL <= 0 {
		cfg.UploadTTL = 15 * time.Minute
	}
	if cfg.DownloadTTL <= 0 {
		cfg.DownloadTTL = 5 * time.Minute
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Minute
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 256
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, objects: deps.Objects, store: deps.Store, mayRead: deps.MayRead, log: deps.Log,
		jobs: make(chan string, cfg.Queue)}, nil
}

// Objects returns the object store.
func (s *Service) Objects() Objects { return s.objects }

// IsMedia reports whether a message kind carries an uploaded object.
func IsMedia(kind string) bool {
	_, ok := config.DefaultMedia().Kind(kind)
	return ok
}

// UploadRequest is the body of POST /api/v1/uploads.
type UploadRequest struct {
	Kind        string `json:"kind"`
	ContentType string `json:"contentType"`
	Size        int64  `json:"size"`
	Name        string `json:"name"`
}

// UploadResponse answers POST /api/v1/uploads (201).
type UploadResponse struct {
	ObjectKey string            `json:"objectKey"`
	UploadURL string            `json:"uploadUrl"`
	Method    string            `json:"method"`
	Headers   map[string]string `json:"headers"`
	// ExpiresAt is when uploadUrl stops working (Unix milliseconds).
	ExpiresAt int64 `json:"expiresAt"`
}

// MaxNameLen bounds a file name in bytes.
const MaxNameLen = 255

// Routes mounts POST /api/v1/uploads and GET /api/v1/media/{objectKey}.
func (s *Service) Routes(mux *http.ServeMux, v rest.Verifier) {
	mux.Handle("POST /api/v1/uploads", rest.Authenticated(v, http.HandlerFunc(s.handleUpload)))
	mux.Handle("GET /api/v1/media/{key...}", rest.Authenticated(v, http.HandlerFunc(s.handleMedia)))
}

func badRequest(format string, args ...any) error {
	return rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, format, args...)
}

// normalType returns the lower-case media type without parameters.
func normalType(ct string) (string, bool) {
	mt, _, err := mime.ParseMediaType(ct)
	return mt, err == nil && strings.Contains(mt, "/")
}

func checkName(name string) error {
	if name == "" || len(name) > MaxNameLen || !utf8.ValidString(name) {
		return fmt.Errorf("name must be 1-%d bytes of UTF-8", MaxNameLen)
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == '/' || r == '\\' {
			return errors.New("name must not contain control characters or slashes")
		}
	}
	return nil
}

// Upload checks a request against the limits, records it and presigns the
// PUT.
func (s *Service) Upload(ctx context.Context, user string, req UploadRequest) (*UploadResponse, error) {
	set := s.cfg.Settings()
	lim, ok := set.Kind(req.Kind)
	if !ok {
		return nil, badRequest("kind must be one of image, file, audio, video")
	}
	ct, ok := normalType(req.ContentType)
	if !ok {
		return nil, badRequest("contentType %q is not a media type like image/png", req.ContentType)
	}
	if !lim.Allows(ct) {
		return nil, badRequest("content type %q is not allowed for %s uploads (allowed: %s)", ct, req.Kind, strings.Join(lim.ContentTypes, ", "))
	}
	if req.Size < 1 {
		return nil, badRequest("size must be the number of bytes to upload (>= 1)")
	}
	if req.Size > lim.MaxBytes {
		return nil, rest.Errorf(http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, "%s uploads are limited to %d bytes; this one has %d", req.Kind, lim.MaxBytes, req.Size)
	}
	if err := checkName(req.Name); err != nil {
		return nil, badRequest("%v", err)
	}
	key := newKey(user)
	now := s.cfg.Now()
	err := s.store.CreateUpload(ctx, store.Upload{ObjectKey: key, Owner: user, Kind: req.Kind, ContentType: ct, Size: req.Size,
		Name: req.Name, CreatedAt: now}, set.MaxPendingUploads)
	if errors.Is(err, store.ErrLimit) {
		return nil, rest.Errorf(http.StatusTooManyRequests, protocol.CodeRateLimited,
			"you have %d uploads that no message uses yet: send them, or wait until they expire", set.MaxPendingUploads)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	url, headers, err := s.objects.PresignPut(ctx, key, ct, user, req.Size, s.cfg.UploadTTL)
	if err != nil {
		return nil, unavailable(err)
	}
	return &UploadResponse{ObjectKey: key, UploadURL: url, Method: http.MethodPut, Headers: headers,
		ExpiresAt: now.Add(s.cfg.UploadTTL).UnixMilli()}, nil
}

func unavailable(err error) error {
	return &unavailableErr{err}
}

type unavailableErr struct{ err error }

func (e *unavailableErr) Error() string { return e.err.Error() }
func (e *unavailableErr) Unwrap() error { return e.err }

func (s *Service) writeErr(w http.ResponseWriter, err error) {
	var u *unavailableErr
	if errors.As(err, &u) {
		s.log.Warn("media: dependency failed", "err", err)
		err = rest.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable, "media storage is unavailable; retry")
	}
	rest.WriteError(w, err)
}

var keyEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newKey(owner string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "m/" + owner + "/" + strings.ToLower(keyEncoding.EncodeToString(b[:]))
}

// absolute resolves a path URL (Local) against the request's origin.
func absolute(r *http.Request, u string) string {
	if !strings.HasPrefix(u, "/") {
		return u
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + u
}

func (s *Service) handleUpload(w http.ResponseWriter, r *http.Request) {
	var req UploadRequest
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	res, err := s.Upload(r.Context(), rest.UserID(r.Context()), req)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	res.UploadURL = absolute(r, res.UploadURL)
	rest.WriteJSON(w, http.StatusCreated, res)
}

// inline types are shown by browsers; everything else is served as a
// download.
var inline = map[string]bool{"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true}

// Download returns a presigned URL of the object (or its thumbnail) for
// user: the uploader, or a member of a conversation that contains it.
// Anything else, including a key that does not exist, is forbidden.
func (s *Service) Download(ctx context.Context, user, key string, thumb bool) (string, error) {
	forbidden := rest.Errorf(http.StatusForbidden, protocol.CodeForbidden, "you may not read this object: it is not in a conversation of yours")
	if !ValidKey(key) {
		return "", forbidden
	}
	if base, ok := strings.CutSuffix(key, ".thumb"); ok {
		key, thumb = base, true
	}
	u, err := s.store.UploadByKey(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return "", forbidden
	} else if err != nil {
		return "", unavailable(err)
	}
	if u.Owner != user {
		convs, err := s.store.MediaConvs(ctx, key)
		if err != nil {
			return "", unavailable(err)
		}
		allowed := false
		for _, c := range convs {
			if s.mayRead(ctx, user, c) == nil {
				allowed = true
				break
			}
		}
		if !allowed {
			return "", forbidden
		}
	}
	target, attachment := key, ""
	if thumb {
		if u.ThumbState != store.ThumbReady || u.ThumbKey == "" {
			return "", rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "this object has no thumbnail (yet): show the object itself")
		}
		target = u.ThumbKey
	} else if !inline[u.ContentType] && !strings.HasPrefix(u.ContentType, "audio/") && !strings.HasPrefix(u.ContentType, "video/") {
		attachment = u.Name
	}
	url, err := s.objects.PresignGet(ctx, target, s.cfg.DownloadTTL, attachment)
	if err != nil {
		return "", unavailable(err)
	}
	return url, nil
}

func (s *Service) handleMedia(w http.ResponseWriter, r *http.Request) {
	thumb := r.URL.Query().Get("thumb") == "1"
	url, err := s.Download(r.Context(), rest.UserID(r.Context()), r.PathValue("key"), thumb)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	url = absolute(r, url)
	w.Header().Set("Cache-Control", "private, no-store")
	// Pages cannot read a cross-origin redirect: they ask for JSON.
	if accept := r.Header.Get("Accept"); strings.Contains(accept, "application/json") {
		rest.WriteJSON(w, http.StatusOK, map[string]any{"url": url, "expiresAt": s.cfg.Now().Add(s.cfg.DownloadTTL).UnixMilli()})
		return
	}
	http.Redirect(w, r, url, http.StatusFound)
}

// Body is the body of a media message (image, file, audio, video).
type Body struct {
	ObjectKey   string `json:"objectKey"`
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	ContentType string `json:"contentType"`
	Width       int    `json:"width,omitempty"`
	Height      int    `json:"height,omitempty"`
	DurationMs  int64  `json:"durationMs,omitempty"`
	ThumbKey    string `json:"thumbKey,omitempty"`
}

// Verified is a checked media body, ready to be stored.
type Verified struct {
	// Body is the body to store (normalised; thumbKey, width and height
	// filled in when the platform makes the thumbnail).
	Body       string
	key, thumb string
	// generate: the platform makes the thumbnail after the send.
	generate bool
}

// Invalid is a media body the sender must fix; the message is refused
// with its text.
type Invalid struct{ Msg string }

func (e *Invalid) Error() string { return e.Msg }

func invalid(format string, args ...any) error { return &Invalid{Msg: fmt.Sprintf(format, args...)} }

// Verify checks the body of a media message of kind sent by user: the
// object exists (HEAD), was uploaded by user, and has the declared kind,
// size and content type. A body to fix is an *Invalid; other errors are
// failures of the store or object store (retry).
func (s *Service) Verify(ctx context.Context, user, kind, body string) (*Verified, error) {
	set := s.cfg.Settings()
	lim, ok := set.Kind(kind)
	if !ok {
		return nil, invalid("kind %q is not a media kind", kind)
	}
	var b Body
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil || dec.More() {
		return nil, invalid("%s: body must be a JSON object {objectKey, name, size, contentType, width?, height?, durationMs?, thumbKey?}", kind)
	}
	if b.Width < 0 || b.Height < 0 || b.DurationMs < 0 {
		return nil, invalid("%s: width, height and durationMs must not be negative", kind)
	}
	if err := checkName(b.Name); err != nil {
		return nil, invalid("%s: %v", kind, err)
	}
	if _, err := s.checkObject(ctx, user, kind, b.ObjectKey, b.Size, b.ContentType); err != nil {
		return nil, err
	}
	if b.Size > lim.MaxBytes {
		return nil, invalid("%s: %d bytes is over the limit of %d", kind, b.Size, lim.MaxBytes)
	}
	v := &Verified{key: b.ObjectKey}
	switch {
	case b.ThumbKey != "":
		if kind != "image" && kind != "video" {
			return nil, invalid("%s: only images and videos carry a thumbKey", kind)
		}
		u, err := s.store.UploadByKey(ctx, b.ThumbKey)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if u == nil || u.Owner != user || u.Kind != "image" {
			return nil, invalid("thumbKey %q is not an image you uploaded", b.ThumbKey)
		}
		if _, err := s.checkObject(ctx, user, "image", b.ThumbKey, u.Size, u.ContentType); err != nil {
			return nil, err
		}
		v.thumb = b.ThumbKey
	case kind == "image" && ThumbTypes[b.ContentType]:
		// The header alone gives the size; a decompression bomb gets no
		// thumbnail (and is never decoded).
		rc, err := s.objects.Open(ctx, b.ObjectKey)
		if err != nil {
			return nil, err
		}
		cfg, _, err := ImageConfig(io.LimitReader(rc, 1<<20), set.ThumbnailMaxPixels)
		rc.Close()
		if err == nil {
			v.generate, v.thumb = true, b.ObjectKey+".thumb"
			b.ThumbKey, b.Width, b.Height = v.thumb, cfg.Width, cfg.Height
		} else {
			s.log.Info("media: no thumbnail", "key", b.ObjectKey, "reason", err)
		}
	}
	out, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	v.Body = string(out)
	return v, nil
}

// checkObject verifies an upload record and the object behind it.
func (s *Service) checkObject(ctx context.Context, user, kind, key string, size int64, contentType string) (*store.Upload, error) {
	if !ValidKey(key) || strings.HasSuffix(key, ".thumb") {
		return nil, invalid("%s: objectKey %q is not an object key from POST /api/v1/uploads", kind, key)
	}
	u, err := s.store.UploadByKey(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalid("%s: objectKey %q is not an upload of yours (request one with POST /api/v1/uploads)", kind, key)
	} else if err != nil {
		return nil, err
	}
	if u.Owner != user {
		return nil, invalid("%s: objectKey %q is not an upload of yours (request one with POST /api/v1/uploads)", kind, key)
	}
	if u.Kind != kind {
		return nil, invalid("%s: objectKey %q was requested as a %s upload", kind, key, u.Kind)
	}
	if ct, _ := normalType(contentType); ct != u.ContentType {
		return nil, invalid("%s: contentType %q differs from the upload's %q", kind, contentType, u.ContentType)
	}
	if size != u.Size {
		return nil, invalid("%s: size %d differs from the upload's %d bytes", kind, size, u.Size)
	}
	info, err := s.objects.Stat(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, invalid("%s: object %q was not uploaded: PUT the file to the uploadUrl first", kind, key)
	} else if err != nil {
		return nil, err
	}
	if info.Owner != user {
		return nil, invalid("%s: object %q was not uploaded by you", kind, key)
	}
	if info.Size != size {
		return nil, invalid("%s: object %q has %d bytes, the message says %d", kind, key, info.Size, size)
	}
	if ct, _ := normalType(info.ContentType); ct != u.ContentType {
		return nil, invalid("%s: object %q was uploaded as %q, not %q", kind, key, info.ContentType, u.ContentType)
	}
	return u, nil
}

// Reference records that conv contains the verified objects (before the
// message is stored: an object in a stored message is never swept) and
// queues the thumbnail.
func (s *Service) Reference(ctx context.Context, conv string, v *Verified) error {
	if err := s.store.ReferenceUpload(ctx, v.key, conv); err != nil {
		return err
	}
	if v.thumb == "" {
		return nil
	}
	if !v.generate {
		if err := s.store.ReferenceUpload(ctx, v.thumb, conv); err != nil {
			return err
		}
		return s.store.SetThumb(ctx, v.key, v.thumb, store.ThumbReady)
	}
	u, err := s.store.UploadByKey(ctx, v.key)
	if err != nil {
		return err
	}
	if u.ThumbState == store.ThumbReady || u.ThumbState == store.ThumbRefused {
		return nil // a retried send, or the same object sent again
	}
	if err := s.store.SetThumb(ctx, v.key, v.thumb, store.ThumbPending); err != nil {
		return err
	}
	s.enqueue(v.key)
	return nil
}

func (s *Service) enqueue(key string) {
	select {
	case s.jobs <- key:
	default: // full: the sweeper retries pending thumbnails
	}
}

// MakeThumbnail makes the thumbnail of an upload now and records the
// outcome: ready, or refused (not decodable within the limits).
func (s *Service) MakeThumbnail(ctx context.Context, key string) error {
	u, err := s.store.UploadByKey(ctx, key)
	if err != nil {
		return err
	}
	if u.ThumbState == store.ThumbReady {
		return nil
	}
	set := s.cfg.Settings()
	rc, err := s.objects.Open(ctx, key)
	if err != nil {
		return err
	}
	thumb, terr := Thumbnail(rc, set.Image.MaxBytes, set.ThumbnailMaxPixels)
	rc.Close()
	if terr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Info("media: thumbnail refused", "key", key, "err", terr)
		if err := s.store.SetThumb(ctx, key, "", store.ThumbRefused); err != nil {
			return err
		}
		return terr
	}
	tk := key + ".thumb"
	if err := s.objects.Put(ctx, tk, "image/jpeg", u.Owner, bytes.NewReader(thumb), int64(len(thumb))); err != nil {
		return err
	}
	return s.store.SetThumb(ctx, key, tk, store.ThumbReady)
}

// Sweep deletes the uploads no message references that are older than the
// orphan TTL, and requeues thumbnails left pending (a full queue, a
// restart). It returns how many uploads it deleted.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	now := s.cfg.Now()
	ttl := time.Duration(s.cfg.Settings().OrphanTTL)
	n := 0
	for {
		list, err := s.store.OrphanUploads(ctx, now.Add(-ttl), 100)
		if err != nil {
			return n, err
		}
		for _, u := range list {
			deleted, err := s.store.DeleteUpload(ctx, u.ObjectKey)
			if err != nil {
				return n, err
			}
			if !deleted {
				continue // sent meanwhile
			}
			if err := errors.Join(s.objects.Remove(ctx, u.ObjectKey), s.objects.Remove(ctx, u.ObjectKey+".thumb")); err != nil {
				s.log.Warn("media: orphan record deleted but its object stays", "key", u.ObjectKey, "err", err)
			}
			n++
		}
		if len(list) < 100 {
			break
		}
	}
	pending, err := s.store.PendingThumbs(ctx, now.Add(-2*time.Minute), 100)
	if err != nil {
		return n, err
	}
	for _, u := range pending {
		s.enqueue(u.ObjectKey)
	}
	return n, nil
}

// Run makes thumbnails and sweeps orphans until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	done := make(chan struct{})
	for range s.cfg.Workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-ctx.Done():
					return
				case key := <-s.jobs:
					jctx, cancel := context.WithTimeout(ctx, time.Minute)
					if err := s.MakeThumbnail(jctx, key); err != nil && ctx.Err() == nil {
						s.log.Debug("media: thumbnail", "key", key, "err", err)
					}
					cancel()
				}
			}
		}()
	}
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			for range s.cfg.Workers {
				<-done
			}
			return nil
		case <-t.C:
			if n, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("media: orphan sweep", "err", err)
			} else if n > 0 {
				s.log.Info("media: orphan uploads deleted", "count", n)
			}
		}
	}
}
