package envspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"strconv"

	"github.com/labplane/labplane/internal/specfile"
)

// The backing services lms and cms use besides their database. Each is optional: a spec
// without it leaves the service's settings out of the config file (the release's defaults).

// MongoDB holds course content (edx-platform's modulestore and contentstore:
// DOC_STORE_CONFIG, CONTENTSTORE).
type MongoDB struct {
	Hosts      []string `yaml:"hosts" json:"hosts"`
	Port       int      `yaml:"port" json:"port,omitempty"`
	Name       string   `yaml:"name" json:"name,omitempty"`
	User       string   `yaml:"user" json:"user,omitempty"`
	ReplicaSet string   `yaml:"replica_set" json:"replica_set,omitempty"`
	TLS        bool     `yaml:"tls" json:"tls,omitempty"`
	AuthSource string   `yaml:"auth_source" json:"auth_source,omitempty"`
}

// Redis is the cache (CACHES) and Celery's broker (CELERY_BROKER_*).
type Redis struct {
	Host string `yaml:"host" json:"host"`
	Port int    `yaml:"port" json:"port,omitempty"`
	DB   int    `yaml:"db" json:"db,omitempty"`
}

// SMTP is where the platform sends mail (EMAIL_*, DEFAULT_FROM_EMAIL).
type SMTP struct {
	Host     string `yaml:"host" json:"host"`
	Port     int    `yaml:"port" json:"port,omitempty"`
	User     string `yaml:"user" json:"user,omitempty"`
	StartTLS bool   `yaml:"starttls" json:"starttls,omitempty"`
	From     string `yaml:"from" json:"from"`
}

// Search is the Elasticsearch the courseware and course discovery search use
// (ELASTIC_SEARCH_CONFIG).
type Search struct {
	URL string `yaml:"url" json:"url"`
}

// Defaults of the backing services.
const (
	DefaultMongoDBPort = 27017
	DefaultRedisPort   = 6379
	DefaultSMTPPort    = 587
)

// Configured tell whether the spec has each service.
func (m MongoDB) Configured() bool { return len(m.Hosts) > 0 || m.User != "" || m.Name != "" }
func (r Redis) Configured() bool   { return r.Host != "" }
func (s SMTP) Configured() bool    { return s.Host != "" || s.From != "" }

func (e *Environment) validateServices(v *validator) {
	s := &e.Settings
	if m := &s.MongoDB; m.Configured() {
		if len(m.Hosts) == 0 {
			v.Add("settings.mongodb.hosts", "required: the MongoDB hosts (a replica set's members), such as [mongo-1.internal]")
		}
		for i, h := range m.Hosts {
			checkAddress(v, fmt.Sprintf("settings.mongodb.hosts[%d]", i), h)
		}
		port(v, "settings.mongodb.port", &m.Port, DefaultMongoDBPort)
		if m.Name == "" {
			m.Name = DefaultDatabaseName
		}
	}
	if r := &s.Redis; r.Configured() {
		checkAddress(v, "settings.redis.host", r.Host)
		port(v, "settings.redis.port", &r.Port, DefaultRedisPort)
		if r.DB < 0 || r.DB > 15 {
			v.Add("settings.redis.db", "%d is not a Redis database number (0 to 15)", r.DB)
		}
	}
	if m := &s.SMTP; m.Configured() {
		if m.Host == "" {
			v.Add("settings.smtp.host", "required: the SMTP server the platform sends mail through")
		} else {
			checkAddress(v, "settings.smtp.host", m.Host)
		}
		port(v, "settings.smtp.port", &m.Port, DefaultSMTPPort)
		if a, err := mail.ParseAddress(m.From); err != nil || a.Name != "" {
			v.Add("settings.smtp.from", "%q is not a mail address (the sender of the platform's mail, such as noreply@example.com)", m.From)
		}
	}
	if u := s.Search.URL; u != "" {
		if _, _, _, err := SearchEndpoint(u); err != nil {
			v.Add("settings.search.url", "%v", err)
		}
	}
}

