package message

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/auth"
	"github.com/imkube/imkube/internal/messageapi"
	"github.com/imkube/imkube/internal/rest"
	"github.com/imkube/imkube/internal/store"
)

// State implements messageapi.Backend.
// It refuses (messageapi.ErrUnauthenticated) a user without an account: the
// gateway asks at every WebSocket auth, so a validly signed token of a user
// that does not exist cannot connect.
func (s *Service) State(ctx context.Context, user string) (int64, []protocol.ConvState, error) {
	if s.accounts != nil {
		ok, err := s.accounts.Exists(ctx, user)
		if err != nil {
			return 0, nil, unavailable(err)
		}
		if !ok {
			return 0, nil, messageapi.ErrUnauthenticated
		}
	}
	if s.admin != nil {
		banned, _, err := s.admin.Banned(ctx, user)
		if err != nil {
			return 0, nil, unavailable(err)
		}
		if banned {
			return 0, nil, messageapi.ErrBanned
		}
	}
	n, err := s.store.InboxSeq(ctx, user)
	if err != nil {
		return 0, nil, unavailable(err)
	}
	large, err := s.groups.LargeGroupsOf(ctx, user, s.threshold())
	if err != nil {
		return 0, nil, unavailable(err)
	}
	var convs []protocol.ConvState
	for _, c := range large {
		convs = append(convs, protocol.ConvState{Conv: c.Conv, LastSeq: c.LastSeq, ReadSeq: c.ReadSeq})
	}
	return n, convs, nil
}

// DefaultPageBytes bounds an encoded sync or pull page when the caller
// names no bound (REST history, older gateways).
const DefaultPageBytes = 256 << 10

// pageOverhead is what a result frame adds around its items: type, conv (at
// most protocol.MaxConvLen), cursor and more. The request id is the
// caller's to account for.
const pageOverhead = 256

// fitPage returns how many of the n items fit in a page of maxBytes encoded
// bytes (0: DefaultPageBytes), given each item's encoded size; at least one,
// so that a client always makes progress. JSON escaping makes a message up
// to six times its body on the wire, so pages are measured encoded.
func fitPage(n, maxBytes int, size func(i int) int) int {
	if maxBytes <= 0 {
		maxBytes = DefaultPageBytes
	}
	used := pageOverhead
	for i := range n {
		used += size(i) + 1 // and a comma
		if used > maxBytes && i > 0 {
			return i
		}
	}
	return n
}

// encodedSize is the size of m in a result frame.
func encodedSize(m *protocol.Msg) int {
	b, err := json.Marshal(m)
	if err != nil {
		return 0
	}
	return len(b)
}

// Sync implements messageapi.Backend.
func (s *Service) Sync(ctx context.Context, user string, after int64, limit, maxBytes int) (*protocol.SyncResult, error) {
	limit = clampLimit(limit)
	items, more, err := s.store.Sync(ctx, user, after, limit)
	if err != nil {
		return nil, unavailable(err)
	}
	// The cursor to continue from is the last item returned (or the client's
	// own cursor when nothing is newer). It must never pass a row the client
	// has not been given: a separate MAX(inbox_seq) read could see a message
	// committed after this page and make the client skip it.
	// Messages the user deleted for themselves are left out, but the
	// cursor moves past them.
	res := &protocol.SyncResult{T: protocol.TypeSyncResult, Items: make([]protocol.Msg, 0, len(items)), More: more, InboxSeq: after}
	for i := range items {
		if items[i].Hidden {
			continue
		}
		if items[i].Record == store.RecordRead { // a read cursor of another device (signals.go)
			res.Items = append(res.Items, protocol.Msg{T: protocol.TypeReadSync, Conv: items[i].Conv, Seq: items[i].Seq, InboxSeq: items[i].InboxSeq})
			continue
		}
		if items[i].Record == store.RecordEvent { // a social event (social.go)
			res.Items = append(res.Items, protocol.Msg{T: protocol.TypeEvent, Kind: items[i].Kind, Body: items[i].Body, TS: items[i].TS, InboxSeq: items[i].InboxSeq})
			continue
		}
		res.Items = append(res.Items, toMsg(&items[i].Message, items[i].InboxSeq))
		res.Items[len(res.Items)-1].T = ""
	}
	if n := fitPage(len(res.Items), maxBytes, func(i int) int { return encodedSize(&res.Items[i]) }); n < len(res.Items) {
		res.Items, res.More = res.Items[:n], true
		res.InboxSeq = res.Items[n-1].InboxSeq
	} else if n := len(items); n > 0 {
		res.InboxSeq = items[n-1].InboxSeq
	}
	return res, nil
}

