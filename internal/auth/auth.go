// Package auth issues and verifies the JWTs that clients present on every
// WebSocket connection and REST call. Tokens are HS256, carry the user id in
// "sub" and a key id ("kid") in the header, so keys can rotate: the key file
// holds one key per line, the first signs, all of them verify.
//
// Sessions: a login starts a session (id "sid", start "sst" in every token
// of it); each token has its own id ("jti"). A refresh issues the session's
// next token, never past the session's absolute lifetime, and revokes the
// old one: Revocations is the small set of revoked, not yet expired token
// ids that Verify checks in memory (see revocations.go).
package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrInvalidToken is returned for any token that must not be accepted:
// malformed, forged, expired, or signed with an unknown key.
var ErrInvalidToken = errors.New("invalid or expired token")

// MinKeyLen is the minimum signing key length in bytes.
const MinKeyLen = 32

// Keys signs and verifies tokens.
type Keys struct {
	signKID string
	keys    map[string][]byte
	ttl     time.Duration
	issuer  string
	now     func() time.Time
	revoked *atomic.Pointer[Revocations] // shared by copies (WithClock)
}

// Claims are the verified contents of a token.
type Claims struct {
	UserID    string
	IssuedAt  time.Time
	ExpiresAt time.Time
	// TokenID identifies this token (jti; for tokens issued before token
	// ids existed, a hash of the token) so it can be revoked.
	TokenID string
	// SessionID and SessionStart are the login this token descends from
	// by refreshes (tokens without them: their own id and issue time).
	SessionID    string
	SessionStart time.Time
}

type tokenClaims struct {
	jwt.RegisteredClaims
	SID string `json:"sid,omitempty"`
	SST int64  `json:"sst,omitempty"`
}

// NewKeys builds Keys from raw key lines; the first signs.
func NewKeys(lines []string, ttl time.Duration) (*Keys, error) {
	k := &Keys{keys: map[string][]byte{}, ttl: ttl, issuer: "imkube", now: time.Now, revoked: &atomic.Pointer[Revocations]{}}
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if len(l) < MinKeyLen {
			return nil, fmt.Errorf("jwt key on line %d is %d bytes, need at least %d", i+1, len(l), MinKeyLen)
		}
		kid := KeyID([]byte(l))
		if k.signKID == "" {
			k.signKID = kid
		}
		k.keys[kid] = []byte(l)
	}
	if k.signKID == "" {
		return nil, errors.New("jwt key file holds no key")
	}
	if ttl <= 0 {
		k.ttl = 24 * time.Hour
	}
	return k, nil
}

// LoadKeys reads a key file (one key per line).
func LoadKeys(path string, ttl time.Duration) (*Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read jwt key file: %w", err)
	}
	return NewKeys(strings.Split(string(b), "\n"), ttl)
}

// LoadOrCreateKeys reads the key file at path, creating it with a random key
// when absent (dev mode).
func LoadOrCreateKeys(path string, ttl time.Duration) (*Keys, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		buf := make([]byte, 32)
		if _, err := rand.Read(buf); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(buf)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("write jwt key file: %w", err)
		}
	}
	return LoadKeys(path, ttl)
}

// KeyID names a key without revealing it.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:6])
}

// TTL is the lifetime of issued tokens.
func (k *Keys) TTL() time.Duration { return k.ttl }

// Issue signs the first token of a new session of userID.
func (k *Keys) Issue(userID string) (string, time.Time, error) {
	now := k.now()
	return k.sign(userID, randomID(), now, now, time.Time{})
}

// Refresh signs the next token of c's session: the same session, a new
// token id, expiring after the token lifetime but never after sessionEnd.
func (k *Keys) Refresh(c Claims, sessionEnd time.Time) (string, time.Time, error) {
	return k.sign(c.UserID, c.SessionID, c.SessionStart, k.now(), sessionEnd)
}

func (k *Keys) sign(userID, sid string, start, now, end time.Time) (string, time.Time, error) {
	exp := now.Add(k.ttl)
	if !end.IsZero() && exp.After(end) {
		exp = end
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   userID,
			Issuer:    k.issuer,
			ID:        randomID(),
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
		SID: sid,
		SST: start.Unix(),
	})
	t.Header["kid"] = k.signKID
	s, err := t.SignedString(k.keys[k.signKID])
	return s, exp, err
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Verify checks signature, algorithm, key id, issuer, expiry and, when
// Revocations are set, that neither the token nor its session was revoked
// (a map lookup: no database query per request).
func (k *Keys) Verify(token string) (Claims, error) {
	if len(token) > 4096 {
		return Claims{}, ErrInvalidToken
	}
	var tc tokenClaims
	_, err := jwt.ParseWithClaims(token, &tc, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		key, ok := k.keys[kid]
		if !ok {
			return nil, errors.New("unknown key id")
		}
		return key, nil
	}, jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer(k.issuer), jwt.WithExpirationRequired(), jwt.WithTimeFunc(k.now))
	rc := tc.RegisteredClaims
	if err != nil || rc.Subject == "" {
		return Claims{}, ErrInvalidToken
	}
	c := Claims{UserID: rc.Subject, ExpiresAt: rc.ExpiresAt.Time, TokenID: rc.ID, SessionID: tc.SID}
	if rc.IssuedAt != nil {
		c.IssuedAt = rc.IssuedAt.Time
	}
	if c.TokenID == "" || len(c.TokenID) > 64 {
		sum := sha256.Sum256([]byte(token))
		c.TokenID = "h" + hex.EncodeToString(sum[:16])
	}
	if c.SessionID == "" || len(c.SessionID) > 64 {
		c.SessionID = c.TokenID
	}
	c.SessionStart = c.IssuedAt
	if tc.SST > 0 {
		c.SessionStart = time.Unix(tc.SST, 0)
	}
	if r := k.revoked.Load(); r != nil {
		if _, revoked := r.RevokedClaims(c); revoked {
			return Claims{}, ErrInvalidToken
		}
	}
	return c, nil
}

// RevokedReason reports whether c (verified earlier, e.g. when a connection
// authenticated) has been revoked since, and why: the check a connection
// holder repeats when Revocations.Generation changes.
func (k *Keys) RevokedReason(c Claims) (string, bool) {
	r := k.revoked.Load()
	if r == nil {
		return "", false
	}
	return r.RevokedClaims(c)
}

// RevocationGeneration changes whenever revocations are added (0 without
// Revocations).
func (k *Keys) RevocationGeneration() uint64 {
	if r := k.revoked.Load(); r != nil {
		return r.Generation()
	}
	return 0
}

// SetRevocations makes Verify refuse the tokens r holds (nil: none).
func (k *Keys) SetRevocations(r *Revocations) { k.revoked.Store(r) }

// Revocations returns what SetRevocations set.
func (k *Keys) Revocations() *Revocations { return k.revoked.Load() }

// WithClock replaces the clock (tests).
func (k *Keys) WithClock(now func() time.Time) *Keys {
	c := *k
	c.now = now
	return &c
}

// InternalToken is the bearer token services present to each other's
// internal endpoints (derived from the signing key, so it rotates with it).
func (k *Keys) InternalToken() string {
	return internalToken(k.keys[k.signKID])
}

// VerifyInternal accepts the internal token of any configured key.
func (k *Keys) VerifyInternal(tok string) bool {
	for _, key := range k.keys {
		if hmac.Equal([]byte(tok), []byte(internalToken(key))) {
			return true
		}
	}
	return false
}

func internalToken(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("imkube-internal-v1"))
	return hex.EncodeToString(m.Sum(nil))
}
