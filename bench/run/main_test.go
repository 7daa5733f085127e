package main

import (
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestParseFlags(t *testing.T) {
	def := defaultConfig()
	def.Suite = "watchdog"
	quick := def
	quick.Quick, quick.Rounds, quick.Duration, quick.QuietWait = true, 1, 2*time.Second, time.Second
	quick.Trials, quick.ScaleTrials = 1, 3
	quickRounds := quick
	quickRounds.Rounds = 3
	only := def
	only.Only = []string{"bare", "inproc"}
	fn := def
	fn.Suite = "functions"
	fnQuick := quick
	fnQuick.Suite = "functions"
	fnQuickTrials := fnQuick
	fnQuickTrials.Trials = 2
	fnOnly := fn
	fnOnly.Only = []string{"build", "scale"}
	gw := def
	gw.Suite = "gateway"
	gwQuick := quick
	gwQuick.Suite = "gateway"
	gwOnly := gw
	gwOnly.Only = []string{"latency", "scale"}
	aqOnly := def
	aqOnly.Suite, aqOnly.Only = "async", []string{"queuescale"}
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr bool
	}{
		{name: "defaults", args: []string{"-suite", "watchdog"}, want: def},
		{name: "quick", args: []string{"-suite", "watchdog", "-quick"}, want: quick},
		{name: "quick keeps explicit rounds", args: []string{"-suite", "watchdog", "-quick", "-rounds", "3"}, want: quickRounds},
		{name: "only", args: []string{"-suite", "watchdog", "-only", "bare,inproc"}, want: only},
		{name: "no suite", args: nil, wantErr: true},
		{name: "unknown suite", args: []string{"-suite", "nosuch"}, wantErr: true},
		{name: "fractional duration", args: []string{"-suite", "watchdog", "-duration", "1500ms"}, wantErr: true},
		{name: "too few connections", args: []string{"-suite", "watchdog", "-threads", "4", "-c-fork", "2"}, wantErr: true},
		{name: "body too large", args: []string{"-suite", "watchdog", "-body", "5000"}, wantErr: true},
		{name: "stray argument", args: []string{"-suite", "watchdog", "extra"}, wantErr: true},
		{name: "functions", args: []string{"-suite", "functions"}, want: fn},
		{name: "functions quick", args: []string{"-suite", "functions", "-quick"}, want: fnQuick},
		{name: "functions quick keeps explicit trials", args: []string{"-suite", "functions", "-quick", "-trials", "2"}, want: fnQuickTrials},
		{name: "functions stages", args: []string{"-suite", "functions", "-only", "build,scale"}, want: fnOnly},
		{name: "functions unknown stage", args: []string{"-suite", "functions", "-only", "bare"}, wantErr: true},
		{name: "no trials", args: []string{"-suite", "functions", "-trials", "0"}, wantErr: true},
		{name: "no scale trials", args: []string{"-suite", "functions", "-scale-trials", "0"}, wantErr: true},
		{name: "the idle stage is gone", args: []string{"-suite", "functions", "-only", "idle"}, wantErr: true},
		{name: "gateway", args: []string{"-suite", "gateway"}, want: gw},
		{name: "gateway quick", args: []string{"-suite", "gateway", "-quick"}, want: gwQuick},
		{name: "gateway stages", args: []string{"-suite", "gateway", "-only", "latency,scale"}, want: gwOnly},
		{name: "gateway unknown stage", args: []string{"-suite", "gateway", "-only", "idle"}, wantErr: true},
		{name: "async stage", args: []string{"-suite", "async", "-only", "queuescale"}, want: aqOnly},
		{name: "async unknown stage", args: []string{"-suite", "async", "-only", "latency"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got.Flags["suite"] != tt.want.Suite {
				t.Errorf("recorded flags %v lack -suite %s", got.Flags, tt.want.Suite)
			}
			got.Flags = nil
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestPayload(t *testing.T) {
	for _, n := range []int{1, 16, 64, 100} {
		if got := payload(n); len(got) != n || !strings.HasPrefix(got, "0123456789abcdef"[:min(n, 16)]) {
			t.Errorf("payload(%d) = %q", n, got)
		}
	}
	// post.lua's default body must be the harness's 64-byte payload.
	if got := strings.Repeat("0123456789abcdef", 4); payload(64) != got {
		t.Errorf("payload(64) = %q, want post.lua's %q", payload(64), got)
	}
}
