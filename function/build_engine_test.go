package function

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/go-connections/nat"

	"github.com/pulsefaas/pulse/contract"
)

// TestEngineRunsBuiltImage builds each fixture, loads the image into the real
// engine and runs it as Swarm will (read-only root, tmpfs /tmp, non-root,
// engine-assigned port on 127.0.0.1), then calls the function and waits for
// the image's health check to pass.
func TestEngineRunsBuiltImage(t *testing.T) {
	api := engineClient(t)
	want := map[string]func(body string) string{
		LangGo:  func(body string) string { return "hello, " + body },
		LangC:   func(body string) string { return body },
		LangBin: func(body string) string { return body },
		LangCPP: func(body string) string {
			return "query a=1\nquery b=two\nheader ACCEPT_ENCODING: gzip\nheader USER_AGENT: Go-http-client/1.1\nheader X_TEST: yes\nbody " + body
		},
	}
	for _, f := range buildFixtures {
		t.Run(f.lang, func(t *testing.T) {
			t.Parallel()
			suffix := randomSuffix(t)
			spec := fixtureSpec(t, f)
			// The run's env makes the image unique to this run, so the test
			// really loads it and its cleanup removes no one else's image.
			spec.Env["TEST_RUN"] = suffix
			img, info, err := Build(t.Context(), spec, buildOpts(t, nil))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
				defer cancel()
				_, err := api.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
				if err != nil && !isNotFound(err) {
					t.Errorf("remove image %s: %v", img.ID, err)
				}
			})
			if err := LoadImage(engineCtx(t), api, img); err != nil {
				t.Fatal(err)
			}
			inspect, err := api.ImageInspect(engineCtx(t), img.ID)
			if err != nil {
				t.Fatal(err)
			}
			if inspect.Size != info.ImageSize || inspect.Config.User != ImageUser {
				t.Errorf("engine: size %d, user %q; want %d, %q", inspect.Size, inspect.Config.User, info.ImageSize, ImageUser)
			}
			t.Logf("%s: %s %s: %.2f MB as the engine counts", f.lang, img.Tag, img.ID, float64(inspect.Size)/1e6)

			port := nat.Port(fmt.Sprintf("%d/tcp", contract.WatchdogPort))
			id := createContainer(t, api, img.ID, port, suffix)
			if err := api.ContainerStart(engineCtx(t), id, container.StartOptions{}); err != nil {
				t.Fatalf("start container: %v", err)
			}
			addr := hostAddress(t, api, id, port)
			body := "pulse " + suffix
			got, err := pollPost(t, "http://"+addr+"/", []byte(body))
			if err != nil {
				t.Fatalf("POST / to %s: %v\n%s", addr, err, containerLogs(api, id))
			}
			if f.lang == LangCPP {
				got = postWithHeader(t, "http://"+addr+"/path?a=1&b=two", "X-Test", "yes", body)
			}
			if w := want[f.lang](body); string(got) != w {
				t.Errorf("the function answered %q, want %q", got, w)
			}
			waitHealthy(t, api, id)
		})
	}
}

// postWithHeader posts body to url with one extra header and returns the
// answer of a 200.
func postWithHeader(t *testing.T, url, key, value, body string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(key, value)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s %v: %q", url, resp.Status, err, bytes.TrimSpace(b))
	}
	return b
}
