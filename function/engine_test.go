package function

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// fakeLoader answers LoadImage's calls from its fields and records them. It
// reaches the error paths; engine_docker_test.go covers the real engine.
type fakeLoader struct {
	loadErr    error
	stream     string // the ImageLoad response body
	notJSON    bool
	inspect    image.InspectResponse
	inspectErr error

	loaded    []byte
	inspected []string
}

func (f *fakeLoader) ImageLoad(_ context.Context, input io.Reader, _ ...client.ImageLoadOption) (image.LoadResponse, error) {
	b, err := io.ReadAll(input)
	if err != nil {
		return image.LoadResponse{}, err
	}
	f.loaded = b
	if f.loadErr != nil {
		return image.LoadResponse{}, f.loadErr
	}
	return image.LoadResponse{Body: io.NopCloser(bytes.NewBufferString(f.stream)), JSON: !f.notJSON}, nil
}

func (f *fakeLoader) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	f.inspected = append(f.inspected, ref)
	return f.inspect, f.inspectErr
}

func TestLoadImage(t *testing.T) {
	const id = "sha256:ebaed2a53f5fc790017114dd7fb55aa03f320ac249e38e439be7c5b30393dfaf"
	tagged := Image{ID: id, Tag: "pulse/hello:latest", Archive: []byte("archive")}
	untagged := Image{ID: id, Archive: []byte("archive")}
	tests := []struct {
		name          string
		img           Image
		fake          fakeLoader
		wantErr       string
		wantMismatch  bool
		wantInspected []string
	}{
		{
			name: "tagged",
			img:  tagged,
			fake: fakeLoader{
				stream:  `{"stream":"Loaded image: pulse/hello:latest\n"}` + "\n",
				inspect: image.InspectResponse{ID: id},
			},
			wantInspected: []string{"pulse/hello:latest"},
		},
		{
			name: "untagged",
			img:  untagged,
			fake: fakeLoader{
				stream:  `{"stream":"Loaded image ID: ` + id + `\n"}` + "\n",
				inspect: image.InspectResponse{ID: id},
			},
			wantInspected: []string{id},
		},
		{
			name:          "plain-text answer",
			img:           untagged,
			fake:          fakeLoader{stream: "Loaded image ID: " + id + "\n", notJSON: true, inspect: image.InspectResponse{ID: id}},
			wantInspected: []string{id},
		},
		{
			name:    "request fails",
			img:     tagged,
			fake:    fakeLoader{loadErr: errors.New("Cannot connect to the Docker daemon")},
			wantErr: "load image " + id + ": Cannot connect to the Docker daemon",
		},
		{
			name: "engine reports an error in the stream",
			img:  tagged,
			fake: fakeLoader{
				stream: `{"errorDetail":{"message":"invalid diffID for layer 0: expected \"sha256:aa\", got \"sha256:bb\""},"error":"invalid diffID for layer 0"}` + "\n",
			},
			wantErr: `load image ` + id + `: engine: invalid diffID for layer 0: expected "sha256:aa", got "sha256:bb"`,
		},
		{
			name:    "error without detail",
			img:     tagged,
			fake:    fakeLoader{stream: `{"stream":"x"}{"error":"open /var/lib/docker/tmp/x: no space left on device\n"}`},
			wantErr: "load image " + id + ": engine: open /var/lib/docker/tmp/x: no space left on device",
		},
		{
			name:    "stream cut short",
			img:     tagged,
			fake:    fakeLoader{stream: `{"stream":"Loaded im`},
			wantErr: "load image " + id + ": read response: unexpected EOF",
		},
		{
			name: "inspect fails",
			img:  tagged,
			fake: fakeLoader{
				stream:     `{"stream":"Loaded image: pulse/hello:latest\n"}`,
				inspectErr: errors.New("No such image: pulse/hello:latest"),
			},
			wantErr:       "load image " + id + ": inspect pulse/hello:latest: No such image: pulse/hello:latest",
			wantInspected: []string{"pulse/hello:latest"},
		},
		{
			name: "engine holds another ID",
			img:  tagged,
			fake: fakeLoader{
				stream:  `{"stream":"Loaded image: pulse/hello:latest\n"}`,
				inspect: image.InspectResponse{ID: "sha256:0123"},
			},
			wantErr:       "load image " + id + ": engine image ID differs from the assembled one: pulse/hello:latest is sha256:0123",
			wantMismatch:  true,
			wantInspected: []string{"pulse/hello:latest"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := LoadImage(t.Context(), &tt.fake, tt.img)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tt.wantErr {
				t.Errorf("LoadImage() error\n got %q\nwant %q", gotErr, tt.wantErr)
			}
			if got := errors.Is(err, ErrIDMismatch); got != tt.wantMismatch {
				t.Errorf("errors.Is(err, ErrIDMismatch) = %v, want %v", got, tt.wantMismatch)
			}
			if !bytes.Equal(tt.fake.loaded, tt.img.Archive) {
				t.Errorf("engine got %q, want the archive %q", tt.fake.loaded, tt.img.Archive)
			}
			if !slices.Equal(tt.fake.inspected, tt.wantInspected) {
				t.Errorf("inspected %q, want %q", tt.fake.inspected, tt.wantInspected)
			}
		})
	}
}
