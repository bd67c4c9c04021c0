// Package deploy runs the project's playbooks against an environment and records the run:
// who, when, which release, each host's recap, how it ended and where its full log is. Secrets
// the environment references are checked before anything runs and kept out of the record and
// the log.
package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/labplane/labplane/internal/ansible"
	"github.com/labplane/labplane/internal/envspec"
	"github.com/labplane/labplane/internal/runs"
)

// Registry records runs.
type Registry interface {
	CreateRun(ctx context.Context, r runs.Run) error
	FinishRun(ctx context.Context, r runs.Run) error
}

// Runner runs a playbook (ansible.Run; tests may inject faults).
type Runner func(ctx context.Context, p ansible.Playbook, on func(ansible.Event), log io.Writer) (ansible.Result, error)

// Deployer deploys releases to environments.
type Deployer struct {
	Registry Registry
	// Run runs Ansible; nil means ansible.Run.
	Run Runner
	// Project is the directory holding playbooks/ and roles/.
	Project string
	// LogDir is where each run's full log goes (<id>.jsonl, 0600).
	LogDir string
	// Ansible is the ansible-playbook binary ("" finds it on PATH).
	Ansible string
	Now     func() time.Time
	Log     *slog.Logger
}

// Request is one deploy.
type Request struct {
	Env *envspec.Environment
	// Inventory is the rendered inventory file.
	Inventory string
	// Release overrides the spec's release (a rollback, a promotion); empty = the spec's.
	Release string
	Kind    runs.Kind
	Options runs.Options
	Actor   string
	// Progress sees every event while Ansible runs (may be nil).
	Progress func(ansible.Event)
	// Planned, if set, is given the run's plan (ansible.List) before it starts, for progress
	// at a terminal; a plan that cannot be listed is logged, and the run goes on without.
	Planned func(ansible.Plan)
}

// release is the release req deploys: its own, or the spec's.
func (req Request) release() string {
	if req.Release != "" {
		return req.Release
	}
	return req.Env.Release
}

// ErrFailed: the run did not succeed; the error says which hosts and tasks failed.
var ErrFailed = errors.New("deploy failed")

// BadInputError is a problem with what was asked (nothing was run or recorded).
type BadInputError struct{ Err error }

func (e *BadInputError) Error() string { return e.Err.Error() }
func (e *BadInputError) Unwrap() error { return e.Err }

// Playbook is the ansible-playbook run a request makes (no secrets in it: they are read by
// the inventory's lookups from labplane's environment, or from the vault file).
func (d *Deployer) Playbook(req Request) ansible.Playbook {
	env := req.Env
	release := req.release()
	extra := map[string]any{"openedx_serial": env.Rollout.Serial}
	if release != env.Release {
		// from a flag or a record: checked (envspec.CheckRelease), and never templated either
		extra["openedx_release"] = ansible.Unsafe(release)
		extra["openedx_artifact"] = ansible.Unsafe(env.ArtifactFor(release))
		extra["openedx_artifact_checksum"] = ansible.Unsafe(env.ChecksumFor(release))
	}
	p := ansible.Playbook{
		Binary:    d.Ansible,
		Playbooks: []string{filepath.Join(d.Project, "playbooks", "site.yml")},
		Inventory: req.Inventory,
		Check:     req.Options.Check,
		Diff:      req.Options.Diff,
		Limit:     req.Options.Limit,
		Tags:      req.Options.Tags,
		ExtraVars: extra,
		Dir:       d.Project,
		Env: map[string]string{
			"ANSIBLE_ROLES_PATH": filepath.Join(d.Project, "roles"),
			"ANSIBLE_PIPELINING": "true",
		},
	}
	if f := env.Secrets.VaultFile; f != "" {
		p.ExtraVarsFiles = []string{env.Path(f)}
	}
	if f := env.Secrets.VaultPasswordFile; f != "" {
		p.VaultPasswordFile = env.Path(f)
	}
	return p
}

