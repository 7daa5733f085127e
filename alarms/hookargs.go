package alarms

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/pulsefaas/pulse/contract"
)

// ErrSkip marks an invocation the hook ignores: an alarm that is not
// Pulse's, or a status that says nothing about load (REMOVED, UNDEFINED,
// UNINITIALIZED).
var ErrSkip = errors.New("not a scaling event")

// MinHookArgs is the number of arguments ParseHookArgs reads (up to the
// non-clear duration); Netdata 1.37 passes 29, later ones may pass more.
const MinHookArgs = 16

// ParseHookArgs builds the event from the arguments Netdata gives an exec'd
// notification program, without the program name (os.Args[1:]): 1 recipient,
// 2 host, 3 unique id, 4 alarm id, 5 event id, 6 when, 7 alarm name, 8 chart,
// 9 family (the function), 10 status, 11 old status, 12 value, 13 old value,
// 14 source, 15 duration, 16 non-clear duration, and more it ignores.
// Alarms not named contract.AlarmScaleUp or AlarmScaleDown, and statuses
// other than CLEAR, WARNING and CRITICAL, return an error wrapping ErrSkip;
// the name is checked first so foreign alarms cost nothing. Values Netdata
// could not compute ("nan", "-nan", "inf") become 0: JSON has no NaN.
func ParseHookArgs(args []string) (contract.AlarmEvent, error) {
	var ev contract.AlarmEvent
	if len(args) >= 7 && args[6] != contract.AlarmScaleUp && args[6] != contract.AlarmScaleDown {
		return ev, fmt.Errorf("%w: alarm %q is not pulse's", ErrSkip, args[6])
	}
	if len(args) < MinHookArgs {
		return ev, fmt.Errorf("want at least %d arguments, got %d", MinHookArgs, len(args))
	}
	ev.Host, ev.Alarm, ev.Chart, ev.Function = args[1], args[6], args[7], args[8]
	ev.Status, ev.OldStatus = args[9], args[10]
	switch ev.Status {
	case contract.AlarmClear, contract.AlarmWarning, contract.AlarmCritical:
	default:
		return ev, fmt.Errorf("%w: %s %s is %s", ErrSkip, ev.Alarm, ev.Function, ev.Status)
	}
	if ev.Function == "" {
		return ev, errors.New("argument 9 (family, the function name) is empty")
	}
	p := argParser{args: args}
	ev.UniqueID = p.uint(3, "unique id")
	ev.AlarmID = p.uint(4, "alarm id")
	ev.EventID = p.uint(5, "event id")
	ev.When = p.int(6, "when")
	ev.Value = p.float(12, "value")
	ev.OldValue = p.float(13, "old value")
	ev.Duration = p.int(15, "duration")
	ev.NonClearDuration = p.int(16, "non-clear duration")
	return ev, p.err
}

// argParser converts numbered (1-based) arguments, keeping the first error.
type argParser struct {
	args []string
	err  error
}

func (p *argParser) fail(n int, what string, err error) {
	if p.err == nil {
		p.err = fmt.Errorf("argument %d (%s) %q: %w", n, what, p.args[n-1], err)
	}
}

func (p *argParser) uint(n int, what string) uint64 {
	v, err := strconv.ParseUint(p.args[n-1], 10, 64)
	if err != nil {
		p.fail(n, what, err)
	}
	return v
}

func (p *argParser) int(n int, what string) int64 {
	v, err := strconv.ParseInt(p.args[n-1], 10, 64)
	if err != nil {
		p.fail(n, what, err)
	}
	return v
}

func (p *argParser) float(n int, what string) float64 {
	s := p.args[n-1]
	if s == "" || s == "-" || strings.EqualFold(strings.TrimLeft(s, "+-"), "nan") {
		return 0
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		p.fail(n, what, err)
		return 0
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}
