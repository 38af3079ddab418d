// Package log owns the context-carried logger and the field names used
// across the project. The logger travels in the context the way
// github.com/containerd/log carries it, so a program that links the host
// library sets it with that package's WithLogger and sees every line.
package log

import (
	"context"

	clog "github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// Field names used in every log line that concerns them.
const (
	FieldContainerID = "cid"
	FieldProcessID   = "pid"
	FieldActivityID  = "activity"
	FieldPort        = "port"
	FieldMessage     = "msg-type"
	FieldRequestID   = "req-id"
)

// L is the logger used when a context carries none: logrus's standard one.
var L = clog.L

// WithLogger returns ctx carrying entry (containerd/log's WithLogger).
func WithLogger(ctx context.Context, entry *logrus.Entry) context.Context {
	return clog.WithLogger(ctx, entry)
}

// G returns the logger ctx carries, or L (containerd/log's G).
func G(ctx context.Context) *logrus.Entry { return clog.G(ctx) }

// With returns ctx whose logger has one more field, and that logger.
func With(ctx context.Context, key string, value any) (context.Context, *logrus.Entry) {
	e := G(ctx).WithField(key, value)
	return WithLogger(ctx, e), e
}
