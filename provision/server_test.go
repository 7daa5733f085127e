package provision

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// testServer is an in-process SSH server on 127.0.0.1 for the error paths:
// it accepts one user key and runs a few scripted commands (see exec).
type testServer struct {
	t          *testing.T
	ln         net.Listener
	hostKey    ssh.Signer
	authorized ssh.PublicKey
	started    chan string // each command, when it starts

	mu    sync.Mutex
	conns []net.Conn
}

func newKey(t *testing.T) (ed25519.PrivateKey, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, s
}

// writeKey writes priv as an OpenSSH private key file, encrypted when
// passphrase is set, and returns its path.
func writeKey(t *testing.T, priv ed25519.PrivateKey, passphrase string) string {
	t.Helper()
	var block *pem.Block
	var err error
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func startServer(t *testing.T, authorized ssh.PublicKey) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, hostKey := newKey(t)
	s := &testServer{t: t, ln: ln, hostKey: hostKey, authorized: authorized, started: make(chan string, 16)}
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	go s.serve()
	return s
}

func (s *testServer) target() Target {
	return Target{User: "pulse", Host: "127.0.0.1", Port: s.ln.Addr().(*net.TCPAddr).Port}
}

func (s *testServer) serve() {
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if s.authorized != nil && string(key.Marshal()) == string(s.authorized.Marshal()) {
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

func (s *testServer) handle(conn net.Conn, cfg *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		closed := make(chan struct{}) // the client closed the channel
		go func() {
			defer close(closed)
			for req := range creqs {
				if req.Type != "exec" {
					req.Reply(false, nil)
					continue
				}
				var msg struct{ Command string }
				if err := ssh.Unmarshal(req.Payload, &msg); err != nil {
					req.Reply(false, nil)
					continue
				}
				req.Reply(true, nil)
				go s.exec(conn, ch, closed, msg.Command)
			}
		}()
	}
}

// exec runs one of the scripted commands:
//
//	hostname   prints "testhost"
//	cat        copies stdin to stdout
//	fail       prints 15 lines on stderr and exits 3
//	drop       prints a line, then closes the channel without an exit status
//	dropconn   prints a line, then closes the whole connection
//	hang       waits until the client closes the session
//	docker system dial-stdio   "docker: command not found", exit 127
func (s *testServer) exec(conn net.Conn, ch ssh.Channel, closed <-chan struct{}, cmd string) {
	s.started <- cmd
	status := 0
	switch cmd {
	case "hostname":
		fmt.Fprintln(ch, "testhost")
	case "cat":
		io.Copy(ch, ch)
	case "fail":
		for i := 1; i <= 15; i++ {
			fmt.Fprintf(ch.Stderr(), "line %d\n", i)
		}
		status = 3
	case "drop":
		fmt.Fprintln(ch, "partial")
		ch.Close()
		return
	case "dropconn":
		fmt.Fprintln(ch, "partial")
		conn.Close()
		return
	case "hang":
		<-closed
		return
	case "docker system dial-stdio":
		fmt.Fprintln(ch.Stderr(), "sh: 1: docker: not found")
		status = 127
	default:
		fmt.Fprintf(ch.Stderr(), "unknown command %q\n", strings.Fields(cmd))
		status = 127
	}
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
	ch.Close()
}
