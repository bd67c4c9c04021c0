package cli_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/auth"
)

var tokenLine = regexp.MustCompile(`^lp_[A-Za-z0-9_-]{43}\n$`)

// TestTokenCommands creates, lists, verifies and revokes tokens with the commands, and checks
// that a token is printed only by the create that made it: never by a listing, an error or a
// log, and never stored.
func TestTokenCommands(t *testing.T) {
	ctx := context.Background()
	s := newSite(t, goodConfig)
	var (
		tokens []string        // every token printed
		others strings.Builder // every other output
	)
	run := func(wantCode int, args ...string) result {
		t.Helper()
		res := s.run(append([]string{"--log-level", "debug"}, args...)...)
		if res.code != wantCode {
			t.Fatalf("labplane %s: want exit %d, got %s", strings.Join(args, " "), wantCode, res)
		}
		return res
	}
	create := func(name string) string {
		t.Helper()
		res := run(0, "token", "create", "--name", name)
		if !tokenLine.MatchString(res.out) {
			t.Fatalf("token create: stdout must be the token alone on its line, got %q", res.out)
		}
		if !strings.Contains(res.err, "will not be shown again") || !strings.Contains(res.err, name) {
			t.Errorf("token create: no note on stderr: %q", res.err)
		}
		others.WriteString(res.err)
		tok := strings.TrimSpace(res.out)
		tokens = append(tokens, tok)
		return tok
	}
	other := func(wantCode int, args ...string) result {
		t.Helper()
		res := run(wantCode, args...)
		others.WriteString(res.out + res.err)
		return res
	}
	verify := func(tok string) (string, error) {
		t.Helper()
		c, err := auth.NewVerifier(s.open(), time.Minute, nil).Verify(ctx, "Bearer "+tok)
		return c.Name, err
	}
	type listed struct {
		Name      string    `json:"name"`
		CreatedAt time.Time `json:"created_at"`
		RevokedAt time.Time `json:"revoked_at"`
	}
	list := func() []listed {
		t.Helper()
		res := other(0, "token", "list", "--output", "json")
		var got []listed
		if err := json.Unmarshal([]byte(res.out), &got); err != nil {
			t.Fatalf("token list json: %v\n%s", err, res.out)
		}
		return got
	}

	if res := other(0, "token", "list"); strings.TrimSpace(res.out) != "NAME  SCOPE  CREATED  REVOKED" {
		t.Errorf("empty list: %q", res.out)
	}
	if got := list(); len(got) != 0 {
		t.Errorf("empty list json: %+v", got)
	}

	before := time.Now().Add(-time.Second)
	lms := create("lms")
	res := run(0, "token", "create", "--name", "cron-job-2", "--scope", "read", "--output", "json")
	var made struct {
		Name      string    `json:"name"`
		Scope     string    `json:"scope"`
		Token     string    `json:"token"`
		CreatedAt time.Time `json:"created_at"`
	}
	if err := json.Unmarshal([]byte(res.out), &made); err != nil || made.Name != "cron-job-2" || made.Scope != "read" ||
		!tokenLine.MatchString(made.Token+"\n") || made.CreatedAt.Before(before) || made.CreatedAt.After(time.Now()) {
		t.Fatalf("token create json: %v %+v\n%s", err, made, res.out)
	}
	others.WriteString(res.err)
	tokens = append(tokens, made.Token)
	cron := made.Token

	// Both verify against the registry, as the API will check them.
	for tok, want := range map[string]string{lms: "lms", cron: "cron-job-2"} {
		if client, err := verify(tok); err != nil || client != want {
			t.Errorf("Verify = %q, %v; want %q", client, err, want)
		}
	}

	got := list()
	if len(got) != 2 || got[0].Name != "cron-job-2" || got[1].Name != "lms" || !got[1].RevokedAt.IsZero() ||
		got[1].CreatedAt.Before(before) {
		t.Errorf("token list json: %+v", got)
	}
	res = other(0, "token", "list")
	if !strings.Contains(res.out, "lms") || !strings.Contains(res.out, "cron-job-2") {
		t.Errorf("token list: %s", res)
	}

	// A second live token of a name is refused; nothing is printed or stored.
	res = other(2, "token", "create", "--name", "lms")
	if !strings.Contains(res.err, "revoke") || res.out != "" {
		t.Errorf("create twice: %s", res)
	}
	if got := list(); len(got) != 2 {
		t.Errorf("create twice stored a token: %+v", got)
	}

	// Revoked: listed as such, and it no longer verifies; the other one still does.
	res = other(0, "token", "revoke", "lms")
	if !strings.Contains(res.out, `revoked token "lms"`) {
		t.Errorf("revoke: %s", res)
	}
	if _, err := verify(lms); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("Verify(revoked) = %v; want ErrUnauthorized", err)
	}
	if client, err := verify(cron); err != nil || client != "cron-job-2" {
		t.Errorf("Verify(cron) after revoking lms = %q, %v", client, err)
	}
	got = list()
	if len(got) != 2 || got[1].Name != "lms" || got[1].RevokedAt.Before(got[1].CreatedAt) || !got[0].RevokedAt.IsZero() {
		t.Errorf("token list after revoke: %+v", got)
	}
	if res := other(0, "token", "list"); !regexp.MustCompile(`(?m)^lms +lms +\S+ \S+ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d *$`).MatchString(res.out) ||
		!regexp.MustCompile(`(?m)^cron-job-2 +read +\S+ \S+ +- *$`).MatchString(res.out) {
		t.Errorf("token list after revoke: %s", res.out)
	}
	other(2, "token", "revoke", "lms")  // no live token left
	other(2, "token", "revoke", "nope") // never was one

	// The name may have a new token; the revoked one stays revoked.
	lms2 := create("lms")
	if client, err := verify(lms2); err != nil || client != "lms" || lms2 == lms {
		t.Errorf("Verify(new lms) = %q, %v", client, err)
	}
	if _, err := verify(lms); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("Verify(old lms) = %v; want ErrUnauthorized", err)
	}
	if got := list(); len(got) != 3 {
		t.Errorf("token list after re-creating: %+v", got)
	}
	res = other(0, "token", "revoke", "cron-job-2", "--output", "json") // flags after the name
	var revoked struct {
		Name      string    `json:"name"`
		RevokedAt time.Time `json:"revoked_at"`
	}
	if err := json.Unmarshal([]byte(res.out), &revoked); err != nil || revoked.Name != "cron-job-2" || revoked.RevokedAt.Before(before) {
		t.Errorf("revoke json: %v %s", err, res)
	}

	// The audit trail: each creation and revocation, its scope, who ran it.
	res = other(0, "token", "log", "--output", "json")
	var log []struct{ Action, Name, Scope, Actor string }
	if err := json.Unmarshal([]byte(res.out), &log); err != nil {
		t.Fatalf("token log json: %v\n%s", err, res.out)
	}
	var trail []string
	for _, ev := range log {
		if !strings.HasPrefix(ev.Actor, "cli:") {
			t.Errorf("token log: %+v names no one", ev)
		}
		trail = append(trail, ev.Action+" "+ev.Name+" "+ev.Scope)
	}
	if want := "created lms lms,created cron-job-2 read,revoked lms lms,created lms lms,revoked cron-job-2 read"; strings.Join(trail, ",") != want {
		t.Errorf("token log: %s, want %s", strings.Join(trail, ","), want)
	}
	if res := other(0, "token", "log"); !strings.Contains(res.out, "AT") || !strings.Contains(res.out, "revoked  cron-job-2") {
		t.Errorf("token log: %s", res.out)
	}

	// No output but each token's own create shows a token, its hash, or part of either.
	stored, err := os.ReadFile(s.db)
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(s.db + "-wal")
	for _, tok := range tokens {
		hash := auth.Hash(tok)
		for _, secret := range []string{tok, tok[3:20], hex.EncodeToString(hash), base64.StdEncoding.EncodeToString(hash),
			base64.RawURLEncoding.EncodeToString(hash)} {
			if strings.Contains(others.String(), secret) {
				t.Errorf("a token or its hash was printed outside its create:\n%s", others.String())
			}
		}
		if strings.Contains(string(stored)+string(wal), tok[3:]) {
			t.Errorf("the token is stored in the database")
		}
	}
	if len(tokens) != 3 {
		t.Errorf("%d tokens printed, want 3", len(tokens))
	}
}