// Pull implements messageapi.Backend.
func (s *Service) Pull(ctx context.Context, user, conv string, from, to int64, limit, maxBytes int) (*protocol.PullResult, error) {
	floor, err := s.mayRead(ctx, user, conv)
	if err != nil {
		return nil, err
	}
	return s.pull(ctx, user, conv, max(from, floor), to, 0, limit, maxBytes)
}

// PullBefore implements messageapi.Backend: the newest messages before
// seq before, in ascending order; More says older ones exist.
func (s *Service) PullBefore(ctx context.Context, user, conv string, before int64, limit, maxBytes int) (*protocol.PullResult, error) {
	floor, err := s.mayRead(ctx, user, conv)
	if err != nil {
		return nil, err
	}
	return s.pull(ctx, user, conv, floor, 0, before, limit, maxBytes)
}

func (s *Service) pull(ctx context.Context, user, conv string, from, to, before int64, limit, maxBytes int) (*protocol.PullResult, error) {
	items, more, err := s.store.PullVisible(ctx, user, conv, from, to, before, clampLimit(limit))
	if err != nil {
		return nil, unavailable(err)
	}
	res := &protocol.PullResult{T: protocol.TypePullResult, Conv: conv, Items: make([]protocol.Msg, len(items)), More: more}
	for i := range items {
		res.Items[i] = toMsg(&items[i], 0)
		res.Items[i].T = ""
	}
	if before > 0 { // backwards: keep the newest that fit
		k := len(res.Items)
		if n := fitPage(k, maxBytes, func(i int) int { return encodedSize(&res.Items[k-1-i]) }); n < k {
			res.Items, res.More = res.Items[k-n:], true
		}
		return res, nil
	}
	if n := fitPage(len(res.Items), maxBytes, func(i int) int { return encodedSize(&res.Items[i]) }); n < len(res.Items) {
		res.Items, res.More = res.Items[:n], true
	}
	return res, nil
}

// Read implements messageapi.Backend; see read in signals.go.
func (s *Service) Read(ctx context.Context, user, device, conv string, seq int64) error {
	return s.read(ctx, user, device, conv, seq)
}

// mayRead returns messageapi.ErrForbidden unless user belongs to conv; else the
// first seq the user may see (group members see messages sent after they
// joined, not the history before).
func (s *Service) mayRead(ctx context.Context, user, conv string) (int64, error) {
	kind, a, b, ok := protocol.ParseConv(conv)
	if !ok {
		return 0, fmt.Errorf("%w: malformed conversation id", messageapi.ErrBadRequest)
	}
	switch kind {
	case 'u':
		if user == a || user == b {
			return 0, nil
		}
	case 'g':
		m, err := s.groups.GroupMember(ctx, a, user)
		if errors.Is(err, store.ErrNotFound) {
			return 0, messageapi.ErrForbidden
		}
		if err != nil {
			return 0, unavailable(err)
		}
		return m.JoinedSeq + 1, nil
	}
	return 0, messageapi.ErrForbidden
}

func clampLimit(n int) int {
	if n <= 0 {
		return protocol.DefaultLimit
	}
	return min(n, protocol.MaxLimit)
}

func unavailable(err error) error {
	return fmt.Errorf("%w: %v", messageapi.ErrUnavailable, err)
}

// Routes registers the public REST API (conversations and history) and, when
// keys are given, the internal API used by gateways in distributed mode.
func (s *Service) Routes(mux *http.ServeMux, keys *auth.Keys) {
	mux.Handle("GET /api/v1/conversations", rest.Authenticated(keys, http.HandlerFunc(s.handleConversations)))
	mux.Handle("GET /api/v1/conversations/{conv}/messages", rest.Authenticated(keys, http.HandlerFunc(s.handleHistory)))
	mux.Handle("PATCH /api/v1/conversations/{conv}", rest.Authenticated(keys, http.HandlerFunc(s.handlePatchConversation)))
	s.signalRoutes(mux, keys)
	messageapi.ServeInternal(mux, keys, s)
}

