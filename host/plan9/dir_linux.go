package plan9

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/hugelgupf/p9/fsimpl/templatefs"
	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
)

// An export is a host directory held open by an O_PATH descriptor: every
// file of it is reached from that descriptor one name at a time, with
// O_NOFOLLOW, so no path a guest names can leave the directory, whatever
// symlinks it creates or renames it races. The guest opens regular files
// and directories only (no host device, fifo or socket), creates no
// device node, and sets no setuid or setgid bit (the p9 package keeps
// only rwx and sticky from the modes it is sent).
type export struct {
	readOnly bool

	mu sync.Mutex // fd is closed once, never while it is duplicated
	fd int        // -1 once closed
}

func openExport(dir string, readOnly bool) (*export, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", dir, &os.PathError{Op: "open", Path: dir, Err: err})
	}
	return &export{fd: fd, readOnly: readOnly}, nil
}

func (e *export) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fd >= 0 {
		unix.Close(e.fd)
		e.fd = -1
	}
}

// attach returns a file for the export's top directory.
func (e *export) attach() (*file, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fd < 0 {
		return nil, linux.ENOENT
	}
	fd, err := dupFD(e.fd)
	if err != nil {
		return nil, err
	}
	return &file{fd: fd, readOnly: e.readOnly}, nil
}

// file is one node of an export: an O_PATH descriptor, and once opened a
// second descriptor for I/O.
type file struct {
	p9.DefaultWalkGetAttr
	templatefs.XattrUnimplemented
	templatefs.NoopRenamed
	templatefs.NotLockable

	fd       int      // O_PATH|O_NOFOLLOW
	readOnly bool     // the export's
	open     *os.File // after Open or Create

	dirMu sync.Mutex // a guest may read one directory fid concurrently
	names []string   // a directory's entries, read at offset 0
}

var _ p9.File = (*file)(nil)

func dupFD(fd int) (int, error) {
	return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
}

// procPath names fd's file for the calls that have no *at form taking an
// O_PATH descriptor (reopening, chmod, utimes, truncate).
func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return linux.EINVAL
	}
	return nil
}

func qidOf(st *unix.Stat_t) p9.QID {
	return p9.QID{Type: p9.FileMode(st.Mode).QIDType(), Path: st.Ino}
}

func (f *file) stat() (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstat(f.fd, &st)
	return st, err
}

func (f *file) child(fd int) *file { return &file{fd: fd, readOnly: f.readOnly} }

// openChild opens name beneath f as O_PATH, never following a symlink.
func (f *file) openChild(name string) (*file, p9.QID, error) {
	if err := validName(name); err != nil {
		return nil, p9.QID{}, err
	}
	fd, err := unix.Openat(f.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, p9.QID{}, err
	}
	c := f.child(fd)
	st, err := c.stat()
	if err != nil {
		c.Close()
		return nil, p9.QID{}, err
	}
	return c, qidOf(&st), nil
}

func (f *file) Walk(names []string) ([]p9.QID, p9.File, error) {
	fd, err := dupFD(f.fd)
	if err != nil {
		return nil, nil, err
	}
	cur := f.child(fd)
	qids := make([]p9.QID, 0, len(names))
	for _, name := range names {
		next, qid, err := cur.openChild(name)
		cur.Close()
		if err != nil {
			return nil, nil, err
		}
		qids = append(qids, qid)
		cur = next
	}
	return qids, cur, nil
}

func (f *file) StatFS() (p9.FSStat, error) {
	var s unix.Statfs_t
	if err := unix.Fstatfs(f.fd, &s); err != nil {
		return p9.FSStat{}, err
	}
	return p9.FSStat{
		Type:            uint32(s.Type),
		BlockSize:       uint32(s.Bsize),
		Blocks:          s.Blocks,
		BlocksFree:      s.Bfree,
		BlocksAvailable: s.Bavail,
		Files:           s.Files,
		FilesFree:       s.Ffree,
		FSID:            uint64(uint32(s.Fsid.Val[0])) | uint64(uint32(s.Fsid.Val[1]))<<32,
		NameLength:      uint32(s.Namelen),
	}, nil
}

