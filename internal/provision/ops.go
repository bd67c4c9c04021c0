package provision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/labplane/labplane/internal/atomicfile"
	"github.com/labplane/labplane/internal/platform"
)

// Summary is a saved plan: what applying it changes.
type Summary struct {
	Environment string `json:"environment"`
	// Destroy says it is a plan to destroy everything.
	Destroy bool `json:"destroy"`
	// Module and Cloud are the spec's provision.module and provision.cloud.
	Module    string    `json:"module"`
	Cloud     string    `json:"cloud"`
	PlannedAt time.Time `json:"planned_at"`
	// Changes are the resources it changes, in Terraform's order.
	Changes []Change `json:"changes"`
	Counts
	// PlanFile is the saved plan.
	PlanFile string `json:"plan_file"`
}

// Result is an applied plan.
type Result struct {
	Environment string `json:"environment"`
	Destroy     bool   `json:"destroy"`
	// Applied are the changes Terraform completed.
	Applied []Change `json:"applied"`
	Counts
	// Hosts are the module's hosts output after an apply (none after a destroy).
	Hosts   map[string][]platform.Host `json:"hosts,omitempty"`
	Seconds float64                    `json:"seconds"`
}

// planMeta is kept beside a saved plan: its summary, and the fingerprint of what it was made
// from (the root module, the modules' files, the cloud, the state's lineage and serial).
type planMeta struct {
	Summary     Summary `json:"summary"`
	Fingerprint string  `json:"fingerprint"`
}

func metaFile(plan string) string { return plan + ".json" }

// Plan writes the root module, initializes the working directory (the provider from the
// mirror of the CLI configuration), validates the configuration and saves a plan, which
// Apply applies exactly. A plan replaces the previous one.
func (w *Workspace) Plan(ctx context.Context) (Summary, error) { return w.plan(ctx, false) }

// PlanDestroy saves a plan that destroys everything in the state, which Destroy applies.
func (w *Workspace) PlanDestroy(ctx context.Context) (Summary, error) { return w.plan(ctx, true) }

// Apply applies the saved plan, exactly: ErrNoPlan without one, ErrStalePlan when the module,
// the variables, the cloud or the state changed since. The plan is spent afterwards, whatever
// the outcome. A failure is an *Error naming the resources and Terraform's messages.
func (w *Workspace) Apply(ctx context.Context) (Result, error) { return w.apply(ctx, false) }

// Destroy applies the saved destroy plan (PlanDestroy), like Apply.
func (w *Workspace) Destroy(ctx context.Context) (Result, error) { return w.apply(ctx, true) }

// SavedPlan returns the saved plan's summary (destroy: the saved destroy plan's), or
// ErrNoPlan, or ErrStalePlan.
func (w *Workspace) SavedPlan(ctx context.Context, destroy bool) (Summary, error) {
	if err := ctx.Err(); err != nil {
		return Summary{}, err
	}
	m, err := w.saved(destroy)
	return m.Summary, err
}

func (w *Workspace) plan(ctx context.Context, destroy bool) (Summary, error) {
	defer w.secure()
	// the previous plan goes first: a failed plan must not leave an older one to apply
	if err := w.discard(destroy); err != nil {
		return Summary{}, err
	}
	if err := w.writeRoot(); err != nil {
		return Summary{}, err
	}
	if err := w.init(ctx); err != nil {
		return Summary{}, err
	}
	if err := w.validate(ctx); err != nil {
		return Summary{}, err
	}
	fp, err := w.fingerprint()
	if err != nil {
		return Summary{}, err
	}
	stream := newUIStream(w.log, nil)
	tf, err := w.terraform(nil)
	if err != nil {
		return Summary{}, err
	}
	_, err = tf.PlanJSON(ctx, stream, w.planOptions(destroy)...)
	stream.flush()
	if err != nil {
		_ = w.discard(destroy) // an interrupted plan may have written part of a plan file
		return Summary{}, w.fail(ctx, "plan", stream, err)
	}
	s := Summary{Environment: w.env.Name, Destroy: destroy, Module: w.env.Provision.Module, Cloud: w.env.Provision.Cloud,
		PlannedAt: time.Now().UTC().Truncate(time.Second), Changes: stream.planned, Counts: stream.counts,
		PlanFile: w.path(planFile(destroy))}
	if s.Changes == nil {
		s.Changes = []Change{}
	}
	meta, err := json.MarshalIndent(planMeta{Summary: s, Fingerprint: fp}, "", "  ")
	if err != nil {
		return Summary{}, err
	}
	if err := atomicfile.Write(w.path(metaFile(planFile(destroy))), meta, 0o600); err != nil {
		return Summary{}, fmt.Errorf("provision %s: %w", w.env.Name, err)
	}
	w.log.Debug("plan saved", "destroy", destroy, "add", s.Add, "change", s.Change, "remove", s.Remove, "file", s.PlanFile)
	return s, nil
}

