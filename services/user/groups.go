package user

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/rest"
	"github.com/imkube/imkube/internal/store"
)

// GroupStore is what group management needs from storage.
type GroupStore interface {
	UserExists(ctx context.Context, id string) (bool, error)
	CreateGroup(ctx context.Context, g store.Group, members []store.Member) error
	GroupByID(ctx context.Context, id string) (*store.Group, error)
	GroupMember(ctx context.Context, gid, uid string) (*store.Member, error)
	GroupMembers(ctx context.Context, gid string) ([]store.Member, int64, error)
	GroupsOf(ctx context.Context, uid string) ([]store.Group, error)
	// The changes take the group_event records to write with them.
	AddMembers(ctx context.Context, gid string, members []store.Member, maxMembers int, events ...store.GroupEvent) (int64, error)
	RemoveMember(ctx context.Context, gid, uid string, events ...store.GroupEvent) error
	UpdateGroup(ctx context.Context, gid string, u store.GroupUpdate, events ...store.GroupEvent) error
	UpdateMember(ctx context.Context, gid, uid string, u store.MemberUpdate, events ...store.GroupEvent) error
	DeleteGroup(ctx context.Context, gid string, events ...store.GroupEvent) error
	CreateJoinRequest(ctx context.Context, r store.JoinRequest, maxPerGroup, maxPerUser int, events ...store.GroupEvent) error
	JoinRequestByID(ctx context.Context, gid, rid string) (*store.JoinRequest, error)
	JoinRequests(ctx context.Context, gid, status string, limit int) ([]store.JoinRequest, error)
	DecideJoinRequest(ctx context.Context, gid, rid, by string, accept bool, now int64, maxMembers int, events ...store.GroupEvent) (*store.JoinRequest, error)
}

// Limits of join requests: pending requests per group and per user.
const (
	MaxPendingJoinRequestsPerGroup = 500
	MaxPendingJoinRequestsPerUser  = 50
)

// Groups manages chat groups: create, members and roles, mute, announcement,
// nickname, transfer, dismiss. Membership changes bump the group's version,
// which is how the message service knows its cached member list is stale.
type Groups struct {
	store      GroupStore
	svc        *Service
	maxMembers func() int
}

// GroupsConfig tunes the group manager.
type GroupsConfig struct {
	// MaxMembers returns the current member limit (default 10,000).
	MaxMembers func() int
}

// GroupsDeps are the group manager's collaborators.
type GroupsDeps struct {
	Store GroupStore // required
	Users *Service   // required: authenticates requests
}

// NewGroups returns the group manager.
func NewGroups(cfg GroupsConfig, deps GroupsDeps) (*Groups, error) {
	if deps.Store == nil || deps.Users == nil {
		return nil, errors.New("user: GroupsDeps.Store and Users are required")
	}
	if cfg.MaxMembers == nil {
		cfg.MaxMembers = func() int { return 10000 }
	}
	return &Groups{store: deps.Store, svc: deps.Users, maxMembers: cfg.MaxMembers}, nil
}

// GroupView is a group as returned by the REST API.
type GroupView struct {
	store.Group
	Conv    string         `json:"conv"`
	MyRole  string         `json:"myRole,omitempty"`
	Members []store.Member `json:"members,omitempty"`
	// Remark is the caller's private name for the group.
	Remark string `json:"remark,omitempty"`
}

// Routes registers the group REST endpoints.
func (g *Groups) Routes(mux *http.ServeMux) {
	a := func(h http.HandlerFunc) http.Handler { return rest.Authenticated(g.svc.keys, h) }
	mux.Handle("POST /api/v1/groups", a(g.handleCreate))
	mux.Handle("GET /api/v1/groups", a(g.handleMine))
	mux.Handle("GET /api/v1/groups/{id}", a(g.handleGet))
	mux.Handle("PATCH /api/v1/groups/{id}", a(g.handlePatch))
	mux.Handle("DELETE /api/v1/groups/{id}", a(g.handleDismiss))
	mux.Handle("POST /api/v1/groups/{id}/members", a(g.handleAdd))
	mux.Handle("PATCH /api/v1/groups/{id}/members/{userId}", a(g.handlePatchMember))
	mux.Handle("PATCH /api/v1/groups/{id}/members/me", a(g.handleRemark))
	mux.Handle("POST /api/v1/groups/{id}/join", a(g.handleJoin))
	mux.Handle("POST /api/v1/groups/{id}/join-requests", a(g.handleRequestJoin))
	mux.Handle("GET /api/v1/groups/{id}/join-requests", a(g.handleListJoinRequests))
	mux.Handle("POST /api/v1/groups/{id}/join-requests/{rid}/accept", a(g.handleDecideJoinRequest(true)))
	mux.Handle("POST /api/v1/groups/{id}/join-requests/{rid}/decline", a(g.handleDecideJoinRequest(false)))
	mux.Handle("DELETE /api/v1/groups/{id}/members/{userId}", a(g.handleRemove))
}

