package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestAutoscaleCollectorGolden renders stored results of the autoscale and
// collector suites (bench/results) and checks the text and markdown against
// golden files; run with -update to rewrite them after an intended change.
// With AUTOSCALE_CAPTURE=<dir> it also writes every stored result's
// renderings and re-marshalled JSON there, for comparing a refactoring.
func TestAutoscaleCollectorGolden(t *testing.T) {
	capture := os.Getenv("AUTOSCALE_CAPTURE")
	for _, tc := range []struct {
		suite  string
		golden string // the stored result checked against testdata
		render func(b []byte, md bool, rel string) (string, any, error)
	}{
		{suiteAutoscale, "autoscale-20261126T024550Z.json", func(b []byte, md bool, rel string) (string, any, error) {
			var r autoscaleReport
			err := json.Unmarshal(b, &r)
			if capture != "" { // the pure steps, recomputed from the trials
				r.Summary = summarizeAutoscale(r.Config.Steps, r.Steps, r.Cold)
				r.Goals = autoscaleGoals(r.Summary)
				r.Notes = autoscaleNotes(r)
			}
			return renderAutoscale(r, md, rel), r, err
		}},
		{suiteCollector, "collector-20261126T030315Z.json", func(b []byte, md bool, rel string) (string, any, error) {
			var r collectorReport
			err := json.Unmarshal(b, &r)
			if capture != "" {
				r.Goals = collectorGoals(r)
			}
			return renderCollector(r, md, rel), r, err
		}},
	} {
		files, err := filepath.Glob(filepath.Join("..", "results", tc.suite+"-*.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			name := filepath.Base(f)
			if capture == "" && name != tc.golden {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rel := "results/" + name
			text, rep, err := tc.render(b, false, rel)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			md, _, _ := tc.render(b, true, rel)
			if capture != "" {
				js, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for ext, s := range map[string]string{".txt": text, ".md": md, ".json": string(js)} {
					if err := os.WriteFile(filepath.Join(capture, name+ext), []byte(s), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			if capture != "" || name != tc.golden {
				continue
			}
			for ext, got := range map[string]string{".txt": text, ".md": md} {
				golden := filepath.Join("testdata", tc.suite+"-results"+ext)
				if *update {
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatal(err)
				}
				if got != string(want) {
					t.Errorf("%s renders differently from %s (run go test ./bench/run -update after an intended change):\n%s", name, golden, got)
				}
			}
		}
	}
}
