package contract

import "time"

// Functions is what GET FunctionsPath answers: every function in the
// replica catalog with its scaling state, sorted by name.
type Functions struct {
	Functions []FunctionStatus `json:"functions"`
}

// FunctionStatus is one function as the scaler sees it.
type FunctionStatus struct {
	Name     string        `json:"name"`
	Replicas ReplicaCounts `json:"replicas"`
	Policy   ScalePolicy   `json:"policy"`
	// Utilization is the last utilisation read (percent, DESIGN §5); nil
	// when none could be read (no chart yet, Netdata down).
	Utilization   *float64  `json:"utilization"`
	UtilizationAt time.Time `json:"utilization_at,omitzero"`
	// CheckedAt is the last evaluation and Reason what it concluded (also
	// when it changed nothing).
	CheckedAt time.Time `json:"checked_at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
	// NoScaleDownUntil: the stabilisation window after the service's last
	// update (by the scaler, pulse scale or a deploy) ends then.
	NoScaleDownUntil time.Time `json:"no_scale_down_until,omitzero"`
	// LastDecision is the last change of the replica count the scaler made.
	LastDecision *ScaleEvent `json:"last_decision,omitempty"`
	// Error is the last evaluation's error, if it failed.
	Error string `json:"error,omitempty"`
}

// ReplicaCounts: Current is the service's replica count, Desired what the
// policy wants now (before the scale-down step limit; 0 when unknown), Ready
// the replicas in the catalog that run and are not draining.
type ReplicaCounts struct {
	Current int `json:"current"`
	Desired int `json:"desired"`
	Ready   int `json:"ready"`
}

// ScalePolicy is a function's policy as read from its labels
// (LabelScale*). Idle is a Go duration, empty for never.
type ScalePolicy struct {
	Metric string  `json:"metric"`
	Target float64 `json:"target"`
	Min    int     `json:"min"`
	Max    int     `json:"max"`
	Idle   string  `json:"idle,omitempty"`
}

// ScaleEvents is what GET EventsPath answers: the most recent decisions,
// oldest first (newest last). Total counts every decision since pulsed
// started, so a poller can tell how many it missed.
type ScaleEvents struct {
	Total  uint64       `json:"total"`
	Events []ScaleEvent `json:"events"`
}

// ScaleEvent is one change of a function's replica count by the scaler.
// Time is when Swarm accepted the update (ServiceUpdate returned); the
// earlier stamps break the path down: ReceivedAt (the alarm reached the
// webhook; zero for other triggers), StartedAt (the evaluation began:
// utilisation read from Netdata), DecidedAt (the service was read and the
// decision made, just before ServiceUpdate).
type ScaleEvent struct {
	Time       time.Time `json:"time"`
	ReceivedAt time.Time `json:"received_at,omitzero"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	DecidedAt  time.Time `json:"decided_at,omitzero"`
	Function   string    `json:"function"`
	From       int       `json:"from"`
	To         int       `json:"to"`
	Reason     string    `json:"reason"`
	// Trigger is what started the evaluation: TriggerAlarm, TriggerResync,
	// TriggerEnsure or TriggerIdle.
	Trigger string `json:"trigger"`
	// Alarm is the alarm that triggered it, if one did.
	Alarm *AlarmRef `json:"alarm,omitempty"`
	// LatencyMS is the time from the alarm's When to the applied update
	// (When has whole seconds, so this is up to a second too long).
	LatencyMS *int64 `json:"latency_ms,omitempty"`
}

// AlarmRef identifies an alarm event (AlarmEvent's fields of that name).
type AlarmRef struct {
	UniqueID uint64  `json:"unique_id"`
	Alarm    string  `json:"alarm"`
	Status   string  `json:"status"`
	Value    float64 `json:"value"`
	When     int64   `json:"when"`
}

// ScaleEvent triggers.
const (
	TriggerAlarm  = "alarm"
	TriggerResync = "resync"
	TriggerEnsure = "ensure" // scale from zero (or to at least n) on request
	TriggerIdle   = "idle"   // scale to zero on request
)
