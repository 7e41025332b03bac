package app

import (
	"context"
	"net/http"
	"path/filepath"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/media"
	"github.com/imkube/imkube/internal/rest"
	"github.com/imkube/imkube/internal/store"
)

// objects is the process's object store for media: the options' (tests),
// the data folder's in dev, the configured S3-compatible store otherwise
// (nil when none is configured: media messages are off).
func (p *Process) objects() (media.Objects, error) {
	if p.opts.Objects != nil {
		return p.opts.Objects, nil
	}
	if p.embedded {
		return media.NewLocal(filepath.Join(p.Config.Dev.Data, "media"))
	}
	o := p.Config.Message.ObjectStore
	if o.Endpoint == "" {
		p.Log.Warn("no object store configured (--s3-endpoint): media messages are off")
		return nil, nil
	}
	return media.NewS3(media.S3Config{Endpoint: o.Endpoint, PublicEndpoint: o.PublicEndpoint, Bucket: o.Bucket,
		Region: o.Region, PathStyle: o.PathStyle, AccessKey: o.AccessKey, SecretKey: o.SecretKey})
}

// mediaPart is the media service of the message role.
type mediaPart struct {
	svc     *media.Service
	objects media.Objects
}

// buildMedia returns the media service (nil without an object store);
// mayRead is the message service's membership check, set once it exists.
func (p *Process) buildMedia(db *store.DB, mayRead *func(ctx context.Context, user, conv string) error) (*mediaPart, error) {
	objs, err := p.objects()
	if err != nil || objs == nil {
		return nil, err
	}
	svc, err := media.New(media.Config{Settings: func() config.Media { return p.Live.Get().Media }, Now: p.opts.Clock},
		media.Deps{Objects: objs, Store: db, Log: p.Log.With("svc", "media"),
			MayRead: func(ctx context.Context, user, conv string) error { return (*mayRead)(ctx, user, conv) }})
	if err != nil {
		return nil, err
	}
	p.media = svc
	return &mediaPart{svc: svc, objects: objs}, nil
}

// mount adds the media REST routes and, in dev, the signed URLs of the
// local store.
func (m *mediaPart) mount(mux *http.ServeMux, keys *auth.Keys) {
	m.svc.Routes(mux, keys)
	if l, ok := m.objects.(*media.Local); ok {
		h := l.Handler()
		for _, m := range []string{"GET", "HEAD", "PUT"} {
			mux.Handle(m+" "+media.LocalPrefix, h)
		}
	}
}

// mountMediaOff answers the media routes of a message service without an
// object store: 503 with what to configure.
func mountMediaOff(mux *http.ServeMux) {
	off := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		rest.WriteError(w, rest.Errorf(http.StatusServiceUnavailable, protocol.CodeUnavailable,
			"media messages are off: this platform has no object store (IMCluster spec.media.objectStore, or --s3-endpoint)"))
	})
	mux.Handle("POST /api/v1/uploads", off)
	mux.Handle("GET /api/v1/media/{key...}", off)
}
