package worker

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Perturbation adds noise to one numeric output of every successful
// prediction (-perturb FIELD=AMOUNT), so that a worker answers slightly
// differently each time, as a candidate in a shadow comparison might.
type Perturbation struct {
	// Field is the output: "confidence" (every row's confidence) or
	// "probabilities.CLASS" (every row's probability of that class of
	// the model).
	Field string
	// Amount bounds the noise: each value gets a uniform draw from
	// [-Amount, +Amount] added, from 0 to 1. The values are not clamped,
	// so a probability may leave [0,1] by up to Amount.
	Amount float64
}

func (p Perturbation) String() string {
	return p.Field + "=" + strconv.FormatFloat(p.Amount, 'g', -1, 64)
}

// The fields a Perturbation may name.
const (
	perturbConfidence = "confidence"
	perturbClass      = "probabilities." // followed by a class name
)

// Perturbations is the -perturb flag: with Set and String it is a
// flag.Value, repeatable, each value one or more comma-separated
// FIELD=AMOUNT entries. (A class whose name holds a comma cannot be
// named.)
type Perturbations []Perturbation

func (ps Perturbations) String() string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// Set adds the entries of one flag value, or none if one is malformed.
// The field names and amounts are checked by Config.Validate and
// Config.ValidateFor, which know the rules and the model's classes.
func (ps *Perturbations) Set(value string) error {
	var add Perturbations
	for entry := range strings.SplitSeq(value, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return fmt.Errorf("empty entry in %q: want FIELD=AMOUNT, comma-separated", value)
		}
		// The last "=": an amount never holds one, a class name might.
		i := strings.LastIndexByte(entry, '=')
		if i <= 0 || i == len(entry)-1 {
			return fmt.Errorf("%s is not FIELD=AMOUNT, such as confidence=1e-7 or probabilities.CLASS=1e-7", quoteShort(entry))
		}
		field, amount := entry[:i], entry[i+1:]
		v, err := strconv.ParseFloat(amount, 64)
		switch {
		case errors.Is(err, strconv.ErrRange):
			return fmt.Errorf("%s: the amount %s is out of range", quoteShort(entry), quoteShort(amount))
		case err != nil:
			return fmt.Errorf("%s: the amount %s is not a number", quoteShort(entry), quoteShort(amount))
		}
		add = append(add, Perturbation{Field: field, Amount: v})
	}
	*ps = append(*ps, add...)
	return nil
}

// perturbFields lists the fields a Perturbation may name for a model of
// these classes, in the order of the answer.
func perturbFields(classes []string) []string {
	fields := []string{perturbConfidence}
	for _, c := range classes {
		fields = append(fields, perturbClass+c)
	}
	return fields
}

// validatePerturbFields checks that every field names an output of a
// model of these classes.
func validatePerturbFields(ps Perturbations, modelName string, classes []string) error {
	var errs []error
	fields := perturbFields(classes)
	for _, p := range ps {
		if slices.Contains(fields, p.Field) {
			continue
		}
		why := ""
		if class, ok := strings.CutPrefix(p.Field, perturbClass); ok {
			why = fmt.Sprintf(" (model %q has no class %s)", modelName, quoteShort(class))
		}
		errs = append(errs, fmt.Errorf("-perturb: unknown field %s%s: the fields are %s",
			quoteShort(p.Field), why, strings.Join(fields, ", ")))
	}
	return errors.Join(errs...)
}

// perturb adds the -perturb noise to the numbers of one answer: probs
// holds nc probabilities per row, conf one confidence per row. The
// predictions were chosen from the values before and are not changed.
func (f *faults) perturb(probs, conf []float64, nc int) {
	if f.confNoise > 0 {
		for r := range conf {
			conf[r] += f.noise(f.confNoise)
		}
	}
	if f.classNoise != nil {
		for i := range probs {
			if amount := f.classNoise[i%nc]; amount > 0 {
				probs[i] += f.noise(amount)
			}
		}
	}
}

// noise is uniform in [-amount, +amount).
func (f *faults) noise(amount float64) float64 {
	return (2*f.random() - 1) * amount
}

// timestampLayout is RFC 3339 with nanoseconds, all nine digits always
// written (time.RFC3339Nano drops trailing zeros), so that the stamps of
// one worker are of one length and sort as text.
const timestampLayout = "2006-01-02T15:04:05.000000000Z07:00"

// appendTimestamp writes t in UTC as a JSON string.
func appendTimestamp(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, timestampLayout)
	return append(b, '"')
}
