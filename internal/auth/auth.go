// Package auth is labplane's API tokens: making them, and checking the bearer token of a
// request against the registry.
//
// A token is "lp_" followed by 32 random bytes in base64url (46 characters). It is shown
// once, when it is created; the registry keeps only its SHA-256. Verify hashes the token it
// is given and looks the hash up (in its cache, then in the registry): no comparison ever
// involves the token or a stored secret, only SHA-256 digests the caller cannot steer, so
// their timing tells an attacker nothing about a valid token. Neither this package's errors
// nor its callers' logs may carry a token: Verify's errors say what was wrong, never with what.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/store"
)

// Prefix starts every token, so that one is recognised where it should not be (a log, a
// repository) and a malformed header is refused without a lookup.
const Prefix = "lp_"

// tokenBytes is the randomness in a token, and encodedLen its length in base64url.
const tokenBytes = 32

var encodedLen = base64.RawURLEncoding.EncodedLen(tokenBytes)

// ErrUnauthorized: the request carries no valid token (none, malformed, unknown or revoked).
var ErrUnauthorized = errors.New("unauthorized")

// Scope is what a token may do. Each scope may do what the ones before it may.
type Scope string

const (
	// ScopeRead may read labs (GET), nothing more: a dashboard, a report.
	ScopeRead Scope = "read"
	// ScopeLMS may launch, heartbeat, leave, resume and delete labs, and read them: the LMS.
	ScopeLMS Scope = "lms"
	// ScopeOperator may also do what an operator does by hand.
	ScopeOperator Scope = "operator"
)

// Scopes are the scopes, each allowed what the ones before it are.
var Scopes = []Scope{ScopeRead, ScopeLMS, ScopeOperator}

// ParseScope returns the scope named s.
func ParseScope(s string) (Scope, error) {
	if i := slices.Index(Scopes, Scope(s)); i >= 0 {
		return Scopes[i], nil
	}
	return "", fmt.Errorf("scope %q: use one of %v", s, Scopes)
}

// Allows reports whether a token of scope s may do what needs scope need.
func (s Scope) Allows(need Scope) bool {
	return slices.Index(Scopes, s) >= slices.Index(Scopes, need) && slices.Contains(Scopes, need)
}

// Client is who a token was given to (its name) and what it may do.
type Client struct {
	Name  string
	Scope Scope
}

// NewToken makes a token: plain is given to the client once, hash is what the registry keeps.
func NewToken() (plain string, hash []byte) {
	b := make([]byte, tokenBytes)
	_, _ = rand.Read(b) // never fails (crypto/rand panics if the system has no randomness)
	plain = Prefix + base64.RawURLEncoding.EncodeToString(b)
	return plain, Hash(plain)
}

// Hash is the SHA-256 of a token.
func Hash(plain string) []byte {
	h := sha256.Sum256([]byte(plain))
	return h[:]
}

// wellFormed reports whether s looks like a token NewToken makes.
func wellFormed(s string) bool {
	if len(s) != len(Prefix)+encodedLen || !strings.HasPrefix(s, Prefix) {
		return false
	}
	for _, c := range s[len(Prefix):] {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// TokenStore finds a live token by its hash (labs.ErrNotFound when there is none):
// *store.Store does.
type TokenStore interface {
	TokenByHash(ctx context.Context, hash []byte) (store.Token, error)
}

// Verifier checks the Authorization header of API requests. It is safe for concurrent use.
//
// A token found in the store is trusted for ttl without asking the store again (heartbeats
// arrive by the thousand per second): a token revoked with labplane token revoke keeps
// working for up to ttl on every replica that checked it shortly before. With ttl <= 0
// every request asks the store. Unknown tokens are not remembered: a token created a moment
// ago works at once.
type Verifier struct {
	ts  TokenStore
	ttl time.Duration
	now func() time.Time

	mu        sync.RWMutex
	cache     map[[sha256.Size]byte]cached
	lastSweep time.Time
}

type cached struct {
	client  Client
	expires time.Time
}

// NewVerifier returns a Verifier that looks tokens up in ts and trusts what it found for ttl
// by the clock now (time.Now if nil).
func NewVerifier(ts TokenStore, ttl time.Duration, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{ts: ts, ttl: ttl, now: now, cache: map[[sha256.Size]byte]cached{}}
}

// Verify checks an Authorization header, which must be exactly "Bearer <token>", and returns
// the client the token was given to, with its scope. A missing or malformed header, or a token
// that is unknown or revoked, is ErrUnauthorized; a store that cannot answer is another
// error (the API should answer 503 then, not 401). No error carries the token.
func (v *Verifier) Verify(ctx context.Context, authorizationHeader string) (Client, error) {
	plain, ok := strings.CutPrefix(authorizationHeader, "Bearer ")
	switch {
	case authorizationHeader == "":
		return Client{}, fmt.Errorf("no Authorization header: %w", ErrUnauthorized)
	case !ok:
		return Client{}, fmt.Errorf("the Authorization header is not \"Bearer <token>\": %w", ErrUnauthorized)
	}
	return v.VerifyToken(ctx, plain)
}

// VerifyToken checks a token itself (one an operator typed into the console's login form), as
// Verify checks a bearer token.
func (v *Verifier) VerifyToken(ctx context.Context, plain string) (Client, error) {
	if !wellFormed(plain) {
		return Client{}, fmt.Errorf("the token is not a labplane token: %w", ErrUnauthorized)
	}
	return v.VerifyHash(ctx, sha256.Sum256([]byte(plain)))
}

// VerifyHash checks a token by its SHA-256 (Hash), which a caller that must not keep the
// token (the console's sessions) keeps instead: the client it was given to while it is live,
// else ErrUnauthorized. It trusts what it found for the Verifier's ttl, as Verify does, so a
// revoked token's sessions end within it.
func (v *Verifier) VerifyHash(ctx context.Context, sum [sha256.Size]byte) (Client, error) {
	now := v.now()

	v.mu.RLock()
	c, hit := v.cache[sum]
	v.mu.RUnlock()
	if hit && now.Before(c.expires) {
		return c.client, nil
	}

	tok, err := v.ts.TokenByHash(ctx, sum[:])
	if errors.Is(err, labs.ErrNotFound) {
		v.forget(sum)
		return Client{}, fmt.Errorf("unknown or revoked token: %w", ErrUnauthorized)
	}
	if err != nil {
		return Client{}, fmt.Errorf("check the bearer token: %w", err)
	}
	client := Client{Name: tok.Name, Scope: Scope(tok.Scope)}
	if v.ttl > 0 {
		v.remember(sum, cached{client: client, expires: now.Add(v.ttl)}, now)
	}
	return client, nil
}

func (v *Verifier) remember(sum [sha256.Size]byte, c cached, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.cache[sum] = c
	// Drop expired entries now and then, so the cache holds only recently used tokens.
	if now.Sub(v.lastSweep) >= v.ttl {
		for k, e := range v.cache {
			if !now.Before(e.expires) {
				delete(v.cache, k)
			}
		}
		v.lastSweep = now
	}
}

func (v *Verifier) forget(sum [sha256.Size]byte) {
	v.mu.RLock()
	_, ok := v.cache[sum]
	v.mu.RUnlock()
	if ok {
		v.mu.Lock()
		delete(v.cache, sum)
		v.mu.Unlock()
	}
}
