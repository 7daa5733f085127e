package provision

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// shServer is an in-process SSH server that runs each command as sshd
// does, with sh -c on this host (as cred's user when set), its stdin,
// stdout and stderr on the session: Snapshot's script and CombinedOutput's
// quoting meet a real shell, without a node.
type shServer struct {
	ln      net.Listener
	hostKey ssh.Signer
	user    ssh.PublicKey
	cred    *syscall.Credential

	mu    sync.Mutex
	conns []net.Conn
}

// dialShServer starts an shServer and returns a client connected to it.
func dialShServer(t *testing.T, cred *syscall.Credential) *Client {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "")
	priv, user := newKey(t)
	_, hostKey := newKey(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &shServer{ln: ln, hostKey: hostKey, user: user.PublicKey(), cred: cred}
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	go s.serve()

	target := Target{User: "pulse", Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(target.Addr())}, hostKey.PublicKey()) + "\n"
	writeFile(t, kh, line, 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, Config{IdentityFiles: []string{writeKey(t, priv, "")}, KnownHosts: kh}, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (s *shServer) serve() {
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(s.user.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("not authorized")
		},
	}
	cfg.AddHostKey(s.hostKey)
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, conn)
		s.mu.Unlock()
		go s.handle(conn, cfg)
	}
}

func (s *shServer) handle(conn net.Conn, cfg *ssh.ServerConfig) {
	serveSessions(conn, cfg, func(ch ssh.Channel, reqs <-chan *ssh.Request) { go s.session(ch, reqs) })
}

// session runs the first exec request's command; the process is killed
// when the client closes the channel first.
func (s *shServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	var cmd *exec.Cmd
	exited := make(chan struct{})
	for req := range reqs {
		if req.Type != "exec" || cmd != nil {
			req.Reply(false, nil)
			continue
		}
		var msg struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &msg); err != nil {
			req.Reply(false, nil)
			continue
		}
		cmd = exec.Command("sh", "-c", msg.Command)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
		cmd.WaitDelay = time.Second // stdin's copy may wait for the client's EOF
		if s.cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
		}
		if err := cmd.Start(); err != nil {
			req.Reply(false, nil)
			ch.Close()
			return
		}
		req.Reply(true, nil)
		go func() {
			defer close(exited)
			status := 0
			var exit *exec.ExitError
			if err := cmd.Wait(); errors.As(err, &exit) {
				status = exit.ExitCode()
			} else if err != nil {
				status = 255
			}
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
			ch.Close()
		}()
	}
	// The channel is closed: by the client, or after the exit status.
	if cmd != nil && cmd.Process != nil {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
		}
	}
}

func writeFile(t *testing.T, name, data string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
}
