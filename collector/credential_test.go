package collector

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netdata/go.d.plugin/pkg/web"

	"github.com/pulsefaas/pulse/contract"
)

// authReplica is a real HTTP server standing for a watchdog that requires
// the replica credential: 403 without the one it holds, its golden page
// with it. It records what the collector sent.
type authReplica struct {
	mu        sync.Mutex
	want      string
	got       []string // contract.HeaderReplicaAuth of each request ("" when absent)
	encodings []string // Accept-Encoding of each request
	page      []byte
}

func (a *authReplica) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	vals := r.Header.Values(contract.HeaderReplicaAuth)
	a.got = append(a.got, strings.Join(vals, ","))
	a.encodings = append(a.encodings, r.Header.Get("Accept-Encoding"))
	if len(vals) != 1 || subtle.ConstantTimeCompare([]byte(vals[0]), []byte(a.want)) != 1 {
		http.Error(w, `{"error":"replica credential required"}`, http.StatusForbidden)
		return
	}
	if r.URL.Path != contract.MetricsPath {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write(a.page)
}

func (a *authReplica) set(want string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.want = want
}

func (a *authReplica) last() (cred, encoding string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.got[len(a.got)-1], a.encodings[len(a.encodings)-1]
}

// TestReplicaCredential steps the collector through the credential's life
// against a real HTTP server that requires it: presented on every scrape,
// a new value picked up without a restart, a 403 reported once, a missing
// file reported once while the rest is still collected, and recovery.
func TestReplicaCredential(t *testing.T) {
	replica := &authReplica{want: "s3cret", page: golden(t, "watchdog_metrics.txt")}
	rsrv := httptest.NewServer(replica)
	defer rsrv.Close()
	addr := strings.TrimPrefix(rsrv.URL, "http://")
	pulsed := &fakePulsed{cat: catalogOf("v1", fn("hello", 1, nil, contract.Replica{TaskID: "r1", Addr: addr, State: "running"}))}
	psrv := httptest.NewServer(pulsed)
	defer psrv.Close()

	credPath := credentialFileOf(t, "s3cret")
	rec := &logRecorder{}
	cfg := defaultConfig()
	cfg.CatalogURL, cfg.HAProxyURL = psrv.URL+contract.CatalogPath, psrv.URL+"/none"
	cfg.Timeout = web.Duration{Duration: 900 * time.Millisecond}
	cfg.ReplicaAuthFile = credPath
	c, err := NewCollector(cfg, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// write replaces the file's content and moves its mtime on, as a new
	// file from pulsed would (a rename gives a new inode as well).
	mtime := time.Now()
	write := func(v string) {
		t.Helper()
		if err := os.WriteFile(credPath, []byte(v), 0o640); err != nil {
			t.Fatal(err)
		}
		mtime = mtime.Add(time.Second)
		if err := os.Chtimes(credPath, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range []struct {
		name        string
		change      func()
		wantScraped int64
		wantSent    string
		wantWarn    string // a new warning containing this; "" for none
		wantInfo    string // a new info message containing this
	}{
		{name: "credential presented", wantScraped: 1, wantSent: "s3cret"},
		{name: "unchanged file: not re-read, still presented", wantScraped: 1, wantSent: "s3cret"},
		{name: "rotated on the replicas first: 403 reported", change: func() { replica.set("n3w") },
			wantScraped: 0, wantSent: "s3cret", wantWarn: "answer 403 Forbidden"},
		{name: "still 403: not logged again", wantScraped: 0, wantSent: "s3cret"},
		{name: "new credential in the file: used without a restart", change: func() { write("n3w\n") },
			wantScraped: 1, wantSent: "n3w", wantInfo: "no replica answers 403"},
		{name: "file gone: said once, scraped without it", change: func() { os.Remove(credPath) },
			wantScraped: 0, wantSent: "", wantWarn: "cannot read the replica credential"},
		{name: "still gone: nothing new", wantScraped: 0, wantSent: ""},
		{name: "garbage in the file", change: func() { write("a b\n") },
			wantScraped: 0, wantSent: "", wantWarn: "cannot read the replica credential"},
		{name: "back", change: func() { write("n3w") },
			wantScraped: 1, wantSent: "n3w", wantInfo: "no replica answers 403"},
	} {
		t.Run(st.name, func(t *testing.T) {
			if st.change != nil {
				st.change()
			}
			warns, infos := len(rec.messages(slog.LevelWarn)), len(rec.messages(slog.LevelInfo))
			mx, _ := c.Collect(context.Background())
			if got := mx[dimKey("hello", contract.ChartReplicas, contract.DimScraped)]; got != st.wantScraped {
				t.Errorf("scraped %d, want %d", got, st.wantScraped)
			}
			// Every failure here is the replica's 403, which the
			// collector's chart counts apart.
			if got := mx[collectorKey(dimForbidden)]; got != 1-st.wantScraped {
				t.Errorf("forbidden %d, want %d", got, 1-st.wantScraped)
			}
			sent, enc := replica.last()
			if sent != st.wantSent {
				t.Errorf("credential sent %q, want %q", sent, st.wantSent)
			}
			if enc != "identity" {
				t.Errorf("Accept-Encoding %q, want identity", enc)
			}
			newWarn := notHAProxy(rec.messages(slog.LevelWarn)[warns:])
			newInfo := rec.messages(slog.LevelInfo)[infos:]
			switch {
			case st.wantWarn == "" && len(newWarn) > 0:
				t.Errorf("new warnings %q, want none", newWarn)
			case st.wantWarn != "" && (len(newWarn) == 0 || !strings.Contains(strings.Join(newWarn, "|"), st.wantWarn)):
				t.Errorf("new warnings %q, want one with %q", newWarn, st.wantWarn)
			}
			if st.wantInfo != "" && !strings.Contains(strings.Join(newInfo, "|"), st.wantInfo) {
				t.Errorf("new messages %q, want one with %q", newInfo, st.wantInfo)
			}
		})
	}
	// 403 with the old credential; the file gone and the 403s that
	// follow (a new episode); garbage in it.
	if w := notHAProxy(rec.messages(slog.LevelWarn)); len(w) != 4 {
		t.Errorf("%d warnings in all, want 4: %q", len(w), w)
	}
}

// notHAProxy leaves out the warning about HAProxy's page, which the test
// does not serve.
func notHAProxy(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		if !strings.Contains(m, "HAProxy") {
			out = append(out, m)
		}
	}
	return out
}

func TestParseCredential(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "hex with newline", in: "0123abcd\n", want: "0123abcd"},
		{name: "surrounding space", in: "  tok-en_1=  \r\n", want: "tok-en_1="},
		{name: "empty", in: "\n", wantErr: true},
		{name: "inner space", in: "a b", wantErr: true},
		{name: "control byte", in: "a\x01b", wantErr: true},
		{name: "non-ASCII", in: "pässword", wantErr: true},
		{name: "too large", in: strings.Repeat("a", maxCredentialBytes+1), wantErr: true},
		{name: "at the cap", in: strings.Repeat("a", maxCredentialBytes), want: strings.Repeat("a", maxCredentialBytes)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCredential([]byte(tc.in))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("parseCredential(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
			if err != nil && !errors.Is(err, errCredential) {
				t.Fatalf("error %v is not errCredential", err)
			}
		})
	}
}

func TestConfigReplicaAuthFile(t *testing.T) {
	cfg := defaultConfig()
	if cfg.ReplicaAuthFile != contract.DefaultReplicaAuthFile {
		t.Errorf("default replica_auth_file %q, want %q", cfg.ReplicaAuthFile, contract.DefaultReplicaAuthFile)
	}
	for _, bad := range []string{"", "relative/replica-auth"} {
		cfg.ReplicaAuthFile = bad
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "replica_auth_file") {
			t.Errorf("replica_auth_file %q: err %v, want one naming the key", bad, err)
		}
	}
}

// FuzzParseCredential: a credential file yields an error or a value that
// can be sent as a header value unchanged.
func FuzzParseCredential(f *testing.F) {
	f.Add([]byte("0123abcd\n"))
	f.Add([]byte(" a b "))
	f.Add([]byte("\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseCredential(b)
		if err != nil {
			return
		}
		if v == "" || len(v) > maxCredentialBytes || strings.TrimSpace(v) != v {
			t.Fatalf("accepted %q", v)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
		req.Header.Set(contract.HeaderReplicaAuth, v)
		if err := req.Write(new(strings.Builder)); err != nil {
			t.Fatalf("cannot send %q: %v", v, err)
		}
	})
}
