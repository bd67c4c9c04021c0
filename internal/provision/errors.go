package provision

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// Kinds of failure callers branch on (errors.Is).
var (
	// ErrBadInput: the spec's module or variables are wrong, or the cloud refused the
	// credentials or does not exist in clouds.yaml. Nothing was changed and no state written.
	ErrBadInput = errors.New("bad input")
	// ErrNoPlan: apply (or destroy) without a saved plan to apply.
	ErrNoPlan = errors.New("no saved plan")
	// ErrStalePlan: the saved plan no longer matches the module, the variables, the cloud or
	// the state it was made from.
	ErrStalePlan = errors.New("the saved plan is stale")
	// ErrNotProvisioned: there is no state with the hosts output yet (or any more).
	ErrNotProvisioned = errors.New("not provisioned")
)

// Diagnostic is one of Terraform's error or warning messages.
type Diagnostic struct {
	Severity string `json:"severity"`
	Summary  string `json:"summary"`
	Detail   string `json:"detail,omitempty"`
	// Address is the resource (or provider) it is about, when Terraform says.
	Address string `json:"address,omitempty"`
	// File and Line are where in the configuration, when it is about the configuration.
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
}

// Error is a failed or interrupted terraform command, with Terraform's own messages.
type Error struct {
	Environment string
	// Op is the command: init, validate, plan, apply, destroy, output.
	Op string
	// Diagnostics are Terraform's errors, already related to the spec where they are about it.
	Diagnostics []Diagnostic
	// Unfinished are the resources whose change started and did not complete (Terraform was
	// interrupted, or the change failed): they may exist in the cloud without being in the state.
	Unfinished []string
	// Kind is ErrBadInput, ErrNoPlan, ErrStalePlan, ErrNotProvisioned or nil.
	Kind error
	// Err is the underlying error (terraform-exec's, a context's).
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "provision %s: %s", e.Environment, e.Op)
	interrupted := errors.Is(e.Err, context.Canceled) || errors.Is(e.Err, context.DeadlineExceeded)
	switch {
	case interrupted:
		b.WriteString(" interrupted: " + e.Err.Error())
		if len(e.Diagnostics) > 0 {
			b.WriteString("; Terraform said:")
		}
		writeDiagnostics(&b, e.Diagnostics)
	case len(e.Diagnostics) > 0:
		b.WriteString(" failed:")
		writeDiagnostics(&b, e.Diagnostics)
	case e.Err != nil:
		b.WriteString(": " + e.Err.Error())
	}
	if len(e.Unfinished) > 0 {
		fmt.Fprintf(&b, "\nchanges started and not completed (the resources may exist in the cloud without being in the state): %s",
			strings.Join(e.Unfinished, ", "))
	}
	return b.String()
}

func writeDiagnostics(b *strings.Builder, diags []Diagnostic) {
	for _, d := range diags {
		b.WriteString("\n")
		if d.Address != "" {
			b.WriteString(d.Address + ": ")
		}
		if d.File != "" && d.Address == "" { // an address says more than the file
			if d.Line > 0 {
				fmt.Fprintf(b, "%s:%d: ", d.File, d.Line)
			} else {
				b.WriteString(d.File + ": ")
			}
		}
		b.WriteString(d.Summary)
		if d.Detail != "" {
			b.WriteString(": " + strings.ReplaceAll(strings.TrimSpace(d.Detail), "\n", " "))
		}
	}
}

// Unwrap lets errors.Is see the kind and the underlying error (context.Canceled, ...).
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

var (
	missingArgument     = regexp.MustCompile(`The argument "([^"]+)" is required`)
	moduleVariable      = regexp.MustCompile(`module\.` + ModuleName + `\.var\.([A-Za-z0-9_-]+)`)
	unsupportedArgument = regexp.MustCompile(`(?:An argument named|No argument or block type is named) "([^"]+)"`)
)

// providerAddress is how Terraform names the provider in a diagnostic about its configuration.
const providerAddress = `provider["registry.terraform.io/terraform-provider-openstack/openstack"]`

// explain relates Terraform's error diagnostics to the spec: an error in the generated root
// module is about provision.variables, one about the provider's configuration is about the
// cloud and its credentials. It reports whether they are the user's to fix (bad input).
func (w *Workspace) explain(op string, diags []Diagnostic) ([]Diagnostic, bool) {
	p := w.env.Provision
	var out []Diagnostic
	bad := false
	provider := false
	for _, d := range diags {
		if d.Severity != "error" {
			continue
		}
		if d.File != "" && d.File != RootModuleFile && !filepath.IsAbs(d.File) {
			d.File = filepath.Join(w.dir, d.File) // Terraform names files relative to the workspace
		}
		switch {
		case d.File == RootModuleFile:
			bad = true
			if m := missingArgument.FindStringSubmatch(d.Detail); m != nil {
				d.Summary = fmt.Sprintf("provision.variables.%s: required by the module %s but not given", m[1], p.Module)
				d.Detail = ""
			} else if m := unsupportedArgument.FindStringSubmatch(d.Detail); m != nil {
				d.Summary = fmt.Sprintf("provision.variables.%s: the module %s has no such variable", m[1], p.Module)
				d.Detail = ""
			} else if m := moduleVariable.FindStringSubmatch(d.Detail); m != nil {
				d.Summary = fmt.Sprintf("provision.variables.%s: %s", m[1], d.Summary)
			} else {
				d.Summary = "provision.variables: " + d.Summary
			}
			d.File, d.Line = w.env.File, 0
		case d.Address == providerAddress || strings.HasPrefix(d.Address, "provider["):
			bad, provider = true, true
			d.Address = fmt.Sprintf("cloud %q (provision.cloud, the clouds.yaml entry or OS_* credentials)", p.Cloud)
		case d.File != "" && (op == "init" || op == "validate"):
			bad = true // an error in the module itself
		case strings.HasPrefix(d.Summary, "Invalid value for") && op == "plan":
			bad = true // a variable's validation rule
		case d.Summary == "Resource precondition failed" && op == "plan":
			bad = true // a module's precondition on its inputs (compute: hosts a service may have)
		}
		out = append(out, d)
	}
	if provider && len(out) > 1 {
		// Terraform follows a provider's own error with a generic one that says nothing more
		kept := out[:0]
		for _, d := range out {
			if d.Summary != "Invalid provider configuration" {
				kept = append(kept, d)
			}
		}
		out = kept
	}
	return out, bad
}
