package config

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Webhooks are the integration hooks (IMCluster spec.webhooks; config.json
// "webhooks"). The signing key is not here: it comes from the environment
// (IMKUBE_WEBHOOK_SECRET, from the Secret spec.webhooks.secretRef names).
type Webhooks struct {
	// BeforeSend, when its URL is set, is asked about every send before it
	// is stored: allow, reject or replace the body.
	BeforeSend BeforeSend `json:"beforeSend,omitzero"`
	// Events, when its URL is set, gets the after-send and event hooks
	// through the persistent outbox.
	Events Events `json:"events,omitzero"`
	// OfflinePush, when its URL is set, is called for recipients with no
	// online device.
	OfflinePush OfflinePush `json:"offlinePush,omitzero"`
}

// BeforeSend is the synchronous hook of the message path.
type BeforeSend struct {
	URL string `json:"url,omitempty"`
	// Timeout of one call (default 500ms, at most 5s).
	Timeout Duration `json:"timeout,omitempty"`
	// FailOpen: on timeout or error, store the message unchanged (true) or
	// refuse it with UNAVAILABLE (false, the default).
	FailOpen bool `json:"failOpen,omitempty"`
}

// Events is the asynchronous event hook.
type Events struct {
	URL string `json:"url,omitempty"`
	// Kinds, if set, limits the events sent (EventKinds); empty: all.
	Kinds []string `json:"kinds,omitempty"`
}

// OfflinePush is the offline push hook.
type OfflinePush struct {
	URL string `json:"url,omitempty"`
}

// Event kinds of the events hook.
const (
	EventMessageStored   = "message.stored"
	EventMessageRecalled = "message.recalled"
	EventMessageEdited   = "message.edited"
	EventGroup           = "group.event"
	EventUserOnline      = "user.online"
	EventUserOffline     = "user.offline"
	// EventFriend: a friend request, acceptance or removal, once for each
	// user it concerns (the same events their devices get).
	EventFriend = "friend.event"
)

// EventKinds are the event kinds the events hook may be limited to.
var EventKinds = []string{EventMessageStored, EventMessageRecalled, EventMessageEdited, EventGroup, EventUserOnline, EventUserOffline, EventFriend}

// Bounds of BeforeSend.Timeout.
const (
	DefaultBeforeSendTimeout = 500 * time.Millisecond
	MaxBeforeSendTimeout     = 5 * time.Second
)

// BeforeSendTimeout is the timeout with its default.
func (w Webhooks) BeforeSendTimeout() time.Duration {
	if w.BeforeSend.Timeout <= 0 {
		return DefaultBeforeSendTimeout
	}
	return time.Duration(w.BeforeSend.Timeout)
}

// WantsEvent reports whether the events hook is on and takes kind.
func (w Webhooks) WantsEvent(kind string) bool {
	if w.Events.URL == "" {
		return false
	}
	if len(w.Events.Kinds) == 0 {
		return true
	}
	for _, k := range w.Events.Kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// Validate names the first bad field.
func (w Webhooks) Validate() error {
	for _, u := range []struct{ name, v string }{
		{"webhooks.beforeSend.url", w.BeforeSend.URL}, {"webhooks.events.url", w.Events.URL}, {"webhooks.offlinePush.url", w.OfflinePush.URL},
	} {
		if u.v == "" {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("config.json: %s %q: want an http(s) URL", u.name, u.v)
		}
	}
	if t := time.Duration(w.BeforeSend.Timeout); t < 0 || t > MaxBeforeSendTimeout {
		return fmt.Errorf("config.json: webhooks.beforeSend.timeout %s: want 0 (500ms) up to %s", t, MaxBeforeSendTimeout)
	}
	for _, k := range w.Events.Kinds {
		ok := false
		for _, e := range EventKinds {
			ok = ok || e == k
		}
		if !ok {
			return errors.New("config.json: webhooks.events.kinds: unknown kind " + k)
		}
	}
	return nil
}
