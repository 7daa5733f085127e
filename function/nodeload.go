package function

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// NodeAPI is the part of a node's engine API that images reach it through:
// LoadImage's calls, and the image list that says whether the node holds an
// image's base layer.
type NodeAPI interface {
	ImageLoader
	ImageList(ctx context.Context, opts image.ListOptions) ([]image.Summary, error)
}

var _ NodeAPI = (*client.Client)(nil)

// listTimeout bounds the image list that looks for a base layer.
const listTimeout = 30 * time.Second

// LoadReport says how an image was sent to a node.
type LoadReport struct {
	// Thin: the node got the thin archive, the image's own layer without
	// the base layer it already held.
	Thin bool
	// Sent is the archive bytes sent to the node, every attempt counted;
	// Full is the size of the full archive, what a full load sends.
	Sent, Full int64
	// Fallback is why a node that may have held the base layer got the full
	// archive: the thin load failed (the layer went missing since the
	// check, e.g. a docker image prune), or the check itself did.
	Fallback error
}

// LoadOnNode loads img into a node's engine that lacks it and checks it by
// ID (LoadImage). When img has a shared base layer and the engine lists an
// image labelled with it (LabelBaseLayer), it sends the thin archive; when
// that load fails, or the engine cannot say, the full one. ctx bounds the
// whole load: give it a deadline.
func LoadOnNode(ctx context.Context, api NodeAPI, img Image) (LoadReport, error) {
	r := LoadReport{Full: int64(len(img.Archive))}
	if img.BaseLayer != "" && len(img.Thin) > 0 {
		has, err := hasBaseLayer(ctx, api, img.BaseLayer)
		switch {
		case err != nil:
			r.Fallback = fmt.Errorf("look for the base layer: %w", err)
		case has:
			r.Sent += int64(len(img.Thin))
			err := LoadImage(ctx, api, Image{ID: img.ID, Tag: img.Tag, Archive: img.Thin})
			if err == nil {
				r.Thin = true
				return r, nil
			}
			if !fullAfterThin(ctx) {
				return r, fmt.Errorf("thin load: %w", err)
			}
			r.Fallback = fmt.Errorf("thin load: %w", err)
		}
	}
	r.Sent += int64(len(img.Archive))
	if err := LoadImage(ctx, api, img); err != nil {
		if r.Fallback != nil {
			return r, fmt.Errorf("%w; before it, %v", err, r.Fallback)
		}
		return r, err
	}
	return r, nil
}

// fullAfterThin says whether a failed thin load is retried with the full
// archive: always, unless the caller gave up. Which errors mean "the layer
// is missing" is engine text ("open …/layer.tar: no such file or
// directory" on 20.10), not an API; any other failure of the thin load
// shows again in the full one, with its own message.
func fullAfterThin(ctx context.Context) bool { return ctx.Err() == nil }

// hasBaseLayer reports whether the engine lists an image labelled with
// diffID as its base layer: such an image holds the layer, so the engine
// has it.
func hasBaseLayer(ctx context.Context, api NodeAPI, diffID string) (bool, error) {
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	imgs, err := api.ImageList(lctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelBaseLayer+"="+diffID))})
	if err != nil {
		return false, err
	}
	return len(imgs) > 0, nil
}
