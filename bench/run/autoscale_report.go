package main

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// The autoscale suite's report: raw trials, their per-stage breakdown and
// summaries, the goals, and the rendering. Everything here is pure.

// autoscaleReport is everything one run of the autoscale suite produced.
type autoscaleReport struct {
	labHead
	Config autoscaleConfig `json:"config"`

	Steps []stepTrial `json:"step_trials"`
	Cold  []coldTrial `json:"cold_trials"`

	Summary autoscaleSummary `json:"summary"`
	reportEnd
}

// autoscaleConfig is the suite's configuration as recorded with the results.
type autoscaleConfig struct {
	Quick  bool `json:"quick"`
	Trials int  `json:"trials_per_step"`
	// The step function's policy and handler.
	StepFunction string  `json:"step_function"`
	ColdFunction string  `json:"cold_function"`
	Metric       string  `json:"metric"`
	Target       float64 `json:"target"`
	Min          int     `json:"min"`
	Max          int     `json:"max"`
	HandlerMS    float64 `json:"handler_sleep_ms"`
	TimeoutS     float64 `json:"timeout_s"`
	// Steps: connections of the closed-loop load per step.
	Steps []autoscaleStep `json:"steps"`
	// The replicas' Docker health interval (0: no Docker health check) and drain grace.
	HealthIntervalMS float64 `json:"health_interval_ms"`
	DrainGraceMS     float64 `json:"drain_grace_ms"`
	// pulsed's settings the suite changes from the defaults.
	PulsedEnv []string `json:"pulsed_env"`
	// Pollers.
	TaskPollMS    float64 `json:"task_poll_ms"`
	HAProxyPollMS float64 `json:"haproxy_poll_ms"`
	BodyBytes     int     `json:"body_bytes"`
}

// autoscaleStep is one load step: closed-loop keep-alive connections
// through the gateway, each with one request outstanding.
type autoscaleStep struct {
	Name  string  `json:"name"`
	Conns int     `json:"connections"`
	Ratio float64 `json:"ratio"` // the demand over one replica's target
}

// stepTrial is one load step from one replica. Every time is in seconds
// after t0, the load's start; nil when it was not seen.
type stepTrial struct {
	Step  string  `json:"step"`
	Conns int     `json:"connections"`
	Trial int     `json:"trial"`
	Start string  `json:"start"` // t0, RFC 3339 with nanoseconds
	Load1 float64 `json:"load1"` // the host's 1-minute load average at t0

	// ScrapeS: the first per-second row of the utilisation chart above the
	// scale-up threshold (scaler.DefaultUpThreshold)
	// (whole seconds: Netdata's row time).
	ScrapeS *float64 `json:"scrape_s"`
	// AlarmS: the pulse_scale_up CRITICAL entry's `when` in Netdata's alarm
	// log (whole seconds).
	AlarmS     *float64 `json:"alarm_s"`
	AlarmValue float64  `json:"alarm_value,omitempty"`
	// HookS: pulsed logged the hook's POST (its debug line "alarm").
	HookS      *float64 `json:"hook_s"`
	HookResult string   `json:"hook_result,omitempty"`
	// UpdatedS: the service's UpdatedAt as Swarm stored the scaler's
	// update (read before the harness scales back).
	UpdatedS *float64 `json:"updated_s"`
	// ScaledS: the scaler's first ScaleEvent after t0 (its Time: after
	// ServiceUpdate returned).
	ScaledS   *float64       `json:"scaled_s"`
	Trigger   string         `json:"trigger,omitempty"`
	Decisions []stepDecision `json:"decisions,omitempty"`
	// ServiceReplicas is the service's count when the harness inspected it;
	// Foreign when that is not this pulsed's last decision.
	ServiceReplicas int              `json:"service_replicas"`
	Foreign         bool             `json:"foreign_change,omitempty"`
	TaskID          string           `json:"task_id,omitempty"`
	CreatedS        *float64         `json:"task_created_s"`
	RunningS        *float64         `json:"task_running_s"`
	TrafficS        *float64         `json:"traffic_s"`
	FullS           *float64         `json:"full_s"` // every replica of the first decision took traffic
	Serving         int              `json:"new_servers_serving"`
	Requests        int64            `json:"requests"`
	Failed          int64            `json:"failed"`
	Why             map[string]int64 `json:"failed_why,omitempty"`
	Error           string           `json:"error,omitempty"`
}

