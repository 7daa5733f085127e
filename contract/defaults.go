package contract

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// Defaults shared by the watchdog (which applies them when its environment
// leaves a value out) and the CLI (which writes them into a function's spec
// and service), so that both read the same numbers. The watchdog README
// documents them.
const (
	// DefaultTimeout is a request's exec timeout (EnvTimeout).
	DefaultTimeout = 30 * time.Second
	// DefaultMaxBody is the request body cap in bytes (EnvMaxBody).
	DefaultMaxBody = 10 << 20
	// DefaultMaxInflight caps a replica's concurrent requests.
	DefaultMaxInflight = 1000
	// DefaultDrainGrace is how long a replica keeps serving, with its
	// health check failing, after SIGTERM.
	DefaultDrainGrace = 5 * time.Second
)

// ParseSize reads a byte count: a whole number with an optional unit, B,
// K/KB/KiB, M/MB/MiB or G/GB/GiB (case-insensitive; every K is 1024, as in
// Docker's memory flags).
func ParseSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	const form = "want a whole number of bytes, optionally with a unit: 512KiB, 10MiB, 1GiB"
	if i == 0 {
		return 0, errors.New(form)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, errors.New(form)
	}
	var mult int64
	switch strings.ToLower(strings.TrimSpace(s[i:])) {
	case "", "b":
		mult = 1
	case "k", "kb", "kib":
		mult = 1 << 10
	case "m", "mb", "mib":
		mult = 1 << 20
	case "g", "gb", "gib":
		mult = 1 << 30
	default:
		return 0, errors.New(form)
	}
	if n > math.MaxInt64/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}
