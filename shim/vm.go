package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/uvmgcs/gcs/shim/layers"
)

// Close powers the VM off.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	sb := s.sb
	var held []podResource
	for _, t := range s.tasks {
		held = append(held, t.held...)
	}
	s.mu.Unlock()
	// A sandbox containerd never deleted: its tap and redirects go.
	releaseAll(ctx, held)
	if sb == nil {
		return nil
	}
	err := sb.Close(ctx)
	os.Remove(filepath.Join(s.opts.StateDir, "qemu.pid"))
	s.mu.Lock()
	cg := s.cgroup
	s.mu.Unlock()
	if cg != nil {
		if cerr := cg.Delete(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("remove the VM's cgroup: %w", cerr))
		}
	}
	return err
}

func (s *Service) vmPid() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sb == nil {
		return 0
	}
	return uint32(s.sb.Pid())
}

// ensureVM boots the group's VM on the first Create, with the
// configuration the runtime options name.
// A pod's sandbox sizes it (podSize).
func (s *Service) ensureVM(ctx context.Context, opts *anypb.Any, spec *specs.Spec) (sandbox, *layers.Cache, Config, error) {
	s.bootMu.Lock()
	defer s.bootMu.Unlock()
	s.mu.Lock()
	sb, cache, cfg := s.sb, s.cache, s.cfg
	s.mu.Unlock()
	if sb != nil {
		select {
		case <-sb.Done():
			return nil, nil, cfg, fmt.Errorf("the group's utility VM has stopped: %w", errdefs.ErrUnavailable)
		default:
		}
		return sb, cache, cfg, nil
	}
	cfg, err := loadConfig(opts)
	if err != nil {
		return nil, nil, cfg, err
	}
	mem, cpus := podSize(cfg, spec)
	vc := vmConfig{Kernel: cfg.Kernel, Initrd: cfg.Initrd, CPUs: cpus, MemoryMiB: mem, KernelArgs: cfg.KernelArgs, StateDir: filepath.Join(s.opts.StateDir, "vm")}
	if cfg.ConsoleLog != "" {
		f, err := os.OpenFile(cfg.ConsoleLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, cfg, fmt.Errorf("console_log: %w", err)
		}
		vc.Console = f // the VM's lifetime is the shim's
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), vmBootTimeout)
	defer cancel()
	t0 := time.Now()
	sb, err = bootVM(bctx, vc)
	if err != nil {
		return nil, nil, cfg, err
	}
	log.G(ctx).WithField("qemu-pid", sb.Pid()).WithField("boot", time.Since(t0)).WithField("memory-mib", mem).WithField("cpus", cpus).Info("utility VM ready")
	if err := os.WriteFile(filepath.Join(s.opts.StateDir, "qemu.pid"), []byte(fmt.Sprint(sb.Pid())), 0o600); err != nil {
		log.G(ctx).WithError(err).Warn("write qemu.pid")
	}
	var cg vmCgroup
	if spec != nil && spec.Linux != nil && podOf(spec).role == podSandbox {
		if cg, err = joinCgroup(spec.Linux.CgroupsPath, sb.Pid()); err != nil {
			log.G(ctx).WithError(err).Warn("the pod's cgroup on the host")
		}
	}
	cache = layers.NewCache(cfg.LayerCache)
	s.mu.Lock()
	s.sb, s.cache, s.cfg, s.cgroup = sb, cache, cfg, cg
	s.mu.Unlock()
	go s.watchVM(sb)
	go func() {
		if n, err := cache.Prune(); err == nil && n > 0 {
			log.G(s.ctx).WithField("removed", n).Info("pruned layer disks of deleted snapshots")
		}
	}()
	return sb, cache, cfg, nil
}

// watchVM ends every process when the VM stops under them.
func (s *Service) watchVM(sb sandbox) {
	<-sb.Done()
	s.mu.Lock()
	tasks := make([]*shimTask, 0, len(s.tasks))
	for _, t := range s.tasks {
		tasks = append(tasks, t)
	}
	s.mu.Unlock()
	for _, t := range tasks {
		t.mu.Lock()
		procs := []*process{t.init}
		for _, p := range t.execs {
			procs = append(procs, p)
		}
		t.mu.Unlock()
		for _, p := range procs {
			if p.setExited(137) {
				s.published(t, p)
			}
		}
	}
}

// sandboxPid is the guest pid of pod sandbox id's init, 0 when it does not
// run in this group.
func (s *Service) sandboxPid(id string) int {
	s.mu.Lock()
	t := s.tasks[id]
	s.mu.Unlock()
	if t == nil || t.pod.role != podSandbox {
		return 0
	}
	gp, err := t.init.guest()
	if err != nil {
		return 0
	}
	return gp.Pid()
}

// releaseAll releases a sandbox's pod resources, the last taken first.
func releaseAll(ctx context.Context, held []podResource) {
	for i := len(held) - 1; i >= 0; i-- {
		if err := held[i].Release(ctx); err != nil {
			log.G(ctx).WithError(err).Warn("release a pod resource")
		}
	}
}
