package user

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/rest"
	"github.com/imkube/imkube/internal/store"
)

// SocialStore is what friends and blocks need from storage.
type SocialStore interface {
	CreateFriendRequest(ctx context.Context, r store.FriendRequest, lim store.SocialLimits, ev store.EventsFunc) error
	FriendRequests(ctx context.Context, user string, incoming bool, status string, limit int) ([]store.FriendRequest, error)
	RespondFriendRequest(ctx context.Context, id, user string, accept bool, now int64, lim store.SocialLimits, ev store.EventsFunc) (*store.FriendRequest, error)
	Friends(ctx context.Context, user string) ([]store.Friend, error)
	RemoveFriend(ctx context.Context, user, other string, events []store.SocialEvent) error
	SetRemark(ctx context.Context, user, other, remark string) error
	BlockUser(ctx context.Context, user, other string, now int64, lim store.SocialLimits) error
	UnblockUser(ctx context.Context, user, other string) error
	Blocks(ctx context.Context, user string) ([]store.Block, error)
}

// Social event kinds: the kind of the {"t":"event"} inbox records.
const (
	EventFriendRequest = protocol.EventFriendRequest
	EventFriendAdded   = protocol.EventFriendAdded
	EventFriendRemoved = protocol.EventFriendRemoved
)

// Default social bounds (SocialConfig); docs in PROTOCOL.md.
const (
	DefaultMaxFriends         = 2000
	DefaultMaxPendingRequests = 100
	DefaultMaxBlocks          = 1000
	// MaxRequestMessage is the longest friend request note, in characters.
	MaxRequestMessage = 200
	// MaxRemark is the longest remark on a friend, in characters.
	MaxRemark = 64
)

// SocialConfig bounds each user's social rows (0: the default).
type SocialConfig struct {
	MaxFriends         int
	MaxPendingRequests int // outgoing, and incoming, pending requests per user
	MaxBlocks          int
}

// Social serves friends, friend requests and blocks under /api/v1.
type Social struct {
	store SocialStore
	svc   *Service
	lim   store.SocialLimits
	now   func() time.Time
}

// NewSocial returns the friends and blocks API.
func NewSocial(cfg SocialConfig, st SocialStore, users *Service) (*Social, error) {
	if st == nil || users == nil {
		return nil, errors.New("user: NewSocial needs a store and the user service")
	}
	lim := store.SocialLimits{MaxFriends: cfg.MaxFriends, MaxPendingRequests: cfg.MaxPendingRequests, MaxBlocks: cfg.MaxBlocks}
	if lim.MaxFriends <= 0 {
		lim.MaxFriends = DefaultMaxFriends
	}
	if lim.MaxPendingRequests <= 0 {
		lim.MaxPendingRequests = DefaultMaxPendingRequests
	}
	if lim.MaxBlocks <= 0 {
		lim.MaxBlocks = DefaultMaxBlocks
	}
	return &Social{store: st, svc: users, lim: lim, now: time.Now}, nil
}

// Routes registers the friends and blocks endpoints.
func (s *Social) Routes(mux *http.ServeMux) {
	a := func(h http.HandlerFunc) http.Handler { return rest.Authenticated(s.svc.keys, h) }
	mux.Handle("POST /api/v1/friends/requests", a(s.handleRequest))
	mux.Handle("GET /api/v1/friends/requests", a(s.handleRequests))
	mux.Handle("POST /api/v1/friends/requests/{id}/accept", a(s.handleRespond(true)))
	mux.Handle("POST /api/v1/friends/requests/{id}/decline", a(s.handleRespond(false)))
	mux.Handle("GET /api/v1/friends", a(s.handleFriends))
	mux.Handle("DELETE /api/v1/friends/{userId}", a(s.handleUnfriend))
	mux.Handle("PATCH /api/v1/friends/{userId}", a(s.handleRemark))
	mux.Handle("PUT /api/v1/blocks/{userId}", a(s.handleBlock))
	mux.Handle("DELETE /api/v1/blocks/{userId}", a(s.handleUnblock))
	mux.Handle("GET /api/v1/blocks", a(s.handleBlocks))
}