func (f *file) GetAttr(req p9.AttrMask) (p9.QID, p9.AttrMask, p9.Attr, error) {
	st, err := f.stat()
	if err != nil {
		return p9.QID{}, p9.AttrMask{}, p9.Attr{}, err
	}
	valid := p9.AttrMask{Mode: true, NLink: true, UID: true, GID: true, RDev: true, ATime: true,
		MTime: true, CTime: true, INo: true, Size: true, Blocks: true}
	return qidOf(&st), valid, p9.Attr{
		Mode:             p9.FileMode(st.Mode),
		UID:              p9.UID(st.Uid),
		GID:              p9.GID(st.Gid),
		NLink:            p9.NLink(st.Nlink),
		RDev:             p9.Dev(st.Rdev),
		Size:             uint64(st.Size),
		BlockSize:        uint64(st.Blksize),
		Blocks:           uint64(st.Blocks),
		ATimeSeconds:     uint64(st.Atim.Sec),
		ATimeNanoSeconds: uint64(st.Atim.Nsec),
		MTimeSeconds:     uint64(st.Mtim.Sec),
		MTimeNanoSeconds: uint64(st.Mtim.Nsec),
		CTimeSeconds:     uint64(st.Ctim.Sec),
		CTimeNanoSeconds: uint64(st.Ctim.Nsec),
	}, nil
}

func (f *file) isSymlink() bool {
	st, err := f.stat()
	return err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
}

