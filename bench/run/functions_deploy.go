package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/pulsefaas/pulse/function"
)

// deployOptions are the options of every deploy, with the health interval
// (0: the default).
func (b *functionsBench) deployOptions(interval time.Duration) function.DeployOptions {
	return function.DeployOptions{HealthInterval: interval, HealthStartInterval: b.startInterval, DrainGrace: benchDrainGrace, Instance: benchInstance(b.run)}
}

// deployStage deploys a fresh service of each template Trials times and
// times it to the first 200; after each trial the function is removed,
// image included, and the next trial loads the image again first.
func (b *functionsBench) deployStage(ctx context.Context, templates []string) error {
	return eachTrial(b.cfg.Trials, templates, func(trial int, tmpl string) error {
		r := deployTrial{Template: tmpl, trialHead: trialHead{Trial: trial}}
		err := b.deployTrial(ctx, b.specs[tmpl], &r)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.logOutcome("deploy", err, &r.Error, []any{"template", tmpl, "trial", trial}, "first_200_s", r.FirstOKS, "endpoint_s", r.EndpointS)
		b.rep.Deploys = append(b.rep.Deploys, r)
		if rf := (removeFailed{}); errors.As(err, &rf) {
			return err
		}
		return nil
	})
}

// removeFailed is a failed removal: the engine may hold something of ours,
// so the stage stops.
type removeFailed struct{ error }

// deployTrial loads spec's image (untimed: a trial starts with it loaded),
// deploys it, times it to the first 200 to a POST and removes it.
func (b *functionsBench) deployTrial(ctx context.Context, spec function.Spec, r *deployTrial) error {
	img, err := b.image(ctx, r.Template)
	if err != nil {
		return err
	}
	cctx, cancel := call(ctx)
	start := time.Now()
	err = function.LocalDistributor{API: b.api}.Ensure(cctx, img)
	cancel()
	r.LoadS = secondsSince(start)
	if err != nil {
		return err
	}
	if err := b.quiet(ctx, &r.trialHead); err != nil {
		return err
	}
	nr, err := b.timeReplica(ctx, spec.Name, nil, func() error {
		_, err := b.sw.Deploy(ctx, spec, img, b.deployOptions(0))
		return err
	}, http.MethodPost, "/", b.body)
	r.DeployCallS, r.replicaTimes, r.FirstOKS, r.Polls, r.Posts = nr.callS, nr.replicaTimes, nr.okS, nr.polls, nr.requests
	start = time.Now()
	rerr := removeFunction(ctx, b.sw, spec.Name)
	r.RemoveS = secondsSince(start)
	if rerr != nil {
		return removeFailed{fmt.Errorf("remove %s: %w", spec.Name, rerr)}
	}
	return err
}

// deployTargets deploys the two go functions of the scale and idle stages,
// one with the default health interval and one with 250 ms, one replica
// each, and waits until they are ready.
func (b *functionsBench) deployTargets(ctx context.Context) error {
	for _, t := range b.targets {
		img, err := b.image(ctx, t.name)
		if err != nil {
			return err
		}
		if _, err := b.sw.Deploy(ctx, b.specs[t.name], img, b.deployOptions(t.interval)); err != nil {
			return err
		}
	}
	for _, t := range b.targets {
		if err := waitReplicas(ctx, b.sw, b.api, t.name, 1); err != nil {
			return err
		}
	}
	return nil
}
