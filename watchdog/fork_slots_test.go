package watchdog

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// TestForkSlotWait: a request that finds every process slot taken waits
// for one up to its timeout, then gets a 504 saying why; one whose client
// leaves stops waiting. (The slots are taken by hand here: with real
// processes and one timeout for all, a waiting request's deadline always
// comes after the running ones', so it gets a slot first.)
func TestForkSlotWait(t *testing.T) {
	cfg, err := ConfigFromEnv([]string{"PULSE_FUNCTION=t", "PULSE_MODE=fork", "PULSE_EXEC=/bin/cat",
		"PULSE_MAX_PROCESSES=1", "PULSE_TIMEOUT=200ms"}, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	f := s.fn.(*forker)
	f.slots <- struct{}{} // the one slot, taken

	start := time.Now()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("POST", "/", strings.NewReader("x")))
	took := time.Since(start)
	if rec.Code != http.StatusGatewayTimeout ||
		!strings.Contains(rec.Body.String(), `"error":"function timed out waiting for a process slot"`) ||
		!strings.Contains(rec.Body.String(), `"max_processes":1`) {
		t.Errorf("got %d %s", rec.Code, rec.Body)
	}
	if took < 200*time.Millisecond || took > time.Second {
		t.Errorf("answered after %v, want at the 200ms timeout", took)
	}
	if killReasons[0] != contract.KillTimeout {
		t.Fatal("killReasons moved")
	}
	if got := f.m.killed[0].Load(); got != 1 {
		t.Errorf("killed{reason=timeout} = %d", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("POST", "/", strings.NewReader("x")).WithContext(ctx))
	if rec.Code != 499 {
		t.Errorf("client gone: got %d %s", rec.Code, rec.Body)
	}

	<-f.slots // free: served
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("POST", "/", strings.NewReader("hello")))
	if rec.Code != 200 || rec.Body.String() != "hello" {
		t.Errorf("with a free slot: %d %q", rec.Code, rec.Body)
	}
}
