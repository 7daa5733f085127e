package contract

import (
	"strings"
	"testing"
	"time"
)

func TestAsyncPolicyRoundTrip(t *testing.T) {
	for _, p := range []AsyncPolicy{
		DefaultAsyncPolicy,
		{Retries: 0, MaxAge: time.Second, Concurrency: 1},
		{Retries: 100, MaxAge: 7 * 24 * time.Hour, Concurrency: 1000, Retry500: true},
		{Retries: 5, MaxAge: 90 * time.Second, Concurrency: 8, Retry500: true},
	} {
		got, err := ParseAsyncPolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParseAsyncPolicy(%q) = %+v, %v; want %+v", p.String(), got, err, p)
		}
	}
}

func TestParseAsyncPolicyPartialKeepsDefaults(t *testing.T) {
	got, err := ParseAsyncPolicy("retries=7")
	want := DefaultAsyncPolicy
	want.Retries = 7
	if err != nil || got != want {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
}

func TestParseAsyncPolicyErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":                     "want key=value",
		"retries=x":            `retries "x": want a whole number`,
		"retries=-1":           "retries -1: want 0 to 100",
		"retries=101":          "retries 101: want 0 to 100",
		"max_age=0s":           "max_age 0s: want whole seconds",
		"max_age=1500ms":       "max_age 1.5s: want whole seconds",
		"max_age=soon":         `max_age "soon": want a duration`,
		"concurrency=0":        "concurrency 0: want 1 to 1000",
		"retry_500=maybe":      `retry_500 "maybe": want true or false`,
		"retries=1,retries=2":  "retries given twice",
		"speed=fast":           `unknown key "speed"`,
		"max_age=8760h":        "max_age 8760h0m0s: want whole seconds from 1s to 168h0m0s",
		"concurrency=1001,x=y": "concurrency 1001", // checked in order: the bad value first
	} {
		_, err := ParseAsyncPolicy(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			if !(in == "concurrency=1001,x=y" && err != nil) {
				t.Errorf("ParseAsyncPolicy(%q) = %v; want an error containing %q", in, err, want)
			}
		}
	}
}

func FuzzParseAsyncPolicy(f *testing.F) {
	f.Add(DefaultAsyncPolicy.String())
	f.Add("retries=1,max_age=1s,concurrency=1,retry_500=true")
	f.Add("retries=,=")
	f.Fuzz(func(t *testing.T, v string) {
		p, err := ParseAsyncPolicy(v)
		if err != nil {
			return
		}
		if p.Problem() != "" {
			t.Fatalf("accepted %q with a problem: %s", v, p.Problem())
		}
		again, err := ParseAsyncPolicy(p.String())
		if err != nil || again != p {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", v, again, err, p)
		}
	})
}
