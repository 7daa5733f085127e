package provision

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/pkg/streamformatter"
	"golang.org/x/crypto/ssh"
)

// testServer is an in-process SSH server on 127.0.0.1 for the error paths:
// it accepts one user key and runs a few scripted commands (see exec).
type testServer struct {
	t          *testing.T
	ln         net.Listener
	hostKey    ssh.Signer
	authorized ssh.PublicKey
	started    chan string  // each command, when it starts
	sessions   atomic.Int32 // session channels open now
	execs      atomic.Int32 // commands running now

	mu    sync.Mutex
	conns []*serverConn
	// engine, when set, serves `docker system dial-stdio` (see
	// fakeEngine); without it the node has no docker.
	engine *fakeEngine
}

// setEngine makes e the engine dial-stdio reaches.
func (s *testServer) setEngine(e *fakeEngine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.engine = e
}

// serverConn is the server's end of one TCP connection. freeze makes the
// node vanish without a word, as one that lost power or network does: what
// the client sends is read and dropped, nothing is answered, and the
// connection stays open for the client until it closes it.
type serverConn struct {
	net.Conn
	frozen atomic.Bool
	once   sync.Once
	gone   chan struct{} // closed when the connection has ended
}

func (c *serverConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if err != nil {
			c.once.Do(func() { close(c.gone) })
			return n, err
		}
		if !c.frozen.Load() {
			return n, nil
		}
	}
}

func (c *serverConn) Write(p []byte) (int, error) {
	if c.frozen.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *serverConn) freeze() { c.frozen.Store(true) }

// cut ends the connection at once, without a close of its sessions.
func (c *serverConn) cut() { c.Conn.Close() }

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
		tcp, err := s.ln.Accept()
		if err != nil {
			return
		}
		conn := &serverConn{Conn: tcp, gone: make(chan struct{})}
		s.mu.Lock()
		s.conns = append(s.conns, conn)
		s.mu.Unlock()
		go s.handle(conn, cfg)
	}
}

// waitIdle fails t unless every session the server opened is closed and
// every command it ran has returned, within d.
func (s *testServer) waitIdle(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for s.sessions.Load() != 0 || s.execs.Load() != 0 {
		if time.Now().After(deadline) {
			t.Errorf("server %s: %d session(s) open, %d command(s) running %v after the client was done",
				s.target(), s.sessions.Load(), s.execs.Load(), d)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serveSessions is the SSH handshake on conn and its accept loop, shared
// by the test servers: global requests are discarded, channels other than
// sessions refused, and session is called (on this goroutine) for each
// session channel accepted.
func serveSessions(conn net.Conn, cfg *ssh.ServerConfig, session func(ssh.Channel, <-chan *ssh.Request)) {
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
		session(ch, creqs)
	}
}

func (s *testServer) handle(conn *serverConn, cfg *ssh.ServerConfig) {
	serveSessions(conn, cfg, func(ch ssh.Channel, creqs <-chan *ssh.Request) {
		closed := make(chan struct{}) // the client closed the channel
		s.sessions.Add(1)
		go func() {
			defer s.sessions.Add(-1)
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
				s.execs.Add(1)
				go func() {
					defer s.execs.Add(-1)
					s.exec(conn, ch, closed, msg.Command)
				}()
			}
		}()
	})
}

// exec runs one of the scripted commands:
//
//	hostname   prints "testhost"
//	cat        copies stdin to stdout
//	fail       prints 15 lines on stderr and exits 3
//	drop       prints a line, then closes the channel without an exit status
//	dropconn   prints a line, then closes the whole connection
//	hang       waits until the client closes the session
//	docker system dial-stdio   the engine's connection when s.engine is
//	           set (fakeEngine.dialStdio), else "docker: not found", exit 127
func (s *testServer) exec(conn *serverConn, ch ssh.Channel, closed <-chan struct{}, cmd string) {
	select {
	case s.started <- cmd:
	default: // nobody watches: an engine opens many sessions
	}
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
		s.mu.Lock()
		e := s.engine
		s.mu.Unlock()
		if e != nil {
			e.dialStdio(conn, ch)
			return
		}
		fmt.Fprintln(ch.Stderr(), "sh: 1: docker: not found")
		status = 127
	default:
		fmt.Fprintf(ch.Stderr(), "unknown command %q\n", strings.Fields(cmd))
		status = 127
	}
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
	ch.Close()
}

