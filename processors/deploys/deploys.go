// Package deploys keeps the deploys of every service and environment in
// event-time order and answers what was live when, which deploys rolled
// another back, and how long each change took to reach production.
//
// Answers never depend on the order deploys were added in: a deploy event
// that arrives late is slotted where its timestamp puts it, and every
// derived fact (live version, rollbacks) is computed from the ordered list.
package deploys

import (
	"slices"
	"strings"
	"time"
)

// Deploy is one deploy of a service to an environment.
type Deploy struct {
	ID, Service, Environment, Version string
	Type                              string // "deploy" | "rollback"
	Status                            string // "succeeded" | "failed"
	At                                time.Time
	FirstCommitAt                     time.Time // zero when no commits were given
	// CommitTimes are the times of the commits the deploy shipped, for
	// lead time.
	CommitTimes         []time.Time
	Commit, Author, URL string
	Attributes          map[string]string
	// StoredLead is the lead time as the deploys table holds it, for a
	// deploy read back from there without its commits; nil otherwise.
	StoredLead *time.Duration
}

// Live reports whether the deploy went live; a failed deploy never did and
// is never counted, suspected or rolled back to.
func (d *Deploy) Live() bool { return d.Status != "failed" }

// LeadTime is the median, over the commits the deploy shipped, of the time
// from commit to deploy (the Four Keys method: every change counts, so a
// deploy of one old commit and nine fresh ones reads as fresh), when
// commits were given. Commits dated after the deploy are left out.
func (d *Deploy) LeadTime() (time.Duration, bool) {
	var lts []time.Duration
	for _, c := range d.CommitTimes {
		if !c.IsZero() && !c.After(d.At) {
			lts = append(lts, d.At.Sub(c))
		}
	}
	if len(lts) == 0 {
		if d.StoredLead != nil {
			return *d.StoredLead, true
		}
		if d.FirstCommitAt.IsZero() || d.FirstCommitAt.After(d.At) {
			return 0, false
		}
		return d.At.Sub(d.FirstCommitAt), true
	}
	slices.Sort(lts)
	n := len(lts)
	if n%2 == 1 {
		return lts[n/2], true
	}
	return (lts[n/2-1] + lts[n/2]) / 2, true
}

// Rollback says that By rolled Of back: Of was live and By replaced it with
// a version live before Of (or an explicit rollback).
type Rollback struct {
	Of, By *Deploy
}

type key struct{ service, env string }

// Index holds deploys by service and environment.
type Index struct {
	byKey map[key][]*Deploy // live and failed, ordered by At then ID
	byID  map[string]*Deploy
	// past holds, per key, the versions of live deploys Prune dropped,
	// with when each was last live: a deploy of one of them is a rollback.
	past map[key]map[string]time.Time
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{byKey: map[key][]*Deploy{}, byID: map[string]*Deploy{}, past: map[key]map[string]time.Time{}}
}

