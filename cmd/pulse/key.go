package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pulsefaas/pulse/contract"
)

// Invoke keys (issue 12, point 2). The CLI makes or takes a key and sends
// pulsed only its SHA-256 (contract.KeyDigest); pulsed keeps the digests
// and the gateway asks every request of a function that has keys for one
// of them, as "Authorization: Bearer KEY".

// Key syntax: what a bearer token may hold (RFC 6750's b64token), so that
// the key is exactly the bytes after "Bearer " on the wire.
const (
	minKeyLen = 16  // a guessable key protects nothing
	maxKeyLen = 512 // well inside HAProxy's header buffer
	// keyBytes is the entropy of a generated key: 32 random bytes, 43
	// characters of URL-safe base64 without padding.
	keyBytes = 32
)

// parseKey reads a key given by the user (--from-file, --stdin, --key-file,
// PULSE_KEY): the text without surrounding white space (a trailing newline
// is usual), 16 to 512 characters of letters, digits and - . _ ~ + /,
// optionally ending in '='.
func parseKey(b []byte) (string, error) {
	k := string(b)
	for len(k) > 0 && isSpace(k[len(k)-1]) {
		k = k[:len(k)-1]
	}
	for len(k) > 0 && isSpace(k[0]) {
		k = k[1:]
	}
	if len(k) < minKeyLen || len(k) > maxKeyLen {
		return "", fmt.Errorf("the key has %d characters: want %d to %d (pulse key add makes one of 43)", len(k), minKeyLen, maxKeyLen)
	}
	pad := false
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '=':
			pad = true
		case pad:
			return "", fmt.Errorf("the key has %q after '=' at character %d: '=' may only end it", c, i+1)
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		case isSpace(c):
			return "", fmt.Errorf("the key has white space at character %d: want one word (one key per file)", i+1)
		case c >= 0x80:
			return "", fmt.Errorf("the key has a non-ASCII character at byte %d: want letters, digits and - . _ ~ + / (a bearer token)", i+1)
		default:
			return "", fmt.Errorf("the key has %q at character %d: want letters, digits and - . _ ~ + / (a bearer token)", c, i+1)
		}
	}
	if k[0] == '=' {
		return "", fmt.Errorf("the key starts with '='")
	}
	return k, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// newKey returns a random key.
func newKey() (string, error) {
	b := make([]byte, keyBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random key: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func (a *app) keyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage functions' invoke keys (pulsed's key store)",
		Long: `A function with keys answers only requests that carry one of them as
"Authorization: Bearer KEY" (pulse invoke: PULSE_KEY or --key-file); the gateway answers 401
otherwise and never passes the key on to the function. pulsed keeps only each key's SHA-256.
Rotate by adding the new key, switching the callers, then removing the old one: no restart.

These commands use pulsed's management API (config key api), with the token in token_file
(default ` + contract.DefaultAPITokenFile + `, root's).`,
		Example: "  KEY=$(pulse key add hello --id ci)\n  pulse key ls\n  pulse key rm hello ci",
	}
	return withSubcommands(cmd, a.keyAddCmd(), a.keyLsCmd(), a.keyRmCmd())
}

