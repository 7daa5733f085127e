package contract

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// LabelRateLimit is a function's rate limit (functions.yml's rate_limit),
// as RateLimit.String writes it: "REQUESTS/PER/BY", e.g. "100/1s/function".
// The gateway answers 429 to what exceeds it.
const LabelRateLimit = "pulse.rate-limit"

// What a rate limit counts requests by.
const (
	RateByFunction = "function" // every request to the function, one budget
	RateByClient   = "client"   // each client address its own budget
	RateByKey      = "key"      // each invoke key its own budget (requests without a key share one)
)

// Bounds of a rate limit.
const (
	MinRatePer      = time.Second
	MaxRatePer      = time.Hour
	MaxRateRequests = 1_000_000
)

// RateLimit is a function's request budget at the gateway: at most Requests
// answered per Per, counted By function, client or key.
type RateLimit struct {
	Requests int
	Per      time.Duration
	By       string
}

// Problem says what is wrong with the limit ("" when nothing is), in the
// words of functions.yml's rate_limit.
func (r RateLimit) Problem() string {
	var p []string
	if r.Requests < 1 || r.Requests > MaxRateRequests {
		p = append(p, fmt.Sprintf("requests %d: want 1 to %d", r.Requests, MaxRateRequests))
	}
	if r.Per < MinRatePer || r.Per > MaxRatePer || r.Per%time.Second != 0 {
		p = append(p, fmt.Sprintf("per %s: want whole seconds from %s to %s", r.Per, MinRatePer, MaxRatePer))
	}
	switch r.By {
	case RateByFunction, RateByClient, RateByKey:
	default:
		p = append(p, fmt.Sprintf("by %q: want %s, %s or %s", r.By, RateByFunction, RateByClient, RateByKey))
	}
	return strings.Join(p, "; ")
}

// String is the label's value: "100/1s/function".
func (r RateLimit) String() string {
	return fmt.Sprintf("%d/%s/%s", r.Requests, formatRatePer(r.Per), r.By)
}

func formatRatePer(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}

// ParseRateLimit reads the label's value, as String writes it, and checks it.
func ParseRateLimit(v string) (RateLimit, error) {
	parts := strings.Split(v, "/")
	if len(parts) != 3 {
		return RateLimit{}, errors.New(`want REQUESTS/PER/BY, e.g. "100/1s/function"`)
	}
	n, err := strconv.Atoi(parts[0])
	if err != nil {
		return RateLimit{}, fmt.Errorf("requests %q: want a whole number", parts[0])
	}
	per, err := time.ParseDuration(parts[1])
	if err != nil {
		return RateLimit{}, fmt.Errorf("per %q: want a duration such as 1s or 1m", parts[1])
	}
	r := RateLimit{Requests: n, Per: per, By: parts[2]}
	if p := r.Problem(); p != "" {
		return RateLimit{}, errors.New(p)
	}
	return r, nil
}