func event(user, kind string, data any, ts int64) store.SocialEvent {
	b, _ := json.Marshal(data) // plain structs and maps always encode
	return store.SocialEvent{User: user, Kind: kind, Body: string(b), CreatedAt: ts}
}

// mapSocialErr turns store outcomes into coded answers.
func mapSocialErr(err error) error {
	var le *store.LimitError
	switch {
	case errors.As(err, &le):
		return rest.Errorf(http.StatusConflict, "LIMIT_REACHED", "%s", le.Error())
	case errors.Is(err, store.ErrBlocked):
		return rest.Errorf(http.StatusForbidden, "BLOCKED", "you cannot add this user")
	case errors.Is(err, store.ErrAlreadyFriends):
		return rest.Errorf(http.StatusConflict, "ALREADY_FRIENDS", "you are friends already")
	case errors.Is(err, store.ErrRequestPending):
		return rest.Errorf(http.StatusConflict, "REQUEST_PENDING", "a friend request between you is pending: wait for the answer, or answer theirs")
	}
	return err
}

func validUserID(id string) error {
	if id == "" || len(id) > 64 || !protocol.ValidID(id) {
		return rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "userId must be a user id (1-64 characters of [A-Za-z0-9_.-])")
	}
	return nil
}

func (s *Social) handleRequest(w http.ResponseWriter, r *http.Request) {
	var req struct {
		UserID  string `json:"userId"`
		Message string `json:"message"`
	}
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	me := rest.UserID(r.Context())
	if err := validUserID(req.UserID); err != nil {
		rest.WriteError(w, err)
		return
	}
	if req.UserID == me {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "you cannot befriend yourself"))
		return
	}
	req.Message = strings.TrimSpace(req.Message)
	if err := checkNote("message", req.Message, MaxRequestMessage); err != nil {
		rest.WriteError(w, err)
		return
	}
	now := s.now().UnixMilli()
	fr := store.FriendRequest{ID: s.svc.ids.Next(), From: me, To: req.UserID, MessageText: req.Message, Status: store.RequestPending, CreatedAt: now}
	err := s.store.CreateFriendRequest(r.Context(), fr, s.lim, func(fr store.FriendRequest) []store.SocialEvent {
		return []store.SocialEvent{event(fr.To, EventFriendRequest, fr, now), event(fr.From, EventFriendRequest, fr, now)}
	})
	if err != nil {
		s.svc.writeErr(w, mapSocialErr(notFound(err, "no such user")))
		return
	}
	rest.WriteJSON(w, http.StatusCreated, fr)
}

func (s *Social) handleRequests(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	dir, status := q.Get("direction"), q.Get("status")
	if dir == "" {
		dir = "in"
	}
	if dir != "in" && dir != "out" {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "direction must be in or out"))
		return
	}
	switch status {
	case "", store.RequestPending, store.RequestAccepted, store.RequestDeclined:
	default:
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "status must be pending, accepted or declined"))
		return
	}
	list, err := s.store.FriendRequests(r.Context(), rest.UserID(r.Context()), dir == "in", status, 500)
	if err != nil {
		s.svc.writeErr(w, err)
		return
	}
	rest.WriteJSON(w, http.StatusOK, list)
}

