package auth_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/auth"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/store"
)

// fakeStore is a TokenStore that counts its lookups.
type fakeStore struct {
	mu     sync.Mutex
	tokens map[string]store.Token // by string(hash), live ones only
	err    error
	calls  atomic.Int64
}

func newFakeStore() *fakeStore { return &fakeStore{tokens: map[string]store.Token{}} }

func (f *fakeStore) TokenByHash(_ context.Context, hash []byte) (store.Token, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return store.Token{}, f.err
	}
	t, ok := f.tokens[string(hash)]
	if !ok {
		return store.Token{}, fmt.Errorf("token by hash: %w", labs.ErrNotFound)
	}
	return t, nil
}

// add makes a token for name and stores its hash.
func (f *fakeStore) add(name string) string {
	plain, hash := auth.NewToken()
	f.mu.Lock()
	f.tokens[string(hash)] = store.Token{Name: name, CreatedAt: time.Now()}
	f.mu.Unlock()
	return plain
}

func (f *fakeStore) revoke(plain string) {
	f.mu.Lock()
	delete(f.tokens, string(auth.Hash(plain)))
	f.mu.Unlock()
}

// clock is a settable clock, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

var tokenPattern = regexp.MustCompile(`^lp_[A-Za-z0-9_-]{43}$`)

// Each scope may do what the ones before it may: read < lms < operator; no scope allows an
// unknown one.
func TestScopes(t *testing.T) {
	for _, c := range []struct {
		have, need auth.Scope
		ok         bool
	}{
		{auth.ScopeRead, auth.ScopeRead, true}, {auth.ScopeRead, auth.ScopeLMS, false}, {auth.ScopeRead, auth.ScopeOperator, false},
		{auth.ScopeLMS, auth.ScopeRead, true}, {auth.ScopeLMS, auth.ScopeLMS, true}, {auth.ScopeLMS, auth.ScopeOperator, false},
		{auth.ScopeOperator, auth.ScopeLMS, true}, {auth.ScopeOperator, "root", false}, {"", auth.ScopeRead, false},
	} {
		if got := c.have.Allows(c.need); got != c.ok {
			t.Errorf("%q allows %q: %v, want %v", c.have, c.need, got, c.ok)
		}
	}
	if s, err := auth.ParseScope("operator"); err != nil || s != auth.ScopeOperator {
		t.Errorf("ParseScope(operator) = %q, %v", s, err)
	}
	if _, err := auth.ParseScope("admin"); err == nil || !strings.Contains(err.Error(), "[read lms operator]") {
		t.Errorf("ParseScope(admin) = %v; want the scopes named", err)
	}
}

func TestNewToken(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		plain, hash := auth.NewToken()
		if !tokenPattern.MatchString(plain) {
			t.Fatalf("token %q is not lp_ and 43 base64url characters", plain)
		}
		if seen[plain] {
			t.Fatalf("token %q made twice", plain)
		}
		seen[plain] = true
		sum := sha256.Sum256([]byte(plain))
		if !bytes.Equal(hash, sum[:]) || !bytes.Equal(auth.Hash(plain), sum[:]) {
			t.Fatalf("hash of %q is not its SHA-256", plain)
		}
	}
}

func TestVerify(t *testing.T) {
	ctx := t.Context()
	fs := newFakeStore()
	lms := fs.add("lms")
	v := auth.NewVerifier(fs, time.Minute, newClock().now)

	client, err := v.Verify(ctx, "Bearer "+lms)
	if err != nil || client.Name != "lms" {
		t.Fatalf("Verify(valid) = %q, %v; want lms", client, err)
	}

	unknown, _ := auth.NewToken()
	before := fs.calls.Load()
	for _, h := range []string{
		"",
		lms,                    // no scheme
		"Basic " + lms,         // another scheme
		"bearer " + lms,        // not exactly Bearer
		"Token " + lms,         //
		"Bearer",               // no token
		"Bearer ",              //
		"Bearer  " + lms,       // two spaces
		"Bearer " + lms + " ",  // trailing space
		"Bearer " + lms + " x", // more after the token
		"Bearer " + lms[:len(lms)-1],
		"Bearer " + lms + "A",
		"Bearer " + strings.Replace(lms, "lp_", "xx_", 1),
		"Bearer " + lms[:10] + "!" + lms[11:],
	} {
		client, err := v.Verify(ctx, h)
		if !errors.Is(err, auth.ErrUnauthorized) || client.Name != "" {
			t.Errorf("Verify(%q) = %q, %v; want ErrUnauthorized", h, client, err)
		}
		if err != nil && strings.Contains(err.Error(), lms[len(auth.Prefix):len(auth.Prefix)+8]) {
			t.Errorf("Verify(%q): the error shows the token: %v", h, err)
		}
	}
	if n := fs.calls.Load() - before; n != 0 {
		t.Errorf("malformed headers made %d store lookups, want 0", n)
	}

	client, err = v.Verify(ctx, "Bearer "+unknown)
	if !errors.Is(err, auth.ErrUnauthorized) || client.Name != "" || strings.Contains(err.Error(), unknown[3:]) {
		t.Errorf("Verify(unknown) = %q, %v; want ErrUnauthorized without the token", client, err)
	}
	if n := fs.calls.Load() - before; n != 1 {
		t.Errorf("an unknown token made %d store lookups, want 1", n)
	}
}