// SearchEndpoint is the host, port and whether TLS is used of the search URL (an http(s) URL
// of a host and port, such as https://search.internal:9200).
func SearchEndpoint(raw string) (host string, port int, tls bool, err error) {
	// the value is never shown whole: it may hold a password
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "", 0, false, errors.New("not a URL: give http(s)://HOST:PORT")
	case u.User != nil:
		u.User = nil
		return "", 0, false, fmt.Errorf("%q (credentials removed) has credentials: give none in the URL", u.String())
	case (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || (u.Path != "" && u.Path != "/"):
		return "", 0, false, fmt.Errorf("%q is not the URL of an Elasticsearch: give http(s)://HOST:PORT", raw)
	}
	port = 9200
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil || port < 1 || port > 65535 {
			return "", 0, false, fmt.Errorf("%q: %s is not a port", raw, p)
		}
	}
	return u.Hostname(), port, u.Scheme == "https", nil
}

// checkAddress checks a field holding an IP address or a DNS name.
func checkAddress(v *validator, field, a string) {
	if a == "" {
		v.Add(field, "required: an IP address or a DNS name")
	} else if net.ParseIP(a) == nil && !hostNamePattern.MatchString(a) {
		v.Add(field, "%q is neither an IP address nor a DNS name", a)
	}
}

// JWT is how the LMS signs the JSON web tokens the other services and MFEs trust (JWT_AUTH).
// The private signing key is secrets.jwt_private_signing_jwk; its public half is here.
type JWT struct {
	// Issuer is the tokens' iss; default https://<lms_site_name>/oauth2.
	Issuer string `yaml:"issuer" json:"issuer,omitempty"`
	// Audience is the tokens' aud; default openedx.
	Audience string `yaml:"audience" json:"audience,omitempty"`
	// PublicSigningJWKSet is a file (relative to the environment's directory, or absolute)
	// holding the public JWK set ({"keys": [...]}) of the signing key.
	PublicSigningJWKSet string `yaml:"public_signing_jwk_set" json:"public_signing_jwk_set,omitempty"`
}

// Configured tells whether the spec has JWT settings.
func (j JWT) Configured() bool { return j != JWT{} }

// PublicJWKSet reads the public JWK set file and returns it compacted.
func (e *Environment) PublicJWKSet() (string, error) {
	raw, err := os.ReadFile(e.Path(e.Settings.JWT.PublicSigningJWKSet))
	if err != nil {
		return "", fmt.Errorf("%s: %s", e.Settings.JWT.PublicSigningJWKSet, specfile.DescribeFileError(err))
	}
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) == 0 {
		return "", fmt.Errorf("%s is not a JWK set (a JSON object whose keys list the public keys)", e.Settings.JWT.PublicSigningJWKSet)
	}
	for i, k := range set.Keys {
		switch {
		case k.D != "":
			return "", fmt.Errorf("%s: key %d is a private key: this file is written into the inventory; give the public half here and the private key as secrets.jwt_private_signing_jwk", e.Settings.JWT.PublicSigningJWKSet, i)
		case k.Kty == "" || k.Kid == "":
			return "", fmt.Errorf("%s: key %d has no kty or no kid", e.Settings.JWT.PublicSigningJWKSet, i)
		}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return "", err
	}
	return compact.String(), nil
}

func (e *Environment) validateJWT(v *validator) {
	j := &e.Settings.JWT
	if !j.Configured() {
		return
	}
	if j.Issuer == "" {
		j.Issuer = "https://" + e.Settings.LMSSiteName + "/oauth2"
	} else if u, err := url.Parse(j.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		v.Add("settings.jwt.issuer", "%q is not a URL (such as https://lms.example.com/oauth2)", j.Issuer)
	}
	if j.Audience == "" {
		j.Audience = "openedx"
	}
	if j.PublicSigningJWKSet == "" {
		v.Add("settings.jwt.public_signing_jwk_set", "required: the file of the signing key's public JWK set")
	} else if _, err := e.PublicJWKSet(); err != nil {
		v.Add("settings.jwt.public_signing_jwk_set", "%v", err)
	}
}