// fakeEngine is the Docker Engine API that the server's `docker system
// dial-stdio` reaches, for the error paths of an image load. As dial-stdio
// copies its stdin and stdout to and from the engine's socket, dialStdio
// copies the channel to and from a net.Pipe whose other end an http.Server
// serves (the engine is one, so unread bodies and closes behave as
// there). It answers _ping (API 1.41, the lab's Docker 20.10), the image
// list (empty), inspect (404 until a load of archive made id present) and
// loads: a body equal to archive loads id, unless load is set, which then
// answers every load (the failure under test).
type fakeEngine struct {
	id      string
	archive []byte
	load    func(w http.ResponseWriter, r *http.Request, es *engineSession)

	mu     sync.Mutex
	loaded bool
	loads  int
}

// loadCount is how many loads e was asked for.
func (e *fakeEngine) loadCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.loads
}

// engineSession is one dial-stdio session, for a load handler to fail.
type engineSession struct {
	conn   *serverConn // the SSH connection: cut or freeze it
	ch     ssh.Channel
	engine net.Conn // the engine's end of the socket
	// reset: when the engine closes the connection, dial-stdio fails
	// reading it (exit 1, connection reset) rather than ending cleanly,
	// as when the engine leaves part of the request unread.
	reset bool
	once  sync.Once
}

// connReset is dial-stdio's stderr when the engine's socket is reset.
const connReset = "error while Copy (stream to stdout): read unix @->/var/run/docker.sock: read: connection reset by peer"

// exit ends dial-stdio with status and a line on stderr (once; a later
// exit does nothing), as docker's does when its engine connection fails,
// and closes the engine's socket.
func (es *engineSession) exit(status int, stderr string) {
	es.once.Do(func() {
		if stderr != "" {
			fmt.Fprintln(es.ch.Stderr(), stderr)
		}
		es.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
		es.ch.Close()
		es.engine.Close()
	})
}

// dialStdio serves one session: stdin to the engine, the engine to stdout,
// until the engine closes the connection (exit 0 then, at once, as
// docker's does, or 1 after es.reset) or the client closes the channel. It returns once every
// goroutine it started has.
func (e *fakeEngine) dialStdio(conn *serverConn, ch ssh.Channel) {
	sock, engine := net.Pipe()
	es := &engineSession{conn: conn, ch: ch, engine: engine}
	srv := &http.Server{Handler: e.handler(es)}
	l := &oneConnListener{conn: engine, done: make(chan struct{})}
	srv.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed || st == http.StateHijacked {
			l.Close()
		}
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(l)
	}()
	stdin := make(chan struct{})
	go func() {
		defer close(stdin)
		io.Copy(sock, ch)
		sock.Close() // the client is done: the engine reads EOF
	}()
	io.Copy(ch, sock)
	if es.reset {
		es.exit(1, connReset)
	}
	es.exit(0, "")
	sock.Close()
	<-stdin
	srv.Close()
	<-served
}

func (e *fakeEngine) handler(es *engineSession) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Ostype", "linux")
		w.Header().Set("Docker-Experimental", "false")
		io.WriteString(w, "OK")
	})
	mux.HandleFunc("GET /{version}/images/json", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "[]")
	})
	mux.HandleFunc("GET /{version}/images/{name}/json", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		present := e.loaded && r.PathValue("name") == e.id
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !present {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"message":"No such image: %s"}`+"\n", r.PathValue("name"))
			return
		}
		fmt.Fprintf(w, `{"Id":%q,"RepoTags":[],"Os":"linux"}`+"\n", e.id)
	})
	mux.HandleFunc("POST /{version}/images/load", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.loads++
		e.mu.Unlock()
		if e.load != nil {
			e.load(w, r, es)
			return
		}
		body, err := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case err != nil:
			return
		case !bytes.Equal(body, e.archive):
			w.Write(loadError(fmt.Sprintf("the fake engine got %d bytes, not the %d-byte archive", len(body), len(e.archive))))
			return
		}
		e.mu.Lock()
		e.loaded = true
		e.mu.Unlock()
		fmt.Fprintf(w, `{"stream":"Loaded image ID: %s\n"}`+"\r\n", e.id)
	})
	return mux
}

// loadError is the line the engine ends a failed load's stream with: its
// streamformatter.FormatError, as the daemon's postImagesLoad writes it
// when LoadImage fails (the status is 200 by then).
func loadError(msg string) []byte {
	return streamformatter.FormatError(errors.New(msg))
}

// readBody reads n bytes of r's body (fewer if it ends first) and returns
// how many it read.
func readBody(r *http.Request, n int64) int64 {
	got, _ := io.CopyN(io.Discard, r.Body, n)
	return got
}

// oneConnListener hands out one connection, then waits to be closed.
type oneConnListener struct {
	conn net.Conn
	once sync.Once
	mu   sync.Mutex
	done chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return sshAddr("engine") }
