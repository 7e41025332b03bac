package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Revoked is one revoked token: its id, when it would have expired and when
// it was revoked (unix ms).
type Revoked struct {
	TokenID   string `json:"jti"`
	ExpiresAt int64  `json:"exp"`
	RevokedAt int64  `json:"at"`
	// Reason, if set, is why (sent to the connections the revocation
	// closes in kicked{reason}): logged_out, password_changed,
	// session_revoked, account_deleted.
	Reason string `json:"reason,omitempty"`
}

// SessionKey is the revocation id of a whole session (every token of it):
// the revocation set holds token ids and these.
func SessionKey(sessionID string) string { return "s:" + sessionID }

// RevocationSource lists revocations recorded at or after since (unix ms)
// whose tokens have not expired yet: the database, or in a process without
// one (the gateway) the user service's internal endpoint.
type RevocationSource interface {
	RevokedSince(ctx context.Context, since int64) ([]Revoked, error)
}

// Revocations is the set of revoked, not yet expired token ids, kept in
// memory so that Verify stays a map lookup. Run polls the source for
// revocations made by other processes; Add records one made here, effective
// at once. A token revoked in another process is refused here within one
// poll interval. The set only holds tokens that were refreshed (or, later,
// logged out) and have not expired yet, so it stays small: at most the
// number of refreshes within one token lifetime. Safe for concurrent use.
type Revocations struct {
	src      RevocationSource
	interval time.Duration
	log      *slog.Logger
	now      func() time.Time

	mu      sync.RWMutex
	m       map[string]int64  // token id (or SessionKey) -> expiry, unix ms
	reasons map[string]string // why, for entries that say
	gen     uint64            // bumped by every change that adds entries
	synced  time.Time         // start of the last successful poll
}

// RevocationsOverlap is how far before the previous poll each poll reads
// again, so that rows written with a clock behind ours, or committed late,
// are not missed.
const RevocationsOverlap = time.Minute

// NewRevocations returns an empty set fed by src every interval (default 2 s).
func NewRevocations(src RevocationSource, interval time.Duration, log *slog.Logger) *Revocations {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Revocations{src: src, interval: interval, log: log, now: time.Now, m: map[string]int64{}, reasons: map[string]string{}}
}

// Revoked reports whether the token id is revoked.
func (r *Revocations) Revoked(tokenID string) bool {
	r.mu.RLock()
	exp, ok := r.m[tokenID]
	r.mu.RUnlock()
	return ok && exp > r.now().UnixMilli()-int64(time.Minute/time.Millisecond)
}

// Add records a revocation made by this process.
func (r *Revocations) Add(tokenID string, expiresAt time.Time) {
	r.AddReason(tokenID, expiresAt, "")
}

// AddReason records a revocation made by this process, with why.
func (r *Revocations) AddReason(tokenID string, expiresAt time.Time, reason string) {
	r.mu.Lock()
	r.m[tokenID] = expiresAt.UnixMilli()
	if reason != "" {
		r.reasons[tokenID] = reason
	}
	r.gen++
	r.mu.Unlock()
}

// RevokedClaims reports whether the token of c is revoked, by its id or
// its whole session, and why ("" when not said).
func (r *Revocations) RevokedClaims(c Claims) (string, bool) {
	for _, id := range []string{c.TokenID, SessionKey(c.SessionID)} {
		if r.Revoked(id) {
			r.mu.RLock()
			why := r.reasons[id]
			r.mu.RUnlock()
			return why, true
		}
	}
	return "", false
}

// Generation changes whenever revocations are added, so a holder of
// connections rechecks them only then.
func (r *Revocations) Generation() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.gen
}

// Len is the number of revoked tokens held.
func (r *Revocations) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.m)
}

// Sync polls the source once and drops expired entries.
func (r *Revocations) Sync(ctx context.Context) error {
	if r.src == nil {
		return nil
	}
	start := r.now()
	var since int64
	r.mu.RLock()
	if !r.synced.IsZero() {
		since = r.synced.Add(-RevocationsOverlap).UnixMilli()
	}
	r.mu.RUnlock()
	list, err := r.src.RevokedSince(ctx, since)
	if err != nil {
		return err
	}
	// Expired tokens are refused by their expiry; keep a minute of slack
	// for clock skew between the signer and us.
	cutoff := start.Add(-time.Minute).UnixMilli()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range list {
		if _, ok := r.m[v.TokenID]; !ok {
			r.gen++
		}
		r.m[v.TokenID] = v.ExpiresAt
		if v.Reason != "" {
			r.reasons[v.TokenID] = v.Reason
		}
	}
	for id, exp := range r.m {
		if exp < cutoff {
			delete(r.m, id)
			delete(r.reasons, id)
		}
	}
	r.synced = start
	return nil
}

// Run polls until ctx ends; a failed poll is logged and retried, keeping
// what is known.
func (r *Revocations) Run(ctx context.Context) error {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		if err := r.Sync(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("token revocations: poll failed; keeping the known set", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RevocationsPath is the user service's internal endpoint that lists
// revocations for processes without the database (gateways).
const RevocationsPath = "/internal/v1/revocations"

// RevocationsHandler serves src at GET RevocationsPath?since=<unix ms> to
// callers presenting the internal token of k.
func RevocationsHandler(k *Keys, src RevocationSource) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !k.VerifyInternal(tok) {
			http.Error(w, "internal endpoint", http.StatusUnauthorized)
			return
		}
		since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
		list, err := src.RevokedSince(r.Context(), since)
		if err != nil {
			http.Error(w, "revocations unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(struct {
			Items []Revoked `json:"items"`
		}{Items: list})
	})
}

// RevocationsClient reads revocations from a user service's RevocationsPath.
type RevocationsClient struct {
	base, token string
	http        *http.Client
}

// NewRevocationsClient returns a RevocationSource for the user service at
// baseURL; rt (nil: the default) carries the requests.
func NewRevocationsClient(baseURL, internalToken string, rt http.RoundTripper) *RevocationsClient {
	return &RevocationsClient{base: strings.TrimSuffix(baseURL, "/"), token: internalToken, http: &http.Client{Timeout: 10 * time.Second, Transport: rt}}
}

// RevokedSince implements RevocationSource.
func (c *RevocationsClient) RevokedSince(ctx context.Context, since int64) ([]Revoked, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+RevocationsPath+"?since="+strconv.FormatInt(since, 10), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("user service answered %d", resp.StatusCode)
	}
	var out struct {
		Items []Revoked `json:"items"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&out); err != nil {
		return nil, err
	}
	return out.Items, nil
}