// Deploy runs the playbooks for req and records the run. The returned run is the record as
// stored; the error wraps ErrFailed when the run did not succeed, is a *BadInputError when
// nothing could be run, and is another error when the registry or Ansible could not be used.
func (d *Deployer) Deploy(ctx context.Context, req Request) (runs.Run, error) {
	secrets, err := readSecrets(req.Env)
	if err != nil {
		return runs.Run{}, &BadInputError{err}
	}
	if err := checkArtifact(req.Env, req.release()); err != nil {
		return runs.Run{}, &BadInputError{err}
	}
	if _, err := ansible.LookPath(d.Ansible); err != nil {
		return runs.Run{}, &BadInputError{err}
	}
	if _, err := os.Stat(req.Inventory); err != nil {
		return runs.Run{}, &BadInputError{fmt.Errorf("inventory %s: %w (render it with labplane inventory render %s)", req.Inventory, err, req.Env.Name)}
	}
	p := d.Playbook(req)
	if req.Planned != nil {
		if plan, err := ansible.List(ctx, p); err != nil {
			d.Log.Warn("no progress for this run: its tasks could not be listed", "err", secrets.redact(err.Error()))
		} else {
			req.Planned(plan)
		}
	}
	if err := os.MkdirAll(d.LogDir, 0o700); err != nil {
		return runs.Run{}, fmt.Errorf("run log directory: %w", err)
	}
	id, err := uuid.NewV7() // sorts by time
	if err != nil {
		return runs.Run{}, fmt.Errorf("run id: %w", err)
	}
	release := req.release()
	kind := req.Kind
	if kind == "" {
		kind = runs.Deploy
	}
	run := runs.Run{ID: id.String(), Kind: kind, Environment: req.Env.Name, Release: release, Actor: req.Actor,
		StartedAt: d.Now(), Status: runs.Running, Options: req.Options,
		LogPath: filepath.Join(d.LogDir, id.String()+".jsonl")}
	logFile, err := os.OpenFile(run.LogPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return runs.Run{}, fmt.Errorf("run log: %w", err)
	}
	defer logFile.Close()
	if err := d.Registry.CreateRun(ctx, run); err != nil {
		os.Remove(run.LogPath)
		return runs.Run{}, fmt.Errorf("record run: %w", err)
	}
	d.Log.Info("deploy started", "run", run.ID, "environment", run.Environment, "release", run.Release, "log", run.LogPath)

	// the hosts the run reached: an interrupted run has no recap to name them
	reached := map[string]bool{}
	res, runErr := d.runner()(ctx, p, func(e ansible.Event) {
		if e.Host != "" {
			reached[e.Host] = true
		}
		if req.Progress != nil {
			req.Progress(e)
		}
	}, secrets.writer(logFile))
	if runErr == nil && res.Err() != nil && !req.Options.Check && req.Options.Tags == "" {
		for _, h := range res.Hosts() {
			reached[h] = true
		}
		if res.Recap == nil {
			res.Recap = map[string]runs.HostRecap{}
		}
		for host, release := range d.readBack(ctx, p, slices.Sorted(maps.Keys(reached)), secrets.writer(logFile)) {
			rc := res.Recap[host]
			rc.Release = release
			res.Recap[host] = rc
		}
	}
	run.FinishedAt = d.Now()
	run.Recap = res.Recap
	for _, f := range res.Failures {
		f.Msg = secrets.redact(f.Msg)
		run.Failures = append(run.Failures, f)
	}
	switch {
	case runErr != nil:
		run.Status, run.Error = runs.Failed, secrets.redact(runErr.Error())
	case res.Cancelled:
		run.Status, run.Error = runs.Cancelled, res.Err().Error()
	case res.Err() != nil:
		run.Status, run.Error = runs.Failed, secrets.redact(res.Err().Error())
	default:
		run.Status = runs.Succeeded
	}
	// record the end even when the run was cancelled
	recordCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := d.Registry.FinishRun(recordCtx, run); err != nil {
		return run, fmt.Errorf("record the end of run %s (%s): %w", run.ID, run.Status, err)
	}
	d.Log.Info("deploy finished", "run", run.ID, "status", run.Status, "duration", run.Duration(run.FinishedAt).Round(time.Millisecond))
	if run.Status != runs.Succeeded {
		return run, fmt.Errorf("%w: %s %s: %s", ErrFailed, run.Kind, run.Environment, run.Error)
	}
	return run, nil
}

