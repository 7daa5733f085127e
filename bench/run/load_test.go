package main

import (
	"testing"
)

func TestParseWrkOutput(t *testing.T) {
	want := wrkResult{Requests: 158346, DurationUS: 2100528, Bytes: 28502280}
	want.Errors.Status, want.Errors.Timeout = 3, 1
	want.Latency.P50, want.Latency.P90, want.Latency.P99, want.Latency.Max, want.Latency.Mean = 173, 1827, 4830, 12499, 555.2

	tests := []struct {
		name    string
		in      string
		want    wrkResult
		wantErr bool
	}{
		{name: "golden", in: readTestdata(t, "wrk-output.txt"), want: want},
		{name: "no line (script not loaded)", in: "Running 2s test @ http://127.0.0.1:1/\n", wantErr: true},
		{name: "no requests", in: `BENCHJSON {"requests":0,"duration_us":2000000}`, wantErr: true},
		{name: "unknown field", in: `BENCHJSON {"requests":1,"duration_us":1,"extra":1}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrkOutput([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if n := want.errorCount(); n != 4 {
		t.Errorf("errorCount = %d, want 4", n)
	}
}

func TestParseFloorOutput(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    floorResult
		wantErr bool
	}{
		{
			name: "golden",
			in:   readTestdata(t, "spawnloop-output.json"),
			want: floorResult{Program: "/bin/cat", Iterations: 2720, PayloadBytes: 64, WallS: 2.000089, CPUS: 1.987147,
				SelfCPUS: 0.145084, ChildrenCPUS: 1.842063, CPUPerIterUS: 730.569},
		},
		{name: "empty", in: "", wantErr: true},
		{name: "no iterations", in: `{"iterations":0,"cpu_s":1}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFloorOutput([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
