// Package heat is labplane's access to one OpenStack cloud's Heat (orchestration) API, with
// gophercloud v2: create, read, list, suspend, resume and delete stacks, each action waiting for
// its terminal status. The bound on the actions in flight on a cloud is kept by the caller,
// across processes (lifecycle.Manager.Slots); reads never wait behind them. Every HTTP
// request has a timeout of its own.
//
// Heat facts this package relies on (observed on Heat 19 / Zed, see the tests):
//   - Stack URLs are always /stacks/{name}/{id}: /stacks/{name} answers 302, and Go's HTTP client
//     turns a redirected POST or DELETE into a GET. Only GETs follow redirects here.
//   - Actions are asynchronous: right after the 200/204 the stack may still show its previous
//     status. A wait only accepts a terminal status of the action it asked for, and when the
//     stack already showed that terminal status before (a retry), only one that the stack-level
//     events prove new.
//   - Tag filters are never combined with status or name filters (Heat answers 500).
//   - After a DELETE during SUSPEND_IN_PROGRESS, a GET by id may show SUSPEND_FAILED on a stack
//     that is gone: the list (?id=) is the truth.
package heat

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/utils/v2/openstack/clientconfig"
	"gopkg.in/yaml.v3"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/labs"
)

// Options configure one cloud.
type Options struct {
	// Name is labplane's name for the cloud, used in errors, logs and labs.Stack.Cloud.
	Name string
	// Cloud is the clouds.yaml entry (defaults to Name). The file is found the standard way
	// (OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack/clouds.yaml,
	// /etc/openstack/clouds.yaml) unless ConfigFile is set.
	Cloud string
	// ConfigFile, if set, is the clouds.yaml to read instead of the standard search (no
	// secure.yaml or clouds-public.yaml merging then).
	ConfigFile string
	// PollInterval is the longest time between two reads of a stack while waiting for an
	// action (default 1s) before its times on this cloud are learnt, or once it has gone on
	// past them; until then the reads come where the learnt times say it is likely done.
	PollInterval time.Duration
	// RequestTimeout bounds each HTTP request, Keystone's included, from the dial to the last
	// byte of the body (default DefaultRequestTimeout): a request that stops answering midway
	// fails as cloud.ErrTransient instead of holding its caller. The context bounds everything.
	RequestTimeout time.Duration
	// Logger receives key/value logs (never credentials). Default: slog.Default().
	Logger *slog.Logger
	// Observe, if set, is told of every finished operation (create, suspend, resume, delete)
	// with the time it took: the cloud's latency, for metrics and benchmarks.
	Observe func(op string, took time.Duration, err error)
}

// DefaultRequestTimeout is Options.RequestTimeout's default: far above the seconds Heat takes
// to answer a request, and short enough that a hung connection costs a reaper pass a minute,
// not the rest of its run.
const DefaultRequestTimeout = 60 * time.Second

// Heat is one cloud's orchestration API. It is safe for concurrent use.
type Heat struct {
	name string
	sc   *gophercloud.ServiceClient
	pace *pace
	log  *slog.Logger
	obs  func(op string, took time.Duration, err error)

	pushbacks atomic.Int64 // requests sent again after a 429 or 503 (pushback.go)
	// restrictedCredential: the entry authenticates with a restricted application
	// credential, with which Heat cannot create a stack (restrictedMessage)
	restrictedCredential bool

	// waits tuning (tests shorten them)
	staleGrace     time.Duration // how long an unchanged status may stay after an action request
	transientGrace time.Duration // how long transient errors are tolerated while waiting
}

