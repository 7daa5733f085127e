package provision

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// fixture is a test server that accepts the fixture's key, and a Config
// with that key, no agent and a known_hosts in a directory that does not
// exist yet.
type fixture struct {
	srv *testServer
	cfg Config
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	priv, _ := newKey(t)
	return newFixtureKey(t, priv)
}

// newFixtureKey is newFixture with the user key priv.
func newFixtureKey(t *testing.T, priv ed25519.PrivateKey) fixture {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "") // never the developer's agent
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, signer.PublicKey())
	return fixture{srv: srv, cfg: Config{
		IdentityFiles: []string{writeKey(t, priv, "")},
		KnownHosts:    filepath.Join(t.TempDir(), "ssh", "known_hosts"),
		DialTimeout:   10 * time.Second,
	}}
}

// knownLine is the known_hosts line for the fixture's server.
func (f fixture) knownLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(f.srv.target().Addr())}, f.srv.hostKey.PublicKey()) + "\n"
}

func (f fixture) dial(t *testing.T, cfg Config) (*Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg, f.srv.target())
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func wantContains(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func TestDialUnknownHostRefused(t *testing.T) {
	f := newFixture(t)
	_, err := f.dial(t, f.cfg)
	if !errors.Is(err, ErrUnknownHost) {
		t.Fatalf("err = %v, want ErrUnknownHost", err)
	}
	t.Log(err)
	wantContains(t, err, "[127.0.0.1]:", ssh.FingerprintSHA256(f.srv.hostKey.PublicKey()), "--accept-new-host-key", f.cfg.KnownHosts)
	if _, err := os.Stat(f.cfg.KnownHosts); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("known_hosts written after a refusal: %v", err)
	}
}

func TestDialAcceptNewHostKey(t *testing.T) {
	f := newFixture(t)
	accept := f.cfg
	accept.AcceptNewHostKey = true
	c, err := f.dial(t, accept)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got, want := readFile(t, f.cfg.KnownHosts), f.knownLine(); got != want {
		t.Errorf("known_hosts = %q, want %q", got, want)
	}
	for p, mode := range map[string]os.FileMode{f.cfg.KnownHosts: 0o600, filepath.Dir(f.cfg.KnownHosts): 0o700 | os.ModeDir} {
		if st, err := os.Stat(p); err != nil || st.Mode() != mode {
			t.Errorf("%s: mode %v (%v), want %v", p, st.Mode(), err, mode)
		}
	}
	// Known now: the second dial needs no flag, and appends nothing.
	c, err = f.dial(t, f.cfg)
	if err != nil {
		t.Fatalf("second dial without the flag: %v", err)
	}
	out, err := c.Run(context.Background(), "hostname", nil)
	if err != nil || string(out) != "testhost\n" {
		t.Errorf("Run(hostname) = %q, %v", out, err)
	}
	if got, want := readFile(t, f.cfg.KnownHosts), f.knownLine(); got != want {
		t.Errorf("known_hosts after the second dial = %q, want %q", got, want)
	}
}

func TestDialPrompt(t *testing.T) {
	for _, tc := range []struct {
		name      string
		answer    bool
		answerErr error
		wantErr   error
	}{
		{name: "yes", answer: true},
		{name: "no", answer: false, wantErr: ErrUnknownHost},
		{name: "prompt fails", answerErr: errors.New("no terminal"), wantErr: errors.New("no terminal")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			var asked []NewHostKey
			cfg := f.cfg
			cfg.Prompt = func(q NewHostKey) (bool, error) {
				asked = append(asked, q)
				return tc.answer, tc.answerErr
			}
			_, err := f.dial(t, cfg)
			want := []NewHostKey{{
				Host:        knownhosts.Normalize(f.srv.target().Addr()),
				KeyType:     ssh.KeyAlgoED25519,
				Fingerprint: ssh.FingerprintSHA256(f.srv.hostKey.PublicKey()),
			}}
			if fmt.Sprint(asked) != fmt.Sprint(want) {
				t.Errorf("asked %+v, want %+v", asked, want)
			}
			wantFile := ""
			switch {
			case tc.wantErr == nil:
				if err != nil {
					t.Fatal(err)
				}
				wantFile = f.knownLine()
			case errors.Is(tc.wantErr, ErrUnknownHost):
				if !errors.Is(err, ErrUnknownHost) {
					t.Errorf("err = %v, want ErrUnknownHost", err)
				}
			default:
				wantContains(t, err, tc.wantErr.Error())
			}
			if got := readFile(t, f.cfg.KnownHosts); got != wantFile {
				t.Errorf("known_hosts = %q, want %q", got, wantFile)
			}
		})
	}
}

