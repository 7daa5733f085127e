package provision

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// silentServer accepts one SSH connection, then stops reading it after the
// handshake: like a node that froze, it answers nothing more (its kernel
// still holds the TCP connection).
func silentServer(t *testing.T, authorized ssh.PublicKey) (addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	_, hostSigner := newKey(t)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(authorized.Marshal()) {
			return nil, nil
		}
		return nil, ErrAuth
	}}
	cfg.AddHostKey(hostSigner)
	frozen := make(chan struct{})
	t.Cleanup(func() { close(frozen) })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, _, _, err := ssh.NewServerConn(conn, cfg); err != nil {
			return
		}
		// Neither the requests nor the channels are served: the
		// connection's reader blocks on them, as a frozen peer's would.
		<-frozen
	}()
	return ln.Addr().String()
}

// TestKeepAliveClosesFrozenPeer: a connection whose peer stops answering is
// closed after the keepalive timeout, and Wait says why; a session opened
// on it fails instead of hanging.
func TestKeepAliveClosesFrozenPeer(t *testing.T) {
	priv, signer := newKey(t)
	addr := silentServer(t, signer.PublicKey())
	host, port, _ := net.SplitHostPort(addr)
	tgt, err := ParseTarget("root@" + net.JoinHostPort(host, port))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{IdentityFiles: []string{writeKey(t, priv, "")}, KnownHosts: filepath.Join(t.TempDir(), "known_hosts"),
		AcceptNewHostKey: true, AgentSocket: "", KeepAliveInterval: 100 * time.Millisecond, KeepAliveTimeout: 300 * time.Millisecond}
	t.Setenv("SSH_AUTH_SOCK", "")
	c, err := Dial(context.Background(), cfg, tgt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "keepalive went unanswered") {
			t.Errorf("Wait: %v, want the unanswered keepalive", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the connection to a frozen peer was not closed within 10 s (keepalive 100 ms, timeout 300 ms)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Run(ctx, "true", nil); err == nil || ctx.Err() != nil {
		t.Errorf("Run on the closed connection: %v (ctx %v), want an immediate error", err, ctx.Err())
	}
}

// TestSessionOpenEndsWithConnection: a session open that the connection's
// end leaves unanswered returns. x/crypto loses a channel opened in the
// instant its read loop ends (after it dropped the open channels, before
// the socket closed); an engine request then waited for its whole context
// (CI's TestClusterLab, 10 minutes after the manager's sshd was killed).
// The silent server never answers the open, and the test signals the
// connection's end itself, as that lost instant would leave it.
func TestSessionOpenEndsWithConnection(t *testing.T) {
	priv, signer := newKey(t)
	addr := silentServer(t, signer.PublicKey())
	tgt, err := ParseTarget("root@" + addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{IdentityFiles: []string{writeKey(t, priv, "")}, KnownHosts: filepath.Join(t.TempDir(), "known_hosts"),
		AcceptNewHostKey: true, AgentSocket: "", KeepAliveInterval: -1}
	t.Setenv("SSH_AUTH_SOCK", "")
	c, err := Dial(context.Background(), cfg, tgt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ended := make(chan struct{})
	c.done = ended
	opened := make(chan error, 1)
	go func() {
		_, err := c.newSession(context.Background())
		opened <- err
	}()
	select {
	case err := <-opened:
		t.Fatalf("the silent server answered the session open: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(ended)
	select {
	case err := <-opened:
		if err == nil || !strings.Contains(err.Error(), "connection ended") {
			t.Errorf("open session after the connection ended: %v, want that it ended", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a session open outlived its connection's end by 5 s")
	}
}
