package gateway

import (
	"hash/maphash"
	"sync"
)

const hubShards = 64

// hub is the sharded registry of this gateway's authenticated connections:
// user -> device -> client.
type hub struct {
	seed   maphash.Seed
	shards [hubShards]struct {
		sync.RWMutex
		users map[string]map[string]*Client
	}
	mu    sync.Mutex
	count int
}

func newHub() *hub {
	h := &hub{seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].users = map[string]map[string]*Client{}
	}
	return h
}

func (h *hub) shard(user string) int {
	return int(maphash.String(h.seed, user) % hubShards)
}

// add registers c and returns the client it replaced (same user and device).
func (h *hub) add(c *Client) (old *Client) {
	s := &h.shards[h.shard(c.user)]
	s.Lock()
	devs := s.users[c.user]
	if devs == nil {
		devs = map[string]*Client{}
		s.users[c.user] = devs
	}
	old = devs[c.device]
	devs[c.device] = c
	s.Unlock()
	if old == nil {
		h.mu.Lock()
		h.count++
		h.mu.Unlock()
	}
	return old
}

// remove unregisters c if it is still the registered client of its device.
func (h *hub) remove(c *Client) bool {
	s := &h.shards[h.shard(c.user)]
	s.Lock()
	devs := s.users[c.user]
	ok := devs != nil && devs[c.device] == c
	if ok {
		delete(devs, c.device)
		if len(devs) == 0 {
			delete(s.users, c.user)
		}
	}
	s.Unlock()
	if ok {
		h.mu.Lock()
		h.count--
		h.mu.Unlock()
	}
	return ok
}

// lookup returns the client of user's device.
func (h *hub) lookup(user, device string) *Client {
	s := &h.shards[h.shard(user)]
	s.RLock()
	defer s.RUnlock()
	return s.users[user][device]
}

// each calls fn for every client (fn must not call back into the hub).
func (h *hub) each(fn func(*Client)) {
	for i := range h.shards {
		s := &h.shards[i]
		s.RLock()
		var list []*Client
		for _, devs := range s.users {
			for _, c := range devs {
				list = append(list, c)
			}
		}
		s.RUnlock()
		for _, c := range list {
			fn(c)
		}
	}
}

func (h *hub) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count
}
