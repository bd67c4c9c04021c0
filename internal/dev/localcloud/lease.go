package localcloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/labplane/labplane/internal/filelock"
)

// Lease is a hold on one or more instances by a test suite (or anything else that wants a local
// cloud only while it runs). go test runs the test binaries of several packages at once, each
// with its own TestMain: leases coordinate them through file locks in each instance's Dir.
//
//   - instance.lock (exclusive) serialises Up/Down/Acquire/Release of an instance.
//   - users.lock is held SHARED by every lease on the instance for as long as it lives. The last
//     Release is the one that can take it exclusively.
//   - started-by-acquire exists while the running instance was started by an Acquire (nothing of
//     it was running before). The last Release stops such an instance, pass or fail. An instance
//     that was already running (a developer's), or that someone claimed with Instance.Up, is left
//     running.
type Lease struct {
	mu       sync.Mutex
	insts    []Instance
	users    map[string]func() error // releases the shared lock on users.lock, per instance
	started  map[string]bool         // this lease's Acquire started the instance
	stopped  map[string]bool         // stopped by Stop and not started again
	clouds   string                  // merged clouds.yaml
	released bool

	// lastRelease records, per instance, what the last Release did (for tests).
	lastRelease map[string]string
}

// ops are the operations leases perform on instances; tests of the lock logic replace them.
var ops = struct {
	up       func(ctx context.Context, in Instance, progress io.Writer) error
	down     func(ctx context.Context, in Instance, purge bool, progress io.Writer) error
	anyAlive func(in Instance) bool
}{
	up:       func(ctx context.Context, in Instance, w io.Writer) error { return in.up(ctx, w) },
	down:     func(ctx context.Context, in Instance, purge bool, w io.Writer) error { return in.down(ctx, purge, w) },
	anyAlive: func(in Instance) bool { return in.anyAlive() },
}

// Release outcomes (Lease.lastRelease).
const (
	releaseStopped = "stopped"  // no user left and started by an Acquire: stopped it
	releaseInUse   = "in-use"   // another lease still holds it
	releaseNotOurs = "not-ours" // no user left, but it was running before (or claimed by Up)
)

// Acquire brings the named instances up (under each one's exclusive instance lock, so that
// concurrent suites start it once) and leases them: it holds a shared lock on each instance's
// users file until Release. It writes a clouds.yaml with every entry of the instances
// (Lease.CloudsYAML). On failure it releases what it had acquired, stopping what it started.
func Acquire(ctx context.Context, progress io.Writer, names ...string) (*Lease, error) {
	if len(names) == 0 {
		return nil, errors.New("localcloud: acquire: no instance named")
	}
	l := &Lease{users: map[string]func() error{}, started: map[string]bool{}, stopped: map[string]bool{},
		lastRelease: map[string]string{}}
	for _, name := range names {
		in, err := Named(name)
		if err != nil {
			return nil, errors.Join(err, l.Release(context.WithoutCancel(ctx)))
		}
		if slices.ContainsFunc(l.insts, func(x Instance) bool { return x.Name == name }) {
			continue
		}
		if err := l.acquire(ctx, in, progress); err != nil {
			return nil, errors.Join(err, l.Release(context.WithoutCancel(ctx)))
		}
	}
	if err := l.writeClouds(); err != nil {
		return nil, errors.Join(err, l.Release(context.WithoutCancel(ctx)))
	}
	return l, nil
}

