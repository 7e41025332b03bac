package user

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/rest"
	"github.com/imkube/imkube/internal/store"
)

// AccountStore is what profile, password, deletion and session management
// need from storage.
type AccountStore interface {
	SaveSession(ctx context.Context, x store.Session) error
	Sessions(ctx context.Context, user string, now time.Time) ([]store.Session, error)
	RevokeSessions(ctx context.Context, user, only, keep, reason string, now time.Time) ([]auth.Revoked, error)
	RevokeTokenReason(ctx context.Context, r auth.Revoked) error
	UpdateProfile(ctx context.Context, id string, displayName, dmPolicy *string) error
	SetPasswordHash(ctx context.Context, id, hash string) error
	DeleteUser(ctx context.Context, id string, now time.Time, removed func(friend string) []store.SocialEvent) error
}

// Revocation reasons: the kicked{reason} of the connections a revocation
// closes (stable strings, clients see them).
const (
	ReasonLoggedOut       = "logged_out"
	ReasonPasswordChanged = "password_changed"
	ReasonSessionRevoked  = "session_revoked"
	ReasonAccountDeleted  = "account_deleted"
)

// DM policies.
const (
	DMAnyone  = "anyone"
	DMFriends = "friends"
)

// accountRoutes registers the account endpoints (called by Routes).
func (s *Service) accountRoutes(mux *http.ServeMux) {
	a := func(h http.HandlerFunc) http.Handler { return rest.Authenticated(s.keys, h) }
	mux.Handle("POST /api/v1/sessions/logout", a(s.handleLogout))
	mux.Handle("GET /api/v1/sessions", a(s.handleSessions))
	mux.Handle("DELETE /api/v1/sessions/{id}", a(s.handleRevokeSession))
	mux.Handle("PATCH /api/v1/users/me", a(s.handlePatchMe))
	mux.Handle("POST /api/v1/users/me/password", a(s.handlePassword))
	mux.Handle("DELETE /api/v1/users/me", a(s.handleDeleteMe))
}

// claims returns the verified claims of the request's bearer token (the
// request passed rest.Authenticated).
func (s *Service) claims(r *http.Request) (auth.Claims, error) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	c, err := s.keys.Verify(tok)
	if err != nil {
		return c, rest.Errorf(http.StatusUnauthorized, protocol.CodeUnauthenticated, "invalid or expired token: log in again")
	}
	return c, nil
}

// revoked adds what was just revoked to this process's set at once (other
// processes read it from the database within their poll interval).
func (s *Service) revoked(list ...auth.Revoked) {
	rv := s.keys.Revocations()
	if rv == nil {
		return
	}
	for _, r := range list {
		rv.AddReason(r.TokenID, time.UnixMilli(r.ExpiresAt), r.Reason)
	}
}

// revokeToken revokes one token (the caller's) with reason.
func (s *Service) revokeToken(ctx context.Context, c auth.Claims, reason string) error {
	r := auth.Revoked{TokenID: c.TokenID, ExpiresAt: c.ExpiresAt.UnixMilli(), RevokedAt: time.Now().UnixMilli(), Reason: reason}
	if err := s.accounts.RevokeTokenReason(ctx, r); err != nil {
		return err
	}
	s.revoked(r)
	return nil
}

func (s *Service) handleLogout(w http.ResponseWriter, r *http.Request) {
	c, err := s.claims(r)
	if err != nil {
		rest.WriteError(w, err)
		return
	}
	list, err := s.accounts.RevokeSessions(r.Context(), c.UserID, c.SessionID, "", ReasonLoggedOut, time.Now())
	if err == nil {
		s.revoked(list...)
		err = s.revokeToken(r.Context(), c, ReasonLoggedOut) // also tokens of sessions without a row (issued before sessions were recorded)
	}
	if err != nil {
		s.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// SessionView is one session in GET /sessions.
type SessionView struct {
	store.Session
	Current bool `json:"current"`
}

func (s *Service) handleSessions(w http.ResponseWriter, r *http.Request) {
	c, err := s.claims(r)
	if err != nil {
		rest.WriteError(w, err)
		return
	}
	list, err := s.accounts.Sessions(r.Context(), c.UserID, time.Now())
	if err != nil {
		s.writeErr(w, err)
		return
	}
	out := make([]SessionView, len(list))
	for i, x := range list {
		out[i] = SessionView{Session: x, Current: x.ID == c.SessionID}
	}
	rest.WriteJSON(w, http.StatusOK, out)
}

func (s *Service) handleRevokeSession(w http.ResponseWriter, r *http.Request) {
	c, err := s.claims(r)
	if err != nil {
		rest.WriteError(w, err)
		return
	}
	id := r.PathValue("id")
	list, err := s.accounts.RevokeSessions(r.Context(), c.UserID, id, "", ReasonSessionRevoked, time.Now())
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if len(list) == 0 {
		rest.WriteError(w, rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "no active session %q of yours", id))
		return
	}
	s.revoked(list...)
	w.WriteHeader(http.StatusNoContent)
}

// MeView is the caller's own account: with the DM policy in effect.
type MeView struct {
	store.User
	DMPolicy string `json:"dmPolicy"`
}

func (s *Service) meView(u *store.User) MeView {
	p := u.DMPolicy
	if p == "" {
		p = s.defaultDMPolicy()
	}
	return MeView{User: *u, DMPolicy: p}
}

func (s *Service) handlePatchMe(w http.ResponseWriter, r *http.Request) {
	var req struct {
		DisplayName *string `json:"displayName"`
		DMPolicy    *string `json:"dmPolicy"`
	}
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	if req.DisplayName == nil && req.DMPolicy == nil {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "give displayName or dmPolicy"))
		return
	}
	if req.DisplayName != nil {
		v := strings.TrimSpace(*req.DisplayName)
		if err := checkText("displayName", v); err != nil {
			rest.WriteError(w, err)
			return
		}
		req.DisplayName = &v
	}
	if req.DMPolicy != nil && *req.DMPolicy != DMAnyone && *req.DMPolicy != DMFriends {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "dmPolicy must be \"anyone\" or \"friends\""))
		return
	}
	me := rest.UserID(r.Context())
	if err := s.accounts.UpdateProfile(r.Context(), me, req.DisplayName, req.DMPolicy); err != nil {
		s.writeErr(w, notFound(err, "your account no longer exists"))
		return
	}
	u, err := s.store.UserByID(r.Context(), me)
	if err != nil {
		s.writeErr(w, notFound(err, "your account no longer exists"))
		return
	}
	rest.WriteJSON(w, http.StatusOK, s.meView(u))
}

