// Package tlsreload serves TLS with a certificate that can be replaced while connections stay
// open: Reload reads the files again (a renewed certificate), and every handshake from then on
// uses the new one; connections already made keep theirs. With a client CA, clients must show
// a certificate it signed.
package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// Files are the PEM files of a server's TLS: its certificate (chain) and key, and optionally
// the CA whose certificates clients must show.
type Files struct {
	Cert, Key, ClientCA string
}

// Certificate holds the server's current certificate.
type Certificate struct {
	files Files
	cert  atomic.Pointer[tls.Certificate]
	pool  *x509.CertPool // the client CA, read once: a new one needs a restart
}

// Load reads the files; an error names the file at fault.
func Load(f Files) (*Certificate, error) {
	c := &Certificate{files: f}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	if f.ClientCA != "" {
		pem, err := os.ReadFile(f.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		c.pool = x509.NewCertPool()
		if !c.pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s: no PEM certificate in it", f.ClientCA)
		}
	}
	return c, nil
}

// Reload reads the certificate and key again; on an error the one in use stays.
func (c *Certificate) Reload() error {
	cert, err := tls.LoadX509KeyPair(c.files.Cert, c.files.Key)
	if err != nil {
		var pathErr *os.PathError
		if errors.As(err, &pathErr) {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		return fmt.Errorf("TLS certificate %s and key %s: %w", c.files.Cert, c.files.Key, err)
	}
	c.cert.Store(&cert)
	return nil
}

// Config is a server's TLS configuration taking the current certificate at each handshake.
func (c *Certificate) Config() *tls.Config {
	conf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cert.Load(), nil
		},
	}
	if c.pool != nil {
		conf.ClientCAs, conf.ClientAuth = c.pool, tls.RequireAndVerifyClientCert
	}
	return conf
}