func (a *app) keyAddCmd() *cobra.Command {
	var (
		id       string
		fromFile string
		stdin    bool
	)
	cmd := &cobra.Command{
		Use:   "add FUNCTION",
		Short: "Add an invoke key to a function",
		Long: `Add an invoke key to FUNCTION: a new random one (32 bytes, URL-safe base64), printed
once on stdout and nowhere else, or your own from --from-file or --stdin (16 to 512
characters of letters, digits and - . _ ~ + /, optionally ending in '='), which is not
printed. Only the key's SHA-256 is sent to pulsed. --id names the key for ls and rm
(pulsed picks one otherwise). The function needs not be deployed yet.`,
		Example:           "  KEY=$(pulse key add hello --id ci)\n  pulse key add hello --id rotated --from-file new.key\n  openssl rand -hex 32 | pulse key add hello --stdin",
		Args:              exactArgs(1, "FUNCTION"),
		ValidArgsFunction: a.completeFunctions,
		RunE: func(cmd *cobra.Command, args []string) error {
			fn := args[0]
			if msg := contract.FunctionNameProblem(fn); msg != "" {
				return usagef("FUNCTION %q: %s", fn, msg)
			}
			if id != "" {
				if msg := contract.KeyIDProblem(id); msg != "" {
					return usagef("--id %q: %s", id, msg)
				}
			}
			if fromFile != "" && stdin {
				return usagef("--from-file and --stdin both give the key: use one")
			}
			var key string
			generated := false
			switch {
			case fromFile != "":
				b, err := os.ReadFile(fromFile)
				if err != nil {
					return usagef("--from-file: %v", err)
				}
				if key, err = parseKey(b); err != nil {
					return usagef("--from-file %s: %v", fromFile, err)
				}
			case stdin:
				b, err := io.ReadAll(io.LimitReader(a.in, maxKeyLen+1024))
				if err != nil {
					return fmt.Errorf("--stdin: %w", err)
				}
				if key, err = parseKey(b); err != nil {
					return usagef("--stdin: %v", err)
				}
			default:
				k, err := newKey()
				if err != nil {
					return err
				}
				key, generated = k, true
			}
			api, err := a.api()
			if err != nil {
				return err
			}
			var info contract.KeyInfo
			if err := api.do(cmd.Context(), http.MethodPost, contract.KeysPath+url.PathEscape(fn),
				contract.KeyAdd{ID: id, SHA256: contract.KeyDigest(key)}, &info); err != nil {
				return fmt.Errorf("key add %s: %w", fn, err)
			}
			if generated {
				fmt.Fprintln(a.out, key)
			}
			fmt.Fprintf(a.err, "%s: key %s added; callers send it as \"Authorization: Bearer KEY\" (pulse invoke: PULSE_KEY or --key-file)\n", fn, info.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the key's name for ls and rm (1-32 letters, digits, '-', '_'); default: pulsed picks one")
	cmd.Flags().StringVar(&fromFile, "from-file", "", "take the key from this file instead of making one")
	cmd.Flags().BoolVar(&stdin, "stdin", false, "take the key from stdin instead of making one")
	return cmd
}

func (a *app) keyLsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "ls [FUNCTION]",
		Aliases:           []string{"list"},
		Short:             "List invoke keys: every function's, or one's",
		Example:           "  pulse key ls\n  pulse key ls hello --json",
		Args:              maxArgs(1, "at most FUNCTION"),
		ValidArgsFunction: a.completeFunctions,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := contract.KeysPath
			if len(args) == 1 {
				if msg := contract.FunctionNameProblem(args[0]); msg != "" {
					return usagef("FUNCTION %q: %s", args[0], msg)
				}
				path += url.PathEscape(args[0])
			}
			api, err := a.api()
			if err != nil {
				return err
			}
			keys := []contract.KeyInfo{}
			if err := api.do(cmd.Context(), http.MethodGet, path, nil, &keys); err != nil {
				return fmt.Errorf("key ls: %w", err)
			}
			if asJSON {
				return a.printJSON(keys)
			}
			if len(keys) == 0 {
				fmt.Fprintln(a.err, "no keys")
				return nil
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FUNCTION\tID\tCREATED")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", sanitize(k.Function, 63), sanitize(k.ID, 32), sanitize(k.Created, 40))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) keyRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "rm FUNCTION ID",
		Aliases:           []string{"remove"},
		Short:             "Remove an invoke key: the gateway refuses it at once",
		Example:           "  pulse key rm hello ci",
		Args:              exactArgs(2, "FUNCTION and ID"),
		ValidArgsFunction: a.completeFunctions,
		RunE: func(cmd *cobra.Command, args []string) error {
			fn, id := args[0], args[1]
			if msg := contract.FunctionNameProblem(fn); msg != "" {
				return usagef("FUNCTION %q: %s", fn, msg)
			}
			if msg := contract.KeyIDProblem(id); msg != "" {
				return usagef("ID %q: %s", id, msg)
			}
			api, err := a.api()
			if err != nil {
				return err
			}
			if err := api.do(cmd.Context(), http.MethodDelete, contract.KeysPath+url.PathEscape(fn)+"/"+url.PathEscape(id), nil, nil); err != nil {
				return fmt.Errorf("key rm %s %s: %w", fn, id, err)
			}
			fmt.Fprintf(a.out, "%s: key %s removed\n", fn, id)
			return nil
		},
	}
}