func TestDialChangedHostKeyRefused(t *testing.T) {
	f := newFixture(t)
	_, old := newKey(t)
	_, other := newKey(t)
	host := knownhosts.Normalize(f.srv.target().Addr())
	content := knownhosts.Line([]string{"other.example"}, other.PublicKey()) + "\n" +
		knownhosts.Line([]string{host}, old.PublicKey()) + "\n"
	if err := os.MkdirAll(filepath.Dir(f.cfg.KnownHosts), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.cfg.KnownHosts, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := f.cfg
	cfg.AcceptNewHostKey = true
	cfg.Prompt = func(NewHostKey) (bool, error) {
		t.Error("asked about a changed key")
		return true, nil
	}
	_, err := f.dial(t, cfg)
	if !errors.Is(err, ErrHostKeyChanged) {
		t.Fatalf("err = %v, want ErrHostKeyChanged", err)
	}
	t.Log(err)
	wantContains(t, err, "REMOTE HOST IDENTIFICATION HAS CHANGED", host,
		f.cfg.KnownHosts+":2", ssh.FingerprintSHA256(f.srv.hostKey.PublicKey()), ssh.FingerprintSHA256(old.PublicKey()))
	if got := readFile(t, f.cfg.KnownHosts); got != content {
		t.Errorf("known_hosts changed to %q", got)
	}
}

func TestDialAuthFailure(t *testing.T) {
	f := newFixture(t)
	if err := os.MkdirAll(filepath.Dir(f.cfg.KnownHosts), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.cfg.KnownHosts, []byte(f.knownLine()), 0o600); err != nil {
		t.Fatal(err)
	}
	strange, _ := newKey(t)
	cfg := f.cfg
	cfg.IdentityFiles = []string{writeKey(t, strange, "")}
	_, err := f.dial(t, cfg)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	t.Log(err)
	wantContains(t, err, `user "pulse"`, "127.0.0.1", "no SSH agent", cfg.IdentityFiles[0], "publickey")
}

// TestDialEncryptedKey: an encrypted key is used through the agent that
// holds it (a real agent protocol server on a socket); without the agent,
// the error says to load it there.
func TestDialEncryptedKey(t *testing.T) {
	priv, _ := newKey(t)
	f := newFixtureKey(t, priv)
	cfg := f.cfg
	cfg.AcceptNewHostKey = true
	cfg.IdentityFiles = []string{writeKey(t, priv, "secret")}

	_, err := f.dial(t, cfg)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("without the agent: err = %v, want ErrAuth", err)
	}
	t.Log(err)
	wantContains(t, err, cfg.IdentityFiles[0]+" is encrypted", "ssh-add "+cfg.IdentityFiles[0])

	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); agent.ServeAgent(keyring, c) }()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
	c, err := f.dial(t, cfg)
	if err != nil {
		t.Fatalf("with the key in the agent: %v", err)
	}
	if out, err := c.Run(context.Background(), "hostname", nil); err != nil || string(out) != "testhost\n" {
		t.Errorf("Run(hostname) = %q, %v", out, err)
	}
}

