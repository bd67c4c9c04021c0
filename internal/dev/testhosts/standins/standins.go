// Package standins builds small stand-ins for what the project's roles deploy and cannot be
// downloaded on test machines: an edx-platform release artifact (a small Django project with
// Open edX's entry points) and a guacd Debian package in an apt repository. They have the
// interfaces the roles rely on, so the roles are tested as they run against the real thing.
package standins

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

//go:embed all:artifact
var artifactFiles embed.FS

//go:embed guacd
var guacdFiles embed.FS

// GuacdVersion is the version of the guacd stand-in package.
const GuacdVersion = "1.5.5-0labplane1"

// mtime is every file's modification time in what is built: the same input builds the same
// bytes.
var mtime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// RequirementsFile is where a release lists its Python dependencies, as edx-platform does; the
// artifact's wheels/ holds them.
const RequirementsFile = "requirements/edx/base.txt"

// ArtifactName is the file name of a release's artifact, as edx-platform's are named.
func ArtifactName(release string) string { return "edx-platform-" + release + ".tar.gz" }

// Artifact builds the release artifact of release in dir, with its checksum file beside it
// (<artifact>.sha256), and returns its path: a gzipped tar of edx-platform-<release>/ holding a
// Django 3.2 project (Debian's python3-django) laid out as edx-platform is, read from its source:
//
//   - manage.py: DJANGO_SETTINGS_MODULE=lms.envs.production manage.py COMMAND, or the legacy
//     manage.py lms|cms [--settings=S] COMMAND; without settings named it falls back to the
//     development settings (lms.envs.devstack), which the stand-in refuses to run;
//   - lms.envs.production and cms.envs.production read the YAML file named by LMS_CFG or
//     CMS_CFG (required), with SERVICE_VARIANT naming the service (required); SECRET_KEY and
//     DATABASES required in the file, STATIC_ROOT, MEDIA_ROOT, ALLOWED_HOSTS... optional;
//   - lms.wsgi:application and cms.wsgi:application for gunicorn (same settings rules);
//   - collectstatic collects a static file (openedx/standin.css);
//   - GET /heartbeat answers as edx-platform's does: {"sql": {"status", "message"},
//     "modulestore": {...}}, 200 when every check passes, 503 otherwise, and no release;
//   - lms.celery and cms.celery, the Celery apps of the workers (celery --app=lms.celery
//     worker), on the broker the config file's CELERY_BROKER_* parts name;
//   - its Python dependencies as a wheelhouse: RequirementsFile lists them, wheels/ holds them
//     (one small wheel, which the settings import: every command must run in the virtualenv
//     built from them; Django, gunicorn and Celery come from the host's Debian packages).
func Artifact(dir, release string) (string, error) {
	return ArtifactWith(dir, release, ArtifactOptions{})
}

// ArtifactOptions make a release artifact that is broken, for tests of what a broken release
// does to a rollout.
type ArtifactOptions struct {
	// UnhealthyOn are the hostnames on which the release is broken: there its /heartbeat
	// answers 503, its "modulestore" check failing, whatever the database says, as a release
	// that fails on some hosts only does. "*" breaks it on every host. It deploys, migrates and
	// runs everywhere.
	UnhealthyOn []string
	// MigrateFailsOn are the hostnames on which the release's migrations fail: there
	// `manage.py lms|cms migrate` exits 1 having migrated nothing, as a migration that cannot be
	// applied on some hosts does. "*" fails them on every host. Every other command works.
	MigrateFailsOn []string
}

var unhealthyOnName = regexp.MustCompile(`^(\*|[a-zA-Z0-9][a-zA-Z0-9.-]{0,62})$`)

