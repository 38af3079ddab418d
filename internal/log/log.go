// Package log owns the context-carried logger: a logrus entry travels in the
// context, and the field names used across the project are named here once.
package log

import (
	"context"

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

type loggerKey struct{}

// L is the logger used when a context carries none: logrus's standard one.
var L = logrus.NewEntry(logrus.StandardLogger())

// WithLogger returns ctx carrying entry.
func WithLogger(ctx context.Context, entry *logrus.Entry) context.Context {
	return context.WithValue(ctx, loggerKey{}, entry)
}

// G returns the logger ctx carries, or L.
func G(ctx context.Context) *logrus.Entry {
	if e, ok := ctx.Value(loggerKey{}).(*logrus.Entry); ok {
		return e
	}
	return L
}

// With returns ctx whose logger has one more field, and that logger.
func With(ctx context.Context, key string, value any) (context.Context, *logrus.Entry) {
	e := G(ctx).WithField(key, value)
	return WithLogger(ctx, e), e
}