// checkPassword answers 401 BAD_CREDENTIALS unless password is user's.
func (s *Service) checkPassword(ctx context.Context, id, password string) (*store.User, error) {
	u, err := s.store.UserByID(ctx, id)
	if err != nil {
		return nil, notFound(err, "your account no longer exists")
	}
	var wrong bool
	err = s.hash.do(ctx, func() error {
		wrong = len(password) > MaxPasswordLen || u.Deleted || bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil
		return nil
	})
	if err != nil {
		return nil, err
	}
	if wrong {
		return nil, rest.Errorf(http.StatusUnauthorized, "BAD_CREDENTIALS", "wrong password")
	}
	return u, nil
}

func (s *Service) handlePassword(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Current string `json:"current"`
		New     string `json:"new"`
	}
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	c, err := s.claims(r)
	if err != nil {
		rest.WriteError(w, err)
		return
	}
	if len(req.New) < MinPasswordLen || len(req.New) > MaxPasswordLen {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, "INVALID_PASSWORD", "the new password must be %d-%d bytes long", MinPasswordLen, MaxPasswordLen))
		return
	}
	if !s.verifyOwnPassword(w, r, c.UserID, req.Current) {
		return
	}
	var hash []byte
	if err := s.hash.do(r.Context(), func() (err error) {
		hash, err = bcrypt.GenerateFromPassword([]byte(req.New), s.bcryptCost)
		return err
	}); err != nil {
		s.writeErr(w, err)
		return
	}
	if err := s.accounts.SetPasswordHash(r.Context(), c.UserID, string(hash)); err != nil {
		s.writeErr(w, err)
		return
	}
	list, err := s.accounts.RevokeSessions(r.Context(), c.UserID, "", c.SessionID, ReasonPasswordChanged, time.Now())
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.revoked(list...)
	s.log.Info("password changed; other sessions signed out", "user", c.UserID, "sessions", len(list))
	w.WriteHeader(http.StatusNoContent)
}

// verifyOwnPassword checks password against signed-in user's own account
// under the per-user attempt throttle (a wrong one counts as a failure);
// on false it has written the answer.
func (s *Service) verifyOwnPassword(w http.ResponseWriter, r *http.Request, user, password string) bool {
	ip := ClientIP(r, s.trustProxy)
	if ok, wait := s.throttle.Allow(throttleKey(user), ip); !ok {
		WriteTooManyAttempts(w, wait)
		return false
	}
	if _, err := s.checkPassword(r.Context(), user, password); err != nil {
		var he *rest.Error
		if errors.As(err, &he) && he.Code == "BAD_CREDENTIALS" {
			s.throttle.Fail(throttleKey(user), ip)
		}
		s.writeErr(w, err)
		return false
	}
	return true
}

func (s *Service) handleDeleteMe(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Password string `json:"password"`
	}
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	c, err := s.claims(r)
	if err != nil {
		rest.WriteError(w, err)
		return
	}
	if !s.verifyOwnPassword(w, r, c.UserID, req.Password) {
		return
	}
	now := time.Now()
	err = s.accounts.DeleteUser(r.Context(), c.UserID, now, func(friend string) []store.SocialEvent {
		return []store.SocialEvent{event(friend, EventFriendRemoved, map[string]any{"userId": c.UserID}, now.UnixMilli())}
	})
	if err != nil {
		s.writeErr(w, notFound(err, "your account no longer exists"))
		return
	}
	list, err := s.accounts.RevokeSessions(r.Context(), c.UserID, "", "", ReasonAccountDeleted, now)
	if err == nil {
		s.revoked(list...)
		err = s.revokeToken(r.Context(), c, ReasonAccountDeleted)
	}
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.log.Info("account deleted", "user", c.UserID)
	w.WriteHeader(http.StatusNoContent)
}

// recordSession stores the session of a login or refresh token (for GET
// /sessions and for revoking it); a failure is logged, not fatal: the token
// works, it is only missing from the list.
func (s *Service) recordSession(ctx context.Context, token, device string, end time.Time) {
	c, err := s.keys.Verify(token)
	if err != nil {
		return
	}
	if len(device) > 128 {
		device = strings.ToValidUTF8(device[:128], "")
	}
	now := time.Now().UnixMilli()
	x := store.Session{ID: c.SessionID, User: c.UserID, Device: device, CreatedAt: c.SessionStart.UnixMilli(), LastUsedAt: now, ExpiresAt: end.UnixMilli()}
	if err := s.accounts.SaveSession(ctx, x); err != nil {
		s.log.Warn("record login session", "user", c.UserID, "err", err)
	}
}

// throttleKey is the login throttle's key for password checks of a
// signed-in user ('#' is never in a username: no bucket is shared with a
// login name).
func throttleKey(userID string) string { return "#" + userID }
