package protocol

import "context"

// NullActivityID is the ActivityId of a request that named none: hcsshim's
// host decodes every ActivityId as a GUID, so an empty one never goes out.
const NullActivityID = "00000000-0000-0000-0000-000000000000"

type activityKey struct{}

// WithActivityID returns ctx carrying the ActivityId of the request being
// served.
func WithActivityID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, activityKey{}, id)
}

// ActivityID is the ActivityId ctx carries (WithActivityID), or
// NullActivityID when it carries none.
func ActivityID(ctx context.Context) string {
	if id, _ := ctx.Value(activityKey{}).(string); id != "" {
		return id
	}
	return NullActivityID
}