// stepDecision is one ScaleEvent of the function during a trial.
type stepDecision struct {
	AtS     float64 `json:"at_s"`
	From    int     `json:"from"`
	To      int     `json:"to"`
	Trigger string  `json:"trigger"`
	Reason  string  `json:"reason"`
}

// coldTrial is one request to the function at zero replicas.
type coldTrial struct {
	Trial    int     `json:"trial"`
	LatencyS float64 `json:"latency_s"`
	Status   int     `json:"status"`
	Error    string  `json:"error,omitempty"`
	Load1    float64 `json:"load1"` // the host's 1-minute load average before the request
}

// Stages of the step breakdown, in order.
var stepStages = []string{
	"step → scrape",
	"scrape → alarm",
	"alarm → hook",
	"hook → update stored",
	"stored → ServiceUpdate returned",
	"ServiceUpdate → task running",
	"task running → server took traffic",
}

// stageTimes returns a trial's stage durations in seconds, in stepStages'
// order; NaN where an end is missing. For a decision the periodic
// evaluation made (trigger resync), the alarm and hook stages are NaN and
// the scrape → alarm stage is NaN too: the decision did not wait for them.
func (t stepTrial) stageTimes() []float64 {
	pts := []*float64{ptr(0), t.ScrapeS, t.AlarmS, t.HookS, t.UpdatedS, t.ScaledS, t.RunningS, t.TrafficS}
	if t.Trigger != "" && t.Trigger != "alarm" {
		pts[2], pts[3] = nil, nil
	}
	out := make([]float64, len(stepStages))
	for i := range out {
		a, b := pts[i], pts[i+1]
		if a == nil || b == nil {
			out[i] = math.NaN()
			continue
		}
		out[i] = *b - *a
	}
	return out
}

func ptr(v float64) *float64 { return &v }

// total is the step → first extra replica serving time, +Inf when the trial
// failed (so that failed trials count against the goals).
func (t stepTrial) total() float64 {
	if t.TrafficS == nil || t.Error != "" {
		return math.Inf(1)
	}
	return *t.TrafficS
}

// firstTo is the replica count of the trial's first decision, 0 for none.
func (t stepTrial) firstTo() int {
	if len(t.Decisions) == 0 {
		return 0
	}
	return t.Decisions[0].To
}

// autoscaleSummary summarises the trials.
type autoscaleSummary struct {
	Steps []stepSummary `json:"steps"`
	Cold  coldSummary   `json:"cold"`
}

// stepSummary is one step's trials.
type stepSummary struct {
	Step   string  `json:"step"`
	Conns  int     `json:"connections"`
	Ratio  float64 `json:"ratio"`
	Trials int     `json:"trials"`
	Failed int     `json:"failed"` // no extra replica took traffic
	secStats
	// StageMedianS: per stage, the median over the trials where both ends
	// were seen (NaN for none), in stepStages' order.
	StageMedianS []secs `json:"stage_median_s"`
	StageN       []int  `json:"stage_n"`
	FullMedianS  secs   `json:"full_median_s"`
	// FirstTo counts the trials by their first decision's replica count;
	// Triggers by what triggered it.
	FirstTo  map[int]int    `json:"first_decision_replicas"`
	Triggers map[string]int `json:"first_decision_triggers"`
	// OneDecision: trials whose first decision was in Want ± 1.
	Want           int   `json:"want_replicas"`
	InRange        int   `json:"first_decision_in_range"`
	Requests       int64 `json:"requests"`
	FailedRequests int64 `json:"failed_requests"`
}

// coldSummary is the cold-start trials.
type coldSummary struct {
	Trials int `json:"trials"`
	OK     int `json:"ok"` // answered 200
	secStats
}

