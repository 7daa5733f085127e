package contract

// Paths of pulsed's HTTP API.
const (
	// CatalogPath is the read-only replica catalog (no token needed).
	CatalogPath = "/v1/replicas"
	// AlarmsPath is the scaler's webhook.
	AlarmsPath = "/v1/alarms"
)

// Catalog is what GET CatalogPath answers: every function pulsed sees in
// the swarm and its replicas. Version changes whenever anything in it
// changes and is also the response's ETag, so a poller can ask with
// If-None-Match and get 304 Not Modified.
type Catalog struct {
	Version   string            `json:"version"`
	Functions []CatalogFunction `json:"functions"` // sorted by name
	// Skipped lists the function services pulsed does not route because
	// their spec is unusable (a bad pulse.timeout or pulse.max-body label,
	// a name that is not a function name), with the reason: the gateway
	// and the scaler leave them out and keep serving the others.
	Skipped []SkippedFunction `json:"skipped,omitempty"` // sorted by name
}

// SkippedFunction is a function service left out of the catalog, and why.
type SkippedFunction struct {
	Name      string `json:"name"`
	ServiceID string `json:"service_id"`
	Reason    string `json:"reason"`
}

// CatalogFunction is one function: its service labels (LabelFunction,
// LabelTimeout, LabelScale*, ...), its desired replica count and its
// replicas.
type CatalogFunction struct {
	Name      string            `json:"name"`
	ServiceID string            `json:"service_id"`
	Labels    map[string]string `json:"labels"`
	Desired   int               `json:"desired"`
	Replicas  []Replica         `json:"replicas"` // sorted by task ID
}

// Replica is one task that has an address: running, or still running but
// told to stop (Draining), which the gateway takes out of rotation at once.
type Replica struct {
	TaskID   string `json:"task_id"`
	Slot     int    `json:"slot,omitempty"`
	Node     string `json:"node"`     // node ID
	Addr     string `json:"addr"`     // node address : published host port
	State    string `json:"state"`    // the task's observed state, e.g. "running"
	Draining bool   `json:"draining"` // desired state is no longer running
	// Routed is true while the gateway sends this replica requests: pulsed
	// put it into HAProxy's rotation (set it ready after its first good
	// probe) and has not drained it. A deploy or scale is ready when every
	// replica of the new spec is Routed.
	Routed bool `json:"routed"`
}
