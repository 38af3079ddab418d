package overlay

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/containerd/errdefs"
	"github.com/uvmgcs/gcs/guest/storage/mounts"
)

// Spec is one overlay to mount.
type Spec struct {
	// Lowers are the layer directories, the top one first.
	Lowers []string
	// Upper and Work are the writable directories; both empty for a
	// read-only overlay.
	Upper, Work string
}

func (s Spec) readOnly() bool { return s.Upper == "" }

// Mount mounts s at target, creating target, and returns how to undo it.
// A read-only spec with one layer is a read-only bind mount of it, since
// overlayfs needs two lower layers when it has no upper one. On failure
// nothing is left mounted or created.
func Mount(ctx context.Context, target string, s Spec) (mounts.Undo, error) {
	switch {
	case len(s.Lowers) == 0:
		return nil, fmt.Errorf("overlay at %s: no layers: %w", target, errdefs.ErrInvalidArgument)
	case (s.Upper == "") != (s.Work == ""):
		return nil, fmt.Errorf("overlay at %s: upper and work directories go together: %w", target, errdefs.ErrInvalidArgument)
	}
	removeDir, err := mounts.MakeDir(target, 0o755)
	if err != nil {
		return nil, err
	}
	if s.readOnly() && len(s.Lowers) == 1 {
		err = bindReadOnly(s.Lowers[0], target)
	} else {
		err = mountOverlay(target, s)
	}
	if err != nil {
		removeDir()
		return nil, err
	}
	return func(ctx context.Context) error {
		if err := mounts.Unmount(target); err != nil {
			return err
		}
		removeDir()
		return nil
	}, nil
}

// bindReadOnly bind-mounts dir at target read-only.
func bindReadOnly(dir, target string) error {
	if err := unix.Mount(dir, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s at %s: %w", dir, target, err)
	}
	if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		_ = unix.Unmount(target, unix.MNT_DETACH)
		return fmt.Errorf("make %s read-only: %w", target, err)
	}
	return nil
}

// mountOverlay mounts s with mount(2) when its options fit one page and
// its paths carry no ':' ',' or '\': one system call, on every kernel.
// Otherwise it uses the mount API, which takes each layer in its own call,
// on kernels whose overlayfs has the "lowerdir+" parameter (6.8 and
// later); before that, asking for it logs a refusal in the kernel's log,
// which every container start would otherwise add to.
func mountOverlay(target string, s Spec) error {
	if _, ok := classicOptions(s); ok {
		return mountClassic(target, s)
	}
	err := mountFsopen(target, s)
	if errors.Is(err, errNoFsopen) {
		return mountClassic(target, s)
	}
	// Before 6.5 overlayfs parsed its options the legacy way: fsconfig
	// takes any key and only the create fails (EINVAL on "lowerdir+").
	// mount(2) then says whether the overlay itself is the problem.
	if errors.Is(err, unix.EINVAL) {
		if cerr := mountClassic(target, s); cerr != nil {
			return fmt.Errorf("%w (mount(2) fallback: %v)", err, cerr)
		}
		return nil
	}
	return err
}

// errNoFsopen means the kernel cannot mount an overlay with the mount API.
var errNoFsopen = errors.New("overlay mount API unavailable")

func mountFsopen(target string, s Spec) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		return errNoFsopen
	}
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)
	for i, l := range s.Lowers {
		err := unix.FsconfigSetString(fd, "lowerdir+", l)
		if i == 0 && errors.Is(err, unix.EINVAL) && !lowerdirPlus() {
			return errNoFsopen
		}
		if err != nil {
			return fsError(fd, fmt.Sprintf("overlay lower layer %s", l), err)
		}
	}
	if !s.readOnly() {
		if err := unix.FsconfigSetString(fd, "upperdir", s.Upper); err != nil {
			return fsError(fd, fmt.Sprintf("overlay upper directory %s", s.Upper), err)
		}
		if err := unix.FsconfigSetString(fd, "workdir", s.Work); err != nil {
			return fsError(fd, fmt.Sprintf("overlay work directory %s", s.Work), err)
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fsError(fd, fmt.Sprintf("create overlay of %d layers", len(s.Lowers)), err)
	}
	attr := 0
	if s.readOnly() {
		attr = unix.MOUNT_ATTR_RDONLY
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, attr)
	if err != nil {
		return fsError(fd, "fsmount overlay", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach overlay at %s: %w", target, err)
	}
	return nil
}

// lowerdirPlus reports whether the kernel's overlayfs takes the
// "lowerdir+" parameter (6.8 and later), by giving it "/".
func lowerdirPlus() bool {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.FsconfigSetString(fd, "lowerdir+", "/") == nil
}

// fsError wraps err with what the kernel logged on the filesystem context
// fd, which says which parameter it refused and why.
func fsError(fd int, what string, err error) error {
	var msgs []string
	buf := make([]byte, 1024)
	for len(msgs) < 8 {
		n, rerr := unix.Read(fd, buf)
		if rerr != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s: %w (%s)", what, err, strings.Join(msgs, "; "))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// maxMountData is mount(2)'s limit on the options string.
const maxMountData = 4095

// mountClassic mounts s with mount(2): the layers in one option string,
// which must fit one page and cannot carry ':' ',' or '\' in a path.
func mountClassic(target string, s Spec) error {
	for _, p := range append(append([]string(nil), s.Lowers...), s.Upper, s.Work) {
		if strings.ContainsAny(p, ":,\\") {
			return fmt.Errorf("overlay path %q cannot be passed to mount(2): %w", p, errdefs.ErrInvalidArgument)
		}
	}
	data, ok := classicOptions(s)
	var flags uintptr
	if s.readOnly() {
		flags = unix.MS_RDONLY
	}
	if !ok {
		return fmt.Errorf("overlay of %d layers needs %d bytes of options, more than mount(2) takes, and this kernel lacks fsopen with lowerdir+: %w",
			len(s.Lowers), len(data), errdefs.ErrNotImplemented)
	}
	if err := unix.Mount("overlay", target, "overlay", flags, data); err != nil {
		return fmt.Errorf("mount overlay of %d layers at %s: %w", len(s.Lowers), target, err)
	}
	return nil
}

// classicOptions is mount(2)'s option string for s, and whether mount(2)
// can take it: no ':' ',' or '\' in a path, and one page at most.
func classicOptions(s Spec) (string, bool) {
	for _, p := range append(append([]string(nil), s.Lowers...), s.Upper, s.Work) {
		if strings.ContainsAny(p, ":,\\") {
			return "", false
		}
	}
	data := "lowerdir=" + strings.Join(s.Lowers, ":")
	if !s.readOnly() {
		data += ",upperdir=" + s.Upper + ",workdir=" + s.Work
	}
	return data, len(data) <= maxMountData
}
