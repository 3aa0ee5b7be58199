package deploys

import (
	"slices"
	"strings"
	"time"
)

// MaxPastVersions bounds the versions Prune remembers per service and
// environment for rollback detection: a deploy of a version older than the
// last MaxPastVersions distinct ones is no longer recognized as a rollback
// by version (an explicit rollback still is).
const MaxPastVersions = 256

// Prune drops the deploys of every service and environment that went out
// before horizon, except the one live at horizon (what is live, and the
// deploy a later one may roll back) and those keep asks to keep. The
// versions of the dropped live deploys are remembered (bounded by
// MaxPastVersions), so a later deploy of one of them is still a rollback.
// It returns how many deploys it dropped.
func (x *Index) Prune(horizon time.Time, keep func(*Deploy) bool) int {
	n := 0
	for k, list := range x.byKey {
		i := sortSearch(list, horizon) // first deploy after horizon
		liveAt := -1
		for j := i - 1; j >= 0; j-- {
			if list[j].Live() {
				liveAt = j
				break
			}
		}
		out := list[:0]
		for j, d := range list {
			if j >= i || j == liveAt || (keep != nil && keep(d)) {
				out = append(out, d)
				continue
			}
			if d.Live() {
				x.remember(k, d.Version, d.At)
			}
			delete(x.byID, d.ID)
			n++
		}
		clear(list[len(out):])
		if len(out) == 0 {
			delete(x.byKey, k)
			continue
		}
		x.byKey[k] = out
	}
	return n
}

// remember records that version was live at t on key k.
func (x *Index) remember(k key, version string, t time.Time) {
	p := x.past[k]
	if p == nil {
		p = map[string]time.Time{}
		x.past[k] = p
	}
	if old, ok := p[version]; ok && old.After(t) {
		return
	}
	p[version] = t
	for len(p) > MaxPastVersions {
		oldest, first := "", true
		for v, at := range p {
			if first || at.Before(p[oldest]) || (at.Equal(p[oldest]) && v < oldest) {
				oldest, first = v, false
			}
		}
		delete(p, oldest)
	}
}

// Len returns how many deploys the index holds.
func (x *Index) Len() int { return len(x.byID) }

// PastVersions are the versions of a key's pruned live deploys, each with
// when it was last live: a later deploy of one of them is a rollback.
type PastVersions struct {
	Service, Environment string
	Versions             []string
	At                   []time.Time
}

// State is an index's content in a form that survives a restart: every
// deploy it holds and the pruned versions it remembers.
type State struct {
	Deploys []Deploy
	Past    []PastVersions
}

// Snapshot returns the index's state, in a fixed order.
func (x *Index) Snapshot() State {
	var st State
	for _, k := range x.Keys() {
		for _, d := range x.byKey[key{k[0], k[1]}] {
			st.Deploys = append(st.Deploys, *d)
		}
	}
	keys := make([]key, 0, len(x.past))
	for k := range x.past {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int { return strings.Compare(a.env+"\x00"+a.service, b.env+"\x00"+b.service) })
	for _, k := range keys {
		p := PastVersions{Service: k.service, Environment: k.env}
		vs := make([]string, 0, len(x.past[k]))
		for v := range x.past[k] {
			vs = append(vs, v)
		}
		slices.Sort(vs)
		for _, v := range vs {
			p.Versions = append(p.Versions, v)
			p.At = append(p.At, x.past[k][v])
		}
		st.Past = append(st.Past, p)
	}
	return st
}

// Restore returns an index holding a snapshot's state.
func Restore(st State) *Index {
	x := NewIndex()
	for _, d := range st.Deploys {
		x.Add(d)
	}
	for _, p := range st.Past {
		for i, v := range p.Versions {
			if i < len(p.At) {
				x.remember(key{p.Service, p.Environment}, v, p.At[i])
			}
		}
	}
	return x
}