// ArtifactWith builds the artifact of release as Artifact does, changed by o. With no options
// it builds the same bytes as Artifact.
func ArtifactWith(dir, release string, o ArtifactOptions) (string, error) {
	if release == "" || strings.ContainsAny(release, "/ \"'\\\n") {
		return "", fmt.Errorf("standins: %q is not a release name", release)
	}
	releasePy := "# Written when the artifact was built.\nRELEASE = " + strconv.Quote(release) + "\n"
	for _, v := range []struct {
		name, what string
		hosts      []string
	}{
		{"UNHEALTHY_ON", "/heartbeat fails", o.UnhealthyOn},
		{"MIGRATE_FAILS_ON", "migrations fail", o.MigrateFailsOn},
	} {
		if len(v.hosts) == 0 {
			continue
		}
		quoted := make([]string, len(v.hosts))
		for i, h := range v.hosts {
			if !unhealthyOnName.MatchString(h) {
				return "", fmt.Errorf("standins: %q is not a hostname (nor *)", h)
			}
			quoted[i] = strconv.Quote(h)
		}
		releasePy += "# The hostnames on which this release's " + v.what + " (\"*\": every host).\n" +
			v.name + " = (" + strings.Join(quoted, ", ") + ",)\n"
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	top := "edx-platform-" + release
	add := func(name string, mode int64, body []byte) error {
		hdr := &tar.Header{Name: path.Join(top, name), Mode: mode, Size: int64(len(body)), ModTime: mtime,
			Typeflag: tar.TypeReg, Uname: "root", Gname: "root"}
		if mode&0o111 != 0 && body == nil {
			hdr.Name, hdr.Typeflag, hdr.Size = hdr.Name+"/", tar.TypeDir, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	err := fs.WalkDir(artifactFiles, "artifact", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, "artifact"), "/")
		switch {
		case d.IsDir() && d.Name() == "__pycache__":
			return fs.SkipDir
		case d.IsDir():
			return add(rel, 0o755, nil)
		}
		body, err := artifactFiles.ReadFile(p)
		if err != nil {
			return err
		}
		mode := int64(0o644)
		if bytes.HasPrefix(body, []byte("#!")) {
			mode = 0o755
		}
		return add(rel, mode, body)
	})
	if err == nil {
		err = add("openedx/release.py", 0o644, []byte(releasePy))
	}
	if err == nil {
		// the wheelhouse the release's virtualenv is built from, and what it must install
		var whl []byte
		if whl, err = runtimeWheel.Build(); err == nil {
			err = add("wheels/"+runtimeWheel.FileName(), 0o644, whl)
		}
	}
	if err == nil {
		err = add(RequirementsFile, 0o644, []byte("# The release's Python dependencies, installed from wheels/ (offline).\n"+runtimeWheel.Requirement()+"\n"))
	}
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = gz.Close()
	}
	if err != nil {
		return "", fmt.Errorf("standins: artifact %s: %w", release, err)
	}
	out := filepath.Join(dir, ArtifactName(release))
	sum := sha256.Sum256(buf.Bytes())
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("standins: %w", err)
	}
	if err := os.WriteFile(out+".sha256", []byte(hex.EncodeToString(sum[:])+"  "+ArtifactName(release)+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("standins: %w", err)
	}
	return out, nil
}

// ArtifactChecksum is the spec's artifact_checksum for the artifacts at base (a URL or a
// directory): the checksum file Artifact writes beside each, as sha256sum writes it.
func ArtifactChecksum(base string) string {
	return "sha256:" + base + "/" + ArtifactName("{release}") + ".sha256"
}

// GuacdKeyFile is the name of the file, in a guacd repository's directory, holding the public
// key its index is signed with (ASCII-armored OpenPGP): the spec's settings.guacd_apt_key.
const GuacdKeyFile = "signing-key.asc"

