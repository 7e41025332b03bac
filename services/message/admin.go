package message

// The admin API (issue 17) and device push tokens. The admin routes are
// mounted on their own listener (--admin-addr) behind the admin key; see
// docs/integrations.md.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/internal/rest"
	"github.com/imkube/imkube/internal/sessions"
	"github.com/imkube/imkube/internal/store"
)

// AdminStore is what bans, push tokens and the admin API need from storage.
type AdminStore interface {
	Ban(ctx context.Context, user, reason string) error
	Unban(ctx context.Context, user string) error
	Banned(ctx context.Context, user string) (bool, string, error)
	PushTokens(ctx context.Context, users []string) (map[string][]store.PushToken, error)
	SetPushToken(ctx context.Context, user string, t store.PushToken, max int) error
	DeletePushToken(ctx context.Context, user, device string) error
	AddOutbox(ctx context.Context, e store.OutboxEntry) error
	RevokeSessions(ctx context.Context, user, only, keep, reason string, now time.Time) ([]auth.Revoked, error)
	Sessions(ctx context.Context, user string, now time.Time) ([]store.Session, error)
}

// endSessions ends every login session of user (store.RevokeSessions): its
// tokens are refused and cannot be refreshed, by this process at once and
// by the others within one revocation poll, and the gateways close its
// connections with kicked{reason}.
func (s *Service) endSessions(ctx context.Context, user, reason string) error {
	list, err := s.admin.RevokeSessions(ctx, user, "", "", reason, s.now())
	if err != nil {
		return err
	}
	if s.revoke != nil {
		for _, r := range list {
			s.revoke(r)
		}
	}
	return nil
}

// Bounds of push tokens and admin requests.
const (
	// MaxPushDevices is how many devices of one user may register a push token.
	MaxPushDevices = 10
	// MaxPushTokenLen bounds a token.
	MaxPushTokenLen = 4096
	// MaxSystemTargets bounds the users (or groups) of one system message.
	MaxSystemTargets = 1000
	// MaxSystemBody bounds a system message's body.
	MaxSystemBody = 16 << 10
	// MaxBanReason bounds a ban's reason.
	MaxBanReason = 512
)

// PushProviders are the accepted push token providers.
var PushProviders = []string{"apns", "fcm", "webhook"}

// PushTokenRoutes registers PUT and DELETE /api/v1/devices/{device}/push-token.
func (s *Service) PushTokenRoutes(mux *http.ServeMux, keys *auth.Keys) {
	if s.admin == nil {
		return
	}
	mux.Handle("PUT /api/v1/devices/{device}/push-token", rest.Authenticated(keys, http.HandlerFunc(s.handlePutPushToken)))
	mux.Handle("DELETE /api/v1/devices/{device}/push-token", rest.Authenticated(keys, http.HandlerFunc(s.handleDeletePushToken)))
}

