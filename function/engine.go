package function

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// ImageLoader is the part of the Docker API that LoadImage uses.
type ImageLoader interface {
	ImageLoad(ctx context.Context, input io.Reader, opts ...client.ImageLoadOption) (image.LoadResponse, error)
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
}

var _ ImageLoader = (*client.Client)(nil)

// ErrIDMismatch means the engine holds the loaded image under another ID
// than the one computed at assembly: an engine that derives IDs differently
// (e.g. the containerd image store, which uses the manifest digest), or a tag
// that a concurrent load moved.
var ErrIDMismatch = errors.New("engine image ID differs from the assembled one")

// NewEngineClient returns a Docker client configured from the environment
// (DOCKER_HOST and friends) that negotiates the API version, so a new SDK
// works with an older engine (20.10 speaks API 1.41).
func NewEngineClient() (*client.Client, error) {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return c, nil
}

// LoadImage loads img's archive into the engine and checks that the engine
// now has it under img.ID (and img.Tag, if set, points to it). Loading an
// image the engine already has is a no-op on its side. ctx bounds the whole
// load: give it a deadline.
func LoadImage(ctx context.Context, api ImageLoader, img Image) error {
	resp, err := api.ImageLoad(ctx, bytes.NewReader(img.Archive), client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("load image %s: %w", img.ID, err)
	}
	defer resp.Body.Close()
	// The engine answers 200 as soon as it starts streaming and reports a
	// failed load as an error message in the stream: read it to the end.
	if err := readLoadStream(resp.Body, resp.JSON); err != nil {
		return fmt.Errorf("load image %s: %w", img.ID, err)
	}

	ref := img.ID
	if img.Tag != "" {
		ref = img.Tag
	}
	got, err := api.ImageInspect(ctx, ref)
	if err != nil {
		return fmt.Errorf("load image %s: inspect %s: %w", img.ID, ref, err)
	}
	if got.ID != img.ID {
		return fmt.Errorf("load image %s: %w: %s is %s", img.ID, ErrIDMismatch, ref, got.ID)
	}
	return nil
}

// loadMessage is one message of the engine's JSON progress stream.
type loadMessage struct {
	Stream      string `json:"stream"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// readLoadStream reads an ImageLoad response to its end and returns the
// error the engine reported in it, if any.
func readLoadStream(r io.Reader, isJSON bool) error {
	if !isJSON {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return fmt.Errorf("read response: %w", err)
		}
		return nil
	}
	dec := json.NewDecoder(r)
	for {
		var m loadMessage
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read response: %w", err)
		}
		msg := m.Error
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			msg = m.ErrorDetail.Message
		}
		if msg != "" {
			return fmt.Errorf("engine: %s", strings.TrimSpace(msg))
		}
	}
}