// GuacdRepository builds a guacd Debian package (version GuacdVersion, architecture all) in
// dir and writes dir's apt index (Packages, Packages.gz) and its signed Release (InRelease,
// signed by a key made for this repository, whose public half is GuacdKeyFile), so that dir
// served at URL is the repository "deb [signed-by=<the key>] URL ./". Its daemon (python3) reads /etc/guacamole/guacd.conf
// like the real guacd, answers the Guacamole select handshake with args, and has an LSB init
// script (/etc/init.d/guacd): no systemd needed. It needs dpkg-deb and dpkg-scanpackages
// (dpkg-dev).
func GuacdRepository(ctx context.Context, dir string) error {
	build, err := os.MkdirTemp("", "labplane-guacd-deb-")
	if err != nil {
		return fmt.Errorf("standins: %w", err)
	}
	defer os.RemoveAll(build)
	root := filepath.Join(build, "guacd")
	control := "Package: guacd\nVersion: " + GuacdVersion + "\nArchitecture: all\n" +
		"Maintainer: labplane tests <tests@labplane.invalid>\nDepends: python3, sysvinit-utils\n" +
		"Section: net\nPriority: optional\n" +
		"Description: Guacamole proxy daemon (labplane's stand-in for tests)\n" +
		" Answers the Guacamole protocol handshake like Apache Guacamole's guacd.\n"
	files := []struct {
		path, from string
		mode       os.FileMode
		body       string
	}{
		{"DEBIAN/control", "", 0o644, control},
		{"DEBIAN/conffiles", "", 0o644, "/etc/init.d/guacd\n"},
		{"DEBIAN/postinst", "guacd/postinst", 0o755, ""},
		{"DEBIAN/prerm", "guacd/prerm", 0o755, ""},
		{"DEBIAN/postrm", "guacd/postrm", 0o755, ""},
		{"usr/sbin/guacd", "guacd/guacd", 0o755, ""},
		{"etc/init.d/guacd", "guacd/guacd.init", 0o755, ""},
		{"usr/share/doc/guacd/README", "", 0o644, "A stand-in for Apache Guacamole's guacd, built by labplane's tests.\n"},
	}
	for _, f := range files {
		body := []byte(f.body)
		if f.from != "" {
			if body, err = guacdFiles.ReadFile(f.from); err != nil {
				return fmt.Errorf("standins: %w", err)
			}
		}
		p := filepath.Join(root, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("standins: %w", err)
		}
		if err := os.WriteFile(p, body, f.mode); err != nil {
			return fmt.Errorf("standins: %w", err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			return fmt.Errorf("standins: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("standins: %w", err)
	}
	deb := filepath.Join(dir, "guacd_"+GuacdVersion+"_all.deb")
	if _, err := run(ctx, build, "dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, deb); err != nil {
		return err
	}
	index, err := run(ctx, dir, "dpkg-scanpackages", "--multiversion", ".", "/dev/null")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "Packages"), index, 0o644); err != nil {
		return fmt.Errorf("standins: %w", err)
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	if _, err := w.Write(index); err != nil {
		return fmt.Errorf("standins: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("standins: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Packages.gz"), gz.Bytes(), 0o644); err != nil {
		return fmt.Errorf("standins: %w", err)
	}
	return signRepository(dir, map[string][]byte{"Packages": index, "Packages.gz": gz.Bytes()})
}

// signRepository writes dir's InRelease: a Release file listing the index files' sizes and
// SHA-256 sums, clearsigned with a new Ed25519 key whose public half goes to GuacdKeyFile, as
// apt verifies a repository with signed-by.
func signRepository(dir string, index map[string][]byte) error {
	release := "Origin: labplane tests\nLabel: guacd stand-in\nDate: " + mtime.Format(time.RFC1123) + "\nSHA256:\n"
	for _, name := range slices.Sorted(maps.Keys(index)) {
		release += fmt.Sprintf(" %x %d %s\n", sha256.Sum256(index[name]), len(index[name]), name)
	}
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}
	key, err := openpgp.NewEntity("labplane tests", "guacd stand-in repository", "tests@labplane.invalid", cfg)
	if err != nil {
		return fmt.Errorf("standins: signing key: %w", err)
	}
	var signed, public bytes.Buffer
	w, err := clearsign.Encode(&signed, key.PrivateKey, cfg)
	if err == nil {
		_, err = io.WriteString(w, release)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		return fmt.Errorf("standins: sign the Release file: %w", err)
	}
	a, err := armor.Encode(&public, openpgp.PublicKeyType, nil)
	if err == nil {
		err = key.Serialize(a)
	}
	if err == nil {
		err = a.Close()
	}
	if err != nil {
		return fmt.Errorf("standins: the public key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "InRelease"), signed.Bytes(), 0o644); err != nil {
		return fmt.Errorf("standins: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, GuacdKeyFile), public.Bytes(), 0o644); err != nil {
		return fmt.Errorf("standins: %w", err)
	}
	return nil
}

// run runs a command in dir and returns its standard output; errors carry its standard error.
func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("standins: %s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