func (f *file) SetAttr(valid p9.SetAttrMask, attr p9.SetAttr) error {
	if f.readOnly {
		return linux.EROFS
	}
	if valid.Permissions && !f.isSymlink() {
		if err := unix.Fchmodat(unix.AT_FDCWD, procPath(f.fd), uint32(attr.Permissions.Permissions()), 0); err != nil {
			return err
		}
	}
	if valid.UID || valid.GID {
		uid, gid := -1, -1
		if valid.UID {
			uid = int(attr.UID)
		}
		if valid.GID {
			gid = int(attr.GID)
		}
		if err := unix.Fchownat(f.fd, "", uid, gid, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	if valid.Size {
		var err error
		if f.open != nil {
			err = f.open.Truncate(int64(attr.Size))
		} else if f.isSymlink() {
			err = linux.EINVAL
		} else {
			err = unix.Truncate(procPath(f.fd), int64(attr.Size))
		}
		if err != nil {
			return err
		}
	}
	if valid.ATime || valid.MTime {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if valid.ATime {
			ts[0] = unix.Timespec{Nsec: unix.UTIME_NOW}
			if valid.ATimeNotSystemTime {
				ts[0] = unix.Timespec{Sec: int64(attr.ATimeSeconds), Nsec: int64(attr.ATimeNanoSeconds)}
			}
		}
		if valid.MTime {
			ts[1] = unix.Timespec{Nsec: unix.UTIME_NOW}
			if valid.MTimeNotSystemTime {
				ts[1] = unix.Timespec{Sec: int64(attr.MTimeSeconds), Nsec: int64(attr.MTimeNanoSeconds)}
			}
		}
		if !f.isSymlink() {
			if err := unix.UtimesNanoAt(unix.AT_FDCWD, procPath(f.fd), ts, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *file) Close() error {
	if f.open != nil {
		f.open.Close()
		f.open = nil
	}
	return unix.Close(f.fd)
}

// openFlags keeps the open(2) flags a guest may pass through. Opening
// goes through /proc/self/fd, a link that must be followed: what it names
// was checked not to be a symlink.
func openFlags(mode p9.OpenFlags) int {
	return int(mode)&(unix.O_ACCMODE|unix.O_TRUNC|unix.O_APPEND|unix.O_SYNC|unix.O_DSYNC) | unix.O_CLOEXEC
}

func (f *file) writes(mode p9.OpenFlags) bool {
	return mode.Mode() != p9.ReadOnly || int(mode)&unix.O_TRUNC != 0
}

func (f *file) Open(mode p9.OpenFlags) (p9.QID, uint32, error) {
	if f.readOnly && f.writes(mode) {
		return p9.QID{}, 0, linux.EROFS
	}
	st, err := f.stat()
	if err != nil {
		return p9.QID{}, 0, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFDIR:
	default:
		// Symlinks are resolved by the guest; devices, fifos and
		// sockets are the host's, not the guest's, to open.
		return p9.QID{}, 0, linux.EPERM
	}
	fd, err := unix.Open(procPath(f.fd), openFlags(mode), 0)
	if err != nil {
		return p9.QID{}, 0, err
	}
	f.open = os.NewFile(uintptr(fd), "")
	return qidOf(&st), 0, nil
}

func (f *file) ReadAt(p []byte, offset int64) (int, error) {
	if f.open == nil {
		return 0, linux.EBADF
	}
	n, err := f.open.ReadAt(p, offset)
	if err == io.EOF {
		err = nil
	}
	return n, err
}

func (f *file) WriteAt(p []byte, offset int64) (int, error) {
	if f.readOnly {
		return 0, linux.EROFS
	}
	if f.open == nil {
		return 0, linux.EBADF
	}
	return f.open.WriteAt(p, offset)
}

func (f *file) FSync() error {
	if f.open == nil {
		return linux.EBADF
	}
	return f.open.Sync()
}

// owned gives what a guest created the owner it named (the server runs as
// root; a non-root one keeps its own). Linux guests name the group only:
// the p9 package does not pass on the user a connection attached as, so
// the owner is the server's user.
func (f *file) owned(name string, uid p9.UID, gid p9.GID) {
	u, g := -1, -1
	if uid.Ok() {
		u = int(uid)
	}
	if gid.Ok() {
		g = int(gid)
	}
	if os.Geteuid() == 0 && (u >= 0 || g >= 0) {
		unix.Fchownat(f.fd, name, u, g, unix.AT_SYMLINK_NOFOLLOW)
	}
}

func (f *file) Create(name string, mode p9.OpenFlags, perm p9.FileMode, uid p9.UID, gid p9.GID) (p9.File, p9.QID, uint32, error) {
	if f.readOnly {
		return nil, p9.QID{}, 0, linux.EROFS
	}
	if err := validName(name); err != nil {
		return nil, p9.QID{}, 0, err
	}
	fd, err := unix.Openat(f.fd, name, openFlags(mode)|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, uint32(perm.Permissions()))
	if err != nil {
		return nil, p9.QID{}, 0, err
	}
	opened := os.NewFile(uintptr(fd), name)
	f.owned(name, uid, gid)
	c, qid, err := f.openChild(name)
	if err != nil {
		opened.Close()
		return nil, p9.QID{}, 0, err
	}
	c.open = opened
	return c, qid, 0, nil
}

func (f *file) qidAt(name string) (p9.QID, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(f.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return p9.QID{}, err
	}
	return qidOf(&st), nil
}

func (f *file) Mkdir(name string, perm p9.FileMode, uid p9.UID, gid p9.GID) (p9.QID, error) {
	if f.readOnly {
		return p9.QID{}, linux.EROFS
	}
	if err := validName(name); err != nil {
		return p9.QID{}, err
	}
	if err := unix.Mkdirat(f.fd, name, uint32(perm.Permissions())); err != nil {
		return p9.QID{}, err
	}
	f.owned(name, uid, gid)
	return f.qidAt(name)
}

func (f *file) Symlink(target, name string, uid p9.UID, gid p9.GID) (p9.QID, error) {
	if f.readOnly {
		return p9.QID{}, linux.EROFS
	}
	if err := validName(name); err != nil {
		return p9.QID{}, err
	}
	if err := unix.Symlinkat(target, f.fd, name); err != nil {
		return p9.QID{}, err
	}
	f.owned(name, uid, gid)
	return f.qidAt(name)
}

func (f *file) Link(target p9.File, name string) error {
	if f.readOnly {
		return linux.EROFS
	}
	t, ok := target.(*file)
	if !ok {
		return linux.EXDEV
	}
	if err := validName(name); err != nil {
		return err
	}
	return unix.Linkat(t.fd, "", f.fd, name, unix.AT_EMPTY_PATH)
}

func (f *file) Mknod(name string, mode p9.FileMode, major, minor uint32, uid p9.UID, gid p9.GID) (p9.QID, error) {
	if f.readOnly {
		return p9.QID{}, linux.EROFS
	}
	if err := validName(name); err != nil {
		return p9.QID{}, err
	}
	// Fifos, sockets and empty files only: a device node on the host's
	// file system would be the host's device.
	switch mode.FileType() {
	case p9.ModeNamedPipe, p9.ModeSocket, p9.ModeRegular:
	default:
		return p9.QID{}, linux.EPERM
	}
	if err := unix.Mknodat(f.fd, name, uint32(mode), 0); err != nil {
		return p9.QID{}, err
	}
	f.owned(name, uid, gid)
	return f.qidAt(name)
}

// Rename is the 9P2000 rename of a fid; Linux guests use RenameAt.
func (f *file) Rename(newDir p9.File, newName string) error {
	return linux.ENOSYS
}

func (f *file) RenameAt(oldName string, newDir p9.File, newName string) error {
	if f.readOnly {
		return linux.EROFS
	}
	d, ok := newDir.(*file)
	if !ok {
		return linux.EXDEV
	}
	if err := validName(oldName); err != nil {
		return err
	}
	if err := validName(newName); err != nil {
		return err
	}
	return unix.Renameat(f.fd, oldName, d.fd, newName)
}

func (f *file) UnlinkAt(name string, flags uint32) error {
	if f.readOnly {
		return linux.EROFS
	}
	if err := validName(name); err != nil {
		return err
	}
	return unix.Unlinkat(f.fd, name, int(flags)&unix.AT_REMOVEDIR)
}

// Readdir serves a directory's entries by index: offset N resumes after
// the Nth entry. The names are read once, when a guest reads from offset 0.
func (f *file) Readdir(offset uint64, count uint32) (p9.Dirents, error) {
	if f.open == nil {
		return nil, linux.EBADF
	}
	f.dirMu.Lock()
	defer f.dirMu.Unlock()
	if offset == 0 || f.names == nil {
		if _, err := f.open.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		names, err := f.open.Readdirnames(-1)
		if err != nil {
			return nil, err
		}
		f.names = names
	}
	if offset >= uint64(len(f.names)) {
		return nil, nil
	}
	// A dirent takes at least 24 bytes on the wire: stat no more names
	// than the reply can carry.
	end := offset + uint64(count/24) + 1
	if end > uint64(len(f.names)) {
		end = uint64(len(f.names))
	}
	var ents p9.Dirents
	for i := offset; i < end; i++ {
		name := f.names[i]
		var st unix.Stat_t
		if err := unix.Fstatat(f.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue // gone since it was listed: readdir skips it
		}
		ents = append(ents, p9.Dirent{
			QID:    qidOf(&st),
			Offset: i + 1,
			// A 9P2000.L dirent carries getdents(2)'s d_type
			// (S_IFMT >> 12), which spares the guest a lookup per entry.
			Type: p9.QIDType(st.Mode & unix.S_IFMT >> 12),
			Name: name,
		})
	}
	return ents, nil
}

func (f *file) Readlink() (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(f.fd, "", buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