func (l *Lease) acquire(ctx context.Context, in Instance, progress io.Writer) error {
	unlock, err := in.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	// Only a Release holding the instance lock takes users.lock exclusively, so this never waits.
	unlockUsers, err := filelock.LockShared(ctx, in.usersPath())
	if err != nil {
		return fmt.Errorf("localcloud %s: users lock: %w", in.Name, err)
	}
	starting := !ops.anyAlive(in)
	if starting {
		if err := os.WriteFile(in.markerPath(), []byte(fmt.Sprintf("pid %d\n", os.Getpid())), 0o644); err != nil {
			_ = unlockUsers()
			return fmt.Errorf("localcloud %s: %w", in.Name, err)
		}
	}
	if err := ops.up(ctx, in, progress); err != nil {
		_ = unlockUsers()
		if starting {
			// stop what the failed start left running, unless another lease holds the instance
			if unlockExcl, ok, _ := filelock.TryLock(in.usersPath()); ok {
				err = errors.Join(err, ops.down(context.WithoutCancel(ctx), in, false, io.Discard))
				_ = os.Remove(in.markerPath())
				_ = unlockExcl()
			}
		}
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.insts = append(l.insts, in)
	l.users[in.Name] = unlockUsers
	l.started[in.Name] = starting
	return nil
}

// writeClouds merges the clouds.yaml entries of all leased instances into one temp file.
func (l *Lease) writeClouds() error {
	merged := map[string]any{}
	for _, in := range l.insts {
		b, err := os.ReadFile(in.CloudsYAML())
		if err != nil {
			return fmt.Errorf("localcloud %s: %w", in.Name, err)
		}
		var doc struct {
			Clouds map[string]any `yaml:"clouds"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("localcloud %s: %s: %w", in.Name, in.CloudsYAML(), err)
		}
		for k, v := range doc.Clouds {
			merged[k] = v
		}
	}
	out, err := yaml.Marshal(map[string]any{"clouds": merged})
	if err != nil {
		return err
	}
	f, err := os.CreateTemp("", "labplane-clouds-*.yaml") // 0600
	if err != nil {
		return err
	}
	if _, err := f.Write(append([]byte("# labplane dev cloud lease: the entries of every leased instance\n"), out...)); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	l.clouds = f.Name()
	return nil
}

// CloudsYAML is the path of a clouds.yaml holding the entries of every leased instance
// (local-a, local-a-admin, ...). It is removed by Release.
func (l *Lease) CloudsYAML() string { return l.clouds }

// Instances returns the leased instances.
func (l *Lease) Instances() []Instance {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.insts)
}

// Started reports whether this lease's Acquire started the instance (it was not running).
func (l *Lease) Started(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.started[name]
}

func (l *Lease) instance(name string) (Instance, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return Instance{}, fmt.Errorf("localcloud: lease already released")
	}
	for _, in := range l.insts {
		if in.Name == name {
			return in, nil
		}
	}
	return Instance{}, fmt.Errorf("localcloud: instance %q is not in this lease", name)
}

// Stop takes one leased instance down (without purge) while the lease holds it: for tests of
// an outage. Who owns the instance does not change; Start brings it back.
func (l *Lease) Stop(ctx context.Context, name string) error {
	in, err := l.instance(name)
	if err != nil {
		return err
	}
	unlock, err := in.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := ops.down(ctx, in, false, io.Discard); err != nil {
		return err
	}
	l.mu.Lock()
	l.stopped[name] = true
	l.mu.Unlock()
	return nil
}

// Start brings a leased instance back up after Stop (or after it died).
func (l *Lease) Start(ctx context.Context, name string, progress io.Writer) error {
	in, err := l.instance(name)
	if err != nil {
		return err
	}
	unlock, err := in.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := ops.up(ctx, in, progress); err != nil {
		return err
	}
	l.mu.Lock()
	delete(l.stopped, name)
	l.mu.Unlock()
	return nil
}

// Release ends the lease: it drops its shared lock on each instance; then, if no other lease
// holds the instance (it can take the users lock exclusively) and the instance was started by
// an Acquire, it stops it (Down without purge). An instance that was running before (a
// developer's) stays running; one this lease took down with Stop and did not Start again is
// brought back up in that case. Release is idempotent.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return nil
	}
	l.released = true
	insts := slices.Clone(l.insts)
	l.mu.Unlock()

	var errs []error
	for _, in := range insts {
		outcome, err := l.release(ctx, in)
		if err != nil {
			errs = append(errs, err)
		}
		l.mu.Lock()
		l.lastRelease[in.Name] = outcome
		l.mu.Unlock()
	}
	if l.clouds != "" {
		if err := os.Remove(l.clouds); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (l *Lease) release(ctx context.Context, in Instance) (string, error) {
	l.mu.Lock()
	unlockUsers := l.users[in.Name]
	delete(l.users, in.Name)
	stoppedHere := l.stopped[in.Name]
	l.mu.Unlock()
	if unlockUsers != nil {
		_ = unlockUsers() // drops the shared lock
	}
	unlock, err := in.lock(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()
	unlockExcl, ok, err := filelock.TryLock(in.usersPath())
	if err != nil {
		return "", fmt.Errorf("localcloud %s: users lock: %w", in.Name, err)
	}
	if !ok {
		return releaseInUse, nil
	}
	defer func() { _ = unlockExcl() }()
	if _, err := os.Stat(in.markerPath()); err != nil {
		if stoppedHere {
			// a developer's instance that this lease took down: bring it back as it was
			if err := ops.up(ctx, in, io.Discard); err != nil {
				return releaseNotOurs, err
			}
		}
		return releaseNotOurs, nil
	}
	if err := ops.down(ctx, in, false, io.Discard); err != nil {
		return releaseStopped, err
	}
	if err := os.Remove(in.markerPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return releaseStopped, err
	}
	return releaseStopped, nil
}