var (
	errNotMember = rest.Errorf(http.StatusForbidden, protocol.CodeForbidden, "you are not a member of this group")
	errNoGroup   = rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "no such group")
)

func (g *Groups) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name         string   `json:"name"`
		Members      []string `json:"members"`
		AllowInvites bool     `json:"allowInvites"`
		Announcement string   `json:"announcement"`
	}
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	me := rest.UserID(r.Context())
	req.Name = strings.TrimSpace(req.Name)
	err := checkText("groupName", req.Name)
	if err == nil {
		err = checkText("announcement", req.Announcement)
	}
	if err != nil {
		rest.WriteError(w, err)
		return
	}
	now := time.Now().UnixMilli()
	members := []store.Member{{UserID: me, Role: store.RoleOwner, JoinedAt: now}}
	seen := map[string]bool{me: true}
	for _, id := range req.Members {
		if seen[id] {
			continue
		}
		seen[id] = true
		members = append(members, store.Member{UserID: id, Role: store.RoleMember, JoinedAt: now})
	}
	if len(members) > g.maxMembers() {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, "GROUP_FULL", "a group has at most %d members", g.maxMembers()))
		return
	}
	if err := g.checkUsers(r.Context(), members[1:]); err != nil {
		g.svc.writeErr(w, err)
		return
	}
	grp := store.Group{ID: g.svc.ids.Next(), Name: req.Name, Owner: me, Announcement: req.Announcement, AllowInvites: req.AllowInvites, CreatedAt: now}
	if err := g.store.CreateGroup(r.Context(), grp, members); err != nil {
		g.svc.writeErr(w, err)
		return
	}
	g.writeGroup(w, r, http.StatusCreated, grp.ID)
}

func (g *Groups) checkUsers(ctx context.Context, members []store.Member) error {
	for _, m := range members {
		ok, err := g.store.UserExists(ctx, m.UserID)
		if err != nil {
			return err
		}
		if !ok {
			return rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "user %s does not exist", m.UserID)
		}
	}
	return nil
}

func (g *Groups) writeGroup(w http.ResponseWriter, r *http.Request, status int, gid string) {
	me := rest.UserID(r.Context())
	grp, err := g.store.GroupByID(r.Context(), gid)
	if err != nil {
		g.svc.writeErr(w, mapNotFound(err, errNoGroup))
		return
	}
	members, _, err := g.store.GroupMembers(r.Context(), gid)
	if err != nil {
		g.svc.writeErr(w, err)
		return
	}
	v := GroupView{Group: *grp, Conv: protocol.GroupConv(gid), Members: members}
	for _, m := range members {
		if m.UserID == me {
			v.MyRole = m.Role
			v.Remark = m.Remark
		}
	}
	if v.MyRole == "" {
		rest.WriteError(w, errNotMember)
		return
	}
	rest.WriteJSON(w, status, v)
}

func mapNotFound(err, to error) error {
	if errors.Is(err, store.ErrNotFound) {
		return to
	}
	return err
}

func (g *Groups) handleGet(w http.ResponseWriter, r *http.Request) {
	g.writeGroup(w, r, http.StatusOK, r.PathValue("id"))
}

func (g *Groups) handleMine(w http.ResponseWriter, r *http.Request) {
	list, err := g.store.GroupsOf(r.Context(), rest.UserID(r.Context()))
	if err != nil {
		g.svc.writeErr(w, err)
		return
	}
	out := make([]GroupView, len(list))
	for i, grp := range list {
		out[i] = GroupView{Group: grp, Conv: protocol.GroupConv(grp.ID), Remark: grp.Remark}
		out[i].Group.Remark = ""
	}
	rest.WriteJSON(w, http.StatusOK, out)
}

