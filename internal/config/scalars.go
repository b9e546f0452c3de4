package config

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a Go duration written as text ("250ms", "2s").
// Zero means "not set": the field's default applies.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML parses the scalar. A bad value is reported as a
// *yaml.TypeError so that decoding goes on and collects every problem.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil || n.Kind != yaml.ScalarNode {
		return typeError(n, "invalid duration %q (write a Go duration such as 250ms, 2s or 1m30s)", n.Value)
	}
	if v < 0 {
		return typeError(n, "duration %q is negative", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as text, the way it is configured.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// ByteSize is a size in bytes, written as a plain number or with a binary
// unit: KiB, MiB or GiB. Zero means "not set": the field's default applies.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	scale  int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// ParseByteSize reads "16KiB", "1MiB", "512" or "512B".
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	scale := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, scale = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.scale
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<50)/scale {
		return 0, fmt.Errorf("invalid size")
	}
	return ByteSize(n * scale), nil
}

// UnmarshalYAML parses the scalar; see Duration.UnmarshalYAML.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return typeError(n, "invalid size %q (write bytes, or a number with KiB, MiB or GiB)", n.Value)
	}
	*b = v
	return nil
}

// UnmarshalYAML accepts "host:port" or {addr: host:port, weight: N}.
func (b *Backend) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*b = Backend{Addr: n.Value, Weight: 1}
		return nil
	}
	var long struct {
		Addr   string `yaml:"addr"`
		Weight *int   `yaml:"weight"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	*b = Backend{Addr: long.Addr, Weight: 1}
	if long.Weight != nil {
		b.Weight = *long.Weight
	}
	return nil
}

// UnmarshalYAML decodes a retries block. Unlike other integers, attempts
// 0 has a meaning of its own (retries off), so a block that leaves the key
// out gets DefaultRetryAttempts here, where absent can still be told from
// 0: "retries: {on: [timeout]}" is one retry, "retries: {attempts: 0}"
// none. The other fields take their defaults in applyDefaults.
func (r *Retries) UnmarshalYAML(n *yaml.Node) error {
	type plain Retries // the same fields without this method
	p := plain{Attempts: DefaultRetryAttempts}
	err := n.Decode(&p)
	*r = Retries(p)
	return err
}

// Rate is a number of events per unit of time, written "100/s", "600/m"
// or "1000/h" (the number may have a fraction: "0.5/s"). Zero means "not
// set".
type Rate struct {
	N   float64
	Per time.Duration
}

var rateUnits = map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}

// ParseRate reads "100/s".
func ParseRate(s string) (Rate, error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	per, known := rateUnits[strings.TrimSpace(unit)]
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if !ok || !known || err != nil || !(n > 0) || math.IsInf(n, 0) {
		return Rate{}, fmt.Errorf("invalid rate")
	}
	return Rate{N: n, Per: per}, nil
}

// PerSecond is the rate in events per second.
func (r Rate) PerSecond() float64 {
	if r.Per <= 0 {
		return 0
	}
	return r.N / r.Per.Seconds()
}

// String writes the rate as it is configured.
func (r Rate) String() string {
	for u, d := range rateUnits {
		if d == r.Per {
			return strconv.FormatFloat(r.N, 'f', -1, 64) + "/" + u
		}
	}
	return ""
}

// UnmarshalYAML parses the scalar; see Duration.UnmarshalYAML.
func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseRate(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return typeError(n, "invalid rate %q (write a positive number per s, m or h, such as 100/s or 600/m)", n.Value)
	}
	*r = v
	return nil
}

// MarshalJSON writes the rate as text, the way it is configured.
func (r Rate) MarshalJSON() ([]byte, error) { return json.Marshal(r.String()) }

// UnmarshalYAML accepts one rate_limit entry as a mapping, or a list of them.
func (l *RateLimits) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		var one RateLimit
		err := n.Decode(&one)
		*l = RateLimits{&one}
		return err
	}
	var many []*RateLimit
	err := n.Decode(&many)
	*l = many
	return err
}

func typeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, fmt.Sprintf(format, args...))}}
}
