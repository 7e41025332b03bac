// Package user is the user service: accounts, passwords (bcrypt), login
// tokens (JWT) and user lookup, served under /api/v1.
package user

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/rest"
	"github.com/imkube/imkube/internal/snowflake"
	"github.com/imkube/imkube/internal/store"
	"github.com/imkube/imkube/internal/username"
)

// Store is what the user service needs from storage.
type Store interface {
	CreateUser(ctx context.Context, u store.User) error
	UserByUsername(ctx context.Context, username string) (*store.User, error)
	UserByID(ctx context.Context, id string) (*store.User, error)
	// RevokeToken records a refreshed token (store.ErrConflict: it already was).
	RevokeToken(ctx context.Context, tokenID string, expiresAt time.Time) error
	// Banned reports whether the admin API banned the user.
	Banned(ctx context.Context, user string) (bool, string, error)
}

// ErrBanned answers a login or refresh of a banned account.
var ErrBanned = rest.Errorf(http.StatusForbidden, protocol.CodeBanned, "this account is banned")

// Service implements accounts and login.
type Service struct {
	store           Store
	keys            *auth.Keys
	ids             *snowflake.Generator
	log             *slog.Logger
	bcryptCost      int
	dummyHash       []byte
	throttle        *LoginThrottle
	signups         *ipLimiter
	hash            *hasher
	reserved        map[string]bool
	sessionLifetime time.Duration
	trustProxy      bool
	accounts        AccountStore
	defaultDMPolicy func() string
}

// Config tunes the user service.
type Config struct {
	// BcryptCost defaults to bcrypt.DefaultCost (10).
	BcryptCost int
	// TrustProxy takes the client address from the last X-Forwarded-For
	// entry (set it only behind the gateway's REST proxy, which appends it).
	TrustProxy bool
	// SessionLifetime bounds refreshing: no token of a session outlives its
	// login by more than this (default 30 days).
	SessionLifetime time.Duration
	// SignupBurst registrations per client IP (IPv6: per /64) at once (20),
	// one more every SignupRefill (30 s).
	SignupBurst  int
	SignupRefill time.Duration
	// HashConcurrency bounds the password hashes (bcrypt) computed at once
	// (default GOMAXPROCS); a login or registration waits for a slot at most
	// HashQueueWait (2 s), with at most 8 x HashConcurrency waiting, and
	// otherwise gets 503 UNAVAILABLE with Retry-After.
	HashConcurrency int
	HashQueueWait   time.Duration
	// ReservedUsernames cannot be registered, in any case or Unicode form
	// (nil: username.Reserved).
	ReservedUsernames []string
	// DefaultDMPolicy returns the DM policy of users who chose none
	// (IMCluster spec.users.defaultDMPolicy; nil: "anyone").
	DefaultDMPolicy func() string
}

// Deps are the user service's collaborators.
type Deps struct {
	Store Store                // required
	Keys  *auth.Keys           // required
	IDs   *snowflake.Generator // required
	Log   *slog.Logger
	// Throttle slows password guessing (default NewLoginThrottle with its defaults).
	Throttle *LoginThrottle
}

// New returns a user service.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Keys == nil || deps.IDs == nil {
		return nil, errors.New("user: Deps.Store, Keys and IDs are required")
	}
	accounts, ok := deps.Store.(AccountStore)
	if !ok {
		return nil, errors.New("user: Deps.Store must implement AccountStore (sessions, profile, deletion)")
	}
	if cfg.DefaultDMPolicy == nil {
		cfg.DefaultDMPolicy = func() string { return DMAnyone }
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.DefaultCost
	}
	if cfg.SessionLifetime <= 0 {
		cfg.SessionLifetime = 30 * 24 * time.Hour
	}
	if cfg.ReservedUsernames == nil {
		cfg.ReservedUsernames = username.Reserved
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	// A hash to compare against when the username does not exist, so a
	// login takes as long for unknown users as for known ones.
	dummy, _ := bcrypt.GenerateFromPassword([]byte("imkube-timing-equaliser"), cfg.BcryptCost)
	if deps.Throttle == nil {
		deps.Throttle = NewLoginThrottle(ThrottleConfig{})
	}
	reserved := map[string]bool{}
	for _, r := range cfg.ReservedUsernames {
		reserved[username.Key(r)] = true
	}
	return &Service{store: deps.Store, keys: deps.Keys, ids: deps.IDs, log: deps.Log, bcryptCost: cfg.BcryptCost, dummyHash: dummy,
		throttle: deps.Throttle, signups: newIPLimiter(cfg.SignupBurst, cfg.SignupRefill), hash: newHasher(cfg.HashConcurrency, cfg.HashQueueWait),
		reserved: reserved, sessionLifetime: cfg.SessionLifetime, trustProxy: cfg.TrustProxy,
		accounts: accounts, defaultDMPolicy: cfg.DefaultDMPolicy}, nil
}