func (s *Social) handleRespond(accept bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		me, id := rest.UserID(r.Context()), r.PathValue("id")
		now := s.now().UnixMilli()
		fr, err := s.store.RespondFriendRequest(r.Context(), id, me, accept, now, s.lim, func(fr store.FriendRequest) []store.SocialEvent {
			if !accept { // the recipient's other devices learn it; the sender is not told
				return []store.SocialEvent{event(fr.To, EventFriendRequest, fr, now)}
			}
			return []store.SocialEvent{
				event(fr.To, EventFriendAdded, map[string]any{"userId": fr.From, "requestId": fr.ID, "since": now}, now),
				event(fr.From, EventFriendAdded, map[string]any{"userId": fr.To, "requestId": fr.ID, "since": now}, now),
			}
		})
		switch {
		case errors.Is(err, store.ErrNotFound):
			err = rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "no such friend request")
		case errors.Is(err, store.ErrForbidden):
			err = rest.Errorf(http.StatusForbidden, protocol.CodeForbidden, "only the recipient answers a friend request")
		case errors.Is(err, store.ErrConflict):
			err = rest.Errorf(http.StatusConflict, "REQUEST_ANSWERED", "this friend request was already answered")
		}
		if err != nil {
			s.svc.writeErr(w, mapSocialErr(err))
			return
		}
		rest.WriteJSON(w, http.StatusOK, fr)
	}
}

func (s *Social) handleFriends(w http.ResponseWriter, r *http.Request) {
	list, err := s.store.Friends(r.Context(), rest.UserID(r.Context()))
	if err != nil {
		s.svc.writeErr(w, err)
		return
	}
	rest.WriteJSON(w, http.StatusOK, list)
}

func (s *Social) handleUnfriend(w http.ResponseWriter, r *http.Request) {
	me, other := rest.UserID(r.Context()), r.PathValue("userId")
	if err := validUserID(other); err != nil {
		rest.WriteError(w, err)
		return
	}
	now := s.now().UnixMilli()
	err := s.store.RemoveFriend(r.Context(), me, other, []store.SocialEvent{
		event(me, EventFriendRemoved, map[string]any{"userId": other}, now),
		event(other, EventFriendRemoved, map[string]any{"userId": me}, now),
	})
	if err != nil {
		s.svc.writeErr(w, notFound(err, "this user is not your friend"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Social) handleRemark(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Remark *string `json:"remark"`
	}
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	other := r.PathValue("userId")
	if err := validUserID(other); err != nil {
		rest.WriteError(w, err)
		return
	}
	if req.Remark == nil {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "remark is required (\"\" clears it)"))
		return
	}
	remark := strings.TrimSpace(*req.Remark)
	if err := checkNote("remark", remark, MaxRemark); err != nil {
		rest.WriteError(w, err)
		return
	}
	if err := s.store.SetRemark(r.Context(), rest.UserID(r.Context()), other, remark); err != nil {
		s.svc.writeErr(w, notFound(err, "this user is not your friend"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Social) handleBlock(w http.ResponseWriter, r *http.Request) {
	me, other := rest.UserID(r.Context()), r.PathValue("userId")
	if err := validUserID(other); err != nil {
		rest.WriteError(w, err)
		return
	}
	if other == me {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "you cannot block yourself"))
		return
	}
	if err := s.store.BlockUser(r.Context(), me, other, s.now().UnixMilli(), s.lim); err != nil {
		s.svc.writeErr(w, mapSocialErr(notFound(err, "no such user")))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Social) handleUnblock(w http.ResponseWriter, r *http.Request) {
	other := r.PathValue("userId")
	if err := validUserID(other); err != nil {
		rest.WriteError(w, err)
		return
	}
	if err := s.store.UnblockUser(r.Context(), rest.UserID(r.Context()), other); err != nil {
		s.svc.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Social) handleBlocks(w http.ResponseWriter, r *http.Request) {
	list, err := s.store.Blocks(r.Context(), rest.UserID(r.Context()))
	if err != nil {
		s.svc.writeErr(w, err)
		return
	}
	rest.WriteJSON(w, http.StatusOK, list)
}

// checkNote checks a free-text note of at most max characters (empty
// allowed): valid UTF-8 without control characters.
func checkNote(field, v string, max int) error {
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > max || strings.ContainsFunc(v, func(c rune) bool { return c < 0x20 || (c >= 0x7f && c < 0xa0) }) {
		return rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "%s must be at most %d printable characters", field, max)
	}
	return nil
}
