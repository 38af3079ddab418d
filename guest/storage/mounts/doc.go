// Package mounts owns the guest's mount bookkeeping: which targets are
// mounted, how many requests hold each one, and how to undo them. It also
// owns the rule every guest path a host names must pass: absolute, clean,
// and beneath one of the configured roots without escaping them through
// "..", or a symbolic link.
package mounts