func less(a, b *Deploy) int {
	if c := a.At.Compare(b.At); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// Add inserts or replaces (by ID) a deploy and reports whether anything
// changed.
func (x *Index) Add(d Deploy) bool {
	if old, ok := x.byID[d.ID]; ok {
		if sameDeploy(old, &d) {
			return false
		}
		x.remove(old)
	}
	p := &d
	k := key{d.Service, d.Environment}
	list := x.byKey[k]
	i, _ := slices.BinarySearchFunc(list, p, less)
	x.byKey[k] = slices.Insert(list, i, p)
	x.byID[d.ID] = p
	return true
}

func sameDeploy(a, b *Deploy) bool {
	return a.Service == b.Service && a.Environment == b.Environment && a.Version == b.Version &&
		a.Type == b.Type && a.Status == b.Status && a.At.Equal(b.At) && a.FirstCommitAt.Equal(b.FirstCommitAt)
}

func (x *Index) remove(d *Deploy) {
	k := key{d.Service, d.Environment}
	x.byKey[k] = slices.DeleteFunc(x.byKey[k], func(e *Deploy) bool { return e == d })
	delete(x.byID, d.ID)
}

// Get returns a deploy by id.
func (x *Index) Get(id string) (*Deploy, bool) {
	d, ok := x.byID[id]
	return d, ok
}

// LiveAt returns the deploy live for a service and environment at t: the
// latest live deploy at or before t.
func (x *Index) LiveAt(service, env string, t time.Time) (*Deploy, bool) {
	list := x.byKey[key{service, env}]
	i := sortSearch(list, t) // first deploy after t
	for j := i - 1; j >= 0; j-- {
		if list[j].Live() {
			return list[j], true
		}
	}
	return nil, false
}

// sortSearch returns the index of the first deploy strictly after t.
func sortSearch(list []*Deploy, t time.Time) int {
	lo, hi := 0, len(list)
	for lo < hi {
		m := (lo + hi) / 2
		if list[m].At.After(t) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

// Between returns the live deploys of env in [from, to], of one service
// or (service "") of all, latest first.
func (x *Index) Between(service, env string, from, to time.Time) []*Deploy {
	var out []*Deploy
	for k, list := range x.byKey {
		if k.env != env || (service != "" && k.service != service) {
			continue
		}
		for _, d := range list {
			if d.Live() && !d.At.Before(from) && !d.At.After(to) {
				out = append(out, d)
			}
		}
	}
	slices.SortFunc(out, func(a, b *Deploy) int { return -less(a, b) })
	return out
}

// Rollbacks returns every rollback of a service and environment in time
// order. A live deploy rolls back the one live before it when it is an
// explicit rollback, or when its version was live earlier (V1 -> V2 -> V1
// rolls V2 back); redeploying the version already live is not a rollback.
func (x *Index) Rollbacks(service, env string) []Rollback {
	var out []Rollback
	var live []*Deploy
	k := key{service, env}
	past := x.past[k]
	for _, d := range x.byKey[k] {
		if !d.Live() {
			continue
		}
		if n := len(live); n > 0 {
			prev := live[n-1]
			if prev.Version != d.Version {
				_, pruned := past[d.Version]
				earlier := pruned || slices.ContainsFunc(live[:n-1], func(e *Deploy) bool { return e.Version == d.Version })
				if d.Type == "rollback" || earlier {
					out = append(out, Rollback{Of: prev, By: d})
				}
			}
		}
		live = append(live, d)
	}
	return out
}

// RolledBack returns the rollback of a deploy, if one happened.
func (x *Index) RolledBack(d *Deploy) (Rollback, bool) {
	for _, r := range x.Rollbacks(d.Service, d.Environment) {
		if r.Of == d {
			return r, true
		}
	}
	return Rollback{}, false
}

// Keys returns every (service, environment) with deploys.
func (x *Index) Keys() [][2]string {
	out := make([][2]string, 0, len(x.byKey))
	for k := range x.byKey {
		out = append(out, [2]string{k.service, k.env})
	}
	slices.SortFunc(out, func(a, b [2]string) int {
		if c := strings.Compare(a[1], b[1]); c != 0 {
			return c
		}
		return strings.Compare(a[0], b[0])
	})
	return out
}

// LiveSpan returns the deploy live for a service and environment at t and
// the span [from, until) over which it stays the live one, so a caller
// walking rows in time order can reuse the answer without another search.
// Without a live deploy, d is nil and the span is the gap before the first.
func (x *Index) LiveSpan(service, env string, t time.Time) (d *Deploy, from, until time.Time) {
	list := x.byKey[key{service, env}]
	i := sortSearch(list, t)
	until = farFuture
	for j := i; j < len(list); j++ {
		if list[j].Live() {
			until = list[j].At
			break
		}
	}
	for j := i - 1; j >= 0; j-- {
		if list[j].Live() {
			return list[j], list[j].At, until
		}
	}
	return nil, time.Time{}, until
}

var farFuture = time.Unix(1<<62, 0)
