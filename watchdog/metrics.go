package watchdog

import (
	"bytes"
	"io"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// metrics is the watchdog's registry, written in the Prometheus text format
// by hand. A library was measured first: github.com/VictoriaMetrics/metrics,
// the lighter of the two, added 450 KB to the stripped binary and 550 KB of
// idle RSS (a regexp compiled at init, runtime/metrics, cgroup probing),
// which alone breaks the watchdog's 6 MB idle-RSS goal. What the watchdog
// exposes is three fixed families, updated lock-free with atomics; the
// exposition format for them is a few dozen lines.
type metrics struct {
	fn, mode string
	inflight *atomic.Int64
	start    time.Time
	codes    [600]atomic.Uint64 // requests by status code; [0] holds codes out of range
	buckets  [len(bucketBounds) + 1]atomic.Uint64
	sumNanos atomic.Uint64
	restarts atomic.Uint64
	killed   [3]atomic.Uint64 // indexed like killReasons
	overdue  atomic.Int64     // in-process handlers running past their deadline
	oom      atomic.Uint64    // fork-mode processes killed by the kernel for memory
	busy     busyClock
}

// busyClock adds up the time requests spend in the watchdog, in-progress
// requests included, so that its rate is the average number of requests in
// flight (contract.MetricBusy). Three values change together on every
// request start and end; a mutex keeps them consistent, so the total never
// goes down between two reads (lock-free reads of three atomics could see
// a request half ended and return less than before). Uncontended it costs
// two lock/unlock pairs per request.
type busyClock struct {
	base     time.Time // the watchdog's start; times are monotonic offsets from it
	mu       sync.Mutex
	n        int64         // requests in progress
	startSum time.Duration // sum of their start offsets
	done     time.Duration // total time of the finished requests
}

// begin records a request that started at start and returns its offset,
// for end.
func (b *busyClock) begin(start time.Time) time.Duration {
	t := start.Sub(b.base)
	b.mu.Lock()
	b.n++
	b.startSum += t
	b.mu.Unlock()
	return t
}

// end records the end, now, of the request begin returned t for. The
// clock is read under the lock, as in total: read before it, a total read
// in between would count this request up to a later time than its end.
// (begin may read it before: a start is never after the lock is taken.)
func (b *busyClock) end(t time.Duration) {
	b.mu.Lock()
	now := time.Since(b.base)
	b.n--
	b.startSum -= t
	b.done += now - t
	b.mu.Unlock()
}

// total is the busy time up to now.
func (b *busyClock) total() time.Duration {
	busy, _ := b.read()
	return busy
}

// read returns the busy time up to now, and now (since base).
func (b *busyClock) read() (busy, now time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now = time.Since(b.base)
	return b.done + time.Duration(b.n)*now - b.startSum, now
}

var killReasons = [...]string{contract.KillTimeout, contract.KillResponseLimit, contract.KillDisconnect}

// bucketBounds are contract.DurationBuckets as durations, for comparing
// without float conversion on the hot path.
var bucketBounds = func() [20]time.Duration {
	var b [20]time.Duration
	if len(contract.DurationBuckets) != len(b) {
		panic("watchdog: bucketBounds out of step with contract.DurationBuckets")
	}
	for i, s := range contract.DurationBuckets {
		b[i] = time.Duration(math.Round(s * 1e9))
	}
	return b
}()

// alwaysShown status codes are written even at zero, so rates exist before
// the first error.
var alwaysShown = [...]int{200, 400, 404, 413, 429, 500, 502, 503, 504}

func newMetrics(fn, mode string, inflight *atomic.Int64, start time.Time) *metrics {
	return &metrics{fn: fn, mode: mode, inflight: inflight, start: start, busy: busyClock{base: start}}
}

// observe records one finished request.
func (m *metrics) observe(code int, d time.Duration) {
	if code < 100 || code >= len(m.codes) {
		code = 0
	}
	m.codes[code].Add(1)
	i := 0
	for i < len(bucketBounds) && d > bucketBounds[i] {
		i++
	}
	m.buckets[i].Add(1)
	m.sumNanos.Add(uint64(d))
}

func (m *metrics) kill(reason string) {
	for i, r := range killReasons {
		if r == reason {
			m.killed[i].Add(1)
		}
	}
}

// write writes every series in the Prometheus text exposition format 0.0.4.
func (m *metrics) write(w io.Writer) error {
	b := make([]byte, 0, 4096)
	fl := `{` + contract.MetricLabelFunction + `="` + m.fn + `"` // function names are DNS labels: no escaping

	b = header(b, contract.MetricRequests, "counter", "Requests answered, by HTTP status code.")
	for code := range m.codes {
		n := m.codes[code].Load()
		if n == 0 && !shown(code) {
			continue
		}
		b = append(b, contract.MetricRequests...)
		b = append(b, fl...)
		b = append(b, `,`+contract.MetricLabelCode+`="`...)
		b = strconv.AppendInt(b, int64(code), 10)
		b = append(b, `"} `...)
		b = strconv.AppendUint(b, n, 10)
		b = append(b, '\n')
	}

	b = header(b, contract.MetricDuration, "histogram", "Time from request to response, in seconds.")
	var cum uint64
	for i := range m.buckets {
		cum += m.buckets[i].Load()
		b = append(b, contract.MetricDuration+"_bucket"...)
		b = append(b, fl...)
		b = append(b, `,le="`...)
		if i < len(bucketBounds) {
			b = strconv.AppendFloat(b, contract.DurationBuckets[i], 'g', -1, 64)
		} else {
			b = append(b, "+Inf"...)
		}
		b = append(b, `"} `...)
		b = strconv.AppendUint(b, cum, 10)
		b = append(b, '\n')
	}
	b = sample(b, contract.MetricDuration+"_sum", fl, float64(m.sumNanos.Load())/1e9)
	b = sample(b, contract.MetricDuration+"_count", fl, float64(cum))

	b = header(b, contract.MetricInflight, "gauge", "Requests being served now.")
	b = sample(b, contract.MetricInflight, fl, float64(m.inflight.Load()))
	busy, uptime := m.busy.read()
	b = header(b, contract.MetricBusy, "counter", "Seconds requests spent in the watchdog, in-progress ones up to now; its rate is the average in flight.")
	b = sample(b, contract.MetricBusy, fl, busy.Seconds())
	b = header(b, contract.MetricUptime, "gauge", "Seconds since the watchdog started (monotonic), read with the busy seconds.")
	b = sample(b, contract.MetricUptime, fl, uptime.Seconds())
	b = header(b, contract.MetricStartTime, "gauge", "Start time of the watchdog, in seconds since the epoch.")
	b = sample(b, contract.MetricStartTime, fl, float64(m.start.UnixNano())/1e9)
	b = header(b, contract.MetricInfo, "gauge", "The watchdog's mode and version.")
	b = sample(b, contract.MetricInfo, fl+`,`+contract.MetricLabelMode+`="`+m.mode+`",`+
		contract.MetricLabelVersion+`=`+strconv.Quote(Version), 1)
	if m.mode == contract.ModeHTTP {
		b = header(b, contract.MetricUpstreamRestarts, "counter", "Restarts of the http-mode function process.")
		b = sample(b, contract.MetricUpstreamRestarts, fl, float64(m.restarts.Load()))
	}
	b = header(b, contract.MetricKilled, "counter", "Function processes killed or requests aborted, by reason.")
	for i, r := range killReasons {
		b = sample(b, contract.MetricKilled, fl+`,`+contract.MetricLabelReason+`="`+r+`"`, float64(m.killed[i].Load()))
	}
	switch m.mode {
	case contract.ModeInProcess:
		b = header(b, contract.MetricOverdue, "gauge", "In-process handlers still running past their deadline (answered 504; a goroutine cannot be killed).")
		b = sample(b, contract.MetricOverdue, fl, float64(m.overdue.Load()))
	case contract.ModeFork:
		b = header(b, contract.MetricOOMKilled, "counter", "Function processes the kernel killed for memory.")
		b = sample(b, contract.MetricOOMKilled, fl, float64(m.oom.Load()))
	}
	b = processMetrics(b)
	_, err := w.Write(b)
	return err
}

func shown(code int) bool {
	for _, c := range alwaysShown {
		if c == code {
			return true
		}
	}
	return false
}

func header(b []byte, name, typ, help string) []byte {
	b = append(b, "# HELP "+name+" "+help+"\n# TYPE "+name+" "+typ+"\n"...)
	return b
}

// sample appends `name{labels} value`; labels is an opening brace and
// label pairs without the closing brace, or "".
func sample(b []byte, name, labels string, v float64) []byte {
	b = append(b, name...)
	if labels != "" {
		b = append(b, labels...)
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = strconv.AppendFloat(b, v, 'f', -1, 64)
	return append(b, '\n')
}

// processMetrics appends the standard process_* families read from
// /proc/self/stat, as client libraries name them.
func processMetrics(b []byte) []byte {
	raw, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return b
	}
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return b
	}
	// Fields after "(comm)" start at field 3 (state); utime is field 14,
	// stime 15, rss (pages) 24.
	fields := bytes.Fields(raw[i+1:])
	field := func(n int) float64 {
		i := n - 3
		if i < 0 || i >= len(fields) {
			return 0
		}
		v, _ := strconv.ParseFloat(string(fields[i]), 64)
		return v
	}
	const clkTck = 100 // USER_HZ is 100 on every Linux architecture Go supports
	b = header(b, "process_cpu_seconds_total", "counter", "User and system CPU time, in seconds.")
	b = sample(b, "process_cpu_seconds_total", "", (field(14)+field(15))/clkTck)
	b = header(b, "process_resident_memory_bytes", "gauge", "Resident memory, in bytes.")
	b = sample(b, "process_resident_memory_bytes", "", field(24)*float64(os.Getpagesize()))
	return b
}
