package standins

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// runtimeWheel is the stand-in release's one Python dependency, shipped in its wheels/ as a
// real release ships its wheelhouse: the roles build the release's virtualenv from it, offline,
// and the stand-in's settings import it, so a command run outside that virtualenv fails.
var runtimeWheel = wheelSpec{
	Distribution: "labplane_standin_runtime",
	Version:      "1.0",
	Files: map[string]string{
		"standin_runtime/__init__.py": `"""The stand-in release's dependency from its wheels: importable only in the release's virtualenv."""
VERSION = "1.0"
`,
	},
}

// wheelSpec is a pure-Python wheel's distribution name (normalized, with underscores), version
// and files.
type wheelSpec struct {
	Distribution, Version string
	Files                 map[string]string
}

// FileName is the wheel's file name (PEP 427).
func (w wheelSpec) FileName() string {
	return w.Distribution + "-" + w.Version + "-py3-none-any.whl"
}

// Requirement is the line of a requirements file that pins it.
func (w wheelSpec) Requirement() string {
	return strings.ReplaceAll(w.Distribution, "_", "-") + "==" + w.Version
}

// Build returns the wheel's bytes: the files, the .dist-info's METADATA, WHEEL and RECORD (with
// each file's hash, as pip checks them), every entry at mtime (the same input builds the same
// bytes).
func (w wheelSpec) Build() ([]byte, error) {
	info := w.Distribution + "-" + w.Version + ".dist-info/"
	files := map[string]string{
		info + "METADATA": "Metadata-Version: 2.1\nName: " + strings.ReplaceAll(w.Distribution, "_", "-") + "\nVersion: " + w.Version + "\n",
		info + "WHEEL":    "Wheel-Version: 1.0\nGenerator: labplane-standins\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
	}
	for name, body := range w.Files {
		files[name] = body
	}
	names := slices.Sorted(maps.Keys(files))
	var record strings.Builder
	for _, name := range names {
		sum := sha256.Sum256([]byte(files[name]))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", name, base64.RawURLEncoding.EncodeToString(sum[:]), len(files[name]))
	}
	record.WriteString(info + "RECORD,,\n")
	files[info+"RECORD"] = record.String()
	names = append(names, info+"RECORD")

	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range names {
		f, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: mtime})
		if err != nil {
			return nil, err
		}
		if _, err := f.Write([]byte(files[name])); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
