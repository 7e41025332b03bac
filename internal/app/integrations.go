package app

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/imkube/imkube/internal/config"
	"github.com/imkube/imkube/internal/sessions"
	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/internal/telemetry"
	"github.com/imkube/imkube/internal/webhook"
	"github.com/imkube/imkube/services/message"
)

// integrations are the message role's webhook parts (issue 17).
type integrations struct {
	hooks  *webhook.Hooks
	outbox *webhook.Outbox
	pusher *webhook.Pusher
}

// buildIntegrations wires the webhooks: the outbox hook of the store (an
// event per stored message, in its transaction), the outbox's delivery and
// the offline push batcher. Hook URLs come from the hot-reloaded cluster
// config, the signing key from IMKUBE_WEBHOOK_SECRET.
func (p *Process) buildIntegrations(db *store.DB, sess sessions.Store) (*integrations, error) {
	cfg := func() config.Webhooks { return p.Live.Get().Webhooks }
	secret := p.Config.Message.WebhookSecret
	if w := cfg(); secret == "" && (w.BeforeSend.URL != "" || w.Events.URL != "" || w.OfflinePush.URL != "") {
		p.Log.Warn("webhooks are configured but IMKUBE_WEBHOOK_SECRET is empty: receivers cannot tell the requests are ours")
	}
	hooks := webhook.New(webhook.Deps{Config: cfg, Secret: []byte(secret)})
	db.SetOutboxHook(webhook.OutboxHook(cfg))
	db.SetSocialOutboxHook(webhook.SocialOutboxHook(cfg))
	m, err := telemetry.NewWebhooks(p.Tel.MeterProvider())
	if err != nil {
		return nil, err
	}
	p.instruments = append(p.instruments, m)
	log := p.Log.With("svc", "webhook")
	owner := p.Config.Instance
	if p.embedded {
		owner = ""
	}
	outbox := webhook.NewOutbox(webhook.OutboxConfig{Owner: owner, RetryBase: p.opts.WebhookRetryBase}, hooks, db, m, log)
	online := func(ctx context.Context, users []string) (map[string]bool, error) {
		live, err := sess.Lookup(ctx, users)
		if err != nil {
			return nil, err
		}
		out := make(map[string]bool, len(live))
		for u, l := range live {
			out[u] = len(l) > 0
		}
		return out, nil
	}
	pusher := webhook.NewPusher(webhook.PushConfig{}, hooks, db, online, log)
	return &integrations{hooks: hooks, outbox: outbox, pusher: pusher}, nil
}

// adminServer opens the admin API's listener (--admin-addr) and returns the
// loop that serves it, or nil when the admin API is off. The admin API is
// never mounted on the public port: it has its own listener and every
// request needs the admin key.
func (p *Process) adminServer(svc *message.Service) (func(context.Context) error, error) {
	addr := p.Config.Message.AdminAddr
	if addr == "" {
		return nil, nil
	}
	mux := http.NewServeMux()
	if err := svc.AdminRoutes(mux); err != nil {
		return nil, err
	}
	if p.adminLn == nil { // a retried build keeps the listener
		ln, err := Listen(addr)
		if err != nil {
			return nil, err
		}
		p.adminLn = ln
		p.AdminURL = "http://" + ln.Addr().String()
	}
	ln := p.adminLn
	srv := newHTTPServer(message.AdminKey(p.Config.Message.AdminKey, mux), p.Log, p.Config.HTTP)
	p.Log.Info("admin API listening", "addr", ln.Addr().String())
	return func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		case err := <-errc:
			if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
	}, nil
}
