package cli

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/labplane/labplane/internal/auth"
	"github.com/labplane/labplane/internal/labs"
	"github.com/labplane/labplane/internal/store"
)

// tokenNamePattern is what a token's name (the client it is for) may be.
var tokenNamePattern = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

func checkTokenName(name string) error {
	if !tokenNamePattern.MatchString(name) {
		return usageError("token name %q: use 1 to 63 lower-case letters, digits and dashes", name)
	}
	return nil
}

// tokenCreated is what token create prints with --output json: the only output that holds
// a token.
type tokenCreated struct {
	Name      string    `json:"name"`
	Scope     string    `json:"scope"`
	Token     string    `json:"token"`
	CreatedAt time.Time `json:"created_at"`
}

func tokenCommand(stdio IO) *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "create, list and revoke the bearer tokens of the API's clients (the LMS)",
		Description: "Each client of labplane serve gets a token of its own, named after it. labplane keeps only the\n" +
			"token's SHA-256: the token is printed once, by token create, and cannot be shown again. A token's\n" +
			"scope says what it may do: read (GET only), lms (launch, heartbeat, leave, resume and delete labs,\n" +
			"and read them: the LMS), operator (all that, and what an operator does by hand). Every creation and\n" +
			"revocation is recorded, with who ran it: token log.",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a token for a client and print it, once",
				UsageText: "labplane token create --name NAME [--scope read|lms|operator] [--output json]",
				Description: "The token alone goes to stdout (TOKEN=$(labplane token create --name lms) works); keep it now,\n" +
					"it will not be shown again. A name that has a live token is refused (exit 2): revoke that one first.",
				Flags: []cli.Flag{
					// required, checked in Action: urfave/cli's own check fails with exit 1
					&cli.StringFlag{Name: "name", Usage: "the client's name: 1 to 63 lower-case letters, digits and dashes (required)"},
					&cli.StringFlag{Name: "scope", Value: string(auth.ScopeLMS), Usage: "what the token may do: read, lms or operator"},
					outputFlag,
				},
				Action: func(c *cli.Context) error {
					out, err := output(c)
					if err != nil {
						return err
					}
					if c.NArg() > 0 {
						return usageError("token create takes no arguments (the name goes in --name)")
					}
					name := c.String("name")
					if name == "" {
						return usageError("--name is required (see labplane token create --help)")
					}
					if err := checkTokenName(name); err != nil {
						return err
					}
					scope, err := auth.ParseScope(c.String("scope"))
					if err != nil {
						return usageError("--scope: %v", err)
					}
					e, err := openEnv(c, stdio, false)
					if err != nil {
						return err
					}
					defer e.Close()
					plain, hash := auth.NewToken()
					now := e.now().UTC().Truncate(time.Microsecond)
					if err := e.store.CreateToken(c.Context, store.Token{Name: name, Scope: string(scope), CreatedAt: now}, hash, actor()); err != nil {
						if errors.Is(err, store.ErrTokenExists) {
							return badInput{fmt.Errorf("%w: revoke it first (labplane token revoke %s)", err, name)}
						}
						return err
					}
					if out == "json" {
						return writeJSON(stdio.Out, tokenCreated{Name: name, Scope: string(scope), Token: plain, CreatedAt: now})
					}
					if _, err := fmt.Fprintln(stdio.Out, plain); err != nil {
						return err
					}
					_, err = fmt.Fprintf(stdio.Err, "created token %q (scope %s): keep it now, it will not be shown again\n", name, scope)
					return err
				},
			},
			tokenListing(stdio, "list", "list the tokens, live and revoked (their names, scopes and dates; never a token)",
				(*store.Store).ListTokens, "NAME\tSCOPE\tCREATED\tREVOKED", func(t store.Token) []string {
					return []string{t.Name, t.Scope, timeOrDash(t.CreatedAt), timeOrDash(t.RevokedAt)}
				}),
			{
				Name:      "revoke",
				Usage:     "revoke a client's live token (the API's replicas stop taking it within serve.token_cache)",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{outputFlag},
				Action: func(c *cli.Context) error {
					name, out, err := tokenNameArg(c)
					if err != nil {
						return err
					}
					e, err := openEnv(c, stdio, false)
					if err != nil {
						return err
					}
					defer e.Close()
					now := e.now().UTC().Truncate(time.Microsecond)
					if err := e.store.RevokeToken(c.Context, name, now, actor()); err != nil {
						if errors.Is(err, labs.ErrNotFound) {
							return usageError("no live token named %q (see labplane token list)", name)
						}
						return err
					}
					if out == "json" {
						return writeJSON(stdio.Out, map[string]any{"name": name, "revoked_at": now})
					}
					_, err = fmt.Fprintf(stdio.Out, "revoked token %q\n", name)
					return err
				},
			},
			tokenListing(stdio, "log", "the tokens' audit trail: every creation and revocation, with its scope and who ran it",
				(*store.Store).TokenLog, "AT\tACTION\tNAME\tSCOPE\tBY", func(ev store.TokenEvent) []string {
					return []string{timeOrDash(ev.At), ev.Action, ev.Name, ev.Scope, ev.Actor}
				}),
		},
	}
}

// tokenListing is a token subcommand that prints what read returns: a table of row's columns
// under header, or the list as JSON.
func tokenListing[T any](stdio IO, name, usage string, read func(*store.Store, context.Context) ([]T, error),
	header string, row func(T) []string) *cli.Command {
	return &cli.Command{
		Name:  name,
		Usage: usage,
		Flags: []cli.Flag{outputFlag},
		Action: func(c *cli.Context) error {
			out, err := output(c)
			if err != nil {
				return err
			}
			if c.NArg() > 0 {
				return usageError("token %s takes no arguments", name)
			}
			e, err := openEnv(c, stdio, false)
			if err != nil {
				return err
			}
			defer e.Close()
			items, err := read(e.store, c.Context)
			if err != nil {
				return err
			}
			if out == "json" {
				return writeJSON(stdio.Out, nonNil(items))
			}
			rows := make([][]string, len(items))
			for i, it := range items {
				rows[i] = row(it)
			}
			return table(stdio.Out, header, rows)
		},
	}
}

// tokenNameArg reads the one NAME argument (flags may follow it) and --output.
func tokenNameArg(c *cli.Context) (name, out string, err error) {
	if name, out, err = oneArg(c, "one token name (see labplane token list)"); err != nil {
		return "", "", err
	}
	return name, out, checkTokenName(name)
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