// role returns the caller's membership or an error for non-members.
func (g *Groups) role(ctx context.Context, gid, uid string) (*store.Member, error) {
	if _, err := g.store.GroupByID(ctx, gid); err != nil {
		return nil, mapNotFound(err, errNoGroup)
	}
	m, err := g.store.GroupMember(ctx, gid, uid)
	if err != nil {
		return nil, mapNotFound(err, errNotMember)
	}
	return m, nil
}

func isManager(m *store.Member) bool { return m.Role == store.RoleOwner || m.Role == store.RoleAdmin }

func (g *Groups) handleAdd(w http.ResponseWriter, r *http.Request) {
	gid, me := r.PathValue("id"), rest.UserID(r.Context())
	var req struct {
		UserIDs []string `json:"userIds"`
	}
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	if len(req.UserIDs) == 0 {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "userIds must not be empty"))
		return
	}
	mine, err := g.role(r.Context(), gid, me)
	if err != nil {
		g.svc.writeErr(w, err)
		return
	}
	grp, err := g.store.GroupByID(r.Context(), gid)
	if err != nil {
		g.svc.writeErr(w, mapNotFound(err, errNoGroup))
		return
	}
	if !isManager(mine) && !grp.AllowInvites {
		rest.WriteError(w, rest.Errorf(http.StatusForbidden, protocol.CodeForbidden, "only the owner and admins may add members to this group"))
		return
	}
	now := time.Now().UnixMilli()
	members := make([]store.Member, 0, len(req.UserIDs))
	for _, id := range req.UserIDs {
		members = append(members, store.Member{UserID: id, Role: store.RoleMember, JoinedAt: now})
	}
	if err := g.checkUsers(r.Context(), members); err != nil {
		g.svc.writeErr(w, err)
		return
	}
	if _, err := g.store.AddMembers(r.Context(), gid, members, g.maxMembers(), groupEvent(gid, me, EventMemberAdded, req.UserIDs, nil, nil)); err != nil {
		if errors.Is(err, store.ErrGroupFull) {
			err = rest.Errorf(http.StatusConflict, "GROUP_FULL", "a group has at most %d members", g.maxMembers())
		}
		g.svc.writeErr(w, err)
		return
	}
	g.writeGroup(w, r, http.StatusOK, gid)
}

