package nginximport

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// splitClients is a split_clients block (ngx_http_split_clients_module):
//
//	split_clients "${http_x_user_id}" $variant { 90% v1; * v2; }
//
// nginx hashes the key string (MurmurHash2) and gives the variable the
// value whose share the hash falls in. Used as "proxy_pass
// http://$variant", it is a sticky split between upstreams.
type splitClients struct {
	d        *Directive
	key      string
	variable string // without the $
	parts    []splitPart
	why      string // why the block cannot be translated
}

type splitPart struct {
	d          *Directive
	hundredths int // the share in hundredths of a percent (nginx reads two decimals)
	value      string
}

// split is a route's split as translated.
type split struct {
	sticky, salt string
	variants     []variant
}

type variant struct {
	name, pool string
	weight     int
}

func (t *translator) splitClients(d *Directive) {
	if !d.IsBlock || len(d.Args) != 2 || !strings.HasPrefix(d.Args[1], "$") {
		t.skip(d, "split_clients takes a key string and a $variable")
		return
	}
	sp := &splitClients{d: d, key: d.Args[0], variable: strings.Trim(d.Args[1], "${}")}
	t.splits[sp.variable] = sp
	total, rest := 0, -1
	for i, c := range d.Block {
		if len(c.Args) > 1 || c.IsBlock {
			sp.why = fmt.Sprintf("split_clients line %s is not \"PERCENT VALUE;\"", where(c))
			return
		}
		part := splitPart{d: c, value: arg(c, 0)}
		if c.Name == "*" {
			rest = i
		} else {
			pct, err := strconv.ParseFloat(strings.TrimSuffix(c.Name, "%"), 64)
			if !strings.HasSuffix(c.Name, "%") || err != nil || !(pct > 0) {
				sp.why = fmt.Sprintf("split_clients share %q (%s) is not a percentage", c.Name, where(c))
				return
			}
			part.hundredths = int(math.Round(pct * 100))
			total += part.hundredths
		}
		sp.parts = append(sp.parts, part)
	}
	if total > 10000 {
		sp.why = fmt.Sprintf("split_clients shares add up to more than 100%% (%s)", percentText(total))
		return
	}
	// "*" takes what the percentages leave; without it, the rest of the
	// hashes get an empty value.
	if rest >= 0 {
		sp.parts[rest].hundredths = 10000 - total
	} else if total < 10000 {
		sp.parts = append(sp.parts, splitPart{d: d, hundredths: 10000 - total})
	}
}

// percentText writes hundredths of a percent: 9000 is 90%, 50 is 0.5%.
func percentText(hundredths int) string {
	return strconv.FormatFloat(float64(hundredths)/100, 'f', -1, 64) + "%"
}

// splitRoute turns the split_clients a location proxies through into the
// route's split. The variants are the values (upstream names or
// addresses), each weighted by its share; the sticky key is the variable
// nginx hashes, and the literal text around it ("AAA" in
// "${remote_addr}AAA", there to reshuffle who gets what) becomes the
// salt. The gateway hashes differently (weighted rendezvous hashing of
// xxhash, salted), so one user may land on another variant than under
// nginx; the shares are the same.
func (t *translator) splitRoute(sp *splitClients) *split {
	t.use(sp.d)
	for _, p := range sp.parts {
		t.use(p.d)
	}
	out := &split{}
	names, literal := variables(sp.key)
	switch {
	case len(names) == 1:
		source, why := keySource(names[0])
		if why != "" {
			t.note(sp.d, "the split is translated without a sticky key (each window of requests is shared out in the exact proportions): %s", why)
			break
		}
		out.sticky = source
		if literal != "" && writable(literal) {
			out.salt = literal
		}
	case len(names) == 0:
		t.note(sp.d, "the key names no variable, so nginx sends everyone to one value; the gateway shares requests out in the exact proportions instead")
	default:
		t.note(sp.d, "the gateway's sticky key is one key source, not %d variables: the split is translated without one (each window of requests is shared out in the exact proportions)", len(names))
	}
	weights := map[string]int{}
	var order []string
	for _, p := range sp.parts {
		if p.value == "" {
			t.note(sp.d, "%s of the hashes get an empty $%s, which names no upstream (nginx fails those requests); the gateway shares them out among the other variants",
				percentText(p.hundredths), sp.variable)
			continue
		}
		if _, seen := weights[p.value]; !seen {
			order = append(order, p.value)
		}
		weights[p.value] += p.hundredths // a value listed twice gets both shares
	}
	// Whole percentages are written as they are (90 and 10); finer shares
	// in hundredths of a percent (the gateway's weights go to 10000).
	scale := 100
	for _, w := range weights {
		if w%100 != 0 {
			scale = 1
		}
	}
	taken := map[string]bool{}
	for _, value := range order {
		tg, _ := t.resolvePool(value) // checked by route
		p := t.commitPool(tg, sp.d)
		name := safeName(value, "variant")
		for i := 2; taken[name]; i++ {
			name = fmt.Sprintf("%s-%d", safeName(value, "variant"), i)
		}
		taken[name] = true
		out.variants = append(out.variants, variant{name: name, pool: p.name, weight: weights[value] / scale})
	}
	return out
}
