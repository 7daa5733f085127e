package provision

import (
	"errors"
	"strings"
	"testing"
)

func fixedUser() (string, error) { return "alice", nil }

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Target
		wantErr string // a part of the error; "" for none
	}{
		{in: "node1", want: Target{User: "alice", Host: "node1", Port: 22}},
		{in: "root@node1", want: Target{User: "root", Host: "node1", Port: 22}},
		{in: "root@node1:2222", want: Target{User: "root", Host: "node1", Port: 2222}},
		{in: "172.31.250.11:22", want: Target{User: "alice", Host: "172.31.250.11", Port: 22}},
		{in: "node-1.lab_x.example", want: Target{User: "alice", Host: "node-1.lab_x.example", Port: 22}},
		{in: "bob@corp@node1", want: Target{User: "bob@corp", Host: "node1", Port: 22}},
		{in: "fd00::1", want: Target{User: "alice", Host: "fd00::1", Port: 22}},
		{in: "root@[fd00::1]:2222", want: Target{User: "root", Host: "fd00::1", Port: 2222}},
		{in: "[fd00::1]", want: Target{User: "alice", Host: "fd00::1", Port: 22}},
		{in: "node1:65535", want: Target{User: "alice", Host: "node1", Port: 65535}},

		{in: "", wantErr: "empty"},
		{in: "@node1", wantErr: "empty user"},
		{in: "root@", wantErr: "empty host"},
		{in: "root@:22", wantErr: "empty host"},
		{in: "node1:", wantErr: "empty port"},
		{in: "node1:ssh", wantErr: `port "ssh" is not a number`},
		{in: "node1:0", wantErr: "not in 1-65535"},
		{in: "node1:65536", wantErr: "not in 1-65535"},
		{in: "node1:+22", wantErr: "not a number"},
		{in: "node 1", wantErr: "space or control"},
		{in: "node1\n", wantErr: "space or control"},
		{in: "-oProxyCommand=x", wantErr: "may not start with '-'"},
		{in: "-l@node1", wantErr: "user may not start with '-'"},
		{in: "node/1", wantErr: `'/' is not allowed`},
		{in: "[fd00::1", wantErr: "without ']'"},
		{in: "[node1]:22", wantErr: "not an IPv6 address"},
		{in: "[10.0.0.1]", wantErr: "not an IPv6 address"},
		{in: "[fd00::1]x", wantErr: `unexpected "x"`},
		{in: "fd00::1:22:zz", wantErr: "write [address]:port"},
		{in: strings.Repeat("a", 254), wantErr: "longer than 253"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseTarget(tc.in, fixedUser)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrBadTarget) {
					t.Fatalf("parseTarget(%q) = %+v, %v; want an ErrBadTarget containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseTarget(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParseTargetNoCurrentUser(t *testing.T) {
	_, err := parseTarget("node1", func() (string, error) { return "", errors.New("cannot tell") })
	if !errors.Is(err, ErrBadTarget) || !strings.Contains(err.Error(), "cannot tell") {
		t.Errorf("err = %v", err)
	}
	if got, err := parseTarget("root@node1", func() (string, error) { return "", errors.New("unused") }); err != nil || got.User != "root" {
		t.Errorf("with a user = %+v, %v", got, err)
	}
}

func TestTargetString(t *testing.T) {
	for _, tc := range []struct {
		t    Target
		want string
	}{
		{Target{User: "root", Host: "node1", Port: 22}, "root@node1:22"},
		{Target{User: "root", Host: "fd00::1", Port: 2222}, "root@[fd00::1]:2222"},
	} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.t, got, tc.want)
		}
	}
}

// FuzzParseTarget: ParseTarget never panics; what it accepts is a valid
// target that String writes back to the same Target.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"node1", "root@node1:2222", "[fd00::1]:22", "fd00::1", "a@b@c", "@", ":", "[", "x:0", "::ffff:1.2.3.4", "-x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseTarget(s, fixedUser)
		if err != nil {
			if !errors.Is(err, ErrBadTarget) {
				t.Fatalf("parseTarget(%q): error %v is not an ErrBadTarget", s, err)
			}
			return
		}
		if got.User == "" || got.Host == "" || got.Port < 1 || got.Port > 65535 {
			t.Fatalf("parseTarget(%q) = %+v: an empty or out-of-range field", s, got)
		}
		if strings.HasPrefix(got.Host, "-") || strings.HasPrefix(got.User, "-") {
			t.Fatalf("parseTarget(%q) = %+v: starts with '-'", s, got)
		}
		again, err := parseTarget(got.String(), fixedUser)
		if err != nil || again != got {
			t.Fatalf("parseTarget(%q) = %+v; its String %q parses to %+v, %v", s, got, got.String(), again, err)
		}
	})
}