// TestDialTimeout: a server that accepts TCP but never speaks SSH.
func TestDialTimeout(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	priv, _ := newKey(t)
	cfg := Config{IdentityFiles: []string{writeKey(t, priv, "")}, KnownHosts: filepath.Join(t.TempDir(), "known_hosts"), DialTimeout: 300 * time.Millisecond}
	start := time.Now()
	_, err = Dial(context.Background(), cfg, Target{User: "u", Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Dial returned after %v, want about 300ms", d)
	}
}

// connected is a client of the fixture's server.
func connected(t *testing.T) (fixture, *Client) {
	t.Helper()
	f := newFixture(t)
	cfg := f.cfg
	cfg.AcceptNewHostKey = true
	c, err := f.dial(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func TestRun(t *testing.T) {
	_, c := connected(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	out, err := c.Run(ctx, "cat", strings.NewReader("through stdin\n"))
	if err != nil || string(out) != "through stdin\n" {
		t.Errorf("Run(cat) = %q, %v", out, err)
	}

	out, err = c.Run(ctx, "fail", nil)
	var exit *ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("Run(fail) err = %v, want an ExitError", err)
	}
	want := ExitError{Status: 3, Stderr: "line 6\nline 7\nline 8\nline 9\nline 10\nline 11\nline 12\nline 13\nline 14\nline 15"}
	if *exit != want {
		t.Errorf("ExitError = %+v, want %+v", *exit, want)
	}
	wantContains(t, err, `run "fail" on 127.0.0.1: exit status 3: line 6`)
	if out != nil {
		t.Errorf("stdout of a failed command = %q, want nil", out)
	}
}

// TestRunConnectionDropped: the server closes the channel, or the whole
// connection, mid-command: Run returns an error, it does not hang.
func TestRunConnectionDropped(t *testing.T) {
	for _, cmd := range []string{"drop", "dropconn"} {
		t.Run(cmd, func(t *testing.T) {
			_, c := connected(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := c.Run(ctx, cmd, nil)
			if err == nil || ctx.Err() != nil {
				t.Fatalf("err = %v (ctx %v), want an error before the deadline", err, ctx.Err())
			}
			t.Log(err)
			wantContains(t, err, "closed before the command exited")
		})
	}
}

func TestRunCancel(t *testing.T) {
	f, c := connected(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-f.srv.started // the command runs
		cancel()
	}()
	start := time.Now()
	_, err := c.Run(ctx, "hang", nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run returned %v after the cancel, want promptly", d)
	}
	// The connection still works.
	if out, err := c.Run(context.Background(), "hostname", nil); err != nil || string(out) != "testhost\n" {
		t.Errorf("Run after a cancel = %q, %v", out, err)
	}
}

// TestEngineNoDocker: a node without docker fails Engine with dial-stdio's
// own error, not a bare EOF.
func TestEngineNoDocker(t *testing.T) {
	_, c := connected(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli, err := c.Engine(ctx)
	if err == nil {
		cli.Close()
		t.Fatal("Engine succeeded against a node without docker")
	}
	t.Log(err)
	wantContains(t, err, "ping the engine", "docker system dial-stdio", "exit status 127", "docker: not found")
}

// TestHostKeyRecheck: the callback runs again at each key re-exchange; the
// key accepted first passes without asking or appending again, another is
// refused.
func TestHostKeyRecheck(t *testing.T) {
	kh := filepath.Join(t.TempDir(), "known_hosts")
	asked := 0
	hk, err := newHostKeys(Config{KnownHosts: kh, Prompt: func(NewHostKey) (bool, error) { asked++; return true, nil }})
	if err != nil {
		t.Fatal(err)
	}
	_, key := newKey(t)
	_, other := newKey(t)
	remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 22}
	for i := range 2 {
		if err := hk.check("192.0.2.1:22", remote, key.PublicKey()); err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
	}
	if err := hk.check("192.0.2.1:22", remote, other.PublicKey()); !errors.Is(err, ErrHostKeyChanged) {
		t.Errorf("another key at a re-exchange: err = %v, want ErrHostKeyChanged", err)
	}
	want := knownhosts.Line([]string{"192.0.2.1"}, key.PublicKey()) + "\n"
	if got := readFile(t, kh); got != want || asked != 1 {
		t.Errorf("known_hosts = %q after %d prompts, want %q after 1", got, asked, want)
	}
}

// TestDialPromptOutlastsTimeout: a person may take longer to answer than
// the dial's timeout, which bounds the network, not them.
func TestDialPromptOutlastsTimeout(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.DialTimeout = 200 * time.Millisecond
	cfg.Prompt = func(NewHostKey) (bool, error) {
		time.Sleep(3 * cfg.DialTimeout) // the slow person is the point here
		return true, nil
	}
	c, err := f.dial(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.Run(context.Background(), "hostname", nil); err != nil || string(out) != "testhost\n" {
		t.Errorf("Run(hostname) = %q, %v", out, err)
	}
}
