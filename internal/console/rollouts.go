package console

import (
	"net/url"
	"strconv"
	"time"

	"github.com/sluice-gw/sluice/internal/rollout"
)

// rolloutHistory is how many of the latest transitions a rollout shows.
const rolloutHistory = 10

// rolloutActions are the buttons of every rollout, in the order shown.
// All four are always there: the API says why one does not apply now
// (409), and the page shows its answer.
var rolloutActions = []struct{ Name, Label string }{
	{rollout.ActionPause, "Pause"},
	{rollout.ActionResume, "Resume"},
	{rollout.ActionPromote, "Promote"},
	{rollout.ActionAbort, "Abort"},
}

type rolloutsView struct {
	Rows    []rolloutRow
	Details []rolloutDetail
}

type rolloutRow struct {
	Route, Pools, State, Step, Percent, Next, Reason string
	Actions                                          []rolloutAction
}

// rolloutAction is one button: a form that POSTs to URL.
type rolloutAction struct {
	Route, Name, Label, URL string
}

type rolloutDetail struct {
	Route   string
	Window  []sideRow
	Gates   []gateRow
	History []eventRow
	// Older counts the transitions not shown.
	Older int
}

type sideRow struct {
	Side, Pool, Requests, Errors, P99 string
}

type gateRow struct {
	Name, Value, Threshold, Detail string
	Pass                           bool
	Known                          bool // a value to judge
}

type eventRow struct {
	At, Event, From, To, Step, Percent, By, Reason string
}

func (c *Console) rolloutsPage() any {
	var v rolloutsView
	for _, rep := range c.gw.Rollouts().Report() {
		row := rolloutRow{
			Route: rep.Route, Pools: rep.Stable + " → " + rep.Candidate, State: string(rep.State),
			Step:    strconv.Itoa(rep.Step+1) + " of " + strconv.Itoa(len(rep.Steps)),
			Percent: strconv.FormatFloat(rep.Percent, 'f', -1, 64) + "%", Next: clock(rep.NextDecision),
			Reason: rep.Reason,
		}
		if row.Reason == "" {
			row.Reason = dash
		}
		for _, a := range rolloutActions {
			row.Actions = append(row.Actions, rolloutAction{Route: rep.Route, Name: a.Name, Label: a.Label,
				URL: "/admin/rollouts/" + url.PathEscape(rep.Route) + "/" + a.Name})
		}
		v.Rows = append(v.Rows, row)

		d := rolloutDetail{Route: rep.Route, Window: []sideRow{
			sideView("stable", rep.Stable, rep.Window.Stable),
			sideView("candidate", rep.Candidate, rep.Window.Candidate),
		}}
		for _, g := range rep.Gates {
			d.Gates = append(d.Gates, gateView(g))
		}
		history := rep.History[max(len(rep.History)-rolloutHistory, 0):]
		d.Older = len(rep.History) - len(history)
		for i := len(history) - 1; i >= 0; i-- { // the newest first
			d.History = append(d.History, eventView(history[i]))
		}
		v.Details = append(v.Details, d)
	}
	return v
}

func sideView(side, pool string, s rollout.Side) sideRow {
	row := sideRow{Side: side, Pool: pool, Requests: count(s.Requests), Errors: count(s.Errors), P99: dash}
	if s.P99 > 0 {
		row.P99 = strconv.FormatFloat(float64(s.P99)/float64(time.Millisecond), 'f', 2, 64)
	}
	return row
}

// gateView shows a gate's value against its threshold with the sense of
// the comparison: a success ratio must reach it, a latency ratio stay
// within it (plus the slack its detail names), a shadow mismatch rate
// stay under it.
func gateView(g rollout.Gate) gateRow {
	row := gateRow{Name: g.Name, Value: dash, Detail: g.Detail, Pass: g.Pass, Known: g.Value != nil}
	switch g.Name {
	case rollout.GateShadow:
		row.Value, row.Threshold = percent(g.Value, 2), "< "+percent(&g.Threshold, 2)
	case rollout.GateLatency:
		row.Value, row.Threshold = decimal(g.Value, 3), "≤ "+decimal(&g.Threshold, 3)
	default:
		row.Value, row.Threshold = decimal(g.Value, 3), "≥ "+decimal(&g.Threshold, 3)
	}
	return row
}

func eventView(ev rollout.Event) eventRow {
	row := eventRow{
		At: clock(&ev.At), Event: ev.Kind, From: string(ev.From), To: string(ev.To),
		Step: strconv.Itoa(ev.Step + 1), Percent: strconv.FormatFloat(ev.Percent, 'f', -1, 64) + "%",
		By: ev.By, Reason: ev.Reason,
	}
	if row.From == "" {
		row.From = dash
	}
	return row
}
