package envspec

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"

	"github.com/labplane/labplane/internal/specfile"
)

// TLS says how clients reach the LMS and CMS over HTTPS.
type TLS struct {
	// Mode is "" (plain HTTP: test environments only), TLSCertificate or TLSLoadBalancer.
	Mode string `yaml:"mode" json:"mode,omitempty"`
	// CertFile and KeyFile (relative to the environment's directory, or absolute) are the
	// certificate (PEM, with its chain) for both site names and its private key (PEM, a file
	// no group or other may read): nginx serves them on the hosts (TLSCertificate only).
	CertFile string `yaml:"cert_file" json:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file" json:"key_file,omitempty"`
	// CAFile holds the certificates labplane's health checks trust for the hosts' certificate;
	// empty: the system's.
	CAFile string `yaml:"ca_file" json:"ca_file,omitempty"`
}

// TLS modes.
const (
	// TLSCertificate: nginx on each host serves HTTPS with the spec's certificate.
	TLSCertificate = "certificate"
	// TLSLoadBalancer: a load balancer in front terminates TLS and sends X-Forwarded-Proto:
	// https; the hosts serve HTTP to it.
	TLSLoadBalancer = "load_balancer"
)

// Where nginx serves the LMS and CMS over HTTPS by default.
const (
	DefaultLMSTLSPort = 443
	DefaultCMSTLSPort = 18443
)

func (e *Environment) validateTLS(v *validator) {
	t := e.Settings.TLS
	switch t.Mode {
	case "", TLSLoadBalancer:
		for field, f := range map[string]string{"cert_file": t.CertFile, "key_file": t.KeyFile, "ca_file": t.CAFile} {
			if f != "" {
				v.Add("settings.tls."+field, "only with mode %s", TLSCertificate)
			}
		}
		return
	case TLSCertificate:
	default:
		v.Add("settings.tls.mode", "unknown mode %q (use %s or %s; leave it out for plain HTTP)", t.Mode, TLSCertificate, TLSLoadBalancer)
		return
	}
	if t.CertFile == "" || t.KeyFile == "" {
		v.Add("settings.tls", "mode %s needs cert_file and key_file", TLSCertificate)
		return
	}
	if st, err := os.Stat(e.Path(t.KeyFile)); err == nil && st.Mode().Perm()&0o077 != 0 {
		v.Add("settings.tls.key_file", "%s is readable by others (mode %#o): chmod 600 it", t.KeyFile, st.Mode().Perm())
		return
	}
	pair, err := tls.LoadX509KeyPair(e.Path(t.CertFile), e.Path(t.KeyFile))
	if err != nil {
		v.Add("settings.tls", "cert_file %s and key_file %s: %s", t.CertFile, t.KeyFile, describeTLSError(err))
		return
	}
	leaf := pair.Leaf // set by LoadX509KeyPair since Go 1.23
	for _, name := range []string{e.Settings.LMSSiteName, e.Settings.CMSSiteName} {
		if err := leaf.VerifyHostname(name); name != "" && err != nil {
			v.Add("settings.tls.cert_file", "%s is not valid for %s (it is for %s)", t.CertFile, name, strings.Join(leaf.DNSNames, ", "))
		}
	}
	if t.CAFile != "" {
		if _, err := os.Stat(e.Path(t.CAFile)); err != nil {
			v.Add("settings.tls.ca_file", "%s: %s", t.CAFile, specfile.DescribeFileError(err))
		}
	}
}

// describeTLSError says what is wrong with a certificate and key pair, never their content.
func describeTLSError(err error) string {
	if os.IsNotExist(err) || os.IsPermission(err) {
		return specfile.DescribeFileError(err)
	}
	return fmt.Sprintf("not a PEM certificate and its matching private key (%v)", err)
}
