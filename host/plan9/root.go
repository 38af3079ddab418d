package plan9

import (
	"sort"

	"github.com/hugelgupf/p9/fsimpl/readdir"
	"github.com/hugelgupf/p9/fsimpl/templatefs"
	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
)

// root is the directory a guest attaches to: one entry per export. The
// guest's attach name walks from it into an export, so a guest mounts an
// export and never sees this directory unless it attaches without a name.
type root struct {
	p9.DefaultWalkGetAttr
	templatefs.ReadOnlyDir
	templatefs.NilCloser

	s *Server
}

// Attach implements p9.Attacher.
func (r *root) Attach() (p9.File, error) { return &root{s: r.s}, nil }

var rootQID = p9.QID{Type: p9.TypeDir, Path: 0}

func (r *root) Walk(names []string) ([]p9.QID, p9.File, error) {
	if len(names) == 0 {
		return nil, &root{s: r.s}, nil
	}
	e, ok := r.s.lookup(names[0])
	if !ok {
		return nil, nil, linux.ENOENT
	}
	top, err := e.attach()
	if err != nil {
		return nil, nil, err
	}
	qid, _, _, err := top.GetAttr(p9.AttrMask{Mode: true})
	if err != nil {
		top.Close()
		return nil, nil, err
	}
	if len(names) == 1 {
		return []p9.QID{qid}, top, nil
	}
	qids, f, err := top.Walk(names[1:])
	top.Close()
	if err != nil {
		return nil, nil, err
	}
	return append([]p9.QID{qid}, qids...), f, nil
}

func (r *root) Open(mode p9.OpenFlags) (p9.QID, uint32, error) {
	if mode.Mode() != p9.ReadOnly {
		return p9.QID{}, 0, linux.EROFS
	}
	return rootQID, 0, nil
}

func (r *root) names() []string {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	names := make([]string, 0, len(r.s.exports))
	for n := range r.s.exports {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (r *root) Readdir(offset uint64, count uint32) (p9.Dirents, error) {
	names := r.names()
	qids := make(map[string]p9.QID, len(names))
	for i, n := range names {
		qids[n] = p9.QID{Type: p9.TypeDir, Path: uint64(i) + 1}
	}
	return readdir.Readdir(offset, count, names, qids)
}

func (r *root) StatFS() (p9.FSStat, error) { return p9.FSStat{}, linux.ENOSYS }

func (r *root) GetAttr(req p9.AttrMask) (p9.QID, p9.AttrMask, p9.Attr, error) {
	return rootQID, p9.AttrMask{Mode: true, NLink: true}, p9.Attr{
		Mode:  p9.ModeDirectory | 0o555,
		NLink: 2,
	}, nil
}