func validDevice(d string) bool {
	if d == "" || len(d) > protocol.MaxDeviceLen {
		return false
	}
	for _, r := range d {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func (s *Service) handlePutPushToken(w http.ResponseWriter, r *http.Request) {
	device := r.PathValue("device")
	var req struct {
		Provider string `json:"provider"`
		Token    string `json:"token"`
	}
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	switch {
	case !validDevice(device):
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "device must be 1-%d characters without control characters", protocol.MaxDeviceLen))
		return
	case !oneOfStr(req.Provider, PushProviders):
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "provider must be one of %s", strings.Join(PushProviders, ", ")))
		return
	case req.Token == "" || len(req.Token) > MaxPushTokenLen || strings.ContainsFunc(req.Token, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "token must be 1-%d bytes without control characters", MaxPushTokenLen))
		return
	}
	err := s.admin.SetPushToken(r.Context(), rest.UserID(r.Context()), store.PushToken{Device: device, Provider: req.Provider, Token: req.Token, UpdatedAt: s.now().UnixMilli()}, MaxPushDevices)
	switch {
	case errors.Is(err, store.ErrTooMany):
		rest.WriteError(w, rest.Errorf(http.StatusConflict, protocol.CodeRateLimited, "at most %d devices may register a push token: unregister one first (DELETE /api/v1/devices/{device}/push-token)", MaxPushDevices))
	case err != nil:
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Service) handleDeletePushToken(w http.ResponseWriter, r *http.Request) {
	err := s.admin.DeletePushToken(r.Context(), rest.UserID(r.Context()), r.PathValue("device"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		rest.WriteError(w, rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "this device has no push token"))
	case err != nil:
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func oneOfStr(v string, list []string) bool {
	for _, x := range list {
		if v == x {
			return true
		}
	}
	return false
}

// AdminRoutes registers the admin API under /admin/v1 on mux. The caller
// guards mux with the admin key (it must never be the public port's mux
// without it).
func (s *Service) AdminRoutes(mux *http.ServeMux) error {
	if s.admin == nil {
		return errors.New("message: the admin API needs Deps.Admin")
	}
	mux.HandleFunc("POST /admin/v1/users/{id}/ban", s.handleBan)
	mux.HandleFunc("DELETE /admin/v1/users/{id}/ban", s.handleUnban)
	mux.HandleFunc("POST /admin/v1/users/{id}/logout", s.handleLogout)
	mux.HandleFunc("GET /admin/v1/users/{id}/devices", s.handleDevices)
	mux.HandleFunc("POST /admin/v1/messages", s.handleSystemMessage)
	mux.HandleFunc("DELETE /admin/v1/conversations/{conv}/messages/{seq}", s.handleDeleteForEveryone)
	mux.HandleFunc("POST /admin/v1/broadcast", s.handleBroadcast)
	return nil
}

// Broadcast rate: at most BroadcastBurst at once, one more every
// BroadcastEvery (per message-service replica).
const (
	BroadcastBurst = 3
	BroadcastEvery = 10 * time.Second
)

// handleBroadcast pushes a broadcast frame to every authenticated
// connection of every live gateway. Nothing is stored: users offline now
// never see it (send a system message for that).
func (s *Service) handleBroadcast(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Body string `json:"body"`
	}
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	if req.Body == "" || len(req.Body) > MaxSystemBody {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "body must be 1-%d bytes", MaxSystemBody))
		return
	}
	lister, ok := s.sessions.(sessions.GatewayLister)
	if !ok {
		rest.WriteError(w, rest.Errorf(http.StatusNotImplemented, protocol.CodeUnavailable, "the session store cannot list gateways"))
		return
	}
	if res := s.broadcasts.Reserve(); res.Delay() > 0 {
		res.Cancel()
		w.Header().Set("Retry-After", strconv.Itoa(int(BroadcastEvery.Seconds())))
		rest.WriteError(w, rest.Errorf(http.StatusTooManyRequests, protocol.CodeRateLimited, "at most %d broadcasts at once, one more every %s", BroadcastBurst, BroadcastEvery))
		return
	}
	gws, err := lister.Gateways(r.Context())
	if err != nil {
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
		return
	}
	id := s.ids.Next()
	frame, err := json.Marshal(protocol.Broadcast{T: protocol.TypeBroadcast, ID: id, From: protocol.SystemSender, Kind: protocol.KindSystem, Body: req.Body, TS: s.now().UnixMilli()})
	if err != nil {
		rest.WriteError(w, err)
		return
	}
	var errs []error
	for _, gw := range gws {
		errs = append(errs, s.publish(r.Context(), gw, &messageapi.Push{Kind: messageapi.PushBroadcast, Frame: frame}))
	}
	if err := errors.Join(errs...); err != nil {
		s.log.Warn("admin broadcast: some gateways missed it", "err", err)
	}
	s.log.Info("admin: broadcast", "id", id, "gateways", len(gws))
	rest.WriteJSON(w, http.StatusAccepted, map[string]any{"id": id, "gateways": len(gws)})
}

func (s *Service) adminUser(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	ok, err := s.store.UserExists(r.Context(), id)
	if err != nil {
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
		return "", false
	}
	if !ok {
		rest.WriteError(w, rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "no user %s", id))
		return "", false
	}
	return id, true
}

