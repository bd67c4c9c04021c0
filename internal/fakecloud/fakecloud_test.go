package fakecloud_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/fakecloud"
)

func TestFailNextNamedStackOnly(t *testing.T) {
	ctx := context.Background()
	c := fakecloud.New("a", 2, time.Millisecond)
	c.FailNext("create", "lab-x", 1)
	if _, err := c.Create(ctx, cloud.CreateRequest{Name: "lab-y"}); err != nil {
		t.Fatalf("another stack's create failed: %v", err)
	}
	st, err := c.Create(ctx, cloud.CreateRequest{Name: "lab-x"})
	if !errors.Is(err, cloud.ErrFailed) || st.Status != "CREATE_FAILED" || st.ID == "" {
		t.Fatalf("want CREATE_FAILED with an id, got %+v, %v", st, err)
	}
	if _, err := c.Create(ctx, cloud.CreateRequest{Name: "lab-x"}); err != nil {
		t.Fatalf("only one failure was asked for: %v", err)
	}
}

func TestFailNextAnyStack(t *testing.T) {
	ctx := context.Background()
	c := fakecloud.New("a", 2, time.Millisecond)
	c.FailNext("create", "", 2)
	for _, name := range []string{"lab-1", "lab-2"} {
		st, err := c.Create(ctx, cloud.CreateRequest{Name: name})
		if !errors.Is(err, cloud.ErrFailed) || st.Status != "CREATE_FAILED" {
			t.Fatalf("%s: want CREATE_FAILED, got %+v, %v", name, st, err)
		}
	}
	ok, err := c.Create(ctx, cloud.CreateRequest{Name: "lab-3"})
	if err != nil || ok.Status != "CREATE_COMPLETE" {
		t.Fatalf("the third create must succeed: %+v, %v", ok, err)
	}
	// "" counts only for the operation it names
	c.FailNext("suspend", "", 1)
	if _, err := c.Resume(ctx, ok.Name, ok.ID); err != nil {
		t.Fatalf("resume is not suspend: %v", err)
	}
	if _, err := c.Suspend(ctx, ok.Name, ok.ID); !errors.Is(err, cloud.ErrFailed) {
		t.Fatalf("want the suspend to fail, got %v", err)
	}
	// a failure named for the stack is used before one for any stack
	c.FailNext("delete", "", 1)
	c.FailNext("delete", ok.Name, 1)
	if _, err := c.Delete(ctx, ok.Name, ok.ID); !errors.Is(err, cloud.ErrFailed) {
		t.Fatalf("first delete: want failed, got %v", err)
	}
	if _, err := c.Delete(ctx, ok.Name, ok.ID); !errors.Is(err, cloud.ErrFailed) {
		t.Fatalf("second delete: want failed (the any-stack fault), got %v", err)
	}
	if _, err := c.Delete(ctx, ok.Name, ok.ID); err != nil {
		t.Fatalf("third delete: %v", err)
	}
}
