package catalog

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
)

// catalogStaticSource is a Source that answers from its fields.
type catalogStaticSource struct {
	cat contract.Catalog
	at  time.Time
	err error
}

func (s catalogStaticSource) Current() (contract.Catalog, time.Time, error) {
	return s.cat, s.at, s.err
}

// catalogGolden is the catalog of testdata/catalog.json: two functions, one
// scaling down with a replica draining.
func catalogGolden() contract.Catalog {
	cat, _ := build(input{
		services: []swarm.Service{
			catalogService("hello", 1, contract.LabelTimeout+"=5s", contract.LabelScaleMax+"=3"),
			catalogService("echo", 0),
		},
		tasks: []swarm.Task{
			catalogTask("hello", "t1", 1, "n1", catRunning, catRunning, 32768),
			catalogTask("hello", "t2", 2, "n2", catRemove, catRunning, 0),
		},
		nodes: catalogNodes,
		addrs: map[string]string{"t2": "10.0.0.2:32769"},
	})
	return cat
}

// TestCatalogHandler checks the answers of GET /v1/replicas: status,
// headers and body, against testdata/catalog.json for the catalog itself.
func TestCatalogHandler(t *testing.T) {
	golden, err := os.ReadFile("testdata/catalog.json")
	if err != nil {
		t.Fatal(err)
	}
	cat := catalogGolden()
	etag := `"` + cat.Version + `"`
	ready := catalogStaticSource{cat: cat, at: time.Now()}
	stale := catalogStaticSource{cat: cat, at: time.Now(), err: errors.New("list services: engine exploded")}
	notReady := catalogStaticSource{err: errors.Join(ErrNotReady, errors.New("list services: engine exploded"))}

	type response struct {
		Status int
		Header map[string]string
		Body   string
	}
	ok := response{Status: 200, Header: map[string]string{
		"Cache-Control": "no-cache", "Content-Type": "application/json", "Etag": etag,
	}, Body: string(golden)}
	notModified := response{Status: 304, Header: map[string]string{"Cache-Control": "no-cache", "Etag": etag}}

	tests := []struct {
		name   string
		src    Source
		method string
		header map[string]string
		want   response
	}{
		{name: "catalog", src: ready, method: "GET", want: ok},
		{name: "stale after a failed poll", src: stale, method: "GET", want: ok},
		{name: "not modified", src: ready, method: "GET", header: map[string]string{"If-None-Match": etag}, want: notModified},
		{name: "not modified, weak", src: ready, method: "GET", header: map[string]string{"If-None-Match": "W/" + etag}, want: notModified},
		{name: "not modified, in a list", src: ready, method: "GET", header: map[string]string{"If-None-Match": `"0000", ` + etag}, want: notModified},
		{name: "not modified, any", src: ready, method: "GET", header: map[string]string{"If-None-Match": "*"}, want: notModified},
		{name: "modified since", src: ready, method: "GET", header: map[string]string{"If-None-Match": `"0123456789abcdef"`}, want: ok},
		{
			name: "head", src: ready, method: "HEAD",
			want: response{Status: 200, Header: ok.Header},
		},
		{
			name: "not ready", src: notReady, method: "GET",
			want: response{Status: 503, Header: map[string]string{
				"Cache-Control": "no-cache", "Content-Type": "application/json", "Retry-After": "1",
			}, Body: `{"error":"catalog not ready"}` + "\n"},
		},
		{
			name: "other methods", src: ready, method: "POST",
			want: response{Status: 405, Header: map[string]string{
				"Cache-Control": "no-cache", "Content-Type": "application/json", "Allow": "GET, HEAD",
			}, Body: `{"error":"method not allowed"}` + "\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.Handle(contract.CatalogPath, NewHandler(tt.src))
			srv := httptest.NewServer(mux)
			defer srv.Close()
			req, err := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+contract.CatalogPath, strings.NewReader(""))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			got := response{Status: resp.StatusCode, Header: map[string]string{}, Body: string(body)}
			for _, k := range []string{"Cache-Control", "Content-Type", "Etag", "Retry-After", "Allow"} {
				if v := resp.Header.Get(k); v != "" {
					got.Header[k] = v
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("response\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestCatalogHandlerFollowsVersion checks that a new catalog is encoded
// anew: the handler caches the encoding per version.
func TestCatalogHandlerFollowsVersion(t *testing.T) {
	src := &catalogSwitchSource{cat: catalogGolden()}
	h := NewHandler(src)
	get := func() (string, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", contract.CatalogPath, nil))
		return rec.Header().Get("ETag"), rec.Body.String()
	}
	etag1, body1 := get()
	src.cat = contract.Catalog{Version: "0123456789abcdef", Functions: []contract.CatalogFunction{}}
	etag2, body2 := get()
	if etag1 == etag2 || body1 == body2 {
		t.Fatalf("unchanged after a new catalog: %s %s", etag1, etag2)
	}
	if want := `{"version":"0123456789abcdef","functions":[]}` + "\n"; body2 != want {
		t.Errorf("body %q, want %q", body2, want)
	}
}

type catalogSwitchSource struct{ cat contract.Catalog }

func (s *catalogSwitchSource) Current() (contract.Catalog, time.Time, error) {
	return s.cat, time.Now(), nil
}
