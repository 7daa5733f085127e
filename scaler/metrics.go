package scaler

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"sync"
)

// Metric names (README's metrics table). pulsed's own series, in the
// Prometheus text format at contract.PulsedMetricsPath.
const (
	metricDecisions       = "pulsed_scaler_decisions_total"
	metricAlarms          = "pulsed_scaler_alarms_total"
	metricReconciles      = "pulsed_scaler_evaluations_total"
	metricConflicts       = "pulsed_scaler_service_update_conflicts_total"
	metricErrors          = "pulsed_scaler_errors_total"
	metricWebhookDuration = "pulsed_scaler_webhook_duration_seconds"
	metricAlarmLatency    = "pulsed_scaler_alarm_to_scale_seconds"
)

// scalerMetrics is the scaler's own registry: a few counters and two
// histograms, written by hand (no global registry, nothing to register).
type scalerMetrics struct {
	decisions       *counterVec
	alarms          *counterVec
	reconciles      *counterVec
	conflicts       *counterVec
	errors          *counterVec
	webhookDuration *histogram
	alarmLatency    *histogram
}

func newScalerMetrics() *scalerMetrics {
	return &scalerMetrics{
		decisions:  newCounterVec(metricDecisions, "Replica count changes applied, by direction (up, down).", "direction", "up", "down"),
		alarms:     newCounterVec(metricAlarms, "Alarm webhook requests, by result.", "result", AlarmAccepted, AlarmDuplicate, AlarmReordered, AlarmStale),
		reconciles: newCounterVec(metricReconciles, "Evaluations of a function, by trigger.", "trigger"),
		conflicts:  newCounterVec(metricConflicts, "ServiceUpdate calls refused because the service changed since it was read.", ""),
		errors:     newCounterVec(metricErrors, "Failed calls, by operation (inspect, update, utilisation).", "op"),
		webhookDuration: newHistogram(metricWebhookDuration, "Time to answer an alarm webhook request.",
			[]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1}),
		alarmLatency: newHistogram(metricAlarmLatency, "From an alarm's time (whole seconds) to the replica change it led to.",
			[]float64{0.5, 1, 1.5, 2, 3, 5, 10, 30}),
	}
}

func (m *scalerMetrics) write(w io.Writer) error {
	for _, c := range []*counterVec{m.alarms, m.conflicts, m.decisions, m.errors, m.reconciles} {
		if err := c.write(w); err != nil {
			return err
		}
	}
	for _, h := range []*histogram{m.alarmLatency, m.webhookDuration} {
		if err := h.write(w); err != nil {
			return err
		}
	}
	return nil
}

// counterVec is a counter with at most one label ("" for none).
type counterVec struct {
	name, help, label string
	mu                sync.Mutex
	vals              map[string]uint64
}

// newCounterVec returns a counter; the given label values start at 0 so
// they show before they first count.
func newCounterVec(name, help, label string, values ...string) *counterVec {
	c := &counterVec{name: name, help: help, label: label, vals: map[string]uint64{}}
	if label == "" {
		c.vals[""] = 0
	}
	for _, v := range values {
		c.vals[v] = 0
	}
	return c
}

func (c *counterVec) inc(value string) {
	c.mu.Lock()
	c.vals[value]++
	c.mu.Unlock()
}

func (c *counterVec) get(value string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.vals[value]
}

func (c *counterVec) write(w io.Writer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", c.name, c.help, c.name); err != nil {
		return err
	}
	keys := make([]string, 0, len(c.vals))
	for k := range c.vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		lbl := ""
		if c.label != "" {
			lbl = "{" + c.label + "=" + strconv.Quote(k) + "}"
		}
		if _, err := fmt.Fprintf(w, "%s%s %d\n", c.name, lbl, c.vals[k]); err != nil {
			return err
		}
	}
	return nil
}

// histogram is a Prometheus histogram without labels.
type histogram struct {
	name, help string
	bounds     []float64
	mu         sync.Mutex
	counts     []uint64 // per bucket, not cumulative; the last is +Inf
	sum        float64
}

func newHistogram(name, help string, bounds []float64) *histogram {
	return &histogram{name: name, help: help, bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v) // first bound ≥ v: le is inclusive
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.mu.Unlock()
}

func (h *histogram) write(w io.Writer) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", h.name, h.help, h.name); err != nil {
		return err
	}
	var cum uint64
	for i, n := range h.counts {
		cum += n
		le := "+Inf"
		if i < len(h.bounds) {
			le = strconv.FormatFloat(h.bounds[i], 'g', -1, 64)
		}
		if _, err := fmt.Fprintf(w, "%s_bucket{le=%q} %d\n", h.name, le, cum); err != nil {
			return err
		}
	}
	sum := strconv.FormatFloat(h.sum, 'g', -1, 64)
	if math.IsNaN(h.sum) {
		sum = "NaN"
	}
	_, err := fmt.Fprintf(w, "%s_sum %s\n%s_count %d\n", h.name, sum, h.name, cum)
	return err
}
