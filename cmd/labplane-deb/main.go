// Command labplane-deb builds labplane's Debian package (internal/debpkg):
//
//	go run ./cmd/labplane-deb -version 1.2.0 -out dist
//
// It builds labplane with that version linked in (or packages -binary), and takes its man page
// and fish completion from the command line itself. Run it from the source tree's top.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/labplane/labplane/internal/cli"
	"github.com/labplane/labplane/internal/debpkg"
)

func main() {
	version := flag.String("version", "", "the package's version, linked into the binary too (required; it starts with a digit)")
	out := flag.String("out", ".", "the directory the package is written to")
	binary := flag.String("binary", "", "a labplane binary to package as it is (default: build one with go)")
	flag.Parse()
	path, err := run(*version, *out, *binary)
	if err != nil {
		fmt.Fprintln(os.Stderr, "labplane-deb:", err)
		os.Exit(2)
	}
	fmt.Println(path)
}

func run(version, out, binary string) (string, error) {
	if version == "" || version[0] < '0' || version[0] > '9' {
		return "", errors.New("-version: a Debian version, starting with a digit (1.2.0, 0.1.0~rc1)")
	}
	project, err := os.Getwd()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(project, "cmd", "labplane")); err != nil {
		return "", errors.New("run it from labplane's source tree (cmd/labplane is not here)")
	}
	if binary == "" {
		tmp, err := os.MkdirTemp("", "labplane-deb-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(tmp)
		binary = filepath.Join(tmp, "labplane")
		build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X github.com/labplane/labplane/internal/cli.version="+version,
			"-o", binary, "./cmd/labplane")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return "", fmt.Errorf("go build: %w", err)
		}
	}
	app := cli.NewApp(cli.IO{In: os.Stdin, Out: io.Discard, Err: io.Discard})
	man, err := app.ToMan()
	if err != nil {
		return "", fmt.Errorf("man page: %w", err)
	}
	fish, err := app.ToFishCompletion()
	if err != nil {
		return "", fmt.Errorf("fish completion: %w", err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	return debpkg.Build(debpkg.Options{Binary: binary, Version: version, Project: project, Man: man, Fish: fish, Out: out})
}
