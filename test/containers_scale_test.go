package test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestConcurrentContainers runs 50 containers at once; every one reports
// its own output and exit code.
func TestConcurrentContainers(t *testing.T) {
	a := startContainerAgent(t)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, r := a.run(t, a.spec("sh", "-c", fmt.Sprintf("echo c%d; exit %d", i, i%7)))
			if r.stdout != fmt.Sprintf("c%d\n", i) || r.code != i%7 {
				errs <- fmt.Errorf("container %d: stdout %q code %d", i, r.stdout, r.code)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestConcurrentExecs runs 500 execs at once in one container.
func TestConcurrentExecs(t *testing.T) {
	a := startContainerAgent(t)
	c, _ := a.started(t, a.spec("sleep", "1000"), false)
	const n = 500
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 100) // in flight at once: bounded by the test's fds, not the agent
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			p, err := c.Exec(ctx, &specs.Process{Args: []string{"sh", "-c", fmt.Sprintf("echo e%d; exit %d", i, i%5)}, Cwd: "/"}, stdio(false))
			if err != nil {
				errs <- fmt.Errorf("exec %d: %w", i, err)
				return
			}
			r := collect(t, p)
			if r.stdout != fmt.Sprintf("e%d\n", i) || r.code != i%5 {
				errs <- fmt.Errorf("exec %d: stdout %q code %d", i, r.stdout, r.code)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
