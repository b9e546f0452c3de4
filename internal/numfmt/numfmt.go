// Package numfmt formats the numbers of the gateway's reports the same way
// in every report: a nil number (a rate of nothing, a quantile of no
// samples) is "-", never NaN or 0.
package numfmt

import "strconv"

// Percent is a rate as a percentage with two decimals: 0.25 -> "25.00%".
func Percent(x *float64) string {
	if x == nil {
		return "-"
	}
	return strconv.FormatFloat(*x*100, 'f', 2, 64) + "%"
}

// Millis is milliseconds to the microsecond: 1.5 -> "1.500".
func Millis(x *float64) string {
	if x == nil {
		return "-"
	}
	return strconv.FormatFloat(*x, 'f', 3, 64)
}