// Open reads the cloud's clouds.yaml entry, authenticates against Keystone (re-authenticating
// by itself when the token expires) and finds the orchestration endpoint.
func Open(ctx context.Context, o Options) (*Heat, error) {
	if o.Name == "" {
		return nil, &cloud.Error{Op: "open", Kind: cloud.ErrInvalid, Message: "cloud.Options.Name is empty"}
	}
	if o.Cloud == "" {
		o.Cloud = o.Name
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	fail := func(kind error, msg string, err error) error {
		return &cloud.Error{Cloud: o.Name, Op: "open", Kind: kind, Message: msg, Err: err}
	}

	cc, ao, err := entry(o)
	if err != nil {
		return nil, err
	}
	ao.AllowReauth = true

	tlsConf, err := tlsConfig(cc)
	if err != nil {
		return nil, fail(cloud.ErrInvalid, truncate(err.Error()), err)
	}
	pc, err := openstack.NewClient(ao.IdentityEndpoint)
	if err != nil {
		return nil, fail(cloud.ErrInvalid, truncate(fmt.Sprintf("auth_url: %v", err)), err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConf
	pc.HTTPClient = http.Client{
		Transport: transport,
		// per request, and it covers the body: reading a response that stops midway fails
		// with a timeout (cloud.ErrTransient) once it is up
		Timeout: o.RequestTimeout,
		// /stacks/{name} answers 302: following it turns a POST or DELETE into a GET. Never
		// follow a redirect except for reads (we always use /stacks/{name}/{id} anyway).
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			if m := via[0].Method; m != http.MethodGet && m != http.MethodHead {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	pc.UserAgent.Prepend("labplane")
	if err := openstack.Authenticate(ctx, pc, *ao); err != nil {
		e := classify(o.Name, "open", "", err)
		if e.HTTPStatus == http.StatusUnauthorized || e.HTTPStatus == http.StatusForbidden || e.HTTPStatus == http.StatusBadRequest {
			e.Kind = cloud.ErrAuth // Keystone refused the credentials (400: malformed auth)
		}
		return nil, e
	}
	region := cc.RegionName
	if region == "" {
		region = os.Getenv("OS_REGION_NAME")
	}
	sc, err := openstack.NewOrchestrationV1(pc, gophercloud.EndpointOpts{
		Region:       region,
		Availability: clientconfig.GetEndpointType(cc.EndpointType),
	})
	if err != nil {
		return nil, classify(o.Name, "open", "", err)
	}
	h := &Heat{
		name:           o.Name,
		sc:             sc,
		pace:           newPace(o.PollInterval),
		log:            o.Logger.With("cloud", o.Name),
		obs:            o.Observe,
		staleGrace:     60 * time.Second,
		transientGrace: 30 * time.Second,
	}
	if h.restrictedCredential = restrictedCredential(pc); h.restrictedCredential {
		h.log.Warn("the cloud's entry uses a restricted application credential: labs cannot be created on it, only managed", "why", restrictedMessage)
	}
	pc.MaxBackoffRetries = maxPushbacks + 1 // pushedBack counts them
	pc.RetryBackoffFunc = h.retryAfter
	pc.RetryFunc = h.retry503
	h.log.Debug("cloud opened", "entry", o.Cloud, "region", region, "endpoint", sc.Endpoint)
	return h, nil
}

// restrictedMessage says why a restricted application credential cannot create stacks.
const restrictedMessage = "the clouds.yaml entry authenticates with a restricted application credential: " +
	"Heat creates a trust for every new stack, which Keystone refuses to a restricted one (Heat answers 500); " +
	"create the credential with --unrestricted, or use a password"

// restrictedCredential reports whether the provider's token was made from a restricted
// application credential (Keystone says so in the token).
func restrictedCredential(pc *gophercloud.ProviderClient) bool {
	res, ok := pc.GetAuthResult().(tokens.CreateResult)
	if !ok {
		return false
	}
	body, _ := res.Body.(map[string]any)
	token, _ := body["token"].(map[string]any)
	credential, _ := token["application_credential"].(map[string]any)
	restricted, _ := credential["restricted"].(bool)
	return restricted
}

// Entry reads the cloud's clouds.yaml entry (Options.Cloud, or Name) and its credentials as
// Open does, without connecting to anything: an cloud.ErrInvalid Error when the entry is missing or
// incomplete. Options other than Name, Cloud and ConfigFile are ignored.
func Entry(o Options) error {
	if o.Name == "" {
		return &cloud.Error{Op: "open", Kind: cloud.ErrInvalid, Message: "cloud.Options.Name is empty"}
	}
	if o.Cloud == "" {
		o.Cloud = o.Name
	}
	_, _, err := entry(o)
	return err
}

// entry reads the clouds.yaml entry o.Cloud and the authentication options it gives.
func entry(o Options) (*clientconfig.Cloud, *gophercloud.AuthOptions, error) {
	fail := func(err error) error {
		return &cloud.Error{Cloud: o.Name, Op: "open", Kind: cloud.ErrInvalid, Message: truncate(fmt.Sprintf("clouds.yaml entry %q: %v", o.Cloud, err)), Err: err}
	}
	copts := &clientconfig.ClientOpts{Cloud: o.Cloud}
	if o.ConfigFile != "" {
		copts.YAMLOpts = fileYAML{path: o.ConfigFile}
	}
	cc, err := clientconfig.GetCloudFromYAML(copts)
	if err != nil {
		return nil, nil, fail(err)
	}
	ao, err := clientconfig.AuthOptions(copts)
	if err != nil {
		return nil, nil, fail(err)
	}
	return cc, ao, nil
}

// fileYAML loads one given clouds.yaml (Options.ConfigFile).
type fileYAML struct{ path string }

func (f fileYAML) LoadCloudsYAML() (map[string]clientconfig.Cloud, error) {
	b, err := os.ReadFile(f.path)
	if err != nil {
		return nil, err
	}
	var c clientconfig.Clouds
	if err := yaml.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	return c.Clouds, nil
}
func (fileYAML) LoadSecureCloudsYAML() (map[string]clientconfig.Cloud, error) { return nil, nil }
func (fileYAML) LoadPublicCloudsYAML() (map[string]clientconfig.Cloud, error) { return nil, nil }

func tlsConfig(cc *clientconfig.Cloud) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cc.Verify != nil && !*cc.Verify {
		conf.InsecureSkipVerify = true //nolint:gosec // the operator asked for it in clouds.yaml (verify: false)
	}
	caFile := cc.CACertFile
	if caFile == "" {
		caFile = os.Getenv("OS_CACERT")
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cacert %s: no certificate found", caFile)
		}
		conf.RootCAs = pool
	}
	if cc.ClientCertFile != "" && cc.ClientKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(cc.ClientCertFile, cc.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// Name is labplane's name for the cloud.
func (h *Heat) Name() string { return h.name }

// Check is a readiness probe: a cheap authenticated stack list (limit=1).
func (h *Heat) Check(ctx context.Context) error {
	var body struct {
		Stacks []json.RawMessage `json:"stacks"`
	}
	_, err := h.request(ctx, http.MethodGet, h.sc.ServiceURL("stacks")+"?limit=1", nil, &body, 200)
	return h.wrap("check", "", err)
}

// Get reads a stack with its outputs (outputs Heat cannot resolve, as during a create, are left
// out). A stack that never existed is cloud.ErrNotFound; a deleted one may still answer, with status
// DELETE_COMPLETE. With an empty id the stack is looked up by name. RequestID is the GET's.
// It takes no in-flight slot (see Options.MaxInFlight).
func (h *Heat) Get(ctx context.Context, name, id string) (labs.Stack, error) {
	st, _, err := h.get(ctx, name, id)
	return st, h.wrap("get", name, err)
}

// get reads one stack.
func (h *Heat) get(ctx context.Context, name, id string) (labs.Stack, string, error) {
	var body struct {
		Stack stackJSON `json:"stack"`
	}
	// without an id, GET /stacks/{name} answers 302 to /stacks/{name}/{id}: fine for a GET
	u := h.sc.ServiceURL("stacks", url.PathEscape(name))
	if id != "" {
		u = h.stackURL(name, id)
	}
	hdr, err := h.request(ctx, http.MethodGet, u, nil, &body, 200)
	if err != nil {
		return labs.Stack{}, requestID(hdr), err
	}
	st := h.toStack(body.Stack)
	st.RequestID = requestID(hdr)
	return st, st.RequestID, nil
}

func (h *Heat) stackURL(name, id string, more ...string) string {
	return h.sc.ServiceURL(append([]string{"stacks", url.PathEscape(name), url.PathEscape(id)}, more...)...)
}

// listPage is the page size of List.
var listPage = 100

// List returns the top-level stacks carrying every one of tags (a server-side AND filter; none:
// all stacks), reading every page. Listed stacks have no outputs (Get has them); RequestID is
// that of the page's request. No status or name filter is ever combined with the tags
// (Heat answers 500): filter by status on the result. It takes no in-flight slot (see
// Options.MaxInFlight); each page's request has its own timeout, the whole list only ctx.
func (h *Heat) List(ctx context.Context, tags ...string) ([]labs.Stack, error) {
	for _, t := range tags {
		if t == "" || strings.Contains(t, ",") {
			return nil, &cloud.Error{Cloud: h.name, Op: "list", Kind: cloud.ErrInvalid, Message: fmt.Sprintf("bad tag %q (empty or with a comma)", t)}
		}
	}
	q := url.Values{}
	if len(tags) > 0 {
		q.Set("tags", strings.Join(tags, ","))
	}
	return h.list(ctx, q)
}

func (h *Heat) list(ctx context.Context, q url.Values) ([]labs.Stack, error) {
	var out []labs.Stack
	seen := map[string]bool{}
	marker := ""
	for {
		q.Set("limit", strconv.Itoa(listPage))
		if marker != "" {
			q.Set("marker", marker)
		}
		var body struct {
			Stacks []stackJSON `json:"stacks"`
		}
		hdr, err := h.request(ctx, http.MethodGet, h.sc.ServiceURL("stacks")+"?"+q.Encode(), nil, &body, 200)
		if err != nil {
			return nil, h.wrap("list", "", err)
		}
		for _, s := range body.Stacks {
			if seen[s.ID] {
				continue
			}
			seen[s.ID] = true
			if s.Parent != nil && *s.Parent != "" {
				continue // a nested stack (only listed with show_nested; be safe)
			}
			st := h.toStack(s)
			st.RequestID = requestID(hdr)
			out = append(out, st)
		}
		if len(body.Stacks) < listPage {
			return out, nil
		}
		next := body.Stacks[len(body.Stacks)-1].ID
		if next == marker {
			return out, nil
		}
		marker = next
	}
}

// absent reports whether the stack id is no longer in the default stack list (deleted stacks
// drop out of it shortly after DELETE_COMPLETE).
func (h *Heat) absent(ctx context.Context, id string) (bool, error) {
	var body struct {
		Stacks []stackJSON `json:"stacks"`
	}
	q := url.Values{"id": {id}}
	if _, err := h.request(ctx, http.MethodGet, h.sc.ServiceURL("stacks")+"?"+q.Encode(), nil, &body, 200); err != nil {
		return false, err
	}
	for _, s := range body.Stacks {
		if s.ID == id {
			return false, nil
		}
	}
	return true, nil
}

// request sends one request through gophercloud (token, re-authentication) and returns the
// response headers, also on error when the cloud answered.
func (h *Heat) request(ctx context.Context, method, u string, body, out any, ok ...int) (http.Header, error) {
	opts := &gophercloud.RequestOpts{OkCodes: ok, JSONBody: body, JSONResponse: out}
	resp, err := h.sc.Request(ctx, method, u, opts)
	if resp != nil {
		return resp.Header, err
	}
	if code, isCode := responseCode(err); isCode {
		return code.ResponseHeader, err
	}
	return nil, err
}

// stackJSON is a stack as Heat's list and show return it.
type stackJSON struct {
	ID           string   `json:"id"`
	Name         string   `json:"stack_name"`
	Status       string   `json:"stack_status"`
	StatusReason string   `json:"stack_status_reason"`
	Tags         []string `json:"tags"`
	CreationTime string   `json:"creation_time"`
	Parent       *string  `json:"parent"`
	Outputs      []struct {
		Key   string          `json:"output_key"`
		Value json.RawMessage `json:"output_value"`
		Error string          `json:"output_error"`
	} `json:"outputs"`
}

func (h *Heat) toStack(s stackJSON) labs.Stack {
	st := labs.Stack{
		Cloud:        h.name,
		ID:           s.ID,
		Name:         s.Name,
		Status:       s.Status,
		StatusReason: s.StatusReason,
		Tags:         s.Tags,
		CreatedAt:    parseTime(s.CreationTime),
	}
	for _, o := range s.Outputs {
		if o.Error != "" {
			// normal while a stack is being created or deleted
			continue
		}
		if st.Outputs == nil {
			st.Outputs = map[string]string{}
		}
		st.Outputs[o.Key] = outputString(o.Value)
	}
	return st
}

// outputString: a string output as is; anything else (numbers, lists, maps) as compact JSON;
// null as "".
func outputString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil || v == nil {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return string(raw)
	}
	return string(b)
}

func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}
