package message

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/imkube/imkube/api/protocol"
	"github.com/imkube/imkube/internal/store"
)

// GroupStore is what group fan-out needs from storage.
type GroupStore interface {
	GroupVersion(ctx context.Context, gid string) (int64, error)
	GroupMembers(ctx context.Context, gid string) ([]store.Member, int64, error)
	GroupMember(ctx context.Context, gid, uid string) (*store.Member, error)
	GroupByID(ctx context.Context, id string) (*store.Group, error)
	LargeGroupsOf(ctx context.Context, uid string, threshold int) ([]store.Conversation, error)
}

// memberCache keeps member lists of groups keyed by the group's version. A
// cached list is used only while the version read for the message being
// processed still matches, so a membership change is never missed: a removed
// member gets nothing sent after the removal committed.
type memberCache struct {
	mu      sync.Mutex
	entries map[string]cachedMembers
	max     int
}

type cachedMembers struct {
	version int64
	members []store.Member
	index   map[string]*store.Member
	// muteAll is the group's setting, read after the members: a change
	// since bumps the version, so a stale value is never used.
	muteAll bool
}

func newMemberCache(max int) *memberCache {
	return &memberCache{entries: map[string]cachedMembers{}, max: max}
}

// members returns the current member list of gid (ErrNotFound when the group
// does not exist).
func (s *Service) members(ctx context.Context, gid string) (cachedMembers, error) {
	v, err := s.groups.GroupVersion(ctx, gid)
	if err != nil {
		return cachedMembers{}, err
	}
	s.cache.mu.Lock()
	e, ok := s.cache.entries[gid]
	s.cache.mu.Unlock()
	if ok && e.version == v {
		return e, nil
	}
	list, v, err := s.groups.GroupMembers(ctx, gid)
	if err != nil {
		return cachedMembers{}, err
	}
	grp, err := s.groups.GroupByID(ctx, gid)
	if err != nil {
		return cachedMembers{}, err
	}
	e = cachedMembers{version: v, members: list, index: make(map[string]*store.Member, len(list)), muteAll: grp.MuteAll}
	for i := range list {
		e.index[list[i].UserID] = &list[i]
	}
	s.cache.mu.Lock()
	if len(s.cache.entries) >= s.cache.max {
		for k := range s.cache.entries { // drop an arbitrary entry
			delete(s.cache.entries, k)
			break
		}
	}
	s.cache.entries[gid] = e
	s.cache.mu.Unlock()
	return e, nil
}

// authoriseGroup checks a group send and returns the members (sender first)
// and whether the group uses read diffusion.
func (s *Service) authoriseGroup(ctx context.Context, up *upstreamInfo) (members []string, readDiffusion bool, err error) {
	gid := up.group
	if up.conv != protocol.GroupConv(gid) {
		return nil, false, reject(protocol.CodeBadFrame, "conversation id does not match the group")
	}
	e, err := s.members(ctx, gid)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, reject(protocol.CodeNotFound, "group %s does not exist", gid)
	}
	if err != nil {
		return nil, false, fmt.Errorf("group members: %w", err)
	}
	me, ok := e.index[up.user]
	if !ok {
		return nil, false, reject(protocol.CodeForbidden, "you are not a member of group %s", gid)
	}
	if me.MutedUntil > s.now().UnixMilli() {
		return nil, false, reject(protocol.CodeForbidden, "you are muted in group %s", gid)
	}
	if e.muteAll && me.Role != store.RoleOwner && me.Role != store.RoleAdmin {
		return nil, false, reject(protocol.CodeForbidden, "group muted: only the owner and admins may send in group %s", gid)
	}
	members = make([]string, 0, len(e.members))
	members = append(members, up.user)
	for _, m := range e.members {
		if m.UserID != up.user {
			members = append(members, m.UserID)
		}
	}
	return members, len(members) > s.threshold(), nil
}

type upstreamInfo struct {
	user, conv, group string
}
