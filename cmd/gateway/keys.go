package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/config"
)

const keysUsage = `usage: gateway keys add NAME [-routes a,b] [-tags t1,t2]
       gateway keys hash < key.txt`

// keysCommand is `gateway keys add` and `gateway keys hash`: the
// operator's side of an API keys file, which holds SHA-256 hashes only.
// Exit 0 when it printed what was asked; 1 when it could not; 2 for bad
// usage.
func keysCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, keysUsage)
		return 2
	}
	switch args[0] {
	case "add":
		return keysAdd(args[1:], stdout, stderr)
	case "hash":
		return keysHash(args[1:], stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, keysUsage)
		return 0
	}
	fmt.Fprintf(stderr, "gateway keys: unknown command %q\n%s\n", args[0], keysUsage)
	return 2
}

// keysAdd makes a new key and prints it once, with the entry that lists
// its SHA-256 in the keys file. The key is not written anywhere.
func keysAdd(args []string, stdout, stderr io.Writer) int {
	const use = "usage: gateway keys add NAME [-routes a,b] [-tags t1,t2]"
	fs := flag.NewFlagSet("keys add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, use)
		fs.PrintDefaults()
	}
	routes := fs.String("routes", "", "comma-separated route names the key may call (default: every route using the keys file)")
	tags := fs.String("tags", "", "comma-separated route tags the key may call")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// The name may come before the flags too: keys add team-a -routes iris.
	var names []string
	for rest := fs.Args(); len(rest) > 0; rest = fs.Args() {
		names = append(names, rest[0])
		if err := fs.Parse(rest[1:]); err != nil {
			return 2
		}
	}
	if len(names) != 1 {
		fmt.Fprintln(stderr, use)
		return 2
	}
	routeList, err := keysList("-routes", *routes)
	if err != nil {
		fmt.Fprintf(stderr, "gateway keys add: %v\n%s\n", err, use)
		return 2
	}
	tagList, err := keysList("-tags", *tags)
	if err != nil {
		fmt.Fprintf(stderr, "gateway keys add: %v\n%s\n", err, use)
		return 2
	}
	return keysPrint(stdout, stderr, names[0], routeList, tagList)
}

// keysPrint makes the key and prints it with its entry, once the entry
// is known to parse as a keys file and to match the key: the name is
// checked by the keys file's own rule.
func keysPrint(stdout, stderr io.Writer, name string, routes, tags []string) int {
	key, sum, err := auth.NewKey()
	if err != nil {
		fmt.Fprintln(stderr, "gateway keys add:", err)
		return 1
	}
	entry, err := keysEntryLine(name, sum, routes, tags)
	if err != nil {
		fmt.Fprintln(stderr, "gateway keys add:", err)
		return 1
	}
	set, err := auth.ParseKeys([]byte("keys:\n" + entry))
	if err != nil {
		var problems config.Problems
		if !errors.As(err, &problems) {
			fmt.Fprintln(stderr, "gateway keys add:", err)
			return 1
		}
		for _, p := range problems {
			fmt.Fprintf(stderr, "gateway keys add: %s: %s\n", strings.TrimPrefix(p.Path, "keys[0]."), p.Msg)
		}
		fmt.Fprintln(stderr, "usage: gateway keys add NAME [-routes a,b] [-tags t1,t2]")
		return 2
	}
	if k := set.Lookup([]byte(key)); k == nil || k.Name != name {
		fmt.Fprintln(stderr, "gateway keys add: internal error: the entry does not match the key")
		return 1
	}
	fmt.Fprintf(stdout, "# new API key for %s (shown once; the keys file keeps only its SHA-256):\n%s\n", name, key)
	fmt.Fprintf(stdout, "# add to the keys file under keys:\n%s", entry)
	return 0
}

// keysEntryLine is one keys file entry in flow style, indented to go
// under "keys:". yaml.v3 writes it, so a name or route that YAML would
// read as something else ("null", "1e3") is quoted.
func keysEntryLine(name, sum string, routes, tags []string) (string, error) {
	text := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
	entry := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	field := func(key string, value *yaml.Node) { entry.Content = append(entry.Content, text(key), value) }
	field("name", text(name))
	field("sha256", text(sum))
	for _, list := range []struct {
		key   string
		items []string
	}{{"routes", routes}, {"tags", tags}} {
		if len(list.items) == 0 {
			continue
		}
		seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, it := range list.items {
			seq.Content = append(seq.Content, text(it))
		}
		field(list.key, seq)
	}
	out, err := yaml.Marshal(&yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{entry}})
	if err != nil {
		return "", fmt.Errorf("writing the entry: %w", err)
	}
	return "  " + string(out), nil
}

// keysList splits a comma-separated flag value; an empty item is a
// mistake ("a,,b", a trailing comma), not something to skip.
func keysList(flagName, v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	items := strings.Split(v, ",")
	for i, it := range items {
		items[i] = strings.TrimSpace(it)
		if items[i] == "" {
			return nil, fmt.Errorf("%s %q has an empty item", flagName, v)
		}
	}
	return items, nil
}

// keysHash prints the hex SHA-256 of one key read on stdin, for keys an
// operator already has. Surrounding whitespace is not part of the key:
// HTTP drops it from header values (RFC 9110 5.5).
func keysHash(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "usage: gateway keys hash < key.txt   (one key on stdin; prints its SHA-256)")
		return 2
	}
	// The gateway refuses keys over 512 bytes (auth.KeySet.Lookup);
	// reading a little more tells an overlong key from one that fits.
	data, err := io.ReadAll(io.LimitReader(stdin, 4096))
	if err != nil {
		fmt.Fprintln(stderr, "gateway keys hash: reading stdin:", err)
		return 1
	}
	key := strings.TrimSpace(string(data))
	switch {
	case key == "":
		fmt.Fprintln(stderr, "gateway keys hash: no key on stdin")
		return 1
	case strings.ContainsAny(key, " \t\r\n"):
		fmt.Fprintln(stderr, "gateway keys hash: stdin holds more than one word; give one key")
		return 1
	case len(key) > 512:
		fmt.Fprintln(stderr, "gateway keys hash: the key is longer than 512 bytes, which the gateway never accepts")
		return 1
	}
	fmt.Fprintln(stdout, auth.Digest(key))
	return 0
}
