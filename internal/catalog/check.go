package catalog

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// Limits of a function's labels: what the gateway can enforce.
const (
	// MaxTimeout bounds pulse.timeout (HAProxy's limit is 2^31 ms).
	MaxTimeout = 24 * time.Hour
	// MaxBody bounds pulse.max-body (1 PiB): HAProxy's "gt N" needs N+1 in
	// a signed 64-bit integer.
	MaxBody = 1 << 50
)

// FunctionSettings are the settings of a function that come from its
// service's name and labels.
type FunctionSettings struct {
	// Timeout is its pulse.timeout; 0 when the label is absent.
	Timeout time.Duration
	// MaxBody is its pulse.max-body in bytes; 0 when the label is absent.
	MaxBody int64
	// RateLimit is its pulse.rate-limit; nil when the label is absent.
	RateLimit *contract.RateLimit
	// Async is its pulse.async; nil when the label is absent (pulsed then
	// applies contract.DefaultAsyncPolicy).
	Async *contract.AsyncPolicy
}

// CheckFunction checks what the gateway and pulsed take of a function's
// service: its name and its pulse.timeout, pulse.max-body, pulse.rate-limit
// and pulse.async labels. Its error says what is wrong and what is wanted;
// the catalog skips a function that fails it (contract.Catalog.Skipped), so
// the gateway, the scaler and the collector never see it, and keeps serving
// the others.
func CheckFunction(name string, labels map[string]string) (FunctionSettings, error) {
	var s FunctionSettings
	if contract.FunctionNameProblem(name) != "" {
		return s, errors.New("not a function name: want 1-63 of a-z, 0-9 and '-', starting with a letter and not ending with '-'")
	}
	var errs []error
	if v, ok := labels[contract.LabelTimeout]; ok {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			err = errors.New("want a duration such as 30s or 500ms")
		case d <= 0:
			err = fmt.Errorf("%s: want a positive duration", d)
		case d > MaxTimeout:
			err = fmt.Errorf("%s: want at most %s", d, time.Duration(MaxTimeout))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("label %s=%q: %v", contract.LabelTimeout, v, err))
		}
		s.Timeout = d
	}
	if v, ok := labels[contract.LabelMaxBody]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > MaxBody {
			errs = append(errs, fmt.Errorf("label %s=%q: want a whole number of bytes from 1 to %d", contract.LabelMaxBody, v, int64(MaxBody)))
		}
		s.MaxBody = n
	}
	if v, ok := labels[contract.LabelRateLimit]; ok {
		r, err := contract.ParseRateLimit(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("label %s=%q: %v", contract.LabelRateLimit, v, err))
		}
		s.RateLimit = &r
	}
	if v, ok := labels[contract.LabelAsync]; ok {
		p, err := contract.ParseAsyncPolicy(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("label %s=%q: %v", contract.LabelAsync, v, err))
		}
		s.Async = &p
	}
	if err := errors.Join(errs...); err != nil {
		return FunctionSettings{}, err
	}
	return s, nil
}