// Password rules.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 72 // bcrypt's input limit
)

// Register creates an account.
func (s *Service) Register(ctx context.Context, name, password, displayName string) (*store.User, error) {
	if !username.Valid(name) {
		return nil, rest.Errorf(http.StatusBadRequest, "INVALID_USERNAME", "username must be 3-32 characters of letters, digits, '_', '.', '-'")
	}
	if s.reserved[username.Key(name)] {
		return nil, rest.Errorf(http.StatusBadRequest, "INVALID_USERNAME", "username %q is reserved; choose another", name)
	}
	if len(password) < MinPasswordLen || len(password) > MaxPasswordLen {
		return nil, rest.Errorf(http.StatusBadRequest, "INVALID_PASSWORD", "password must be %d-%d bytes long", MinPasswordLen, MaxPasswordLen)
	}
	displayName = strings.TrimSpace(displayName)
	if displayName == "" {
		displayName = name
	}
	if err := checkText("displayName", displayName); err != nil {
		return nil, err
	}
	var hash []byte
	err := s.hash.do(ctx, func() (err error) {
		hash, err = bcrypt.GenerateFromPassword([]byte(password), s.bcryptCost)
		return err
	})
	if err != nil {
		return nil, err
	}
	u := store.User{ID: s.ids.Next(), Username: name, DisplayName: displayName, PasswordHash: string(hash), CreatedAt: time.Now().UnixMilli()}
	if err := s.store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, rest.Errorf(http.StatusConflict, "USERNAME_TAKEN", "username %q is taken", name)
		}
		return nil, err
	}
	s.log.Info("user registered", "user", u.ID)
	return &u, nil
}

// Session is a successful login or refresh.
type Session struct {
	Token     string `json:"token"`
	UserID    string `json:"userId"`
	ExpiresAt int64  `json:"expiresAt"`
	// SessionExpiresAt is when the session ends: no refresh goes past it.
	SessionExpiresAt int64 `json:"sessionExpiresAt"`
}

// ErrBadCredentials is returned for a wrong username or password.
var ErrBadCredentials = rest.Errorf(http.StatusUnauthorized, "BAD_CREDENTIALS", "wrong username or password")

// Login checks the password and issues the first token of a new session,
// recorded with device (a name the client gave, or its User-Agent).
func (s *Service) Login(ctx context.Context, username, password, device string) (*Session, error) {
	u, err := s.store.UserByUsername(ctx, username)
	if errors.Is(err, store.ErrNotFound) || len(password) > MaxPasswordLen {
		if err := s.hash.do(ctx, func() error { _ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password)); return nil }); err != nil {
			return nil, err
		}
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, err
	}
	var wrong bool
	if err := s.hash.do(ctx, func() error {
		wrong = bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil
		return nil
	}); err != nil {
		return nil, err
	}
	if wrong {
		return nil, ErrBadCredentials
	}
	// Only after the password: a ban is not told to someone guessing.
	if banned, _, err := s.store.Banned(ctx, u.ID); err != nil {
		return nil, err
	} else if banned {
		return nil, ErrBanned
	}
	tok, exp, err := s.keys.Issue(u.ID)
	if err != nil {
		return nil, err
	}
	end := time.Now().Add(s.sessionLifetime)
	s.recordSession(ctx, tok, device, end)
	return &Session{Token: tok, UserID: u.ID, ExpiresAt: exp.UnixMilli(), SessionExpiresAt: end.UnixMilli()}, nil
}

// Routes registers the REST endpoints on mux.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/users", s.handleRegister)
	mux.HandleFunc("POST /api/v1/sessions", s.handleLogin)
	mux.Handle("POST /api/v1/sessions/refresh", rest.Authenticated(s.keys, http.HandlerFunc(s.handleRefresh)))
	mux.Handle("GET /api/v1/users/me", rest.Authenticated(s.keys, http.HandlerFunc(s.handleMe)))
	mux.Handle("GET /api/v1/users", rest.Authenticated(s.keys, http.HandlerFunc(s.handleFind)))
	mux.Handle("GET /api/v1/users/{id}", rest.Authenticated(s.keys, http.HandlerFunc(s.handleGet)))
	s.accountRoutes(mux)
}

func (s *Service) handleRegister(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username    string `json:"username"`
		Password    string `json:"password"`
		DisplayName string `json:"displayName"`
	}
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	if ok, wait := s.signups.Allow(ClientIP(r, s.trustProxy)); !ok {
		writeTooMany(w, wait, "too many sign-ups from your address")
		return
	}
	u, err := s.Register(r.Context(), req.Username, req.Password, req.DisplayName)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	rest.WriteJSON(w, http.StatusCreated, u)
}