func (s *Service) handleBan(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 {
		if err := rest.DecodeJSON(r, &req); err != nil {
			rest.WriteError(w, err)
			return
		}
	}
	if len(req.Reason) > MaxBanReason {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "reason is over %d bytes", MaxBanReason))
		return
	}
	user, ok := s.adminUser(w, r)
	if !ok {
		return
	}
	if err := s.admin.Ban(r.Context(), user, req.Reason); err != nil {
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
		return
	}
	if err := s.endSessions(r.Context(), user, "banned"); err != nil {
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
		return
	}
	s.log.Info("admin: user banned", "user", user, "reason", req.Reason)
	n, err := s.kickUser(r.Context(), user, "banned")
	if err != nil {
		s.log.Warn("admin: banned, but closing the connections failed (they cannot re-authenticate)", "user", user, "err", err)
	}
	rest.WriteJSON(w, http.StatusOK, map[string]any{"user": user, "banned": true, "closed": n})
}

func (s *Service) handleUnban(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("id")
	err := s.admin.Unban(r.Context(), user)
	switch {
	case errors.Is(err, store.ErrNotFound):
		rest.WriteError(w, rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "user %s is not banned", user))
	case err != nil:
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
	default:
		s.log.Info("admin: user unbanned", "user", user)
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Service) handleLogout(w http.ResponseWriter, r *http.Request) {
	user, ok := s.adminUser(w, r)
	if !ok {
		return
	}
	if err := s.endSessions(r.Context(), user, "logout"); err != nil {
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
		return
	}
	n, err := s.kickUser(r.Context(), user, "logout")
	if err != nil {
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
		return
	}
	rest.WriteJSON(w, http.StatusOK, map[string]any{"user": user, "closed": n})
}

// kickUser closes every connection of user with kicked{reason}; it returns
// how many sessions it asked gateways to close.
func (s *Service) kickUser(ctx context.Context, user, reason string) (int, error) {
	live, err := s.sessions.Lookup(ctx, []string{user})
	if err != nil {
		return 0, err
	}
	frame, err := json.Marshal(protocol.Kicked{T: protocol.TypeKicked, Reason: reason})
	if err != nil {
		return 0, err
	}
	byGateway := map[string][]messageapi.Target{}
	n := 0
	for _, sess := range live[user] {
		byGateway[sess.Gateway] = append(byGateway[sess.Gateway], messageapi.Target{User: user, Device: sess.Device})
		n++
	}
	var errs []error
	for gw, targets := range byGateway {
		errs = append(errs, s.publish(ctx, gw, &messageapi.Push{Kind: messageapi.PushKick, Frame: frame, Targets: targets}))
	}
	return n, errors.Join(errs...)
}

type adminDevice struct {
	Device      string `json:"device"`
	Online      bool   `json:"online"`
	Gateway     string `json:"gateway,omitempty"`
	Provider    string `json:"pushProvider,omitempty"`
	TokenSuffix string `json:"pushTokenSuffix,omitempty"`
	UpdatedAt   int64  `json:"pushUpdatedAt,omitempty"`
}

