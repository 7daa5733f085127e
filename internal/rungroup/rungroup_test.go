package rungroup

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// untilDone is a part that runs until its context ends, then takes a
// little while to clean up (as HAProxy's supervisor does) before it marks
// itself finished and returns ret.
func untilDone(finished *atomic.Bool, ret error) func(context.Context) error {
	return func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond)
		finished.Store(true)
		return ret
	}
}

func TestFirstErrorCancelsRestAndWaitsForAll(t *testing.T) {
	boom := errors.New("boom")
	late := errors.New("late")
	g := New(context.Background())
	var a, b atomic.Bool
	g.Go("slow", untilDone(&a, nil))
	g.Go("late", untilDone(&b, late)) // fails only after the cancel: not first
	g.Go("haproxy", func(ctx context.Context) error { return boom })

	err := waitWithin(t, g, 5*time.Second)
	if !errors.Is(err, boom) || err.Error() != "haproxy: boom" {
		t.Fatalf("Wait() = %v, want haproxy: boom", err)
	}
	if !a.Load() || !b.Load() {
		t.Fatalf("Wait returned before every part ended: slow=%v late=%v", a.Load(), b.Load())
	}
}

func TestNilEndCancelsRestAndLaterErrorIsReturned(t *testing.T) {
	late := errors.New("stopped badly")
	g := New(context.Background())
	var a atomic.Bool
	g.Go("cleanup", untilDone(&a, late))
	g.Go("done", func(ctx context.Context) error { return nil })

	err := waitWithin(t, g, 5*time.Second)
	if err == nil || err.Error() != "cleanup: stopped badly" || !errors.Is(err, late) {
		t.Fatalf("Wait() = %v, want cleanup: stopped badly", err)
	}
	if !a.Load() {
		t.Fatal("Wait returned before the cleanup part ended")
	}
}

func TestParentCancelStopsAll(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	g := New(ctx)
	var a, b atomic.Bool
	g.Go("a", untilDone(&a, nil))
	g.Go("b", untilDone(&b, nil))
	started := make(chan struct{})
	var sawCancel atomic.Bool
	g.Go("c", func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		sawCancel.Store(errors.Is(ctx.Err(), context.Canceled))
		return nil
	})
	<-started
	cancel()
	if err := waitWithin(t, g, 5*time.Second); err != nil {
		t.Fatalf("Wait() = %v, want nil", err)
	}
	if !a.Load() || !b.Load() || !sawCancel.Load() {
		t.Fatalf("parts did not all see the cancel: a=%v b=%v c=%v", a.Load(), b.Load(), sawCancel.Load())
	}
}

func TestPartsRunUntilOneEnds(t *testing.T) {
	g := New(context.Background())
	stop := make(chan struct{})
	var cancelled atomic.Bool
	g.Go("watcher", func(ctx context.Context) error {
		<-ctx.Done()
		cancelled.Store(true)
		return nil
	})
	g.Go("worker", func(ctx context.Context) error {
		<-stop
		return nil
	})
	time.Sleep(50 * time.Millisecond)
	if cancelled.Load() {
		t.Fatal("the group's context was cancelled while every part was still running")
	}
	close(stop)
	if err := waitWithin(t, g, 5*time.Second); err != nil {
		t.Fatalf("Wait() = %v, want nil", err)
	}
	if !cancelled.Load() {
		t.Fatal("the worker's end did not cancel the watcher")
	}
}

func TestEmptyGroup(t *testing.T) {
	if err := waitWithin(t, New(context.Background()), time.Second); err != nil {
		t.Fatalf("Wait() = %v, want nil", err)
	}
}

func waitWithin(t *testing.T, g *Group, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("Wait did not return within %s", d)
		return nil
	}
}