func (g *Groups) handleRemove(w http.ResponseWriter, r *http.Request) {
	gid, me, target := r.PathValue("id"), rest.UserID(r.Context()), r.PathValue("userId")
	if target == "me" { // DELETE .../members/me: leave
		target = me
	}
	mine, err := g.role(r.Context(), gid, me)
	if err != nil {
		g.svc.writeErr(w, err)
		return
	}
	if target == me {
		if mine.Role == store.RoleOwner {
			rest.WriteError(w, rest.Errorf(http.StatusConflict, "OWNER_CANNOT_LEAVE", "transfer ownership or dismiss the group before leaving"))
			return
		}
	} else {
		theirs, err := g.store.GroupMember(r.Context(), gid, target)
		if err != nil {
			g.svc.writeErr(w, mapNotFound(err, rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "user is not a member")))
			return
		}
		if !isManager(mine) || theirs.Role == store.RoleOwner || (mine.Role == store.RoleAdmin && theirs.Role == store.RoleAdmin) {
			rest.WriteError(w, rest.Errorf(http.StatusForbidden, protocol.CodeForbidden, "your role may not remove this member"))
			return
		}
	}
	event := EventMemberRemoved
	if target == me {
		event = EventMemberLeft
	}
	// The removed member gets the event that removed them, then nothing.
	if err := g.store.RemoveMember(r.Context(), gid, target, groupEvent(gid, me, event, []string{target}, nil, []string{target})); err != nil {
		g.svc.writeErr(w, mapNotFound(err, rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "user is not a member")))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (g *Groups) handlePatch(w http.ResponseWriter, r *http.Request) {
	gid, me := r.PathValue("id"), rest.UserID(r.Context())
	var req struct {
		Name         *string `json:"name"`
		Announcement *string `json:"announcement"`
		AllowInvites *bool   `json:"allowInvites"`
		JoinPolicy   *string `json:"joinPolicy"`
		MuteAll      *bool   `json:"muteAll"`
		Owner        *string `json:"owner"`
	}
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	mine, err := g.role(r.Context(), gid, me)
	if err != nil {
		g.svc.writeErr(w, err)
		return
	}
	if !isManager(mine) || (req.Owner != nil && mine.Role != store.RoleOwner) {
		rest.WriteError(w, rest.Errorf(http.StatusForbidden, protocol.CodeForbidden, "your role may not change this group"))
		return
	}
	if req.Name != nil {
		name := strings.TrimSpace(*req.Name)
		if err := checkText("groupName", name); err != nil {
			rest.WriteError(w, err)
			return
		}
		req.Name = &name // stored as validated, like on create
	}
	if req.Announcement != nil {
		if err := checkText("announcement", *req.Announcement); err != nil {
			rest.WriteError(w, err)
			return
		}
	}
	if req.JoinPolicy != nil && *req.JoinPolicy != store.JoinInvite && *req.JoinPolicy != store.JoinByRequest && *req.JoinPolicy != store.JoinOpen {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "joinPolicy must be invite, request or open"))
		return
	}
	if req.Owner != nil {
		if _, err := g.store.GroupMember(r.Context(), gid, *req.Owner); err != nil {
			g.svc.writeErr(w, mapNotFound(err, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "the new owner must be a member")))
			return
		}
		owner := store.RoleOwner
		if err := g.store.UpdateMember(r.Context(), gid, *req.Owner, store.MemberUpdate{Role: &owner}, groupEvent(gid, me, EventOwnerTransferred, []string{*req.Owner}, nil, nil)); err != nil {
			g.svc.writeErr(w, err)
			return
		}
	}
	var events []store.GroupEvent
	if req.Name != nil || req.Announcement != nil || req.AllowInvites != nil || req.JoinPolicy != nil || req.MuteAll != nil {
		changed := map[string]any{}
		if req.Name != nil {
			changed["name"] = *req.Name
		}
		if req.Announcement != nil {
			changed["announcement"] = *req.Announcement
		}
		if req.AllowInvites != nil {
			changed["allowInvites"] = *req.AllowInvites
		}
		if req.JoinPolicy != nil {
			changed["joinPolicy"] = *req.JoinPolicy
		}
		if req.MuteAll != nil {
			changed["muteAll"] = *req.MuteAll
		}
		events = append(events, groupEvent(gid, me, EventGroupUpdated, nil, changed, nil))
	}
	if err := g.store.UpdateGroup(r.Context(), gid, store.GroupUpdate{Name: req.Name, Announcement: req.Announcement, AllowInvites: req.AllowInvites, JoinPolicy: req.JoinPolicy, MuteAll: req.MuteAll}, events...); err != nil {
		g.svc.writeErr(w, mapNotFound(err, errNoGroup))
		return
	}
	g.writeGroup(w, r, http.StatusOK, gid)
}

