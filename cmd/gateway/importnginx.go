package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/nginximport"
)

// importNginx is `gateway import-nginx [-o FILE] nginx.conf`: it prints the
// translated config (or writes it to -o) and lists every directive it did
// not translate on stderr as FILE:LINE: directive: why. Exit 0 when a
// config was written, untranslated lines or not; 1 when the nginx config
// cannot be read or parsed, or holds nothing to translate; 2 for bad usage.
func importNginx(args []string, stdout, stderr io.Writer) int {
	const use = "usage: gateway import-nginx [-o out.yaml] nginx.conf"
	fs := flag.NewFlagSet("import-nginx", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, use)
		fs.PrintDefaults()
	}
	out := fs.String("o", "", "write the config to this file instead of stdout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// The file may come before the flags too: import-nginx nginx.conf -o x.yaml.
	var files []string
	for rest := fs.Args(); len(rest) > 0; rest = fs.Args() {
		files = append(files, rest[0])
		if err := fs.Parse(rest[1:]); err != nil {
			return 2
		}
	}
	if len(files) != 1 {
		fmt.Fprintln(stderr, use)
		return 2
	}
	res, err := nginximport.File(files[0])
	if err != nil {
		var pe *nginximport.ParseError
		if errors.As(err, &pe) {
			fmt.Fprintln(stderr, err)
		} else {
			fmt.Fprintln(stderr, "gateway import-nginx:", err)
		}
		return 1
	}
	for _, n := range res.Notes {
		fmt.Fprintln(stderr, n)
	}
	// The result is meant to pass `gateway check`; what can still stop it
	// is outside the translation (a certificate file missing here).
	if _, err := config.Parse(res.YAML); err != nil {
		var problems config.Problems
		if errors.As(err, &problems) {
			for _, p := range problems {
				fmt.Fprintf(stderr, "gateway import-nginx: warning: the result does not pass gateway check yet: %v\n", p)
			}
		}
	}
	if *out == "" {
		_, _ = stdout.Write(res.YAML)
		return 0
	}
	if err := os.WriteFile(*out, res.YAML, 0o644); err != nil {
		fmt.Fprintln(stderr, "gateway import-nginx:", err)
		return 1
	}
	return 0
}