func (w *Workspace) apply(ctx context.Context, destroy bool) (Result, error) {
	op := "apply"
	if destroy {
		op = "destroy"
	}
	if _, err := w.saved(destroy); err != nil {
		return Result{}, err
	}
	defer w.secure()
	defer func() { _ = w.discard(destroy) }() // applied or not, a plan is spent: Terraform would refuse it as stale
	stream := newUIStream(w.log, w.o.Progress)
	stream.onApplied = w.o.Applied
	tf, err := w.terraform(nil)
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	err = tf.ApplyJSON(ctx, stream, w.applyOptions(destroy)...)
	stream.flush()
	if err != nil {
		return Result{}, w.fail(ctx, op, stream, err)
	}
	res := Result{Environment: w.env.Name, Destroy: destroy, Applied: stream.applied, Counts: stream.counts,
		Seconds: time.Since(start).Seconds()}
	if res.Applied == nil {
		res.Applied = []Change{}
	}
	w.log.Debug("applied", "destroy", destroy, "add", res.Add, "change", res.Change, "remove", res.Remove, "seconds", res.Seconds)
	if !destroy {
		if res.Hosts, err = w.Hosts(ctx); err != nil {
			return res, err
		}
	}
	return res, nil
}

// init runs terraform init in the workspace.
func (w *Workspace) init(ctx context.Context) error {
	// The lock file records the provider's checksums. labplane pins the provider itself (the
	// modules' versions.tf and its own mirror) and owns this directory: a provider rebuilt by
	// another Go toolchain must not make init fail, so init writes the lock file anew.
	if err := os.Remove(w.path(".terraform.lock.hcl")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("provision %s: %w", w.env.Name, err)
	}
	stream := newUIStream(w.log, nil)
	tf, err := w.terraform(nil)
	if err != nil {
		return err
	}
	err = tf.InitJSON(ctx, stream, w.initOptions()...)
	stream.flush()
	if err != nil {
		return w.fail(ctx, "init", stream, err)
	}
	return nil
}

// validate runs terraform validate: the spec's variables against the module's, and the module.
func (w *Workspace) validate(ctx context.Context) error {
	tf, err := w.terraform(nil)
	if err != nil {
		return err
	}
	out, err := tf.Validate(ctx)
	if err != nil {
		return w.fail(ctx, "validate", newUIStream(w.log, nil), err)
	}
	var diags []Diagnostic
	for _, d := range out.Diagnostics {
		diag := Diagnostic{Severity: string(d.Severity), Summary: d.Summary, Detail: d.Detail}
		if d.Range != nil {
			diag.File, diag.Line = d.Range.Filename, d.Range.Start.Line
		}
		if diag.Severity == "warning" {
			w.log.Warn("terraform warning", "summary", d.Summary, "detail", d.Detail, "file", diag.File)
		}
		diags = append(diags, diag)
	}
	if out.Valid {
		return nil
	}
	explained, _ := w.explain("validate", diags)
	return &Error{Environment: w.env.Name, Op: "validate", Diagnostics: explained, Kind: ErrBadInput}
}

// fail turns a failed terraform command into an *Error.
func (w *Workspace) fail(ctx context.Context, op string, s *uiStream, err error) error {
	diags, bad := w.explain(op, s.diagnostics)
	e := &Error{Environment: w.env.Name, Op: op, Diagnostics: diags, Unfinished: s.unfinished, Err: err}
	if bad {
		e.Kind = ErrBadInput
	}
	if ctx.Err() != nil {
		// Terraform was sent an interrupt: it stopped what it was doing, saved its state and
		// released its lock; its "execution halted" messages say nothing more
		e.Diagnostics = slices.DeleteFunc(e.Diagnostics, func(d Diagnostic) bool { return d.Summary == "execution halted" })
		e.Err = ctx.Err()
	}
	return e
}

