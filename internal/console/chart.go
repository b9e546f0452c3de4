package console

import "unicode/utf8"

// chart is a horizontal bar chart drawn as inline SVG; the template writes
// only numbers computed here into its attributes. Short labels (latency
// buckets) sit left of their bars; long ones (JSON paths) on a line of
// their own above, so that they fit a phone's width. The SVG is drawn at
// about one unit per pixel and shrinks with a narrow screen.
type chart struct {
	// Title is the SVG's <title>: what is drawn, in which unit.
	Title string
	Bars  []bar
	// More counts the items not drawn.
	More int
	// LabelWidth is the room left of the bars for their labels; 0 puts
	// each label above its bar.
	LabelWidth int
	// Width and Height are the viewBox.
	Width, Height int
}

// bar is one item: Fraction (0 to 1) of the longest bar, and optionally a
// thin second bar under it (the noise copy's rate).
type bar struct {
	Label, Value, Hint, Class string
	Fraction, Second          float64
	HasSecond                 bool

	// Geometry, set by layout.
	LabelY, BarY, SecondY, ValueY int
	BarX, BarW, SecondW, ValueX   float64
}

// Chart geometry, in viewBox units.
const (
	chartWidth   = 400
	chartValue   = 150 // room right of the longest bar for its value
	chartStacked = 36  // a row: label line, bar, second bar
	chartInline  = 22  // a row: label and bar side by side
	chartBar     = 10  // a bar's height
	chartLabel   = 60  // runes of a label drawn; the rest is in the hint
)

// layout places the bars.
func (ch *chart) layout() {
	row, area := chartStacked, float64(chartWidth-chartValue)
	if ch.LabelWidth > 0 {
		row, area = chartInline, float64(chartWidth-chartValue-ch.LabelWidth)
	}
	ch.Width, ch.Height = chartWidth, len(ch.Bars)*row+4
	for i := range ch.Bars {
		b := &ch.Bars[i]
		y := i * row
		b.BarW, b.SecondW = barWidth(b.Fraction, area), barWidth(b.Second, area)
		if ch.LabelWidth > 0 {
			b.LabelY, b.BarY, b.ValueY = y+15, y+6, y+15
			b.BarX = float64(ch.LabelWidth)
		} else {
			b.LabelY, b.BarY, b.SecondY, b.ValueY = y+12, y+16, y+28, y+25
		}
		b.ValueX = b.BarX + b.BarW + 6
		if utf8.RuneCountInString(b.Label) > chartLabel {
			b.Label = string([]rune(b.Label)[:chartLabel-1]) + "…"
		}
	}
}

// barWidth is a fraction of area; a bar of something is at least one
// unit wide, so that it shows.
func barWidth(fraction, area float64) float64 {
	if fraction <= 0 {
		return 0
	}
	return max(float64(int(fraction*area*10))/10, 1)
}
