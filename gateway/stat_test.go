package gateway

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	f, err := os.Open("testdata/show-stat.csv") // HAProxy 2.6.12's answer to `show stat -1 2 -1`
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ParseStat(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []BackendStat{
		{Backend: "fn_hello", Sessions: 0, Queue: 0, Total: 1, Requests: 1},
		{Backend: "fn_echo-x"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestParseStatErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "empty answer"},
		{"no header", "fn_x,BACKEND,0\n", "does not start"},
		{"missing column", "# pxname,svname,scur\n", `lacks column "qcur"`},
		{"bad count", "# pxname,svname,qcur,scur,stot,req_tot\nfn_x,BACKEND,0,zero,1,1\n", `scur="zero"`},
		{"negative", "# pxname,svname,qcur,scur,stot,req_tot\nfn_x,BACKEND,-1,0,1,1\n", `qcur="-1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseStat(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	// Short rows and frontends are skipped or read as zero, not errors.
	got, err := ParseStat(strings.NewReader("# pxname,svname,qcur,scur,stot,req_tot\ngateway,FRONTEND,,,5,5\nfn_a,BACKEND,1\n\n"))
	if err != nil || !reflect.DeepEqual(got, []BackendStat{{Backend: "fn_a", Queue: 1}}) {
		t.Errorf("got %+v, %v", got, err)
	}
}

func FuzzParseStat(f *testing.F) {
	if b, err := os.ReadFile("testdata/show-stat.csv"); err == nil {
		f.Add(string(b))
	}
	f.Add("# pxname,svname,qcur,scur,stot,req_tot\nfn_a,BACKEND,1,2,3,4\n")
	f.Fuzz(func(t *testing.T, in string) {
		stats, err := ParseStat(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, s := range stats {
			if s.Sessions < 0 || s.Queue < 0 || s.Total < 0 || s.Requests < 0 {
				t.Fatalf("negative counter in %+v", s)
			}
		}
	})
}

// TestParseServerStat reads a real `show stat fn_hello 4 -1` of HAProxy
// 2.6 (a slot in use after 50 one-request connections, seven free slots,
// the backup server in maintenance).
func TestParseServerStat(t *testing.T) {
	f, err := os.Open("testdata/show-stat-servers.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ParseServerStat(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 9 {
		t.Fatalf("%d servers, want 9: %+v", len(got), got)
	}
	want := ServerStat{Backend: "fn_hello", Server: "s1", Addr: "127.0.0.1:49770", Status: "UP", Sessions: 50, Connects: 50}
	if got[0] != want {
		t.Fatalf("s1: %+v, want %+v", got[0], want)
	}
	if got[0].ConnectRatio() != 1 || (ServerStat{}).ConnectRatio() != 0 {
		t.Fatalf("connect ratio %v", got[0].ConnectRatio())
	}
	if b := got[8]; b.Server != BackupServerName || b.Status != "MAINT" {
		t.Fatalf("backup: %+v", b)
	}
	for _, bad := range []string{
		"",
		"pxname,svname\n",
		"# pxname,svname,status,stot,connect\nfn,s1,UP,1,1\n",         // no reuse column
		"# pxname,svname,status,stot,connect,reuse\nfn,s1,UP,1,x,0\n", // not a number
		"# pxname,svname,status,stot,connect,reuse\nfn,s1,UP,-1,0,0\n",
	} {
		if _, err := ParseServerStat(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzParseServerStat(f *testing.F) {
	if b, err := os.ReadFile("testdata/show-stat-servers.csv"); err == nil {
		f.Add(string(b))
	}
	f.Add("# pxname,svname,status,stot,connect,reuse\nfn_a,s1,UP,3,1,2\n")
	f.Fuzz(func(t *testing.T, in string) {
		stats, err := ParseServerStat(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, s := range stats {
			if s.Sessions < 0 || s.Connects < 0 || s.Reuses < 0 || s.ConnectRatio() < 0 {
				t.Fatalf("negative counter in %+v", s)
			}
			if s.Server == "BACKEND" || s.Server == "FRONTEND" {
				t.Fatalf("a %s row in %+v", s.Server, s)
			}
		}
	})
}