// secStats are the median, p95 and range of trials' times, a failed trial
// counted as +Inf.
type secStats struct {
	MedianS secs `json:"median_s"` // +Inf if half failed
	P95S    secs `json:"p95_s"`
	MinS    secs `json:"min_s"`
	MaxS    secs `json:"max_s"`
}

// newSecStats summarises xs; all zero for none.
func newSecStats(xs []float64) secStats {
	if len(xs) == 0 {
		return secStats{}
	}
	return secStats{secs(median(xs)), secs(percentile(xs, 95)), secs(slices.Min(xs)), secs(slices.Max(xs))}
}

// rangeCell is the range as a table cell.
func (s secStats) rangeCell() string { return asSecCell(s.MinS) + "–" + asSecCell(s.MaxS) }

func summarizeAutoscale(steps []autoscaleStep, trials []stepTrial, cold []coldTrial) autoscaleSummary {
	var s autoscaleSummary
	for _, st := range steps {
		sum := stepSummary{Step: st.Name, Conns: st.Conns, Ratio: st.Ratio, FirstTo: map[int]int{}, Triggers: map[string]int{},
			Want: int(math.Ceil(st.Ratio))}
		var totals, full []float64
		stages := make([][]float64, len(stepStages))
		for _, t := range trials {
			if t.Step != st.Name {
				continue
			}
			sum.Trials++
			sum.Requests += t.Requests
			sum.FailedRequests += t.Failed
			tot := t.total()
			totals = append(totals, tot)
			if math.IsInf(tot, 1) {
				sum.Failed++
			}
			for i, v := range t.stageTimes() {
				stages[i] = append(stages[i], v)
			}
			if t.FullS != nil {
				full = append(full, *t.FullS)
			}
			if n := t.firstTo(); n > 0 {
				sum.FirstTo[n]++
				sum.Triggers[t.Trigger]++
				if n >= sum.Want-1 && n <= sum.Want+1 {
					sum.InRange++
				}
			}
		}
		if sum.Trials == 0 {
			continue
		}
		sum.secStats = newSecStats(totals)
		for _, v := range stages {
			ok := slices.DeleteFunc(v, math.IsNaN)
			sum.StageN = append(sum.StageN, len(ok))
			sum.StageMedianS = append(sum.StageMedianS, secs(median(ok)))
		}
		sum.FullMedianS = secs(median(full))
		s.Steps = append(s.Steps, sum)
	}
	var lat []float64
	for _, c := range cold {
		s.Cold.Trials++
		if c.Status == 200 && c.Error == "" {
			s.Cold.OK++
			lat = append(lat, c.LatencyS)
		} else {
			lat = append(lat, math.Inf(1))
		}
	}
	s.Cold.secStats = newSecStats(lat)
	return s
}

// The goals.
const (
	goalStepMedianS = 4.0 // 5× step → first extra replica serving, median
	goalStepP95S    = 6.0 // and p95
	goalColdMedianS = 1.0 // first request at zero replicas, median
	// goalStep is the step the goals are set for.
	goalStep = "5×"
)

func autoscaleGoals(s autoscaleSummary) []goal {
	var out []goal
	// check adds a goal measured when ok; a value that is not a number
	// (every trial failed) fails it.
	check := func(name string, v, limit float64, unit, note string, ok bool) {
		g := goal{Name: name, Value: v, Limit: limit, Unit: unit, Note: note}
		switch {
		case !ok:
			g.Status, g.Value = skip, 0
		case math.IsInf(v, 1) || math.IsNaN(v):
			g.Status, g.Value, g.NoValue = fail, 0, true
			g.Note = strings.TrimPrefix(g.Note+"; no value: trials failed", "; ")
		default:
			g.Value = round3(v)
			g.Status = verdict(g.Value, limit)
		}
		out = append(out, g)
	}
	i := slices.IndexFunc(s.Steps, func(st stepSummary) bool { return st.Step == goalStep })
	var five stepSummary
	note, decisions := "", ""
	if i >= 0 {
		five = s.Steps[i]
		note = fmt.Sprintf("%d trials, %d without an extra replica serving", five.Trials, five.Failed)
		decisions = "first decisions: " + fmtCounts(five.FirstTo, "none")
	}
	check("5× step → first extra replica serving, median", float64(five.MedianS), goalStepMedianS, "s", note, i >= 0)
	check("5× step → first extra replica serving, p95", float64(five.P95S), goalStepP95S, "s", note, i >= 0)
	check("5× step: first decision 5 ± 1 replicas, trials outside", float64(five.Trials-five.InRange), 0, "trials", decisions, i >= 0)
	c := s.Cold
	check("cold start from zero: first request, median", float64(c.MedianS), goalColdMedianS, "s", fmt.Sprintf("%d trials", c.Trials), c.Trials > 0)
	check("cold start: requests not answered 200", float64(c.Trials-c.OK), 0, "requests", "", c.Trials > 0)
	return out
}