func (g *Groups) handlePatchMember(w http.ResponseWriter, r *http.Request) {
	gid, me, target := r.PathValue("id"), rest.UserID(r.Context()), r.PathValue("userId")
	var req struct {
		Role       *string `json:"role"`
		MutedUntil *int64  `json:"mutedUntil"`
		Nickname   *string `json:"nickname"`
	}
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	mine, err := g.role(r.Context(), gid, me)
	if err != nil {
		g.svc.writeErr(w, err)
		return
	}
	theirs, err := g.store.GroupMember(r.Context(), gid, target)
	if err != nil {
		g.svc.writeErr(w, mapNotFound(err, rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "user is not a member")))
		return
	}
	forbid := func(msg string) {
		rest.WriteError(w, rest.Errorf(http.StatusForbidden, protocol.CodeForbidden, "%s", msg))
	}
	if req.Role != nil {
		if *req.Role != store.RoleAdmin && *req.Role != store.RoleMember && *req.Role != store.RoleOwner {
			rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "role must be owner, admin or member"))
			return
		}
		if mine.Role != store.RoleOwner || target == me {
			forbid("only the owner changes roles (transfer with role owner)")
			return
		}
	}
	if req.MutedUntil != nil && (!isManager(mine) || theirs.Role == store.RoleOwner || target == me ||
		(mine.Role == store.RoleAdmin && theirs.Role == store.RoleAdmin)) {
		forbid("only the owner and admins mute members; only the owner mutes admins, and the owner cannot be muted")
		return
	}
	if req.Nickname != nil {
		if target != me {
			forbid("members set only their own nickname")
			return
		}
		if err := checkText("nickname", *req.Nickname); err != nil {
			rest.WriteError(w, err)
			return
		}
	}
	var events []store.GroupEvent
	switch {
	case req.Role != nil && *req.Role == store.RoleOwner:
		events = append(events, groupEvent(gid, me, EventOwnerTransferred, []string{target}, nil, nil))
	case req.Role != nil:
		events = append(events, groupEvent(gid, me, EventRoleChanged, []string{target}, map[string]any{"role": *req.Role}, nil))
	}
	if req.MutedUntil != nil {
		events = append(events, groupEvent(gid, me, EventMemberMuted, []string{target}, map[string]any{"mutedUntil": *req.MutedUntil}, nil))
	}
	if err := g.store.UpdateMember(r.Context(), gid, target, store.MemberUpdate{Role: req.Role, MutedUntil: req.MutedUntil, Nickname: req.Nickname}, events...); err != nil {
		g.svc.writeErr(w, err)
		return
	}
	g.writeGroup(w, r, http.StatusOK, gid)
}

func (g *Groups) handleDismiss(w http.ResponseWriter, r *http.Request) {
	gid, me := r.PathValue("id"), rest.UserID(r.Context())
	mine, err := g.role(r.Context(), gid, me)
	if err != nil {
		g.svc.writeErr(w, err)
		return
	}
	if mine.Role != store.RoleOwner {
		rest.WriteError(w, rest.Errorf(http.StatusForbidden, protocol.CodeForbidden, "only the owner may dismiss the group"))
		return
	}
	// Every member at the dismissal gets the event.
	members, _, err := g.store.GroupMembers(r.Context(), gid)
	if err != nil {
		g.svc.writeErr(w, mapNotFound(err, errNoGroup))
		return
	}
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.UserID
	}
	if err := g.store.DeleteGroup(r.Context(), gid, groupEvent(gid, me, EventDismissed, nil, nil, ids)); err != nil {
		g.svc.writeErr(w, mapNotFound(err, errNoGroup))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Group events: the "event" of a group_event message's body.
const (
	EventMemberAdded      = "member_added"
	EventMemberRemoved    = "member_removed"
	EventMemberLeft       = "member_left"
	EventRoleChanged      = "role_changed"
	EventMemberMuted      = "member_muted"
	EventGroupUpdated     = "group_updated"
	EventOwnerTransferred = "owner_transferred"
	EventDismissed        = "dismissed"
	// A join request was made, accepted (the requester is a member now) or
	// declined (the requester gets this event too).
	EventJoinRequested       = "join_requested"
	EventJoinRequestAccepted = "join_request_accepted"
	EventJoinRequestDeclined = "join_request_declined"
	// A user joined an open group by themself.
	EventMemberJoined = "member_joined"
)

// groupEvent builds the outbox record of a change: body {event, actor,
// targets, ...extra}; recipients get it besides the members at delivery.
func groupEvent(gid, actor, event string, targets []string, extra map[string]any, recipients []string) store.GroupEvent {
	body := map[string]any{"event": event, "actor": actor, "targets": targets}
	if targets == nil {
		body["targets"] = []string{}
	}
	for k, v := range extra {
		body[k] = v
	}
	b, _ := json.Marshal(body) // strings, bools and numbers always encode
	return store.GroupEvent{Group: gid, Actor: actor, Body: string(b), Recipients: recipients, CreatedAt: time.Now().UnixMilli()}
}

// handleRemark sets the caller's private remark for the group: PATCH
// /api/v1/groups/{id}/members/me {remark}. Only the caller sees it, so no
// group event is written.
func (g *Groups) handleRemark(w http.ResponseWriter, r *http.Request) {
	gid, me := r.PathValue("id"), rest.UserID(r.Context())
	var req struct {
		Remark *string `json:"remark"`
	}
	if err := rest.DecodeJSON(r, &req); err != nil {
		rest.WriteError(w, err)
		return
	}
	if req.Remark == nil {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "give remark (a string; empty clears it)"))
		return
	}
	remark := strings.TrimSpace(*req.Remark)
	if err := checkText("remark", remark); err != nil {
		rest.WriteError(w, err)
		return
	}
	if _, err := g.role(r.Context(), gid, me); err != nil {
		g.svc.writeErr(w, err)
		return
	}
	if err := g.store.UpdateMember(r.Context(), gid, me, store.MemberUpdate{Remark: &remark}); err != nil {
		g.svc.writeErr(w, mapNotFound(err, errNotMember))
		return
	}
	g.writeGroup(w, r, http.StatusOK, gid)
}

