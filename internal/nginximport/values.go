package nginximport

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// parseSize reads an nginx size (ngx_parse_size): a number of bytes, or
// with k, m or g (either case) for binary kilo-, mega- and gigabytes.
func parseSize(s string) (int64, error) {
	scale := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			scale, s = 1<<10, s[:n-1]
		case 'm', 'M':
			scale, s = 1<<20, s[:n-1]
		case 'g', 'G':
			scale, s = 1<<30, s[:n-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<50)/scale {
		return 0, fmt.Errorf("%q is not an nginx size", s)
	}
	return n * scale, nil
}

// sizeText writes a byte count the way the gateway's sizes read best:
// in GiB, MiB or KiB when it is a whole number of them.
func sizeText(n int64) string {
	for _, u := range []struct {
		suffix string
		scale  int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.scale && n%u.scale == 0 {
			return strconv.FormatInt(n/u.scale, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// nginxTimeUnits are ngx_parse_time's units.
var nginxTimeUnits = map[string]time.Duration{
	"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour,
	"d": 24 * time.Hour, "w": 7 * 24 * time.Hour, "M": 30 * 24 * time.Hour, "y": 365 * 24 * time.Hour,
}

var nginxTimePart = regexp.MustCompile(`^(\d+)(ms|s|m|h|d|w|M|y)?`)

// parseTime reads an nginx time (ngx_parse_time): parts like "1h30m" or
// "1h 30m", each a number and a unit; a bare number is seconds.
func parseTime(s string) (time.Duration, error) {
	rest := strings.TrimSpace(s)
	if rest == "" {
		return 0, fmt.Errorf("%q is not an nginx time", s)
	}
	var total time.Duration
	for rest != "" {
		m := nginxTimePart.FindStringSubmatch(rest)
		if m == nil {
			return 0, fmt.Errorf("%q is not an nginx time", s)
		}
		n, err := strconv.ParseInt(m[1], 10, 64)
		unit := nginxTimeUnits[m[2]]
		if m[2] == "" {
			unit = time.Second
		}
		if err != nil || n > int64(100*365*24*time.Hour/unit) {
			return 0, fmt.Errorf("%q is not an nginx time", s)
		}
		total += time.Duration(n) * unit
		rest = strings.TrimSpace(rest[len(m[0]):])
	}
	return total, nil
}

// durationText writes a duration as an operator would: 1h, 5m, 90s, 250ms.
func durationText(d time.Duration) string {
	s := d.String()
	for _, zero := range []string{"m0s", "h0m"} {
		if strings.HasSuffix(s, zero) {
			s = strings.TrimSuffix(s, zero[1:])
		}
	}
	return s
}

// variableRE finds nginx variables in a complex value: $name or ${name}.
var variableRE = regexp.MustCompile(`\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))`)

// variables splits a complex value such as "${remote_addr}AAA" into the
// variables it names and the literal text around them.
func variables(s string) (names []string, literal string) {
	for _, m := range variableRE.FindAllStringSubmatch(s, -1) {
		names = append(names, m[1]+m[2])
	}
	return names, variableRE.ReplaceAllString(s, "")
}

// keySource turns the nginx variable a hash or a limit is keyed on into
// the gateway's key source: the client address, a header, a cookie, a
// query argument or the path. why says what is wrong with any other.
func keySource(variable string) (source, why string) {
	switch {
	case variable == "remote_addr" || variable == "binary_remote_addr":
		return "client_ip", ""
	case variable == "uri" || variable == "document_uri":
		return "path", ""
	case strings.HasPrefix(variable, "http_") && len(variable) > 5:
		return "header:" + headerName(variable[5:]), ""
	case strings.HasPrefix(variable, "cookie_") && len(variable) > 7:
		return "cookie:" + variable[7:], ""
	case strings.HasPrefix(variable, "arg_") && len(variable) > 4:
		return "query:" + variable[4:], ""
	}
	return "", fmt.Sprintf("the gateway cannot key on $%s (it keys on $remote_addr, $binary_remote_addr, $uri, $http_*, $cookie_* or $arg_*)", variable)
}

// headerName turns the tail of $http_x_user_id into X-User-Id: nginx lower
// cases header names and writes dashes as underscores.
func headerName(v string) string {
	parts := strings.Split(v, "_")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "-")
}

var nameBadRun = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// safeName makes s a valid gateway name: runs of other characters become
// one '-', and it starts with a letter or digit; fallback when nothing is
// left.
func safeName(s, fallback string) string {
	s = nameBadRun.ReplaceAllString(s, "-")
	s = strings.TrimLeft(s, "_.-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "_.-")
	}
	if s == "" {
		return fallback
	}
	return s
}

// hostPort splits an nginx server address ("host:port", "host", "[::1]:80")
// and fills in the port nginx would use; ok is false for what is not a
// TCP address (unix sockets, a bad port).
func hostPort(addr string, defaultPort int) (string, bool) {
	if strings.HasPrefix(addr, "unix:") {
		return "", false
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		// No port: a bare name or address, or a bracketed IPv6 address.
		host, port = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"), strconv.Itoa(defaultPort)
		if strings.Contains(host, ":") && net.ParseIP(host) == nil {
			return "", false
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || !validHost(host) {
		return "", false
	}
	return net.JoinHostPort(host, port), true
}

var hostNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$`)

// validHost reports whether a backend host is an IP address or a host
// name the gateway can resolve.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return len(h) <= 253 && hostNameRE.MatchString(h)
}

// hasEnvSyntax reports whether the gateway's config loader would take part
// of s for an environment variable: it expands ${NAME} in every value.
func hasEnvSyntax(s string) bool { return strings.Contains(s, "${") }

// writable reports whether s can be a value of the gateway's config as it
// is: valid UTF-8 (YAML holds nothing else), no control characters, and
// nothing the loader would expand as ${NAME}.
func writable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl) && !hasEnvSyntax(s)
}
