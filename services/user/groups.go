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
}

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
		out[i] = GroupView{Group: grp, Conv: protocol.GroupConv(grp.ID)}
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
	if req.Name != nil || req.Announcement != nil || req.AllowInvites != nil {
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
		events = append(events, groupEvent(gid, me, EventGroupUpdated, nil, changed, nil))
	}
	if err := g.store.UpdateGroup(r.Context(), gid, store.GroupUpdate{Name: req.Name, Announcement: req.Announcement, AllowInvites: req.AllowInvites}, events...); err != nil {
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
