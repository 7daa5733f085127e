package function

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/streamformatter"
)

// sdkLoadError is the error LoadImage returns when the SDK's request fails
// on a connection from dial: the SDK's and the transport's own wrapping.
func sdkLoadError(t *testing.T, ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error)) error {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.WithHost("http://docker"), client.WithDialContext(dial), client.WithVersion("1.41"))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	err = LoadImage(ctx, cli, Image{ID: "sha256:aa", Archive: []byte("archive")})
	if err == nil {
		t.Fatal("LoadImage succeeded on a broken connection")
	}
	return err
}

// failingConn fails every write with err, as package provision's engine
// connection does when the SSH connection is lost.
type failingConn struct {
	net.Conn
	err error
}

func (c failingConn) Write([]byte) (int, error) { return 0, c.err }

// TestExplainLoadFailure: the errors a node's load ends with, made by
// LoadImage (through the SDK where the connection fails), get the fix
// when the error alone does not say it; the others stay as they are.
func TestExplainLoadFailure(t *testing.T) {
	const again = "then run pulse push (or the deploy) again"
	diskFull := LoadImage(context.Background(), &fakeLoader{stream: string(streamformatter.FormatError(errors.New(
		"Error processing tar file(exit status 1): write /8f7d2b5c/layer.tar: no space left on device")))}, Image{ID: "sha256:aa"})
	mismatch := LoadImage(context.Background(), &fakeLoader{stream: "{}\r\n", inspect: image.InspectResponse{ID: "sha256:bb"}}, Image{ID: "sha256:aa"})

	lostErr := errors.New("the SSH connection to root@node2:22 was lost after 3.1 MB of the request was sent: check the network to the node and that its sshd runs")
	lost := sdkLoadError(t, context.Background(), func(context.Context, string, string) (net.Conn, error) {
		c, _ := net.Pipe()
		return failingConn{Conn: c, err: lostErr}, nil
	})
	// Nobody reads the pipe: the request waits until the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var ends []net.Conn
	deadline := sdkLoadError(t, ctx, func(context.Context, string, string) (net.Conn, error) {
		c, other := net.Pipe()
		ends = append(ends, other)
		return c, nil
	})
	for _, c := range ends {
		c.Close()
	}
	canceled := LoadImage(context.Background(), &fakeLoader{loadErr: context.Canceled}, Image{ID: "sha256:aa"})

	tests := []struct {
		name string
		err  error
		want string // "" for the error unchanged
	}{
		{"no error", nil, ""},
		{"disk full", diskFull, diskFull.Error() + ": the node's disk is full: free space in Docker's data root on it (/var/lib/docker unless data-root says otherwise; `docker system df` shows what uses it, `docker image prune` removes unused images), " + again},
		{"deadline", deadline, deadline.Error() + ": the node did not finish in time: it may have stopped answering (network, sshd, a frozen or overloaded node): check it, " + again},
		{"connection lost", lost, lost.Error() + "; " + again},
		{"inspect, connection lost", fmt.Errorf("inspect: %w", lost), "inspect: " + lost.Error() + "; " + again},
		{"ID mismatch", mismatch, ""},
		{"canceled", canceled, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := explainLoadFailure(tc.err)
			t.Log(got)
			if tc.want == "" {
				if got != tc.err {
					t.Errorf("explainLoadFailure(%v) = %v, want it unchanged", tc.err, got)
				}
				return
			}
			if got == nil || got.Error() != tc.want {
				t.Errorf("explainLoadFailure = %v\nwant %s", got, tc.want)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("%v does not wrap %v", got, tc.err)
			}
		})
	}
	if !errors.Is(lost, lostErr) {
		t.Errorf("the SDK's error %v lost the connection's", lost)
	}
}
