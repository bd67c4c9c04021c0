package tlsreload_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"testing"

	"github.com/labplane/labplane/internal/dev/certtest"
	"github.com/labplane/labplane/internal/tlsreload"
)

// server serves "ok" with c's configuration (as serve does: no certificate but c's, not
// httptest's, whose own would answer a client that sends no server name), returning its URL.
type server struct{ URL string }

func serve(t *testing.T, c *tlsreload.Certificate) server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
		TLSConfig: c.Config()}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return server{URL: "https://" + ln.Addr().String()}
}

func client(t *testing.T, ca *certtest.CA, cert *certtest.Issued) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conf := &tls.Config{RootCAs: pool}
	if cert != nil {
		pair, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
}

// get fetches url and reports the serial of the server's certificate and whether the
// connection was one already open.
func get(t *testing.T, c *http.Client, url string) (serial string, reused bool) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.TLS.PeerCertificates[0].SerialNumber.String(), reused
}

// A renewed certificate is served from the reload on, to new connections, while a connection
// made before goes on with the old one; a reload that fails keeps the certificate in use.
func TestReloadKeepsConnections(t *testing.T) {
	ca := certtest.NewCA(t, "ca")
	first := ca.Server(t, "server", "127.0.0.1")
	c, err := tlsreload.Load(tlsreload.Files{Cert: first.CertFile, Key: first.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, c)
	old := client(t, ca, nil)
	if serial, _ := get(t, old, srv.URL); serial != first.Serial.String() {
		t.Fatalf("served serial %s, want %s", serial, first.Serial)
	}
	renewed := ca.Server(t, "server", "127.0.0.1") // the same files, a new certificate
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if serial, reused := get(t, old, srv.URL); !reused || serial != first.Serial.String() {
		t.Errorf("the connection made before the reload: reused %v, serial %s; want it kept, with %s", reused, serial, first.Serial)
	}
	if serial, reused := get(t, client(t, ca, nil), srv.URL); reused || serial != renewed.Serial.String() {
		t.Errorf("a new connection: serial %s, want the renewed %s", serial, renewed.Serial)
	}
	if err := os.WriteFile(renewed.KeyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(); err == nil || !strings.Contains(err.Error(), renewed.KeyFile) {
		t.Errorf("a reload of a broken key: %v; want an error naming the file", err)
	}
	if serial, _ := get(t, client(t, ca, nil), srv.URL); serial != renewed.Serial.String() {
		t.Errorf("after a failed reload: serial %s, want the one in use, %s", serial, renewed.Serial)
	}
}

// With a client CA, a client must show a certificate it signed.
func TestClientCertificates(t *testing.T) {
	ca := certtest.NewCA(t, "ca")
	server := ca.Server(t, "server", "127.0.0.1")
	c, err := tlsreload.Load(tlsreload.Files{Cert: server.CertFile, Key: server.KeyFile, ClientCA: ca.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, c)
	lms := ca.Client(t, "lms")
	if _, err := client(t, ca, &lms).Get(srv.URL); err != nil {
		t.Errorf("a client with a certificate of the CA: %v", err)
	}
	if _, err := client(t, ca, nil).Get(srv.URL); err == nil {
		t.Error("a client without a certificate was let in")
	}
	stranger := certtest.NewCA(t, "other").Client(t, "stranger")
	if _, err := client(t, ca, &stranger).Get(srv.URL); err == nil {
		t.Error("a client with another CA's certificate was let in")
	}
	if _, err := tlsreload.Load(tlsreload.Files{Cert: server.CertFile, Key: server.KeyFile, ClientCA: server.KeyFile}); err == nil ||
		!strings.Contains(err.Error(), server.KeyFile) {
		t.Errorf("a client CA file with no certificate: %v", err)
	}
}
