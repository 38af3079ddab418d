package protocol

import (
	"context"
	"testing"
)

func TestActivityID(t *testing.T) {
	ctx := context.Background()
	if got := ActivityID(ctx); got != NullActivityID {
		t.Fatalf("no activity: %q", got)
	}
	if got := ActivityID(WithActivityID(ctx, "")); got != NullActivityID {
		t.Fatalf("empty activity: %q", got)
	}
	if got := ActivityID(WithActivityID(ctx, activity)); got != activity {
		t.Fatalf("activity %q", got)
	}
}
