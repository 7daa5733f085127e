package watchdog_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const overdueSeries = `pulse_watchdog_overdue_handlers{function="test"}`

// TestInProcessTimeouts: against a real in-process function binary, the
// watchdog answers 504 at the timeout whether the handler stops at its
// deadline without writing or ignores it; a handler still running past its
// deadline is counted until it returns.
func TestInProcessTimeouts(t *testing.T) {
	w := startCmd(t, []string{bin.inproc}, "PULSE_TIMEOUT=500ms")
	cases := []struct {
		name string
		path string
	}{
		{"stops at its deadline, writes nothing", "/quiet-stop"},
		{"ignores its deadline", "/ignore?d=2s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r := w.do("GET", tc.path, "", nil)
			took := time.Since(start)
			if r.status != 504 || r.body != `{"error":"function timed out","timeout":"500ms"}`+"\n" {
				t.Fatalf("got %d %q after %v", r.status, r.body, took)
			}
			if took < 500*time.Millisecond || took > 900*time.Millisecond {
				t.Errorf("answered after %v, want at the 500ms timeout", took)
			}
		})
	}
	// The ignoring handler is overdue until it returns, 1.5 s later.
	if n := w.metric(overdueSeries); n != 1 {
		t.Errorf("overdue = %v right after, want 1", n)
	}
	eventually(t, "overdue handler returned", func() bool { return w.metric(overdueSeries) == 0 })
	if n := w.metric(`pulse_watchdog_killed_total{function="test",reason="timeout"}`); n != 2 {
		t.Errorf("timeouts counted %v, want 2", n)
	}
	if r := w.do("GET", "/headers", "", nil); r.status != 200 {
		t.Errorf("after the timeouts: %d", r.status)
	}
	if !strings.Contains(w.log(), "handler past its deadline returned") {
		t.Errorf("the late return is not logged")
	}
}

// TestInProcessLateHandlersEnd: a handler waiting on its context's Done
// when the watchdog answers for it is woken, whichever timer fires first,
// so it returns and stops being counted. Forty of them at once.
func TestInProcessLateHandlersEnd(t *testing.T) {
	w := startCmd(t, []string{bin.inproc}, "PULSE_TIMEOUT=100ms", "PULSE_MAX_INFLIGHT=0")
	const n = 40
	codes := make(chan int, n)
	for i := 0; i < n; i++ {
		go func() { codes <- w.do("GET", "/late-stop", "", nil).status }()
	}
	for i := 0; i < n; i++ {
		if c := <-codes; c != 504 {
			t.Errorf("status %d, want 504", c)
		}
	}
	eventually(t, "every late handler returned", func() bool { return w.metric(overdueSeries) == 0 })
}

// TestInProcessOverdueHealth: handlers that never return fail health once
// PULSE_MAX_OVERDUE of them run, so the replica is replaced; below it
// health holds.
func TestInProcessOverdueHealth(t *testing.T) {
	w := startCmd(t, []string{bin.inproc}, "PULSE_TIMEOUT=200ms", "PULSE_MAX_OVERDUE=2")
	for i := 1; i <= 2; i++ {
		if r := w.do("GET", "/hang", "", nil); r.status != 504 {
			t.Fatalf("hang %d: %d %q", i, r.status, r.body)
		}
		if n := w.metric(overdueSeries); n != float64(i) {
			t.Fatalf("overdue %v after %d hung handlers", n, i)
		}
		r := w.do("GET", "/_/health", "", nil)
		switch {
		case i < 2 && r.status != 200:
			t.Fatalf("health with %d overdue (limit 2): %d %q", i, r.status, r.body)
		case i == 2 && (r.status != 503 || r.body != `{"status":"overdue","overdue":2}`+"\n"):
			t.Fatalf("health with 2 overdue (limit 2): %d %q", r.status, r.body)
		}
	}
	// Requests are still served while the replica waits to be replaced.
	if r := w.do("GET", "/headers", "", nil); r.status != 200 {
		t.Errorf("request while overdue: %d", r.status)
	}
}

// TestInProcessResponseLimit: an in-process answer over the response limit
// is refused (declared length: 502 JSON) or cut (streamed), as in fork and
// http mode; one under the limit passes whole.
func TestInProcessResponseLimit(t *testing.T) {
	w := startCmd(t, []string{bin.inproc}, "PULSE_MAX_RESPONSE=1MiB")
	t.Run("declared length over the limit is 502", func(t *testing.T) {
		r := w.do("GET", "/big?n=104857600&length=1", "", nil)
		if r.status != 502 || r.body != `{"error":"function response too large","limit":1048576}`+"\n" {
			t.Fatalf("got %d %q", r.status, short(r.body))
		}
	})
	t.Run("streamed answer over the limit is cut", func(t *testing.T) {
		r := w.do("GET", "/big?n=104857600", "", nil)
		if r.err == nil {
			t.Fatalf("got %d and %d bytes without an error", r.status, len(r.body))
		}
		if len(r.body) > 1<<20 {
			t.Errorf("%d bytes passed the limit", len(r.body))
		}
	})
	t.Run("under the limit", func(t *testing.T) {
		r := w.do("GET", "/big?n=1000000", "", nil)
		if r.err != nil || r.status != 200 || len(r.body) != 1000000 {
			t.Fatalf("got %d, %d bytes, %v", r.status, len(r.body), r.err)
		}
	})
	if n := w.metric(`pulse_watchdog_killed_total{function="test",reason="response_limit"}`); n != 2 {
		t.Errorf("response_limit counted %v, want 2", n)
	}
}

// TestInProcessSlowReader: a client that does not read a large answer is
// cut off by the write timeout (the connection sweep), not held forever.
func TestInProcessSlowReader(t *testing.T) {
	w := startCmd(t, []string{bin.inproc}, "PULSE_MAX_RESPONSE=1GiB", "PULSE_TIMEOUT=1s",
		"PULSE_READ_TIMEOUT=1s", "PULSE_WRITE_TIMEOUT=1s")
	c := dial(t, w.addr)
	fmt.Fprintf(c, "GET /big?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", 512<<20)
	br := bufio.NewReaderSize(c, 4096)
	r, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // read nothing past the header
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, r.Body)
	if err == nil || n >= 512<<20 {
		t.Fatalf("read %d bytes, err %v: the stalled answer was not cut", n, err)
	}
}