// handleJoin adds the caller to an open group: POST /api/v1/groups/{id}/join.
func (g *Groups) handleJoin(w http.ResponseWriter, r *http.Request) {
	gid, me := r.PathValue("id"), rest.UserID(r.Context())
	grp, err := g.store.GroupByID(r.Context(), gid)
	if err != nil {
		g.svc.writeErr(w, mapNotFound(err, errNoGroup))
		return
	}
	if grp.JoinPolicy != store.JoinOpen {
		rest.WriteError(w, errJoinPolicy(grp.JoinPolicy))
		return
	}
	if _, err := g.store.GroupMember(r.Context(), gid, me); err == nil {
		rest.WriteError(w, errAlreadyMember)
		return
	} else if !errors.Is(err, store.ErrNotFound) {
		g.svc.writeErr(w, err)
		return
	}
	members := []store.Member{{UserID: me, Role: store.RoleMember, JoinedAt: time.Now().UnixMilli()}}
	n, err := g.store.AddMembers(r.Context(), gid, members, g.maxMembers(), groupEvent(gid, me, EventMemberJoined, []string{me}, nil, nil))
	if err != nil {
		g.svc.writeErr(w, g.mapJoinErr(err))
		return
	}
	if n == 0 { // joined concurrently by another request of the caller
		rest.WriteError(w, errAlreadyMember)
		return
	}
	g.writeGroup(w, r, http.StatusOK, gid)
}

var errAlreadyMember = rest.Errorf(http.StatusConflict, "ALREADY_MEMBER", "you are a member of this group already")

func errJoinPolicy(policy string) error {
	switch policy {
	case store.JoinOpen:
		return rest.Errorf(http.StatusForbidden, "JOIN_POLICY", "this group is open: join it with POST /api/v1/groups/{id}/join")
	case store.JoinByRequest:
		return rest.Errorf(http.StatusForbidden, "JOIN_POLICY", "this group takes join requests: POST /api/v1/groups/{id}/join-requests")
	}
	return rest.Errorf(http.StatusForbidden, "JOIN_POLICY", "this group is joined by invitation only")
}

func (g *Groups) mapJoinErr(err error) error {
	switch {
	case errors.Is(err, store.ErrGroupFull):
		return rest.Errorf(http.StatusConflict, "GROUP_FULL", "a group has at most %d members", g.maxMembers())
	case errors.Is(err, store.ErrNotFound):
		return errNoGroup
	}
	return err
}