func TestVerifyCachesForTTL(t *testing.T) {
	ctx := t.Context()
	fs := newFakeStore()
	lms, cron := fs.add("lms"), fs.add("cron")
	clk := newClock()
	const ttl = 5 * time.Second
	v := auth.NewVerifier(fs, ttl, clk.now)

	verify := func(plain, want string) {
		t.Helper()
		client, err := v.Verify(ctx, "Bearer "+plain)
		if want == "" {
			if !errors.Is(err, auth.ErrUnauthorized) {
				t.Fatalf("Verify = %q, %v; want ErrUnauthorized", client, err)
			}
			return
		}
		if err != nil || client.Name != want {
			t.Fatalf("Verify = %q, %v; want %q", client, err, want)
		}
	}
	calls := func(want int64) {
		t.Helper()
		if got := fs.calls.Load(); got != want {
			t.Fatalf("%d store lookups, want %d", got, want)
		}
	}

	for range 1000 {
		verify(lms, "lms")
	}
	calls(1) // the first one; the others were cache hits
	verify(cron, "cron")
	calls(2) // each token is cached on its own

	// Revoked: it keeps working from the cache until ttl has passed since it was looked up...
	fs.revoke(lms)
	clk.advance(ttl - time.Millisecond)
	verify(lms, "lms")
	calls(2)
	// ...and then fails, for good.
	clk.advance(time.Millisecond)
	verify(lms, "")
	calls(3)
	verify(lms, "")
	calls(4) // failures are not cached
	// A live token found again is cached again.
	verify(cron, "cron")
	verify(cron, "cron")
	calls(5)

	// With no ttl, every request asks the store.
	nocache := auth.NewVerifier(fs, 0, clk.now)
	for range 3 {
		if client, err := nocache.Verify(ctx, "Bearer "+cron); err != nil || client.Name != "cron" {
			t.Fatalf("no cache: %q, %v", client, err)
		}
	}
	calls(8)
}

func TestVerifyStoreDown(t *testing.T) {
	fs := newFakeStore()
	lms := fs.add("lms")
	fs.err = errors.New("connection refused")
	v := auth.NewVerifier(fs, time.Minute, nil)
	client, err := v.Verify(t.Context(), "Bearer "+lms)
	if err == nil || errors.Is(err, auth.ErrUnauthorized) || client.Name != "" {
		t.Fatalf("Verify with the store down = %q, %v; want an error that is not ErrUnauthorized", client, err)
	}
	if !strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), lms[3:]) {
		t.Errorf("error %q: want the cause, without the token", err)
	}
	fs.err = nil
	if client, err := v.Verify(t.Context(), "Bearer "+lms); err != nil || client.Name != "lms" {
		t.Errorf("after the store came back: %q, %v", client, err)
	}
}

// Many goroutines verify valid, unknown and revoked tokens while the clock moves and
// tokens are revoked: run with -race.
func TestVerifyConcurrent(t *testing.T) {
	fs := newFakeStore()
	clk := newClock()
	v := auth.NewVerifier(fs, time.Second, clk.now)
	const clients = 5
	valid := make([]string, clients)
	for i := range valid {
		valid[i] = fs.add(fmt.Sprintf("client-%d", i))
	}
	doomed := fs.add("doomed")
	unknown, _ := auth.NewToken()

	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 300 {
				k := (g + i) % clients
				if client, err := v.Verify(t.Context(), "Bearer "+valid[k]); err != nil || client.Name != fmt.Sprintf("client-%d", k) {
					t.Errorf("valid token %d: %q, %v", k, client, err)
					return
				}
				if _, err := v.Verify(t.Context(), "Bearer "+unknown); !errors.Is(err, auth.ErrUnauthorized) {
					t.Errorf("unknown token: %v", err)
					return
				}
				// before its revocation, or within ttl of it: valid; after: unauthorized
				if client, err := v.Verify(t.Context(), "Bearer "+doomed); (err == nil && client.Name != "doomed") ||
					(err != nil && !errors.Is(err, auth.ErrUnauthorized)) {
					t.Errorf("doomed token: %q, %v", client, err)
					return
				}
				if g == 0 {
					clk.advance(10 * time.Millisecond)
				}
			}
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(time.Millisecond)
		fs.revoke(doomed)
	}()
	wg.Wait()
	clk.advance(2 * time.Second)
	if _, err := v.Verify(t.Context(), "Bearer "+doomed); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("revoked token still verifies after ttl: %v", err)
	}
	t.Logf("%d store lookups for %d verifications", fs.calls.Load(), 32*300*3)
}

// Against the real registry: a token created there verifies; revoked, it does not.
func TestVerifyWithStore(t *testing.T) {
	ctx := t.Context()
	st, err := store.Open(ctx, store.SQLite, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	plain, hash := auth.NewToken()
	if err := st.CreateToken(ctx, store.Token{Name: "lms", Scope: string(auth.ScopeRead), CreatedAt: time.Now()}, hash, "test"); err != nil {
		t.Fatal(err)
	}
	v := auth.NewVerifier(st, 0, nil)
	if client, err := v.Verify(ctx, "Bearer "+plain); err != nil || client != (auth.Client{Name: "lms", Scope: auth.ScopeRead}) {
		t.Fatalf("Verify = %+v, %v; want lms with its scope, read", client, err)
	}
	if err := st.RevokeToken(ctx, "lms", time.Now(), "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, "Bearer "+plain); !errors.Is(err, auth.ErrUnauthorized) {
		t.Fatalf("Verify(revoked) = %v; want ErrUnauthorized", err)
	}
}
