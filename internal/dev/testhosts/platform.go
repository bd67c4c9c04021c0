package testhosts

import (
	"fmt"
	"slices"
	"strings"
)

// PlatformNames are the hosts of a platform on test hosts: one per service.
var PlatformNames = []string{"lms1", "cms1", "guacd1"}

// PlatformLayout is the platform's hosts per service on PlatformNames: lms on lms1, cms on
// cms1, guacd on guacd1.
func PlatformLayout() map[string][]string {
	return map[string][]string{"lms": {"lms1"}, "cms": {"cms1"}, "guacd": {"guacd1"}}
}

// platformServices are the services of a platform, in the order a spec lists them.
var platformServices = []string{"lms", "cms", "guacd"}

// Spec is what an environment spec for a platform on a set needs beyond the set itself.
type Spec struct {
	Release string
	// Artifact is the artifact's URL or path; "{release}" is replaced by the release.
	Artifact string
	// ArtifactChecksum is the spec's artifact_checksum ("sha256:<URL of the release's checksum
	// file, with {release}>"; required for a URL artifact); empty: none written.
	ArtifactChecksum string
	// AptRepository is the source line of the guacd repository (without options), AptKey the
	// file holding the key it is signed with, and GuacdVersion the version to install.
	AptRepository, AptKey, GuacdVersion string
	// SecretEnv names the environment variable the secret key is read from.
	SecretEnv string
	// Hosts are the names of the set's hosts each service (lms, cms, guacd) runs on; nil is
	// PlatformLayout. Every service needs at least one host, and a host may serve several.
	Hosts map[string][]string
	// Extra is appended to the spec (a rollout: section, for instance).
	Extra string
}

// EnvironmentSpec is inventories/ENV/environment.yml for a platform on the set: the hosts of
// each service are sp.Hosts (by default PlatformLayout: lms on lms1, cms on cms1, guacd on
// guacd1), at their addresses in the set.
func (s *Set) EnvironmentSpec(sp Spec) ([]byte, error) {
	layout := sp.Hosts
	if layout == nil {
		layout = PlatformLayout()
	}
	for svc := range layout {
		if !slices.Contains(platformServices, svc) {
			return nil, fmt.Errorf("testhosts: no service %q (have: %s)", svc, strings.Join(platformServices, ", "))
		}
	}
	var hosts strings.Builder
	for _, svc := range platformServices {
		names := layout[svc]
		if len(names) == 0 {
			return nil, fmt.Errorf("testhosts: no host for %s", svc)
		}
		entries := make([]string, len(names))
		for i, name := range names {
			h, ok := s.Host(name)
			if !ok {
				return nil, fmt.Errorf("testhosts: the set has no host %s for %s (make it with Options{Names: ...})", name, svc)
			}
			entries[i] = fmt.Sprintf("{name: %s, address: %s}", h.Name, h.Address)
		}
		fmt.Fprintf(&hosts, "  %s: [%s]\n", svc, strings.Join(entries, ", "))
	}
	spec := fmt.Sprintf(`# A platform on test hosts (labplane dev hosts up).
release: %q
artifact: %q
hosts:
%sssh:
  user: root
  private_key_file: %s
  known_hosts_file: %s
  control_path_dir: %s
settings:
  lms_site_name: lms.test
  cms_site_name: studio.test
  venv_system_site_packages: true # the stand-in release takes Django, gunicorn and Celery from Debian
  guacd_apt_repository: %q
  guacd_apt_key: %s
  guacd_version: %q
  guacd_allowed_sources: [%s]
secrets:
  secret_key: {env: %s}
`, sp.Release, sp.Artifact, hosts.String(), s.KeyFile, s.KnownHostsFile, s.ControlPathDir(), sp.AptRepository, sp.AptKey, sp.GuacdVersion, s.Gateway, sp.SecretEnv)
	if sp.ArtifactChecksum != "" {
		spec += fmt.Sprintf("artifact_checksum: %q\n", sp.ArtifactChecksum)
	}
	if sp.Extra != "" {
		spec += strings.TrimRight(sp.Extra, "\n") + "\n"
	}
	return []byte(spec), nil
}
