package store_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/platform"
	"github.com/labplane/labplane/internal/store"
)

func TestPromotions(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		p := platform.Promotion{ID: "0194-promo-one", From: "staging", To: "production", Release: "r2", Previous: "r1",
			Actor: "ci", StartedAt: at(0), Status: platform.Promoting, Phase: platform.PhaseBackup, Serial: "1", FailedBatch: -1,
			Batches: []platform.Batch{{Hosts: []string{"lms1"}, Targets: []platform.Target{{Host: "lms1", Service: "lms", Address: "10.0.0.1", Port: 80}}}}}
		if err := e.s.SavePromotion(ctx, p); err != nil {
			t.Fatal(err)
		}
		p.Phase, p.Done, p.Status, p.FinishedAt, p.Runs = platform.PhaseDone, 1, platform.Promoted, at(60), []string{"run-1"}
		if err := e.s.SavePromotion(ctx, p); err != nil { // replaced whole
			t.Fatal(err)
		}
		if err := e.s.SavePromotion(ctx, platform.Promotion{ID: "0194-promo-two", From: "staging", To: "demo", Release: "r2", StartedAt: at(10)}); err != nil {
			t.Fatal(err)
		}
		got, err := e.s.GetPromotion(ctx, "0194-promo-o")
		if err != nil {
			t.Fatal(err)
		}
		p.StartedAt, p.FinishedAt = norm(p.StartedAt), norm(p.FinishedAt)
		got.StartedAt, got.FinishedAt = norm(got.StartedAt), norm(got.FinishedAt)
		if !reflect.DeepEqual(got, p) {
			t.Errorf("GetPromotion = %+v\nwant %+v", got, p)
		}
		for _, id := range []string{"", "0194", "nope", "%"} {
			if _, err := e.s.GetPromotion(ctx, id); !errors.Is(err, store.ErrNoPromotion) {
				t.Errorf("GetPromotion(%q): %v, want ErrNoPromotion", id, err)
			}
		}
		all, err := e.s.ListPromotions(ctx, "")
		if err != nil || len(all) != 2 || all[0].ID != "0194-promo-two" {
			t.Errorf("ListPromotions(all) = %v, %v", all, err)
		}
		prod, err := e.s.ListPromotions(ctx, "production")
		if err != nil || len(prod) != 1 || prod[0].Status != platform.Promoted {
			t.Errorf("ListPromotions(production) = %v, %v", prod, err)
		}
		// a newer promotion to production that failed: the latest per target
		if err := e.s.SavePromotion(ctx, platform.Promotion{ID: "0194-promo-three", From: "staging", To: "production", Release: "r3",
			StartedAt: at(100), Status: platform.PromotionFailed}); err != nil {
			t.Fatal(err)
		}
		latest, err := e.s.LatestPromotions(ctx)
		if err != nil || len(latest) != 2 || latest[0].ID != "0194-promo-two" || latest[1].ID != "0194-promo-three" ||
			latest[1].Status != platform.PromotionFailed {
			t.Errorf("LatestPromotions = %+v, %v; want promo-two (demo), promo-three (production, failed)", latest, err)
		}
		if err := e.s.SavePromotion(ctx, platform.Promotion{ID: "x"}); err == nil {
			t.Error("SavePromotion of an incomplete promotion succeeded")
		}
	})
}

func TestLockEnvironment(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		holder := platform.Lock{Environment: "production", Kind: "promote", Holder: "0194-p", Actor: "ci", PID: 42, Host: "runner-1", Since: at(5)}
		_, unlock, err := e.s.LockEnvironment(ctx, holder)
		if err != nil {
			t.Fatal(err)
		}
		// another process is refused, and told who holds it
		other := e.open(t)
		_, _, err = other.LockEnvironment(ctx, platform.Lock{Environment: "production", Kind: "deploy", Actor: "ann", PID: 7, Host: "laptop", Since: at(6)})
		var locked *platform.LockedError
		if !errors.As(err, &locked) || locked.Held.Holder != "0194-p" || locked.Held.PID != 42 || !locked.Held.Since.Equal(norm(at(5))) {
			t.Fatalf("second lock: %v (%+v), want a LockedError naming the holder", err, locked)
		}
		for _, want := range []string{"environment production is busy", "promote 0194-p by ci", "pid 42 on runner-1"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q lacks %q", err, want)
			}
		}
		// another environment is free
		_, u2, err := other.LockEnvironment(ctx, platform.Lock{Environment: "staging", Kind: "deploy", Actor: "ann", PID: 7, Host: "laptop", Since: at(6)})
		if err != nil {
			t.Fatalf("lock of another environment: %v", err)
		}
		if err := u2(ctx); err != nil {
			t.Fatal(err)
		}
		if err := unlock(ctx); err != nil {
			t.Fatal(err)
		}
		_, u3, err := other.LockEnvironment(ctx, platform.Lock{Environment: "production", Kind: "deploy", Actor: "ann", PID: 7, Host: "laptop", Since: at(7)})
		if err != nil {
			t.Fatalf("lock after unlock: %v", err)
		}
		// the holder's process ends without unlocking (Close stands in for its death): the lock
		// is free again, and the next holder replaces the row it left
		if err := other.Close(); err != nil {
			t.Fatal(err)
		}
		_ = u3
		// PostgreSQL ends the dead session's advisory locks when it notices the connection is gone
		var u4 func(context.Context) error
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, u4, err = e.s.LockEnvironment(ctx, holder); err == nil || !errors.As(err, &locked) || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("lock after the holder died: %v", err)
		}
		if err := u4(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// The registry's clock is a real clock: the database's, close to the machine's here.
func TestNow(t *testing.T) {
	eachDriver(t, func(t *testing.T, e *env) {
		before := time.Now()
		now, err := e.s.Now(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if now.Location() != time.UTC || now.Before(before.Add(-time.Second)) || now.After(time.Now().Add(time.Second)) {
			t.Errorf("Now = %v, the machine says %v", now, before)
		}
	})
}