func (s *Service) handleDevices(w http.ResponseWriter, r *http.Request) {
	user, ok := s.adminUser(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	live, err := s.sessions.Lookup(ctx, []string{user})
	if err != nil {
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
		return
	}
	tokens, err := s.admin.PushTokens(ctx, []string{user})
	if err != nil {
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
		return
	}
	banned, reason, err := s.admin.Banned(ctx, user)
	if err != nil {
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
		return
	}
	logins, err := s.admin.Sessions(ctx, user, s.now())
	if err != nil {
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
		return
	}
	byDevice := map[string]*adminDevice{}
	var order []string
	get := func(d string) *adminDevice {
		if byDevice[d] == nil {
			byDevice[d] = &adminDevice{Device: d}
			order = append(order, d)
		}
		return byDevice[d]
	}
	for _, sess := range live[user] {
		d := get(sess.Device)
		d.Online, d.Gateway = true, sess.Gateway
	}
	for _, t := range tokens[user] {
		d := get(t.Device)
		d.Provider, d.UpdatedAt = t.Provider, t.UpdatedAt
		d.TokenSuffix = t.Token[max(0, len(t.Token)-6):]
	}
	out := make([]*adminDevice, 0, len(order))
	for _, d := range order {
		out = append(out, byDevice[d])
	}
	// sessions: the user's live login sessions (what GET /api/v1/sessions
	// shows them), each ended by POST /admin/v1/users/{id}/logout.
	rest.WriteJSON(w, http.StatusOK, map[string]any{"user": user, "banned": banned, "banReason": reason, "devices": out, "sessions": logins})
}

type systemTarget struct {
	To   string `json:"to"` // "user:<id>" or "group:<id>"
	Conv string `json:"conv"`
	Seq  int64  `json:"seq"`
	MID  string `json:"mid"`
}

// handleSystemMessage stores a system message (from "system", kind
// "system") in each target's conversation: a user's is u:<user>:system, a
// group's its group conversation. id (optional, 1-64 chars) makes retries
// safe: a request repeated with the same id stores nothing new.
func (s *Service) handleSystemMessage(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID     string   `json:"id"`
		Users  []string `json:"users"`
		Groups []string `json:"groups"`
		Body   string   `json:"body"`
	}
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	switch {
	case len(req.Users)+len(req.Groups) == 0:
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "users or groups is required"))
		return
	case len(req.Users)+len(req.Groups) > MaxSystemTargets:
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "at most %d users and groups per request", MaxSystemTargets))
		return
	case req.Body == "" || len(req.Body) > MaxSystemBody:
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "body must be 1-%d bytes", MaxSystemBody))
		return
	case len(req.ID) > protocol.MaxIDLen:
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "id is over %d characters", protocol.MaxIDLen))
		return
	}
	if req.ID == "" {
		req.ID = s.ids.Next()
	}
	ctx := r.Context()
	var out []systemTarget
	for _, u := range req.Users {
		ok, err := s.store.UserExists(ctx, u)
		if err != nil {
			rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
			return
		}
		if !ok || !protocol.ValidID(u) {
			rest.WriteError(w, rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "no user %s (nothing was sent to the targets after it)", u))
			return
		}
		m, err := s.systemMessage(ctx, protocol.DirectConv(u, protocol.SystemSender), []string{u}, []string{u}, req.ID, req.Body)
		if err != nil {
			rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
			return
		}
		out = append(out, systemTarget{To: "user:" + u, Conv: m.Conv, Seq: m.Seq, MID: m.MID})
	}
	for _, g := range req.Groups {
		cm, err := s.members(ctx, g)
		if errors.Is(err, store.ErrNotFound) {
			rest.WriteError(w, rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "no group %s (nothing was sent to the targets after it)", g))
			return
		}
		if err != nil {
			rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
			return
		}
		members := make([]string, 0, len(cm.members))
		for _, m := range cm.members {
			members = append(members, m.UserID)
		}
		participants := members
		if len(members) > s.threshold() {
			participants = nil
		}
		m, err := s.systemMessage(ctx, protocol.GroupConv(g), members, participants, req.ID, req.Body)
		if err != nil {
			rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
			return
		}
		out = append(out, systemTarget{To: "group:" + g, Conv: m.Conv, Seq: m.Seq, MID: m.MID})
	}
	rest.WriteJSON(w, http.StatusOK, map[string]any{"id": req.ID, "items": out})
}

