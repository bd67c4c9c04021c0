package clock_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/labplane/labplane/internal/clock"
)

var start = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)

// log records what happened when, in simulated time.
type log struct {
	mu  sync.Mutex
	got []string
}

func (l *log) add(v *clock.Virtual, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, v.Now().Sub(start).String()+" "+what)
}

func TestVirtualSleepersWakeInOrder(t *testing.T) {
	v := clock.NewVirtual(start)
	var l log
	for _, d := range []time.Duration{720 * time.Hour, time.Second, time.Hour, time.Second} {
		v.Go(func() {
			if err := v.Sleep(context.Background(), d); err != nil {
				t.Error(err)
			}
			l.add(v, "woke")
		})
	}
	began := time.Now()
	v.Run()
	want := []string{"1s woke", "1s woke", "1h0m0s woke", "720h0m0s woke"}
	if !reflect.DeepEqual(l.got, want) {
		t.Errorf("got %v, want %v", l.got, want)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("a simulated month took %s", took)
	}
}

// TestVirtualWaitsForWork: the clock does not move while a counted goroutine works, even for
// a long (real) time, nor while goroutines counted with Add are on their way.
func TestVirtualWaitsForWork(t *testing.T) {
	v := clock.NewVirtual(start)
	var l log
	v.Go(func() {
		_ = v.Sleep(context.Background(), time.Minute)
		l.add(v, "early sleeper")
	})
	v.Go(func() {
		time.Sleep(50 * time.Millisecond) // real work
		l.add(v, "worker, before sleeping")
		_ = v.Sleep(context.Background(), time.Second)
		l.add(v, "worker")
	})
	v.Add(2)
	for range 2 {
		go func() {
			defer v.Done()
			time.Sleep(20 * time.Millisecond)
			l.add(v, "added")
		}()
	}
	v.Run()
	want := []string{"0s added", "0s added", "0s worker, before sleeping", "1s worker", "1m0s early sleeper"}
	if !reflect.DeepEqual(l.got, want) {
		t.Errorf("got %v, want %v", l.got, want)
	}
}

// TestVirtualSemaphore: ten jobs of 2 s through three places finish in rounds, first come
// first served.
func TestVirtualSemaphore(t *testing.T) {
	v := clock.NewVirtual(start)
	sem := v.NewSemaphore(3)
	var l log
	for i := range 10 {
		v.Go(func() {
			// each asks a millisecond after the previous: a known order
			_ = v.Sleep(context.Background(), time.Duration(i)*time.Millisecond)
			if err := sem.Acquire(context.Background()); err != nil {
				t.Error(err)
				return
			}
			_ = v.Sleep(context.Background(), 2*time.Second)
			sem.Release()
			l.add(v, string(rune('a'+i)))
		})
	}
	v.Run()
	want := []string{"2s a", "2.001s b", "2.002s c", "4s d", "4.001s e", "4.002s f", "6s g", "6.001s h", "6.002s i", "8s j"}
	if !reflect.DeepEqual(l.got, want) {
		t.Errorf("got %v, want %v", l.got, want)
	}
}

// TestVirtualCancel: a sleeper or a waiter whose context is done returns at once, counted
// again, and leaves no wake-up or place in line behind.
func TestVirtualCancel(t *testing.T) {
	v := clock.NewVirtual(start)
	v.Add(1) // this goroutine
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := v.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("sleep: %v, want cancelled", err)
	}
	if next, ok := v.Next(); ok {
		t.Errorf("a cancelled sleep left a wake-up at %v", next)
	}
	sem := v.NewSemaphore(1)
	if err := sem.Acquire(ctx); err != nil {
		t.Fatalf("a free place is taken whatever the context: %v", err)
	}
	if err := sem.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("acquire: %v, want cancelled", err)
	}
	sem.Release()
	if err := sem.Acquire(context.Background()); err != nil {
		t.Errorf("the place must be free again: %v", err)
	}
	v.Done()
	v.Wait() // every goroutine accounted for: returns
}
