package contract

// Paths of pulsed's scaler API (besides CatalogPath and AlarmsPath).
const (
	// FunctionsPath lists every function with its scaling state.
	FunctionsPath = "/v1/functions"
	// EventsPath lists recent scaling decisions, newest last.
	EventsPath = "/v1/events"
	// PulsedMetricsPath is pulsed's own Prometheus exposition.
	PulsedMetricsPath = "/metrics"
)

// MaxAlarmBody is the largest webhook body the scaler accepts (413 above).
const MaxAlarmBody = 16 << 10

// DefaultAlarmTokenFile is where the webhook's bearer token lives: readable
// only by root and the netdata group (0640 root:netdata).
const DefaultAlarmTokenFile = "/etc/pulse/alarm-token"

// AlarmEvent is the JSON body the alarm hook posts to AlarmsPath, built
// from the arguments Netdata gives an exec'd notification program (DESIGN
// §7; argument numbers in comments). Function is the chart's family, the
// exact function name. Events are ordered by (When, UniqueID); EventID
// counts per alarm only.
type AlarmEvent struct {
	Host             string  `json:"host"`               // 2
	UniqueID         uint64  `json:"unique_id"`          // 3
	AlarmID          uint64  `json:"alarm_id"`           // 4
	EventID          uint64  `json:"event_id"`           // 5
	When             int64   `json:"when"`               // 6, unix seconds
	Alarm            string  `json:"alarm"`              // 7, AlarmScaleUp or AlarmScaleDown
	Chart            string  `json:"chart"`              // 8, e.g. pulse.fn_hello_utilization
	Function         string  `json:"function"`           // 9, the family
	Status           string  `json:"status"`             // 10: CLEAR, WARNING, CRITICAL, ...
	OldStatus        string  `json:"old_status"`         // 11
	Value            float64 `json:"value"`              // 12 (rounded by Netdata)
	OldValue         float64 `json:"old_value"`          // 13
	Duration         int64   `json:"duration"`           // 15, seconds
	NonClearDuration int64   `json:"non_clear_duration"` // 16, seconds
}

// Alarm statuses as Netdata passes them.
const (
	AlarmClear    = "CLEAR"
	AlarmWarning  = "WARNING"
	AlarmCritical = "CRITICAL"
)
