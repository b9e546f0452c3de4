package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// webhooks posts events, one at a time in the order they happened, from
// one goroutine, so that a slow receiver never holds up the controller.
// A failed post (no answer, or not 2xx) is tried twice more, a second and
// then two seconds later; past that the event is logged as lost. Events
// beyond queueSize waiting are dropped and logged.
type webhooks struct {
	queue  chan delivery
	client *http.Client
	log    *slog.Logger
	retry  []time.Duration
}

type delivery struct {
	url string
	ev  Event
}

const (
	queueSize      = 256
	webhookTimeout = 5 * time.Second
)

func newWebhooks(log *slog.Logger) *webhooks {
	return &webhooks{
		queue:  make(chan delivery, queueSize),
		client: &http.Client{Timeout: webhookTimeout},
		log:    log,
		retry:  []time.Duration{time.Second, 2 * time.Second},
	}
}

// send queues ev for url without waiting.
func (h *webhooks) send(url string, ev Event) {
	select {
	case h.queue <- delivery{url, ev}:
	default:
		h.log.Warn("rollout webhook queue full; event dropped", "route", ev.Route, "to", string(ev.To), "url", url)
	}
}

func (h *webhooks) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-h.queue:
			h.deliver(ctx, d)
		}
	}
}

func (h *webhooks) deliver(ctx context.Context, d delivery) {
	body, err := json.Marshal(d.ev)
	if err != nil {
		h.log.Error("rollout webhook event cannot be encoded", "err", err)
		return
	}
	for attempt := 0; ; attempt++ {
		err = h.post(ctx, d.url, body)
		if err == nil {
			return
		}
		if attempt == len(h.retry) {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.retry[attempt]):
		}
	}
	h.log.Warn("rollout webhook failed; event lost", "route", d.ev.Route, "to", string(d.ev.To), "url", d.url, "err", err)
}

func (h *webhooks) post(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sluice-rollout")
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("answered %d", resp.StatusCode)
	}
	return nil
}