// handleRequestJoin makes a join request: POST
// /api/v1/groups/{id}/join-requests {message?}.
func (g *Groups) handleRequestJoin(w http.ResponseWriter, r *http.Request) {
	gid, me := r.PathValue("id"), rest.UserID(r.Context())
	var req struct {
		Message string `json:"message"`
	}
	if r.ContentLength != 0 { // the body is optional
		if err := rest.DecodeJSON(r, &req); err != nil {
			rest.WriteError(w, err)
			return
		}
	}
	if err := checkText("joinMessage", req.Message); err != nil {
		rest.WriteError(w, err)
		return
	}
	grp, err := g.store.GroupByID(r.Context(), gid)
	if err != nil {
		g.svc.writeErr(w, mapNotFound(err, errNoGroup))
		return
	}
	if grp.JoinPolicy != store.JoinByRequest {
		rest.WriteError(w, errJoinPolicy(grp.JoinPolicy))
		return
	}
	jr := store.JoinRequest{ID: g.svc.ids.Next(), GroupID: gid, UserID: me, Message: req.Message, Status: store.RequestPending, CreatedAt: time.Now().UnixMilli()}
	ev := groupEvent(gid, me, EventJoinRequested, []string{me}, map[string]any{"requestId": jr.ID, "message": jr.Message}, nil)
	err = g.store.CreateJoinRequest(r.Context(), jr, MaxPendingJoinRequestsPerGroup, MaxPendingJoinRequestsPerUser, ev)
	switch {
	case errors.Is(err, store.ErrAlreadyMember):
		err = errAlreadyMember
	case errors.Is(err, store.ErrConflict):
		err = rest.Errorf(http.StatusConflict, "REQUEST_PENDING", "your join request to this group is pending")
	case errors.Is(err, store.ErrGroupRequestsFull):
		err = rest.Errorf(http.StatusConflict, "LIMIT_REACHED", "this group has %d pending join requests, the most it takes; try later", MaxPendingJoinRequestsPerGroup)
	case errors.Is(err, store.ErrUserRequestsFull):
		err = rest.Errorf(http.StatusConflict, "LIMIT_REACHED", "you have %d pending join requests, the most allowed; wait for answers", MaxPendingJoinRequestsPerUser)
	case errors.Is(err, store.ErrNotFound):
		err = errNoGroup
	}
	if err != nil {
		g.svc.writeErr(w, err)
		return
	}
	rest.WriteJSON(w, http.StatusCreated, jr)
}

// manager returns an error unless the caller is the owner or an admin.
func (g *Groups) manager(ctx context.Context, gid, uid string) error {
	mine, err := g.role(ctx, gid, uid)
	if err != nil {
		return err
	}
	if !isManager(mine) {
		return rest.Errorf(http.StatusForbidden, protocol.CodeForbidden, "only the owner and admins handle join requests")
	}
	return nil
}

// handleListJoinRequests lists join requests: GET
// /api/v1/groups/{id}/join-requests?status=pending|accepted|declined.
func (g *Groups) handleListJoinRequests(w http.ResponseWriter, r *http.Request) {
	gid, me := r.PathValue("id"), rest.UserID(r.Context())
	status := r.URL.Query().Get("status")
	if status == "" {
		status = store.RequestPending
	}
	if status != store.RequestPending && status != store.RequestAccepted && status != store.RequestDeclined {
		rest.WriteError(w, rest.Errorf(http.StatusBadRequest, protocol.CodeBadFrame, "status must be pending, accepted or declined"))
		return
	}
	if err := g.manager(r.Context(), gid, me); err != nil {
		g.svc.writeErr(w, err)
		return
	}
	list, err := g.store.JoinRequests(r.Context(), gid, status, MaxPendingJoinRequestsPerGroup)
	if err != nil {
		g.svc.writeErr(w, err)
		return
	}
	rest.WriteJSON(w, http.StatusOK, list)
}

// handleDecideJoinRequest accepts or declines a pending join request.
func (g *Groups) handleDecideJoinRequest(accept bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		gid, rid, me := r.PathValue("id"), r.PathValue("rid"), rest.UserID(r.Context())
		if err := g.manager(r.Context(), gid, me); err != nil {
			g.svc.writeErr(w, err)
			return
		}
		jr, err := g.store.JoinRequestByID(r.Context(), gid, rid)
		if err != nil {
			g.svc.writeErr(w, mapNotFound(err, rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "no such join request")))
			return
		}
		event, recipients := EventJoinRequestDeclined, []string{jr.UserID}
		if accept {
			event, recipients = EventJoinRequestAccepted, nil // a member by delivery
		}
		ev := groupEvent(gid, me, event, []string{jr.UserID}, map[string]any{"requestId": rid}, recipients)
		jr, err = g.store.DecideJoinRequest(r.Context(), gid, rid, me, accept, time.Now().UnixMilli(), g.maxMembers(), ev)
		switch {
		case errors.Is(err, store.ErrRequestAlreadyClosed):
			err = rest.Errorf(http.StatusConflict, "REQUEST_ANSWERED", "this join request was already answered")
		case errors.Is(err, store.ErrNotFound):
			err = rest.Errorf(http.StatusNotFound, protocol.CodeNotFound, "no such join request")
		case err != nil:
			err = g.mapJoinErr(err)
		}
		if err != nil {
			g.svc.writeErr(w, err)
			return
		}
		rest.WriteJSON(w, http.StatusOK, jr)
	}
}