// NextCursorHeader carries the cursor of the next page of GET
// /api/v1/conversations (absent on the last page).
const NextCursorHeader = "X-Next-Cursor"

// MaxConversationPage bounds ?limit= of GET /api/v1/conversations.
const MaxConversationPage = 500

func (s *Service) handleConversations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := optInt(q.Get("limit"), MaxConversationPage)
	if err != nil || limit < 1 || limit > MaxConversationPage {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "limit must be 1-%d", MaxConversationPage))
		return
	}
	var after *store.ConvCursor
	if c := q.Get("cursor"); c != "" {
		cur, err := store.ParseConvCursor(c)
		if err != nil {
			rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "cursor is malformed: pass the %s header of the previous page", NextCursorHeader))
			return
		}
		after = &cur
	}
	list, next, err := s.store.ConversationPage(r.Context(), rest.UserID(r.Context()), after, int(limit))
	if err != nil {
		s.writeErr(w, unavailable(err))
		return
	}
	if next != nil {
		w.Header().Set(NextCursorHeader, next.String())
	}
	rest.WriteJSON(w, http.StatusOK, list)
}

// handlePatchConversation sets pinned and muted of the caller's entry of a
// conversation.
func (s *Service) handlePatchConversation(w http.ResponseWriter, r *http.Request) {
	conv := r.PathValue("conv")
	if !protocol.ValidConv(conv) {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "conv must be u:<userId>:<userId> or g:<groupId>"))
		return
	}
	var u store.ConvSettings
	if err := rest.DecodeJSON(r, &u); err != nil {
		rest.WriteError(w, messageapi.HTTPError(err))
		return
	}
	if u.Pinned == nil && u.Muted == nil {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "give pinned and/or muted (booleans)"))
		return
	}
	user := rest.UserID(r.Context())
	err := s.store.SetConvSettings(r.Context(), user, conv, u)
	if errors.Is(err, store.ErrNotFound) {
		rest.WriteError(w, rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "you have no conversation %s", conv))
		return
	}
	if err != nil {
		s.writeErr(w, unavailable(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) handleHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("beforeSeq") != "" {
		s.handleHistoryBefore(w, r)
		return
	}
	from, err1 := optInt(q.Get("fromSeq"), 1)
	limit, err2 := optInt(q.Get("limit"), protocol.DefaultLimit)
	if err := errors.Join(err1, err2); err != nil || from < 0 || limit < 1 || limit > protocol.MaxLimit {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "fromSeq must be >= 0 and limit 1-%d", protocol.MaxLimit))
		return
	}
	res, err := s.Pull(r.Context(), rest.UserID(r.Context()), r.PathValue("conv"), from, 0, int(limit), DefaultPageBytes)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	rest.WriteJSON(w, http.StatusOK, map[string]any{"items": res.Items, "more": res.More})
}

func optInt(s string, def int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

func (s *Service) writeErr(w http.ResponseWriter, err error) {
	rest.WriteError(w, messageapi.HTTPError(err))
	if errors.Is(err, messageapi.ErrUnavailable) || messageapi.HTTPError(err).Status >= 500 {
		s.log.Error("message service request failed", "err", err)
	}
}

// handleHistoryBefore pages history backwards: ?beforeSeq=&limit=.
func (s *Service) handleHistoryBefore(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	before, err1 := optInt(q.Get("beforeSeq"), 0)
	limit, err2 := optInt(q.Get("limit"), protocol.DefaultLimit)
	if err := errors.Join(err1, err2); err != nil || before < 1 || limit < 1 || limit > protocol.MaxLimit || q.Get("fromSeq") != "" {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "beforeSeq must be >= 1 (without fromSeq) and limit 1-%d", protocol.MaxLimit))
		return
	}
	res, err := s.PullBefore(r.Context(), rest.UserID(r.Context()), r.PathValue("conv"), before, int(limit), DefaultPageBytes)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	rest.WriteJSON(w, http.StatusOK, map[string]any{"items": res.Items, "more": res.More})
}
