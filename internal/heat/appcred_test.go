package heat_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/applicationcredentials"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/utils/v2/openstack/clientconfig"

	"github.com/labplane/labplane/internal/cloud"
	"github.com/labplane/labplane/internal/heat"
	"github.com/labplane/labplane/internal/labs"
)

// A clouds.yaml entry with an application credential (auth_type v3applicationcredential, as
// a public cloud's dashboard hands out) works against the real local Keystone and Heat: the
// learner's credential, made by the test, opens the cloud and creates, lists and deletes a
// lab's stack. Heat creates a trust for every stack, which Keystone allows an application
// credential only if it is unrestricted (Heat answers a bare 500 otherwise): with a restricted
// one labplane can read and manage labs but refuses to create one, saying why, before sending
// anything. A wrong secret is an auth error that does not repeat it.
func TestHeatApplicationCredential(t *testing.T) {
	t.Parallel()
	openReal(t) // skips with -short
	ctx := testCtx(t, 5*time.Minute)
	learner, err := clientconfig.GetCloudFromYAML(&clientconfig.ClientOpts{Cloud: "local-a"})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := clientconfig.AuthenticatedClient(ctx, &clientconfig.ClientOpts{Cloud: "local-a"})
	if err != nil {
		t.Fatal(err)
	}
	identity, err := openstack.NewIdentityV3(pc, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	user, err := tokens.Get(ctx, identity, pc.Token()).ExtractUser()
	if err != nil {
		t.Fatal(err)
	}
	credential := func(unrestricted bool) (id, secret string) {
		ac, err := applicationcredentials.Create(ctx, identity, user.ID, applicationcredentials.CreateOpts{
			Name: fmt.Sprintf("labplane-test-%d-%t", time.Now().UnixNano(), unrestricted), Unrestricted: unrestricted}).Extract()
		if err != nil {
			t.Fatalf("create an application credential: %v", err)
		}
		t.Cleanup(func() {
			if err := applicationcredentials.Delete(ctx, identity, user.ID, ac.ID).ExtractErr(); err != nil {
				t.Errorf("delete the application credential: %v", err)
			}
		})
		return ac.ID, ac.Secret
	}
	cloudsYAML := func(id, secret string) string {
		p := filepath.Join(t.TempDir(), "clouds.yaml")
		body := fmt.Sprintf("clouds:\n  appcred:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: %s\n"+
			"      application_credential_id: %s\n      application_credential_secret: %s\n    region_name: %s\n    interface: public\n    identity_api_version: 3\n",
			learner.AuthInfo.AuthURL, id, secret, learner.RegionName)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	open := func(file string) (*heat.Heat, error) {
		return heat.Open(ctx, heat.Options{Name: "appcred", ConfigFile: file, PollInterval: 250 * time.Millisecond, Logger: quietLogger()})
	}
	create := func(h *heat.Heat) (labs.Stack, error) {
		st, err := h.Create(ctx, cloud.CreateRequest{Name: stackName("appcred"), TemplateFile: templatePath(t, "lab.yaml"),
			Params: map[string]string{"lab_id": "L7", "course": "os101", "learner": "ann"},
			Tags:   []string{labs.TagManaged, runTag}, Timeout: 2 * time.Minute})
		deleteLater(t, h, &st)
		return st, err
	}

	id, secret := credential(true)
	h, err := open(cloudsYAML(id, secret))
	if err != nil {
		t.Fatalf("open with an application credential: %v", err)
	}
	if err := h.Check(ctx); err != nil {
		t.Fatalf("check: %v", err)
	}
	st, err := create(h)
	if err != nil || st.Status != "CREATE_COMPLETE" {
		t.Fatalf("create with an unrestricted application credential: %s %v", st.Status, err)
	}
	listed, err := h.List(ctx, runTag)
	if err != nil || !containsStack(listed, st.ID) {
		t.Errorf("list: %v, the stack listed: %t", err, containsStack(listed, st.ID))
	}
	if st, err = h.Delete(ctx, st.Name, st.ID); err != nil || !st.Gone() {
		t.Errorf("delete: %s %v", st.Status, err)
	}

	id, secret = credential(false)
	h, err = open(cloudsYAML(id, secret))
	if err != nil {
		t.Fatalf("open with a restricted application credential: %v", err)
	}
	if err := h.Check(ctx); err != nil {
		t.Errorf("check with a restricted application credential (it can manage labs): %v", err)
	}
	before, err := h.List(ctx, runTag)
	if err != nil {
		t.Fatalf("list with a restricted application credential: %v", err)
	}
	st, err = create(h)
	if !errors.Is(err, cloud.ErrAuth) || !strings.Contains(err.Error(), "--unrestricted") {
		t.Errorf("create with a restricted application credential: %s %v; want an auth error that says to make it unrestricted", st.Status, err)
	}
	if after, err := h.List(ctx, runTag); err != nil || len(after) != len(before) {
		t.Errorf("a create refused before it was sent left %d stacks, %d before (%v)", len(after), len(before), err)
	}

	_, err = open(cloudsYAML(id, "not-the-secret-"+secret[:8]))
	if !errors.Is(err, cloud.ErrAuth) {
		t.Errorf("open with a wrong secret: %v, want an auth error", err)
	}
	assertNoSecret(t, err, "not-the-secret-"+secret[:8])
}

func containsStack(sts []labs.Stack, id string) bool {
	for _, s := range sts {
		if s.ID == id {
			return true
		}
	}
	return false
}