// systemMessage stores (once per id and conversation) and pushes a system
// message in conv: inbox rows for participants, pushes to members.
func (s *Service) systemMessage(ctx context.Context, conv string, members, participants []string, id, body string) (*store.Message, error) {
	cmid := "~sys:" + id + ":" + conv
	if len(cmid) > 64 { // the cmid column: hash long ids
		cmid = "~sys:" + strconv.FormatUint(fnv64(id+":"+conv), 36)
	}
	fresh, _, err := s.store.ClaimCMID(ctx, protocol.SystemSender, cmid, conv)
	if err != nil {
		return nil, fmt.Errorf("dedup claim: %w", err)
	}
	var m *store.Message
	var inbox []store.InboxEntry
	if !fresh {
		m, err = s.store.MessageByCMID(ctx, protocol.SystemSender, cmid)
		if err == nil {
			inbox, err = s.store.InboxEntries(ctx, m.Conv, m.Seq)
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	if m == nil {
		m, inbox, err = s.newRecord(ctx, conv, upstreamOf(protocol.SystemSender, cmid), participants)
		if err != nil {
			return nil, err
		}
		m.Kind, m.Body = protocol.KindSystem, body
		rows := participants
		if strings.HasPrefix(conv, "g:") {
			rows = nil // members have their conversation row
		}
		if err := s.store.SaveMessage(ctx, *m, inbox, rows); err != nil {
			return nil, fmt.Errorf("store system message: %w", err)
		}
	}
	if err := s.pushEvent(ctx, m, inbox, members); err != nil {
		return nil, err
	}
	live, err := s.sessions.Lookup(ctx, members)
	if err == nil && len(inbox) > 0 {
		s.noticeOffline(protocol.SystemSender, m, members, live, nil)
	}
	return m, nil
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// handleDeleteForEveryone recalls message seq of conv on behalf of the
// platform (from "system"), whoever sent it and however old it is: the
// members get a recall record, the stored original is erased.
func (s *Service) handleDeleteForEveryone(w http.ResponseWriter, r *http.Request) {
	conv := r.PathValue("conv")
	seq, err := strconv.ParseInt(r.PathValue("seq"), 10, 64)
	kind, a, b, ok := protocol.ParseConv(conv)
	if err != nil || seq < 1 || !ok {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "want /admin/v1/conversations/{u:a:b|g:id}/messages/{seq >= 1}"))
		return
	}
	ctx := r.Context()
	orig, err := s.store.MessageAt(ctx, conv, seq)
	if errors.Is(err, store.ErrNotFound) {
		rest.WriteError(w, rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "no message %d in %s", seq, conv))
		return
	}
	if err != nil {
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
		return
	}
	if orig.Kind == protocol.KindRecall || orig.Kind == protocol.KindEdit || orig.Kind == protocol.KindGroupEvent {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "message %d is a %s record, not a message", seq, orig.Kind))
		return
	}
	if orig.Flags&store.FlagRecalled != 0 {
		rest.WriteJSON(w, http.StatusOK, map[string]any{"conv": conv, "seq": seq, "recalled": true})
		return
	}
	var members, participants []string
	if kind == 'u' {
		for _, u := range []string{a, b} {
			if u != protocol.SystemSender && (len(members) == 0 || members[0] != u) {
				members = append(members, u)
			}
		}
		participants = members
	} else {
		cm, err := s.members(ctx, a)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
			return
		}
		for _, m := range cm.members {
			members = append(members, m.UserID)
		}
		if len(members) <= s.threshold() {
			participants = members
		}
	}
	cmid := "~del:" + orig.MID
	if _, _, err := s.store.ClaimCMID(ctx, protocol.SystemSender, cmid, conv); err != nil {
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
		return
	}
	m, inbox, err := s.newRecord(ctx, conv, upstreamOf(protocol.SystemSender, cmid), participants)
	if err != nil {
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
		return
	}
	m.Kind, m.Ref = protocol.KindRecall, seq
	err = s.store.SaveRecall(ctx, *m, inbox)
	switch {
	case errors.Is(err, store.ErrRecalled), errors.Is(err, store.ErrDuplicate):
		rest.WriteJSON(w, http.StatusOK, map[string]any{"conv": conv, "seq": seq, "recalled": true})
		return
	case err != nil:
		rest.WriteError(w, messageapi.HTTPError(unavailable(err)))
		return
	}
	if err := s.pushEvent(ctx, m, inbox, members); err != nil {
		s.log.Warn("admin delete: push failed; members will sync", "conv", conv, "err", err)
	}
	s.log.Info("admin: message deleted for everyone", "conv", conv, "seq", seq, "sender", orig.Sender)
	rest.WriteJSON(w, http.StatusOK, map[string]any{"conv": conv, "seq": seq, "recalled": true, "recordSeq": m.Seq})
}

// AdminKey guards next with the admin key: "Authorization: Bearer <key>",
// compared in constant time; anything else is 401.
func AdminKey(key string, next http.Handler) http.Handler {
	want := []byte("Bearer " + key)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		g, h := sha256.Sum256(got), sha256.Sum256(want)
		if key == "" || subtle.ConstantTimeCompare(g[:], h[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="imkube-admin"`)
			rest.WriteError(w, rest.Errorf(http.StatusUnauthorized, protocol.CodeUnauthenticated, "the admin API needs Authorization: Bearer <admin key>"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