// fmtCounts renders {5: 3, 2: 1} as "2 ×1, 5 ×3", and no counts as empty.
func fmtCounts[K cmp.Ordered](m map[K]int, empty string) string {
	if len(m) == 0 {
		return empty
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%v ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func asSecCell(v secs) string {
	f := float64(v)
	switch {
	case math.IsNaN(f):
		return "–"
	case math.IsInf(f, 1):
		return "failed"
	}
	return fmt.Sprintf("%.2f", f)
}

var stepHeader = []string{"step", "trials", "median s", "p95 s", "range s", "all of 1st decision serving (median s)", "1st decision → replicas", "triggered by", "requests / failed"}

func stepRows(s autoscaleSummary) [][]string {
	var rows [][]string
	for _, st := range s.Steps {
		trials := fmt.Sprint(st.Trials)
		if st.Failed > 0 {
			trials += fmt.Sprintf(" (%d failed)", st.Failed)
		}
		rows = append(rows, []string{
			fmt.Sprintf("%s (%d conns, %g×)", st.Step, st.Conns, st.Ratio), trials, asSecCell(st.MedianS), asSecCell(st.P95S),
			st.rangeCell(), asSecCell(st.FullMedianS), fmtCounts(st.FirstTo, "none"), fmtCounts(st.Triggers, ""),
			fmt.Sprintf("%d / %d", st.Requests, st.FailedRequests),
		})
	}
	return rows
}

// stageTable has a row per stage and the total, a column per step.
func stageTable(s autoscaleSummary) ([]string, [][]string) {
	header := []string{"stage"}
	rows := make([][]string, len(stepStages)+1)
	for i, name := range stepStages {
		rows[i] = []string{name}
	}
	rows[len(stepStages)] = []string{"**total: step → first extra replica serving**"}
	for _, st := range s.Steps {
		header = append(header, st.Step+" median s (n)")
		for i := range stepStages {
			if i < len(st.StageMedianS) {
				rows[i] = append(rows[i], fmt.Sprintf("%s (%d)", asSecCell(st.StageMedianS[i]), st.StageN[i]))
			}
		}
		rows[len(stepStages)] = append(rows[len(stepStages)], fmt.Sprintf("%s (%d)", asSecCell(st.MedianS), st.Trials))
	}
	return header, rows
}

var coldHeader = []string{"trials", "answered 200", "median s", "p95 s", "range s"}

func coldRows(c coldSummary) [][]string {
	if c.Trials == 0 {
		return nil
	}
	return [][]string{{fmt.Sprint(c.Trials), fmt.Sprint(c.OK), asSecCell(c.MedianS), asSecCell(c.P95S), c.rangeCell()}}
}

// trialHeader and trialRows list every step trial.
var trialHeader = []string{"step", "trial", "scrape", "alarm", "hook", "stored", "scaled", "running", "traffic", "decisions", "failed req"}

func trialRows(ts []stepTrial) [][]string {
	var rows [][]string
	for _, t := range ts {
		cell := func(p *float64) string {
			if p == nil {
				return "–"
			}
			return fmt.Sprintf("%.2f", *p)
		}
		var ds []string
		for _, d := range t.Decisions {
			ds = append(ds, fmt.Sprintf("%d→%d %s @%.2f", d.From, d.To, d.Trigger, d.AtS))
		}
		dec := strings.Join(ds, ", ")
		if t.Error != "" {
			dec += " (error: " + truncate(t.Error, 120) + ")"
		}
		rows = append(rows, []string{t.Step, fmt.Sprint(t.Trial), cell(t.ScrapeS), cell(t.AlarmS), cell(t.HookS), cell(t.UpdatedS),
			cell(t.ScaledS), cell(t.RunningS), cell(t.TrafficS), dec, fmt.Sprint(t.Failed)})
	}
	return rows
}

func autoscaleSetup(r autoscaleReport) string {
	m, c := r.Machine, r.Config
	var steps []string
	for _, s := range c.Steps {
		steps = append(steps, fmt.Sprintf("%s = %d connections", s.Name, s.Conns))
	}
	return fmt.Sprintf("%d CPUs (%s), kernel %s, %s, %s, %s, %s; %d trial(s) per step (%s); "+
		"function: fork mode, a static C handler sleeping %g ms then echoing, scale %s target %g min %d max %d, Docker health interval %g ms (0: none); pulsed: %s",
		m.CPUs, m.CPUModel, m.Kernel, m.Go, r.Engine, r.HAProxy, r.Netdata, c.Trials, strings.Join(steps, ", "),
		c.HandlerMS, c.Metric, c.Target, c.Min, c.Max, c.HealthIntervalMS, strings.Join(c.PulsedEnv, " "))
}

const (
	stepCaption = "Load step → the first extra replica answering through HAProxy. From one replica, a closed-loop load through the gateway " +
		"(each connection: a POST, wait for the answer, repeat; keep-alive, no retries) starts at t0; the total ends when HAProxy's runtime API " +
		"(`show stat`, polled every 15 ms) first shows a server of a new replica with sessions (a slot pointed at a new replica's address, its stot above what the slot had counted at t0). Failed trials count as infinitely slow."
	stageCaption = "Where the time goes (medians per stage; a stage counts the trials where both of its ends were seen). " +
		"scrape = the first per-second row of the function's utilisation chart above the scale-up threshold (110 %) (Netdata's row time, whole seconds); " +
		"alarm = the `pulse_scale_up` CRITICAL entry's `when` in Netdata's alarm log (whole seconds); hook = pulsed's debug log line of the " +
		"webhook; update stored = the service's `UpdatedAt` in Swarm; ServiceUpdate returned = the scaler's ScaleEvent time; task running = the new task's " +
		"status timestamp when it turned running (task list polled every 20 ms; the replicas have no Docker health check, as `pulse deploy` gives them on this engine, so running means the container started); " +
		"server took traffic = as above. Stages of whole-second ends are ±1 s each; their sum is exact. Alarm and hook stages are left out of " +
		"trials whose first decision came from pulsed's periodic evaluation (trigger resync) instead."
	coldCaption = "Cold start from zero: the second function (min 0) scaled to 0 through the Docker API and gone from pulsed's catalog and HAProxy, " +
		"then one POST through the gateway on a new connection, timed to the end of its answer. HAProxy sends it to its backup server (pulsed's " +
		"cold-start path), which scales the function to 1 and forwards the request once the replica answers its health check."
)

func renderAutoscale(r autoscaleReport, md bool, jsonPath string) string {
	b := newReportDoc(md, "autoscale", "", r.Started, jsonPath, autoscaleSetup(r))
	b.section(stepCaption, stepHeader, stepRows(r.Summary))
	stageHeader, stageRows := stageTable(r.Summary)
	b.section(stageCaption, stageHeader, stageRows)
	b.section(coldCaption, coldHeader, coldRows(r.Summary.Cold))
	b.goals(r.Goals)
	if md {
		b.WriteString("\n<details><summary>Every step trial (seconds after t0)</summary>\n\n")
		b.table(trialHeader, trialRows(r.Steps))
		b.WriteString("\n</details>\n")
	} else {
		b.WriteString("\nevery step trial (seconds after t0):\n")
		b.table(trialHeader, trialRows(r.Steps))
	}
	b.notes(r.Notes)
	return b.String()
}