func TestTokenBadUsage(t *testing.T) {
	s := newSite(t, goodConfig)
	for _, tt := range []struct {
		name string
		args []string
		want string // on stderr
	}{
		{"create without --name", []string{"token", "create"}, "--name is required"},
		{"create with an argument", []string{"token", "create", "lms"}, "no arguments"},
		{"create upper case", []string{"token", "create", "--name", "LMS"}, `"LMS"`},
		{"create underscore", []string{"token", "create", "--name", "my_lms"}, `"my_lms"`},
		{"create space", []string{"token", "create", "--name", "my lms"}, `"my lms"`},
		{"create too long", []string{"token", "create", "--name", strings.Repeat("a", 64)}, "1 to 63"},
		{"create as yaml", []string{"token", "create", "--name", "lms", "-o", "yaml"}, `--output "yaml"`},
		{"create with an unknown scope", []string{"token", "create", "--name", "lms", "--scope", "admin"}, `--scope: scope "admin": use one of [read lms operator]`},
		{"log with an argument", []string{"token", "log", "lms"}, "no arguments"},
		{"list with an argument", []string{"token", "list", "lms"}, "no arguments"},
		{"list as yaml", []string{"token", "list", "--output", "yaml"}, `--output "yaml"`},
		{"revoke without a name", []string{"token", "revoke"}, "needs one token name"},
		{"revoke two names", []string{"token", "revoke", "a", "b"}, "needs one token name"},
		{"revoke a bad name", []string{"token", "revoke", "A_B"}, `"A_B"`},
		{"revoke unknown", []string{"token", "revoke", "nope"}, `no live token named "nope"`},
		{"revoke as yaml", []string{"token", "revoke", "lms", "-o", "yaml"}, `--output "yaml"`},
		{"unknown token command", []string{"token", "bogus"}, `"bogus"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := s.run(tt.args...)
			if res.code != 2 || !strings.Contains(res.err, tt.want) || res.out != "" {
				t.Fatalf("want exit 2, %q on stderr and nothing on stdout, got %s", tt.want, res)
			}
		})
	}
	// A name of 63 characters is fine; nothing above stored a token.
	toks, err := s.open().ListTokens(context.Background())
	if err != nil || len(toks) != 0 {
		t.Fatalf("tokens stored by bad usage: %v %+v", err, toks)
	}
	if res := s.run("token", "create", "--name", strings.Repeat("a", 63)); res.code != 0 {
		t.Errorf("63 characters: %s", res)
	}
	if res := runCLI("", false, "token", "--help"); res.code != 0 || !strings.Contains(res.out, "create") ||
		!strings.Contains(res.out, "list") || !strings.Contains(res.out, "revoke") {
		t.Errorf("token --help: %s", res)
	}
}