// checkArtifact checks an artifact on this machine against the spec's checksum before
// anything runs (the hosts check what they download themselves, with get_url).
func checkArtifact(env *envspec.Environment, release string) error {
	artifact, checksum := env.ArtifactFor(release), env.ChecksumFor(release)
	algo, want, ok := strings.Cut(checksum, ":")
	if !ok || envspec.IsURL(artifact) {
		return nil
	}
	if filepath.IsAbs(want) { // a checksum file: sha256sum's format, or the digest alone
		raw, err := os.ReadFile(want)
		if err != nil {
			return fmt.Errorf("%s: artifact_checksum: %w", env.File, err)
		}
		want, _, _ = strings.Cut(strings.TrimSpace(string(raw)), " ")
	}
	hashes := map[string]func() hash.Hash{"sha256": sha256.New, "sha384": sha512.New384, "sha512": sha512.New}
	h := hashes[algo]()
	f, err := os.Open(artifact)
	if err != nil {
		return fmt.Errorf("%s: artifact: %w", env.File, err)
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("%s: artifact: %w", env.File, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, want) {
		return fmt.Errorf("%s: artifact %s: its %s is %s, not %s as artifact_checksum says: nothing was deployed", env.File, artifact, algo, got, want)
	}
	return nil
}

// readBack asks hosts, after a run that did not succeed, what they run (playbooks/running.yml):
// the release each lms and cms host's service process started in, or the one its current link
// points to when the service is not running. A host that cannot be read is left out. It runs
// even when ctx was cancelled: the record must say what runs.
func (d *Deployer) readBack(ctx context.Context, p ansible.Playbook, hosts []string, log io.Writer) map[string]string {
	if len(hosts) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readBackTimeout)
	defer cancel()
	p.Playbooks = []string{filepath.Join(d.Project, "playbooks", "running.yml")}
	p.Check, p.Diff, p.Tags, p.Limit, p.ExtraVars = false, false, "", strings.Join(hosts, ","), nil
	found := map[string]string{}
	res, err := d.runner()(ctx, p, func(e ansible.Event) {
		var r struct {
			Stat struct {
				IsLink bool   `json:"islnk"`
				Target string `json:"lnk_target"`
			} `json:"stat"`
		}
		if e.Kind == ansible.OK && strings.HasSuffix(e.Task, readBackTask) && json.Unmarshal(e.Result, &r) == nil && r.Stat.IsLink {
			found[e.Host] = filepath.Base(r.Stat.Target)
		}
	}, log)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		d.Log.Warn("read back what the hosts run", "hosts", strings.Join(hosts, ","), "found", len(found), "err", err)
	}
	return found
}

// readBackTask is the task of playbooks/running.yml whose stat says what a host runs.
const readBackTask = "Read the release the host runs"

// readBackTimeout bounds the read-back (a few seconds on reachable hosts).
const readBackTimeout = 2 * time.Minute

func (d *Deployer) runner() Runner {
	if d.Run != nil {
		return d.Run
	}
	return ansible.Run
}

// secretValues are the values of the secrets the environment references from labplane's
// environment: they are replaced by "(hidden)" wherever labplane writes Ansible's words.
type secretValues [][]byte

// minSecretLen: shorter values would hide innocent text, and are no secrets anyway.
const minSecretLen = 6

// CheckSecrets tells, before anything is asked or run, whether every secret env references
// from labplane's environment is set: a *BadInputError naming each one missing.
func CheckSecrets(env *envspec.Environment) error {
	if _, err := readSecrets(env); err != nil {
		return &BadInputError{err}
	}
	return nil
}

func readSecrets(env *envspec.Environment) (secretValues, error) {
	var vals secretValues
	var missing []string
	for _, s := range env.SecretRefs() {
		if s.Ref.Env == "" {
			continue
		}
		v, ok := os.LookupEnv(s.Ref.Env)
		if !ok || v == "" {
			missing = append(missing, fmt.Sprintf("%s: %s: environment variable %s is not set", env.File, s.Field, s.Ref.Env))
			continue
		}
		if len(v) >= minSecretLen {
			vals = append(vals, []byte(v))
			if quoted, _ := json.Marshal(v); string(quoted[1:len(quoted)-1]) != v {
				vals = append(vals, quoted[1:len(quoted)-1]) // as it appears in the JSON log
			}
		}
	}
	if len(missing) > 0 {
		return nil, errors.New(strings.Join(missing, "\n"))
	}
	return vals, nil
}

func (s secretValues) redact(text string) string {
	return string(s.redactBytes([]byte(text)))
}

func (s secretValues) redactBytes(b []byte) []byte {
	for _, v := range s {
		b = bytes.ReplaceAll(b, v, []byte("(hidden)"))
	}
	return b
}

// writer redacts each write: the ansible package writes whole events, so a secret is never
// split across two writes.
func (s secretValues) writer(w io.Writer) io.Writer { return redactingWriter{w, s} }

type redactingWriter struct {
	w       io.Writer
	secrets secretValues
}

func (r redactingWriter) Write(b []byte) (int, error) {
	if _, err := r.w.Write(r.secrets.redactBytes(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
