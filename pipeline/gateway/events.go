package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/processors/events"
)

// eventError turns a parse or validation error into a 400 naming the
// field and item.
func eventError(err error) error {
	var fe *events.FieldError
	if errors.As(err, &fe) {
		return &status{code: http.StatusBadRequest, msg: fe.Error(), field: fe.Field}
	}
	return &status{code: http.StatusBadRequest, msg: err.Error()}
}

func requireJSON(r *http.Request) error {
	if ct := contentType(r); ct != ctJSON && ct != events.ContentTypeCloudEvents && ct != events.ContentTypeCDEvents && ct != "" {
		return fail(http.StatusUnsupportedMediaType, "content type %q not supported: use application/json", r.Header.Get("Content-Type"))
	}
	return nil
}

func (g *Gateway) tooMany(n int) error {
	if n > g.cfg.MaxItems {
		return fail(http.StatusRequestEntityTooLarge, "%d events in one request; the limit is %d", n, g.cfg.MaxItems)
	}
	return nil
}

func (g *Gateway) publishDeploys(ctx context.Context, ds []events.Deploy) error {
	for _, d := range ds {
		b, _ := json.Marshal(d)
		if err := g.publish(ctx, broker.DeploysSubject, d.MsgID(), ctJSON, "", b); err != nil {
			return err
		}
	}
	g.m.events.Add(len(ds))
	return nil
}

func (g *Gateway) publishIncidents(ctx context.Context, is []events.Incident) error {
	for _, inc := range is {
		b, _ := json.Marshal(inc)
		if err := g.publish(ctx, broker.IncidentsSubject, inc.MsgID(), ctJSON, "", b); err != nil {
			return err
		}
	}
	g.m.events.Add(len(is))
	return nil
}

// accept is the shape of every event endpoint: JSON only, parse and
// validate, bound the count, publish each event, answer 202 {"accepted": N}.
func accept[T any](g *Gateway, w http.ResponseWriter, r *http.Request, body []byte,
	parse func([]byte) ([]T, error), publish func(context.Context, []T) error) error {
	if err := requireJSON(r); err != nil {
		return err
	}
	items, err := parse(body)
	if err != nil {
		return eventError(err)
	}
	if err := g.tooMany(len(items)); err != nil {
		return err
	}
	if err := publish(r.Context(), items); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]int{"accepted": len(items)})
	return nil
}

func (g *Gateway) deploys(w http.ResponseWriter, r *http.Request, body []byte) error {
	return accept(g, w, r, body, events.ParseDeploys, g.publishDeploys)
}

func (g *Gateway) incidents(w http.ResponseWriter, r *http.Request, body []byte) error {
	return accept(g, w, r, body, events.ParseIncidents, g.publishIncidents)
}

func (g *Gateway) cdevents(w http.ResponseWriter, r *http.Request, body []byte) error {
	if err := requireJSON(r); err != nil {
		return err
	}
	d, inc, err := events.FromCDEventHTTP(r.Header, body)
	if err != nil {
		return eventError(err)
	}
	if d != nil {
		err = g.publishDeploys(r.Context(), []events.Deploy{*d})
	} else {
		err = g.publishIncidents(r.Context(), []events.Incident{*inc})
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]int{"accepted": 1})
	return nil
}