func (s *Service) handleLogin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Device   string `json:"device"`
	}
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	ip := ClientIP(r, s.trustProxy)
	if ok, wait := s.throttle.Allow(req.Username, ip); !ok {
		WriteTooManyAttempts(w, wait)
		return
	}
	if req.Device == "" {
		req.Device = r.UserAgent()
	}
	sess, err := s.Login(r.Context(), req.Username, req.Password, req.Device)
	if err != nil {
		if errors.Is(err, ErrBadCredentials) {
			s.throttle.Fail(req.Username, ip)
		}
		s.writeErr(w, err)
		return
	}
	s.throttle.Succeed(req.Username, ip)
	rest.WriteJSON(w, http.StatusOK, sess)
}

// ErrSessionExpired answers a refresh of a session older than its lifetime.
var ErrSessionExpired = rest.Errorf(http.StatusUnauthorized, protocol.CodeUnauthenticated, "your session has ended; log in again")

// handleRefresh exchanges a valid (not yet expired, not revoked) token for
// the next token of its session, signed with the current key, so clients
// stay logged in across key rotation without sending the password again.
// The old token is revoked (a token refreshes once), and no token of a
// session expires later than SessionLifetime after the login.
func (s *Service) handleRefresh(w http.ResponseWriter, r *http.Request) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	c, err := s.keys.Verify(tok)
	if err != nil {
		rest.WriteError(w, rest.Errorf(http.StatusUnauthorized, protocol.CodeUnauthenticated, "invalid or expired token: log in again"))
		return
	}
	if u, err := s.store.UserByID(r.Context(), c.UserID); err != nil || u.Deleted {
		if err == nil {
			err = rest.Errorf(http.StatusUnauthorized, protocol.CodeUnauthenticated, "your account was deleted")
		}
		s.writeErr(w, notFound(err, "your account no longer exists"))
		return
	}
	if banned, _, err := s.store.Banned(r.Context(), c.UserID); err != nil || banned {
		if err == nil {
			err = ErrBanned
		}
		s.writeErr(w, err)
		return
	}
	end := c.SessionStart.Add(s.sessionLifetime)
	if !time.Now().Before(end) {
		rest.WriteError(w, ErrSessionExpired)
		return
	}
	if err := s.store.RevokeToken(r.Context(), c.TokenID, c.ExpiresAt); err != nil {
		if errors.Is(err, store.ErrConflict) {
			err = rest.Errorf(http.StatusUnauthorized, protocol.CodeUnauthenticated, "this token was already refreshed: use the newer token or log in again")
		}
		s.writeErr(w, err)
		return
	}
	if rv := s.keys.Revocations(); rv != nil {
		rv.Add(c.TokenID, c.ExpiresAt)
	}
	next, exp, err := s.keys.Refresh(c, end)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.recordSession(r.Context(), next, r.UserAgent(), end)
	rest.WriteJSON(w, http.StatusOK, &Session{Token: next, UserID: c.UserID, ExpiresAt: exp.UnixMilli(), SessionExpiresAt: end.UnixMilli()})
}

func (s *Service) handleMe(w http.ResponseWriter, r *http.Request) {
	u, err := s.store.UserByID(r.Context(), rest.UserID(r.Context()))
	if err == nil && u.Deleted {
		err = store.ErrNotFound
	}
	if err != nil {
		s.writeErr(w, notFound(err, "your account no longer exists"))
		return
	}
	rest.WriteJSON(w, http.StatusOK, s.meView(u))
}

func (s *Service) handleFind(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("username")
	if name == "" {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "query parameter username is required"))
		return
	}
	u, err := s.store.UserByUsername(r.Context(), name)
	if err != nil {
		s.writeErr(w, notFound(err, "no user named "+name))
		return
	}
	rest.WriteJSON(w, http.StatusOK, u)
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	u, err := s.store.UserByID(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeErr(w, notFound(err, "no such user"))
		return
	}
	if u.Deleted {
		u.Username = "" // kept reserved, no longer shown
	}
	rest.WriteJSON(w, http.StatusOK, u)
}

func notFound(err error, msg string) error {
	if errors.Is(err, store.ErrNotFound) {
		return rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "%s", msg)
	}
	return err
}

func (s *Service) writeErr(w http.ResponseWriter, err error) {
	var he *rest.Error
	if !errors.As(err, &he) {
		s.log.Error("user service request failed", "err", err)
	}
	rest.WriteError(w, err)
}