// saved reads the saved plan's metadata and checks that the plan still applies.
func (w *Workspace) saved(destroy bool) (planMeta, error) {
	op, what := "apply", "plan"
	if destroy {
		op, what = "destroy", "plan -destroy"
	}
	var m planMeta
	raw, err := os.ReadFile(w.path(metaFile(planFile(destroy))))
	if err == nil {
		_, err = os.Stat(w.path(planFile(destroy)))
	}
	if errors.Is(err, fs.ErrNotExist) {
		return m, &Error{Environment: w.env.Name, Op: op, Kind: ErrNoPlan,
			Err: fmt.Errorf("no saved plan to apply: make one first (%s)", what)}
	}
	if err != nil {
		return m, fmt.Errorf("provision %s: %w", w.env.Name, err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("provision %s: %s: %w", w.env.Name, metaFile(planFile(destroy)), err)
	}
	fp, err := w.fingerprint()
	if err != nil {
		return m, err
	}
	if fp != m.Fingerprint {
		return m, &Error{Environment: w.env.Name, Op: op, Kind: ErrStalePlan,
			Err: fmt.Errorf("the saved plan of %s is stale: the module, its variables, the cloud or the state changed since; make a new one (%s)",
				m.Summary.PlannedAt.Format(time.RFC3339), what)}
	}
	return m, nil
}

// discard removes the saved plan of the kind, and its metadata.
func (w *Workspace) discard(destroy bool) error {
	for _, name := range []string{metaFile(planFile(destroy)), planFile(destroy)} {
		if err := os.Remove(w.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("provision %s: %w", w.env.Name, err)
		}
	}
	return nil
}

// fingerprint digests what a plan is made from: the cloud, the root module the spec makes,
// every file of the modules init found (.terraform/modules/modules.json) and the state's
// lineage and serial.
func (w *Workspace) fingerprint() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "cloud %q\n", w.env.Provision.Cloud)
	root, err := w.rootModule() // from the spec as it is now, not as it was at the last plan
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "root %x\n", sha256.Sum256(root))
	var manifest struct {
		Modules []struct{ Key, Dir string }
	}
	raw, err := os.ReadFile(w.path(filepath.Join(".terraform", "modules", "modules.json")))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("provision %s: %w", w.env.Name, err)
	}
	if err == nil {
		if err := json.Unmarshal(raw, &manifest); err != nil {
			return "", fmt.Errorf("provision %s: modules.json: %w", w.env.Name, err)
		}
	}
	sort.Slice(manifest.Modules, func(i, j int) bool { return manifest.Modules[i].Key < manifest.Modules[j].Key })
	for _, m := range manifest.Modules {
		if m.Key == "" {
			continue // the root module: main.tf.json, above
		}
		fmt.Fprintf(h, "module %q\n", m.Key)
		if err := hashTree(h, filepath.Join(w.dir, m.Dir)); err != nil {
			return "", fmt.Errorf("provision %s: module %s: %w", w.env.Name, m.Key, err)
		}
	}
	var state struct {
		Lineage string `json:"lineage"`
		Serial  int    `json:"serial"`
	}
	if raw, err := os.ReadFile(w.path(StateFile)); err == nil {
		if err := json.Unmarshal(raw, &state); err != nil {
			return "", fmt.Errorf("provision %s: %s: %w", w.env.Name, StateFile, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("provision %s: %w", w.env.Name, err)
	}
	fmt.Fprintf(h, "state %q %d\n", state.Lineage, state.Serial)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashTree writes the names and digests of the files under dir (hidden ones aside) to h.
func hashTree(h io.Writer, dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fmt.Fprintf(h, "%s %x\n", rel, sha256.Sum256(data))
		return nil
	})
}

// Output runs terraform output and returns the hosts output.
func (w *Workspace) Output(ctx context.Context) (map[string][]platform.Host, error) {
	tf, err := w.terraform(nil)
	if err != nil {
		return nil, err
	}
	outputs, err := tf.Output(ctx)
	if err != nil {
		return nil, w.fail(ctx, "output", newUIStream(w.log, nil), err)
	}
	o, ok := outputs[HostsOutput]
	if !ok {
		return nil, w.notProvisioned("output")
	}
	return w.decodeHosts(o.Value)
}

// Hosts returns the hosts per service from the state's hosts output, without running
// Terraform or reaching the cloud: ErrNotProvisioned when nothing was applied (or all was
// destroyed). The hosts are validated like a spec's hosts: section.
func (w *Workspace) Hosts(ctx context.Context) (map[string][]platform.Host, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(w.path(StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, w.notProvisioned("hosts")
	}
	if err != nil {
		return nil, fmt.Errorf("provision %s: %w", w.env.Name, err)
	}
	var state struct {
		Outputs map[string]struct {
			Value json.RawMessage `json:"value"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(raw, &state); err != nil {
		return nil, fmt.Errorf("provision %s: %s: %w", w.env.Name, w.path(StateFile), err)
	}
	o, ok := state.Outputs[HostsOutput]
	if !ok {
		return nil, w.notProvisioned("hosts")
	}
	return w.decodeHosts(o.Value)
}

func (w *Workspace) notProvisioned(op string) error {
	return &Error{Environment: w.env.Name, Op: op, Kind: ErrNotProvisioned,
		Err: fmt.Errorf("no %q output in the state %s: nothing applied yet, or everything destroyed", HostsOutput, w.path(StateFile))}
}

// decodeHosts reads the hosts output ({lms = [{name, address}], ...}) and validates it.
func (w *Workspace) decodeHosts(raw json.RawMessage) (map[string][]platform.Host, error) {
	var hosts map[string][]platform.Host
	if err := json.Unmarshal(raw, &hosts); err != nil {
		return nil, &Error{Environment: w.env.Name, Op: "hosts", Kind: ErrBadInput,
			Err: fmt.Errorf("the module %s's %q output is not {lms = [{name, address}], cms = [...], guacd = [...]}: %w",
				w.env.Provision.Module, HostsOutput, err)}
	}
	if err := w.env.ValidateHosts("terraform output "+HostsOutput, hosts); err != nil {
		return nil, err
	}
	return hosts, nil
}
